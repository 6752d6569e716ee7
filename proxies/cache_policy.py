"""RFC 9111 rules for a *shared* HTTP cache, as pure functions.

Nothing here knows about mitmproxy: every function takes header mappings, a status,
a method and/or the current time, so addons that imitate misbehaving caches can
reuse (or deliberately bend) the same decisions.

Header mappings must do case-insensitive lookups (mitmproxy's or werkzeug's
``Headers``); a field that occurs several times is expected to be folded into one
comma-separated value, which is what ``mitmproxy.http.Headers.get`` returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from werkzeug.datastructures import RequestCacheControl, ResponseCacheControl
from werkzeug.http import parse_cache_control_header, parse_date, parse_list_header

Headers = Mapping[str, str]

CACHEABLE_METHODS = frozenset({"GET", "HEAD"})

# RFC 9110 15.1: statuses a cache may store without explicit freshness.
HEURISTICALLY_CACHEABLE = frozenset({200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501})

# 206 needs Range support and 304 only refreshes an existing entry; storing either
# as a complete response would hand clients a fragment or an empty body.
NEVER_STORED = frozenset({206, 304})


def response_cache_control(headers: Headers) -> ResponseCacheControl:
    return parse_cache_control_header(headers.get("Cache-Control"), cls=ResponseCacheControl)


def request_cache_control(headers: Headers) -> RequestCacheControl:
    return parse_cache_control_header(headers.get("Cache-Control"), cls=RequestCacheControl)


def _timestamp(value: str | None) -> float | None:
    parsed: datetime | None = parse_date(value)
    return parsed.timestamp() if parsed is not None else None


def request_bypasses_cache(method: str, request_headers: Headers) -> bool:
    """True when the cache must not even look: uncacheable method or request no-store."""
    if method.upper() not in CACHEABLE_METHODS:
        return True
    return bool(request_cache_control(request_headers).no_store)


def request_accepts_stored(request_headers: Headers) -> bool:
    """False when the client demands an end-to-end answer (no-cache, or legacy Pragma)."""
    if "Cache-Control" in request_headers:
        # RFC 9111 5.4: Pragma is ignored once Cache-Control is present.
        return not request_cache_control(request_headers).no_cache
    pragma = request_headers.get("Pragma") or ""
    return "no-cache" not in (token.strip().lower() for token in pragma.split(","))


def vary_fields(response_headers: Headers) -> tuple[str, ...] | None:
    """Request fields the response varies on (lower case); None for ``Vary: *``."""
    fields = tuple(f.strip().lower() for f in parse_list_header(response_headers.get("Vary", "")))
    return None if "*" in fields else tuple(f for f in fields if f)


def vary_values(fields: tuple[str, ...], request_headers: Headers) -> tuple[str | None, ...]:
    return tuple(request_headers.get(field) for field in fields)


def has_explicit_freshness(response_headers: Headers) -> bool:
    cc = response_cache_control(response_headers)
    return cc.s_maxage is not None or cc.max_age is not None or "Expires" in response_headers


def is_storable(
    method: str, status: int, request_headers: Headers, response_headers: Headers
) -> bool:
    """RFC 9111 section 3, minus freshness (see ``freshness_lifetime``)."""
    if request_bypasses_cache(method, request_headers):
        return False
    if status < 200 or status in NEVER_STORED:
        return False
    cc = response_cache_control(response_headers)
    # We never revalidate, so a no-cache entry could never be used: don't keep it.
    if cc.no_store or cc.private or cc.no_cache:
        return False
    if vary_fields(response_headers) is None:
        return False
    if "Authorization" in request_headers:
        # 3.5: credentials make a response private unless the origin opted in.
        return bool(cc.public or cc.s_maxage is not None or cc.must_revalidate)
    return True


def explicit_lifetime(response_headers: Headers, now: float) -> float | None:
    """RFC 9111 4.2.1 for a shared cache; None if the origin gave no expiry at all."""
    cc = response_cache_control(response_headers)
    if cc.s_maxage is not None:
        return float(cc.s_maxage)
    if cc.max_age is not None:
        return float(cc.max_age)
    if "Expires" not in response_headers:
        return None
    expires = _timestamp(response_headers.get("Expires"))
    if expires is None:
        # 5.3: an unparsable Expires (typically "0") means "already expired".
        return 0.0
    date = _timestamp(response_headers.get("Date"))
    return max(0.0, expires - (date if date is not None else now))


def heuristic_lifetime(
    status: int,
    response_headers: Headers,
    now: float,
    *,
    heuristic_ttl: float = 0,
    lm_fraction: float = 0.1,
) -> float:
    """RFC 9111 4.2.2; a positive ``heuristic_ttl`` overrides the Last-Modified rule."""
    public = bool(response_cache_control(response_headers).public)
    if status not in HEURISTICALLY_CACHEABLE and not public:
        return 0.0
    if heuristic_ttl > 0:
        return float(heuristic_ttl)
    last_modified = _timestamp(response_headers.get("Last-Modified"))
    if lm_fraction <= 0 or last_modified is None:
        return 0.0
    date = _timestamp(response_headers.get("Date"))
    return max(0.0, lm_fraction * ((date if date is not None else now) - last_modified))


def freshness_lifetime(
    status: int,
    response_headers: Headers,
    now: float,
    *,
    heuristic_ttl: float = 0,
    lm_fraction: float = 0.1,
) -> float:
    """Seconds the response stays fresh; 0 means "do not store"."""
    explicit = explicit_lifetime(response_headers, now)
    if explicit is not None:
        return explicit
    return heuristic_lifetime(
        status, response_headers, now, heuristic_ttl=heuristic_ttl, lm_fraction=lm_fraction
    )


def age_header(headers: Headers) -> int | None:
    """The Age field as an int; None when missing or malformed."""
    try:
        return int(headers.get("Age", ""))
    except ValueError:
        return None


def initial_age(response_headers: Headers, now: float) -> float:
    """Age of the response when it reached us (simplified RFC 9111 4.2.3)."""
    candidates = [0.0]
    age = age_header(response_headers)
    if age is not None:
        candidates.append(float(age))
    date = _timestamp(response_headers.get("Date"))
    if date is not None:
        candidates.append(now - date)
    return max(candidates)
