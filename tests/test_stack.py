"""The real stack: worker, app server and mitmdump, driven by the lab's client."""

from __future__ import annotations

import json
import uuid

import pytest

from lab import brokers, fixes, matrix, runner, scenarios
from lab.scenarios import Outcome
from tests.lab_helpers import TOKEN_VAR, processes_with_token

pytestmark = pytest.mark.stack

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


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    # Children copy the lab's environment: the token finds any of them left alive.
    value = uuid.uuid4().hex
    monkeypatch.setenv(TOKEN_VAR, value)
    return value


@pytest.mark.parametrize(("scenario_name", "fix"), STORY_CELLS, ids=lambda v: v)
def test_story_cell_outcome_and_evidence(tmp_path, token, scenario_name, fix):
    scenario = scenarios.load(scenario_name)
    verdict = runner.run(scenario, fix, tmp_path, progress=lambda _: None)

    expected = scenario.expected_for(fix)
    assert verdict.observed == expected.value, verdict.sentence
    assert verdict.matched
    assert not processes_with_token(token), "a process of the run is still alive"

    run_dir = next(tmp_path.iterdir())
    assert json.loads((run_dir / "result.json").read_text())["observed"] == expected.value
    for evidence in ("worker.log", "app.log", "task-events.jsonl", "origin-events.jsonl"):
        assert (run_dir / evidence).exists(), evidence
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
    if scenario.uses_proxy:
        assert (run_dir / "proxy-events.jsonl").exists()


@pytest.mark.parametrize(("scenario_name", "hop"), LOOKALIKES.items(), ids=list(LOOKALIKES))
def test_lookalike_hangs_at_its_own_hop(tmp_path, token, scenario_name, hop):
    scenario = scenarios.load(scenario_name)
    verdict = runner.run(scenario, "none", tmp_path, progress=lambda _: None)
    assert verdict.observed == "hung", verdict.sentence
    assert verdict.stopped_at == hop, verdict.sentence
    # No proxy: every poll reached the origin, which answered PENDING itself (one more may
    # have been in flight when the verdict came).
    assert verdict.polls["reached_origin"] >= verdict.polls["total"] > 0
    assert not processes_with_token(token)


def test_whole_matrix_matches_every_expectation(tmp_path, token):
    # Every fix: the page's poll fixes and the result backend fixes (redis-oom, on Redis).
    result = matrix.run_matrix(
        scenarios.load_all(), fixes.names(), tmp_path, progress=lambda _: None
    )
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
    assert not processes_with_token(token)
