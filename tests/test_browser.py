"""The browser client: the sample app's real page in Chromium (driven by Playwright), clicked and
watched, judged exactly like the Python client.

Needs Chromium (`apt-get install -y chromium-headless-shell` or `chromium`, or LAB_CHROMIUM)
and Playwright (`pip install 'playwright>=1.45'`): without them these tests are skipped, except
on CI (CI=true), where a missing browser is a failure. The whole browser matrix takes minutes
on 2 cores (a renderer process per cell): it runs on CI (and here with
LAB_TEST_BROWSER_MATRIX=1), once, and the tests about single browser cells read them from it;
otherwise they run their own cells, and a representative subset is compared with the Python
client.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from lab.clients import browser
from lab.data import scenarios
from lab.data.errors import (
    EXIT_BAD_INPUT,
    EXIT_COMPONENT,
    EXIT_INTERRUPTED,
    EXIT_MATCHED,
    ComponentError,
)
from lab.runs import matrix, repro
from lab.stacks.processes import COMPONENT_MARKER, RUN_MARKER
from sample_app import strategies
from tests.lab_helpers import LabProcess, assert_nothing_left, processes_with_token, wait_for

pytestmark = pytest.mark.stack
# Tests that read the whole matrix: the first one to run waits for it (pytest-timeout counts
# a fixture's set-up in the test that needs it first).
WHOLE_MATRIX_TIMEOUT = 900
ALL_UP = "all up after"
PNG = b"\x89PNG\r\n\x1a\n"

# The story's scenario (every fix), an RFC cache, no proxy at all, and a lookalike.
SUBSET = ["proxy-cache", "rfc-cache", "direct", "results-not-stored"]
# The browser's own HTTP cache: scenarios only the browser reproduces (no Python cells to compare
# with), each with the story's poller and its fix, and the fixes that tell the three apart.
BROWSER_ONLY = ["browser-heuristic-cache", "browser-max-age", "browser-header-stripping"]
BROWSER_ONLY_FIXES = ["none", "nonce", "no-store", "private", "expires-0"]


def browser_expected(scenario: scenarios.Scenario, fix: str) -> str:
    """What the browser should show: the scenario's own expectation for it (its
    [expected_by_client.browser] over [expected])."""
    return scenario.expected_for(fix, "browser").value


@pytest.fixture
def needs_a_browser() -> None:
    missing = browser.unavailable()
    if missing is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"the browser client cannot run on CI: {missing}")
    pytest.skip(f"the browser client cannot run here: {missing}")


def whole_matrix_wanted() -> bool:
    """The whole browser matrix takes minutes on 2 cores: on CI, or with
    LAB_TEST_BROWSER_MATRIX=1. The tests below read their cells from it when it runs, and run
    the few cells they need themselves when it does not."""
    return os.environ.get("LAB_TEST_BROWSER_MATRIX") == "1" or os.environ.get("CI") == "true"


@dataclass
class BrowserMatrix:
    result: dict  # `lab matrix --client browser --json`
    token: str
    code: int

    def cell(self, scenario: str, fix: str) -> dict:
        return next(
            v for v in self.result["rounds"][-1] if (v["scenario"], v["fix"]) == (scenario, fix)
        )


@pytest.fixture(scope="module")
def whole_browser_matrix(tmp_path_factory: pytest.TempPathFactory) -> BrowserMatrix | None:
    if not whole_matrix_wanted() or browser.unavailable() is not None:
        return None
    with LabProcess(
        ["matrix", "--client", "browser", "--json"], tmp_path_factory.mktemp("browser-matrix")
    ) as lab:
        code, stdout = lab.finish(timeout=800)
    return BrowserMatrix(json.loads(stdout), lab.token, code)


def one_cell(whole: BrowserMatrix | None, tmp_path: Path, scenario: str, fix: str) -> dict:
    """The cell's verdict from the whole browser matrix, or from a run of its own."""
    if whole is not None:
        return whole.cell(scenario, fix)
    verdict = repro.run(scenarios.load(scenario), fix, tmp_path, lambda _: None, client="browser")
    return verdict.to_json()


def client_polls(run_dir: Path) -> list[dict]:
    lines = (run_dir / "client.jsonl").read_text("utf-8").splitlines()
    return [event for event in map(json.loads, lines) if event["event"] == "poll"]


def assert_screenshot(run_dir: Path) -> None:
    shot = run_dir / "screenshot.png"
    assert shot.exists(), f"no screenshot in {run_dir}"
    assert shot.read_bytes().startswith(PNG)


@pytest.mark.usefixtures("needs_a_browser")
# -- the story, through the CLI as a user runs it --------------------------------------------
@pytest.mark.parametrize(("fix", "expected"), [("none", "hung"), ("nonce", "completed")])
def test_story_in_the_browser(tmp_path, fix, expected):
    with LabProcess(
        ["repro", "proxy-cache", "--fix", fix, "--client", "browser", "--json"], tmp_path
    ) as lab:
        code, stdout = lab.finish(timeout=90)
    assert code == EXIT_MATCHED, lab.stderr
    verdict = json.loads(stdout)
    assert verdict["client"] == "browser"
    assert verdict["observed"] == verdict["expected"] == expected, verdict["sentence"]
    run_dir = Path(verdict["run_dir"])
    assert_screenshot(run_dir)
    assert (run_dir / "browser.log").exists()
    polls = client_polls(run_dir)
    assert polls and all(p["client"] == "browser" for p in polls)
    assert verdict["polls"]["total"] == len(polls)
    if expected == "hung":
        # The proxy, not the browser's own cache, kept answering PENDING.
        assert verdict["stopped_at"] == "proxy"
        assert verdict["polls"]["from_cache"] >= 1
        assert verdict["first_stale_answer"]["state"] == "PENDING"
        assert not any(p["browser_cache"] for p in polls)
    else:
        assert polls[-1]["state"] == "SUCCESS"
        assert verdict["polls"]["from_cache"] == 0


@pytest.mark.usefixtures("needs_a_browser")
# -- what the browser's own cache does, recorded poll by poll ---------------------------------
@pytest.mark.timeout(WHOLE_MATRIX_TIMEOUT)
def test_browser_cache_revalidation_is_recorded(tmp_path, token, whole_browser_matrix):
    verdict = one_cell(whole_browser_matrix, tmp_path, "direct", "no-cache-etag")
    assert verdict["observed"] == "completed", verdict["sentence"]
    polls = client_polls(Path(verdict["run_dir"]))
    revalidated = [p for p in polls if p["browser_cache_kind"] == "revalidated"]
    # The browser kept the first answer and sent If-None-Match; the app said 304 until SUCCESS.
    assert revalidated, polls
    assert all(p["status"] == 304 and p["browser_cache"] for p in revalidated)
    assert all(p["state"] == "PENDING" for p in revalidated)
    assert polls[-1]["state"] == "SUCCESS" and polls[-1]["status"] == 200
    # every revalidation reached the app
    assert verdict["polls"]["reached_origin"] >= len(polls)
    assert_nothing_left(token)


@pytest.mark.usefixtures("needs_a_browser")
@pytest.mark.timeout(WHOLE_MATRIX_TIMEOUT)
def test_heuristic_freshness_in_the_browser_cache_hangs_without_any_proxy(
    tmp_path, token, whole_browser_matrix
):
    verdict = one_cell(whole_browser_matrix, tmp_path, "direct", "last-modified")
    assert verdict["observed"] == "hung", verdict["sentence"]
    assert verdict["stopped_at"] == "client"  # no proxy: the cache that lied is the browser's
    polls = client_polls(Path(verdict["run_dir"]))
    fresh = [p for p in polls if p["browser_cache_kind"] == "fresh"]
    assert len(fresh) == len(polls) - 1, polls  # only the first poll left the browser
    assert verdict["polls"]["reached_origin"] == 1
    assert_nothing_left(token)


@pytest.mark.usefixtures("needs_a_browser")
# -- the browser against the Python client -----------------------------------------------------
# Two matrices of 68 cells: 165 s on 2 cores shared with other runs (load average 10), where the
# default 120 s cut it short mid-matrix.
@pytest.mark.timeout(WHOLE_MATRIX_TIMEOUT)
def test_browser_matches_python_on_a_representative_subset(tmp_path, token):
    if whole_matrix_wanted():
        pytest.skip("the whole browser matrix runs here: it asserts every one of these cells")
    loaded = [scenarios.load(name) for name in SUBSET]
    fixes = strategies.names()
    python = matrix.run_matrix(loaded, fixes, tmp_path / "python", lambda _: None)
    began = time.monotonic()
    chromium = matrix.run_matrix(
        loaded, fixes, tmp_path / "browser", lambda _: None, client="browser"
    )
    seconds = time.monotonic() - began
    assert set(chromium.last) == set(python.last)
    differences = []
    for key, verdict in chromium.last.items():
        sc = scenarios.load(key[0])
        assert verdict.client == "browser"
        assert python.last[key].client == "python"
        want = browser_expected(sc, key[1])
        if verdict.observed != want:
            differences.append(f"{verdict.sentence} [python: {python.last[key].observed}]")
        assert python.last[key].observed == sc.expected_for(key[1], "python").value
        # The matrix takes a screenshot where a cell did not match (here: none).
        assert not (Path(verdict.run_dir) / "screenshot.png").exists()
    assert not differences, "\n".join(differences)
    assert chromium.client == "browser"
    assert_nothing_left(token)
    print(f"browser subset: {len(chromium.last)} cells in {seconds:.1f} s")


@pytest.mark.usefixtures("needs_a_browser")
@pytest.mark.timeout(WHOLE_MATRIX_TIMEOUT)
def test_browser_only_scenarios_hang_on_the_browsers_own_cache(
    tmp_path, token, whole_browser_matrix
):
    loaded = [scenarios.load(name) for name in BROWSER_ONLY]
    assert all(sc.clients == ["browser"] for sc in loaded)
    if whole_browser_matrix is not None:
        cells = {
            (name, fix): whole_browser_matrix.cell(name, fix)
            for name in BROWSER_ONLY
            for fix in BROWSER_ONLY_FIXES
        }
    else:
        result = matrix.run_matrix(
            loaded, BROWSER_ONLY_FIXES, tmp_path, lambda _: None, client="browser"
        )
        cells = {key: verdict.to_json() for key, verdict in result.last.items()}
    assert len(cells) == len(BROWSER_ONLY) * len(BROWSER_ONLY_FIXES)
    wrong = []
    for (name, fix), verdict in cells.items():
        if verdict["observed"] != browser_expected(scenarios.load(name), fix):
            wrong.append(verdict["sentence"])
            continue
        if verdict["observed"] == "hung":
            # The first answer was kept by the browser itself: no later poll left it.
            polls = client_polls(Path(verdict["run_dir"]))
            assert verdict["polls"]["reached_origin"] == 1, verdict["sentence"]
            assert [p["browser_cache_kind"] for p in polls[1:]] == ["fresh"] * (len(polls) - 1)
    assert not wrong, "\n".join(wrong)
    assert_nothing_left(token)


@pytest.mark.usefixtures("needs_a_browser")
def test_the_debug_panel_shows_the_proxys_age_and_the_real_finish(tmp_path, token):
    verdict = repro.run(
        scenarios.load("proxy-cache"), "none", tmp_path, lambda _: None, client="browser"
    )
    assert verdict.observed == "hung", verdict.sentence
    run_dir = Path(verdict.run_dir)
    shown = [json.loads(line) for line in (run_dir / "client.jsonl").read_text().splitlines()]
    panel = next(event for event in shown if event["event"] == "panel")
    # What the page was told: the proxy's old copy, and how old it is.
    assert panel["status"].startswith("PENDING, served_at "), panel
    assert panel["age"].isdigit() and int(panel["age"]) >= 1, panel
    assert panel["date"].endswith(" GMT"), panel
    # What is true: the task finished a hang window before the verdict.
    assert re.fullmatch(r"finished \d+ s ago \(SUCCESS\)", panel["truth"]), panel
    assert int(panel["truth"].split()[1]) >= 2, panel
    # The panel's questions went through the proxy to the origin, uncached, and none of them
    # counts as a status poll.
    origin = [
        json.loads(line) for line in (run_dir / "origin-events.jsonl").read_text().splitlines()
    ]
    asked = [e for e in origin if e["endpoint"] == "debug_task"]
    assert asked and all(e["method"] == "POST" and e["cache_control"] == "no-store" for e in asked)
    status = [e for e in origin if (e["endpoint"] or "").startswith("status_")]
    assert verdict.polls["reached_origin"] == len(status) >= 1
    proxy = [json.loads(line) for line in (run_dir / "proxy-events.jsonl").read_text().splitlines()]
    through = [e for e in proxy if "/debug/tasks/" in e["url"]]
    assert through and all(e["cache"] != "HIT" for e in through)
    assert not any("/debug/" in poll["url"] for poll in client_polls(run_dir))
    assert_nothing_left(token)


@pytest.mark.usefixtures("needs_a_browser")
@pytest.mark.matrix
@pytest.mark.timeout(WHOLE_MATRIX_TIMEOUT)
def test_whole_browser_matrix_matches_every_expectation(whole_browser_matrix):
    if whole_browser_matrix is None:
        pytest.skip(
            "the whole browser matrix takes minutes on 2 cores: it runs on CI, or here with "
            "LAB_TEST_BROWSER_MATRIX=1"
        )
    result = whole_browser_matrix.result
    assert result["client"] == "browser"
    wrong = []
    for verdict in result["rounds"][-1]:
        want = browser_expected(scenarios.load(verdict["scenario"]), verdict["fix"])
        if verdict["observed"] != want:
            wrong.append(verdict["sentence"])
    assert not wrong, "\n".join(wrong)
    assert result["ok"], result["headline"]  # no cell left unjudged (too slow) either
    assert whole_browser_matrix.code == 0
    applicable = sum(len(sc.fixes) for sc in scenarios.load_all() if sc.runs_with("browser"))
    assert len(result["rounds"][-1]) == applicable
    # A screenshot where a cell did not match, none where it did (--screenshots mismatches).
    for verdict in result["rounds"][-1]:
        shot = Path(verdict["run_dir"]) / "screenshot.png"
        assert shot.exists() == (not verdict["matched"]), verdict["run_dir"]
    assert_nothing_left(whole_browser_matrix.token)


# -- processes: the browser is a child like any other ------------------------------------------
def browser_processes(token: str) -> list[psutil.Process]:
    found = []
    for proc in processes_with_token(token):
        try:
            if proc.environ().get(COMPONENT_MARKER) == "browser":
                found.append(proc)
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.mark.usefixtures("needs_a_browser")
def test_chromium_carries_the_run_markers_and_ctrl_c_stops_it(tmp_path):
    with LabProcess(["repro", "proxy-cache", "--client", "browser"], tmp_path) as lab:
        lab.wait_for_stderr(ALL_UP, timeout=60)
        chromium = browser_processes(lab.token)
        assert chromium, "no process carries PROXY_CACHE_LAB_COMPONENT=browser"
        assert all(p.environ().get(RUN_MARKER) for p in chromium)
        lab.proc.send_signal(signal.SIGINT)
        code, _ = lab.finish(timeout=30)
    assert code == EXIT_INTERRUPTED, lab.stderr


@pytest.mark.usefixtures("needs_a_browser")
def test_chromium_dying_mid_run_is_reported_and_the_rest_stopped(tmp_path):
    with LabProcess(["repro", "proxy-cache", "--client", "browser"], tmp_path) as lab:
        lab.wait_for_stderr(ALL_UP, timeout=60)
        main = next(
            p for p in browser_processes(lab.token) if not any("--type=" in a for a in p.cmdline())
        )
        main.kill()
        code, _ = lab.finish(timeout=30)
    assert code == EXIT_COMPONENT, lab.stderr
    assert "error: browser:" in lab.stderr


@pytest.mark.usefixtures("needs_a_browser")
def test_interrupted_browser_matrix_stops_its_cells_and_every_process(tmp_path):
    args = ["matrix", "--client", "browser", "--scenarios", ",".join(SUBSET)]
    with LabProcess(args, tmp_path) as lab:
        lab.wait_for_stderr("running", timeout=60)
        wait_for(lambda: browser_processes(lab.token), timeout=30, what="Chromium")
        lab.proc.send_signal(signal.SIGTERM)
        began = time.monotonic()
        code, _ = lab.finish(timeout=30)
        took = time.monotonic() - began
    assert code == EXIT_INTERRUPTED, lab.stderr
    assert took < 15, f"{took:.1f} s to stop"  # cells give up at once, pages waiting to open too


@pytest.mark.usefixtures("needs_a_browser")
def test_chromium_dies_with_the_lab_even_on_sigkill(tmp_path):
    with LabProcess(["repro", "proxy-cache", "--client", "browser"], tmp_path) as lab:
        lab.wait_for_stderr(ALL_UP, timeout=60)
        assert browser_processes(lab.token)
        lab.proc.kill()  # Playwright's driver sees its pipe close and closes the browser
        lab.proc.wait()
        assert_nothing_left(lab.token, within=20)  # Chromium and the lab's other children


# -- without a browser ---------------------------------------------------------------------------
def test_missing_chromium_is_a_clear_error_and_nothing_starts(tmp_path):
    missing = tmp_path / "no-chromium-here"
    with LabProcess(
        ["repro", "proxy-cache", "--client", "browser"],
        tmp_path,
        extra_env={"LAB_CHROMIUM": str(missing)},
    ) as lab:
        code, _ = lab.finish(timeout=30)
    assert code == EXIT_COMPONENT, lab.stderr
    if browser.playwright_missing() is None:
        assert "error: browser: Chromium not found" in lab.stderr
        assert "apt-get install -y chromium" in lab.stderr
    assert ALL_UP not in lab.stderr


def test_chromium_executable_lookup(tmp_path, lab_env):
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\n")
    lab_env("LAB_CHROMIUM", str(fake))
    with pytest.raises(ComponentError, match="Chromium not found"):
        browser.chromium_executable()  # not executable
    fake.chmod(0o755)
    assert browser.chromium_executable() == str(fake)


def test_a_scenario_for_one_client_is_bad_input_for_the_other(tmp_path):
    text = scenarios.path_for("rfc-cache").read_text("utf-8")  # it has no client_notes of its own
    only = tmp_path / "browser-only.toml"
    only.write_text(
        text.replace('name = "rfc-cache"', 'name = "browser-only"').replace(
            "[expected]",
            'clients = ["browser"]\nclient_notes = "about the browser cache"\n\n[expected]',
        ),
        "utf-8",
    )
    assert scenarios.load(str(only)).clients == ["browser"]
    with LabProcess(["repro", str(only), "--client", "python"], tmp_path) as lab:
        code, _ = lab.finish(timeout=30)
    assert code == EXIT_BAD_INPUT, lab.stderr
    assert "--client browser only" in lab.stderr
    assert "about the browser cache" in lab.stderr


def test_playwright_keeps_its_own_disabled_features():
    """Chromium keeps only the last --disable-features: ours must repeat Playwright's."""
    if browser.playwright_missing():
        pytest.skip("Playwright is not installed")
    import playwright

    bundle = Path(playwright.__file__).parent / "driver/package/lib/coreBundle.js"
    if not bundle.exists():
        pytest.skip("Playwright's driver bundle moved: check PLAYWRIGHT_DISABLED_FEATURES by hand")
    source = bundle.read_text("utf-8", errors="replace")
    start = source.find("disabledFeatures = [")
    if start < 0:
        pytest.skip("Playwright's feature list moved: check PLAYWRIGHT_DISABLED_FEATURES by hand")
    listed = source[start : source.find("]", start)]
    theirs = {line.split('"')[1] for line in listed.splitlines() if line.strip().startswith('"')}
    ours = next(f for f in browser.CHROMIUM_FLAGS if f.startswith("--disable-features="))
    assert theirs - {"msForceBrowserSignIn", "msEdgeUpdateLaunchServicesPreferredVersion"} <= set(
        ours.removeprefix("--disable-features=").split(",")
    )
