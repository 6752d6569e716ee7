"""Small helpers shared by the flow misbehaviours (no misbehaviour is defined here)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated

from pydantic import AfterValidator

if TYPE_CHECKING:
    from mitmproxy import http


def media_type(headers: http.Headers) -> str:
    """`text/event-stream; charset=utf-8` -> `text/event-stream`."""
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


def path_without_query(request: http.Request) -> str:
    return request.path.split("?", 1)[0]


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    return value


# A parameter holding a regular expression, checked when the profile is loaded.
Regex = Annotated[str, AfterValidator(_check_regex)]
