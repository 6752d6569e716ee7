"""The leash (lab/stacks/leash.py): what runs on it ends with the lab, even a SIGKILLed lab and
a grandchild that ignores SIGTERM, and its exit is the command's."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import uuid

import pytest

from lab.stacks import leash
from lab.stacks.processes import Supervisor
from tests.lab_helpers import TOKEN_VAR, assert_nothing_left, wait_for

# A lab in miniature: one command on the leash under a Supervisor, then nothing until killed.
LAB = """
import sys, time
from pathlib import Path
from lab.stacks import leash
from lab.stacks.processes import Supervisor
sup = Supervisor("leash-test", Path(sys.argv[1]))
sup.add("app-web", leash.command(["/bin/sh", "-c", sys.argv[2]], grace=1.0))
print("started", flush=True)
time.sleep(120)  # until the test kills it
"""
STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ignoring SIGTERM', flush=True); time.sleep(120)"
)


@pytest.mark.stack
@pytest.mark.parametrize(
    "shape",
    [
        "%s; echo never",  # the shell dies of the SIGTERM: the rest is killed at once
        "exec %s",  # the leash's own child ignores it: killed with the rest after the grace
    ],
)
def test_a_sigkilled_lab_takes_the_whole_group_along_even_what_ignores_sigterm(tmp_path, shape):
    """The shell's child gets no death signal, and this one ignores the leash's SIGTERM too."""
    token = uuid.uuid4().hex
    command = shape % f"{shlex.quote(sys.executable)} -c {shlex.quote(STUBBORN)}"
    lab = subprocess.Popen(
        [sys.executable, "-c", LAB, str(tmp_path), command],
        env={**os.environ, TOKEN_VAR: token},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert lab.stdout is not None and lab.stdout.readline().strip() == "started"
        log = tmp_path / "app-web.log"
        wait_for(lambda: log.exists() and "ignoring" in log.read_text(), 30, "the app to start")
        lab.kill()
        lab.wait(timeout=30)
        assert_nothing_left(token, within=15)
    finally:
        lab.kill()
        lab.wait(timeout=30)


@pytest.mark.stack
@pytest.mark.parametrize(("command", "code"), [("exit 3", 3), ("kill -TERM $$", 128 + 15)])
def test_the_leash_exits_as_its_command_does(tmp_path, command, code):
    sup = Supervisor("leash-exit", tmp_path)
    try:
        component = sup.add("app-web", leash.command(["/bin/sh", "-c", command], grace=1.0))
        assert component.proc is not None and component.proc.wait(timeout=30) == code
    finally:
        sup.stop_all()
