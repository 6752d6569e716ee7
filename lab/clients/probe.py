"""`lab probe`'s requests: a first look at the URL (the probe endpoint's index, or any page),
then for each poll strategy the endpoint lists, concurrently, a fresh probe id polled the way
that strategy's page polls (sample_app/strategies.json, as lab/clients/polling.py builds its
polls: method, body, query or path nonce, request headers, the browser cache's If-None-Match,
and the catalogue's retry). A plain URL gets a second request instead. Nothing here judges.
"""

from __future__ import annotations

import json
import secrets
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from lab.clients.polling import BROWSER_FETCH_CACHE
from lab.clients.probe_route import Route, failure, gateway_failure
from lab.clients.probe_tls import (
    TlsFacts,
    cacert_context,
    facts_from,
    peer_certificate,
    system_context,
    unverified_context,
    verification_problem,
)
from sample_app import strategies
from sample_app.strategies import Strategy, add_nonce, is_retryable

INDEX_MARK = "proxy-cache-lab"  # the index's "probe" field (cache_probe/core.py)
REQUEST_TIMEOUT = 10.0
PLAIN_GAP_S = 1.1  # between the plain URL's two requests: Date moves on by at least a second


@dataclass
class Answer:
    """One request and what came back (or why nothing did)."""

    seq: int
    url: str
    method: str
    sent_at: float
    received_at: float
    status: int | None
    headers: dict[str, str]  # lower-case names
    retry: int = 0  # failed requests in a row before this one
    count: int | None = None  # the probe's counter in the body
    probe: str | None = None  # the probe id the body is about
    server_time: float | None = None
    error: str | None = None
    kept_copy: bool = False  # a 304: the body is the copy the (imitated) browser kept
    nonce: str | None = None  # "query" or "path" when the poll carried one


@dataclass(frozen=True)
class IndexedStrategy:
    """A strategy as the endpoint lists it: the headers its origin sends."""

    name: str
    headers: dict[str, str]
    etag: bool
    last_modified_age_s: int | None


@dataclass
class FirstLook:
    """The first request to the URL: the probe's index, or a page that is not one."""

    route: Route
    answer: Answer
    body: bytes
    verify: ssl.SSLContext
    tls: TlsFacts | None
    index: dict[str, IndexedStrategy] | None  # None: not a probe endpoint

    @property
    def base(self) -> str:
        """The endpoint's URL without a trailing slash or query: strategies hang under it."""
        parts = urlsplit(self.route.url)
        return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


@dataclass
class StrategyRun:
    strategy: str
    probe_id: str
    answers: list[Answer] = field(default_factory=list)
    gave_up: str | None = None  # the failure the page would stop at (after its retries)
    switched_after: int | None = None  # detect-stale: polls before it switched to its nonce


def client_for(route: Route, verify: ssl.SSLContext) -> httpx.Client:
    return httpx.Client(trust_env=False, proxy=route.proxy, verify=verify, timeout=REQUEST_TIMEOUT)


def first_look(route: Route) -> FirstLook:
    """GET the URL. Unreachable (exit 3) when no answer came, or a gateway spoke for a server
    it could not reach; on https a certificate this machine cannot verify is named and the
    probe goes on without verification."""
    verify = cacert_context(route.cacert) if route.cacert else system_context()
    tls_problem = None
    try:
        answer, body, der = _look(route, verify)
    except httpx.HTTPError as exc:
        tls_problem = verification_problem(exc) if route.https else None
        if tls_problem is None:
            raise failure(route, exc) from None
        # The certificate: look again without verifying, to see who issued it.
        verify = unverified_context()
        try:
            answer, body, der = _look(route, verify)
        except httpx.HTTPError as again:
            raise failure(route, again) from None
    tls = facts_from(der, tls_problem is None, tls_problem, route.cacert) if route.https else None
    index = read_index(body) if answer.status == 200 else None
    if index is None and (gone := gateway_failure(route, answer.status or 0)) is not None:
        raise gone
    return FirstLook(route, answer, body, verify, tls, index)


def _look(route: Route, verify: ssl.SSLContext) -> tuple[Answer, bytes, bytes | None]:
    """One GET of the URL: its answer, body and (on https) the server's certificate, read
    while the connection is open."""
    with client_for(route, verify) as client:
        sent_at = time.time()
        with client.stream("GET", route.url) as response:
            der = peer_certificate(response) if route.https else None
            body = response.read()
        return _answer(1, route.url, "GET", sent_at, response), body, der


def read_index(body: bytes) -> dict[str, IndexedStrategy] | None:
    """The strategies the endpoint lists; None when the body is not the probe's index."""
    try:
        doc = json.loads(body)
        if doc.get("probe") != INDEX_MARK or not isinstance(doc.get("strategies"), dict):
            return None
        return {
            name: IndexedStrategy(
                name,
                {str(k): str(v) for k, v in spec.get("headers", {}).items()},
                bool(spec.get("etag")),
                spec.get("last_modified_age_s"),
            )
            for name, spec in doc["strategies"].items()
        }
    except (ValueError, AttributeError, TypeError):
        return None


def second_look(look: FirstLook, gap_s: float = PLAIN_GAP_S) -> tuple[Answer, bytes]:
    """The plain URL again, `gap_s` after the first: the two-request cache check."""
    time.sleep(gap_s)  # a gap Date must show, not a wait for something to settle
    try:
        answer, body, _ = _look(look.route, look.verify)
    except httpx.HTTPError as exc:
        raise failure(look.route, exc) from None
    answer.seq = 2
    return answer, body


def probed_strategies(index: dict[str, IndexedStrategy]) -> tuple[list[Strategy], list[str]]:
    """The poll strategies both the endpoint and this lab know, in the catalogue's order, and
    the names the endpoint lists that this lab cannot poll (a newer endpoint)."""
    book = strategies.load()
    known = [s for s in book.strategies.values() if s.transport == "poll" and s.name in index]
    unknown = [name for name in index if name not in book.strategies]
    return known, unknown


def poll_all(
    look: FirstLook,
    chosen: list[Strategy],
    polls: int,
    interval: float,
    stop: threading.Event,
) -> dict[str, StrategyRun]:
    """Every strategy at once, each in its own thread with its own connections (as each page
    would have); returns when all are done or `stop` is set."""
    runs = {s.name: StrategyRun(s.name, new_probe_id()) for s in chosen}
    threads = [
        threading.Thread(
            target=poll_strategy,
            args=(look, strategy, runs[strategy.name], polls, interval, stop),
            name=f"probe-{strategy.name}",
            daemon=True,
        )
        for strategy in chosen
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():  # short joins: Ctrl-C reaches the main thread at once
            thread.join(timeout=0.2)
    return runs


def new_probe_id() -> str:
    return secrets.token_urlsafe(12)  # 16 of A-Z a-z 0-9 _ -, as the endpoint accepts


def poll_strategy(
    look: FirstLook,
    strategy: Strategy,
    run: StrategyRun,
    polls: int,
    interval: float,
    stop: threading.Event,
) -> None:
    """The page's loop (lab/clients/polling.py `_poll_loop`) for `polls` requests: poll, wait
    for the answer, retry a failure as the catalogue says, else wait the interval."""
    book = strategies.load()
    spec = strategy.poll
    revalidates, added = BROWSER_FETCH_CACHE[spec.fetch_cache]
    kept: dict[str, tuple[str, dict[str, Any]]] = {}
    nonce_kind = spec.nonce
    same_in_a_row, last_count = 0, None
    failures = 0
    with client_for(look.route, look.verify) as client:
        while len(run.answers) < polls and not stop.is_set():
            url = f"{look.base}/{strategy.name}/{run.probe_id}"
            if nonce_kind is not None:
                url = add_nonce(url, nonce_kind, book.new_nonce(), book.nonce_query_param)
            headers = httpx.Headers(spec.request_headers)
            for name, value in added.items():
                headers.setdefault(name, value)
            copy = kept.get(url) if revalidates and spec.method == "GET" else None
            if copy is not None:
                headers["If-None-Match"] = copy[0]
            answer, body = _poll(client, len(run.answers) + 1, spec.method, url, headers, spec.body)
            answer.retry, answer.nonce = failures, nonce_kind
            _read_poll(answer, body, copy)
            run.answers.append(answer)
            if answer.error:
                if is_retryable(answer.status) and failures < strategy.retry.attempts:
                    failures += 1
                    stop.wait(strategy.retry.delay_s(failures))
                    continue
                run.gave_up = answer.error
                return
            failures = 0
            if answer.headers.get("etag") and revalidates and spec.method == "GET":
                kept[url] = (answer.headers["etag"], {"count": answer.count, "probe": answer.probe})
            if strategy.detect_stale is not None and run.switched_after is None:
                same_in_a_row = same_in_a_row + 1 if answer.count == last_count else 1
                last_count = answer.count
                if same_in_a_row >= strategy.detect_stale.after_polls:
                    nonce_kind = strategy.detect_stale.switch_to_nonce
                    run.switched_after = len(run.answers)
            if len(run.answers) < polls:
                stop.wait(interval)


def _poll(
    client: httpx.Client,
    seq: int,
    method: str,
    url: str,
    headers: httpx.Headers,
    body: dict[str, Any] | None,
) -> tuple[Answer, bytes]:
    sent_at = time.time()
    try:
        response = client.request(method, url, headers=headers, json=body)
    except httpx.HTTPError as exc:
        failed = Answer(seq, url, method, sent_at, time.time(), None, {})
        failed.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return failed, b""
    return _answer(seq, url, method, sent_at, response), response.content


def _answer(seq: int, url: str, method: str, sent_at: float, response: httpx.Response) -> Answer:
    headers = {name.lower(): value for name, value in response.headers.items()}
    return Answer(seq, url, method, sent_at, time.time(), response.status_code, headers)


def _read_poll(answer: Answer, body: bytes, copy: tuple[str, dict[str, Any]] | None) -> None:
    """The probe's counter from the answer (or from the kept copy a 304 confirms)."""
    if answer.status is None:
        return
    if answer.status == 304 and copy is not None:
        answer.kept_copy = True
        answer.count, answer.probe = copy[1]["count"], copy[1]["probe"]
        return
    if not 200 <= answer.status < 300:
        answer.error = http_failure(answer)
        return
    try:
        doc = json.loads(body)
        count, probe = doc["count"], doc["probe"]
        if not isinstance(count, int) or not isinstance(probe, str):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        kind = answer.headers.get("content-type", "no content type")
        answer.error = f"HTTP {answer.status} but not the probe's answer ({kind})"
        return
    answer.count, answer.probe = count, probe
    answer.server_time = doc.get("server_time")


def http_failure(answer: Answer) -> str:
    """ "HTTP 502", saying who answered when the answer says (a proxy's own error page)."""
    server = answer.headers.get("server")
    via = answer.headers.get("via")
    who = f" from {server}" if server else ""
    return f"HTTP {answer.status}{who}" + (f" (Via: {via})" if via else "")
