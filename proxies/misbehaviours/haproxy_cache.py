"""HAProxy's small RAM cache (`cache` section, `cache-use` / `cache-store`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from werkzeug.http import parse_date

from proxies.misbehaviours._cache_rules import Seconds
from proxies.misbehaviours.base import Misbehaviour, Parameters

if TYPE_CHECKING:
    from mitmproxy import http


class HaproxyCacheParams(Parameters):
    # The cache section's `max-age` (default 60): the most any answer is kept, and the
    # lifetime of an answer that has a validator but no expiry of its own.
    max_age: Seconds = 60


def _elements(headers: http.Headers, name: str) -> list[str]:
    """The field's comma-separated values, as http_find_header(..., 0) walks them."""
    return [v.strip() for v in headers.get(name, "").split(",") if v.strip()]


def _starts(value: str, word: str) -> bool:
    """istmatchi: the value begins with `word`, case-insensitive."""
    return value.lower().startswith(word)


class HaproxyCache(Misbehaviour[HaproxyCacheParams]):
    """HAProxy 2.6's cache, whose rules are its own (doc/configuration.txt 6.1 "Limitation";
    src/cache.c http_action_store_cache and http_calc_maxage; src/http_ana.c
    http_check_request_for_cacheability and http_check_response_for_cacheability), checked
    against HAProxy 2.6.12 itself where the sources of other versions differ.

    Looked up only for a GET (HEAD is not cached) without Authorization, whose Cache-Control
    has no value starting with no-cache, max-age, max-stale or min-fresh, and which has no
    `Pragma: no-cache` without a Cache-Control (TX_CACHE_IGNORE). Such a request's answer is
    still stored: the client's no-cache only keeps it from the stored copy.

    Stored only when all of these hold:
    - the request is a GET; one with Authorization or a Cache-Control value starting with
      no-store clears TX_CACHEABLE, which only a `public` in the answer sets again;
    - the status is 200 (no 203, 301, 404... at all);
    - the answer has no Vary (`process-vary` is off by default);
    - no `Pragma: no-cache` (exactly that value), no Cache-Control value that is exactly
      private, no-cache, no-store, max-age=0 or s-maxage=0 (each compared whole; a later
      `public` makes it cacheable again), and none starting with `no-cache="set-cookie`
      (TX_CACHE_COOK cleared: not stored either);
    - it has an explicit expiry (a value starting with max-age or s-maxage, or any Expires)
      or a validator (ETag or Last-Modified): "We won't store an entry that has neither a
      cache validator nor an explicit expiration time, as suggested in RFC 7234#3".
    The lifetime: s-maxage, else max-age, else Expires minus now (an invalid Expires is 0:
    expired), each capped at the section's `max-age`; an answer with only a validator gets
    `max-age` itself, 60 s by default, however old its Last-Modified: no heuristic fraction.
    So the plain poll (no headers) is never cached, but the last-modified anti-fix is, for a
    flat minute. The stale entry is never revalidated: HAProxy fetches it again.
    """

    name = "haproxy-cache"
    summary = "HAProxy's cache: 200 GETs with an expiry or a validator, kept for at most max-age."
    imitates = (
        "HAProxy 2.6 `cache` section with `http-request cache-use` / `http-response "
        "cache-store` (doc/configuration.txt section 6; src/cache.c http_calc_maxage, "
        "http_action_store_cache; src/http_ana.c http_check_request_for_cacheability, "
        "http_check_response_for_cacheability)."
    )

    def cacheable_method(self, request: http.Request, decision: bool) -> bool:
        return decision and request.method.upper() == "GET"

    def accepts_stored(self, request: http.Request, decision: bool) -> bool:
        return not _request_ignores_cache(request.headers)

    def storable(self, request: http.Request, response: http.Response, decision: bool) -> bool:
        headers = response.headers
        if response.status_code != 200 or "Vary" in headers:
            return False
        return _response_cacheable(_request_keeps_cacheable(request.headers), headers)

    def freshness_lifetime(
        self, request: http.Request, response: http.Response, lifetime: float, now: float
    ) -> float:
        cap = float(self.params.max_age)
        explicit = _explicit_lifetime(response.headers, now)
        return cap if explicit is None else min(explicit, cap)

    def explain_lifetime(self, request: http.Request, response: http.Response) -> str:
        if _explicit_lifetime(response.headers, 0.0) is None:
            return f"a validator and no expiry: the cache section's max-age {self.params.max_age}"
        return f"its own expiry, capped at the cache section's max-age {self.params.max_age}"


def _request_ignores_cache(headers: http.Headers) -> bool:
    """TX_CACHE_IGNORE after http_check_request_for_cacheability: not looked up."""
    if "Authorization" in headers:
        return True
    values = _elements(headers, "Cache-Control")
    ignore = ("max-age", "no-cache", "max-stale", "min-fresh")
    if any(_starts(value, word) for value in values for word in ignore):
        return True
    pragma = headers.get("Pragma", "").strip().lower()
    return "Cache-Control" not in headers and pragma == "no-cache"


def _request_keeps_cacheable(headers: http.Headers) -> bool:
    """TX_CACHEABLE (and TX_CACHE_COOK) still set after the request's check."""
    if "Authorization" in headers:
        return False
    return not any(_starts(v, "no-store") for v in _elements(headers, "Cache-Control"))


def _response_cacheable(cacheable: bool, headers: http.Headers) -> bool:
    if headers.get("Pragma", "").strip().lower() == "no-cache":
        return False
    cook, freshness = cacheable, False
    for value in _elements(headers, "Cache-Control"):
        lowered = value.lower()
        if lowered == "public":
            cacheable = cook = True
        elif lowered in ("private", "no-cache", "no-store", "max-age=0", "s-maxage=0"):
            cacheable = cook = False
        elif _starts(lowered, 'no-cache="set-cookie'):
            cook = False
        elif _starts(lowered, "s-maxage") or _starts(lowered, "max-age"):
            freshness = True
    freshness = freshness or "Expires" in headers
    validator = "ETag" in headers or "Last-Modified" in headers
    return cacheable and cook and (freshness or validator)


def _explicit_lifetime(headers: http.Headers, now: float) -> float | None:
    """http_calc_maxage without the cap: None when the answer names no expiry at all."""
    smaxage = maxage = None
    for value in _elements(headers, "Cache-Control"):
        name, _, number = value.partition("=")
        seconds = _seconds(number)
        if name.strip().lower() == "s-maxage" and seconds is not None:
            smaxage = seconds
        elif name.strip().lower() == "max-age" and seconds is not None:
            maxage = seconds
    if smaxage is not None and smaxage > 0:
        return smaxage
    if maxage is not None and maxage > 0:
        return maxage
    if smaxage is None and maxage is None and "Expires" in headers:
        expires = parse_date(headers.get("Expires"))
        # RFC 7234 5.3: an invalid date is a date in the past, already expired.
        return 0.0 if expires is None else max(0.0, expires.timestamp() - now)
    return None


def _seconds(text: str) -> float | None:
    text = text.strip().strip('"')
    return float(text) if text.isdigit() else None
