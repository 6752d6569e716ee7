"""An audit cell's judgement (lab/judging/audit.py), its wait for an outcome and its reading
of the listener's record (lab/runs/audit_cell.py), from made-up polls and events: no process
started."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from lab.clients.poll import Poll
from lab.data import flows
from lab.data.jsonl import JsonLinesTail
from lab.data.scenarios import Outcome
from lab.judging.audit import CellFacts, untested_because
from lab.runs.audit_cell import listener_events, wait_for_outcome

T0 = 1_800_000_000.0
TASK = "4b1f0c2e9a7d4e55"


def poll(sent: float, state: str | None, seq: int = 1, foreign: str | None = None) -> Poll:
    at = T0 + sent
    return Poll(seq, at, at + 0.01, f"http://app/jobs/{TASK}", 200, state, foreign_task_id=foreign)


def facts(polls: list[Poll], direct_final_at: float | None = 1.2, **more) -> CellFacts:
    return CellFacts(
        flow="tiny",
        profile="corporate-cache",
        strategy="app",
        task_id=TASK,
        client_started_at=T0,
        polls=polls,
        client_error=None,
        foreign_task_id=None,
        direct_final_at=None if direct_final_at is None else T0 + direct_final_at,
        direct_final_state="done" if direct_final_at is not None else None,
        direct_outcome="completed" if direct_final_at is not None else None,
        direct_error=more.pop("direct_error", None),
        proxy_events=[],
        hang_window=3.0,
        decided_at=None,
        **more,
    )


def test_a_page_that_completed_on_its_first_answer_tested_nothing():
    why = untested_because(facts([poll(1.5, "done")]), Outcome.completed)
    assert why is not None and "the first answer (at 1.51 s) already said done" in why


def test_a_failed_request_or_another_users_answer_is_not_the_first_answer():
    polls = [poll(0.2, None, 1), poll(0.4, "running", 2, foreign="other"), poll(1.5, "done", 3)]
    assert "already said done" in (untested_because(facts(polls), Outcome.completed) or "")


def test_a_page_that_saw_the_task_running_tested_the_cache():
    polls = [poll(0.3, "running", 1), poll(1.5, "done", 2)]
    assert untested_because(facts(polls), Outcome.completed) is None


@pytest.mark.parametrize("observed", [Outcome.errored, Outcome.leaked])
def test_an_error_or_a_leak_is_what_the_page_showed(observed):
    assert untested_because(facts([poll(1.5, "done")]), observed) is None


def test_a_hang_needs_the_direct_paths_final_state():
    running = [poll(0.3, "running", n) for n in range(1, 4)]
    assert untested_because(facts(running), Outcome.hung) is None
    why = untested_because(facts(running, direct_final_at=None), Outcome.hung)
    assert why == "the task never showed a final state on the direct path: no ground truth"
    failed = facts(running, direct_final_at=None, direct_error="HTTP 500")
    assert "the direct path itself failed (HTTP 500)" in (
        untested_because(failed, Outcome.hung) or ""
    )


def flow(window: float, interval: float) -> flows.Flow:
    return flows.Flow.model_validate(
        {
            "app": {"url": "http://127.0.0.1:1"},
            "polling": {"hang_window_s": window, "interval_s": interval, "task_timeout_s": 5},
        }
    )


class Page:
    """A proxied page that polls and is always answered "running" (or never answered)."""

    done = False
    ui_state = "running"

    def __init__(self, answered_every: float | None) -> None:
        self.started_at = time.time()
        self.answered_every = answered_every

    @property
    def polls(self) -> list[Poll]:
        if self.answered_every is None:
            return []
        found, sent = [], self.started_at
        while sent < time.time():
            found.append(Poll(len(found) + 1, sent, sent, "http://app", 200, "running"))
            sent += self.answered_every
        return found


def truth_final_at(at: float) -> SimpleNamespace:
    return SimpleNamespace(done=True, ui_state="completed", finished_at=at)


def test_the_audit_calls_a_page_hung_with_proof_in_polls():
    window = 0.2  # 4 polls at 50 ms: proof is 2 answered polls after the direct final state
    page = Page(answered_every=0.05)
    truth = truth_final_at(time.time())
    began = time.time()
    outcome = wait_for_outcome(flow(window, 0.05), page, lambda: truth, lambda: None)
    assert outcome is Outcome.hung
    waited = time.time() - began
    assert window <= waited < 3 * window


def test_a_page_with_no_answers_gets_three_windows():
    window = 0.2
    truth = truth_final_at(time.time())
    began = time.time()
    outcome = wait_for_outcome(flow(window, 0.05), Page(None), lambda: truth, lambda: None)
    assert outcome is Outcome.hung
    assert time.time() - began >= 3 * window


def test_no_ground_truth_is_no_outcome():
    failed = SimpleNamespace(done=True, ui_state="errored", finished_at=None)
    assert wait_for_outcome(flow(0.2, 0.05), Page(0.05), lambda: failed, lambda: None) is None


def append_events(path: Path, *urls: str) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.writelines(json.dumps({"url": url, "cache": "MISS"}) + "\n" for url in urls)


def test_each_run_of_a_cell_reads_only_what_its_listener_wrote_since_the_last(tmp_path):
    path = tmp_path / "proxy-events-cell.jsonl"
    record = JsonLinesTail(path)
    append_events(path, "http://app/jobs", "http://app/jobs/first", "http://app/jobs/neighbour")
    assert [e["url"] for e in listener_events(record, "first")] == ["http://app/jobs/first"]
    append_events(path, "http://app/jobs/first")  # a poll of the last run, logged late
    append_events(path, "http://app/jobs/second?nonce=1", "http://app/jobs/second?nonce=2")
    assert len(listener_events(record, "second")) == 2
    append_events(path, "http://app/jobs/third")
    assert listener_events(record, None) == []  # a run that started no task still reads on
    assert listener_events(record, "third") == []
    assert listener_events(None, "third") == []  # a proxy that keeps no record
