"""Evidence of every hop the status passes, and the verdict drawn from it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from lab.clients.base import Client
from lab.clients.polling import Poll
from lab.data.events import EventLog, Grouped
from lab.data.scenarios import Outcome, Scenario
from lab.judging.proof import already_final

HOPS = ("worker", "result backend", "origin", "proxy", "client")


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
    proxy_visible: bool = True  # False for an external proxy: no events from inside it
    worker_running: bool = True
    warnings: list[str] = field(default_factory=list)
    foreign_task_id: str | None = None
    decided_at: float | None = None  # when the verdict fell (epoch seconds)

    @classmethod
    def gather(
        cls,
        *,
        task_events: EventLog,
        origin: Grouped,
        proxy: Grouped,
        task_id: str | None,
        client: Client,
        backend_state: str | None,
        uses_proxy: bool,
        proxy_visible: bool,
        worker_running: bool,
        decided_at: float | None,
    ) -> Evidence:
        task_events.refresh(0)
        key = task_id or ""
        polls = list(client.polls)
        foreign = next(
            (p.foreign_task_id for p in polls if getattr(p, "foreign_task_id", None)), None
        )
        return cls(
            task_id=task_id,
            client_started_at=client.started_at,
            task_started_at=task_events.started.get(key),
            task_finished_at=task_events.finished.get(key),
            task_final_state=task_events.final_state.get(key),
            backend_state=backend_state,
            # Copies: the shared lists may grow later (a poll still in flight at the verdict).
            origin_status_requests=list(origin.get(key, [])),
            proxy_status_requests=list(proxy.get(key, [])),
            polls=polls,
            client_error=client.error,
            ui_state=client.ui_state,
            uses_proxy=uses_proxy,
            proxy_visible=proxy_visible,
            worker_running=worker_running,
            warnings=list(client.warnings),
            foreign_task_id=foreign,
            decided_at=decided_at,
        )

    # -- counts: of the polls the client recorded. A poll still in flight when the verdict fell
    # has its proxy and origin records (each hop logs it before the client reads the answer)
    # but no poll: counted, it made "16 of 16 polls answered by the proxy" of 15 and a store.
    @property
    def from_cache(self) -> int:
        if not self.proxy_visible:
            # An external proxy: a poll that never reached the origin was answered on the way.
            return max(0, len(self.polls) - self.reached_origin)
        last = self._last_answer_at()
        return sum(
            1
            for e in self.proxy_status_requests
            if e.get("cache") == "HIT" and e.get("time", 0.0) <= last
        )

    @property
    def reached_origin(self) -> int:
        last = self._last_answer_at()
        return sum(1 for e in self.origin_status_requests if read_at(e) <= last)

    def _last_answer_at(self) -> float:
        """When the client read its last recorded answer; no poll: no bound."""
        answers = [p.received_at for p in self.polls if p.received_at is not None]
        return max(answers) if answers else float("inf")

    def rel(self, t: float | None) -> float | None:
        if t is None or self.client_started_at is None:
            return None
        return t - self.client_started_at

    def stopped_at(self, observed: Outcome, final_states: frozenset[str]) -> str | None:
        """The hop where the status stopped on its way to the UI."""
        if observed is Outcome.completed:
            return None
        if observed is Outcome.leaked:
            return "proxy" if self.uses_proxy else "origin"
        if observed is Outcome.errored:
            if any(e.get("status", 200) >= 400 for e in self.origin_status_requests):
                return "origin"
            if self.task_id is None and "HTTP 5" in (self.client_error or ""):
                return "origin"  # the app could not even start the task (its broker refused)
            return "proxy" if self.uses_proxy else "client"
        if self.task_finished_at is None:
            return "worker"
        if self.backend_state not in final_states:
            return "result backend"
        origin_final = any(e.get("state") in final_states for e in self.origin_status_requests)
        if not origin_final:
            after = [e for e in self.origin_status_requests if read_at(e) > self.task_finished_at]
            if after:
                return "origin"
        return "proxy" if self.uses_proxy else "client"


def read_at(request: dict[str, Any]) -> float:
    """When the app read the state it answered (its log line is written after the answer, and
    under load a read from before the task finished can be logged after it)."""
    return request.get("state_read_at") or request["time"]


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
    warnings: list[str] = field(default_factory=list)
    lesson: str = ""
    # Seconds from the client's start to its first poll: if that came after the task had
    # finished, the UI never saw the task running and a cache had nothing stale to serve.
    first_poll_at: float | None = None
    # Why the run could not test what the scenario is about, when the machine was too slow
    # for it (see `untested_because`); a mismatch with a reason is run again, never reported
    # as a wrong outcome. `attempts`: how many runs of the cell this verdict took.
    untested: str | None = None
    attempts: int = 1
    # Why the run before this one tested nothing, when this is a second (or third) run.
    retried_because: str | None = None
    broker: str = "sqlite"
    # The scenario's [load] stream (StreamResult.to_json) and, on Redis, what happened to its
    # memory (MemorySummary.to_json); None when the run had none.
    load: dict[str, Any] | None = None
    redis: dict[str, Any] | None = None
    # What the report draws as judged, so it re-derives nothing: the client's start (epoch
    # seconds; every other time here counts from it), when the verdict fell (seconds after
    # that start), the scenario's hang window, and whether the proxy kept a record the lab
    # could read (False without a proxy).
    client_started_at: float | None = None
    verdict_at: float | None = None
    hang_window: float | None = None
    proxy_visible: bool = False
    # HTTPS runs: where TLS ended, what the client trusted and the certificate it accepted
    # (lab/judging/tls_path.py); None over plain HTTP.
    tls: dict[str, Any] | None = None
    # Where the truth about the task came from: the lab's own "worker" record, or for an audit
    # of the user's app a "direct" poller of the same task (no proxy).
    ground_truth: str = "worker"

    @property
    def inconclusive(self) -> bool:
        """A mismatch on a run that did not test the scenario (the machine was too slow)."""
        return not self.matched and self.untested is not None

    @property
    def wrong(self) -> bool:
        """A mismatch on a run that tested the scenario: a wrong outcome, not a slow machine."""
        return not self.matched and self.untested is None

    @property
    def retried(self) -> bool:
        return self.attempts > 1

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Verdict:
        """A verdict as result.json holds it (fields it does not know are left out)."""
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})


def judge(
    scenario: Scenario,
    fix: str,
    observed: Outcome,
    evidence: Evidence,
    *,
    seconds: float,
    final_states: frozenset[str],
    client: str = "python",
    broker: str = "sqlite",
    result_lifetime: float | None = None,
    attempts: int = 1,
    proxy: str | None = None,
) -> Verdict:
    """`result_lifetime`: seconds a stored result lives (result_expires), None: for ever.
    `proxy`: the proxy that stood in the way when it was not the scenario's profile (a real
    one, "external proxy URL")."""
    expected = scenario.expected_for(fix, client)
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
        if not evidence.proxy_visible:
            tail = f"{evidence.from_cache} of {total} polls never reached the origin"
            if proxy:
                tail += f" (answered by {proxy})"
    else:
        tail = f"{evidence.reached_origin} of {total} polls reached the origin (no proxy)"
    return Verdict(
        scenario=scenario.name,
        fix=fix,
        client=client,
        proxy=proxy or scenario.proxy,
        lesson=scenario.lesson,
        hang_window=scenario.hang_window,
        # What happened, in one sentence and in figures.
        sentence=f"{head} - {detail}; {tail}",
        expected=expected.value,
        observed=observed.value,
        matched=matched,
        seconds=round(seconds, 3),
        polls=polls,
        stopped_at=stopped_at,
        task={
            "id": evidence.task_id,
            "started_at": _round(evidence.rel(evidence.task_started_at)),
            "finished_at": _round(evidence.rel(evidence.task_finished_at)),
            "final_state": evidence.task_final_state,
        },
        backend_state=evidence.backend_state,
        first_stale_answer=_first_stale(evidence, final_states),
        warnings=evidence.warnings,
        first_poll_at=_round(evidence.rel(evidence.polls[0].sent_at)) if evidence.polls else None,
        untested=untested_because(evidence, final_states, result_lifetime),
        attempts=attempts,
        broker=broker,
        client_started_at=evidence.client_started_at,
        verdict_at=_round(evidence.rel(evidence.decided_at)),
        proxy_visible=evidence.uses_proxy and evidence.proxy_visible,
    )


def untested_because(
    ev: Evidence, final_states: frozenset[str], result_lifetime: float | None
) -> str | None:
    """Why this run could not show what the scenario is about, from its evidence alone: the
    machine was too slow for the task's one second. None when the run tested it.

    A cache can only serve a stale answer if it was given a "running" one, so a run whose
    first poll went out, or whose first answer came back, after the task had finished tested
    no cache; and a result that expires can only be read if a poll reaches the app before it
    does. These are facts about timing, not about the proxy, so a mismatch with a reason is
    run again rather than reported.
    """
    if not ev.polls:
        return None
    finished = ev.task_finished_at
    first = ev.polls[0]
    if finished is not None and first.sent_at >= finished:
        return (
            f"the first poll was sent at {ev.rel(first.sent_at):.2f} s, after the task had "
            f"finished at {ev.rel(finished):.2f} s: nothing stale could be served"
        )
    # Asked whether or not the worker's own finish record is in yet: the worker writes it just
    # after handing the result to the backend, so a slow first answer can say SUCCESS before
    # the record exists (a real nginx cell was judged "completed", expected hung, that way).
    answer = already_final(ev.polls, lambda poll: poll.state in final_states)
    if answer is not None:
        return (
            f"the first answer (received at {ev.rel(answer.received_at):.2f} s) already said "
            f"{answer.state}: the task finished before any poll reached the app"
        )
    if finished is not None and result_lifetime:
        reads = sorted(read_at(e) for e in ev.origin_status_requests if read_at(e) >= finished)
        if not reads or reads[0] - finished > result_lifetime:
            late = f"{reads[0] - finished:.2f} s" if reads else "never"
            return (
                f"the app's first status read after the finish came {late} later, past the "
                f"result's {result_lifetime:g} s lifetime: the result could expire unread"
            )
    return None


def _detail(observed: Outcome, ev: Evidence, scenario: Scenario) -> str:
    finished = ev.rel(ev.task_finished_at)
    last = ev.polls[-1] if ev.polls else None
    if observed is Outcome.completed and last:
        seen = ev.rel(last.received_at) or 0.0
        if finished is None:
            return (
                f"the UI showed {last.state} at {seen:.1f} s, "
                "before the worker had recorded the task's finish"
            )
        return (
            f"the task finished at {finished:.1f} s and the UI showed {last.state} at {seen:.1f} s"
        )
    if observed is Outcome.leaked:
        return f"the UI was shown another user's task ({ev.foreign_task_id}) instead of its own"
    if observed is Outcome.errored:
        at = ev.rel(last.received_at) if last else None
        where = f" at {at:.1f} s" if at is not None else ""
        return f"the UI stopped with an error{where}: {ev.client_error or (last and last.state)}"
    shown = (last.state if last else None) or "nothing"
    if ev.task_started_at is None and finished is None:
        nobody = "no worker is running" if not ev.worker_running else "no worker took it"
        return f"the task was never started ({nobody}); the UI still showed {shown}"
    if finished is None:
        started = ev.rel(ev.task_started_at) or 0.0
        return (
            f"the worker started the task at {started:.1f} s and never finished it; "
            f"the UI still showed {shown}"
        )
    if ev.backend_state not in (ev.task_final_state, "SUCCESS", "FAILURE"):
        return (
            f"the task finished at {finished:.1f} s but the result backend holds "
            f"{ev.backend_state} (no result was stored); the UI still showed {shown}"
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
