"""Serve a stale copy when the origin fails."""

from __future__ import annotations

from proxies.misbehaviours._cache_rules import ServesStale


class StaleOnError(ServesStale):
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
    when_upstream_failed = True
