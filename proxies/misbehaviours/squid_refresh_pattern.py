"""Squid's freshness algorithm for the URLs one refresh_pattern line matches."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal, get_args

from pydantic import AfterValidator, Field
from werkzeug.http import parse_date

from proxies import cache_policy
from proxies.misbehaviours._cache_rules import hide_directives
from proxies.misbehaviours.base import Misbehaviour, Parameters

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mitmproxy import http

SquidOption = Literal[
    "override-expire",
    "override-lastmod",
    "reload-into-ims",
    "ignore-reload",
    "ignore-no-store",
    "ignore-private",
]
SQUID_OPTIONS: frozenset[str] = frozenset(get_args(SquidOption))
LINE_SYNTAX = "[refresh_pattern] [-i] regex min percent[%] max [options]"


@dataclass(frozen=True)
class RefreshLine:
    """One `refresh_pattern` line of squid.conf, parsed."""

    pattern: re.Pattern[str]
    min_s: float
    fraction: float
    max_s: float
    options: frozenset[str]
    source: str = ""  # the line as written, blanks folded: `. 0 20% 4320`

    @classmethod
    def parse(cls, text: str) -> RefreshLine:
        """Read a line as squid.conf does: words apart by blanks, `-i` for a case-insensitive
        regex (matched with re.search against the whole URL), min and max in minutes."""
        words = text.split()
        if words[:1] == ["refresh_pattern"]:
            words = words[1:]
        flags = 0
        if words[:1] == ["-i"]:
            flags, words = re.IGNORECASE, words[1:]
        if len(words) < 4:
            raise ValueError(f"{text!r}: expected {LINE_SYNTAX!r}")
        regex, min_minutes, percent, max_minutes, *options = words
        try:
            pattern = re.compile(regex, flags)
        except re.error as exc:
            raise ValueError(f"{text!r}: not a valid regular expression: {exc}") from None
        numbers = (min_minutes, percent.removesuffix("%"), max_minutes)
        if not all(number.isdigit() for number in numbers):
            raise ValueError(f"{text!r}: min, percent and max must be whole numbers >= 0")
        unknown = sorted(set(options) - SQUID_OPTIONS)
        if unknown:
            known = ", ".join(sorted(SQUID_OPTIONS))
            raise ValueError(f"{text!r}: unknown option {unknown[0]!r} (known: {known})")
        minimum, share, maximum = (int(number) for number in numbers)
        source = " ".join(words if not flags else ["-i", *words])
        return cls(pattern, minimum * 60.0, share / 100, maximum * 60.0, frozenset(options), source)

    def step(self, headers: Mapping[str, str]) -> str:
        """Which step of `squid_lifetime` decides a reply's freshness under this line."""
        cc = cache_policy.response_cache_control(headers)
        pragma_only = "Cache-Control" not in headers and cache_policy.pragma_no_cache(headers)
        if cc.no_cache or cc.private is not None or pragma_only:
            return "revalidated on every hit (ENTRY_REVALIDATE_ALWAYS)"
        if cc.s_maxage is not None or cc.max_age is not None or "Expires" in headers:
            if "override-expire" in self.options:
                return (
                    f"its explicit expiry, at least min {self.min_s / 60:g} min (override-expire)"
                )
            return "its explicit expiry (min, percent and max ignored)"
        last_modified, date = _time(headers.get("Last-Modified")), _time(headers.get("Date"))
        if last_modified is not None and (date is None or date > last_modified):
            floor = ""
            if "override-lastmod" in self.options:
                floor = f", at least min {self.min_s / 60:g} min (override-lastmod)"
            return (
                f"{self.fraction * 100:g}% of its Last-Modified age{floor}, at most max "
                f"{self.max_s / 60:g} min"
            )
        return f"min {self.min_s / 60:g} min (no expiry, no Last-Modified)"


def _check_line(text: str) -> str:
    RefreshLine.parse(text)
    return text


class SquidRefreshPatternParams(Parameters):
    # The refresh_pattern lines in squid.conf's order, each as squid.conf writes it (the
    # `refresh_pattern` word may be left out): `-i (/cgi-bin/|\?) 0 0% 0`.
    lines: Annotated[list[Annotated[str, AfterValidator(_check_line)]], Field(min_length=1)]


def squid_lifetime(
    headers: Mapping[str, str],
    now: float,
    *,
    min_s: float,
    fraction: float,
    max_s: float,
    override_expire: bool = False,
    override_lastmod: bool = False,
) -> float:
    """Seconds a stored reply stays fresh for Squid (refreshStaleness and refreshCheck in
    src/refresh.cc, HttpReply::hdrExpirationTime, StoreEntry::lastModified), counted from the
    reply's Date like Squid's entry timestamp.
    """
    cc = cache_policy.response_cache_control(headers)
    if cc.no_cache or cc.private is not None:
        # ENTRY_REVALIDATE_ALWAYS (src/http.cc haveParsedReplyHeaders): revalidated on every
        # hit, before any override, even when ignore-private is why it was stored.
        return 0.0
    if "Cache-Control" not in headers and cache_policy.pragma_no_cache(headers):
        # "Pragma: no-cache in _replies_ is not documented in HTTP, but servers like Active
        # Imaging Webcast/2.0 sure do use it": revalidate always, only without Cache-Control.
        return 0.0
    date = _time(headers.get("Date"))
    timestamp = date if date is not None else now
    expires = _expires(headers, cc, date, now)
    if expires is not None:
        # 1. Explicit expiry: min, percent and max are ignored. override-expire only extends
        # freshness to min ("does not enforce staleness").
        lifetime = expires - timestamp
        return max(0.0, max(lifetime, min_s) if override_expire else lifetime)
    last_modified = _time(headers.get("Last-Modified"))
    # lastModified() falls back to the timestamp, so no Last-Modified means a delta of 0.
    delta = timestamp - last_modified if last_modified is not None else 0.0
    if delta > 0:
        # 2.+3. Stale past max; else fresh while younger than percent of the Last-Modified age.
        lm_lifetime = delta * fraction
        if override_lastmod:
            lm_lifetime = max(lm_lifetime, min_s)
        return max(0.0, min(lm_lifetime, max_s))
    # 4.+5. No expiry, no Last-Modified: fresh while younger than min (and not past max).
    return max(0.0, min(min_s, max_s))


def _time(value: str | None) -> float | None:
    parsed = parse_date(value)
    return parsed.timestamp() if parsed is not None else None


def _expires(
    headers: Mapping[str, str], cc: object, date: float | None, now: float
) -> float | None:
    """HttpReply::hdrExpirationTime: s-maxage/max-age from Date (or now), else Expires, where
    an invalid Expires means the Date ("expires immediately", HTTP/1.0)."""
    max_age = getattr(cc, "s_maxage", None)
    if max_age is None:
        max_age = getattr(cc, "max_age", None)
    if max_age is not None:
        return (date if date is not None else now) + max(0, max_age)
    if "Expires" not in headers:
        return None
    expires = _time(headers.get("Expires"))
    if expires is None:
        return date if date is not None else now
    return expires


class SquidRefreshPattern(Misbehaviour[SquidRefreshPatternParams]):
    """squid.conf's `refresh_pattern [-i] regex min percent max [options]` lines, in their
    order: the first line whose regex matches a URL decides its freshness with Squid's own
    algorithm (src/refresh.cc refreshStaleness/refreshCheck, Squid 6). A URL no line matches
    keeps the cache's RFC rules (Squid would use its built-in `. 0 20% 4320`, so list a `.`
    line last, as squid.conf.default does).

    Freshness, in Squid's order:
    1. An explicit expiry (s-maxage, max-age, else Expires) decides alone: min, percent and max
       do not apply. An invalid Expires (`Expires: 0`) means "expires at Date".
       override-expire: fresh while younger than min even past that expiry.
    2. Older than max: stale.
    3. With Last-Modified: fresh while younger than percent of (Date - Last-Modified).
       override-lastmod: fresh while younger than min even when that says stale.
    4. Younger than min: fresh. 5. Else stale.

    Surprising parts, with their source:
    - A reply with no cache headers and no Last-Modified under the stock `. 0 20% 4320`:
      current Squid stores it, but it is stale at once (min 0), so every hit is a
      revalidation (an If-Modified-Since with the stored Date, which the app answers with a
      full 200). StoreEntry::lastModified() now falls back to the Date (src/Store.h), so
      refreshIsCachable (src/refresh.cc) no longer refuses it; Squid 2 and 3 did ("Last
      modified is needed to do a refresh"), and Squid 1.1 kept such replies for max, 3 days
      (Release-Notes-1.1, quoted on the HTTP-WG list in April 1997). The stock
      `-i (/cgi-bin/|\\?) 0 0% 0` line gives query URLs no freshness at all.
    - A min above 0 makes a reply without any cache header fresh for min minutes:
      "any higher values may cause dynamic applications to be erroneously cached"
      (squid.conf.documented, refresh_pattern).
    - `no-cache` (without field names), and `private` when ignore-private stored it, set
      ENTRY_REVALIDATE_ALWAYS: revalidated on every hit, whatever the options, "for security
      reasons ... even if storage was caused by refresh_pattern ignore-* option"
      (src/http.cc). So ignore-private does not leak one user's copy to the next (it costs a
      revalidation), and `Cache-Control: no-cache` beats every override.
    - ignore-no-store stores `no-store` replies with no such flag: `no-store` + `Expires: 0`
      (the classic "don't cache" set) is fresh for min under override-expire, and `no-store`
      alone for min even without it. `Pragma: no-cache` on a reply counts (revalidate always)
      only when the reply has no Cache-Control at all.
    - ignore-reload ignores a client's `Cache-Control: no-cache`, `Pragma: no-cache` and
      `max-age=0`. reload-into-ims turns them into a revalidation, which is what this lab's
      cache does for a reload anyway, so it changes nothing here.
    - must-revalidate, proxy-revalidate and s-maxage only forbid serving stale. Not imitated:
      min-fresh, max-stale, refresh-ims, store-stale, and ignore-no-store's effect on a
      request's `Cache-Control: no-store` (this cache always bypasses such a request).
    """

    name = "squid-refresh-pattern"
    summary = "squid.conf refresh_pattern lines, with Squid's freshness algorithm and options."
    imitates = (
        "Squid `refresh_pattern [-i] regex min percent max [override-expire override-lastmod "
        "reload-into-ims ignore-reload ignore-no-store ignore-private]` (squid.conf; "
        "src/refresh.cc, src/http.cc of Squid 6, built with the default "
        "--enable-http-violations)."
    )

    def prepare(self) -> None:
        self.lines = [RefreshLine.parse(text) for text in self.params.lines]

    def line_for(self, request: http.Request) -> RefreshLine | None:
        """The first line whose regex matches the request's URL, as Squid picks it."""
        return next((line for line in self.lines if line.pattern.search(request.url)), None)

    def explain_lifetime(self, request: http.Request, response: http.Response) -> str:
        line = self.line_for(request)
        if line is None:
            return ""
        return f"refresh_pattern `{line.source}`: {line.step(response.headers)}"

    def accepts_stored(self, request: http.Request, decision: bool) -> bool:
        line = self.line_for(request)
        if line is not None and "ignore-reload" in line.options:
            return True
        return decision

    def visible_headers(
        self, request: http.Request, response: http.Response, headers: http.Headers
    ) -> http.Headers:
        line = self.line_for(request)
        if line is None:
            return headers
        hidden = [d for d in ("no-store", "private") if f"ignore-{d}" in line.options]
        return hide_directives(headers, hidden) if hidden else headers

    def freshness_lifetime(
        self, request: http.Request, response: http.Response, lifetime: float, now: float
    ) -> float:
        line = self.line_for(request)
        if line is None:
            return lifetime
        if response.status_code not in cache_policy.HEURISTICALLY_CACHEABLE and (
            cache_policy.explicit_lifetime(response.headers, now) is None
        ):
            # HttpStateData::cacheableReply (src/http.cc): 201, 202, 403, 5xx and unknown codes
            # are never cached, or only "negatively" for negative_ttl (0 by default), without
            # an explicit expiry; refresh_pattern's heuristic never reaches them.
            return lifetime
        return squid_lifetime(
            response.headers,
            now,
            min_s=line.min_s,
            fraction=line.fraction,
            max_s=line.max_s,
            override_expire="override-expire" in line.options,
            override_lastmod="override-lastmod" in line.options,
        )
