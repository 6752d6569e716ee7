"""The lab's stop signals: a Ctrl-C that Python would swallow still stops the command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from lab.cli import output
from tests.lab_helpers import PROJECT_ROOT

# A Ctrl-C landing in a weakref callback, as one did in an import's module-lock callback
# during `lab verify`: Python prints "Exception ignored" and the program goes on.
SWALLOWED_CTRL_C = textwrap.dedent(
    """
    import time, weakref
    from lab.cli.output import install_stop_handlers
    if INSTALL:
        install_stop_handlers()

    class Thing:
        pass

    def landed_here(_ref):
        raise {exception}

    thing = Thing()
    ref = weakref.ref(thing, landed_here)
    del thing  # the callback runs here, and its exception is "ignored"
    deadline = time.monotonic() + {seconds}
    while time.monotonic() < deadline:
        time.sleep(0.01)
    print("ran to the end")
    """
)


def run(
    exception: str, install: bool = True, seconds: float = 1
) -> subprocess.CompletedProcess[str]:
    """`seconds`: how long the program goes on after the callback, if nothing stops it."""
    code = f"INSTALL = {install}\n" + SWALLOWED_CTRL_C.format(exception=exception, seconds=seconds)
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_ctrl_c_that_python_would_swallow_still_interrupts():
    done = run("KeyboardInterrupt", seconds=30)
    assert "ran to the end" not in done.stdout
    assert done.returncode == -2, done.stderr  # an uncaught KeyboardInterrupt, as Python ends
    assert "Exception ignored" not in done.stderr


def test_without_the_handlers_python_swallows_it():
    """What the handlers are for: this is Python's own behaviour."""
    done = run("KeyboardInterrupt", install=False)
    assert "ran to the end" in done.stdout
    assert "Exception ignored" in done.stderr


def test_any_other_ignored_exception_is_still_reported_as_python_does():
    done = run("ValueError('not an interrupt')")
    assert done.returncode == 0
    assert "ran to the end" in done.stdout
    assert "ValueError: not an interrupt" in done.stderr


def test_a_ctrl_c_inside_code_run_by_exec_ends_with_the_labs_exit_code(tmp_path):
    """CPython ends a `python -m` program by SIGINT (-2) after a KeyboardInterrupt raised in
    code exec() ran from a string, even a caught one. Here the interrupt lands in such code
    inside `lab list` (as one landed in a dataclass's definition during `lab verify`)."""
    (tmp_path / "sitecustomize.py").write_text(
        "from lab.data import scenarios\n"
        "def interrupted():\n"
        "    exec('raise KeyboardInterrupt')\n"
        "scenarios.load_all = interrupted\n",
        "utf-8",
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(PROJECT_ROOT)])}
    done = subprocess.run(
        [sys.executable, "-m", "lab", "list"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "interrupted" in done.stderr
    assert done.returncode == 130, done.stderr


def test_the_hook_is_installed_once_however_often_the_cli_runs_in_process(monkeypatch):
    # Not the hook as it is now: an earlier test of this process may have run main() already.
    def before(unraisable: object) -> None:
        pass

    monkeypatch.setattr(sys, "unraisablehook", before)  # restored after
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        output.install_stop_handlers()
        output.install_stop_handlers()
        assert sys.unraisablehook.func is output._interrupt_again
        assert sys.unraisablehook.args == (before,)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
