"""`python -m lab.stacks.leash --lab-pid PID --grace S [--keep-in DIR] ARGV...`: runs a
command as its child and takes its whole process group down when the lab goes, even when the
lab is killed with SIGKILL; once the command has ended, its folder (the leash's working folder)
is moved into DIR, the run folder.

The lab's children die with it through the kernel's parent-death signal (PR_SET_PDEATHSIG, set
in lab/stacks/processes.py), but two kinds of process never get it, and lived on after a
SIGKILLed lab (both seen):
- a process that changes its user: the kernel clears the signal (prctl(2)), as in a real
  product started as root (Squid);
- a child of the lab's child: the signal is not inherited, as in the user's app, which runs as
  the child of `/bin/sh -c`.

The leash never changes user and is the lab's own child, so it keeps the death signal. It leads
the process group: the Supervisor's SIGTERM and SIGKILL to the group reach the command as
before, and the leash only waits. A stop signal that comes when the lab is no longer its
parent is the death signal, which nobody else got: the leash sends SIGTERM to the whole group,
and SIGKILL after the grace.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def command(argv: list[str], *, grace: float, keep_in: Path | None = None) -> list[str]:
    """The command line that runs `argv` on a leash to this process (the lab); `grace`: the
    command's stop grace (lab.stacks.processes.stop_grace_for)."""
    options = ["--lab-pid", str(os.getpid()), "--grace", f"{grace:g}"]
    if keep_in is not None:
        options += ["--keep-in", str(keep_in.resolve())]  # the leash runs in another folder
    return [sys.executable, "-m", __name__, *options, "--", *argv]


def move_folder(source: Path, target: Path) -> None:
    """Everything in `source` into `target`, then `source` gone; never an exception (the
    product's files are evidence, not a reason to fail)."""
    if not source.is_dir():
        return
    with contextlib.suppress(OSError):
        shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
    shutil.rmtree(source, ignore_errors=True)


def kill_the_rest_of_the_group() -> None:
    """SIGKILL to every other process of our group: the leash lives on to keep the folder.
    Linux (/proc), as the death signal that calls for it."""
    me, group = os.getpid(), os.getpgid(0)
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            # After the command's name, which may hold spaces: state, ppid, pgrp, ...
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == group:
                os.kill(int(entry), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.stacks.leash")
    parser.add_argument("--lab-pid", type=int, required=True, help="the lab: our parent")
    parser.add_argument(
        "--grace", type=float, required=True, help="seconds from SIGTERM to SIGKILL"
    )
    parser.add_argument("--keep-in", type=Path, help="move the working folder here at the end")
    parser.add_argument("argv", nargs="+", help="the command")
    args = parser.parse_args(argv)
    lab_gone = False

    def on_stop_signal(_signum: int, _frame: FrameType | None) -> None:
        nonlocal lab_gone
        if lab_gone or os.getppid() == args.lab_pid:
            return  # the lab signalled the whole group: the command got it too
        lab_gone = True
        signal.signal(signal.SIGALRM, lambda *_: kill_the_rest_of_the_group())
        signal.setitimer(signal.ITIMER_REAL, args.grace)
        os.killpg(0, signal.SIGTERM)  # this handler, here again, returns at once

    for sig in STOP_SIGNALS:
        signal.signal(sig, on_stop_signal)
    if os.getppid() != args.lab_pid:
        return 1  # the lab died before the handlers were in place: start nothing
    try:
        child = subprocess.Popen(args.argv)
    except OSError as exc:
        print(f"could not run {args.argv[0]}: {exc}", file=sys.stderr)
        return 127
    code = child.wait()
    if lab_gone:
        kill_the_rest_of_the_group()  # nobody else is left to stop what the command left
    if args.keep_in is not None:  # also when the lab was killed: nothing left in the temp folder
        move_folder(Path.cwd(), args.keep_in)
    return 128 - code if code < 0 else code  # killed by signal N: 128 + N, as a shell says


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
