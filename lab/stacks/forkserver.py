"""A fork server for the lab's Python children: the sample app's web servers and workers.

Each of them spent most of its start importing Celery, kombu and Flask (0.3-0.5 s of CPU), and a
matrix or the test suite starts hundreds. The fork server imports them once; each start is then a
fork of it that runs the module as `python -m` would, in a session of its own, with its own log,
environment, working folder and death signal. The lab signals that child by its pid as it would a
child of its own; the server reaps it and tells the lab its exit code.

The server is a component of the run (`forkserver`), stopped after every child it forked: it
reports their exits. If it dies, its children die of their death signal as they would with the
lab, and the lab finds them gone.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import runpy
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol

# The modules a child may run, imported by the server before it forks, with what they import
# only once running (a worker's bootsteps, pools and transports): each child would import them
# again otherwise.
FORKABLE = ("sample_app.serve", "sample_app.worker")
PRELOAD = (
    *FORKABLE,
    "celery.apps.worker",
    "celery.worker.consumer",
    "celery.concurrency.solo",
    "celery.concurrency.thread",
    "kombu.transport.redis",
    "kombu.transport.pyamqp",
    "sample_app.broker_transport",
)
NAME = "forkserver"


class ServerProcess(Protocol):
    """The server's own process, as lab.stacks.processes runs it (a Component)."""

    log_path: Path
    proc: Any

    @property
    def pid(self) -> int | None: ...

    def start(self) -> None: ...

    def alive(self) -> bool: ...


class ForkServerGone(Exception):
    """The server exited before it answered."""


class ForkedProcess:
    """A child of the fork server, as much of a subprocess.Popen as the Supervisor uses."""

    def __init__(self, server: ForkServer, pid: int, death_signal: int) -> None:
        self.server = server
        self.pid = pid
        self.death_signal = death_signal
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.server.exit_code(self)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
            self.server.wait_for_news(left)
        return self.returncode  # type: ignore[return-value]


class ForkServer:
    """The lab's side of one server: starts it and asks it for children. Runs share the lab
    process's one server (acquire, release)."""

    def __init__(
        self,
        run_id: str,
        make_process: Callable[[list[str], tuple[int, ...]], ServerProcess],
        stop_process: Callable[[ServerProcess], None],
        preload: tuple[str, ...] = PRELOAD,
    ) -> None:
        """`make_process(argv, pass_fds)`: the server's process, not started yet (a Component
        of lab.stacks.processes); `stop_process` stops it."""
        self.run_id = run_id  # the run that started it: its cpu.json counts the server's CPU
        self.users = 0
        ours, theirs = socket.socketpair()
        self._sock = ours
        self._changed = threading.Condition()
        self._exits: dict[int, int] = {}
        self._replies: dict[int, dict[str, Any]] = {}
        self.gone = False
        self._next_id = 0
        self._send_lock = threading.Lock()
        self._closed = threading.Event()
        argv = [sys.executable, "-m", __name__, str(theirs.fileno()), *preload]
        self.component = make_process(argv, (theirs.fileno(),))
        self._stop_process = stop_process
        started: Future[None] = Future()

        def parent() -> None:
            # The kernel sends a death signal when the thread that started the process ends,
            # not the process: the first thread to need the server may be a cell's, which ends
            # long before the run. This one lives as long as the server.
            try:
                self.component.start()
                started.set_result(None)
            except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread
                started.set_exception(exc)
                return
            finally:
                theirs.close()
            self._closed.wait()

        threading.Thread(target=parent, name="forkserver-parent", daemon=True).start()
        started.result()
        threading.Thread(target=self._read, name="forkserver-reader", daemon=True).start()

    def spawn(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        cwd: Path | None,
        log: Path,
        death_signal: int,
        timeout: float,
    ) -> ForkedProcess:
        """Fork a child that runs `python -m argv[2] argv[3:]`, named `name` (see _name_self);
        ForkServerGone if the server died (its log says why) or did not answer in `timeout`
        seconds (the first child waits for the server's imports)."""
        with self._changed:
            self._next_id += 1
            request_id = self._next_id
        request = {
            "id": request_id,
            "name": name,
            "module": argv[2],
            "args": argv[3:],
            "env": env,
            "cwd": str(cwd) if cwd else None,
            "log": str(log),
            "death_signal": int(death_signal),
        }
        with self._send_lock:
            try:
                self._sock.sendall(json.dumps(request).encode() + b"\n")
            except OSError as exc:
                raise ForkServerGone(str(exc)) from None
        deadline = time.monotonic() + timeout
        with self._changed:
            while request_id not in self._replies:
                if self.gone:
                    raise ForkServerGone("it exited")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ForkServerGone(f"no answer in {timeout:g} s")
                self._changed.wait(left)
            reply = self._replies.pop(request_id)
        return ForkedProcess(self, reply["pid"], death_signal)

    def exit_code(self, child: ForkedProcess) -> int | None:
        with self._changed:
            if child.pid in self._exits:
                return self._exits.pop(child.pid)
            gone = self.gone
        if gone:
            # Nobody reports it any more: it died of its death signal, or is dying of it.
            try:
                os.kill(child.pid, 0)
            except ProcessLookupError:
                return -child.death_signal
        return None

    def wait_for_news(self, timeout: float | None) -> None:
        with self._changed:
            # Once the server is gone, news is a child found gone: look again now and then.
            self._changed.wait(0.05 if self.gone else timeout)

    def stop(self) -> None:
        """Stop the server; its children were stopped by their runs."""
        if self.component.alive():
            self._stop_process(self.component)
        self._closed.set()
        with contextlib.suppress(OSError):
            self._sock.close()

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = self._sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                with self._changed:
                    self.gone = True
                    self._changed.notify_all()
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            with self._changed:
                for line in lines:
                    message = json.loads(line)
                    if "exited" in message:
                        self._exits[message["exited"]] = message["code"]
                    else:
                        # An earlier child's exit under a pid the kernel has now given again
                        # is no news of this one.
                        self._exits.pop(message["pid"], None)
                        self._replies[message["id"]] = message
                self._changed.notify_all()


# One server for the whole lab process, shared by its runs: a matrix's cells with stacks of
# their own each have a Supervisor of their own, and a server each would cost more than it
# saves. The first run that needs one starts it; the last one using it stops it.
_shared_lock = threading.Lock()
_shared: ForkServer | None = None


def acquire(
    run_id: str,
    make_process: Callable[[list[str], tuple[int, ...]], ServerProcess],
    stop_process: Callable[[ServerProcess], None],
) -> ForkServer:
    """The lab process's fork server, started now if there is none or it died (see
    ForkServer); `release` it when the run stops."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared.gone or not _shared.component.alive():
            _shared = ForkServer(run_id, make_process, stop_process, PRELOAD)
        _shared.users += 1
        return _shared


def release(server: ForkServer) -> None:
    """One run is done with `server`; the last one stops it."""
    global _shared
    with _shared_lock:
        server.users -= 1
        if server.users == 0:
            server.stop()
            if _shared is server:
                _shared = None


# --- the server's side: `python -m lab.stacks.forkserver FD MODULE...` -----------------------


def serve(sock: socket.socket, preload: list[str]) -> None:
    import importlib

    # What each child needs from the lab, imported once here too.
    from lab.stacks.death_signal import _die_with_parent

    for module in preload:
        importlib.import_module(module)
    wakeup_r, wakeup_w = os.pipe()
    os.set_blocking(wakeup_w, False)
    signal.set_wakeup_fd(wakeup_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd hears of it
    buffer = b""
    while True:
        readable, _, _ = select.select([sock, wakeup_r], [], [])
        if wakeup_r in readable:
            os.read(wakeup_r, 4096)
        _report_exits(sock)
        if sock in readable:
            chunk = sock.recv(65536)
            if not chunk:
                return  # the lab is gone; our children die of their death signal with us
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                request = json.loads(line)
                pid = os.fork()
                if pid == 0:
                    _become_child(request, sock, (wakeup_r, wakeup_w), _die_with_parent)
                sock.sendall(json.dumps({"id": request["id"], "pid": pid}).encode() + b"\n")


def _report_exits(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        code = os.waitstatus_to_exitcode(status)
        sock.sendall(json.dumps({"exited": pid, "code": code}).encode() + b"\n")


def _become_child(
    request: dict[str, Any],
    sock: socket.socket,
    wakeup: tuple[int, int],
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
        sys.argv = [request["module"], *request["args"]]
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
