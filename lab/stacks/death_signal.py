"""A child's death signal: what the kernel sends it when the lab dies (Linux), set up in the
child before it runs anything (lab.stacks.processes before an exec, lab.stacks.fork_serve after
a fork)."""

from __future__ import annotations

import ctypes
import os
import signal
import sys


def _die_with_parent(death_signal: int, parent_pid: int) -> None:
    # If the lab itself is killed with SIGKILL, its children get a signal from the kernel
    # instead of living on (Linux only; elsewhere the finally blocks have to do).
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        if death_signal != signal.SIGKILL:
            # Until exec the child keeps the lab's handlers, and the lab catches SIGTERM (in
            # Python: a flag to look at later). A death signal that came before the exec was
            # caught and then forgotten, and the app lived on after its lab had been SIGKILLed.
            libc.signal.argtypes = (ctypes.c_int, ctypes.c_void_p)
            libc.signal(death_signal, None)  # SIG_DFL
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, death_signal)
        # A lab killed between the fork and the prctl above sends no signal any more: the
        # child would live on (a worker outlived a lab SIGKILLed while it started stacks).
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), death_signal)
