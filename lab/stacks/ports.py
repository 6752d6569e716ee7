"""Ports for servers that cannot listen on port 0 and report what they got (redis-server, a
mitmdump with several listeners).

The kernel hands out port-0 binds and every outgoing connection's local port from the same
ephemeral range: a port found free there and released is soon taken again by one of the
thousands of connections a matrix opens a second (seen: a Redis started mid-matrix failed
three times in a row with "Address already in use"). Ports below that range are only ever taken
by an explicit bind, so the lab picks there, checks each one, and the caller still retries a
port lost to another program in between.

Other labs on the machine pick in the same range, and a port is free from its pick until its
server binds it, which for a real product configured before the app starts is seconds (seen:
two labs of one test run were given the same port, and nginx found it taken). So each port
handed out is also claimed, as a lock on one byte of a file all labs share (its offset is the
port), until the process exits: no other lab is given it meanwhile, and the kernel drops the
claims of a lab that dies however it dies.
"""

from __future__ import annotations

import fcntl
import os
import random
import socket
import tempfile
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from lab.data.errors import ComponentError
from lab.stacks.processes import Component, Supervisor

LOOPBACK = "127.0.0.1"
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 20_000  # well above the well-known and most registered service ports
FALLBACK_EPHEMERAL_START = 32_768  # Linux's default, when /proc does not say
T = TypeVar("T")  # what a launch picked: a port, or a port per listener
CLAIMS_FILE = Path(tempfile.gettempdir()) / "proxy-cache-lab-ports.lock"
# A pytest worker picks ports for hours: beyond this many, its oldest claims go (each was
# bound long ago, or never will be).
MOST_CLAIMS = 2048


def ephemeral_start() -> int:
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return FALLBACK_EPHEMERAL_START


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """`count` distinct ports that could be bound on `host` just now and that no other lab was
    given (Claims), outside the ephemeral range when it leaves room (else wherever the kernel
    finds one)."""
    top = ephemeral_start()
    chosen: list[int] = []
    if top - LOWEST >= 1000:
        candidates = random.sample(range(LOWEST, top), k=min(top - LOWEST, 50 * count))
        for port in candidates:
            if len(chosen) == count:
                break
            if _bindable(host, port) and claims.claim(port):
                chosen.append(port)
    while len(chosen) < count:  # no room below the range: the kernel's choice, racy as it is
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        if port not in chosen:
            chosen.append(port)
    return chosen


def free_port(host: str = LOOPBACK) -> int:
    return free_ports(1, host)[0]


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def listens_itself(component: Component, port: int) -> bool:
    """Whether `component`, or a process under it, listens on `port`. A server that answers
    there may be another program that took the port: another lab's Redis answers PING, and a
    product that cannot bind tries again for seconds before it exits (seen: nginx taken for
    ready while another lab listened on its port, and every cell of its profile errored).
    Where a process cannot be looked into, it is taken on trust, as before this check."""
    import psutil

    try:
        top = psutil.Process(component.pid)
        tree = [top, *top.children(recursive=True)]
    except psutil.Error:
        return False
    unknown = False
    for proc in tree:
        try:
            listening = proc.net_connections(kind="tcp")
        except psutil.AccessDenied:
            unknown = True
            continue
        except psutil.Error:
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in listening):
            return True
    return unknown


class Claims:
    """The ports this process was given, each claimed as a POSIX record lock on byte PORT of
    CLAIMS_FILE. Record locks belong to the process, so threads share its claims (kept in a
    set here), a forked child holds none of them, and closing any descriptor of the file would
    drop them all: it is opened once a process, and never closed."""

    def __init__(self, path: Path = CLAIMS_FILE, most: int = MOST_CLAIMS) -> None:
        self.path = path
        self.most = most
        self._lock = threading.Lock()
        self._pid = 0
        self._fd: int | None = None
        self._held: deque[int] = deque()

    def claim(self, port: int) -> bool:
        """Claim `port` for this process: False if this process or another lab has it. Where
        the file cannot be shared (another user's, read-only), every claim succeeds."""
        with self._lock:
            if self._pid != os.getpid():  # new, or a forked child: its parent's claims are not its
                self._pid, self._fd, self._held = os.getpid(), self._open(), deque()
            if port in self._held:
                return False
            if self._fd is None:
                return True
            try:
                fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, port)
            except OSError:
                return False
            self._held.append(port)
            while len(self._held) > self.most:
                fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, self._held.popleft())
            return True

    def _open(self) -> int | None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError:
            return None
        try:
            if os.fstat(fd).st_uid == os.getuid():
                os.fchmod(fd, 0o666)  # past the umask: other users' labs share it
        except OSError:
            pass
        return fd


claims = Claims()


def launch_retrying_taken_ports(
    sup: Supervisor,
    start: Callable[[], tuple[Component, T]],
    wait: Callable[[Component, T], None],
    again: Callable[[], tuple[Component, T]] | None = None,
    attempts: int = 3,
) -> tuple[tuple[Component, T], Callable[[], tuple[Component, T]]]:
    """Launch a server on ports picked with free_ports (`start`) now; return that launch and a
    function that waits for it (`wait`). One that exited because another program took a port in
    between is launched again on new ports (`again`, else `start`), up to `attempts` launches;
    the function returns the launch that came up.

    Until then such an exit is this starter's alone: waits for other components started
    meanwhile (a matrix's other proxy hosts, a stack warming beside running cells) pass over it.
    """
    relaunch = again or start

    def launch(how: Callable[[], tuple[Component, T]]) -> tuple[Component, T]:
        launched = how()
        launched[0].relaunched_if_port_taken = True
        return launched

    first = launch(start)

    def ready() -> tuple[Component, T]:
        started = first
        for attempt in range(1, attempts + 1):
            proc, ports = started
            try:
                wait(proc, ports)
                return started
            except ComponentError:
                if attempt == attempts or not proc.lost_its_port():
                    raise
                sup.components.remove(proc)
                started = launch(relaunch)
        raise AssertionError("unreachable")

    return first, ready
