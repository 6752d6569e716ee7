"""Give every response with a listed status one fixed lifetime, whatever the origin said."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxies.misbehaviours._cache_rules import Seconds, Status
from proxies.misbehaviours.base import Misbehaviour, Parameters

if TYPE_CHECKING:
    from mitmproxy import http


class ForceTtlParams(Parameters):
    ttl: Seconds  # the lifetime every listed response gets
    statuses: list[Status] = [200]


class ForceTtl(Misbehaviour[ForceTtlParams]):
    """The cache does not read Cache-Control or Expires from the origin at all: not max-age,
    s-maxage, no-cache, no-store, private or must-revalidate. A response with a listed status
    is stored and fresh for exactly `ttl`; any other status has no freshness (nginx caches
    nothing it has no proxy_cache_valid time for), unless a later misbehaviour gives it some.
    Vary, the method and the request are still honoured.

    Breaks RFC 9111 3 (no-store, private must not be stored), 4.2.1 (the origin's freshness),
    5.2.2.4 (no-cache responses must be revalidated). A `no-cache` + ETag poll is answered from
    the cache for `ttl`: a client revalidating its own copy gets 304 from the cache, so even
    the textbook ETag fix hangs behind it.
    """

    name = "force-ttl"
    summary = "Ignores the origin's Cache-Control and Expires; listed statuses are cached for ttl."
    imitates = (
        "nginx `proxy_ignore_headers Cache-Control Expires;` with `proxy_cache_valid 200 1m;` "
        "(ngx_http_proxy_module; the ignored fields are never parsed, see "
        "ngx_http_upstream_process_cache_control / _process_expires in "
        "src/http/ngx_http_upstream.c); Google Cloud CDN `cacheMode: FORCE_CACHE_ALL` with its "
        "default TTL; Akamai's Caching behavior set to 'Cache' with a max-age."
    )

    def visible_headers(
        self, request: http.Request, response: http.Response, headers: http.Headers
    ) -> http.Headers:
        for name in ("Cache-Control", "Expires"):
            if name in headers:
                del headers[name]
        return headers

    def freshness_lifetime(
        self, request: http.Request, response: http.Response, lifetime: float, now: float
    ) -> float:
        return float(self.params.ttl) if response.status_code in self.params.statuses else lifetime
