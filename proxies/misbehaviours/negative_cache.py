"""Cache error answers for a while."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxies.misbehaviours._cache_rules import Seconds, Status, ttl_unless_explicit
from proxies.misbehaviours.base import Misbehaviour, Parameters

if TYPE_CHECKING:
    from mitmproxy import http


class NegativeCacheParams(Parameters):
    ttl: Seconds
    statuses: list[Status] = [404, 500, 502, 503, 504]


class NegativeCache(Misbehaviour[NegativeCacheParams]):
    """An error answer with a listed status and no freshness of its own is stored for `ttl`:
    one failed poll (a 502 while the app restarts, a 404 before the task is registered) is
    replayed to every poll for that long, although the origin has recovered. RFC 9111 allows
    storing 5xx answers only with explicit freshness (4.2.2 lists no 5xx but 501 as
    heuristically cacheable). Explicit freshness, no-store and private still count.
    """

    name = "negative-cache"
    summary = "Caches error answers (404, 5xx) without explicit freshness for ttl."
    imitates = (
        "nginx `proxy_cache_valid 404 1m;` / `proxy_cache_valid any 1m;`; Squid `negative_ttl` "
        "(squid.conf: 'Certain types of failures (such as connection refused and 404 Not "
        "Found) are able to be negatively-cached for a short time'; default 0); CDN 'cache "
        "by status code' rules."
    )

    def freshness_lifetime(
        self, request: http.Request, response: http.Response, lifetime: float, now: float
    ) -> float:
        return ttl_unless_explicit(response, lifetime, self.params.ttl, self.params.statuses)
