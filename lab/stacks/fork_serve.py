"""The fork server's own side (lab.stacks.forkserver is the lab's): `python -m
lab.stacks.fork_serve FD MODULE...` imports the modules, then forks a child for each request
that comes on the socket FD, and reports each child's exit there. Standard library only, so that
what it imports is what its children need.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import runpy
import select
import signal
import socket
import sys
import traceback
from collections.abc import Callable
from typing import Any

from lab.stacks.death_signal import _die_with_parent


def serve(sock: socket.socket, preload: list[str]) -> None:
    for module in preload:
        importlib.import_module(module)
    wakeup_r, wakeup_w = os.pipe()
    os.set_blocking(wakeup_w, False)
    signal.set_wakeup_fd(wakeup_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd hears of it
    buffer = b""
    children: dict[int, int] = {}  # request by pid: the lab knows a child by its request
    while True:
        readable, _, _ = select.select([sock, wakeup_r], [], [])
        if wakeup_r in readable:
            os.read(wakeup_r, 4096)
        _report_exits(sock, children)
        if sock in readable:
            chunk = sock.recv(65536)
            if not chunk:
                return  # the lab is gone; our children die of their death signal with us
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                request = json.loads(line)
                # The lab signals a child's process group by its pid: the pid goes out only
                # once the child leads a session of its own (a SIGTERM sent before then found
                # no group, and a stopped run waited for a proxy that never got it).
                in_session_r, in_session_w = os.pipe()
                pid = os.fork()
                if pid == 0:
                    os.close(in_session_r)
                    inherited = (wakeup_r, wakeup_w)
                    _become_child(request, sock, inherited, in_session_w, _die_with_parent)
                os.close(in_session_w)
                os.read(in_session_r, 1)  # b"" once the child closed its end (or died)
                os.close(in_session_r)
                children[pid] = request["id"]
                sock.sendall(json.dumps({"id": request["id"], "pid": pid}).encode() + b"\n")


def _report_exits(sock: socket.socket, children: dict[int, int]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        request_id = children.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        sock.sendall(json.dumps({"exited": request_id, "code": code}).encode() + b"\n")


def _become_child(
    request: dict[str, Any],
    sock: socket.socket,
    wakeup: tuple[int, int],
    in_session: int,
    die_with_parent: Callable[[int, int], None],
) -> None:
    """In the forked child: set up as Supervisor.add would for a new process, run the module
    as `python -m` would, and exit with its exit code. Never returns."""
    code = 1
    try:
        server_pid = os.getppid()
        sock.close()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in wakeup:
            os.close(fd)
        os.setsid()
        _name_self(request["name"])
        die_with_parent(request["death_signal"], server_pid)
        os.close(in_session)  # the server may now give the lab this pid
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(null)
        os.environ.clear()
        os.environ.update(request["env"])
        if request["cwd"]:
            os.chdir(request["cwd"])
        sys.argv = request["argv"]  # runpy puts the module's file first, as `python -m` does
        # Run as `python -m` runs it: its own code anew as __main__, what it imports as loaded.
        sys.modules.pop(request["module"], None)
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except BaseException:  # noqa: BLE001 - printed as Python prints an uncaught exception
        traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            atexit._run_exitfuncs()  # what an interpreter's exit runs (logging's flush)
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _name_self(name: str) -> None:
    """A forked child keeps the server's command line and, in /proc, its environment (the
    lab's markers say `forkserver`): its process name (`ps -o comm`, `top`, psutil's name())
    is the one thing of its own it can show, so it shows its component's name."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_name = 15
        ctypes.CDLL("libc.so.6").prctl(pr_set_name, name.encode()[:15], 0, 0, 0)


def _exit_code(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    print(value, file=sys.stderr)
    return 1


if __name__ == "__main__":
    serve(socket.socket(fileno=int(sys.argv[1])), sys.argv[2:])
