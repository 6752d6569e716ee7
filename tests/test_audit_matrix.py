"""The audit against the lab's own matrix: the sample app, started from its server and worker
commands the way a user's app is, audited behind every profile that has a plain scenario, gives
the verdicts `lab matrix` gives for the same profiles and fixes."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.data import flows, scenarios
from lab.judging.advice import counts
from lab.runs import audit
from sample_app import strategies

SAMPLE_APP = """\
name = "sample-app-%(fix)s"
[app]
commands = [
  "{python} -m sample_app.serve --data-dir {data_dir} --port {port}",
  "{python} -m sample_app.worker --data-dir {data_dir} --concurrency 8",
]
cwd = "%(root)s"
[start]
path = "/tasks"
json = { fix = "%(fix)s", duration = %(duration)s }
[status]
path = "/tasks/{id}/status"
[polling]
interval_s = %(interval)s
hang_window_s = %(window)s
retries = %(retries)s
"""
CLIENT_FIXES = ["nonce", "path-nonce", "post", "request-no-cache"]
SERVER_FIX = "no-store"  # the story's header fix, chosen by the start request as the page does


def plain_scenarios() -> dict[str, scenarios.Scenario]:
    """Profile -> the scenario that is that profile in front of the plain sample app."""
    found = {sc.proxy: sc for sc in scenarios.load_all() if counts(sc)}
    timings = {(sc.task_duration, sc.poll_interval, sc.hang_window) for sc in found.values()}
    assert len(timings) == 1, "one audit flow per timing: the scenarios differ in timing now"
    return found


def sample_flow(tmp_path: Path, fix: str, like: scenarios.Scenario) -> flows.Flow:
    path = tmp_path / f"sample-{fix}.toml"
    path.write_text(
        SAMPLE_APP
        % {
            "fix": fix,
            "root": Path(__file__).resolve().parents[1],
            "duration": like.task_duration,
            "interval": like.poll_interval,
            "window": like.hang_window,
            # The page retries failed polls under every fix but the story's (the catalogue's
            # retry): the user's page, polled by the audit's `app` strategy, does the same.
            "retries": strategies.load().get(fix).retry.attempts,
        },
        "utf-8",
    )
    return flows.load(path)


@pytest.mark.stack
@pytest.mark.matrix
@pytest.mark.timeout(900)
def test_the_audit_of_the_sample_app_gives_the_matrix_verdicts(whole_matrix, tmp_path):
    by_profile = plain_scenarios()
    profiles = sorted(by_profile)
    like = next(iter(by_profile.values()))
    matrix = whole_matrix.result.last
    compared = 0
    differences: list[str] = []
    skipped: list[str] = []
    for fix, polled_with in (("none", ["app", *CLIENT_FIXES]), (SERVER_FIX, ["app"])):
        result = audit.run_audit(
            sample_flow(tmp_path, fix, like),
            profiles,
            polled_with,
            tmp_path / "runs",
            progress=lambda _line: None,
            concurrency=24,
        )
        for (profile, strategy), cell in result.cells.items():
            matrix_fix = fix if strategy == "app" else strategy
            verdict = matrix.get((by_profile[profile].name, matrix_fix))
            assert verdict is not None, (profile, matrix_fix)
            if cell.not_applicable or cell.outcome == audit.NOT_JUDGED or verdict.inconclusive:
                skipped.append(f"{profile} fix={matrix_fix}: {cell.outcome}/{verdict.untested}")
                continue  # the machine was too slow for one of them: nothing to compare
            compared += 1
            if cell.outcome != verdict.observed:
                differences.append(
                    f"{profile} fix={matrix_fix}: audit {cell.outcome}, matrix {verdict.observed}"
                    f" ({cell.verdict.sentence if cell.verdict else ''})"
                )
    assert not differences, "\n".join(differences)
    # Nearly every cell was judged on both sides (a few may be too slow on a busy machine).
    assert compared >= 0.9 * len(profiles) * (len(CLIENT_FIXES) + 2), "\n".join(skipped)
