"""Ports for servers that cannot listen on port 0 and report what they got (redis-server, a
mitmdump with several listeners).

The kernel hands out port-0 binds and every outgoing connection's local port from the same
ephemeral range: a port found free there and released is soon taken again by one of the
thousands of connections a matrix opens a second (seen: a Redis started mid-matrix failed
three times in a row with "Address already in use"). Ports below that range are only ever taken
by an explicit bind, so the lab picks there, checks each one, and the caller still retries a
port lost to another program in between.
"""

from __future__ import annotations

import random
import socket
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


def ephemeral_start() -> int:
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return FALLBACK_EPHEMERAL_START


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """`count` distinct ports that could be bound on `host` just now, outside the ephemeral
    range when it leaves room (else wherever the kernel finds one)."""
    top = ephemeral_start()
    chosen: list[int] = []
    if top - LOWEST >= 1000:
        candidates = random.sample(range(LOWEST, top), k=min(top - LOWEST, 50 * count))
        chosen = [port for port in candidates if _bindable(host, port)][:count]
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
