"""Give a fixed lifetime to responses that carry no freshness of their own."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxies import cache_policy
from proxies.misbehaviours._cache_rules import Seconds, Status, ttl_unless_explicit
from proxies.misbehaviours.base import Misbehaviour, Parameters

if TYPE_CHECKING:
    from mitmproxy import http


class HeuristicTtlParams(Parameters):
    ttl: Seconds
    # The statuses it applies to; None: RFC 9110's heuristically cacheable ones (200, 203, 204,
    # 206, 300, 301, 308, 404, 405, 410, 414, 501).
    statuses: list[Status] | None = None
    # Treat an unparsable Expires (`Expires: 0`) as no Expires at all, as Varnish does, instead
    # of "already expired" (RFC 9111 5.3).
    ignore_invalid_expires: bool = False


class HeuristicTtl(Misbehaviour[HeuristicTtlParams]):
    """A response without explicit freshness (no max-age, s-maxage or Expires) and without
    no-cache is fresh for `ttl`, Last-Modified or not. RFC 9111 4.2.2 allows heuristic
    freshness but asks for a fraction of the Last-Modified age (10%) and a Warning; a flat TTL
    on a response with no Last-Modified at all (a status answer) is what makes the story's
    poll hang. Explicit freshness from the origin still wins, and no-store/private still
    prevent storing.
    """

    name = "heuristic-ttl"
    summary = "Any response without explicit freshness is cached for ttl (flat heuristic TTL)."
    imitates = (
        "Varnish `default_ttl` (120 s; bin/varnishd/cache/cache_rfc2616.c RFC2616_Ttl, which "
        "also treats `Expires: 0` as absent: VTIM_parse gives 0, 'No expire header, fall back "
        "to default'); nginx `proxy_cache_valid 200 1m;` (used only when the origin sent no "
        "X-Accel-Expires, Expires or Cache-Control max-age); Cloudflare's default edge TTL "
        "(200: 120 min); Squid `refresh_pattern . N ...` with min N > 0."
    )

    def freshness_lifetime(
        self, request: http.Request, response: http.Response, lifetime: float, now: float
    ) -> float:
        statuses = self.params.statuses or cache_policy.HEURISTICALLY_CACHEABLE
        return ttl_unless_explicit(
            response,
            lifetime,
            self.params.ttl,
            statuses,
            ignore_invalid_expires=self.params.ignore_invalid_expires,
        )
