"""HAProxy's small RAM cache (`cache` section, `cache-use` / `cache-store`)."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

from werkzeug.http import parse_date

from proxies.cache_policy import HOP_BY_HOP
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

    A max-age or s-maxage whose value (after one optional `"`) is not a number, or is
    negative, makes http_calc_maxage return -1: the entry expires before it is stored, so it
    is never served (`max-age='3600'` included). The Age field (http_action_store_cache):
    only the first value of the first line counts, read by strl2llrc; unless it is a positive
    number no larger than the answer's own explicit lifetime (0 without one) the answer is
    not stored, so `Age: 0`, `abc`, `-7200`, `7200;foo=bar` and `0, 7200` all keep it out.
    A stored answer's age is that value plus its time in the cache (Date is not read), and
    it expires when its capped lifetime has passed in the cache, whatever Age said.

    A successful unsafe request drops the entry for its own URL only, never those of its
    Location or Content-Location. The fields a Connection header names are stored and
    served again: HAProxy's store copies the header blocks as they are.
    """

    name = "haproxy-cache"
    summary = "HAProxy's cache: 200 GETs with an expiry or a validator, kept for at most max-age."
    imitates = (
        "HAProxy 2.6 `cache` section with `http-request cache-use` / `http-response "
        "cache-store` (doc/configuration.txt section 6; src/cache.c http_calc_maxage, "
        "http_action_store_cache; src/http_ana.c http_check_request_for_cacheability, "
        "http_check_response_for_cacheability)."
    )

    def revalidates(self, request: http.Request, decision: bool) -> bool:
        return False  # the 2.6 cache sends no conditional request of its own

    def invalidates_locations(
        self, request: http.Request, response: http.Response, decision: bool
    ) -> bool:
        return False  # only txn->cache_hash, the request's own key, is dropped

    def not_stored_fields(self, request: http.Request, names: frozenset[str]) -> frozenset[str]:
        return names & HOP_BY_HOP

    def initial_age(
        self, request: http.Request, headers: http.Headers, age: float, now: float
    ) -> float:
        return float(max(0, _age_value(headers) or 0))

    def cacheable_method(self, request: http.Request, decision: bool) -> bool:
        return decision and request.method.upper() == "GET"

    def accepts_stored(self, request: http.Request, decision: bool) -> bool:
        return not _request_ignores_cache(request.headers)

    def storable(self, request: http.Request, response: http.Response, decision: bool) -> bool:
        headers = response.headers
        if response.status_code != 200 or "Vary" in headers:
            return False
        if not _response_cacheable(_request_keeps_cacheable(request.headers), headers):
            return False
        effective, explicit = _calc_maxage(headers, self.params.max_age, time.time())
        if effective < 0:
            return False  # stored already expired: never served
        if "Age" not in headers:
            return True
        age = _age_value(headers)
        return age is not None and 0 < age <= explicit

    def freshness_lifetime(
        self, request: http.Request, response: http.Response, lifetime: float, now: float
    ) -> float:
        effective, _ = _calc_maxage(response.headers, self.params.max_age, now)
        # The entry expires `effective` seconds after it was stored; our cache counts the
        # answer's Age against the lifetime, so it is added back.
        return float(effective + max(0, _age_value(response.headers) or 0))

    def explain_lifetime(self, request: http.Request, response: http.Response) -> str:
        if _calc_maxage(response.headers, self.params.max_age, 0.0)[1] == 0:
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


def _calc_maxage(headers: http.Headers, cap: int, now: float) -> tuple[int, int]:
    """http_calc_maxage: the entry's lifetime (the cap, -1 for an invalid max-age or
    s-maxage) and the answer's own explicit lifetime (0 without one)."""
    smaxage = maxage = expires = -1
    for value in _elements(headers, "Cache-Control"):
        for word in ("s-maxage", "max-age"):
            argument = _directive_value(value, word)
            if argument is None:
                continue
            number = _strtol(argument[1:] if argument.startswith('"') else argument)
            if number is None or number < 0:
                return -1, 0
            if word == "s-maxage":
                smaxage = number
            else:
                maxage = number
    if maxage == -1 and smaxage == -1 and "Expires" in headers:
        date = parse_date(headers.get_all("Expires")[0])
        # RFC 7234 5.3: an invalid date is a date in the past, already expired.
        expires = 0 if date is None else max(0, int(date.timestamp() - now))
    for own in (smaxage, maxage):
        if own > 0:
            return min(own, cap), own
    if expires >= 0:
        return min(expires, cap), expires
    return cap, 0


def _directive_value(value: str, word: str) -> str | None:
    """directive_value: what follows `word=` (the word compared case-insensitively)."""
    if not value.lower().startswith(word) or value[len(word) : len(word) + 1] != "=":
        return None
    return value[len(word) + 1 :] or None


def _strtol(text: str) -> int | None:
    """C's strtol in base 10: leading blanks and a sign, then digits; None without digits."""
    match = re.match(r"\s*([+-]?\d+)", text)
    return int(match.group(1)) if match else None


def _age_value(headers: http.Headers) -> int | None:
    """The first value of the first Age line, read as strl2llrc does (None: refused). It
    only rejects characters above '9', so '7200.0' reads as 7199980 and ';' is refused."""
    lines = headers.get_all("Age")
    if not lines:
        return None
    text = lines[0].split(",")[0].strip()
    sign, digits = (-1, text[1:]) if text.startswith("-") else (1, text)
    if not text or (sign < 0 and not digits):
        return 0 if text == "-" else None
    number = 0
    for char in digits:
        step = ord(char) - ord("0")
        if step > 9:
            return None
        number = number * 10 + step
    return sign * number
