"""RFC 9111 rules for a *shared* HTTP cache, as pure functions.

Nothing here knows about mitmproxy: every function takes header mappings, a status,
a method and/or the current time, so addons that imitate misbehaving caches can
reuse (or deliberately bend) the same decisions.

Header mappings must do case-insensitive lookups (mitmproxy's or werkzeug's
``Headers``); a field that occurs several times is expected to be folded into one
comma-separated value, which is what ``mitmproxy.http.Headers.get`` returns.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from functools import lru_cache

from werkzeug.datastructures import RequestCacheControl, ResponseCacheControl
from werkzeug.http import (
    parse_cache_control_header,
    parse_etags,
    parse_list_header,
    unquote_etag,
)

from proxies.http_date import parse_http_date

Headers = Mapping[str, str]


class FieldView(Mapping[str, str]):
    """A read-only, case-insensitive snapshot of header fields, repeated fields folded into
    one comma-separated value: much cheaper to query than mitmproxy's Headers when a decision
    reads the same few fields many times."""

    def __init__(self, fields: Iterable[tuple[str, str]]) -> None:
        folded: dict[str, str] = {}
        for name, value in fields:
            key = name.lower()
            folded[key] = f"{folded[key]}, {value}" if key in folded else value
        self._fields = folded

    @classmethod
    def of(cls, headers: Mapping[str, str]) -> FieldView:
        items = headers.items
        try:
            pairs = items(multi=True)  # mitmproxy Headers: every field, in order
        except TypeError:
            pairs = items()
        return cls(pairs)

    def __getitem__(self, name: str) -> str:
        return self._fields[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._fields

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)


CACHEABLE_METHODS = frozenset({"GET", "HEAD"})
# RFC 9110 9.2.1: a response to any other method invalidates what the cache holds (4.4).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

# RFC 9110 15.1: statuses a cache may store without explicit freshness.
HEURISTICALLY_CACHEABLE = frozenset({200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501})

# Status codes whose caching rules this cache knows (RFC 9110 section 15), for must-understand.
UNDERSTOOD_STATUSES = frozenset(
    {*range(200, 209), 226, *range(300, 309), *range(400, 418), 421, 422, 426, *range(500, 506)}
)

# 206 needs Range support and 304 only refreshes an existing entry; storing either
# as a complete response would hand clients a fragment or an empty body.
NEVER_STORED = frozenset({206, 304})

# RFC 9110 7.6.1: fields that describe the connection, not the response; a proxy removes them
# (and the fields the Connection field names) before forwarding, so before storage too (RFC
# 9111 3.1).
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding"}
    | {"upgrade"}
)

# RFC 9111 3.2: fields a 304 must not overwrite in the stored response: Content-Length, the
# fields the stored content depends on (its coding, range and digest: a 304 has no content, so
# new values would describe a body the cache does not hold), and the hop-by-hop fields.
NOT_UPDATED_BY_304 = frozenset(
    {
        "content-length",
        "content-encoding",
        "content-range",
        "content-md5",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authentication-info",
        "proxy-authorization",
    }
)


@lru_cache(maxsize=4096)
def _cache_control(value: str | None, cls: type) -> ResponseCacheControl | RequestCacheControl:
    """Parsed once per distinct value (a proxy sees the same few values all day); the result
    is shared, so callers must not modify it."""
    # Directive names are case-insensitive (RFC 9111 5.2); werkzeug only knows lower case.
    return parse_cache_control_header(value.lower() if value else value, cls=cls)


def response_cache_control(headers: Headers) -> ResponseCacheControl:
    return _cache_control(headers.get("Cache-Control"), ResponseCacheControl)


def request_cache_control(headers: Headers) -> RequestCacheControl:
    return _cache_control(headers.get("Cache-Control"), RequestCacheControl)


def without_directives(cache_control: str, names: Iterable[str]) -> str:
    """The Cache-Control value minus the named directives (case-insensitive)."""
    drop = {name.lower() for name in names}
    kept = [
        item
        for item in parse_list_header(cache_control)
        if item.split("=", 1)[0].strip().lower() not in drop
    ]
    return ", ".join(kept)


def _timestamp(value: str | None) -> float | None:
    # Strict (RFC 9110 5.6.7): an invalid Expires must read as "already expired" (RFC 9111
    # 5.3), which a lenient parser turns into a date in the future.
    return parse_http_date(value)


def not_stored_fields(response_headers: Headers) -> set[str]:
    """Fields (lower case) a cache removes before storing: hop-by-hop ones and those the
    Connection field names (RFC 9111 3.1, RFC 9110 7.6.1)."""
    named = parse_list_header(response_headers.get("Connection", ""))
    return set(HOP_BY_HOP) | {name.strip().lower() for name in named if name.strip()}


def request_bypasses_cache(method: str, request_headers: Headers) -> bool:
    """True when the cache must not even look: uncacheable method or request no-store."""
    if method.upper() not in CACHEABLE_METHODS:
        return True
    return request_no_store(request_headers)


def request_no_store(request_headers: Headers) -> bool:
    return bool(request_cache_control(request_headers).no_store)


def request_accepts_stored(request_headers: Headers) -> bool:
    """False when the client demands an end-to-end answer (no-cache, or legacy Pragma)."""
    if "Cache-Control" in request_headers:
        # RFC 9111 5.4: Pragma is ignored once Cache-Control is present.
        return not request_cache_control(request_headers).no_cache
    return not pragma_no_cache(request_headers)


def pragma_no_cache(headers: Headers) -> bool:
    pragma = headers.get("Pragma") or ""
    return "no-cache" in (token.strip().lower() for token in pragma.split(","))


def is_conditional(request_headers: Headers) -> bool:
    """The client validates a copy of its own (RFC 9110 13.1.1, 13.1.3)."""
    return "If-None-Match" in request_headers or "If-Modified-Since" in request_headers


def vary_fields(response_headers: Headers) -> tuple[str, ...] | None:
    """Request fields the response varies on (lower case); None for ``Vary: *``."""
    fields = tuple(f.strip().lower() for f in parse_list_header(response_headers.get("Vary", "")))
    return None if "*" in fields else tuple(f for f in fields if f)


def vary_values(fields: tuple[str, ...], request_headers: Headers) -> tuple[str | None, ...]:
    return tuple(request_headers.get(field) for field in fields)


def has_validator(response_headers: Headers) -> bool:
    return "ETag" in response_headers or "Last-Modified" in response_headers


def response_is_storable(status: int, request_headers: Headers, response_headers: Headers) -> bool:
    """RFC 9111 section 3 for a request whose method the cache handles, minus freshness.

    ``no-cache`` responses are storable: they are stored and revalidated before every use
    (their freshness lifetime is 0, see ``freshness_lifetime``).
    """
    if request_no_store(request_headers):
        return False
    if status < 200 or status in NEVER_STORED:
        return False
    cc = response_cache_control(response_headers)
    if cc.must_understand:
        # 5.2.2.3: stored only by a cache that knows the status code's caching rules; one
        # that does ignores the no-store sent along for caches that do not.
        if status not in UNDERSTOOD_STATUSES:
            return False
    elif cc.no_store:
        return False
    if cc.private:
        return False
    if vary_fields(response_headers) is None:
        return False
    if "Authorization" in request_headers:
        # 3.5: credentials make a response private unless the origin opted in.
        return bool(cc.public or cc.s_maxage is not None or cc.must_revalidate)
    return True


def is_storable(
    method: str, status: int, request_headers: Headers, response_headers: Headers
) -> bool:
    """RFC 9111 section 3, minus freshness (see ``freshness_lifetime``)."""
    if method.upper() not in CACHEABLE_METHODS:
        return False
    return response_is_storable(status, request_headers, response_headers)


def explicit_lifetime(response_headers: Headers, now: float) -> float | None:
    """RFC 9111 4.2.1 for a shared cache; None if the origin gave no expiry at all."""
    cc = response_cache_control(response_headers)
    if cc.s_maxage is not None:
        return max(0.0, float(cc.s_maxage))
    if cc.max_age is not None:
        return max(0.0, float(cc.max_age))
    if "Expires" not in response_headers:
        return None
    expires = _timestamp(response_headers.get("Expires"))
    if expires is None:
        # 5.3: an unparsable Expires (typically "0") means "already expired".
        return 0.0
    date = _timestamp(response_headers.get("Date"))
    return max(0.0, expires - (date if date is not None else now))


def freshness_lifetime(
    status: int,
    response_headers: Headers,
    now: float,
    *,
    heuristic_ttl: float = 0,
    lm_fraction: float = 0.1,
) -> float:
    """Seconds the response stays fresh; 0 means stale on arrival.

    ``no-cache`` (5.2.2.4) gives 0 whatever max-age says: the response may be stored, but
    never used without a successful revalidation. Without explicit freshness, the heuristic of
    4.2.2: a positive ``heuristic_ttl``, else ``lm_fraction`` of the Last-Modified age.
    """
    if requires_validation(response_headers):
        return 0.0
    explicit = explicit_lifetime(response_headers, now)
    if explicit is not None:
        return explicit
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


def requires_validation(response_headers: Headers) -> bool:
    """no-cache (5.2.2.4): never used without a successful revalidation, not even stale
    (4.2.4: a cache MUST NOT serve stale when no-cache forbids it)."""
    return bool(response_cache_control(response_headers).no_cache)


def never_serve_stale(response_headers: Headers) -> bool:
    """must-revalidate, proxy-revalidate, or s-maxage (which implies proxy-revalidate in a
    shared cache, 5.2.2.10): a stale copy must never be used, not even if the origin is down."""
    cc = response_cache_control(response_headers)
    return bool(cc.must_revalidate or cc.proxy_revalidate or cc.s_maxage is not None)


def _seconds(value: object) -> float | None:
    try:
        return max(0.0, float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def stale_while_revalidate(response_headers: Headers) -> float | None:
    """RFC 5861 section 3: seconds a stale copy may be served while it is being revalidated."""
    return _seconds(response_cache_control(response_headers).stale_while_revalidate)


def stale_if_error(response_headers: Headers) -> float | None:
    """RFC 5861 section 4: seconds a stale copy may be served when the origin fails."""
    return _seconds(response_cache_control(response_headers).stale_if_error)


def weak_match(etag: str | None, candidates: str | None) -> bool:
    """Does ``etag`` match any entity tag of an If-None-Match value, or ``*`` (weak comparison,
    RFC 9110 8.8.3.2)? werkzeug splits the list, so a quoted tag may hold a comma."""
    if not etag or not candidates:
        return False
    tag, _weak = unquote_etag(etag)
    return tag is not None and parse_etags(candidates).contains_weak(tag)


def conditional_headers(response_headers: Headers) -> dict[str, str]:
    """The validators a cache sends to revalidate its stored response (RFC 9111 4.3.1)."""
    found: dict[str, str] = {}
    if etag := response_headers.get("ETag"):
        found["If-None-Match"] = etag
    if last_modified := response_headers.get("Last-Modified"):
        found["If-Modified-Since"] = last_modified
    return found


def not_modified_since(response_headers: Headers, if_modified_since: str | None) -> bool:
    """RFC 9110 13.1.3: the stored response was last modified at or before the client's date."""
    since = _timestamp(if_modified_since)
    modified = _timestamp(response_headers.get("Last-Modified"))
    return since is not None and modified is not None and modified <= since


def validates_stored(stored_headers: Headers, not_modified_headers: Headers) -> bool:
    """Does a 304 refer to the stored response (RFC 9111 4.3.4)? A 304 without an ETag can
    only refer to the one response we asked about."""
    etag = not_modified_headers.get("ETag")
    if etag is None:
        return True
    return weak_match(stored_headers.get("ETag"), etag)


def age_header(headers: Headers) -> int | None:
    """The Age field as an int; None when missing or invalid (RFC 9111 5.1: a list, which
    several Age lines fold into, counts by its first member; a value that is not a
    non-negative integer is ignored)."""
    first = (headers.get("Age") or "").split(",", 1)[0].strip(" \t")
    return int(first) if first.isascii() and first.isdigit() else None


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
