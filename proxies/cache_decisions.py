"""The shared cache's decisions: each the RFC 9111 one, then passed through the hooks of the
profile's misbehaviours whose scope takes the request (proxies/misbehaviours/base.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from mitmproxy import http

from proxies import cache_policy, cache_rule, targeted_fields
from proxies.cache_rule import StoreRule
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
        return self.key_and_note(request, method)[0]

    def key_and_note(
        self, request: http.Request, method: str | None = None
    ) -> tuple[CacheKey, str | None]:
        """The cache key, and what the misbehaviours did to it ("query string dropped from the
        key (ignore-query-in-key)"); None when the key is the RFC's."""
        key: CacheKey = ((method or request.method).upper(), request.url)
        notes: list[str] = []
        for m in self.in_scope(request):
            changed = m.cache_key(request, key)
            if changed != key:
                notes.append(f"{cache_rule.key_change(key, changed)} ({m.name})")
            key = changed
        return key, "; ".join(notes) or None

    def accepts_stored(self, request: http.Request) -> tuple[bool, str | None]:
        """May a stored answer be used; and, when a misbehaviour decided it against the RFC
        rule, which one ("the request's no-cache ignored (ignore-request-no-cache)")."""
        rfc = decision = cache_policy.request_accepts_stored(request.headers)
        changer: Misbehaviour | None = None
        for m in self.in_scope(request):
            changed = m.accepts_stored(request, decision)
            if changed != decision:
                changer = m
            decision = changed
        if changer is None or decision == rfc:
            return decision, None
        what = "the request's no-cache ignored" if decision else "a stored answer refused"
        return decision, f"{what} ({changer.name})"

    def revalidates(self, request: http.Request) -> bool:
        """RFC 9111 4.3.1's conditional request for a stale entry, as the misbehaviours leave it."""
        decision = True
        for m in self.in_scope(request):
            decision = m.revalidates(request, decision)
        return decision

    def accepts_304(
        self, request: http.Request, stored: http.Headers, not_modified: http.Headers
    ) -> bool:
        """RFC 9111 4.3.4: does the origin's 304 select the stored answer, as the
        misbehaviours leave it?"""
        decision = cache_policy.validates_stored(stored, not_modified)
        if decision:
            return True
        for m in self.in_scope(request):
            decision = m.accepts_304(request, decision)
        return decision

    def kept_on_304(self, request: http.Request) -> frozenset[str]:
        """The stored fields a refreshing 304 leaves alone, as the misbehaviours leave them."""
        names = cache_policy.NOT_UPDATED_BY_304
        for m in self.in_scope(request):
            names = m.kept_on_304(request, names)
        return names

    def invalidates(self, request: http.Request, response: http.Response) -> bool:
        """RFC 9111 4.4's invalidation after an unsafe method, as the misbehaviours leave it."""
        decision = True
        for m in self.in_scope(request):
            decision = m.invalidates(request, response, decision)
        return decision

    def invalidates_locations(self, request: http.Request, response: http.Response) -> bool:
        """RFC 9111 4.4's invalidation of the same-origin Location and Content-Location."""
        decision = True
        for m in self.in_scope(request):
            decision = m.invalidates_locations(request, response, decision)
        return decision

    def not_stored_fields(self, request: http.Request, response: http.Response) -> frozenset[str]:
        """RFC 9111 3.1's fields removed before storing, as the misbehaviours leave them."""
        names = frozenset(cache_policy.not_stored_fields(response.headers))
        for m in self.in_scope(request):
            names = m.not_stored_fields(request, names)
        return names

    def initial_age(self, request: http.Request, headers: http.Headers, now: float) -> float:
        """RFC 9111 4.2.3's age on arrival, as the misbehaviours leave it."""
        age = cache_policy.initial_age(headers, now)
        for m in self.in_scope(request):
            age = m.initial_age(request, headers, age, now)
        return age

    def from_store(
        self, request: http.Request, stored: http.Response, answer: http.Response
    ) -> None:
        """The misbehaviours' edits to an answer built from the store (Age, Set-Cookie)."""
        for m in self.in_scope(request):
            m.from_store(request, stored, answer)

    def stale_allowed(
        self, request: http.Request, entry: CacheEntry, now: float, *, upstream_failed: bool
    ) -> str | None:
        """Who lets the stale entry be served, in words ("served 3 s past its lifetime
        (stale-while-updating)"); None: it may not be."""
        if entry.revalidate_always:
            # RFC 9111 4.2.4. No cache imitated here serves one stale either: nginx and Varnish
            # do not store no-cache answers, Squid fails when their revalidation fails.
            return None
        stale_for = entry.staleness(now)
        limit = entry.stale_if_error if upstream_failed else entry.stale_while_revalidate
        decision = not entry.never_stale and limit is not None and stale_for <= limit
        rfc, changer = decision, None
        for m in self.in_scope(request):
            changed = m.serve_stale(request, stale_for, upstream_failed, decision)
            if changed != decision:
                changer = m
            decision = changed
        if not decision:
            return None
        if changer is not None and not rfc:
            who = changer.name
        else:
            who = "stale-if-error" if upstream_failed else "stale-while-revalidate"
            who = f"the response's {who}"
        if stale_for < 0:  # a fresh copy the client refused, in place of the origin's error
            return f"served in place of the origin's error ({who})"
        return f"served {cache_rule.seconds(round(stale_for, 1))} s past its lifetime ({who})"

    def entry(
        self,
        request: http.Request,
        response: http.Response,
        now: float,
        settings: Settings,
        *,
        initial_headers: http.Headers,
        targets: tuple[str, ...] = (),
    ) -> CacheEntry | None:
        """The entry to store for this response, with its freshness and why (`rule`); None: not
        stored. `initial_headers` give its age on arrival (a 304's, for a refreshed entry);
        `targets`: the targeted cache-control fields this listener obeys (RFC 9213).

        Each hook's decision is compared with the one before it, so the entry can say which
        misbehaviour changed what: a few comparisons per stored answer."""
        chain = self.in_scope(request)
        trace = _Trace()
        visible = response.headers.copy() if chain else response.headers
        for m in chain:
            before = visible.fields
            visible = m.visible_headers(request, response, visible)
            if visible.fields != before:
                trace.changes.append((m, cache_rule.hidden_fields(http.Headers(before), visible)))
        seen = targeted_fields.policy_fields(cache_policy.FieldView.of(visible), targets)
        rfc_storable = cache_policy.response_is_storable(
            response.status_code, request.headers, seen
        )
        storable, stored_by = rfc_storable, None
        for m in chain:
            changed = m.storable(request, response, storable)
            if changed != storable:
                stored_by = m
            storable = changed
        if not storable:
            return None
        if stored_by is not None and not rfc_storable:
            trace.changes.append((stored_by, "stored although the RFC rules would not store it"))
        rfc_lifetime = lifetime = cache_policy.freshness_lifetime(
            response.status_code,
            seen,
            now,
            heuristic_ttl=settings.heuristic_ttl,
            lm_fraction=settings.lm_fraction,
        )
        for m in chain:
            changed = m.freshness_lifetime(request, response, lifetime, now)
            if changed != lifetime:
                trace.lifetime_by = m
            lifetime = changed
        if lifetime <= 0 and not cache_policy.has_validator(response.headers):
            return None  # stale on arrival and impossible to revalidate: useless
        fields = cache_policy.vary_fields(seen) or ()
        for m in chain:
            changed = m.vary_fields(response, fields)
            if changed != fields:
                trace.vary_changes.append((m, cache_rule.vary_change(changed)))
            fields = changed
        rfc = cache_rule.rfc_rule(
            response.status_code,
            seen,
            rfc_lifetime,
            heuristic_ttl=settings.heuristic_ttl,
            lm_fraction=settings.lm_fraction,
        )
        return CacheEntry(
            response=response,
            stored_at=now,
            initial_age=self.initial_age(request, initial_headers, now),
            lifetime=lifetime,
            vary_fields=fields,
            vary_values=cache_policy.vary_values(fields, request.headers),
            never_stale=cache_policy.never_serve_stale(seen),
            revalidate_always=cache_policy.requires_validation(seen),
            stale_while_revalidate=cache_policy.stale_while_revalidate(seen),
            stale_if_error=cache_policy.stale_if_error(seen),
            rule=trace.rule(request, response, lifetime, rfc),
        )


class _Trace:
    """What the misbehaviours changed in one storing decision, in the order they did."""

    def __init__(self) -> None:
        self.lifetime_by: Misbehaviour | None = None
        self.changes: list[tuple[Misbehaviour, str]] = []  # hidden fields, storability
        self.vary_changes: list[tuple[Misbehaviour, str]] = []

    def rule(
        self, request: http.Request, response: http.Response, lifetime: float, rfc: StoreRule
    ) -> StoreRule:
        """The RFC's reason when no hook changed anything; else the misbehaviour that set the
        lifetime last, or the last that changed anything else, with every change in words."""
        changes = self.changes + self.vary_changes
        if self.lifetime_by is None and not changes:
            return rfc
        headline = self.lifetime_by or (self.changes or self.vary_changes)[-1][0]
        detail = headline.explain_lifetime(request, response) if self.lifetime_by else ""
        return cache_rule.misbehaviour_rule(
            headline,
            lifetime=lifetime,
            set_lifetime=self.lifetime_by is not None,
            detail=detail,
            rfc=rfc,
            changes=changes,
        )
