"""Reuse no 204, 303, 4xx, 5xx or unknown-status answer, even one with explicit freshness."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxies.misbehaviours.base import Misbehaviour

if TYPE_CHECKING:
    from mitmproxy import http

# HttpStateData::cacheableReply (Squid 5.7 src/http.cc): the statuses Squid stores as reusable
# answers (200, 203, 300, 301, 308, 410 by its refresh rules; 302 and 307 only with an explicit
# expiry, which the freshness rules already ask for).
REUSABLE = frozenset({200, 203, 300, 301, 302, 307, 308, 410})


class SquidNegativeStatus(Misbehaviour):
    """RFC 9111 3 lets a cache store an answer with any status it understands when the answer
    has explicit freshness (max-age, s-maxage, Expires, public), and 4.2.2 gives 204, 404,
    405, 410, 414 and 501 heuristic freshness too. Squid reuses far fewer: its
    HttpStateData::cacheableReply (src/http.cc) stores 200, 203, 300, 301, 308 and 410 by its
    refresh rules, 302 and 307 only with an explicit expiry; 204, 305, 400, 403, 404, 405,
    414, 421, 500, 501, 502, 503 and 504 only "negatively" (StoreEntry::negativeCache, with
    negative_ttl: "The default is not to cache errors with unknown expiry details"), and 206,
    303, every other 4xx and every unknown code (299, 499, 599) never. Measured on Squid 5.7
    here with the stock squid.conf: a negatively cached answer was not reused either, even
    with `Cache-Control: max-age=3600`; the HTTP caching test suite's status-{204,299,303,400,
    404,499,500,502,503,504,599}-fresh all fail through it (bench/cache_tests.py --real),
    while the 200, 203, 301, 302, 307, 308 and 410 ones pass. So a `404` or a `503` with
    explicit freshness reaches the origin every time.
    """

    name = "squid-negative-status"
    summary = "Reuses no 204/303/4xx/5xx/unknown-status answer, even one with max-age."
    imitates = (
        "Squid 5.7 HttpStateData::cacheableReply (src/http.cc): 'Errors can be negatively "
        "cached' (negative_ttl, squid.conf.documented), 'Some responses can never be cached' "
        "(206, 303, 304, 401, ...), unknown codes not at all; measured with the HTTP caching "
        "test suite's status-*-fresh tests."
    )

    def storable(self, request: http.Request, response: http.Response, decision: bool) -> bool:
        return decision and response.status_code in REUSABLE
