"""Apache httpd 2.4 mod_cache: which answers it stores, and for how long."""

from __future__ import annotations

import time
from email.utils import formatdate
from typing import TYPE_CHECKING, Annotated

from pydantic import Field
from werkzeug.http import parse_date, parse_list_header

from proxies import cache_policy
from proxies.misbehaviours.base import Misbehaviour, Parameters

if TYPE_CHECKING:
    from mitmproxy import http

# cache_save_filter: "RFC2616 13.4 we are allowed to cache 200, 203, 206, 300, 301 or 410"
# (410 is not in its test; 304 only refreshes a stored entity).
STORED_STATUSES = frozenset({200, 203, 206, 300, 301, 304})
# cache_quick_handler: the methods whose 2xx answer invalidates the URL's stored answer.
INVALIDATING_METHODS = frozenset({"PUT", "POST", "DELETE"})
# modules/http/http_protocol.c status_lines: the statuses Apache 2.4 has a status line for. An
# answer served from the store has no status line of its own (mod_proxy sets r->status_line
# only for what it forwards), and ap_get_status_line gives an unknown status the 500 line.
KNOWN_STATUSES = frozenset(
    [*range(100, 104), *range(200, 209), 226, *range(300, 309), *range(400, 419)]
    + [421, 422, 423, 424, 426, 428, 429, 431, 451, *range(500, 509), 510, 511]
)


class ApacheModCacheParams(Parameters):
    # CacheDefaultExpire (s): an answer with an ETag but no expiry and no Last-Modified.
    default_expire: Annotated[int, Field(ge=0)] = 3600
    # CacheMaxExpire / CacheMinExpire (s): bounds of every computed lifetime.
    max_expire: Annotated[int, Field(ge=0)] = 86400
    min_expire: Annotated[int, Field(ge=0)] = 0
    # CacheLastModifiedFactor: the share of (Date - Last-Modified) an answer stays fresh.
    last_modified_factor: Annotated[float, Field(ge=0)] = 0.1
    # CacheIgnoreQueryString On: no "query string without explicit expiry" refusal. The key
    # without the query is the ignore-query-in-key misbehaviour: list it too.
    ignore_query_string: bool = False


class ApacheModCache(Misbehaviour[ApacheModCacheParams]):
    """mod_cache's own storing rules (modules/cache/mod_cache.c cache_save_filter, Apache
    httpd 2.4), in its order; the first that applies refuses the answer:
    - a status other than 200, 203, 206, 300, 301 (or 304) without Expires or Cache-Control;
    - "Broken expires header": an Expires that is not a date (`Expires: 0`): not stored at
      all (RFC 9111 would store it as already stale);
    - an Expires in the past, without max-age or s-maxage;
    - must-revalidate or proxy-revalidate with a zero max-age and no validator;
    - "Query string present but no explicit expiration time": a URL with a query and no
      Expires, max-age or s-maxage, unless `CacheIgnoreQueryString On`;
    - "No Last-Modified; Etag; Expires; Cache-Control:max-age or Cache-Control:s-maxage
      headers": a 200 with none of these is never stored (so a header-less status answer
      passes, as it should), unless `CacheIgnoreNoLastMod On`;
    - no-store, private, `Vary: *` (and a request with Authorization unless s-maxage,
      must-revalidate, proxy-revalidate or public, a check the default quick handler never
      lets such a request reach: see below).
    Checked against Apache 2.4.71 itself, three more rules:
    - a request with Authorization neither reads nor feeds the cache, whatever the answer
      says: the quick handler (CacheQuickHandler On, the default) runs before authentication
      and leaves such requests to the normal handler;
    - a response's `Pragma: no-cache` counts as no-cache even beside a max-age
      (cache_util.c ap_cache_control): stored only to be revalidated on every use;
    - `no-cache="Set-Cookie"` (with field names) is not a no-cache: the answer is used
      fresh, only the named fields are not stored.
    Where it drops and serves stored answers:
    - invalidation (mod_cache.c cache_quick_handler, AH02461 "PUT/POST/DELETE: Adding
      CACHE_INVALIDATE filter"; cache_invalidate_filter): only PUT, POST and DELETE without
      Authorization, only on a 2xx answer, and only the request's own URL: never the answers
      stored for its Location or Content-Location, nor for another method (M-SEARCH);
    - an answer from the store carries the time it was served as Date: the quick handler
      answers before mod_proxy marks the request as proxied, so the core's header filter
      (http_filters.c basic_http_header) writes the current time, not the stored Date;
    - a stored answer whose status Apache has no status line for (299, 499, 599: not in
      http_protocol.c status_lines) is served as "500 Internal Server Error": only mod_proxy
      copies the origin's status line, and ap_get_status_line maps an unknown status to the
      500 line (observed: the suite's status-599-fresh, "Response 2 status is 500, not 599");
    - a 204 is not served from the store (observed against 2.4.71, the suite's
      status-204-fresh with max-age; the source line that refuses it was not found).
    A stored answer is fresh for s-maxage, else max-age (bounded by CacheMinExpire and
    CacheMaxExpire), else until its Expires, else CacheLastModifiedFactor (0.1) of its
    Last-Modified age (bounded the same way: at most a day), else CacheDefaultExpire (an hour:
    an answer with only an ETag). `no-cache` answers are stored and revalidated on every use
    (modules/cache/cache_util.c cache_check_freshness), and a client's no-cache or Pragma is
    honoured unless `CacheIgnoreCacheControl On`: the RFC rules already do both.
    """

    name = "apache-mod-cache"
    summary = "Apache mod_cache: no query URLs without expiry, no broken Expires, 10% LM heuristic."
    imitates = (
        "Apache httpd 2.4 mod_cache with mod_cache_disk (`CacheEnable disk /`): "
        "modules/cache/mod_cache.c cache_save_filter; CacheDefaultExpire, CacheMaxExpire, "
        "CacheMinExpire, CacheLastModifiedFactor, CacheIgnoreQueryString (mod_cache docs)."
    )

    def cacheable_method(self, request: http.Request, decision: bool) -> bool:
        return decision and "Authorization" not in request.headers

    def invalidates(self, request: http.Request, response: http.Response, decision: bool) -> bool:
        return (
            decision
            and request.method.upper() in INVALIDATING_METHODS
            and 200 <= response.status_code < 300
            and "Authorization" not in request.headers
        )

    def invalidates_locations(
        self, request: http.Request, response: http.Response, decision: bool
    ) -> bool:
        return False

    def from_store(
        self, request: http.Request, stored: http.Response, answer: http.Response
    ) -> None:
        served = answer.timestamp_start or time.time()
        answer.headers["Date"] = formatdate(served, usegmt=True)
        if answer.status_code not in KNOWN_STATUSES:
            answer.status_code, answer.reason = 500, "Internal Server Error"

    def visible_headers(
        self, request: http.Request, response: http.Response, headers: http.Headers
    ) -> http.Headers:
        value = headers.get("Cache-Control")
        if value is not None and _qualified_no_cache(value):
            kept = [i for i in parse_list_header(value) if not _is_qualified_no_cache(i)]
            if kept:
                headers["Cache-Control"] = ", ".join(kept)
            else:
                del headers["Cache-Control"]
        return headers

    def storable(self, request: http.Request, response: http.Response, decision: bool) -> bool:
        return decision and self.refusal(request, response) is None

    def refusal(self, request: http.Request, response: http.Response) -> str | None:
        """cache_save_filter's reason for not storing the answer; None: it stores it."""
        headers = response.headers
        cc = cache_policy.response_cache_control(headers)
        explicit_age = cc.max_age is not None or cc.s_maxage is not None
        expires_field = headers.get("Expires")
        expires = parse_date(expires_field)
        date = parse_date(headers.get("Date"))
        has_validator = "ETag" in headers or parse_date(headers.get("Last-Modified")) is not None
        if response.status_code == 204:
            return "204 No Content (observed, not stored)"
        if response.status_code not in STORED_STATUSES and not (
            expires_field is not None or "Cache-Control" in headers
        ):
            return f"Response status {response.status_code}"
        if expires_field is not None and expires is None:
            return f"Broken expires header: {expires_field}"
        if not explicit_age and expires is not None and date is not None and expires < date:
            return "Expires header already expired; not cacheable"
        # `!control.s_maxage_value || (!control.s_maxage && !control.max_age_value)`, where
        # an absent value is -1: s-maxage=0, or max-age=0 without s-maxage.
        zero_age = cc.s_maxage == 0 or (cc.s_maxage is None and cc.max_age == 0)
        if (cc.must_revalidate or cc.proxy_revalidate) and zero_age and not has_validator:
            return "s-maxage or max-age zero and no Last-Modified or Etag; not cacheable"
        guarded_query = "?" in request.path and not self.params.ignore_query_string
        if guarded_query and expires_field is None and not explicit_age:
            return "Query string present but no explicit expiration time"
        if (
            response.status_code == 200
            and not has_validator
            and expires_field is None
            and not explicit_age
        ):
            return "No Last-Modified; Etag; Expires; Cache-Control:max-age or s-maxage headers"
        return None

    def freshness_lifetime(
        self, request: http.Request, response: http.Response, lifetime: float, now: float
    ) -> float:
        headers = response.headers
        cc = cache_policy.response_cache_control(headers)
        if cc.no_cache is True or cache_policy.pragma_no_cache(headers):
            return 0.0  # stored, revalidated on every use
        parsed_date = parse_date(headers.get("Date"))
        date = parsed_date.timestamp() if parsed_date is not None else now
        if cc.s_maxage is not None or cc.max_age is not None:
            seconds = cc.s_maxage if cc.s_maxage is not None else cc.max_age
            return self._bounded(float(seconds or 0))
        expires = parse_date(headers.get("Expires"))
        if expires is not None:
            return max(0.0, expires.timestamp() - date)
        last_modified = parse_date(headers.get("Last-Modified"))
        if last_modified is not None and last_modified.timestamp() < date:
            age = date - last_modified.timestamp()
            return self._bounded(age * self.params.last_modified_factor)
        return float(self.params.default_expire)

    def explain_lifetime(self, request: http.Request, response: http.Response) -> str:
        headers = response.headers
        cc = cache_policy.response_cache_control(headers)
        if cc.s_maxage is not None or cc.max_age is not None or "Expires" in headers:
            return "its own expiry"
        if "Last-Modified" in headers:
            return (
                f"CacheLastModifiedFactor {self.params.last_modified_factor:g} of its "
                f"Last-Modified age, at most CacheMaxExpire {self.params.max_expire} s"
            )
        return f"an ETag and no expiry: CacheDefaultExpire {self.params.default_expire} s"

    def _bounded(self, seconds: float) -> float:
        return min(max(seconds, float(self.params.min_expire)), float(self.params.max_expire))


def _is_qualified_no_cache(item: str) -> bool:
    """`no-cache="Set-Cookie"`: no-cache with field names."""
    name, equals, _ = item.partition("=")
    return bool(equals) and name.strip().lower() == "no-cache"


def _qualified_no_cache(value: str) -> bool:
    return any(_is_qualified_no_cache(item) for item in parse_list_header(value))
