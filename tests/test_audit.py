"""`lab audit` on real apps started from their commands, behind real mitmdumps: the verdicts,
the pages, bad flows (exit 2) and apps that die (exit 3), with nothing left running."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest

from tests.lab_helpers import (
    TINY_APP,
    LabProcess,
    assert_nothing_left,
    component,
    processes_with_token,
    tiny_flow,
)


def audit(tmp_path: Path, *args: str, timeout: float = 120) -> tuple[int, LabProcess]:
    with LabProcess(["audit", *args], tmp_path) as lab:
        code, _ = lab.finish(timeout)
    return code, lab


def only_run(tmp_path: Path) -> Path:
    (run,) = (tmp_path / "runs").iterdir()
    return run


@pytest.mark.stack
def test_the_story_bug_hangs_behind_the_corporate_cache_only(tmp_path):
    code, lab = audit(
        tmp_path, str(tiny_flow(tmp_path)), "--profiles", "corporate-cache,nginx-default", "--json"
    )
    assert code == 1, lab.stderr
    result = json.loads("\n".join(lab.stdout_lines))
    cells = {(c["profile"], c["strategy"]): c for c in result["cells"]}
    assert cells[("corporate-cache", "app")]["outcome"] == "hung"
    assert cells[("nginx-default", "app")]["outcome"] == "completed"
    hung = cells[("corporate-cache", "app")]["verdict"]
    assert hung["stopped_at"] == "proxy"
    assert "corporate-cache stored the answer" in hung["sentence"]
    assert hung["polls"]["from_cache"] >= 2
    # The app's own status answer, straight from it: no caching header at all.
    names = {name.lower() for name, _ in result["status_answer"]["headers"]}
    assert "cache-control" not in names
    run = only_run(tmp_path)
    assert (run / "audit.html").is_file() and (run / "audit.json").is_file()
    page = (run / "cells" / "corporate-cache--app" / "report.html").read_text("utf-8")
    assert "your app, polled directly" in page


@pytest.mark.stack
def test_the_fixed_app_completes_where_no_store_is_obeyed(tmp_path):
    code, lab = audit(
        tmp_path,
        str(tiny_flow(tmp_path, "--cache-control no-store")),
        "--profiles",
        "corporate-cache,nginx-ignore-query,squid-default",
        "--client-fixes",
        "all",
    )
    assert code == 0, lab.output
    # The tiny app answers neither a nonce path segment nor a POST at its status URL: those
    # client fixes cannot be used on it, and the audit says so rather than count them.
    assert "audit: 9 of 9 cells completed" in lab.output
    assert "path-nonce: not used: the app does not answer GET" in lab.output
    assert "post: not used: the app does not answer POST" in lab.output


@pytest.mark.stack
@pytest.mark.parametrize(
    ("broken", "task_id", "field", "problem"),
    [
        ("", "task_id", "start.task_id", "no task id at 'task_id'"),
        ("--broken not-json", "id", "start.task_id", "not JSON"),
        ("--broken status-not-json", "header:Location", "status.state", "not JSON"),
    ],
)
def test_a_flow_that_does_not_fit_the_app_is_bad_input(tmp_path, broken, task_id, field, problem):
    code, lab = audit(
        tmp_path, str(tiny_flow(tmp_path, broken, task_id)), "--profiles", "corporate-cache"
    )
    assert code == 2, lab.stderr
    assert lab.stdout_lines == []
    errors = [line for line in lab.stderr_lines if line.startswith("error:")]
    assert len(errors) == 1, lab.stderr
    assert f"field '{field}'" in errors[0] and problem in errors[0] and "tiny.toml" in errors[0]


@pytest.mark.stack
def test_an_app_command_that_exits_is_exit_3_with_its_log(tmp_path):
    code, lab = audit(tmp_path, str(tiny_flow(tmp_path, "--broken exit")))
    assert code == 3, lab.stderr
    assert "error: app-web: exited with code 4" in lab.stderr
    assert "cannot start, configured to fail" in lab.stderr  # the log's tail
    assert "evidence kept in" in lab.stderr


@pytest.mark.stack
def test_an_app_url_nobody_answers_is_exit_3(tmp_path):
    from tests.lab_helpers import free_loopback_port

    code, lab = audit(tmp_path, "--app-url", f"http://127.0.0.1:{free_loopback_port()}")
    assert code == 3, lab.stderr
    assert "no HTTP answer" in lab.stderr


def test_the_audit_command_is_documented():
    from click.testing import CliRunner

    from lab.cli import main

    help_text = CliRunner().invoke(main, ["audit", "--help"]).output
    for option in ("--app-url", "--app-cmd", "--procfile", "--profiles", "--client-fixes"):
        assert option in help_text
    assert sys.executable  # the flows' {python}


@pytest.mark.stack
def test_a_sigkilled_audit_takes_the_users_app_along(tmp_path):
    """The user's app runs as the child of `/bin/sh -c`, which the kernel's death signal does
    not reach: it served on after a SIGKILLed lab until the group guard (group_guard.py)."""
    flow = tiny_flow(tmp_path, "--seconds 30")
    with LabProcess(["audit", str(flow), "--profiles", "corporate-cache"], tmp_path) as lab:
        lab.wait_for_stderr("all up after")
        app = [p for p in processes_with_token(lab.token) if str(TINY_APP) in p.cmdline()]
        assert len(app) == 1 and app[0].parent().name() == "sh"  # the shell's child
        lab.proc.kill()  # no chance to clean up: the kernel's parent-death signal must do it
        lab.proc.wait()
        assert_nothing_left(lab.token, within=15)


@pytest.mark.stack
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_audit_stops_the_app_and_every_proxy(tmp_path, sig):
    flow = tiny_flow(tmp_path, "--seconds 30")  # cells that last longer than the test
    with LabProcess(
        ["audit", str(flow), "--profiles", "corporate-cache,nginx-default"], tmp_path
    ) as lab:
        lab.wait_for_stderr("all up after")
        for name in ("app-web", "proxies-1"):
            assert component(lab.token, name), name
        lab.proc.send_signal(sig)
        code, out = lab.finish()
        assert code == 130, lab.stderr
        assert "interrupted: every process of the audit was stopped" in lab.stderr
        assert out == ""
