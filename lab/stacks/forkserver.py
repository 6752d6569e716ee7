"""Fork servers for the lab's Python children: the sample app's web servers and workers, and
the proxies (lab-mitmdump).

Each of them spent most of its start importing Celery, kombu and Flask, or mitmproxy (0.3-1 s of
CPU), and a matrix or the test suite starts hundreds. A fork server imports them once; each start
is then a fork of it that runs the module as `python -m` (or the console script) would, in a
session of its own, with its own log, environment, working folder and death signal. The lab
signals that child by its pid as it would a child of its own; the server reaps it and tells the
lab its exit code (lab.stacks.fork_serve is the server's side).

One server a family (FAMILIES) serves the whole lab process: the first run that needs it starts
it, and the last one using it stops it, after every child it forked, since it reports their
exits. If it dies, its children die of their death signal as they would with the lab, and the
lab finds them gone."""

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

NAME = "forkserver"
SERVER_MODULE = "lab.stacks.fork_serve"  # the server's own side


@dataclass(frozen=True)
class Family:
    """Children one server forks: the modules they run (`python -m MODULE`), the console
    scripts of this package beside the interpreter and the module each runs, and what the
    server imports first: those modules and what they import only once running (a worker's
    bootsteps and transports, a proxy's layers and TLS), which each child would import again."""

    name: str
    modules: tuple[str, ...] = ()
    scripts: dict[str, str] = field(default_factory=dict)
    preload: tuple[str, ...] = ()


FAMILIES = (
    Family(
        "app",
        modules=("sample_app.serve", "sample_app.worker"),
        preload=(
            "sample_app.serve",
            "sample_app.worker",
            "celery.apps.worker",
            "celery.worker.consumer",
            "celery.concurrency.solo",
            "celery.concurrency.thread",
            "kombu.transport.redis",
            "kombu.transport.pyamqp",
            "sample_app.broker_transport",
        ),
    ),
    # A proxy's start was a second of CPU, nearly all of it imports; forked, a twentieth.
    Family(
        "proxy",
        scripts={"lab-mitmdump": "proxies.lab_mitmdump"},
        preload=(
            "proxies.lab_mitmdump",
            "proxies.lab_listeners",
            "mitmproxy.proxy.server",
            "mitmproxy.proxy.layers",
            "mitmproxy.proxy.layers.http",
            "mitmproxy.net.tls",
            "mitmproxy.certs",
        ),
    ),
)


@dataclass(frozen=True)
class Job:
    """A command a fork server runs: its family, the module, and the child's `sys.argv` as
    `python -m MODULE` (runpy puts the module's file first) or the console script would set it."""

    family: Family
    module: str
    argv: list[str]


def forkable(argv: list[str]) -> Job | None:
    """What a fork server would run for `argv`; None if none can (another program, or a
    mitmdump other than this package's)."""
    for family in FAMILIES:
        if argv[:2] == [sys.executable, "-m"] and argv[2:3] and argv[2] in family.modules:
            return Job(family, argv[2], [argv[2], *argv[3:]])
        script = Path(argv[0]) if argv else Path()
        module = family.scripts.get(script.name)
        if module and script.parent == Path(sys.executable).parent:
            return Job(family, module, [argv[0], *argv[1:]])
    return None


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
    """The lab's side of one server: starts it and asks it for children. Runs share the lab
    process's one server (acquire, release)."""

    def __init__(
        self,
        run_id: str,
        make_process: Callable[[list[str], tuple[int, ...]], ServerProcess],
        stop_process: Callable[[ServerProcess], None],
        preload: tuple[str, ...],
    ) -> None:
        """`make_process(argv, pass_fds)`: the server's process, not started yet (a Component
        of lab.stacks.processes); `stop_process` stops it."""
        self.run_id = run_id  # the run that started it: its cpu.json counts the server's CPU
        self.users = 0
        ours, theirs = socket.socketpair()
        self._sock = ours
        self._changed = threading.Condition()
        self._exits: dict[int, int] = {}  # exit codes by request: a pid can be given again
        self._replies: dict[int, dict[str, Any]] = {}
        self._envs: dict[int, dict[str, str]] = {}  # of the children not known to have exited
        self.gone = False
        self._next_id = 0
        self._send_lock = threading.Lock()
        self._closed = threading.Event()
        argv = [sys.executable, "-m", SERVER_MODULE, str(theirs.fileno()), *preload]
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
        with self._changed:
            self._next_id += 1
            request_id = self._next_id
            self._envs[request_id] = env
        request = {
            "id": request_id,
            "name": name,
            "module": job.module,
            "argv": job.argv,
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
        return ForkedProcess(self, request_id, death_signal, time.monotonic() + timeout)

    def forked(self, request_id: int, deadline: float) -> int:
        """The pid of the child asked for with `request_id`, once it is forked."""
        with self._changed:
            while request_id not in self._replies:
                if self.gone:
                    raise ForkServerGone("it exited before it forked the child")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ForkServerGone("it did not fork the child in time")
                self._changed.wait(left)
            return self._replies[request_id]["pid"]

    def forked_now(self, request_id: int) -> int | None:
        with self._changed:
            reply = self._replies.get(request_id)
        return reply["pid"] if reply else None

    def children(self) -> list[tuple[int, dict[str, str]]]:
        """The pid and environment of each child forked and not known to have exited: /proc
        shows a forked child's environment as the server's."""
        with self._changed:
            return [
                (self._replies[request_id]["pid"], env)
                for request_id, env in self._envs.items()
                if request_id in self._replies
            ]

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
                        self._envs.pop(message["exited"], None)
                    else:
                        self._replies[message["id"]] = message
                self._changed.notify_all()


class SharedServers:
    """One server a family for the whole lab process, shared by its runs: a matrix's cells with
    stacks of their own each have a Supervisor, and a server each would cost more than it saves.
    The first run that needs one starts it; the last one using it stops it, unless `keep_idle`
    (a test session keeps them for its tests: a server's start is a second of CPU)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._servers: dict[str, ForkServer] = {}  # by family
        self.keep_idle = False

    def acquire(
        self,
        family: Family,
        run_id: str,
        make_process: Callable[[list[str], tuple[int, ...]], ServerProcess],
        stop_process: Callable[[ServerProcess], None],
    ) -> ForkServer:
        """The server for `family`, started now if there is none or it died (see
        ForkServer); `release` it when the run stops."""
        with self._lock:
            server = self._servers.get(family.name)
            if server is None or server.gone or not server.component.alive():
                server = ForkServer(run_id, make_process, stop_process, family.preload)
                self._servers[family.name] = server
            server.users += 1
            return server

    def release(self, server: ForkServer) -> None:
        """One run is done with `server`; the last one stops it, unless `keep_idle`."""
        with self._lock:
            server.users -= 1
            if server.users == 0 and not self.keep_idle:
                self._stop(server)

    def stop_idle(self) -> None:
        """Stop every server no run is using (`keep_idle` kept them)."""
        with self._lock:
            for server in [s for s in self._servers.values() if s.users == 0]:
                self._stop(server)

    def servers(self) -> list[ForkServer]:
        with self._lock:
            return list(self._servers.values())

    def _stop(self, server: ForkServer) -> None:
        server.stop()
        for name, kept in list(self._servers.items()):
            if kept is server:
                del self._servers[name]


shared = SharedServers()
