"""One poll as both clients record it, built and read the same way for both: what the page does
with a status answer (requestStatus and handleAnswer in static/poller.js)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

# The answer's headers a poll keeps, as (Poll field, header name).
KEPT_HEADERS = (
    ("age", "age"),
    ("date", "date"),
    ("via", "via"),
    ("x_cache", "x-cache"),
    ("cache_control", "cache-control"),
    ("etag", "etag"),
)


@dataclass
class Poll:
    """One answer the UI got (or one failed request). For the event stream, one event: then
    sent_at is when the event arrived, and `stream` numbers the connection it came on."""

    seq: int
    sent_at: float
    received_at: float
    url: str
    status: int | None
    state: str | None
    served_at: float | None = None
    age: str | None = None
    date: str | None = None
    via: str | None = None
    x_cache: str | None = None
    cache_control: str | None = None
    error: str | None = None
    method: str = "GET"
    retry: int = 0  # failed requests in a row before this one (0: not a retry)
    server_seq: int | None = None  # the answer's seq, increasing per app process
    task_id: str | None = None  # the task the answer is about
    foreign_task_id: str | None = None  # set when that is not the task being polled: a leak
    etag: str | None = None
    browser_cache: bool = False  # a 304: the body is the copy the (imitated) browser kept
    stream: int | None = None


P = TypeVar("P", bound=Poll)


def new_poll(
    kind: type[P],
    *,
    seq: int,
    url: str,
    status: int | None,
    headers: Mapping[str, str] | None,
    sent_at: float,
    received_at: float,
    method: str = "GET",
    retry: int = 0,
    stream: int | None = None,
) -> P:
    """A poll of the answer's status and headers (`headers` looked up by lower-case name, as
    httpx.Headers and a dict of lower-cased names both are), its state not read yet."""
    poll = kind(seq, sent_at, received_at, url, status, None, method=method, retry=retry)
    poll.stream = stream
    copy_headers(poll, headers or {})
    return poll


def copy_headers(poll: Poll, headers: Mapping[str, str]) -> None:
    for field, name in KEPT_HEADERS:
        setattr(poll, field, headers.get(name))


def read_answer(
    poll: Poll, answer: str | dict[str, Any], task_id: str | None
) -> dict[str, Any] | None:
    """Fills the poll from a status document (its text, or the body a cache kept) and returns
    the body; sets the poll's error if it is not one. An answer about another task than
    `task_id` (when known) is a leak: `foreign_task_id`."""
    try:
        body = json.loads(answer) if isinstance(answer, str) else answer
        if not isinstance(body, dict) or not isinstance(body.get("state"), str):
            raise ValueError("no state")
    except ValueError as exc:
        poll.error = f"unreadable status answer: {exc}"
        return None
    poll.state = body["state"]
    poll.served_at = body.get("served_at")
    poll.server_seq = body.get("seq")
    poll.task_id = body.get("task_id")
    if poll.task_id is not None and task_id is not None and poll.task_id != task_id:
        poll.foreign_task_id = poll.task_id
    return body
