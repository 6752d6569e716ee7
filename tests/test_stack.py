"""The real stack (worker, app server, mitmdump) for every shipped scenario and fix."""

from __future__ import annotations

import json
import os
import uuid

import pytest

from lab import runner, scenarios
from lab.scenarios import Outcome
from sample_app import strategies
from tests.lab_helpers import TOKEN_VAR, processes_with_token

pytestmark = pytest.mark.stack

CASES = [(name, fix) for name in scenarios.names() for fix in strategies.names()]


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    # Children copy the lab's environment: the token finds any of them left alive.
    value = uuid.uuid4().hex
    monkeypatch.setenv(TOKEN_VAR, value)
    return value


@pytest.mark.parametrize(("scenario_name", "fix"), CASES, ids=[f"{s}-{f}" for s, f in CASES])
def test_scenario_outcome_matches_expected(tmp_path, token, scenario_name, fix):
    scenario = scenarios.load(scenario_name)
    verdict = runner.run(scenario, fix, tmp_path, progress=lambda _: None)

    expected = scenario.expected_for(fix)
    assert verdict.observed == expected.value, verdict.sentence
    assert verdict.matched
    assert not processes_with_token(token), "a process of the run is still alive"

    run_dir = tmp_path / os.listdir(tmp_path)[0]
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
