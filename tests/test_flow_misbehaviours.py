"""Flow misbehaviours: each through the Misbehaving addon with mitmproxy's test helpers, then
buffering, holding and idle-connection kills through a real mitmdump on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from mitmproxy import exceptions, http
from mitmproxy.connection import ConnectionState
from mitmproxy.flow import Error
from mitmproxy.test import taddons, tflow, tutils

from proxies import lab_addons
from proxies.misbehaving import Misbehaving
from proxies.misbehaviours.close_idle_connections import CloseIdleConnections
from proxies.misbehaviours.hold_first_event import holding_stream
from proxies.misbehaviours.latency import Latency
from proxies.stream_passthrough import StreamPassThrough
from tests.lab_helpers import Mitmdump

STATUS_URL = "http://app.test/tasks/{task}/status"
STATUS_PATTERN = "/tasks/[^/]+/status|/status"


@contextmanager
def misbehaving(*specs: dict[str, Any]) -> Iterator[Misbehaving]:
    addon = Misbehaving()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, misbehaviours=json.dumps(list(specs)))
        yield addon


def get(url: str) -> http.HTTPFlow:
    f = tflow.tflow()
    f.request.url = url
    return f


def run_request(addon: Misbehaving, f: http.HTTPFlow) -> http.HTTPFlow:
    asyncio.run(addon.request(f))
    return f


def killed(f: http.HTTPFlow) -> bool:
    return f.error is not None and f.error.msg == Error.KILLED_MESSAGE


def with_response(f: http.HTTPFlow, headers: dict[str, str]) -> http.HTTPFlow:
    f.response = tutils.tresp(content=b"")
    f.response.headers.clear()
    f.response.headers.update(headers)
    return f


def sse_flow(**headers: str) -> http.HTTPFlow:
    return with_response(tflow.tflow(), {"Content-Type": "text/event-stream", **headers})


# --- the registry and the addon -------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"name": "latency"}, "ms"),
        ({"name": "latency", "ms": -1}, "ms"),
        ({"name": "latency", "ms": 10, "url_pattern": "("}, "url_pattern"),
        ({"name": "latency", "ms": 10, "methods": "GET"}, "methods"),
        ({"name": "latency", "ms": 10, "probability": 1.5}, "probability"),
        ({"name": "ignore-vary", "probability": -0.1}, "probability"),
        ({"name": "flaky-upstream", "url_pattern": "x", "every": 0}, "every"),
        ({"name": "flaky-upstream", "url_pattern": "x", "status": 404}, "status"),
        ({"name": "flaky-upstream", "url_pattern": "x", "key_pattern": "[a"}, "key_pattern"),
        ({"name": "close-idle-connections"}, "idle_seconds"),
        ({"name": "close-idle-connections", "idle_seconds": 0}, "idle_seconds"),
        ({"name": "strip-response-headers"}, "names"),
        ({"name": "strip-response-headers", "names": ["A"], "set": ["no colon"]}, "set"),
        ({"name": "buffer-streams", "content_types": []}, "content_types"),
        ({"name": "hold-first-event", "events": 3}, "events"),
    ],
)
def test_bad_parameters_are_option_errors_naming_the_field(spec: dict[str, Any], field: str):
    addon = Misbehaving()
    with taddons.context(addon) as tctx, pytest.raises(exceptions.OptionsError) as info:
        tctx.configure(addon, misbehaviours=json.dumps([spec]))
    assert f"field '{field}'" in str(info.value)
    assert spec["name"] in str(info.value)


def test_every_flow_misbehaviour_names_what_it_imitates():
    from proxies.misbehaviours import registry

    names = {
        "buffer-streams",
        "hold-first-event",
        "close-idle-connections",
        "latency",
        "flaky-upstream",
        "strip-response-headers",
    }
    found = registry()
    assert names <= set(found)
    for name in names:
        cls = found[name]
        assert cls.summary and len(cls.summary) <= 120, name
        assert len(cls.imitates) > 40, name
        assert cls.__doc__, name


# --- buffer-streams ---------------------------------------------------------------------------


def pass_through_then(addon: Misbehaving, f: http.HTTPFlow) -> http.HTTPFlow:
    """The lab's order: StreamPassThrough, then the misbehaviours."""
    StreamPassThrough().responseheaders(f)
    addon.responseheaders(f)
    return f


def test_without_misbehaviours_event_streams_are_streamed():
    with misbehaving() as addon:
        assert pass_through_then(addon, sse_flow()).response.stream is True


def test_buffer_streams_switches_streaming_off_for_event_streams():
    with misbehaving({"name": "buffer-streams"}) as addon:
        f = with_response(tflow.tflow(), {"Content-Type": "Text/Event-Stream; charset=utf-8"})
        assert pass_through_then(addon, f).response.stream is False


def test_buffer_streams_leaves_other_streams_alone_unless_also_chunked():
    headers = {"Content-Type": "application/x-ndjson", "Transfer-Encoding": "chunked"}
    with misbehaving({"name": "buffer-streams"}) as addon:
        f = with_response(tflow.tflow(), headers)
        f.response.stream = True  # streamed by someone else (stream_large_bodies, say)
        addon.responseheaders(f)
        assert f.response.stream is True
    with misbehaving({"name": "buffer-streams", "also_chunked": True}) as addon:
        f = with_response(tflow.tflow(), headers)
        f.response.stream = True
        addon.responseheaders(f)
        assert f.response.stream is False


def test_buffer_streams_with_own_content_types():
    spec = {"name": "buffer-streams", "content_types": ["application/x-ndjson"]}
    with misbehaving(spec) as addon:
        ndjson = with_response(tflow.tflow(), {"Content-Type": "application/x-ndjson"})
        ndjson.response.stream = True
        addon.responseheaders(ndjson)
        assert ndjson.response.stream is False
        assert pass_through_then(addon, sse_flow()).response.stream is True


@pytest.mark.parametrize(("honour", "streamed"), [(False, False), (True, True)])
def test_buffer_streams_x_accel_buffering_no_only_when_imitating_nginx(
    honour: bool, streamed: bool
):
    spec = {"name": "buffer-streams", "honour_x_accel_buffering": honour}
    with misbehaving(spec) as addon:
        f = pass_through_then(addon, sse_flow(**{"X-Accel-Buffering": "no"}))
        assert f.response.stream is streamed
        assert pass_through_then(addon, sse_flow()).response.stream is False


# --- hold-first-event -------------------------------------------------------------------------


def feed(stream: Callable[[bytes], Any], *chunks: bytes) -> list[list[bytes]]:
    return [list(stream(chunk)) for chunk in chunks]


def test_holding_stream_releases_first_event_with_the_second():
    out = feed(holding_stream(), b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\n", b"")
    assert out == [[], [b"data: 1\n\ndata: 2\n\n"], [b"data: 3\n\n"], []]


def test_holding_stream_finds_delimiters_across_chunks_and_line_endings():
    chunks = (b"data: 1\r", b"\n\r", b"\n: heart", b"beat\r\n", b"\r\nrest")
    out = feed(holding_stream(), *chunks)
    assert out == [[], [], [], [], [b"data: 1\r\n\r\n: heartbeat\r\n\r\nrest"]]


def test_holding_stream_flushes_what_it_holds_when_the_stream_ends():
    assert feed(holding_stream(), b"data: only\n\n", b"") == [[], [b"data: only\n\n"]]
    # Never an empty chunk: in a chunked response that would end the body.
    assert feed(holding_stream(), b"") == [[]]


def test_hold_first_event_applies_to_event_streams_only():
    with misbehaving({"name": "hold-first-event"}) as addon:
        sse = pass_through_then(addon, sse_flow())
        assert callable(sse.response.stream)
        assert list(sse.response.stream(b"data: 1\n\n")) == []
        json_flow = pass_through_then(
            addon, with_response(tflow.tflow(), {"Content-Type": "application/json"})
        )
        assert json_flow.response.stream is False


# --- close-idle-connections -------------------------------------------------------------------


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def idle() -> Iterator[tuple[Misbehaving, CloseIdleConnections, FakeClock]]:
    with misbehaving({"name": "close-idle-connections", "idle_seconds": 0.2}) as addon:
        (misbehaviour,) = addon.active
        assert isinstance(misbehaviour, CloseIdleConnections)
        clock = FakeClock()
        misbehaviour.clock = clock
        yield addon, misbehaviour, clock


def test_a_response_hook_may_hold_the_answer_and_the_later_ones_wait_for_it():
    # stale-while-updating with wait_for_refresh holds a stale answer; a later misbehaviour's
    # response hook sees the flow only once the hold is over.
    from proxies.misbehaviours import build
    from proxies.misbehaviours._cache_rules import REFRESH_FLOW
    from proxies.misbehaviours.base import Misbehaviour

    seen: list[http.HTTPFlow] = []

    class Recorder(Misbehaviour):
        name = "recorder"
        summary = imitates = "a test's"

        def response(self, flow: http.HTTPFlow) -> None:
            seen.append(flow)

    addon = Misbehaving()
    spec = {"name": "stale-while-updating", "max_stale": 10, "wait_for_refresh": True}
    addon.active = [*build([spec]), Recorder()]
    plain = get(STATUS_URL.format(task=1))
    plain.response = tutils.tresp()
    assert addon.response(plain) is None  # nothing to wait for: as before, synchronous
    assert seen == [plain]
    refresh = get(STATUS_URL.format(task=2))
    stale = get(STATUS_URL.format(task=2))
    stale.metadata[REFRESH_FLOW] = refresh
    stale.response = tutils.tresp()

    async def hold() -> None:
        held = asyncio.ensure_future(addon.response(stale))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not held.done() and seen == [plain]
        refresh.error = Error("the origin is away")  # an error ends the hold as well
        await asyncio.wait_for(held, timeout=5)
        assert seen == [plain, stale]

    asyncio.run(hold())


def exchange(addon: Misbehaving, conn: Any, clock: FakeClock, took: float = 0.01):
    """One request on `conn` and, unless killed, its response `took` seconds later."""
    f = get(STATUS_URL.format(task=1))
    f.client_conn = conn
    run_request(addon, f)
    if killed(f):
        addon.error(f)
        conn.state = ConnectionState.CLOSED  # what the proxy does with a killed HTTP/1 flow
        return f
    clock.now += took
    f.response = tutils.tresp()
    addon.response(f)
    return f


def test_idle_connection_kills_the_request_that_comes_too_late(idle):
    addon, _, clock = idle
    conn = tflow.tclient_conn()
    assert not killed(exchange(addon, conn, clock))  # a new connection is never idle
    clock.now += 0.15
    assert not killed(exchange(addon, conn, clock))
    clock.now += 0.25  # longer than idle_seconds since the last response
    late = exchange(addon, conn, clock)
    assert killed(late)
    assert "idle 0.250 s" in late.metadata["misbehaviour"]


def test_idle_time_counts_from_the_end_of_the_last_response(idle):
    addon, _, clock = idle
    conn = tflow.tclient_conn()
    exchange(addon, conn, clock, took=5.0)  # a slow answer is not idleness
    clock.now += 0.1
    assert not killed(exchange(addon, conn, clock))


def test_a_retry_on_a_new_connection_gets_through(idle):
    addon, misbehaviour, clock = idle
    old = tflow.tclient_conn()
    exchange(addon, old, clock)
    clock.now += 1
    assert killed(exchange(addon, old, clock))
    assert not killed(exchange(addon, tflow.tclient_conn(), clock))
    assert old.id not in misbehaviour.last_activity


def test_closed_connections_are_forgotten(idle):
    addon, misbehaviour, clock = idle
    conns = [tflow.tclient_conn() for _ in range(3)]
    for conn in conns:
        exchange(addon, conn, clock)
    conns[0].state = ConnectionState.CLOSED
    exchange(addon, conns[1], clock)
    assert set(misbehaviour.last_activity) == {conns[1].id, conns[2].id}


@pytest.mark.parametrize(
    ("version", "connection", "expected"),
    [
        ("HTTP/1.1", "close", None),
        ("HTTP/1.1", "Keep-Alive, close", None),
        ("HTTP/1.1", "close, Upgrade", "Upgrade"),
        ("HTTP/1.0", None, None),
    ],
)
def test_idle_proxy_keeps_client_connections_alive_whatever_the_upstream_says(
    idle, version: str, connection: str | None, expected: str | None
):
    addon, _, _ = idle
    f = with_response(tflow.tflow(), {} if connection is None else {"Connection": connection})
    f.response.http_version = version
    f.response.stream = True
    upstream = f.response
    addon.responseheaders(f)
    assert f.response.http_version == "HTTP/1.1"
    assert f.response.headers.get("Connection") == expected
    assert f.response.stream is True
    # mitmproxy's upstream side keeps the original, so it still closes when told to
    assert f.response is not upstream
    assert upstream.http_version == version
    assert upstream.headers.get("Connection") == connection


def test_idle_proxy_leaves_a_keep_alive_answer_alone(idle):
    addon, _, _ = idle
    f = with_response(tflow.tflow(), {"Content-Type": "application/json"})
    upstream = f.response
    addon.responseheaders(f)
    assert f.response is upstream


# --- latency ----------------------------------------------------------------------------------


def latency_delays(spec: dict[str, Any], urls: list[str]) -> tuple[list[float], list[int | None]]:
    """Seconds each request was made to wait (recorded, not slept) and the flows' metadata."""
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    with misbehaving({"name": "latency", **spec}) as addon:
        (misbehaviour,) = addon.active
        assert isinstance(misbehaviour, Latency)
        misbehaviour.sleep = record
        flows = [run_request(addon, get(url)) for url in urls]
    return slept, [f.metadata.get("latency_ms") for f in flows]


def test_latency_without_jitter_is_exact():
    slept, ms = latency_delays({"ms": 300}, [STATUS_URL.format(task=1)] * 3)
    assert slept == [0.3, 0.3, 0.3]
    assert ms == [300, 300, 300]


def test_latency_jitter_is_bounded_and_repeatable_per_seed():
    urls = [STATUS_URL.format(task=n) for n in range(50)]
    first, _ = latency_delays({"ms": 300, "jitter_ms": 100, "seed": 7}, urls)
    again, _ = latency_delays({"ms": 300, "jitter_ms": 100, "seed": 7}, urls)
    other, _ = latency_delays({"ms": 300, "jitter_ms": 100, "seed": 8}, urls)
    assert first == again
    assert first != other
    assert all(0.2 <= s <= 0.4 for s in first)
    assert len(set(first)) > 10


def test_latency_never_negative():
    slept, _ = latency_delays({"ms": 10, "jitter_ms": 1000}, [STATUS_URL.format(task=1)] * 30)
    assert min(slept) >= 0
    assert 0 in slept


def test_latency_only_for_matching_urls():
    urls = [STATUS_URL.format(task=1), "http://app.test/tasks", "http://app.test/static/a.js"]
    slept, ms = latency_delays({"ms": 100, "url_pattern": "/status"}, urls)
    assert slept == [0.1]
    assert ms == [100, None, None]


def test_scope_methods_apply_to_every_misbehaviour():
    with misbehaving({"name": "flaky-upstream", "every": 1, "methods": ["post"]}) as addon:
        posted = get(STATUS_URL.format(task=1))
        posted.request.method = "POST"
        assert outcome(run_request(addon, posted)) == "502"
        assert outcome(run_request(addon, get(STATUS_URL.format(task=1)))) == "pass"


def test_scope_probability_is_seeded_and_drawn_once_per_request():
    urls = [STATUS_URL.format(task=n) for n in range(200)]
    spec = {"ms": 100, "probability": 0.25, "probability_seed": 3}
    _, first = latency_delays(spec, urls)  # which requests waited
    _, again = latency_delays(spec, urls)
    _, other = latency_delays({**spec, "probability_seed": 4}, urls)
    assert first == again
    assert first != other
    assert 25 <= sum(ms is not None for ms in first) <= 75  # about a quarter of 200
    with misbehaving({"name": "flaky-upstream", "every": 1, "probability": 0.5}) as addon:
        (flaky_upstream,) = addon.active
        requests = [get(url).request for url in urls[:20]]
        drawn = [flaky_upstream.applies_to(request) for request in requests]
        assert [flaky_upstream.applies_to(request) for request in requests] == drawn
        assert True in drawn and False in drawn


def test_latency_really_waits_on_the_event_loop():
    """Two delayed requests wait at the same time: both are still waiting once the loop has
    run each of them. A delay that blocked the loop would have ended the first before the
    second began (and a bound on the elapsed time would not tell the two apart at 20 ms)."""
    with misbehaving({"name": "latency", "ms": 60_000}) as addon:

        async def two_at_once() -> tuple[bool, bool]:
            waiting = [
                asyncio.ensure_future(addon.request(get(url)))
                for url in ("http://a.test/", "http://b.test/")
            ]
            for _ in range(3):  # each task runs up to its wait
                await asyncio.sleep(0)
            pending = (not waiting[0].done(), not waiting[1].done())
            for task in waiting:
                task.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)
            return pending

        assert asyncio.run(two_at_once()) == (True, True)


# --- flaky-upstream ---------------------------------------------------------------------------


def flaky(**params: Any) -> dict[str, Any]:
    return {"name": "flaky-upstream", "url_pattern": STATUS_PATTERN, **params}


def outcome(f: http.HTTPFlow) -> str:
    if killed(f):
        return "reset"
    return str(f.response.status_code) if f.response is not None else "pass"


def test_flaky_upstream_fails_every_third_poll_with_an_error_page():
    with misbehaving(flaky()) as addon:
        flows = [run_request(addon, get(STATUS_URL.format(task=1))) for _ in range(7)]
    assert [outcome(f) for f in flows] == ["pass", "pass", "502", "pass", "pass", "502", "pass"]
    page = flows[2].response
    assert page.headers["Content-Type"] == "text/html"
    assert "<title>502 Bad Gateway</title>" in page.text
    assert flows[2].metadata["misbehaviour"] == "flaky-upstream: 502 (#3 of /tasks/1/status)"


def test_flaky_upstream_504_and_reset():
    with misbehaving(flaky(every=2, status=504)) as addon:
        flows = [run_request(addon, get(STATUS_URL.format(task=1))) for _ in range(2)]
    assert [outcome(f) for f in flows] == ["pass", "504"]
    assert "<h1>504 Gateway Time-out</h1>" in flows[1].response.text  # nginx spells it so
    with misbehaving(flaky(every=2, reset=True)) as addon:
        flows = [run_request(addon, get(STATUS_URL.format(task=1))) for _ in range(4)]
    assert [outcome(f) for f in flows] == ["pass", "reset", "pass", "reset"]


def test_flaky_upstream_ignores_urls_that_do_not_match():
    with misbehaving(flaky(every=1)) as addon:
        start = run_request(addon, get("http://app.test/tasks"))
        page = run_request(addon, get("http://app.test/"))
        poll = run_request(addon, get(STATUS_URL.format(task=1)))
    assert [outcome(start), outcome(page), outcome(poll)] == ["pass", "pass", "502"]


def test_flaky_upstream_counts_each_path_apart_whatever_the_query():
    with misbehaving(flaky()) as addon:
        urls = [STATUS_URL.format(task=t) + f"?nonce={n}" for n in range(3) for t in (1, 2)]
        flows = [run_request(addon, get(url)) for url in urls]
    # polls of task 1 and task 2 interleave; each task's third poll fails
    assert [outcome(f) for f in flows] == ["pass"] * 4 + ["502", "502"]


def test_flaky_upstream_key_pattern_groups_polls_with_nonces_in_the_path():
    paths = [f"http://app.test/tasks/1/status/{n}" for n in range(3)]
    with misbehaving(flaky()) as addon:
        without_key = [run_request(addon, get(url)) for url in paths]
    with misbehaving(flaky(key_pattern="/tasks/[^/]+/status")) as addon:
        with_key = [run_request(addon, get(url)) for url in paths]
    assert [outcome(f) for f in without_key] == ["pass", "pass", "pass"]  # three distinct paths
    assert [outcome(f) for f in with_key] == ["pass", "pass", "502"]


def test_an_answered_or_killed_request_is_not_seen_by_later_misbehaviours():
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    with misbehaving(flaky(every=1), {"name": "latency", "ms": 100}) as addon:
        addon.active[1].sleep = record
        f = run_request(addon, get(STATUS_URL.format(task=1)))
    assert outcome(f) == "502"
    assert slept == []


# --- strip-response-headers -------------------------------------------------------------------

CACHE_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Expires": "0",
    "Content-Type": "application/json",
}


def test_strip_response_headers_removes_named_headers_case_insensitively():
    spec = {"name": "strip-response-headers", "names": ["cache-control", "PRAGMA", "Expires"]}
    with misbehaving(spec) as addon:
        f = with_response(tflow.tflow(), CACHE_HEADERS)
        addon.responseheaders(f)
    assert dict(f.response.headers) == {"Content-Type": "application/json"}


@pytest.mark.parametrize("set_value", [{"Cache-Control": "public"}, ["Cache-Control: public"]])
def test_strip_response_headers_sets_others(set_value: Any):
    spec = {"name": "strip-response-headers", "names": ["Pragma"], "set": set_value}
    with misbehaving(spec) as addon:
        f = with_response(tflow.tflow(), CACHE_HEADERS)
        addon.responseheaders(f)
    assert f.response.headers["Cache-Control"] == "public"
    assert "Pragma" not in f.response.headers


@pytest.mark.parametrize(("strip", "cache_outcome"), [(True, "MISS"), (False, "STORE")])
def test_stripped_headers_are_unseen_by_the_proxys_own_cache(strip: bool, cache_outcome: str):
    """The lab's order, misbehaviours before the cache: with max-age stripped, nothing stored."""
    _profile, passthrough, addon, cache, _observer, _spare = lab_addons.make_addons()
    spec = {"name": "strip-response-headers", "names": ["Cache-Control"]}
    with taddons.context(passthrough, addon, cache) as tctx:
        tctx.configure(addon, misbehaviours=json.dumps([spec] if strip else []))
        f = run_request(addon, get(STATUS_URL.format(task=1)))
        cache.request(f)  # type: ignore[attr-defined]
        f.response = tutils.tresp(content=b"{}")
        f.response.headers["Cache-Control"] = "max-age=600"
        passthrough.responseheaders(f)  # type: ignore[attr-defined]
        addon.responseheaders(f)
        addon.response(f)
        cache.response(f)  # type: ignore[attr-defined]
    assert ("Cache-Control" in f.response.headers) is not strip
    assert f.metadata["cache"] == cache_outcome


# --- the real mitmdump ------------------------------------------------------------------------

GRACE = 1.0  # how long a proxy that streams gets to pass an event on; only spent when it holds


@dataclass
class SseTimeline:
    """When the test's SSE server sent what, and when the client saw it (monotonic seconds)."""

    got_first: threading.Event = field(default_factory=threading.Event)
    got_second: threading.Event = field(default_factory=threading.Event)
    sent: dict[str, float] = field(default_factory=dict)
    first_event_at: float | None = None


@dataclass
class Origin:
    url: str
    timeline: SseTimeline


def serve_one(conn: socket.socket, timeline: SseTimeline) -> None:
    """A hand-written HTTP/1.1 origin, one answer per connection. /events is a chunked event
    stream that sends an event, waits for the client to see it (or GRACE), sends a second,
    waits again, then ends; any other path is a small JSON answer with `Connection: close`,
    as the sample app's werkzeug server sends."""
    with conn, conn.makefile("rb") as reader:
        request_line = reader.readline()
        while reader.readline() not in (b"\r\n", b"\n", b""):
            pass
        if not request_line.split()[1].startswith(b"/events"):
            body = b'{"state": "PENDING"}'
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            return
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        for name, data, seen in (
            ("first", b"data: 1\n\n", timeline.got_first),
            ("second", b"data: 2\n\n", timeline.got_second),
        ):
            # Each time is taken before the write: once written, the proxy may pass it on and
            # the client see it before this thread runs again (a buffered stream was seen
            # 0.2 ms "before" its end when the time was taken after).
            timeline.sent[name] = time.monotonic()
            conn.sendall(b"%x\r\n%s\r\n" % (len(data), data))
            seen.wait(GRACE)
        timeline.sent["end"] = time.monotonic()
        conn.sendall(b"0\r\n\r\n")


@pytest.fixture
def origin() -> Iterator[Origin]:
    timeline = SseTimeline()
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve_one, args=(conn, timeline), daemon=True).start()

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    try:
        yield Origin(f"http://127.0.0.1:{listener.getsockname()[1]}", timeline)
    finally:
        stop.set()
        listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (close alone does not)
        listener.close()
        thread.join(timeout=5)


def lab_proxy(mitmdump: Callable[..., Mitmdump], misbehaviours: list[dict[str, Any]]) -> str:
    """The lab's proxy with these misbehaviours and no cache; its URL."""
    options = {"cache_enabled": False, "misbehaviours": json.dumps(misbehaviours)}
    return mitmdump(["proxies/lab_addons.py"], options).url


def read_event_stream(proxy: str, url: str, timeline: SseTimeline) -> bytes:
    received = b""
    with (
        httpx.Client(proxy=proxy, trust_env=False, timeout=10) as client,
        client.stream("GET", url) as response,
    ):
        assert response.headers["content-type"] == "text/event-stream"
        for chunk in response.iter_raw():
            received += chunk
            if b"data: 1\n\n" in received and timeline.first_event_at is None:
                timeline.first_event_at = time.monotonic()
                timeline.got_first.set()
            if b"data: 2\n\n" in received:
                timeline.got_second.set()
    return received


@pytest.mark.stack
@pytest.mark.parametrize("misbehaviour", ["none", "buffer-streams", "hold-first-event"])
def test_real_mitmdump_event_stream_timing(
    mitmdump: Callable[..., Mitmdump], origin: Origin, misbehaviour: str
):
    specs = [] if misbehaviour == "none" else [{"name": misbehaviour}]
    proxy = lab_proxy(mitmdump, specs)
    body = read_event_stream(proxy, f"{origin.url}/events", origin.timeline)
    assert body == b"data: 1\n\ndata: 2\n\n"
    sent, first = origin.timeline.sent, origin.timeline.first_event_at
    assert first is not None
    if misbehaviour == "none":  # passed through: the first event arrives on its own
        assert first < sent["second"]
    elif misbehaviour == "hold-first-event":  # with the second, but before the stream ends
        assert sent["second"] <= first < sent["end"]
    else:  # buffered: nothing at all until the stream has ended
        assert first >= sent["end"]


def http_get(sock: socket.socket, path: str, host: str) -> bytes:
    """One request on a kept-alive connection; the whole answer, or b"" if it was closed."""
    sock.sendall(f"GET {host}{path} HTTP/1.1\r\nHost: {host[7:]}\r\n\r\n".encode())
    answer = b""
    while b'{"state": "PENDING"}' not in answer:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return b""
        if not chunk:
            return answer
        answer += chunk
    return answer


@pytest.mark.stack
@pytest.mark.parametrize(
    ("specs", "second_answered"),
    [
        # Plain mitmdump passes the origin's Connection: close on and closes after each answer.
        ([], False),
        # The misbehaviour keeps client connections alive, as a real proxy does...
        ([{"name": "close-idle-connections", "idle_seconds": 60}], True),
        # ...and closes one idle longer than a microsecond: any gap between two requests.
        ([{"name": "close-idle-connections", "idle_seconds": 1e-6}], False),
    ],
    ids=["plain", "idle-60s", "idle-1us"],
)
def test_real_mitmdump_keeps_alive_then_closes_idle_connections(
    mitmdump: Callable[..., Mitmdump],
    origin: Origin,
    specs: list[dict[str, Any]],
    second_answered: bool,
):
    proxy = lab_proxy(mitmdump, specs)
    address = ("127.0.0.1", int(proxy.rsplit(":", 1)[1]))
    with socket.create_connection(address, timeout=10) as kept_alive:
        first = http_get(kept_alive, "/tasks/1/status", origin.url)
        assert first.startswith(b"HTTP/1.1 200")
        assert (b"Connection: close" not in first) is bool(specs)
        second = http_get(kept_alive, "/tasks/1/status", origin.url)
        assert second.startswith(b"HTTP/1.1 200") if second_answered else second == b""
    with socket.create_connection(address, timeout=10) as fresh:  # a retry: always answered
        assert http_get(fresh, "/tasks/1/status", origin.url).startswith(b"HTTP/1.1 200")
