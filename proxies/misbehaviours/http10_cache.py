"""An HTTP/1.0-era cache: Expires and Pragma are all it knows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field
from werkzeug.http import parse_date

from proxies import cache_policy
from proxies.misbehaviours.base import Misbehaviour, Parameters

if TYPE_CHECKING:
    from mitmproxy import http

# RFC 2616 13.4's cacheable-by-default statuses an HTTP/1.0 cache knows (206 is HTTP/1.1).
HTTP10_CACHEABLE = frozenset({200, 203, 300, 301, 410})


class Http10CacheParams(Parameters):
    # Freshness of a stored answer without a (valid, future) Expires.
    default_ttl: Annotated[int, Field(ge=0)]


class Http10Cache(Misbehaviour[Http10CacheParams]):
    """A cache written before HTTP/1.1: Cache-Control does not exist for it, in requests or
    responses, and neither do Vary or ETag. Its whole policy:

    - a response with `Pragma: no-cache` is not stored (HTTP/1.0 defined Pragma for requests
      only, but such caches honoured it on responses too);
    - a response whose Expires is invalid or not after its Date (or now) is not stored
      ("Documents with an invalid Expires header line are never cached": CERN httpd 3.0's
      caching algorithm, w3.org/History/1994/WWW/Proxies/Caching);
    - anything else with a 200, 203, 300, 301 or 410 is stored until its Expires, or for
      `default_ttl`;
    - a request with `Pragma: no-cache` (a browser's Reload) is answered by the origin; a
      request's Cache-Control is not even read. Authorization still prevents storing.

    (CERN httpd also skipped answers expiring "within a couple of minutes" and estimated a
    lifetime from Last-Modified; neither is imitated. A request's own no-store still bypasses
    this cache, which has no way to ignore it.)

    So `Cache-Control: no-store` alone is cached for default_ttl, `no-store` + `Pragma:
    no-cache` + `Expires: 0` is not, and `Cache-Control: private` leaks. RFC 2616 14.9 warned
    that "HTTP/1.0 caches might not implement Cache-Control and might only implement Pragma:
    no-cache", which is why the no-store fix carries the two HTTP/1.0 headers as well.
    """

    name = "http10-cache"
    summary = "An HTTP/1.0 cache: honours only Expires and Pragma, ignores Cache-Control and Vary."
    imitates = (
        "HTTP/1.0-era caching proxies still found in old appliances and embedded gateways: "
        "CERN/W3C httpd 3.0 as a caching proxy (`Caching On`, `CacheDefaultExpiry`), Squid 1.x; "
        "RFC 2616 section 14.9: 'HTTP/1.0 caches might not implement Cache-Control and might "
        "only implement Pragma: no-cache'."
    )

    def accepts_stored(self, request: http.Request, decision: bool) -> bool:
        return not cache_policy.pragma_no_cache(request.headers)

    def storable(self, request: http.Request, response: http.Response, decision: bool) -> bool:
        headers = response.headers
        if response.status_code not in HTTP10_CACHEABLE or "Authorization" in request.headers:
            return False
        if cache_policy.pragma_no_cache(headers):
            return False
        if "Expires" not in headers:
            return True
        expires, date = _time(headers.get("Expires")), _time(headers.get("Date"))
        # Invalid: never stored. Without a Date, "already past" is decided with the clock below.
        return expires is not None and (date is None or expires > date)

    def freshness_lifetime(
        self, request: http.Request, response: http.Response, lifetime: float, now: float
    ) -> float:
        headers = response.headers
        if "Expires" not in headers:
            return float(self.params.default_ttl)
        expires, date = _time(headers.get("Expires")), _time(headers.get("Date"))
        if expires is None:
            return 0.0
        return max(0.0, expires - (date if date is not None else now))

    def vary_fields(self, response: http.Response, fields: tuple[str, ...]) -> tuple[str, ...]:
        return ()


def _time(value: str | None) -> float | None:
    parsed = parse_date(value)
    return parsed.timestamp() if parsed is not None else None
