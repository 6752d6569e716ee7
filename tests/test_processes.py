"""No process of the lab survives its run: after a normal run, Ctrl-C, a dying component, a
component that cannot start, or the lab itself being killed. Everything listens on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys

import psutil
import pytest

from lab.data.errors import EXIT_COMPONENT, EXIT_INTERRUPTED, EXIT_MATCHED
from tests.lab_helpers import (
    LabProcess,
    assert_nothing_left,
    component,
    component_name,
    processes_with_token,
    wait_for,
)

pytestmark = pytest.mark.stack
ALL_UP = "all up after"
# Each test runs the lab in a `with LabProcess(...)` block: leaving it asserts that no process
# of the run is left.


def test_json_run_prints_one_object_and_leaves_nothing(tmp_path):
    with LabProcess(["repro", "direct", "--json"], cwd=tmp_path) as lab:
        code, stdout = lab.finish()
    assert code == EXIT_MATCHED, lab.stderr
    result = json.loads(stdout)  # exactly one JSON object: json.loads rejects trailing data
    assert result["scenario"] == "direct"
    assert result["fix"] == "none"
    assert result["expected"] == result["observed"] == "completed"
    assert result["matched"] is True
    assert result["seconds"] > 0
    assert set(result["polls"]) >= {"total", "reached_origin", "from_cache"}
    assert (tmp_path / "runs").is_dir()


def test_every_component_listens_on_loopback_only(tmp_path):
    with LabProcess(["repro", "proxy-cache"], cwd=tmp_path) as lab:
        lab.wait_for_stderr(ALL_UP)
        listening = []
        for proc in processes_with_token(lab.token):
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    listening.append((component_name(proc), conn.laddr))
        names = {name for name, _ in listening}
        assert {"app", "proxy"} <= names, listening
        assert all(addr.ip == "127.0.0.1" for _, addr in listening), listening
        code, _ = lab.finish()
        assert code == EXIT_MATCHED, lab.stderr


def test_ctrl_c_mid_run_stops_every_process(tmp_path):
    with LabProcess(["repro", "proxy-cache"], cwd=tmp_path) as lab:
        lab.wait_for_stderr(ALL_UP)
        assert component(lab.token, "worker") and component(lab.token, "proxy")
        lab.proc.send_signal(signal.SIGINT)
        code, _ = lab.finish(timeout=20)
    assert code == EXIT_INTERRUPTED, lab.stderr
    assert "interrupted" in lab.stderr


def test_sigterm_mid_run_stops_every_process(tmp_path):
    with LabProcess(["repro", "proxy-cache"], cwd=tmp_path) as lab:
        lab.wait_for_stderr(ALL_UP)
        lab.proc.send_signal(signal.SIGTERM)
        code, _ = lab.finish(timeout=20)
    assert code == EXIT_INTERRUPTED, lab.stderr


def test_component_dying_mid_run_is_reported_and_the_rest_stopped(tmp_path):
    with LabProcess(["repro", "proxy-cache"], cwd=tmp_path) as lab:
        lab.wait_for_stderr(ALL_UP)
        worker = component(lab.token, "worker")
        assert worker is not None
        worker.kill()
        code, _ = lab.finish(timeout=20)
    assert code == EXIT_COMPONENT, lab.stderr
    assert "error: worker: exited with code" in lab.stderr
    assert "during the run" in lab.stderr


def test_component_that_cannot_start_is_named_with_its_log(tmp_path):
    fake = tmp_path / "broken-mitmdump"
    fake.write_text("#!/bin/sh\necho 'fake mitmdump: cannot bind' >&2\nexit 7\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    with LabProcess(
        ["repro", "proxy-cache"], cwd=tmp_path, extra_env={"LAB_MITMDUMP": str(fake)}
    ) as lab:
        code, _ = lab.finish(timeout=40)
    assert code == EXIT_COMPONENT, lab.stderr
    assert "error: proxy: exited with code 7 while starting" in lab.stderr
    assert "fake mitmdump: cannot bind" in lab.stderr  # the log's tail is shown


def test_children_die_with_the_lab_even_on_sigkill(tmp_path):
    with LabProcess(["repro", "proxy-cache"], cwd=tmp_path) as lab:
        lab.wait_for_stderr(ALL_UP)
        lab.proc.kill()  # no chance to clean up: the kernel's parent-death signal must do it
        lab.proc.wait()
        assert_nothing_left(lab.token, within=15)


def test_a_worker_busy_with_a_task_that_never_ends_dies_with_the_lab_on_sigkill(tmp_path):
    """On SIGTERM a Celery worker waits for its running task; this one never ends, so the
    kernel's parent-death signal for the worker must be one it cannot wait out."""
    with LabProcess(["repro", "task-never-finishes"], cwd=tmp_path) as lab:
        lab.wait_for_stderr(ALL_UP)
        wait_for(
            lambda: any(
                "task_started" in path.read_text("utf-8")
                for path in tmp_path.glob("runs/*/task-events*.jsonl")
            ),
            60,
            "the worker to start the task",
        )
        lab.proc.kill()
        lab.proc.wait()
        assert_nothing_left(lab.token, within=15)


def test_a_child_whose_lab_died_before_it_asked_for_the_death_signal_dies_at_once():
    # The kernel sends the parent-death signal only for a death after the prctl: a child whose
    # lab was killed between the fork and the prctl must notice (its parent is no longer the
    # lab) and die then, with the same signal.
    code = (
        "import signal; from lab.stacks.processes import _die_with_parent; "
        "_die_with_parent(signal.SIGKILL, 1)"  # 1: not our parent, as after the lab's death
    )
    done = subprocess.run([sys.executable, "-c", code], timeout=60)
    assert done.returncode == -signal.SIGKILL
    code = "import os, signal; from lab.stacks.processes import _die_with_parent; "
    code += "_die_with_parent(signal.SIGKILL, os.getppid())"  # the lab still there: carry on
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_a_death_signal_the_lab_itself_catches_still_ends_the_child_before_its_exec():
    # The child runs _die_with_parent with the lab's signal handlers, and the lab catches
    # SIGTERM. Caught there, the signal was forgotten at the exec: an app outlived its
    # SIGKILLed lab (a fresh-clone CI run).
    code = (
        "import signal, sys; from lab.stacks.processes import _die_with_parent; "
        "signal.signal(signal.SIGTERM, lambda *_: None); "  # as the lab's own handler
        "_die_with_parent(signal.SIGTERM, 1); sys.exit(3)"  # 3: the signal was swallowed
    )
    done = subprocess.run([sys.executable, "-c", code], timeout=60)
    assert done.returncode == -signal.SIGTERM


def test_a_ctrl_c_while_a_child_starts_comes_once_the_child_is_known(tmp_path, monkeypatch):
    # A Ctrl-C inside Popen (after the fork, before Popen returned) lost the child: the
    # Supervisor never stopped it. Held back, it interrupts the lab once the child is recorded.
    from lab.stacks import processes

    real_popen = subprocess.Popen

    def popen_then_ctrl_c(*args, **kwargs):
        proc = real_popen(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)  # lands before Popen has returned
        return proc

    monkeypatch.setattr(processes.subprocess, "Popen", popen_then_ctrl_c)
    sleeper = processes.Component(
        "sleeper",
        [sys.executable, "-c", "import time; time.sleep(60)"],
        tmp_path / "sleeper.log",
        dict(os.environ),
    )
    with pytest.raises(KeyboardInterrupt):
        sleeper.start()
    try:
        assert sleeper.proc is not None and sleeper.alive()
    finally:
        if sleeper.proc is not None:
            sleeper.proc.kill()
            sleeper.proc.wait(timeout=60)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
