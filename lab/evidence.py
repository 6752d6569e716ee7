"""Evidence of every hop the status passes, and the verdict drawn from it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab.client import Poll
from lab.scenarios import Outcome, Scenario

HOPS = ("worker", "result backend", "origin", "proxy", "client")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text("utf-8").splitlines()
    except FileNotFoundError:
        return []
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line being written right now
    return events


def task_finished_at(task_events: Path, task_id: str | None) -> float | None:
    if task_id is None:
        return None
    for event in read_jsonl(task_events):
        if event.get("event") == "task_finished" and event.get("task_id") == task_id:
            return float(event["time"])
    return None


@dataclass
class Evidence:
    """What each hop saw of one task, times in epoch seconds."""

    task_id: str | None
    client_started_at: float | None
    task_started_at: float | None
    task_finished_at: float | None
    task_final_state: str | None
    backend_state: str | None
    origin_status_requests: list[dict[str, Any]]
    proxy_status_requests: list[dict[str, Any]]
    polls: list[Poll]
    client_error: str | None
    ui_state: str
    uses_proxy: bool

    @classmethod
    def gather(
        cls,
        *,
        run_dir: Path,
        task_id: str | None,
        client_started_at: float | None,
        backend_state: str | None,
        polls: list[Poll],
        client_error: str | None,
        ui_state: str,
        uses_proxy: bool,
    ) -> Evidence:
        started = finished = None
        final_state = None
        for event in read_jsonl(run_dir / "task-events.jsonl"):
            if event.get("task_id") != task_id:
                continue
            if event["event"] == "task_started":
                started = event["time"]
            elif event["event"] == "task_finished":
                finished, final_state = event["time"], event.get("state")
        status_marker = f"/tasks/{task_id}/status"
        origin = [
            e
            for e in read_jsonl(run_dir / "origin-events.jsonl")
            if task_id and e.get("path") == status_marker
        ]
        proxy = [
            e
            for e in read_jsonl(run_dir / "proxy-events.jsonl")
            if task_id and status_marker in (e.get("url") or "")
        ]
        return cls(
            task_id,
            client_started_at,
            started,
            finished,
            final_state,
            backend_state,
            origin,
            proxy,
            polls,
            client_error,
            ui_state,
            uses_proxy,
        )

    # -- counts
    @property
    def from_cache(self) -> int:
        return sum(1 for e in self.proxy_status_requests if e.get("cache") == "HIT")

    @property
    def reached_origin(self) -> int:
        return len(self.origin_status_requests)

    def rel(self, t: float | None) -> float | None:
        if t is None or self.client_started_at is None:
            return None
        return t - self.client_started_at

    def stopped_at(self, observed: Outcome, final_states: frozenset[str]) -> str | None:
        """The hop where the status stopped on its way to the UI."""
        if observed is Outcome.completed:
            return None
        if observed is Outcome.errored:
            if any(e.get("status", 200) >= 400 for e in self.origin_status_requests):
                return "origin"
            return "proxy" if self.uses_proxy else "client"
        if self.task_finished_at is None:
            return "worker"
        if self.backend_state not in final_states:
            return "result backend"
        origin_final = any(e.get("state") in final_states for e in self.origin_status_requests)
        if not origin_final:
            after = [e for e in self.origin_status_requests if e["time"] > self.task_finished_at]
            if after:
                return "origin"
        return "proxy" if self.uses_proxy else "client"


@dataclass
class Verdict:
    scenario: str
    fix: str
    client: str
    proxy: str
    expected: str
    observed: str
    matched: bool
    seconds: float
    polls: dict[str, int]
    stopped_at: str | None
    sentence: str
    task: dict[str, Any] = field(default_factory=dict)
    backend_state: str | None = None
    run_dir: str = ""
    first_stale_answer: dict[str, Any] | None = None
    lesson: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def judge(
    scenario: Scenario,
    fix: str,
    observed: Outcome,
    evidence: Evidence,
    *,
    seconds: float,
    final_states: frozenset[str],
    client: str = "python",
) -> Verdict:
    expected = scenario.expected_for(fix)
    matched = observed is expected
    stopped_at = evidence.stopped_at(observed, final_states)
    total = len(evidence.polls)
    polls = {
        "total": total,
        "reached_origin": evidence.reached_origin,
        "from_cache": evidence.from_cache,
    }
    head = f"{scenario.name} fix={fix}: {observed.value}, " + (
        "as expected" if matched else f"expected {expected.value}"
    )
    detail = _detail(observed, evidence, scenario)
    if evidence.uses_proxy:
        tail = f"{evidence.from_cache} of {total} polls were answered by the proxy"
    else:
        tail = f"{evidence.reached_origin} of {total} polls reached the origin (no proxy)"
    return Verdict(
        scenario=scenario.name,
        fix=fix,
        client=client,
        proxy=scenario.proxy,
        expected=expected.value,
        observed=observed.value,
        matched=matched,
        seconds=round(seconds, 3),
        polls=polls,
        stopped_at=stopped_at,
        sentence=f"{head} - {detail}; {tail}",
        task={
            "id": evidence.task_id,
            "started_at": _round(evidence.rel(evidence.task_started_at)),
            "finished_at": _round(evidence.rel(evidence.task_finished_at)),
            "final_state": evidence.task_final_state,
        },
        backend_state=evidence.backend_state,
        first_stale_answer=_first_stale(evidence, final_states),
        lesson=scenario.lesson,
    )


def _detail(observed: Outcome, ev: Evidence, scenario: Scenario) -> str:
    finished = ev.rel(ev.task_finished_at)
    last = ev.polls[-1] if ev.polls else None
    if observed is Outcome.completed and last:
        seen = ev.rel(last.received_at) or 0.0
        return (
            f"the task finished at {finished or 0:.1f} s "
            f"and the UI showed {last.state} at {seen:.1f} s"
        )
    if observed is Outcome.errored:
        at = ev.rel(last.received_at) if last else None
        where = f" at {at:.1f} s" if at is not None else ""
        return f"the UI stopped with an error{where}: {ev.client_error or (last and last.state)}"
    shown = (last.state if last else None) or "nothing"
    if finished is None:
        return (
            f"the worker never reported the task finished within "
            f"{scenario.task_duration + scenario.hang_window:.1f} s; the UI still showed {shown}"
        )
    return (
        f"the task finished at {finished:.1f} s, "
        f"the UI still showed {shown} {scenario.hang_window:.1f} s later"
    )


def _first_stale(ev: Evidence, final_states: frozenset[str]) -> dict[str, Any] | None:
    """The first answer after the task finished that still said it was running."""
    if ev.task_finished_at is None:
        return None
    for poll in ev.polls:
        if poll.sent_at > ev.task_finished_at and poll.state and poll.state not in final_states:
            return {
                "seq": poll.seq,
                "at": _round(ev.rel(poll.received_at)),
                "state": poll.state,
                "age": poll.age,
                "date": poll.date,
                "via": poll.via,
                "x_cache": poll.x_cache,
                "cache_control": poll.cache_control,
                "served_at": _round(ev.rel(poll.served_at)),
            }
    return None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
