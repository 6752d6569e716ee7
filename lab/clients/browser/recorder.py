"""The page's network traffic as polls: a pure recorder of Chrome DevTools Protocol events.

Playwright's response API cannot tell a browser-cache hit from a network answer, so the page's
own traffic is followed through the Network domain: `requestWillBeSent` (URL, method, wall
time), `responseReceived` (what the page got: status, the headers as merged by the HTTP cache,
`fromDiskCache`), `responseReceivedExtraInfo` (the status on the wire: 304 when the cache
revalidated its copy), `requestServedFromCache`, `loadingFinished`/`loadingFailed` (then the
body, which the recorder asks for and is handed with `body`), and `eventSourceMessageReceived`
(one answer per event of the `sse` fix's stream). A poll answered by the browser's own cache
has `browser_cache` set and says how in `browser_cache_kind`: "fresh" (no request left the
browser) or "revalidated" (a 304 confirmed the kept copy; `status` is then 304, as for the
Python client).

No browser and no event loop: events go in as the plain dicts CDP sends, polls come out in
the client's `polls` and log, in the order their requests finished.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from lab.clients.base import ClientBase
from lab.clients.poll import Poll, new_poll, read_answer
from sample_app.debug import is_debug_path
from sample_app.strategies import StrategyBook

EVENT_STREAM = "text/event-stream"


@dataclass
class BrowserPoll(Poll):
    """A lab.clients.poll.Poll, plus how the browser's own HTTP cache took part."""

    browser_cache_kind: str | None = None  # "fresh": no request sent; "revalidated": a 304


@dataclass
class _Request:
    """One request of the page's that the client follows, while it is in flight."""

    id: str
    kind: str  # "poll", "events" or "start"
    url: str
    method: str
    sent_at: float
    timestamp: float  # the browser's monotonic clock, for the events that follow
    status: int | None = None
    headers: dict[str, str] | None = None
    mime: str | None = None
    from_cache: bool = False
    retry: int = 0
    stream: int | None = None
    settled: bool = False  # events: its failure (or final answer) is already recorded


@dataclass
class _Finished:
    """A finished request, recorded in its turn; `waiting` until its body was handed in."""

    request: _Request
    poll: BrowserPoll | None  # None for the start's answer: logged, not a poll
    waiting: bool = False


class NetworkRecorder:
    """Turns the page's Network events into the client's polls. `fetch_body(request_id)` is
    called when an answer's body is needed; whoever reads it hands it back with `body`."""

    def __init__(self, client: ClientBase, fetch_body: Callable[[str], None]) -> None:
        self.client = client
        self.fetch_body = fetch_body
        self.stopping = False  # set when the client stops: nothing more is recorded
        self._kind_of = RequestKinds(client.base_url, client.book)
        self._requests: dict[str, _Request] = {}
        self._wire_status: dict[str, int] = {}
        self._served_from_cache: set[str] = set()
        self._finished: deque[_Finished] = deque()
        self._failures = 0
        self._streams = 0
        self._clock_offset: float | None = None  # wall time minus the browser's monotonic clock
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "Network.requestWillBeSent": self._on_request,
            "Network.requestServedFromCache": self._on_served_from_cache,
            "Network.responseReceivedExtraInfo": self._on_extra_info,
            "Network.responseReceived": self._on_response,
            "Network.loadingFinished": self._on_finished,
            "Network.loadingFailed": self._on_failed,
            "Network.eventSourceMessageReceived": self._on_event_message,
        }

    @property
    def events(self) -> list[str]:
        """The CDP events the recorder reads."""
        return list(self._handlers)

    def handle(self, event: str, params: dict[str, Any]) -> None:
        """One CDP event; a bug in its handler is logged, not lost in the browser's emitter."""
        handler = self._handlers.get(event)
        if handler is None:
            return
        try:
            handler(params)
        except Exception as exc:  # noqa: BLE001
            self.client.log(
                "client_bug", error=f"{type(exc).__name__}: {exc}", handler=handler.__name__
            )

    def body(self, request_id: str, text: str | None) -> None:
        """The body of a finished request (None: it could not be read), as asked for."""
        entry = next((e for e in self._finished if e.waiting and e.request.id == request_id), None)
        if entry is None:
            return
        entry.waiting = False
        if entry.poll is None:
            self._read_start(entry.request, text)
        elif text is None:
            entry.poll.error = "the answer's body could not be read from the browser"
        else:
            read_answer(entry.poll, text, self.client.task_id)
        self._record_ready()

    @property
    def pending(self) -> bool:
        """A finished request still waits for its body, or its turn."""
        return bool(self._finished)

    def settled(self, ui: str) -> bool:
        """At the final ui state `ui`: has the answer that ended it been recorded?"""
        if any(r.kind == "poll" for r in self._requests.values()) or self.pending:
            return False
        if self.client.strategy.transport == "sse" and ui != "errored":
            last = self.client.polls[-1] if self.client.polls else None
            return last is not None and self.client.is_final(last)
        return True

    def _wall(self, timestamp: float) -> float:
        if self._clock_offset is None:
            return time.time()
        return timestamp + self._clock_offset

    # -- the events
    def _on_request(self, event: dict[str, Any]) -> None:
        self._clock_offset = event["wallTime"] - event["timestamp"]
        if self.stopping:
            return
        request = event["request"]
        kind = self._kind_of(request["method"], request["url"])
        if kind is None:
            return
        tracked = _Request(
            id=event["requestId"],
            kind=kind,
            url=request["url"],
            method=request["method"],
            sent_at=event["wallTime"],
            timestamp=event["timestamp"],
            retry=self._failures,
        )
        if kind == "events":
            self._streams += 1
            tracked.stream = self._streams
        self._requests[tracked.id] = tracked

    def _on_served_from_cache(self, event: dict[str, Any]) -> None:
        self._served_from_cache.add(event["requestId"])

    def _on_extra_info(self, event: dict[str, Any]) -> None:
        # May come before requestWillBeSent: kept by id until the request finishes.
        self._wire_status[event["requestId"]] = event["statusCode"]

    def _on_response(self, event: dict[str, Any]) -> None:
        tracked = self._requests.get(event["requestId"])
        if tracked is None:
            return
        response = event["response"]
        if details := response.get("securityDetails"):
            self.client.saw_certificate(details.get("subjectName"), details.get("issuer"))
        tracked.status = response["status"]
        tracked.headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
        tracked.mime = response.get("mimeType")
        tracked.from_cache = bool(response.get("fromDiskCache"))
        if tracked.kind == "events":
            mime = (tracked.mime or "").lower()
            if tracked.status != 200:
                self._stream_failed(tracked, f"HTTP {tracked.status}", event["timestamp"])
            elif mime != EVENT_STREAM:
                what = mime or "no content type"
                self._stream_failed(tracked, f"not an event stream ({what})", event["timestamp"])

    def _on_finished(self, event: dict[str, Any]) -> None:
        tracked = self._requests.pop(event["requestId"], None)
        wire = self._wire_status.pop(event["requestId"], None)
        fresh = event["requestId"] in self._served_from_cache
        self._served_from_cache.discard(event["requestId"])
        if tracked is None or self.stopping:
            return
        if tracked.kind == "events":
            self._stream_failed(tracked, "the event stream ended before a final state", None)
            return
        if tracked.kind == "start":
            self._add(_Finished(tracked, None, waiting=True))
            return
        poll = self._new_poll(tracked, self._wall(event["timestamp"]))
        if fresh or tracked.from_cache:
            poll.browser_cache, poll.browser_cache_kind = True, "fresh"
        elif wire == 304 and tracked.status != 304:
            poll.browser_cache, poll.browser_cache_kind = True, "revalidated"
            poll.status = 304
        status = tracked.status
        if status is None or not 200 <= status < 300:
            poll.error = f"HTTP {status}"
            self._add(_Finished(tracked, poll))
            return
        self._add(_Finished(tracked, poll, waiting=True))

    def _on_failed(self, event: dict[str, Any]) -> None:
        tracked = self._requests.pop(event["requestId"], None)
        self._wire_status.pop(event["requestId"], None)
        self._served_from_cache.discard(event["requestId"])
        if tracked is None or self.stopping:
            return
        error = event.get("errorText") or "the request failed"
        if tracked.kind == "events":
            if not event.get("canceled"):  # canceled: the page closed it itself
                self._stream_failed(tracked, error, event["timestamp"])
            return
        if tracked.kind == "start":
            self.client.log("start", status=None, error=error)
            return
        poll = self._new_poll(tracked, self._wall(event["timestamp"]))
        poll.status, poll.error = None, error
        self._add(_Finished(tracked, poll))

    def _on_event_message(self, event: dict[str, Any]) -> None:
        tracked = self._requests.get(event["requestId"])
        if tracked is None or self.stopping or tracked.settled:
            return
        at = self._wall(event["timestamp"])
        poll = self._new_poll(tracked, at)
        poll.sent_at = at
        read_answer(poll, event.get("data") or "", self.client.task_id)
        if poll.error is None and self.client.is_final(poll):
            tracked.settled = True
        self._add(_Finished(tracked, poll))

    def _stream_failed(self, tracked: _Request, error: str, timestamp: float | None) -> None:
        if tracked.settled or self.client.done:
            return
        tracked.settled = True
        at = self._wall(timestamp) if timestamp is not None else time.time()
        poll = self._new_poll(tracked, at)
        poll.sent_at = tracked.sent_at
        poll.state, poll.error = None, error
        self._add(_Finished(tracked, poll))

    # -- recording, in the order the requests finished
    def _new_poll(self, tracked: _Request, received_at: float) -> BrowserPoll:
        return new_poll(
            BrowserPoll,
            seq=0,  # numbered when recorded
            url=tracked.url,
            status=tracked.status,
            headers=tracked.headers,
            sent_at=tracked.sent_at,
            received_at=received_at,
            method=tracked.method,
            retry=tracked.retry,
            stream=tracked.stream,
        )

    def _add(self, entry: _Finished) -> None:
        self._finished.append(entry)
        if entry.waiting:
            self.fetch_body(entry.request.id)
        self._record_ready()

    def _record_ready(self) -> None:
        """Record answers in the order their requests finished, though reading a body waits."""
        while self._finished and not self._finished[0].waiting:
            poll = self._finished.popleft().poll
            if poll is None or self.stopping:
                continue
            poll.seq = len(self.client.polls) + 1
            poll.retry = self._failures if poll.stream is None else poll.retry
            if poll.error:
                self._failures += 1
            else:
                self._failures = 0
            self.client.record(poll)

    def _read_start(self, tracked: _Request, body: str | None) -> None:
        """The answer to Start: logged, and the task id it names (the page may have shown it
        first)."""
        self.client.log("start", status=tracked.status, body=(body or "")[:500])
        with contextlib.suppress(ValueError, TypeError, KeyError):
            self.client.task_id = self.client.task_id or json.loads(body or "")["task_id"]


class RequestKinds:
    """Which of the page's requests the client follows: "start" (POST /tasks), "poll" (a
    status URL, in any of the app's styles), "events" (the event stream), or None."""

    def __init__(self, base_url: str, book: StrategyBook) -> None:
        base = urlsplit(base_url)
        self._origin = (base.scheme, base.netloc)
        self._prefix = base.path.rstrip("/")
        self._status_routes = [status_route(t) for t in book.status_paths.values()]
        self._events_path = re.compile(path_regex(book.events_path))

    def __call__(self, method: str, url: str) -> str | None:
        parts = urlsplit(url)
        if (parts.scheme, parts.netloc) != self._origin:
            return None
        path = parts.path
        if self._prefix:
            if not path.startswith(self._prefix + "/"):
                return None
            path = path[len(self._prefix) :]
        if method == "POST" and path == "/tasks":
            return "start"
        if is_debug_path(path):
            return None  # the page's debug panel asking for the truth: not a poll
        if self._events_path.fullmatch(path):
            return "events"
        query = parse_qs(parts.query)
        for pattern, task_param in self._status_routes:
            if pattern.fullmatch(path) and (task_param is None or task_param in query):
                return "poll"
        return None


def status_route(template: str) -> tuple[re.Pattern[str], str | None]:
    """A status URL template as (path regex, allowing the page's path nonce; the query parameter
    holding the task id, or None)."""
    path, _, query = template.partition("?")
    param = next((p.partition("=")[0] for p in query.split("&") if p.endswith("={task_id}")), None)
    return re.compile(path_regex(path) + "(?:/[^/]+)?"), param


def path_regex(path: str) -> str:
    return re.escape(path).replace(re.escape("{task_id}"), "[^/]+")
