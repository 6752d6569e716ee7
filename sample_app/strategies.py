"""Fix strategies, loaded from strategies.json: the single definition shared by the page's
JavaScript, the server and the lab's Python client.

The document is validated on load (a mistake names the strategy and the key), and the pure
request-building rules the page also implements live here: `status_target` (the status URL for a
task in a URL style, with or without a nonce), `Retry.delay_s` and `is_retryable`.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode

TRANSPORTS = ("poll", "sse")
NONCE_KINDS = ("query", "path")
METHODS = ("GET", "POST")
FETCH_CACHE_MODES = ("default", "no-store")
STRATEGY_KEYS = (
    "summary",
    "transport",
    "poll",
    "response_headers",
    "etag",
    "last_modified_age_s",
    "detect_stale",
    "retry",
)
POLL_KEYS = ("method", "nonce", "request_headers", "fetch_cache", "body")


class StrategyError(ValueError):
    """strategies.json does not say what the code needs."""


@dataclass(frozen=True)
class Retry:
    attempts: int  # retries in a row after a failed request; 0: the first failure is final
    initial_ms: int
    factor: float

    def delay_s(self, retry: int) -> float:
        """Seconds to wait before the `retry`-th retry (1-based): initial_ms * factor^(n-1)."""
        return self.initial_ms * self.factor ** (retry - 1) / 1000


@dataclass(frozen=True)
class PollSpec:
    method: str = "GET"
    nonce: str | None = None  # None, "query" or "path"
    request_headers: dict[str, str] = field(default_factory=dict)
    fetch_cache: str = "default"
    body: dict[str, Any] | None = None


@dataclass(frozen=True)
class DetectStale:
    after_polls: int
    switch_to_nonce: str

    @property
    def warning(self) -> str:
        """What the UI records when it switches (staleWarning in poller.js)."""
        return (
            f"stale answers detected after {self.after_polls} polls; "
            f"switched to {self.switch_to_nonce}-nonce"
        )


@dataclass(frozen=True)
class Strategy:
    name: str
    summary: str
    transport: str = "poll"
    poll: PollSpec = field(default_factory=PollSpec)
    response_headers: dict[str, str] = field(default_factory=dict)
    etag: bool = False
    last_modified_age_s: int | None = None
    detect_stale: DetectStale | None = None
    retry: Retry = field(default_factory=lambda: Retry(0, 250, 2))

    @property
    def request_headers(self) -> dict[str, str]:
        return self.poll.request_headers


@dataclass(frozen=True)
class StrategyBook:
    final_states: frozenset[str]
    status_paths: dict[str, str]
    events_path: str
    events_response_headers: dict[str, str]
    nonce_query_param: str
    nonce_bytes: int
    strategies: dict[str, Strategy]

    def get(self, name: str) -> Strategy:
        try:
            return self.strategies[name]
        except KeyError:
            known = ", ".join(self.strategies)
            raise KeyError(f"unknown fix strategy {name!r} (known: {known})") from None

    @property
    def status_path(self) -> str:
        """The path-style template (the story's URL)."""
        return self.status_paths["path"]

    def status_path_for(self, task_id: str, style: str = "path") -> str:
        return fill(self._template(style), task_id)

    def events_path_for(self, task_id: str) -> str:
        return fill(self.events_path, task_id)

    def status_target(
        self,
        task_id: str,
        *,
        style: str = "path",
        nonce_kind: str | None = None,
        nonce: str | None = None,
    ) -> str:
        """The path and query of one status request, exactly as the page builds it."""
        target = self.status_path_for(task_id, style)
        if nonce_kind is None:
            return target
        return add_nonce(target, nonce_kind, nonce or self.new_nonce(), self.nonce_query_param)

    def new_nonce(self) -> str:
        return secrets.token_hex(self.nonce_bytes)

    def _template(self, style: str) -> str:
        try:
            return self.status_paths[style]
        except KeyError:
            known = ", ".join(self.status_paths)
            raise KeyError(f"unknown status URL style {style!r} (known: {known})") from None


def fill(template: str, task_id: str) -> str:
    # quote() matches the page's encodeURIComponent for anything a task id may hold.
    return template.replace("{task_id}", quote(task_id, safe=""))


def add_nonce(target: str, kind: str, nonce: str, query_param: str) -> str:
    """'query': append query_param=nonce to the query; 'path': a last path segment, before any
    query string. Mirrored by addNonce in static/poller.js."""
    path, sep, query = target.partition("?")
    if kind == "path":
        return f"{path}/{nonce}{sep}{query}"
    if kind == "query":
        return f"{target}{'&' if sep else '?'}{urlencode({query_param: nonce})}"
    raise ValueError(f"unknown nonce kind {kind!r} (known: {', '.join(NONCE_KINDS)})")


def is_retryable(status: int | None) -> bool:
    """A failed request worth sending again: no answer at all (None), a 5xx or a 429."""
    return status is None or status >= 500 or status == 429


def route_for(template: str) -> tuple[str, str | None]:
    """A status URL template as a Flask rule and the query parameter holding the task id.

    "/tasks/{task_id}/status" -> ("/tasks/<task_id>/status", None);
    "/status?task_id={task_id}" -> ("/status", "task_id").
    """
    path, _, query = template.partition("?")
    param = None
    for pair in query.split("&") if query else []:
        name, _, value = pair.partition("=")
        if value == "{task_id}":
            param = name
    if ("{task_id}" in path) == (param is not None):
        raise StrategyError(f"status path {template!r} must hold {{task_id}} exactly once")
    return path.replace("{task_id}", "<task_id>"), param


def raw_definitions() -> dict[str, Any]:
    """The JSON document as is, for embedding in the page."""
    text = resources.files("sample_app").joinpath("strategies.json").read_text("utf-8")
    return json.loads(text)


@cache
def load() -> StrategyBook:
    return parse(raw_definitions())


def parse(raw: dict[str, Any]) -> StrategyBook:
    strategies = {name: _strategy(name, spec) for name, spec in raw["strategies"].items()}
    nonce = raw["nonce"]
    book = StrategyBook(
        final_states=frozenset(raw["final_states"]),
        status_paths=dict(raw["status_paths"]),
        events_path=raw["events_path"],
        events_response_headers=_headers(raw["events_response_headers"], "events_response_headers"),
        nonce_query_param=nonce["query_param"],
        nonce_bytes=int(nonce["bytes"]),
        strategies=strategies,
    )
    for template in book.status_paths.values():
        route_for(template)
    return book


def _strategy(name: str, spec: dict[str, Any]) -> Strategy:
    def fail(key: str, problem: str) -> StrategyError:
        return StrategyError(f"strategies.json: strategy {name!r}: {key}: {problem}")

    missing = [key for key in STRATEGY_KEYS if key not in spec]
    if missing:
        raise fail(", ".join(missing), "missing")
    poll_spec = spec["poll"]
    if not isinstance(poll_spec, dict) or any(key not in poll_spec for key in POLL_KEYS):
        raise fail("poll", f"must be an object with {', '.join(POLL_KEYS)}")
    poll = PollSpec(
        method=poll_spec["method"],
        nonce=poll_spec["nonce"],
        request_headers=_headers(
            poll_spec["request_headers"], f"strategy {name!r}: poll.request_headers"
        ),
        fetch_cache=poll_spec["fetch_cache"],
        body=poll_spec["body"],
    )
    if spec["transport"] not in TRANSPORTS:
        raise fail("transport", f"must be one of {', '.join(TRANSPORTS)}")
    if poll.method not in METHODS:
        raise fail("poll.method", f"must be one of {', '.join(METHODS)}")
    if poll.nonce is not None and poll.nonce not in NONCE_KINDS:
        raise fail("poll.nonce", f"must be null or one of {', '.join(NONCE_KINDS)}")
    if poll.fetch_cache not in FETCH_CACHE_MODES:
        raise fail("poll.fetch_cache", f"must be one of {', '.join(FETCH_CACHE_MODES)}")
    if poll.body is not None and not isinstance(poll.body, dict):
        raise fail("poll.body", "must be null or an object")
    if spec["transport"] == "sse" and poll != PollSpec():
        raise fail("poll", "an event stream is a plain GET (EventSource sets nothing else)")
    retry_spec = spec["retry"]
    try:
        retry = Retry(
            int(retry_spec["attempts"]), int(retry_spec["initial_ms"]), float(retry_spec["factor"])
        )
    except (KeyError, TypeError, ValueError):
        raise fail("retry", "must be {attempts, initial_ms, factor}") from None
    if retry.attempts < 0 or retry.initial_ms < 0 or retry.factor < 1:
        raise fail("retry", "attempts and initial_ms must be >= 0, factor >= 1")
    detect_stale = None
    if spec["detect_stale"] is not None:
        stale = spec["detect_stale"]
        detect_stale = DetectStale(int(stale["after_polls"]), stale["switch_to_nonce"])
        if detect_stale.after_polls < 2:
            raise fail("detect_stale.after_polls", "must be at least 2")
        if detect_stale.switch_to_nonce not in NONCE_KINDS:
            raise fail("detect_stale.switch_to_nonce", f"must be one of {', '.join(NONCE_KINDS)}")
    age = spec["last_modified_age_s"]
    if age is not None and (not isinstance(age, int) or age < 0):
        raise fail("last_modified_age_s", "must be null or seconds >= 0")
    if not isinstance(spec["etag"], bool):
        raise fail("etag", "must be true or false")
    return Strategy(
        name=name,
        summary=spec["summary"],
        transport=spec["transport"],
        poll=poll,
        response_headers=_headers(spec["response_headers"], f"strategy {name!r}: response_headers"),
        etag=spec["etag"],
        last_modified_age_s=age,
        detect_stale=detect_stale,
        retry=retry,
    )


def _headers(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise StrategyError(f"strategies.json: {where}: must map header names to strings")
    return dict(value)


def names() -> list[str]:
    return list(load().strategies)
