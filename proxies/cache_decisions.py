"""The shared cache's decisions: each the RFC 9111 one, then passed through the hooks of the
profile's misbehaviours whose scope takes the request (proxies/misbehaviours/base.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from mitmproxy import http

from proxies import cache_policy
from proxies.cache_settings import Settings
from proxies.cache_store import CacheEntry
from proxies.misbehaviours.base import CacheKey, Misbehaviour


class CacheRules:
    def __init__(self, misbehaviours: Callable[[], Sequence[Misbehaviour]]) -> None:
        # The profile's misbehaviours, read at every decision: the Misbehaving addon may
        # replace them when its option changes.
        self.misbehaviours = misbehaviours

    def in_scope(self, request: http.Request) -> list[Misbehaviour]:
        return [m for m in self.misbehaviours() if m.applies_to(request)]

    def cacheable_method(self, request: http.Request) -> bool:
        decision = request.method.upper() in cache_policy.CACHEABLE_METHODS
        for m in self.in_scope(request):
            decision = m.cacheable_method(request, decision)
        return decision

    def key(self, request: http.Request, method: str | None = None) -> CacheKey:
        """The request's cache key, or the key the same URL has with another method."""
        key: CacheKey = ((method or request.method).upper(), request.url)
        for m in self.in_scope(request):
            key = m.cache_key(request, key)
        return key

    def accepts_stored(self, request: http.Request) -> bool:
        decision = cache_policy.request_accepts_stored(request.headers)
        for m in self.in_scope(request):
            decision = m.accepts_stored(request, decision)
        return decision

    def serve_stale(
        self, request: http.Request, entry: CacheEntry, now: float, *, upstream_failed: bool
    ) -> bool:
        if entry.revalidate_always:
            # RFC 9111 4.2.4. No cache imitated here serves one stale either: nginx and Varnish
            # do not store no-cache answers, Squid fails when their revalidation fails.
            return False
        stale_for = entry.staleness(now)
        limit = entry.stale_if_error if upstream_failed else entry.stale_while_revalidate
        decision = not entry.never_stale and limit is not None and stale_for <= limit
        for m in self.in_scope(request):
            decision = m.serve_stale(request, stale_for, upstream_failed, decision)
        return decision

    def entry(
        self,
        request: http.Request,
        response: http.Response,
        now: float,
        settings: Settings,
        *,
        initial_headers: http.Headers,
    ) -> CacheEntry | None:
        """The entry to store for this response, with its freshness; None: not stored.
        `initial_headers` give its age on arrival (a 304's, for a refreshed entry)."""
        chain = self.in_scope(request)
        visible = response.headers.copy() if chain else response.headers
        for m in chain:
            visible = m.visible_headers(request, response, visible)
        seen = cache_policy.FieldView.of(visible)
        storable = cache_policy.response_is_storable(response.status_code, request.headers, seen)
        for m in chain:
            storable = m.storable(request, response, storable)
        if not storable:
            return None
        lifetime = cache_policy.freshness_lifetime(
            response.status_code,
            seen,
            now,
            heuristic_ttl=settings.heuristic_ttl,
            lm_fraction=settings.lm_fraction,
        )
        for m in chain:
            lifetime = m.freshness_lifetime(request, response, lifetime, now)
        if lifetime <= 0 and not cache_policy.has_validator(response.headers):
            return None  # stale on arrival and impossible to revalidate: useless
        fields = cache_policy.vary_fields(seen) or ()
        for m in chain:
            fields = m.vary_fields(response, fields)
        return CacheEntry(
            response=response,
            stored_at=now,
            initial_age=cache_policy.initial_age(initial_headers, now),
            lifetime=lifetime,
            vary_fields=fields,
            vary_values=cache_policy.vary_values(fields, request.headers),
            never_stale=cache_policy.never_serve_stale(seen),
            revalidate_always=cache_policy.requires_validation(seen),
            stale_while_revalidate=cache_policy.stale_while_revalidate(seen),
            stale_if_error=cache_policy.stale_if_error(seen),
        )
