"""`lab up` for a room: which of the machine's addresses it prints, and what it prints, from
interface data and addresses given here (nothing is bound and nothing is sent)."""

from __future__ import annotations

import io
import ipaddress
import re
import socket
from pathlib import Path
from types import SimpleNamespace

from rich.console import Console

from lab.runs.workshop_notice import Workshop, announce, probe_command
from lab.stacks.addresses import (
    MachineAddress,
    addresses_for,
    default_route_interface,
    default_source_address,
    machine_addresses,
    reachable,
)

# /proc/net/route as Linux writes it: a header, then hex fields (little-endian addresses).
ROUTES = """\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
eth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0
tun0\t00000000\t00000000\t0000\t0\t0\t0\t00000000\t0\t0\t0
wlan0\t0001A8C0\t00000000\t0001\t0\t0\t600\t00FFFFFF\t0\t0\t0
"""


def nic(address: str, family: int = socket.AF_INET) -> SimpleNamespace:
    return SimpleNamespace(family=family, address=address)


UP, DOWN = SimpleNamespace(isup=True), SimpleNamespace(isup=False)
LAPTOP = {
    "lo": [nic("127.0.0.1"), nic("::1", socket.AF_INET6)],
    "docker0": [nic("172.17.0.1")],
    "wlan0": [nic("192.168.1.23"), nic("fe80::1%wlan0", socket.AF_INET6), nic("aa:bb", 17)],
    "eth1": [nic("169.254.10.20")],  # link-local: a cable with no DHCP server behind it
    "vboxnet0": [nic("192.168.56.1")],  # down
}
LAPTOP_STATS = {"lo": UP, "docker0": UP, "wlan0": UP, "eth1": UP, "vboxnet0": DOWN}


# The address choice


def test_the_default_route_is_the_lowest_metric_default_that_is_up():
    assert default_route_interface(ROUTES) == "eth0"  # metric 100 beats wlan0's 600; tun0 is down
    only_wlan = "\n".join(line for line in ROUTES.splitlines() if not line.startswith("eth0"))
    assert default_route_interface(only_wlan) == "wlan0"


def test_no_default_route_is_none():
    header, docker, *_ = ROUTES.splitlines()
    assert default_route_interface(f"{header}\n{docker}\n") is None
    assert default_route_interface("") is None
    assert (
        default_route_interface(f"{header}\nwlan0\tnot-hex\t0\t0003\t0\t0\t0\t00000000\n") is None
    )


def test_reachable_addresses_are_ipv4_on_interfaces_that_are_up_the_default_route_first():
    found = reachable(LAPTOP, LAPTOP_STATS, route_interface="wlan0")
    assert found == [
        MachineAddress("192.168.1.23", "wlan0", default_route=True),
        MachineAddress("172.17.0.1", "docker0"),
    ]


def test_without_a_routing_table_the_source_address_marks_the_room():
    found = reachable(LAPTOP, LAPTOP_STATS, route_source="172.17.0.1")
    assert [(a.ip, a.default_route) for a in found] == [
        ("172.17.0.1", True),
        ("192.168.1.23", False),
    ]
    unknown = reachable(LAPTOP, LAPTOP_STATS)
    assert not any(a.default_route for a in unknown)


def test_a_machine_with_only_loopback_has_no_reachable_address():
    assert reachable({"lo": [nic("127.0.0.1")]}, {"lo": UP}, route_interface="lo") == []


def test_addresses_for_a_bind():
    found = reachable(LAPTOP, LAPTOP_STATS, route_interface="wlan0")
    assert addresses_for("0.0.0.0", found) == found
    assert addresses_for("172.17.0.1", found) == [MachineAddress("172.17.0.1", "docker0")]
    assert addresses_for("10.9.8.7", found) == [MachineAddress("10.9.8.7", None)]
    assert addresses_for("127.0.0.1", []) == [MachineAddress("127.0.0.1", None)]


def test_the_source_address_towards_loopback_is_loopback():
    # The same call as towards a private address; a UDP connect() sends no packet.
    assert default_source_address(("127.0.0.1", 9)) == "127.0.0.1"


def test_this_machines_addresses_are_never_loopback_or_link_local():
    for address in machine_addresses():
        ip = ipaddress.IPv4Address(address.ip)
        assert not ip.is_loopback and not ip.is_link_local, address


# The printed text


def printed(shop: Workshop, addresses: list[MachineAddress]) -> str:
    console = Console(file=io.StringIO(), record=True, width=100, highlight=False, soft_wrap=True)
    announce(shop, addresses, console)
    return console.export_text()


APP = "http://127.0.0.1:5001"
ROOM = MachineAddress("192.168.1.23", "wlan0", default_route=True)
DOCKER = MachineAddress("172.17.0.1", "docker0")


def forward_shop(bind: str, credentials: str | None = None) -> Workshop:
    return Workshop(APP, "/?fix=none", Path("runs/up"), bind, 6001, 7001, credentials)


def test_on_loopback_the_text_is_as_before_plus_the_probe_command():
    text = printed(forward_shop("127.0.0.1"), addresses_for("127.0.0.1", []))
    assert text.splitlines() == [
        "Open this page in any browser:  http://127.0.0.1:6001/?fix=none",
        "Or set this forward proxy in a browser and open the app directly: 127.0.0.1:7001",
        "Probe for a cache on the path, and which fixes get through it:  "
        "lab probe http://127.0.0.1:5001/_cache-probe --proxy http://127.0.0.1:7001",
        "Evidence: runs/up   Stop with Ctrl-C.",
    ]


def test_on_every_interface_the_room_gets_the_machines_own_addresses():
    shop = forward_shop("0.0.0.0", "lab:s3cret")
    text = printed(shop, [ROOM, DOCKER])
    assert "0.0.0.0:" not in text  # no URL or proxy address anyone would have to fix by hand
    assert re.search(r"192\.168\.1\.23\s+wlan0, the default route: likely the room's network", text)
    assert re.search(r"^  172\.17\.0\.1\s+docker0$", text, re.M)
    assert "Open this page in any browser:  http://192.168.1.23:6001/?fix=none" in text
    assert "or, on docker0: http://172.17.0.1:6001/?fix=none" in text
    assert "forward proxy for curl or lab probe, from any machine: 192.168.1.23:7001" in text
    assert "Proxy authentication: lab:s3cret" in text
    assert "the page and the forward proxy ask for user lab, password s3cret" in text
    probe = (
        "lab probe http://127.0.0.1:5001/_cache-probe --proxy http://lab:s3cret@192.168.1.23:7001"
    )
    assert probe in text
    assert "the app is at http://127.0.0.1:5001, as the proxy, on this machine, reaches it" in text


def test_a_reverse_profile_is_probed_at_the_page_with_the_credentials():
    shop = Workshop(APP, "/?fix=none", Path("runs/up"), "0.0.0.0", 6001, None, "lab:s3cret")
    text = printed(shop, [ROOM])
    assert "forward proxy" not in text
    assert "the page asks for user lab, password s3cret" in text
    assert "lab probe http://lab:s3cret@192.168.1.23:6001/_cache-probe\n" in text
    assert "--proxy" not in text


def test_a_scenario_without_a_proxy_is_probed_at_the_app():
    shop = Workshop(APP, "/?fix=nonce", Path("runs/up"))
    assert probe_command(shop, "127.0.0.1") == "lab probe http://127.0.0.1:5001/_cache-probe"
    text = printed(shop, addresses_for("127.0.0.1", []))
    assert "Open this page in any browser:  http://127.0.0.1:5001/?fix=nonce" in text


def test_a_single_address_bind_is_printed_as_it_is():
    text = printed(forward_shop("192.168.1.23", "lab:s3cret"), [ROOM])
    assert "Listening on every interface" not in text
    assert "http://192.168.1.23:6001/?fix=none" in text


def test_a_machine_with_no_network_says_nobody_can_reach_it():
    text = printed(forward_shop("0.0.0.0", "lab:s3cret"), [])
    assert "nobody else can reach this machine until it joins the room's network" in text
    assert "Open this page in any browser:  http://127.0.0.1:6001/?fix=none" in text


def test_several_addresses_and_no_default_route_ask_which_network_the_room_is_on():
    text = printed(
        forward_shop("0.0.0.0", "lab:s3cret"), [DOCKER, MachineAddress("10.0.0.5", "eth0")]
    )
    assert "no default route found: check which network the room is on" in text
    assert "http://172.17.0.1:6001/?fix=none" in text and "http://10.0.0.5:6001/?fix=none" in text


def test_an_ipv6_address_is_bracketed_in_urls():
    text = printed(forward_shop("fd00::2", "lab:s3cret"), [MachineAddress("fd00::2", "eth0")])
    assert "http://[fd00::2]:6001/?fix=none" in text
    assert "--proxy http://lab:s3cret@[fd00::2]:7001" in text
