"""What `lab up` prints for the people who will use it: the page to open, the forward proxy, the
credentials, and the `lab probe` command, each with an address they can actually reach.

On loopback that is 127.0.0.1. Bound to every interface (`--host 0.0.0.0`), it is one of the
machine's own addresses (lab/stacks/addresses.py), the default route's first: `0.0.0.0` is no
address anyone can open.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from lab.stacks.addresses import UNSPECIFIED_HOSTS, MachineAddress
from lab.stacks.ports import LOOPBACK

PROBE_PATH = "/_cache-probe"  # where the sample app mounts cache_probe


@dataclass
class Workshop:
    """What `lab up` started; ports are on `bind`, the app on loopback behind the proxy."""

    app_url: str  # the app itself, on loopback: the proxy, on this machine, connects to it
    page_path: str  # "/?fix=none"
    run_dir: Path
    bind: str = LOOPBACK
    reverse_port: int | None = None  # the page through the proxy (None: no proxy)
    forward_port: int | None = None  # the proxy as a forward proxy (forward profiles only)
    credentials: str | None = None  # "lab:secret" when bound off loopback


def url_host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip  # an IPv6 literal in a URL is bracketed


def page_url(shop: Workshop, host: str) -> str:
    if shop.reverse_port is None:
        return f"{shop.app_url}{shop.page_path}"
    return f"http://{url_host(host)}:{shop.reverse_port}{shop.page_path}"


def forward_proxy(shop: Workshop, host: str) -> str | None:
    return None if shop.forward_port is None else f"{url_host(host)}:{shop.forward_port}"


def probe_command(shop: Workshop, host: str) -> str:
    """The `lab probe` a participant runs: through the forward proxy when there is one (the
    probe URL is then the app as the proxy reaches it), else at the page's own address."""
    login = f"{shop.credentials}@" if shop.credentials else ""
    if shop.forward_port is not None:
        proxy = f"http://{login}{url_host(host)}:{shop.forward_port}"
        return f"lab probe {shop.app_url}{PROBE_PATH} --proxy {proxy}"
    if shop.reverse_port is not None:
        return f"lab probe http://{login}{url_host(host)}:{shop.reverse_port}{PROBE_PATH}"
    return f"lab probe {shop.app_url}{PROBE_PATH}"


def announce(shop: Workshop, addresses: Sequence[MachineAddress], console: Console) -> None:
    """Print where to go. `addresses` are the ones the proxy answers on (addresses_for), the
    likely room's network first; empty when bound to every interface of a machine that has
    no network address."""
    if shop.bind in UNSPECIFIED_HOSTS:
        _print_addresses(shop.bind, addresses, console)
    # No address at all: nobody else can reach the machine, but it still answers on loopback.
    host = addresses[0].ip if addresses else LOOPBACK
    say = console.print
    say(f"Open this page in any browser:  [bold cyan]{escape(page_url(shop, host))}[/]")
    for other in addresses[1:] if shop.reverse_port is not None else ():
        say(f"  or, on {escape(_where(other))}: {escape(page_url(shop, other.ip))}")
    forward = forward_proxy(shop, host)
    if shop.credentials:
        user, password = shop.credentials.split(":", 1)
        say(f"Proxy authentication: {escape(shop.credentials)}")
        asks = "the page and the forward proxy ask" if forward else "the page asks"
        say(f"  ({asks} for user {escape(user)}, password {escape(password)})")
    if forward and shop.credentials:
        # Off this machine the app's own URL means nothing to a browser (and browsers send
        # 127.0.0.1 past any proxy): the forward proxy is for curl and lab probe.
        say(f"The forward proxy for curl or lab probe, from any machine: {escape(forward)}")
        say(
            f"  (behind it the app is at {escape(shop.app_url)}, as the proxy, on this machine, "
            "reaches it; browsers skip proxies for 127.0.0.1 unless set not to)"
        )
    elif forward:
        say("Or set this forward proxy in a browser and open the app directly: " + escape(forward))
    say(
        "Probe for a cache on the path, and which fixes get through it:  "
        f"[bold]{escape(probe_command(shop, host))}[/]"
    )
    say(f"Evidence: {escape(str(shop.run_dir))}   Stop with Ctrl-C.")


def _print_addresses(bind: str, addresses: Sequence[MachineAddress], console: Console) -> None:
    if not addresses:
        console.print(
            f"Listening on every interface ({escape(bind)}), but no interface that is up has a "
            "network address: nobody else can reach this machine until it joins the room's "
            "network. Meanwhile, on this machine:"
        )
        return
    if len(addresses) == 1:
        console.print(f"Listening on every interface ({escape(bind)}); this machine's address:")
    else:
        console.print(
            f"Listening on every interface ({escape(bind)}); this machine's addresses "
            "(participants use the one on the room's network):"
        )
    for address in addresses:
        console.print(f"  {escape(address.ip):<15}  {escape(_where(address))}")
    if len(addresses) > 1 and not any(address.default_route for address in addresses):
        console.print("  (no default route found: check which network the room is on)")


def _where(address: MachineAddress) -> str:
    if address.interface is None:
        return address.ip
    if address.default_route:
        return f"{address.interface}, the default route: likely the room's network"
    return address.interface
