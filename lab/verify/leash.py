"""`python -m lab.verify.leash [--keep-in DIR] ARGV...`: runs a real product as its child, and
takes it down when the lab goes, even when the lab is killed with SIGKILL; once the product has
stopped, its folder (the leash's working folder) is moved into DIR, the run folder.

The lab's children die with it through the kernel's parent-death signal (PR_SET_PDEATHSIG,
set in lab/stacks/processes.py), but the kernel clears that signal in a process that changes
its user (prctl(2)), as Squid does when started as root: a lab killed with SIGKILL left its
Squid running (seen). The leash never changes user, so it keeps the death signal, and passes
every stop signal on to the product. It is in the product's process group, so the
Supervisor's SIGTERM and SIGKILL reach both as before.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def move_folder(source: Path, target: Path) -> None:
    """Everything in `source` into `target`, then `source` gone; never an exception (the
    product's files are evidence, not a reason to fail)."""
    if not source.is_dir():
        return
    with contextlib.suppress(OSError):
        shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
    shutil.rmtree(source, ignore_errors=True)


def main(argv: list[str]) -> int:
    keep_in = None
    if argv[:1] == ["--keep-in"] and len(argv) > 1:
        keep_in, argv = Path(argv[1]), argv[2:]
    if not argv:
        print("usage: python -m lab.verify.leash [--keep-in DIR] COMMAND [ARG...]", file=sys.stderr)
        return 2
    product = subprocess.Popen(argv)

    def forward(signum: int, _frame: FrameType | None) -> None:
        if product.poll() is None:
            product.send_signal(signum)

    for sig in FORWARDED:
        signal.signal(sig, forward)
    code = product.wait()
    if keep_in is not None:  # also when the lab was killed: nothing left in the temp folder
        move_folder(Path.cwd(), keep_in)
    return 128 - code if code < 0 else code  # killed by signal N: 128 + N, as a shell says


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
