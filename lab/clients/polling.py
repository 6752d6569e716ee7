"""The lab's Python client: the page's polling logic, step for step, through the proxy.

Like static/poller.js, and built from the same sample_app/strategies.json: POST /tasks, then
- transport "poll": poll -> wait for the answer -> stop on a final state (or a leak), else wait the
  poll interval and poll again; a failed request (no answer, 5xx, 429) is retried after the
  strategy's backoff, up to its attempts in a row, then the UI errors; any other failure is final;
- transport "sse": one event stream, each event handled like a poll's answer; a stream that fails
  or ends before a final state is reconnected after the backoff, counted as a retry.

A strategy with detect_stale switches to its nonce once the same answer (served_at and seq) came
back too often in a row, and says so in `warnings`. What the page gets from the browser for free
is imitated here: the browser's HTTP cache revalidating a kept answer with If-None-Match (fetch
cache mode "default"), the headers fetch adds for cache mode "no-store", and EventSource's request.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from lab.clients.base import ClientBase
from lab.clients.poll import Poll, new_poll, read_answer
from lab.clients.probe_tls import accepted
from sample_app.strategies import DetectStale, is_retryable

REQUEST_TIMEOUT = 10.0
EVENT_STREAM = "text/event-stream"
# What the browser does for each fetch() cache mode the page may use: whether its HTTP cache
# revalidates a kept answer (If-None-Match), and the request headers it adds when absent.
BROWSER_FETCH_CACHE: dict[str, tuple[bool, dict[str, str]]] = {
    "default": (True, {}),
    "no-store": (False, {"Cache-Control": "no-cache", "Pragma": "no-cache"}),
}
# EventSource's own request: it asks for a stream, and for a fresh one.
EVENT_SOURCE_HEADERS = {"Accept": EVENT_STREAM, "Cache-Control": "no-cache"}
KEPT_ANSWERS = 64  # the imitated browser cache keeps this many URLs' last answer


class StaleWatch:
    """The same answer (served_at and seq) `after_polls` times in a row while our clock moved:
    something between us and the app is replaying it."""

    def __init__(self, spec: DetectStale, clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self.clock = clock
        self._key: tuple[Any, Any] | None = None
        self._count = 0
        self._first_seen = 0.0

    def saw(self, poll: Poll) -> bool:
        now = self.clock()
        key = (poll.served_at, poll.server_seq)
        if key == (None, None):  # nothing to compare: not a sign of anything
            self._key, self._count = None, 0
            return False
        if key != self._key:
            self._key, self._count, self._first_seen = key, 1, now
            return False
        self._count += 1
        return self._count >= self.spec.after_polls and now > self._first_seen


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context for every client of the process. The lab only speaks plain HTTP on
    loopback, but httpx builds a context (loading the CA bundle, tens of ms of CPU) for each
    client and each proxy transport unless given one: a matrix makes hundreds of clients."""
    return httpx.create_ssl_context()


def http_client(verify: ssl.SSLContext | None = None, **options: Any) -> httpx.Client:
    """An httpx client as the lab uses them: no proxy or certificates from the environment;
    `verify`: the run's own CAs for HTTPS."""
    return httpx.Client(trust_env=False, verify=verify or tls_context(), **options)


def http_error(response: httpx.Response) -> str:
    """The failure as "HTTP 500", with the app's reason when it gave one (as the page shows)."""
    try:
        reason = response.json().get("error")
    except (ValueError, AttributeError):
        reason = None
    return f"HTTP {response.status_code}" + (f": {reason}" if reason else "")


class PollingClient(ClientBase):
    """Runs in its own thread; the runner reads `ui_state`, `polls` and `task_id` while it runs."""

    kind = "python"

    def __post_init__(self) -> None:
        if self.status_url_style not in self.book.status_paths:
            known = ", ".join(self.book.status_paths)
            raise ValueError(f"status_url_style {self.status_url_style!r}: not one of {known}")
        super().__post_init__()
        self._http = http_client(
            self.verify, proxy=self.proxy_url, timeout=REQUEST_TIMEOUT, follow_redirects=False
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="polling-client", daemon=True)
        # Every connection the client opened (httpcore's trace hook reports them): stop() shuts
        # them down, which wakes a read that may never end on its own (closing does not).
        self._streams: list[Any] = []
        self._extensions = {"trace": self._trace}
        self._kept: OrderedDict[str, tuple[str, dict[str, Any]]] = OrderedDict()
        self.nonce_kind: str | None = self.strategy.poll.nonce  # detect_stale may switch it

    # -- the runner's side
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        shut_down(self._streams)
        if self._thread.ident is not None:  # stopped before it started: nothing to wait for
            self._thread.join(timeout=REQUEST_TIMEOUT + 1)
        self._http.close()

    # -- the page's logic
    def _run(self) -> None:
        try:
            self._start_task()
        except Exception as exc:  # noqa: BLE001 - the page shows any error and stops
            self.show_error(f"starting the task failed: {exc}")
            return
        transports: dict[str, Callable[[], None]] = {
            "poll": self._poll_loop,
            "sse": self._event_stream,
        }
        try:
            transports[self.strategy.transport]()
        except Exception as exc:
            # A bug here, not something the page would see: say so instead of looking hung.
            self.show_error(f"the client itself failed: {type(exc).__name__}: {exc}")
            raise

    def _start_task(self) -> None:
        self.ui_state = "running"
        self.started_at = time.time()
        response = self._http.post(
            f"{self.base_url}/tasks",
            json={"fix": self.strategy.name, "duration": self.task_duration},
            extensions=self._extensions,
        )
        self.log("start", status=response.status_code, body=response.text[:500])
        if not response.is_success:
            raise RuntimeError(http_error(response))
        self.task_id = response.json()["task_id"]

    def _poll_loop(self) -> None:
        retry = self.strategy.retry
        stale = StaleWatch(self.strategy.detect_stale) if self.strategy.detect_stale else None
        failures = 0
        while not self._stop.is_set():
            poll = self._poll_once(retry=failures)
            if self._stop.is_set():
                return  # stopped mid-request: what came back is not the UI's doing
            self.record(poll)
            if poll.error:
                if is_retryable(poll.status) and failures < retry.attempts:
                    failures += 1
                    self._wait_to_retry(failures, poll.error)
                    continue
                self.show_error(poll.error)
                return
            failures = 0
            if self._handle_answer(poll):
                return
            if stale is not None and stale.saw(poll):
                self._switch_nonce(stale.spec)
                stale = None
            self._stop.wait(self.poll_interval)

    def _event_stream(self) -> None:
        retry = self.strategy.retry
        failures = 0
        connection = 0
        while not self._stop.is_set():
            connection += 1
            url = f"{self.base_url}{self.book.events_path_for(self._task())}"
            opened_with, opened_at = failures, time.time()
            status: int | None = None
            response: httpx.Response | None = None
            try:
                with self._http.stream(
                    "GET",
                    url,
                    headers=EVENT_SOURCE_HEADERS,
                    timeout=httpx.Timeout(REQUEST_TIMEOUT, read=None),  # events come when they do
                    extensions=self._extensions,
                ) as response:
                    status = response.status_code
                    content_type = response.headers.get("content-type", "").split(";")[0]
                    if status != 200:
                        error = f"HTTP {status}"
                    elif content_type.strip().lower() != EVENT_STREAM:
                        error = f"not an event stream ({content_type or 'no content type'})"
                    else:
                        for data in sse_messages(response.iter_lines()):
                            if self._stop.is_set():
                                return
                            failures = 0
                            poll = self._poll(
                                url, response, sent_at=0.0, retry=opened_with, stream=connection
                            )
                            poll.sent_at = poll.received_at  # an event is sent as it arrives
                            read_answer(poll, data, self.task_id)
                            self.record(poll)
                            if poll.error:
                                self.show_error(poll.error)
                                return
                            if self._handle_answer(poll):
                                return
                        error = "the event stream ended before a final state"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            if self._stop.is_set():
                return
            # EventSource does not tell the page the status: every failure is worth a retry.
            failed = self._poll(url, response, sent_at=opened_at, retry=failures, stream=connection)
            failed.error = error
            self.record(failed)
            if failures < retry.attempts:
                failures += 1
                self._wait_to_retry(failures, error)
                continue
            self.show_error(error)
            return

    def _poll_once(self, *, retry: int) -> Poll:
        spec = self.strategy.poll
        url = self._status_url()
        revalidates, added_headers = BROWSER_FETCH_CACHE[spec.fetch_cache]
        headers = httpx.Headers(spec.request_headers)
        for name, value in added_headers.items():
            headers.setdefault(name, value)
        kept = self._kept.get(url) if revalidates and spec.method == "GET" else None
        if kept is not None:
            headers["If-None-Match"] = kept[0]
        sent_at = time.time()
        try:
            response = self._http.request(
                spec.method, url, headers=headers, json=spec.body, extensions=self._extensions
            )
        except httpx.HTTPError as exc:
            poll = self._poll(url, None, sent_at=sent_at, retry=retry, method=spec.method)
            poll.error = f"{type(exc).__name__}: {exc}"
            return poll
        poll = self._poll(url, response, sent_at=sent_at, retry=retry, method=spec.method)
        if response.status_code == 304 and kept is not None:
            poll.browser_cache = True
            self._read_answer(poll, kept[1])
            return poll
        if not response.is_success:
            poll.error = http_error(response)
            return poll
        body = self._read_answer(poll, response.text)
        if body is not None and poll.etag and revalidates and spec.method == "GET":
            self._kept[url] = (poll.etag, body)
            self._kept.move_to_end(url)
            while len(self._kept) > KEPT_ANSWERS:
                self._kept.popitem(last=False)
        return poll

    def _status_url(self) -> str:
        target = self.book.status_target(
            self._task(), style=self.status_url_style, nonce_kind=self.nonce_kind
        )
        return f"{self.base_url}{target}"

    def _read_answer(self, poll: Poll, answer: str | dict[str, Any]) -> dict[str, Any] | None:
        """Fills the poll from a status answer (its text, or the body the browser's cache kept)
        and returns the body, or None with the poll's error set."""
        return read_answer(poll, answer, self.task_id)

    def _poll(
        self,
        url: str,
        response: httpx.Response | None,
        *,
        sent_at: float,
        retry: int,
        stream: int | None = None,
        method: str = "GET",
    ) -> Poll:
        """The answer's poll (its state not read yet), or with no response a failed request's."""
        return new_poll(
            Poll,
            seq=len(self.polls) + 1,
            url=url,
            status=response.status_code if response is not None else None,
            headers=response.headers if response is not None else None,
            sent_at=sent_at,
            received_at=time.time(),
            method=method,
            retry=retry,
            stream=stream,
        )

    def _handle_answer(self, poll: Poll) -> bool:
        """What the page does with an answer; True when the UI stops."""
        if poll.foreign_task_id is not None:
            self.foreign_task_id = poll.foreign_task_id
            self.show_final("leaked", poll.received_at, foreign_task_id=poll.foreign_task_id)
            return True
        if poll.state in self.book.final_states:
            ui_state = "completed" if poll.state == "SUCCESS" else "errored"
            self.show_final(ui_state, poll.received_at, state=poll.state)
            return True
        return False

    def _switch_nonce(self, spec: DetectStale) -> None:
        self.nonce_kind = spec.switch_to_nonce
        self.warn(spec.warning)

    def _wait_to_retry(self, retry: int, error: str | None) -> None:
        delay = self.strategy.retry.delay_s(retry)
        self.log(
            "retry", retry=retry, attempts=self.strategy.retry.attempts, delay_s=delay, error=error
        )
        self._stop.wait(delay)

    def _task(self) -> str:
        assert self.task_id is not None
        return self.task_id

    def _trace(self, event: str, info: dict[str, Any]) -> None:
        if event == "connection.connect_tcp.complete":
            self._streams.append(info["return_value"])
        elif event.endswith(".start_tls.complete") and (seen := accepted(info["return_value"])):
            self.saw_certificate(*seen)  # HTTPS, straight or in a proxy's CONNECT tunnel


def shut_down(streams: list[Any]) -> None:
    """Wake a client thread out of a read that may never end (an event stream, or its
    headers, held back by a buffering proxy): shut its connections down (closing does not)."""
    for stream in list(streams):
        sock = stream.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)


def sse_messages(lines: Iterator[str]) -> Iterator[str]:
    """The data of each message event in a text/event-stream, as EventSource's onmessage gets
    it: data lines joined by newlines, dispatched at a blank line; comments (heartbeats) and
    other fields are skipped."""
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
            data = []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value.removeprefix(" "))
