"""The fork server's own side (lab.stacks.forkserver is the lab's): `python -m
lab.stacks.fork_serve FD [--listen FD] MODULE...` imports the modules, then forks a child for
each request that comes on the socket FD, or from a lab connected to the listening socket, and
reports each child's exit to the lab that asked for it. Standard library only, so that what it
imports is what its children need.
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
from dataclasses import dataclass
from typing import Any

from lab.stacks.death_signal import _die_with_parent


@dataclass
class Child:
    client: socket.socket | None  # None once the lab that asked for it is gone
    request_id: int
    death_signal: int
    env: dict[str, str]


def serve(sock: socket.socket, preload: list[str], listener: socket.socket | None) -> None:
    """Serve the lab on `sock`, and other labs that connect to `listener` (labs the first one
    handed the server down to: a test session's `python -m lab` runs). The server exits when
    the first lab is gone; another lab's children are sent their death signal when it is."""
    for module in preload:
        importlib.import_module(module)
    wakeup_r, wakeup_w = os.pipe()
    os.set_blocking(wakeup_w, False)
    signal.set_wakeup_fd(wakeup_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd hears of it
    buffers: dict[socket.socket, bytes] = {sock: b""}
    children: dict[int, Child] = {}  # by pid: a lab knows a child by its request
    while True:
        listening = [listener] if listener else []
        readable, _, _ = select.select([*buffers, *listening, wakeup_r], [], [])
        if wakeup_r in readable:
            os.read(wakeup_r, 4096)
        _report_exits(children)
        if listener in readable:
            buffers[listener.accept()[0]] = b""
        for client in [c for c in readable if c in buffers]:
            try:
                chunk = client.recv(65536)
            except OSError:
                chunk = b""
            if not chunk and client is sock:
                return  # the lab is gone; our children die of their death signal with us
            if not chunk:
                _client_gone(client, buffers, children)
                continue
            *lines, buffers[client] = (buffers[client] + chunk).split(b"\n")
            for line in lines:
                request = json.loads(line)
                if request.get("list"):
                    listed = [[pid, child.env] for pid, child in children.items()]
                    _send(client, {"id": request["id"], "children": listed})
                    continue
                pid = _fork(request, [*buffers, *listening], wakeup_r, wakeup_w)  # to close
                children[pid] = Child(
                    client, request["id"], request["death_signal"], request["env"]
                )
                _send(client, {"id": request["id"], "pid": pid})


def _fork(request: dict[str, Any], sockets: list[socket.socket], *wakeup: int) -> int:
    """Fork the child `request` asks for; its pid, once it leads a session of its own."""
    # The lab signals a child's process group by its pid: the pid goes out only once the child
    # leads a session of its own (a SIGTERM sent before then found no group, and a stopped run
    # waited for a proxy that never got it).
    in_session_r, in_session_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(in_session_r)
        _become_child(request, sockets, wakeup, in_session_w, _die_with_parent)
    os.close(in_session_w)
    os.read(in_session_r, 1)  # b"" once the child closed its end (or died)
    os.close(in_session_r)
    return pid


def _client_gone(
    client: socket.socket, buffers: dict[socket.socket, bytes], children: dict[int, Child]
) -> None:
    """A lab handed the server down to is gone: its children get the signal the kernel would
    have sent them had the lab been their parent."""
    del buffers[client]
    client.close()
    for pid, child in children.items():
        if child.client is client:
            child.client = None
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, child.death_signal)


def _send(client: socket.socket | None, message: dict[str, Any]) -> None:
    if client is not None:
        with contextlib.suppress(OSError):  # a lab that is gone; its EOF comes next
            client.sendall(json.dumps(message).encode() + b"\n")


def _report_exits(children: dict[int, Child]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        child = children.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        _send(child.client, {"exited": child.request_id, "code": code})


def _become_child(
    request: dict[str, Any],
    sockets: list[socket.socket],
    wakeup: tuple[int, ...],
    in_session: int,
    die_with_parent: Callable[[int, int], None],
) -> None:
    """In the forked child: set up as Supervisor.add would for a new process, run the module
    as `python -m` would, and exit with its exit code. Never returns."""
    code = 1
    try:
        server_pid = os.getppid()
        for sock in sockets:
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


def main(argv: list[str]) -> None:
    """FD [--listen FD] MODULE...: the lab's socket, a listening one where other labs connect,
    what to import."""
    sock = socket.socket(fileno=int(argv[0]))
    listener = None
    if argv[1:2] == ["--listen"]:
        listener = socket.socket(fileno=int(argv[2]))
        argv = [argv[0], *argv[3:]]
    serve(sock, argv[1:], listener)


if __name__ == "__main__":
    main(sys.argv[1:])
