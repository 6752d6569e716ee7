"""Several profiles in one mitmdump (proxies/listeners.py): each listener its own proxy."""

import asyncio
import json
import socket
from pathlib import Path

import httpx
import pytest
from mitmproxy import exceptions, http
from mitmproxy.test import taddons, tflow

from lab.data import profiles
from lab.stacks import proxy_hosts
from lab.stacks.ports import free_ports
from lab.stacks.processes import Supervisor, read_ready_file
from lab.stacks.proxy_hosts import launch_proxy_host
from proxies.listeners import ProfileListeners
from tests.lab_helpers import LoopbackOrigin

CACHING = {"options": {"cache_heuristic_ttl": 300}}
NOT_CACHING = {"options": {"cache_enabled": False}}


def flow_on(port: int, url: str = "http://app.test/tasks/1/status") -> http.HTTPFlow:
    flow = tflow.tflow()
    flow.client_conn.sockname = ("127.0.0.1", port)
    flow.request.url = url
    return flow


def through(addon: ProfileListeners, flow: http.HTTPFlow, body: bytes = b"PENDING") -> bytes:
    """One pass as mitmproxy drives it; the origin answers `body` unless the proxy did."""
    asyncio.run(addon.request(flow))
    if flow.response is None:
        flow.response = http.Response.make(200, body)
        asyncio.run(addon.responseheaders(flow))
    asyncio.run(addon.response(flow))  # mitmproxy calls it for the proxy's own answers too
    return flow.response.content or b""


def test_each_listener_is_its_own_proxy(tmp_path: Path):
    addon = ProfileListeners()
    specs = {
        "8081": CACHING | {"events": str(tmp_path / "a.jsonl")},
        "8082": NOT_CACHING | {"events": str(tmp_path / "b.jsonl")},
    }
    with taddons.context(addon) as tctx:
        tctx.configure(addon, listeners=json.dumps(specs))
        assert through(addon, flow_on(8081), b"PENDING") == b"PENDING"
        assert through(addon, flow_on(8081), b"SUCCESS") == b"PENDING"  # its cache answered
        assert through(addon, flow_on(8082), b"PENDING") == b"PENDING"
        assert through(addon, flow_on(8082), b"SUCCESS") == b"SUCCESS"  # no cache there
        addon.done()
    caches = [json.loads(line)["cache"] for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert caches == ["STORE", "HIT"]
    other = [json.loads(line)["cache"] for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert other == ["BYPASS", "BYPASS"]


def test_a_replayed_flow_stays_with_its_listener():
    addon = ProfileListeners()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, listeners=json.dumps({"8081": CACHING, "8082": NOT_CACHING}))
        first = flow_on(8081)
        through(addon, first)
        replay = first.copy()
        replay.client_conn.sockname = ("127.0.0.1", 9)  # whatever the copy says, it stays
        replay.response = None
        assert through(addon, replay, b"SUCCESS") == b"PENDING"


def test_a_flow_on_a_port_without_a_profile_is_refused():
    addon = ProfileListeners()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, listeners=json.dumps({"8081": CACHING}))
        flow = flow_on(9999)
        asyncio.run(addon.request(flow))
        assert flow.response is not None and flow.response.status_code == 502


@pytest.mark.parametrize(
    ("listeners", "message"),
    [
        ("{not json", "listeners: not valid JSON"),
        ('{"http": {}}', "'http': a port and an object"),
        ('{"8081": {"options": {"cache_heuristic_ttl": -1}}}', "cache_heuristic_ttl must be >= 0"),
        ('{"8081": {"options": {"keep_host_header": true}}}', "cannot differ per listener"),
        ('{"8081": {"misbehaviours": [{"name": "nope"}]}}', "unknown misbehaviour 'nope'"),
    ],
)
def test_bad_listeners_are_refused_with_what_is_wrong(listeners: str, message: str):
    addon = ProfileListeners()
    with taddons.context(addon) as tctx, pytest.raises(exceptions.OptionsError, match=message):
        tctx.configure(addon, listeners=listeners)


@pytest.mark.stack
def test_one_mitmdump_serves_several_profiles_on_their_own_ports(tmp_path: Path):
    """The lab's launcher against a real mitmdump: two profiles, two listeners, two logs."""
    counted = iter(range(1, 10))  # the origin counts its requests
    with LoopbackOrigin(lambda _m, _p: (200, "text/plain", str(next(counted)).encode())) as app:
        sup = Supervisor("test-listeners", tmp_path)
        try:
            check_listeners(sup, app.url)
        finally:
            sup.stop_all()


def check_listeners(sup: Supervisor, origin: str) -> None:
    ready = launch_proxy_host(
        sup,
        "proxy-host",
        [
            ("caching", profiles.load("corporate-cache"), None),
            ("plain", profiles.load("slow-network"), None),
        ],
    )
    endpoints = ready()
    url = f"{origin}/tasks/1/status"
    seen = {}
    for key in ("caching", "plain"):
        with httpx.Client(proxy=endpoints[key].address, trust_env=False, timeout=10) as c:
            seen[key] = [c.get(url).text, c.get(url).text]
    assert seen == {"caching": ["1", "1"], "plain": ["2", "3"]}
    assert len(sup.components) == 1
    for key, expected in (("caching", ["STORE", "HIT"]), ("plain", ["BYPASS", "BYPASS"])):
        lines = endpoints[key].events.read_text().splitlines()
        assert [json.loads(line)["cache"] for line in lines] == expected


@pytest.mark.stack
def test_a_proxy_group_comes_up_when_another_program_took_a_hosts_port(tmp_path, monkeypatch):
    """The ports the lab picked for the second of two mitmdumps are taken before it binds them
    (another program, between the pick and the bind), and it exits while the lab waits for the
    first: the group still comes up, that host on new ports, and every listener answers."""
    picks: list[list[int]] = []
    looks_after_the_exit = 0

    def first_pick_of_the_second_host_is_taken(count: int) -> list[int]:
        picks.append(free_ports(count))
        return [held] if len(picks) == 2 else picks[-1]

    def first_host_ready_only_after_the_second_exited(path: Path):
        nonlocal looks_after_the_exit
        if path.name.startswith("proxies-1."):
            lost = next(c for c in sup.components if c.name == "proxies-2")
            if lost.alive():
                return None
            looks_after_the_exit += 1
            if looks_after_the_exit < 2:  # one look at every component while it is dead
                return None
        return read_ready_file(path)

    monkeypatch.setattr(proxy_hosts, "free_ports", first_pick_of_the_second_host_is_taken)
    monkeypatch.setattr(
        proxy_hosts, "read_ready_file", first_host_ready_only_after_the_second_exited
    )
    wanted = [
        ((name, "*"), profiles.load(name), None) for name in ("corporate-cache", "slow-network")
    ]
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        held = holder.getsockname()[1]
        sup = Supervisor("test-listeners", tmp_path)
        try:
            endpoints = proxy_hosts.launch_proxy_group(sup, "proxies", wanted, per_process=1)()
            assert len(picks) == 3  # one host launched twice
            assert [c.name for c in sup.components] == ["proxies-1", "proxies-2"]
            assert all(f":{held}" not in e.address for e in endpoints.values())
            with LoopbackOrigin(lambda _m, _p: (200, "text/plain", b"up")) as app:
                for endpoint in endpoints.values():
                    with httpx.Client(proxy=endpoint.address, trust_env=False, timeout=10) as c:
                        assert c.get(f"{app.url}/tasks/1/status").text == "up"
        finally:
            sup.stop_all()
