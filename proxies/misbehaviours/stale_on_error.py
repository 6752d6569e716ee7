"""Serve a stale copy when the origin fails."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxies.misbehaviours._cache_rules import Seconds
from proxies.misbehaviours.base import Misbehaviour, Parameters

if TYPE_CHECKING:
    from mitmproxy import http


class StaleOnErrorParams(Parameters):
    max_stale: Seconds  # how long past its lifetime a copy may still stand in for an error


class StaleOnError(Misbehaviour[StaleOnErrorParams]):
    """When the origin answers 500, 502, 503 or 504 for a stale entry, the stale entry is
    served instead (for up to `max_stale` seconds past its lifetime), whatever the response
    said: no stale-if-error needed, must-revalidate and proxy-revalidate ignored (RFC 9111
    4.2.4: a cache MUST NOT serve stale when they are present). The client sees an old status
    with a 200 instead of the error its retry logic would have handled.

    Limit: the lab's proxy sees origin errors as answers; a refused or timed-out connection
    (nginx `error timeout`) ends mitmproxy's flow before the cache could substitute a copy.
    """

    name = "stale-on-error"
    summary = "Serves a stale copy instead of a 5xx from the origin, for up to max_stale s."
    imitates = (
        "nginx `proxy_cache_use_stale error timeout http_500 http_502 http_503 http_504;` "
        "(nginx does not parse must-revalidate at all: src/http/ngx_http_upstream.c); Squid "
        "`max_stale` (default 1 week) for objects whose revalidation fails; Varnish grace."
    )

    def serve_stale(
        self, request: http.Request, stale_for: float, upstream_failed: bool, decision: bool
    ) -> bool:
        if upstream_failed and stale_for <= self.params.max_stale:
            return True
        return decision
