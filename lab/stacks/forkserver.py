"""Fork servers for the lab's Python children: the sample app's web servers and workers, and
the proxies (lab-mitmdump).

Each of them spent most of its start importing Celery, kombu and Flask, or mitmproxy (0.3-1 s of
CPU), and a matrix or the test suite starts hundreds. A fork server imports them once; each start
is then a fork of it that runs the module as `python -m` (or the console script) would, in a
session of its own, with its own log, environment, working folder and death signal. The lab
signals that child by its pid as it would a child of its own; the server reaps it and tells the
lab its exit code (lab.stacks.fork_serve is the server's side).

One server a family (lab.stacks.fork_jobs) serves the whole lab process (lab.stacks.fork_sharing):
the first run that needs it starts it, and the last one using it stops it, after every child it
forked, since it reports their exits. If it dies, its children die of their death signal as they
would with the lab, and the lab finds them gone. A test session hands its servers down to the
labs it starts: the server then also forks for them, and gives the children of a lab that dies
the death signal the kernel would have given them."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol

from lab.stacks.fork_jobs import Job

NAME = "forkserver"
SERVER_MODULE = "lab.stacks.fork_serve"  # the server's own side


class ServerProcess(Protocol):
    """The server's own process, as lab.stacks.processes runs it (a Component)."""

    name: str
    log_path: Path
    proc: Any

    @property
    def pid(self) -> int | None: ...

    def start(self) -> None: ...

    def alive(self) -> bool: ...


class ForkServerGone(Exception):
    """The server exited before it answered."""


NEVER_FORKED = 255  # the exit code of a child whose server died before forking it


class ForkedProcess:
    """A child of the fork server, as much of a subprocess.Popen as the Supervisor uses. It
    exists before the server has forked it (the first waits for the server's imports): its pid
    waits for that, its poll() does not."""

    def __init__(
        self, server: ForkServer, request_id: int, death_signal: int, deadline: float
    ) -> None:
        self.server = server
        self.request_id = request_id
        self.death_signal = death_signal
        self.deadline = deadline  # for the server's answer
        self.returncode: int | None = None
        self._pid: int | None = None

    @property
    def pid(self) -> int:
        """ForkServerGone if the server died before it forked this child, or did not answer by
        the deadline."""
        if self._pid is None:
            self._pid = self.server.forked(self.request_id, self.deadline)
        return self._pid

    def poll(self) -> int | None:
        if self.returncode is None:
            if self._pid is None:
                self._pid = self.server.forked_now(self.request_id)
            if self._pid is not None:
                code = self.server.exit_code(self)
            else:
                code = NEVER_FORKED if self.server.gone else None
            if code is not None:  # never back to None: another thread may have seen the exit
                self.returncode = code
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(f"forked child {self._pid}", timeout or 0.0)
            self.server.wait_for_news(left)
        return self.returncode  # type: ignore[return-value]


class ForkServer:
    """The lab's side of one server: starts it, or connects to one another lab handed down
    (lab.stacks.fork_sharing.HANDED_DOWN), and asks it for children. Runs share the lab
    process's one server (fork_sharing.SharedServers)."""

    def __init__(
        self,
        run_id: str | None,
        sock: socket.socket,
        log_path: Path,
        component: ServerProcess | None = None,
        stop_process: Callable[[ServerProcess], None] | None = None,
    ) -> None:
        """Use `start` or `connect`."""
        self.run_id = run_id  # the run that started it: its cpu.json counts the server's CPU
        self.log_path = log_path
        self.component = component  # None: a server another lab started and handed down
        self.users = 0
        self._sock = sock
        self._changed = threading.Condition()
        self._exits: dict[int, int] = {}  # exit codes by request: a pid can be given again
        self._replies: dict[int, dict[str, Any]] = {}
        self.gone = False
        self._next_id = 0
        self._send_lock = threading.Lock()
        self._closed = threading.Event()
        self._stop_process = stop_process

    @classmethod
    def start(
        cls,
        run_id: str,
        make_process: Callable[[list[str], tuple[int, ...]], ServerProcess],
        stop_process: Callable[[ServerProcess], None],
        preload: tuple[str, ...],
        listener: socket.socket | None = None,
    ) -> ForkServer:
        """Start a server that imports `preload`. `make_process(argv, pass_fds)`: the server's
        process, not started yet (a Component of lab.stacks.processes); `stop_process` stops
        it. With `listener`, other labs can connect to it there."""
        ours, theirs = socket.socketpair()
        argv = [sys.executable, "-m", SERVER_MODULE, str(theirs.fileno())]
        passed = [theirs.fileno()]
        if listener is not None:
            argv += ["--listen", str(listener.fileno())]
            passed.append(listener.fileno())
        component = make_process([*argv, *preload], tuple(passed))
        server = cls(run_id, ours, component.log_path, component, stop_process)
        started: Future[None] = Future()

        def parent() -> None:
            # The kernel sends a death signal when the thread that started the process ends,
            # not the process: the first thread to need the server may be a cell's, which ends
            # long before the run. This one lives as long as the server.
            try:
                component.start()
                started.set_result(None)
            except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread
                started.set_exception(exc)
                return
            finally:
                theirs.close()
                if listener is not None:
                    listener.close()  # the server's now
            server._closed.wait()

        threading.Thread(target=parent, name="forkserver-parent", daemon=True).start()
        started.result()
        server._listen()
        return server

    @classmethod
    def connect(cls, path: Path, log_path: Path) -> ForkServer | None:
        """The server listening at `path`, which another lab started and handed down (its log:
        `log_path`); None if there is none (any more)."""
        sock = socket.socket(socket.AF_UNIX)
        try:
            sock.connect(str(path))
        except OSError:
            sock.close()
            return None
        server = cls(None, sock, log_path)
        server._listen()
        return server

    def _listen(self) -> None:
        threading.Thread(target=self._read, name="forkserver-reader", daemon=True).start()

    def alive(self) -> bool:
        return not self.gone and (self.component is None or self.component.alive())

    def spawn(
        self,
        name: str,
        job: Job,
        env: dict[str, str],
        cwd: Path | None,
        log: Path,
        death_signal: int,
        timeout: float,
    ) -> ForkedProcess:
        """Ask for a child that runs `job`, named `name` (see _name_self), and return it at
        once: the server forks it once it has imported its modules, by `timeout` seconds from
        now. ForkServerGone if the server is gone."""
        request_id = self._new_id()
        request = {
            "id": request_id,
            "name": name,
            "module": job.module,
            "argv": job.argv,
            "env": env,
            # The lab's own folder where none is given: a server handed down from another lab
            # works in that lab's, and the lab's paths may be relative to its own.
            "cwd": str((cwd or Path()).absolute()),
            "log": str(log.absolute()),
            "death_signal": int(death_signal),
        }
        self._send(request)
        return ForkedProcess(self, request_id, death_signal, time.monotonic() + timeout)

    def _new_id(self) -> int:
        with self._changed:
            self._next_id += 1
            return self._next_id

    def _send(self, message: dict[str, Any]) -> None:
        with self._send_lock:
            try:
                self._sock.sendall(json.dumps(message).encode() + b"\n")
            except OSError as exc:
                raise ForkServerGone(str(exc)) from None

    def forked(self, request_id: int, deadline: float) -> int:
        """The pid of the child asked for with `request_id`, once it is forked."""
        return self._reply(request_id, deadline, "fork the child")["pid"]

    def _reply(self, request_id: int, deadline: float, what: str) -> dict[str, Any]:
        with self._changed:
            while request_id not in self._replies:
                if self.gone:
                    raise ForkServerGone(f"it exited before it could {what}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ForkServerGone(f"it did not {what} in time")
                self._changed.wait(left)
            return self._replies[request_id]

    def forked_now(self, request_id: int) -> int | None:
        with self._changed:
            reply = self._replies.get(request_id)
        return reply["pid"] if reply else None

    def children(self, timeout: float = 10.0) -> list[tuple[int, dict[str, str]]]:
        """The pid and environment of each child it forked, for any lab, that has not exited:
        /proc shows a forked child's environment as the server's."""
        request_id = self._new_id()
        try:
            self._send({"id": request_id, "list": True})
        except ForkServerGone:
            return []  # its children died of their death signal with it
        reply = self._reply(request_id, time.monotonic() + timeout, "list its children")
        with self._changed:
            del self._replies[request_id]
        return [(pid, env) for pid, env in reply["children"]]

    def exit_code(self, child: ForkedProcess) -> int | None:
        # Looked up, not taken: threads poll one child at once (a run's liveness check and
        # its stop), and each must see the exit.
        with self._changed:
            if child.request_id in self._exits:
                return self._exits[child.request_id]
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
        """Stop the server, or leave one handed down; its children were stopped by their
        runs."""
        if self.component is not None and self._stop_process and self.component.alive():
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
                        self._replies[message["id"]] = message
                self._changed.notify_all()
