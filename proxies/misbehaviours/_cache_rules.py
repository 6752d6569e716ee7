"""Helpers and bases shared by the cache misbehaviours (none is registered from here: the
registry skips modules whose name starts with `_`)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Annotated, ClassVar

from pydantic import Field
from werkzeug.http import parse_date

from proxies import cache_policy
from proxies.misbehaviours.base import Misbehaviour, Parameters

if TYPE_CHECKING:
    from mitmproxy import http


# flow.metadata: the background refresh (the replayed HTTPFlow) a stale answer started; the
# SharedCache sets it, a misbehaviour may hold the stale answer until the refresh is out.
REFRESH_FLOW = "cache_refresh_flow"

Seconds = Annotated[int, Field(ge=1)]
Status = Annotated[int, Field(ge=200, le=599)]


def hide_directives(headers: http.Headers, names: Iterable[str]) -> http.Headers:
    """Remove the named Cache-Control directives from `headers` (edited in place)."""
    value = headers.get("Cache-Control")
    if value is None:
        return headers
    remaining = cache_policy.without_directives(value, names)
    if remaining:
        headers["Cache-Control"] = remaining
    else:
        del headers["Cache-Control"]
    return headers


def ttl_unless_explicit(
    response: http.Response,
    lifetime: float,
    ttl: float,
    statuses: Collection[int],
    *,
    ignore_invalid_expires: bool = False,
) -> float:
    """`ttl` for a response with one of `statuses` and no freshness of its own (no max-age,
    s-maxage or Expires, no no-cache); otherwise the decision so far. With
    `ignore_invalid_expires`, an unparsable Expires (`Expires: 0`) counts as absent."""
    headers = response.headers
    if response.status_code not in statuses:
        return lifetime
    cc = cache_policy.response_cache_control(headers)
    if cc.no_cache or cc.max_age is not None or cc.s_maxage is not None:
        return lifetime
    expires_counts = not ignore_invalid_expires or parse_date(headers.get("Expires")) is not None
    if "Expires" in headers and expires_counts:
        return lifetime
    return float(ttl)


class HiddenDirectives(Misbehaviour):
    """The cache does not see the `hidden` directives of a response's Cache-Control; the rest
    of the field still counts."""

    hidden: ClassVar[tuple[str, ...]]

    def visible_headers(
        self, request: http.Request, response: http.Response, headers: http.Headers
    ) -> http.Headers:
        return hide_directives(headers, self.hidden)


class MaxStaleParams(Parameters):
    max_stale: Seconds  # how long past its lifetime a copy may still be served


class ServesStale(Misbehaviour[MaxStaleParams]):
    """A stale entry, up to `max_stale` seconds past its lifetime, is served: when the origin
    failed (`when_upstream_failed`), or else while it is refreshed."""

    when_upstream_failed: ClassVar[bool]

    def serve_stale(
        self, request: http.Request, stale_for: float, upstream_failed: bool, decision: bool
    ) -> bool:
        if upstream_failed is self.when_upstream_failed and stale_for <= self.params.max_stale:
            return True
        return decision
