"""This machine's addresses that other machines in a room could reach, for `lab up --host 0.0.0.0`.

A server bound to every interface is printed as `0.0.0.0`, which nobody can open. What a
participant needs is one of the machine's own IPv4 addresses: on an interface that is up, not
loopback (their 127.0.0.1 is their own machine) and not link-local (169.254.x.x: a network
that failed to get an address, rarely the room's). Of those, the one on the interface of the
default route is most likely the room's network (a laptop's Wi-Fi rather than a container
bridge). Finding it sends nothing: the kernel's routing table on Linux, else the source
address the kernel picks for a UDP socket `connect()`ed to a private address (a UDP connect
only chooses a route; no packet leaves).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

ROUTE_TABLE = Path("/proc/net/route")
UNSPECIFIED_HOSTS = {"0.0.0.0", "::"}  # every interface: the address to print is not the bind's
RTF_UP = 0x1
# Any private address off the usual home and classroom subnets: a UDP connect() to it makes the
# kernel pick the default route's source address (a connect() on UDP sends no packet).
PRIVATE_PROBE_TARGET = ("10.254.254.254", 9)


@dataclass(frozen=True)
class MachineAddress:
    ip: str
    interface: str | None  # None: an address given on the command line that no interface has
    default_route: bool = False  # on the default route's interface: likely the room's network


class InterfaceAddress(Protocol):
    """What psutil.net_if_addrs() gives for each address (only the fields used here)."""

    family: int
    address: str


class InterfaceStats(Protocol):
    """What psutil.net_if_stats() gives for each interface (only the field used here)."""

    isup: bool


def default_route_interface(route_table: str) -> str | None:
    """The interface of the IPv4 default route in /proc/net/route's text (lowest metric wins),
    or None when there is none."""
    best: tuple[int, str] | None = None
    for line in route_table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        iface, destination, flags, metric, mask = (
            fields[0],
            fields[1],
            fields[3],
            fields[6],
            fields[7],
        )
        try:
            is_default = int(destination, 16) == 0 and int(mask, 16) == 0
            up = int(flags, 16) & RTF_UP
            rank = int(metric)
        except ValueError:
            continue
        if is_default and up and (best is None or rank < best[0]):
            best = (rank, iface)
    return best[1] if best else None


def default_source_address(target: tuple[str, int] = PRIVATE_PROBE_TARGET) -> str | None:
    """The source address the kernel would use towards `target`, or None without a route.
    Sends nothing: connect() on a UDP socket only looks the route up."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(target)
            return str(sock.getsockname()[0])
        except OSError:
            return None


def reachable(
    interfaces: Mapping[str, Sequence[InterfaceAddress]],
    stats: Mapping[str, InterfaceStats],
    *,
    route_interface: str | None = None,
    route_source: str | None = None,
) -> list[MachineAddress]:
    """Each IPv4 address another machine could reach, the default route's first: on the
    interface `route_interface` names, or else the address `route_source` is."""
    found = []
    for name, addresses in interfaces.items():
        stat = stats.get(name)
        if stat is None or not stat.isup:
            continue
        for entry in addresses:
            if entry.family != socket.AF_INET:
                continue
            ip = ipaddress.IPv4Address(entry.address)
            if ip.is_loopback or ip.is_link_local or ip.is_unspecified:
                continue
            on_route = name == route_interface if route_interface else entry.address == route_source
            found.append(MachineAddress(entry.address, name, on_route))
    # Stable: the default route's first, the others in the order the system lists them.
    return sorted(found, key=lambda address: not address.default_route)


def machine_addresses() -> list[MachineAddress]:
    """This machine's reachable IPv4 addresses, as `reachable` says, read from the system."""
    import psutil

    try:
        route_interface = default_route_interface(ROUTE_TABLE.read_text())
        route_source = None
    except OSError:  # not Linux: ask the kernel which source address it would route from
        route_interface, route_source = None, default_source_address()
    return reachable(
        psutil.net_if_addrs(),
        psutil.net_if_stats(),
        route_interface=route_interface,
        route_source=route_source,
    )


def addresses_for(bind: str, found: Sequence[MachineAddress]) -> list[MachineAddress]:
    """The addresses a server bound to `bind` answers on, as participants would type them:
    every one in `found` for an unspecified bind, else the bind itself (with what `found`
    knows of it)."""
    if bind in UNSPECIFIED_HOSTS:
        return list(found)
    known = [address for address in found if address.ip == bind]
    return known or [MachineAddress(bind, None)]
