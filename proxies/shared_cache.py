"""mitmproxy addon: a shared HTTP cache living inside the proxy."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader

from proxies import cache_policy
from proxies.misbehaviours.base import Misbehaviour

VIA = "1.1 proxy-cache-lab"

CacheKey = tuple[str, str]


@dataclass
class CacheEntry:
    response: http.Response
    stored_at: float
    initial_age: float
    lifetime: float
    vary_fields: tuple[str, ...]
    vary_values: tuple[str | None, ...]

    def current_age(self, now: float) -> float:
        return self.initial_age + max(0.0, now - self.stored_at)

    def matches(self, request: http.Request) -> bool:
        return cache_policy.vary_values(self.vary_fields, request.headers) == self.vary_values


class SharedCache:
    """Imitates a shared cache (corporate forward proxy, ISP cache, CDN edge).

    By default it follows RFC 9111 for shared caches, so it only keeps what the
    origin allows. ``cache_heuristic_ttl`` turns it into the aggressive kind of
    proxy that caches anything without explicit freshness - e.g. a polled
    task-status endpoint that forgot its Cache-Control header.

    It never revalidates: a stale or no-cache entry is simply not used. The
    outcome of each flow is put in ``flow.metadata["cache"]``: HIT, STORE, MISS or
    BYPASS, and hits also get ``flow.metadata["cache_age"]``.
    """

    def __init__(self, misbehaviours: Callable[[], Sequence[Misbehaviour]] = lambda: ()) -> None:
        # The profile's cache misbehaviours, consulted at every decision (see misbehaviours/).
        self.misbehaviours = misbehaviours
        # Injectable so tests can move time without sleeping.
        self.clock: Callable[[], float] = time.time
        self.entries: OrderedDict[CacheKey, CacheEntry] = OrderedDict()

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "cache_enabled", bool, True, "Answer GET/HEAD requests from the shared cache."
        )
        loader.add_option(
            "cache_heuristic_ttl",
            int,
            0,
            """
            Seconds of freshness given to any heuristically cacheable GET response
            without explicit freshness (no s-maxage, max-age or Expires), like an
            aggressive corporate proxy. 0 keeps the RFC Last-Modified heuristic.
            """,
        )
        loader.add_option(
            "cache_heuristic_lm_percent",
            int,
            10,
            """
            RFC 9111 heuristic: a response with Last-Modified but no explicit
            freshness stays fresh for this percentage of (Date - Last-Modified)
            (RFC 9111 section 4.2.2 suggests 10). 0 disables it. Ignored when
            cache_heuristic_ttl > 0. An int, not a fraction: mitmdump's --set cannot
            parse float options.
            """,
        )
        loader.add_option(
            "cache_add_headers",
            bool,
            False,
            "Add 'Via' and 'X-Cache: HIT|MISS' to responses; off keeps the cache invisible.",
        )
        loader.add_option(
            "cache_max_entries",
            int,
            1000,
            "Maximum number of stored responses; the least recently used is evicted.",
        )

    def configure(self, updated: set[str]) -> None:
        if ctx.options.cache_heuristic_ttl < 0:
            raise exceptions.OptionsError("cache_heuristic_ttl must be >= 0")
        if not 0 <= ctx.options.cache_heuristic_lm_percent <= 100:
            raise exceptions.OptionsError("cache_heuristic_lm_percent must be within [0, 100]")
        if ctx.options.cache_max_entries < 1:
            raise exceptions.OptionsError("cache_max_entries must be >= 1")
        if "cache_enabled" in updated and not ctx.options.cache_enabled:
            # Re-enabling later must not resurrect responses from before.
            self.entries.clear()
        self._evict()

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:  # another addon already answered
            flow.metadata["cache"] = "BYPASS"
            return
        if not ctx.options.cache_enabled or cache_policy.request_bypasses_cache(
            flow.request.method, flow.request.headers
        ):
            flow.metadata["cache"] = "BYPASS"
            return
        entry = self._lookup(flow.request)
        if entry is None:
            flow.metadata["cache"] = "MISS"
            return
        self._serve(flow, entry)

    def response(self, flow: http.HTTPFlow) -> None:
        outcome = flow.metadata.setdefault("cache", "BYPASS")
        if outcome == "HIT":
            return  # already decorated when served
        if outcome == "MISS" and self._store(flow):
            flow.metadata["cache"] = "STORE"
        self._decorate(flow.response, hit=False)

    @staticmethod
    def key(request: http.Request) -> CacheKey:
        return request.method.upper(), request.url

    def _lookup(self, request: http.Request) -> CacheEntry | None:
        if not cache_policy.request_accepts_stored(request.headers):
            return None
        key = self.key(request)
        entry = self.entries.get(key)
        if entry is None or not entry.matches(request):
            return None
        if entry.current_age(self.clock()) >= entry.lifetime:
            del self.entries[key]  # we never revalidate, so stale is useless
            return None
        self.entries.move_to_end(key)
        return entry

    def _serve(self, flow: http.HTTPFlow, entry: CacheEntry) -> None:
        now = self.clock()
        age = int(entry.current_age(now))
        response = entry.response.copy()
        response.timestamp_start = response.timestamp_end = now
        response.headers["Age"] = str(age)
        self._decorate(response, hit=True)
        flow.response = response
        flow.metadata["cache"] = "HIT"
        flow.metadata["cache_age"] = age

    def _store(self, flow: http.HTTPFlow) -> bool:
        request, response = flow.request, flow.response
        if response is None or response.raw_content is None:  # streamed bodies aren't kept
            return False
        if not cache_policy.is_storable(
            request.method, response.status_code, request.headers, response.headers
        ):
            return False
        now = self.clock()
        lifetime = cache_policy.freshness_lifetime(
            response.status_code,
            response.headers,
            now,
            heuristic_ttl=ctx.options.cache_heuristic_ttl,
            lm_fraction=ctx.options.cache_heuristic_lm_percent / 100,
        )
        if lifetime <= 0:
            return False
        fields = cache_policy.vary_fields(response.headers) or ()
        key = self.key(request)
        self.entries[key] = CacheEntry(
            response=response.copy(),
            stored_at=now,
            initial_age=cache_policy.initial_age(response.headers, now),
            lifetime=lifetime,
            vary_fields=fields,
            vary_values=cache_policy.vary_values(fields, request.headers),
        )
        self.entries.move_to_end(key)
        self._evict()
        return True

    def _evict(self) -> None:
        while len(self.entries) > ctx.options.cache_max_entries:
            self.entries.popitem(last=False)

    @staticmethod
    def _decorate(response: http.Response | None, *, hit: bool) -> None:
        if response is None or not ctx.options.cache_add_headers:
            return
        via = response.headers.get("Via")
        response.headers["Via"] = f"{via}, {VIA}" if via else VIA
        response.headers["X-Cache"] = "HIT" if hit else "MISS"
