"""Judging from evidence that does not depend on the machine's speed (issue 9)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from types import SimpleNamespace

from lab.clients.polling import Poll
from lab.data import scenarios
from lab.data.scenarios import Outcome
from lab.judging.evidence import Evidence, judge, untested_because
from lab.judging.proof import hang_proof_polls
from lab.runs.cell import wait_for_outcome
from lab.runs.matrix import NOT_JUDGED, MatrixResult
from sample_app import strategies

T0 = 1_800_000_000.0
FINAL = strategies.load().final_states
TASK = "7e6af0bc-1f74-4b96-bbbc-58e5107924ba"


def poll(sent: float, received: float, state: str, seq: int = 1) -> Poll:
    return Poll(seq, T0 + sent, T0 + received, "http://app/status", 200, state, task_id=TASK)


def evidence(polls: list[Poll], finished: float = 1.2, origin: list[float] = ()) -> Evidence:
    return Evidence(
        task_id=TASK,
        client_started_at=T0,
        task_started_at=T0 + 0.2,
        task_finished_at=T0 + finished,
        task_final_state="SUCCESS",
        backend_state="SUCCESS",
        origin_status_requests=[{"time": T0 + t, "state": "SUCCESS"} for t in origin],
        proxy_status_requests=[],
        polls=polls,
        client_error=None,
        ui_state="completed",
        uses_proxy=True,
    )


def test_a_run_whose_first_poll_left_after_the_finish_tested_nothing():
    why = untested_because(evidence([poll(1.5, 1.6, "SUCCESS")]), FINAL, None)
    assert why is not None and "after the task had finished at 1.20 s" in why


def test_a_run_whose_first_answer_already_said_success_tested_nothing():
    # Sent in time, but the busy machine delivered it to the app after the finish.
    why = untested_because(evidence([poll(1.0, 1.6, "SUCCESS")]), FINAL, None)
    assert why is not None and "already said SUCCESS" in why


def test_a_first_answer_that_said_success_before_the_worker_recorded_the_finish():
    # The worker writes its finish record after handing the result over: a slow first answer
    # read SUCCESS first (a real nginx cell, expected hung, was judged completed).
    unrecorded = evidence([poll(0.7, 2.3, "SUCCESS")])
    unrecorded.task_finished_at = None
    why = untested_because(unrecorded, FINAL, 1.0)
    assert why is not None and "already said SUCCESS" in why
    scenario = scenarios.load("proxy-cache")
    verdict = judge(scenario, "none", Outcome.completed, unrecorded, seconds=3, final_states=FINAL)
    assert verdict.inconclusive and "before the worker had recorded" in verdict.sentence


def test_a_run_that_saw_the_task_running_tested_the_cache():
    polls = [poll(0.3, 0.31, "PENDING", 1), poll(0.6, 0.61, "PENDING", 2)]
    assert untested_because(evidence(polls), FINAL, None) is None


def test_a_result_that_could_expire_before_any_read_tested_nothing():
    polls = [poll(0.3, 0.31, "PENDING", 1), poll(2.9, 2.95, "PENDING", 2)]
    late = evidence(polls, origin=[0.31, 2.93])  # 1.73 s after the finish, lifetime 1 s
    assert "past the result's 1 s lifetime" in (untested_because(late, FINAL, 1.0) or "")
    in_time = evidence(polls, origin=[0.31, 1.5])
    assert untested_because(in_time, FINAL, 1.0) is None
    assert untested_because(late, FINAL, None) is None  # results that live on: not a question


def test_only_a_mismatch_is_inconclusive():
    scenario = scenarios.load("proxy-cache")  # none: expected hung
    run = evidence([poll(1.5, 1.6, "SUCCESS")])
    completed = judge(scenario, "none", Outcome.completed, run, seconds=2, final_states=FINAL)
    assert completed.untested is not None and completed.inconclusive and not completed.matched
    nonce = judge(scenario, "nonce", Outcome.completed, run, seconds=2, final_states=FINAL)
    assert nonce.untested is not None and nonce.matched and not nonce.inconclusive


def test_hang_proof_is_counted_in_polls():
    scenario = scenarios.load("proxy-cache")  # 3 s window, 250 ms polls
    assert hang_proof_polls(scenario.hang_window, scenario.poll_interval) == 8
    assert hang_proof_polls(scenario.hang_window, 5.0) == 1  # a slow poller: at least one


class StarvedClient:
    """A UI whose one poll is still on its way back (the machine is too busy to answer it)."""

    done = False
    task_id = TASK

    def __init__(self, answered_every: float | None, transport: str = "poll") -> None:
        self.started_at = time.time()
        self.strategy = SimpleNamespace(transport=transport)
        self.answered_every = answered_every

    @property
    def polls(self) -> list[Poll]:
        if self.answered_every is None:
            return []
        sent = self.started_at
        found = []
        while sent < time.time():
            found.append(Poll(len(found) + 1, sent, sent, "http://app", 200, "PENDING"))
            sent += self.answered_every
        return found


def never_finishing(window: float):
    scenario = scenarios.load("task-never-finishes")
    return scenario.model_copy(
        update={"hang_window": window, "poll_interval": window / 4, "task_duration": window / 2}
    )


NO_FINISH = SimpleNamespace(task_events=SimpleNamespace(finished_at=lambda _task: None))


def test_a_never_finishing_task_is_hung_only_once_the_ui_kept_asking():
    scenario = never_finishing(0.2)
    began = time.time()
    outcome = wait_for_outcome(
        StarvedClient(answered_every=0.05), scenario, NO_FINISH, lambda: None
    )
    assert outcome is Outcome.hung
    assert time.time() - began >= scenario.task_duration + scenario.hang_window


def test_a_starved_ui_with_no_answer_gets_three_windows_before_it_is_called_hung():
    # The CI failure: "hung, as expected" with no poll answered, 4 s after Start.
    scenario = never_finishing(0.2)
    began = time.time()
    outcome = wait_for_outcome(
        StarvedClient(answered_every=None), scenario, NO_FINISH, lambda: None
    )
    assert outcome is Outcome.hung
    assert time.time() - began >= scenario.task_duration + 3 * scenario.hang_window


def test_an_event_streams_one_message_proves_a_never_finishing_task_hung():
    scenario = never_finishing(0.2)
    client = StarvedClient(answered_every=100.0, transport="sse")  # one message, at the start
    began = time.time()
    assert wait_for_outcome(client, scenario, NO_FINISH, lambda: None) is Outcome.hung
    waited = time.time() - began
    assert scenario.task_duration + scenario.hang_window <= waited
    silent = StarvedClient(answered_every=None, transport="sse")
    began = time.time()
    assert wait_for_outcome(silent, scenario, NO_FINISH, lambda: None) is Outcome.hung
    assert time.time() - began >= scenario.task_duration + 3 * scenario.hang_window


def matrix_of(*rounds: dict[tuple[str, str], tuple[str, str, str | None]]) -> MatrixResult:
    """Rounds of (observed, expected, untested) per cell."""
    base = judge(
        scenarios.load("proxy-cache"),
        "none",
        Outcome.hung,
        evidence([poll(0.3, 0.31, "PENDING")]),
        seconds=4,
        final_states=FINAL,
    )
    result = MatrixResult(Path("."), ["proxy-cache"], ["none", "nonce"])
    for cells in rounds:
        result.rounds.append(
            {
                key: dataclasses.replace(
                    base,
                    fix=key[1],
                    observed=observed,
                    expected=expected,
                    matched=observed == expected,
                    untested=untested,
                )
                for key, (observed, expected, untested) in cells.items()
            }
        )
    return result


NONE, NONCE = ("proxy-cache", "none"), ("proxy-cache", "nonce")


def test_headline_counts_every_round_and_is_all_matched_only_when_ok():
    good = {NONE: ("hung", "hung", None), NONCE: ("completed", "completed", None)}
    bad = {NONE: ("completed", "hung", None), NONCE: ("completed", "completed", None)}
    assert matrix_of(good, good).headline() == (
        "all 2 cells matched their expected outcome in every one of 2 rounds"
    )
    flipped = matrix_of(bad, good)
    assert not flipped.ok
    assert flipped.flips == {NONE: ["completed", "hung"]}
    assert flipped.headline() == (
        "round 1: 1 of 2 cells did not match; round 2: 0 of 2 cells did not match; "
        "1 cell changed between rounds"
    )


def test_headline_counts_the_cells_run_again_in_one_sentence():
    good = {NONE: ("hung", "hung", None), NONCE: ("completed", "completed", None)}
    result = matrix_of(good)
    result.rounds[0][NONE].attempts = 2
    assert result.ok and result.headline() == (
        "all 2 cells matched their expected outcome; 1 cell run was repeated because the "
        "machine was too slow to test it"
    )
    result.rounds[0][NONCE].attempts = 2
    assert result.headline().endswith(
        "; 2 cell runs were repeated because the machine was too slow to test them"
    )


def test_a_cell_not_judged_is_neither_a_mismatch_nor_ok():
    unjudged = {NONE: ("completed", "hung", "too slow"), NONCE: ("completed", "completed", None)}
    result = matrix_of(unjudged)
    assert not result.mismatches and len(result.unjudged) == 1 and not result.ok
    assert result.headline() == (
        "0 of 2 cells did not match, 1 could not be judged (machine too slow)"
    )
    good = {NONE: ("hung", "hung", None), NONCE: ("completed", "completed", None)}
    assert matrix_of(unjudged, good).flips == {NONE: [NOT_JUDGED, "hung"]}


def test_a_read_from_before_the_finish_logged_after_it_does_not_blame_the_app():
    """Under load the app read PENDING just before the task finished and logged the request
    just after: the status stopped at the proxy, not at an app answering stale."""
    ev = evidence([poll(0.3, 0.31, "PENDING")], finished=1.2)
    ev.ui_state = "hung"
    late_log = {"time": T0 + 1.25, "state_read_at": T0 + 1.19, "state": "PENDING"}
    ev.origin_status_requests = [{"time": T0 + 0.3, "state": "PENDING"}, late_log]
    assert ev.stopped_at(Outcome.hung, FINAL) == "proxy"
    # A read after the finish that still said PENDING is the app's own fault.
    ev.origin_status_requests[1] = {**late_log, "state_read_at": T0 + 1.21}
    assert ev.stopped_at(Outcome.hung, FINAL) == "origin"


def test_a_poll_in_flight_at_the_verdict_is_not_counted_from_its_hops_records():
    """Each hop logs a request before the client reads its answer: at the verdict, the poll
    still in flight has a proxy (and origin) record but no poll. The counts are of the polls
    the client recorded: 2 polls, a store and a hit, not "2 of 2 from the cache"."""
    ev = evidence([poll(0.0, 0.01, "PENDING", 1), poll(0.25, 0.26, "PENDING", 2)])
    ev.origin_status_requests = [
        {"time": T0 + 0.011, "state_read_at": T0 + 0.005, "state": "PENDING"},
        {"time": T0 + 0.52, "state_read_at": T0 + 0.51, "state": "SUCCESS"},  # in flight
    ]
    ev.proxy_status_requests = [
        {"time": T0 + 0.009, "cache": "STORE"},
        {"time": T0 + 0.259, "cache": "HIT"},
        {"time": T0 + 0.509, "cache": "HIT"},  # the poll in flight
    ]
    assert (ev.from_cache, ev.reached_origin) == (1, 1)
    assert (evidence([]).from_cache, evidence([], origin=[0.1]).reached_origin) == (0, 1)
