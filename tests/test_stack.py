"""The real stack: worker, app server and mitmdump, driven by the lab's client."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.data import scenarios
from lab.data.scenarios import Outcome
from lab.stacks import brokers
from tests.lab_helpers import assert_nothing_left

pytestmark = pytest.mark.stack
# Tests that read the whole matrix: the first one to run waits for it (pytest-timeout counts
# a fixture's set-up in the test that needs it first).
WHOLE_MATRIX_TIMEOUT = 900

STORY_CELLS = [
    ("proxy-cache", "none"),
    ("proxy-cache", "nonce"),
    ("proxy-cache", "no-store"),
    ("rfc-cache", "none"),
    ("direct", "none"),
]
LOOKALIKES = {
    "no-worker": "worker",
    "task-never-finishes": "worker",
    "results-not-stored": "result backend",
}


def test_story_repro_outcome_and_evidence(story_repro):
    """`lab repro` of the story: one stack of its own, and its evidence in the run folder."""
    verdict = story_repro.verdict
    assert verdict.observed == "hung", verdict.sentence
    assert verdict.matched
    assert_nothing_left(story_repro.token)
    run_dir = Path(verdict.run_dir)
    assert json.loads((run_dir / "result.json").read_text())["observed"] == "hung"
    for evidence in (
        "worker.log",
        "app.log",
        "proxy.log",
        "task-events.jsonl",
        "origin-events.jsonl",
        "proxy-events.jsonl",
        "client.jsonl",
        "cpu.json",
        "report.html",
    ):
        assert (run_dir / evidence).exists(), evidence
    assert_story_evidence(verdict, Outcome.hung)


@pytest.mark.parametrize(("scenario_name", "fix"), STORY_CELLS, ids=lambda v: v)
@pytest.mark.timeout(WHOLE_MATRIX_TIMEOUT)
def test_story_cell_outcome_and_evidence(whole_matrix, scenario_name, fix):
    verdict = whole_matrix.result.last[(scenario_name, fix)]
    expected = scenarios.load(scenario_name).expected_for(fix)
    assert verdict.observed == expected.value, verdict.sentence
    assert verdict.matched
    cell_dir = Path(verdict.run_dir)
    assert json.loads((cell_dir / "result.json").read_text())["observed"] == expected.value
    assert (cell_dir / "client.jsonl").exists()
    assert_story_evidence(verdict, expected)


def assert_story_evidence(verdict, expected: Outcome) -> None:
    # Ground truth from the worker itself: the task really finished, whatever the UI saw.
    assert verdict.task["final_state"] == "SUCCESS"
    assert verdict.backend_state == "SUCCESS"
    polls = verdict.polls
    if expected is Outcome.hung:
        assert verdict.stopped_at == "proxy"
        assert polls["from_cache"] >= 1
        assert polls["reached_origin"] < polls["total"]
        assert verdict.first_stale_answer is not None
        assert verdict.first_stale_answer["state"] == "PENDING"
    if expected is Outcome.completed:
        assert verdict.stopped_at is None
        assert polls["from_cache"] == 0
        assert polls["reached_origin"] == polls["total"]


@pytest.mark.parametrize(("scenario_name", "hop"), LOOKALIKES.items(), ids=list(LOOKALIKES))
@pytest.mark.timeout(WHOLE_MATRIX_TIMEOUT)
def test_lookalike_hangs_at_its_own_hop(whole_matrix, scenario_name, hop):
    verdict = whole_matrix.result.last[(scenario_name, "none")]
    assert verdict.observed == "hung", verdict.sentence
    assert verdict.stopped_at == hop, verdict.sentence
    # No proxy: every poll reached the origin, which answered PENDING itself (one more may
    # have been in flight when the verdict came).
    assert verdict.polls["reached_origin"] >= verdict.polls["total"] > 0


@pytest.mark.matrix
@pytest.mark.timeout(WHOLE_MATRIX_TIMEOUT)
def test_whole_matrix_matches_every_expectation(whole_matrix):
    result = whole_matrix.result
    mismatches = [v.sentence for v in result.mismatches]
    assert not mismatches, "\n".join(mismatches)
    unjudged = [f"{v.scenario}/{v.fix}: {v.untested}" for v in result.unjudged]
    assert not unjudged, "too slow to judge after retries:\n" + "\n".join(unjudged)
    assert result.ok
    # Browser-only scenarios (the browser's own HTTP cache) are left out of the Python matrix.
    applicable = sum(
        len(sc.fixes)
        for sc in scenarios.load_all()
        if sc.runs_with("python")
        and (sc.default_broker != "redis" or brokers.redis_server_installed())
    )
    assert len(result.last) == applicable
    assert (result.run_dir / "matrix.json").exists()
    assert (result.run_dir / "matrix.md").exists()
    assert (result.run_dir / "matrix.html").exists()
    assert_nothing_left(whole_matrix.token)


@pytest.mark.timeout(WHOLE_MATRIX_TIMEOUT)
def test_each_result_fix_keeps_redis_flat_in_the_matrix(whole_matrix):
    """redis-oom in the whole matrix: the unfixed cells were refused by a full Redis; with each
    result backend fix the same stream completed, nothing was refused, and the keys ended
    where they started."""
    if not brokers.redis_server_installed():
        pytest.skip("redis-server is not installed")
    cells = {f: v for (s, f), v in whole_matrix.result.last.items() if s == "redis-oom"}
    assert cells, "redis-oom was not in the matrix"
    for fix, verdict in cells.items():
        assert verdict.broker == "redis", fix
        assert verdict.load is not None and verdict.redis is not None, fix
        if fix in ("none", "nonce"):
            assert verdict.observed == "errored" and verdict.stopped_at == "origin", fix
            assert verdict.redis["refused_writes"] > 0, fix
        else:
            assert verdict.observed == "completed", verdict.sentence
            assert verdict.load["refused"] == 0 and verdict.load["completed"], fix
            assert verdict.redis["refused_writes"] == 0 and verdict.redis["flat"], fix
