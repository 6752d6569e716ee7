"""Read Expires as a moment on the cache's own clock, not as a lifetime from the Date."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from proxies import cache_policy
from proxies.http_date import parse_http_date
from proxies.misbehaviours.base import Misbehaviour

if TYPE_CHECKING:
    from mitmproxy import http


class ExpiresOwnClock(Misbehaviour):
    """RFC 9111 4.2.1: without max-age or s-maxage, an answer's freshness lifetime is its
    Expires minus its Date, so a server whose clock is off still gets the lifetime it meant,
    and `Expires` equal to `Date` (or older) means "stale at once". This cache keeps the answer
    until the moment Expires names, by its own clock, counted in whole seconds: an answer whose
    Expires is this very second, or later, is stored and served until that second has passed,
    whatever its Date says; one whose Expires has already passed is not stored. Cache-Control
    max-age and s-maxage still win over Expires.
    """

    name = "expires-own-clock"
    summary = "Keeps an answer until its Expires by the cache's own clock, whatever its Date says."
    imitates = (
        "nginx proxy_cache (1.22, src/http/ngx_http_upstream.c "
        "ngx_http_upstream_process_expires): `if (expires == NGX_ERROR || expires < "
        "ngx_time()) u->cacheable = 0; ... r->cache->valid_sec = expires;` unless Cache-Control "
        "already set valid_sec; ngx_http_file_cache_read serves the entry while `valid_sec >= "
        "now`. nginx 1.22.1 here fails the HTTP caching test suite's freshness-expires-present, "
        "-old-date and -age-*-date (bench/cache_tests.py --real)."
    )

    def freshness_lifetime(
        self, request: http.Request, response: http.Response, lifetime: float, now: float
    ) -> float:
        cc = cache_policy.response_cache_control(response.headers)
        expires = response.headers.get("Expires")
        if cc.max_age is not None or cc.s_maxage is not None or expires is None:
            return lifetime
        moment = parse_http_date(expires)
        if moment is None or moment < math.floor(now):
            return 0.0  # nginx: not cacheable at all
        # Fresh while the clock's whole second is at most Expires.
        return math.floor(moment) + 1 - now
