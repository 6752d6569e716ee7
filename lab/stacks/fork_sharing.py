"""The fork servers (lab.stacks.forkserver) a lab process shares: one a family for all its
runs, kept between a test session's tests, and handed down to the labs a test session starts."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from lab.stacks.fork_jobs import Family
from lab.stacks.forkserver import NAME, ForkServer, ServerProcess


class SharedServers:
    """One server a family for the whole lab process, shared by its runs: a matrix's cells with
    stacks of their own each have a Supervisor, and a server each would cost more than it saves.
    The first run that needs one starts it, or connects to the one a lab handed down
    (HANDED_DOWN); the last one using it stops it, unless `keep_idle` (a test session keeps
    them for its tests: a server's start is a second of CPU)."""

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
        listen_in: Path | None = None,
    ) -> ForkServer:
        """The server for `family`, started now if there is none or it died (see
        ForkServer); `release` it when the run stops. A server started now with `listen_in`
        takes other labs' requests at listen_in/FAMILY.sock."""
        with self._lock:
            server = self._servers.get(family.name)
            if server is None or not server.alive():
                server = None if listen_in else handed_down(family)
                if server is None:
                    listener = _listener(listen_in / f"{family.name}.sock") if listen_in else None
                    server = ForkServer.start(
                        run_id, make_process, stop_process, family.preload, listener
                    )
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


# The folder of the fork servers a lab handed down to the labs it starts (a test session's
# `python -m lab` runs), a socket a family: FAMILY.sock. Each of those labs would otherwise start
# servers of its own, a CPU-second or more of imports each.
HANDED_DOWN = "LAB_FORK_SERVERS"


def handed_down(family: Family) -> ForkServer | None:
    folder = os.environ.get(HANDED_DOWN)
    if not folder:
        return None
    log = Path(folder) / f"{NAME}-{family.name}.log"  # as the Supervisor that started it names it
    return ForkServer.connect(Path(folder) / f"{family.name}.sock", log)


def _listener(path: Path) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a server before it died
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen()
    return listener


shared = SharedServers()
