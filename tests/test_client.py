"""The lab's Python client against the real Flask app, served by werkzeug on 127.0.0.1.

No worker: a task stays PENDING until the test stores its result through the result backend,
once the client has made the polls the test waits for. Misbehaving intermediaries are small
WSGI wrappers around the app (failing requests, replaying a stale answer, cutting connections).
"""

from __future__ import annotations

import io
import json
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from werkzeug.serving import make_server

from lab.clients.polling import PollingClient
from sample_app import strategies
from sample_app.config import AppConfig, sqlite_celery_config
from sample_app.debug import is_debug_path
from sample_app.strategies import Retry
from sample_app.web import create_app
from tests.lab_helpers import wait_for

BOOK = strategies.load()
POLL_INTERVAL = 0.02
FAST_RETRY = Retry(attempts=2, initial_ms=10, factor=2)
WAIT = 15.0  # deadline for any condition; the tests take well under a second each
NODE = shutil.which("node")

Wsgi = Callable[..., Any]


def is_status(environ: dict[str, Any]) -> bool:
    return "/status" in environ["PATH_INFO"]


def is_events(environ: dict[str, Any]) -> bool:
    return environ["PATH_INFO"].endswith("/events")


def is_task_request(environ: dict[str, Any]) -> bool:
    """A status poll or an event stream: not the page's debug panel asking for the truth."""
    path = environ["PATH_INFO"]
    return "/tasks/" in path and not is_debug_path(path)


@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


class Intermediary:
    """Records the status (or events) requests passing through; `answer(environ, n)` may answer
    the n-th of them itself with (status line, headers, body), or None to let it through."""

    def __init__(
        self,
        app: Wsgi,
        answer: Callable[[dict[str, Any], int], tuple[str, list, bytes] | None] | None = None,
        counts: Callable[[dict[str, Any]], bool] = is_status,
    ) -> None:
        self.app, self.answer, self.counts = app, answer, counts
        self.seen: list[Seen] = []
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not self.counts(environ):
            return self.app(environ, start_response)
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        headers = {
            key[5:].replace("_", "-").title(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        if "CONTENT_TYPE" in environ:
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        seen = Seen(
            environ["REQUEST_METHOD"],
            environ["PATH_INFO"],
            environ.get("QUERY_STRING", ""),
            headers,
            body,
        )
        with self._lock:
            self.seen.append(seen)
            n = len(self.seen)
        reply = self.answer(environ, n) if self.answer else None
        if reply is None:
            return self.app(environ, start_response)
        status, reply_headers, reply_body = reply
        start_response(status, reply_headers)
        return [reply_body]


def fail_requests(numbers: set[int], status: str = "503 Service Unavailable"):
    def answer(environ: dict[str, Any], n: int):
        if n in numbers:
            return status, [("Content-Type", "text/plain")], status.encode()
        return None

    return answer


class ReplayFirstAnswer:
    """A stale shared cache that keys on the path alone (it drops the query string) and never
    expires: the first GET answer for a status path is replayed for every later GET of it."""

    def __init__(self, app: Wsgi) -> None:
        self.app = app
        self.entries: dict[str, tuple[str, list, bytes]] = {}
        self.hits = 0
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ["REQUEST_METHOD"] != "GET" or not is_status(environ):
            return self.app(environ, start_response)
        key = environ["PATH_INFO"]
        with self._lock:
            entry = self.entries.get(key)
            if entry is not None:
                self.hits += 1
        if entry is None:
            captured: dict[str, Any] = {}

            def capture(status: str, headers: list, exc_info: Any = None) -> Callable:
                captured.update(status=status, headers=headers)
                return lambda data: None

            result = self.app(environ, capture)
            try:
                body = b"".join(result)
            finally:
                if hasattr(result, "close"):
                    result.close()
            entry = (captured["status"], captured["headers"], body)
            with self._lock:
                self.entries.setdefault(key, entry)
        start_response(entry[0], entry[1])
        return [entry[2]]


class Stack:
    """The app, optionally wrapped, on a real threaded werkzeug server."""

    def __init__(self, tmp_path: Path, **config: Any) -> None:
        self.tmp_path = tmp_path
        defaults = {"poll_interval_ms": 20, "sse_heartbeat_ms": 50, "sse_max_seconds": 10}
        self.config = AppConfig(celery=sqlite_celery_config(tmp_path), **{**defaults, **config})
        self.app = create_app(self.config)
        self.backend = self.app.extensions["celery"].backend
        self._server: Any = None
        self.clients: list[PollingClient] = []

    def serve(self, wrap: Callable[[Wsgi], Any] | None = None) -> Any:
        """Serves the app, wrapped by `wrap` if given; returns the wrapper (or the app)."""
        wsgi = wrap(self.app) if wrap else self.app
        self._server = make_server("127.0.0.1", 0, wsgi, threaded=True)
        serve = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        serve.start()
        return wsgi

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def client(self, fix: str, *, retry: Retry | None = None, **kwargs: Any) -> PollingClient:
        strategy = BOOK.get(fix)
        if retry is not None:
            strategy = replace(strategy, retry=retry)
        client = PollingClient(
            base_url=self.url,
            proxy_url=None,
            book=BOOK,
            strategy=strategy,
            poll_interval=POLL_INTERVAL,
            task_duration=0,
            log_path=self.tmp_path / f"client-{len(self.clients)}.jsonl",
            **kwargs,
        )
        self.clients.append(client)
        return client

    def succeed(self, task_id: str | None) -> None:
        assert task_id is not None
        self.backend.store_result(task_id, {"slept": 0}, "SUCCESS")

    def close(self) -> None:
        for client in self.clients:
            client.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@pytest.fixture
def stack(tmp_path) -> Iterator[Callable[..., Stack]]:
    made: list[Stack] = []

    def make(**config: Any) -> Stack:
        made.append(Stack(tmp_path, **config))
        return made[-1]

    yield make
    for one in made:
        one.close()


def run_until_polls(client: PollingClient, n: int) -> None:
    client.start()
    wait_for(lambda: len(client.polls) >= n or client.done, WAIT, f"{n} polls")


def wait_done(client: PollingClient) -> None:
    wait_for(lambda: client.done, WAIT, "the client to stop")


def completed_through_intermediary(
    s: Stack, fix: str, polls: int, **client_args: Any
) -> tuple[PollingClient, Intermediary]:
    """The client polls through a recording intermediary until `polls` polls went out, then the
    task finishes and the UI must show it."""
    recorder = s.serve(Intermediary)
    client = s.client(fix, **client_args)
    run_until_polls(client, polls)
    s.succeed(client.task_id)
    wait_done(client)
    assert client.ui_state == "completed"
    return client, recorder


def assert_ui_ends(ui: Any, ui_state: str, recorder: Intermediary, requests: int) -> None:
    """The UI stops in `ui_state`, and the intermediary saw exactly `requests` requests."""
    wait_for(lambda: ui.done, WAIT, "the UI to stop")
    ui.finish()
    assert ui.ui_state == ui_state
    assert len(recorder.seen) == requests


def log_events(client: PollingClient) -> list[dict[str, Any]]:
    return [json.loads(line) for line in client.log_path.read_text("utf-8").splitlines()]


# -- the plain path


@pytest.mark.parametrize("fix", ["none", "nonce", "path-nonce", "post", "no-store", "private"])
def test_polls_until_success(stack, fix):
    s = stack()
    s.serve()
    client = s.client(fix)
    run_until_polls(client, 2)
    s.succeed(client.task_id)
    wait_done(client)
    assert client.ui_state == "completed"
    assert client.last_state == "SUCCESS"
    assert client.error is None and client.warnings == []
    assert [p.state for p in client.polls][-1] == "SUCCESS"
    assert all(p.task_id == client.task_id and p.server_seq for p in client.polls)
    assert client.finished_at is not None and client.started_at is not None


@pytest.mark.parametrize("style", ["path", "query"])
@pytest.mark.parametrize("fix", ["none", "nonce", "path-nonce", "belt-and-braces"])
def test_requests_follow_the_strategy_and_url_style(stack, style, fix):
    s = stack(status_url_style=style)
    client, recorder = completed_through_intermediary(s, fix, 3, status_url_style=style)
    strategy, task = BOOK.get(fix), client.task_id
    plain_path, _, plain_query = BOOK.status_path_for(task, style).partition("?")
    nonces = set()
    for request in recorder.seen:
        assert request.method == "GET"
        if strategy.poll.nonce == "path":
            head, _, nonce = request.path.rpartition("/")
            assert head == plain_path
            nonces.add(nonce)
        else:
            assert request.path == plain_path
        query = dict(pair.split("=") for pair in request.query.split("&") if pair)
        if strategy.poll.nonce == "query":
            nonces.add(query.pop(BOOK.nonce_query_param))
        assert query == dict(pair.split("=") for pair in plain_query.split("&") if pair)
    if strategy.poll.nonce:
        assert len(nonces) == len(recorder.seen), "a fresh nonce on every poll"


def test_post_polls_send_an_empty_json_object(stack):
    s = stack()
    client, recorder = completed_through_intermediary(s, "post", 2)
    for request in recorder.seen:
        assert (request.method, request.body) == ("POST", b"{}")
        assert request.headers["Content-Type"] == "application/json"
    assert {p.method for p in client.polls} == {"POST"}


def test_request_no_cache_sends_its_headers(stack):
    s = stack()
    client, recorder = completed_through_intermediary(s, "request-no-cache", 1)
    assert recorder.seen
    for request in recorder.seen:
        assert request.headers["Cache-Control"] == "no-cache"
        assert request.headers["Pragma"] == "no-cache"
        assert "If-None-Match" not in request.headers


def test_unknown_status_url_style_is_refused(stack):
    with pytest.raises(ValueError, match="path, query"):
        s = stack()
        s.serve()
        s.client("none", status_url_style="cookie")


# -- retry


def test_retries_a_503_with_backoff_then_completes(stack):
    s = stack()
    s.serve(lambda app: Intermediary(app, fail_requests({2, 3})))
    client = s.client("nonce")  # the shipped schedule: 250 ms, then 500 ms
    run_until_polls(client, 4)
    s.succeed(client.task_id)
    wait_done(client)
    assert client.ui_state == "completed"
    polls = client.polls
    assert [(p.status, p.retry) for p in polls[:4]] == [(200, 0), (503, 0), (503, 1), (200, 2)]
    assert polls[1].error == "HTTP 503" and polls[1].state is None
    assert polls[2].sent_at - polls[1].received_at >= 0.25
    assert polls[3].sent_at - polls[2].received_at >= 0.5
    assert all(p.retry == 0 for p in polls[4:]), "an answer resets the count"
    retries = [e for e in log_events(client) if e["event"] == "retry"]
    assert [(e["retry"], e["delay_s"]) for e in retries] == [(1, 0.25), (2, 0.5)]


def test_none_errors_on_the_first_failure(stack):
    s = stack()
    s.serve(lambda app: Intermediary(app, fail_requests({2})))
    client = s.client("none")
    client.start()
    wait_done(client)
    assert client.ui_state == "errored"
    assert client.error == "HTTP 503"
    assert [(p.status, p.retry) for p in client.polls] == [(200, 0), (503, 0)]
    assert client.last_state == "PENDING"
    assert not [e for e in log_events(client) if e["event"] == "retry"]


def test_gives_up_when_the_attempts_are_used_up(stack):
    s = stack()
    s.serve(lambda app: Intermediary(app, fail_requests(set(range(1, 100)))))
    client = s.client("nonce", retry=FAST_RETRY)
    client.start()
    wait_done(client)
    assert client.ui_state == "errored"
    assert [(p.status, p.retry) for p in client.polls] == [(503, 0), (503, 1), (503, 2)]


def test_retries_429_but_not_other_4xx(stack):
    s = stack()
    s.serve(lambda app: Intermediary(app, fail_requests({1}, "429 Too Many Requests")))
    client = s.client("nonce", retry=FAST_RETRY)
    run_until_polls(client, 2)
    s.succeed(client.task_id)
    wait_done(client)
    assert client.ui_state == "completed"
    assert client.polls[0].status == 429

    s2 = stack()
    s2.serve(lambda app: Intermediary(app, fail_requests({2}, "404 Not Found")))
    client = s2.client("nonce", retry=FAST_RETRY)
    client.start()
    wait_done(client)
    assert client.ui_state == "errored"
    assert client.error == "HTTP 404"
    assert [p.status for p in client.polls] == [200, 404]


def test_retries_a_dropped_connection(stack):
    def drop_second(environ, n):
        if n == 2:
            environ["werkzeug.socket"].shutdown(socket.SHUT_RDWR)
            return "500 Dropped", [], b""
        return None

    s = stack()
    s.serve(lambda app: Intermediary(app, drop_second))
    client = s.client("nonce", retry=FAST_RETRY)
    run_until_polls(client, 3)
    s.succeed(client.task_id)
    wait_done(client)
    assert client.ui_state == "completed"
    dropped = client.polls[1]
    assert dropped.status is None and dropped.error
    assert client.polls[2].retry == 1


# -- detect-stale


def test_detect_stale_switches_to_a_path_nonce_behind_a_stale_cache(stack):
    s = stack()
    cache = s.serve(ReplayFirstAnswer)
    client = s.client("detect-stale")
    client.start()
    wait_for(lambda: client.warnings, WAIT, "the stale warning")
    s.succeed(client.task_id)
    wait_done(client)
    assert client.ui_state == "completed"
    message = "stale answers detected after 3 polls; switched to path-nonce"
    assert client.warnings == [message]
    assert client.nonce_kind == "path"
    plain = f"{s.url}{BOOK.status_path_for(client.task_id)}"
    first_three = client.polls[:3]
    assert [p.url for p in first_three] == [plain] * 3
    assert len({(p.served_at, p.server_seq) for p in first_three}) == 1
    assert all(p.url.startswith(plain + "/") for p in client.polls[3:])
    assert cache.hits == 2
    warnings = [e for e in log_events(client) if e["event"] == "warning"]
    assert [e["message"] for e in warnings] == [message]


def test_without_detection_the_stale_cache_hangs_the_ui(stack):
    s = stack()
    s.serve(ReplayFirstAnswer)
    client = s.client("none")
    run_until_polls(client, 4)
    s.succeed(client.task_id)
    wait_for(lambda: len(client.polls) >= 10, WAIT, "more polls")
    assert client.ui_state == "running"
    assert client.last_state == "PENDING"
    assert client.warnings == []


# -- leaks


def neighbour_polls(url: str, style: str) -> str:
    """Another user starts a task and polls it once through the same cache."""
    with httpx.Client(trust_env=False) as http:
        other = http.post(f"{url}/tasks", json={"fix": "none", "duration": 0}).json()["task_id"]
        http.get(url + BOOK.status_path_for(other, style)).raise_for_status()
    return other


def test_a_foreign_task_in_the_answer_is_a_leak(stack):
    s = stack(status_url_style="query")
    s.serve(ReplayFirstAnswer)  # keyed on /status alone: every user gets the first user's answer
    other = neighbour_polls(s.url, "query")
    client = s.client("nonce", status_url_style="query")
    client.start()
    wait_done(client)
    assert client.ui_state == "leaked"
    assert client.foreign_task_id == other != client.task_id
    assert client.polls[-1].foreign_task_id == other
    assert client.finished_at is not None
    ui = [e for e in log_events(client) if e["event"] == "ui"]
    assert ui[-1]["ui_state"] == "leaked" and ui[-1]["foreign_task_id"] == other


def test_a_path_nonce_does_not_leak(stack):
    s = stack(status_url_style="query")
    s.serve(ReplayFirstAnswer)
    neighbour_polls(s.url, "query")
    client = s.client("path-nonce", status_url_style="query")
    run_until_polls(client, 2)
    s.succeed(client.task_id)
    wait_done(client)
    assert client.ui_state == "completed"
    assert client.foreign_task_id is None


def test_leak_rewritten_by_a_wrapper(stack):
    def someone_else(environ, n):
        body = json.dumps({"task_id": "someone-else", "state": "PENDING", "served_at": 1.0})
        return "200 OK", [("Content-Type", "application/json")], body.encode()

    s = stack()
    s.serve(lambda app: Intermediary(app, someone_else))
    client = s.client("no-store")
    client.start()
    wait_done(client)
    assert (client.ui_state, client.foreign_task_id) == ("leaked", "someone-else")
    assert len(client.polls) == 1


# -- ETag: the imitated browser cache


def test_etag_revalidation_uses_the_kept_answer(stack):
    s = stack()
    client, recorder = completed_through_intermediary(s, "no-cache-etag", 3)
    first, *middle, last = client.polls
    assert (first.status, first.browser_cache) == (200, False)
    assert first.etag and first.etag.startswith('W/"')
    assert middle and all(p.status == 304 and p.browser_cache for p in middle)
    assert all(p.state == "PENDING" and p.served_at == first.served_at for p in middle)
    assert (last.status, last.state) == (200, "SUCCESS")
    requests = recorder.seen
    assert "If-None-Match" not in requests[0].headers
    assert all(r.headers["If-None-Match"] == first.etag for r in requests[1:])


# -- the event stream


def test_sse_reads_events_through_to_success(stack):
    s = stack()
    s.serve()
    client = s.client("sse")
    run_until_polls(client, 1)
    assert client.polls[0].state == "PENDING"
    s.succeed(client.task_id)
    wait_done(client)
    assert client.ui_state == "completed"
    assert [p.state for p in client.polls] == ["PENDING", "SUCCESS"]
    assert all(p.status == 200 and p.stream == 1 and p.error is None for p in client.polls)
    assert client.polls[0].url == f"{s.url}{BOOK.events_path_for(client.task_id)}"


def test_sse_reconnects_after_a_failure_and_after_the_stream_ends(stack):
    s = stack(sse_max_seconds=0.3)  # the server closes each stream after 0.3 s
    s.serve(lambda app: Intermediary(app, fail_requests({1}), counts=is_events))
    client = s.client("sse", retry=FAST_RETRY)
    client.start()
    # connection 1: 503; connection 2: PENDING, then the stream ends; connection 3: PENDING
    wait_for(lambda: any(p.stream == 3 and p.state for p in client.polls), WAIT, "a third stream")
    s.succeed(client.task_id)
    wait_done(client)
    assert client.ui_state == "completed"
    summary = [(p.stream, p.status, p.state, p.retry, bool(p.error)) for p in client.polls]
    assert summary[:4] == [
        (1, 503, None, 0, True),
        (2, 200, "PENDING", 1, False),
        (2, 200, None, 0, True),  # ended before a final state: counted as a failure
        (3, 200, "PENDING", 1, False),
    ]
    assert summary[-1][2] == "SUCCESS"


def test_sse_gives_up_after_the_attempts(stack):
    s = stack()
    s.serve(lambda app: Intermediary(app, fail_requests(set(range(1, 100))), counts=is_events))
    client = s.client("sse", retry=FAST_RETRY)
    client.start()
    wait_done(client)
    assert client.ui_state == "errored"
    assert client.error == "HTTP 503"
    assert [(p.stream, p.retry) for p in client.polls] == [(1, 0), (2, 1), (3, 2)]


def test_stop_cuts_a_stream_a_proxy_holds_back(stack):
    release, opened = threading.Event(), threading.Event()

    class HoldBack:
        """A buffering proxy: the headers of the stream, then nothing until released."""

        def __init__(self, app: Wsgi) -> None:
            self.app = app

        def __call__(self, environ, start_response):
            if not is_events(environ):
                return self.app(environ, start_response)
            start_response("200 OK", [("Content-Type", "text/event-stream")])
            opened.set()

            def held() -> Iterator[bytes]:
                release.wait(WAIT)
                yield b""

            return held()

    s = stack()
    s.serve(HoldBack)
    client = s.client("sse")
    client.start()
    wait_for(opened.is_set, WAIT, "the events request")
    began = time.monotonic()
    client.stop()
    release.set()
    # A stop that waited for the stream would have taken WAIT (the held answer's own end).
    assert time.monotonic() - began < WAIT / 2
    assert client.ui_state == "running", "stopping is not an error the UI saw"
    assert client.polls == []


# -- the page's own poller (static/poller.js) against the same doubles, in Node
#
# The page is fetched from the live app (template, embedded JSON and poller.js as served) and run
# with a minimal DOM. Node has fetch (undici, which adds the same headers as a browser for
# cache: "no-store") but no EventSource and no HTTP cache: a small EventSource stands in, and the
# ETag path is left to the browser, as the strategy says.

PAGE_HARNESS = r"""
const vm = require("vm");
const [base, fix, deadlineMs, lingerMs] = process.argv.slice(2);
const nodeFetch = globalThis.fetch;
const absolute = (url) => new URL(url, base);

function element(id) {
  return {
    id, textContent: "", hidden: false, value: "", children: [], listeners: {},
    append(child) { this.children.push(child); },
    replaceChildren() { this.children = []; },
    addEventListener(type, listener) { this.listeners[type] = listener; },
  };
}
const elements = {};
const byId = (id) => (elements[id] ??= element(id));
const body = { dataset: { uiState: "idle" } };
globalThis.document = { body, getElementById: byId, createElement: () => element(null) };
globalThis.fetch = (url, init) => nodeFetch(absolute(url), init);

class EventSource {
  constructor(url) {
    this.readyState = 0;
    this.controller = new AbortController();
    this.run(absolute(url));
  }
  async run(url) {
    try {
      const response = await nodeFetch(url, {
        headers: { Accept: "text/event-stream" }, cache: "no-store",
        signal: this.controller.signal,
      });
      const type = (response.headers.get("content-type") || "").split(";")[0].trim();
      if (response.status !== 200 || type !== "text/event-stream") return this.fail();
      this.readyState = 1;
      const decoder = new TextDecoder();
      let buffer = "";
      let data = [];
      for await (const chunk of response.body) {
        buffer += decoder.decode(chunk, { stream: true });
        let at;
        while ((at = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, at).replace(/\r$/, "");
          buffer = buffer.slice(at + 1);
          if (line === "") {
            const message = data.join("\n");
            const had = data.length > 0;
            data = [];
            if (had && this.readyState !== 2 && this.onmessage) this.onmessage({ data: message });
            continue;
          }
          if (line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const name = colon < 0 ? line : line.slice(0, colon);
          let value = colon < 0 ? "" : line.slice(colon + 1);
          if (value.startsWith(" ")) value = value.slice(1);
          if (name === "data") data.push(value);
        }
        if (this.readyState === 2) return;
      }
      this.fail();
    } catch (err) {
      this.fail();
    }
  }
  fail() {
    if (this.readyState === 2) return;
    this.readyState = 0;
    if (this.onerror) this.onerror({ type: "error" });
  }
  close() {
    this.readyState = 2;
    this.controller.abort();
  }
}
globalThis.EventSource = EventSource;

function snapshot() {
  return JSON.stringify({
    dataset: body.dataset,
    status: byId("status").textContent,
    warnings: byId("warnings").children.map((c) => c.textContent),
    debug: Object.fromEntries(
      ["status", "age", "date", "cache-control", "truth"].map((k) => [
        k,
        byId("debug-" + k).textContent,
      ]),
    ),
  });
}

(async () => {
  const html = await (await nodeFetch(absolute("/?fix=" + encodeURIComponent(fix)))).text();
  const embedded = (id) => {
    const tag = '<script id="' + id + '" type="application/json">';
    return html.slice(html.indexOf(tag) + tag.length, html.indexOf("</script>", html.indexOf(tag)));
  };
  byId("strategies").textContent = embedded("strategies");
  byId("page-config").textContent = embedded("page-config");
  const selected = html.match(/<option value="([^"]+)"\s+selected>/);
  byId("fix").value = selected[1];
  const script = html.match(/<script src="([^"]+poller\.js)"><\/script>/)[1];
  const source = await (await nodeFetch(absolute(script))).text();
  vm.runInThisContext(source, { filename: "poller.js" });
  byId("start").listeners.click();
  let last = "";
  const began = Date.now();
  let stoppedAt = null;
  const timer = setInterval(() => {
    const now = snapshot();
    if (now !== last) {
      last = now;
      process.stdout.write(now + "\n");
    }
    const stopped = ["completed", "errored", "leaked"].includes(body.dataset.uiState);
    if (stopped && stoppedAt === null) stoppedAt = Date.now();
    // lingerMs: keep watching the page (its debug panel) that long after the UI stopped.
    const lingered = stopped && Date.now() - stoppedAt >= Number(lingerMs || 0);
    if (lingered || Date.now() - began > Number(deadlineMs)) {
      clearInterval(timer);
      process.exit(0);
    }
  }, 5);
})();
"""


class PageUi:
    """The page in Node: its data attributes, status text and warnings, as it shows them."""

    def __init__(self, stack: Stack, fix: str, tmp_path: Path, linger_ms: int = 0) -> None:
        assert NODE is not None
        harness = tmp_path / "page-harness.js"
        harness.write_text(PAGE_HARNESS, "utf-8")
        self.proc = subprocess.Popen(
            [NODE, str(harness), stack.url, fix, str(int(WAIT * 1000)), str(linger_ms)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.shown: dict[str, Any] = {"dataset": {}, "status": "", "warnings": []}
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.shown = json.loads(line)

    @property
    def dataset(self) -> dict[str, str]:
        return self.shown["dataset"]

    @property
    def task_id(self) -> str | None:
        return self.dataset.get("taskId")

    @property
    def ui_state(self) -> str:
        return self.dataset.get("uiState", "idle")

    @property
    def done(self) -> bool:
        return self.ui_state in ("completed", "errored", "leaked")

    @property
    def warnings(self) -> list[str]:
        return self.shown["warnings"]

    @property
    def shown_state(self) -> str | None:
        return self.dataset.get("taskState")

    @property
    def debug(self) -> dict[str, str]:
        """The debug panel's texts: status, age, date, cache-control, truth."""
        return self.shown.get("debug", {})

    @property
    def foreign_task_id(self) -> str | None:
        return self.dataset.get("foreignTaskId")

    def finish(self) -> None:
        try:
            self.proc.wait(timeout=WAIT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)
        assert self.proc.stderr is not None
        errors = self.proc.stderr.read()
        assert self.proc.returncode == 0, errors


class PythonUi:
    def __init__(self, stack: Stack, fix: str, **kwargs: Any) -> None:
        self.client = stack.client(fix, **kwargs)
        self.client.start()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    @property
    def shown_state(self) -> str | None:
        return self.client.last_state

    def finish(self) -> None:
        self.client.stop()


UIS = ["python", pytest.param("page", marks=pytest.mark.skipif(NODE is None, reason="no node"))]


def open_ui(kind: str, stack: Stack, fix: str, tmp_path: Path, style: str = "path") -> Any:
    if kind == "python":
        return PythonUi(stack, fix, status_url_style=style)
    return PageUi(stack, fix, tmp_path)


@pytest.mark.parametrize("ui_kind", UIS)
def test_both_uis_retry_the_same_way(stack, tmp_path, ui_kind):
    s = stack()
    recorder = s.serve(lambda app: Intermediary(app, fail_requests({2, 3})))
    ui = open_ui(ui_kind, s, "nonce", tmp_path)
    wait_for(lambda: len(recorder.seen) >= 4, WAIT, "four status requests")
    s.succeed(ui.task_id)
    wait_for(lambda: ui.done, WAIT, "the UI to stop")
    ui.finish()
    assert ui.ui_state == "completed"
    first_four = [(r.method, bool(r.query)) for r in recorder.seen[:4]]
    assert first_four == [("GET", True)] * 4
    if ui_kind == "page":
        assert ui.dataset["retries"] == "2"
        assert ui.shown["status"] == "Task SUCCESS"
    else:
        assert [p.retry for p in ui.polls[:4]] == [0, 0, 1, 2]


@pytest.mark.parametrize("ui_kind", UIS)
def test_both_uis_give_up_at_once_without_retry(stack, tmp_path, ui_kind):
    s = stack()
    recorder = s.serve(lambda app: Intermediary(app, fail_requests({2})))
    ui = open_ui(ui_kind, s, "none", tmp_path)
    assert_ui_ends(ui, "errored", recorder, requests=2)
    if ui_kind == "page":
        assert ui.shown["status"] == "Error: HTTP 503"
        assert "retries" not in ui.dataset


@pytest.mark.parametrize("ui_kind", UIS)
def test_both_uis_detect_stale_answers_the_same_way(stack, tmp_path, ui_kind):
    s = stack()
    recorder = Intermediary(ReplayFirstAnswer(s.app))
    s.serve(lambda app: recorder)
    ui = open_ui(ui_kind, s, "detect-stale", tmp_path)
    wait_for(lambda: ui.warnings, WAIT, "the stale warning")
    s.succeed(ui.task_id)
    wait_for(lambda: ui.done, WAIT, "the UI to stop")
    ui.finish()
    assert ui.ui_state == "completed"
    assert ui.warnings == ["stale answers detected after 3 polls; switched to path-nonce"]
    plain = BOOK.status_path_for(ui.task_id)
    paths = [r.path for r in recorder.seen]
    assert paths[:3] == [plain] * 3
    assert all(p.startswith(plain + "/") for p in paths[3:]) and len(paths) > 3


@pytest.mark.parametrize("ui_kind", UIS)
def test_both_uis_see_a_leak(stack, tmp_path, ui_kind):
    s = stack(status_url_style="query")
    s.serve(ReplayFirstAnswer)
    other = neighbour_polls(s.url, "query")
    ui = open_ui(ui_kind, s, "nonce", tmp_path, style="query")
    wait_for(lambda: ui.done, WAIT, "the UI to stop")
    ui.finish()
    assert ui.ui_state == "leaked"
    assert ui.foreign_task_id == other
    if ui_kind == "page":
        assert ui.shown["status"].startswith("Showing another user's task!")


@pytest.mark.parametrize("fix", ["post", "request-no-cache", "path-nonce", "sse"])
@pytest.mark.parametrize("ui_kind", UIS)
def test_both_uis_send_the_same_requests(stack, tmp_path, ui_kind, fix):
    s = stack()
    recorder = s.serve(lambda app: Intermediary(app, counts=is_task_request))
    ui = open_ui(ui_kind, s, fix, tmp_path)
    wanted = 2 if BOOK.get(fix).transport == "poll" else 1  # polls; or one event stream
    wait_for(lambda: len(recorder.seen) >= wanted and ui.shown_state, WAIT, "the requests")
    assert ui.shown_state == "PENDING"
    s.succeed(ui.task_id)
    wait_for(lambda: ui.done, WAIT, "the UI to stop")
    ui.finish()
    assert ui.ui_state == "completed"
    polls = recorder.seen
    strategy = BOOK.get(fix)
    for request in polls:
        if strategy.transport == "sse":
            assert request.path == BOOK.events_path_for(ui.task_id)
            assert request.headers["Accept"] == "text/event-stream"
            continue
        assert request.method == strategy.poll.method
        if strategy.poll.body is not None:
            assert json.loads(request.body) == strategy.poll.body
            assert request.headers["Content-Type"] == "application/json"
        for name, value in strategy.request_headers.items():
            assert request.headers[name] == value
        assert (request.path != BOOK.status_path_for(ui.task_id)) == (strategy.poll.nonce == "path")


@pytest.mark.parametrize("ui_kind", UIS)
def test_both_uis_reopen_a_failed_event_stream(stack, tmp_path, ui_kind):
    s = stack()
    recorder = s.serve(lambda app: Intermediary(app, fail_requests({1}), counts=is_events))
    ui = open_ui(ui_kind, s, "sse", tmp_path)
    wait_for(lambda: len(recorder.seen) >= 2 and ui.shown_state, WAIT, "a second stream")
    s.succeed(ui.task_id)
    assert_ui_ends(ui, "completed", recorder, requests=2)
    if ui_kind == "page":
        assert ui.dataset["retries"] == "1"
    else:
        assert [(p.stream, p.status, p.retry) for p in ui.polls] == [
            (1, 503, 0),
            (2, 200, 1),
            (2, 200, 1),
        ]


@pytest.mark.skipif(NODE is None, reason="no node")
def test_the_pages_debug_panel_asks_for_the_truth_without_counting_as_a_poll(stack, tmp_path):
    s = stack()
    debug = Intermediary(s.app, counts=lambda e: is_debug_path(e["PATH_INFO"]))
    polls = Intermediary(ReplayFirstAnswer(debug))  # a stale cache: the UI hangs on PENDING
    s.serve(lambda app: polls)
    ui = PageUi(s, "none", tmp_path)
    wait_for(lambda: len(polls.seen) >= 3, WAIT, "three polls")
    wait_for(lambda: ui.debug.get("truth") == "not finished (PENDING)", WAIT, "the truth")
    assert ui.debug["status"].startswith("PENDING, served_at ")
    s.succeed(ui.task_id)
    wait_for(lambda: "finished" in ui.debug.get("truth", ""), WAIT, "the truth")
    wait_for(lambda: "s ago" in ui.debug.get("truth", ""), WAIT, "the finish")
    assert re.fullmatch(r"finished \d+ s ago \(SUCCESS\)", ui.debug["truth"])
    assert ui.ui_state == "running"  # the page itself still shows the cached PENDING
    assert ui.debug["status"].startswith("PENDING")
    asked = len(debug.seen)
    time.sleep(1.5)  # the observation window, not a wait: a page still asking would ask in it
    assert len(debug.seen) == asked, "it stops asking once the task is finished"
    assert all(r.method == "POST" and not r.body for r in debug.seen)
    ui.proc.kill()  # the UI would hang on until its deadline
    ui.proc.wait()


@pytest.mark.skipif(NODE is None, reason="no node")
def test_the_pages_debug_panel_shows_the_answers_headers(stack, tmp_path):
    s = stack(status_cache_control="max-age=0")
    s.serve()
    ui = PageUi(s, "none", tmp_path, linger_ms=1500)
    # The panel's truth and the first answer's headers come from two requests, in either order.
    wait_for(
        lambda: ui.task_id and "-" not in (ui.debug.get("truth", "-"), ui.debug.get("date", "-")),
        WAIT,
        "the panel",
    )
    shown = ui.debug
    assert shown["age"] == "(none)"  # no cache on the way
    assert shown["date"].endswith(" GMT")
    assert shown["cache-control"] == "max-age=0"
    s.succeed(ui.task_id)
    wait_for(lambda: ui.done, WAIT, "the UI to stop")
    # Stopped: the panel asks at once, and says how long ago the task really finished.
    wait_for(lambda: "s ago" in ui.debug.get("truth", ""), WAIT, "the finish")
    ui.finish()
    assert ui.ui_state == "completed"
    assert ui.debug["status"].startswith("SUCCESS, served_at ")
