"""mitmproxy addon: a shared HTTP cache living inside the proxy."""

from __future__ import annotations

import copy
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader

from proxies import cache_policy
from proxies.misbehaviours.base import CacheKey, Misbehaviour

VIA = "1.1 proxy-cache-lab"
MiB = 1024 * 1024
# nginx proxy_cache_use_stale http_500 http_502 http_503 http_504; RFC 5861 stale-if-error.
SERVER_ERRORS = frozenset({500, 502, 503, 504})
# A background refresh that has not come back after this long may be started again.
REFRESH_TIMEOUT = 30.0
# What X-Cache says for each outcome (when cache_add_headers is on).
X_CACHE = {"HIT": "HIT", "STALE": "STALE", "REVALIDATED": "REVALIDATED"}
OPTION_NAMES = (
    "cache_enabled",
    "cache_heuristic_ttl",
    "cache_heuristic_lm_percent",
    "cache_add_headers",
    "cache_max_entries",
    "cache_max_bytes",
)


@dataclass
class CacheEntry:
    response: http.Response
    stored_at: float
    initial_age: float
    lifetime: float
    vary_fields: tuple[str, ...]
    vary_values: tuple[str | None, ...]
    never_stale: bool = False  # must-revalidate, proxy-revalidate, s-maxage
    revalidate_always: bool = False  # no-cache: not even a misbehaviour serves it stale
    stale_while_revalidate: float | None = None
    stale_if_error: float | None = None
    updating_since: float | None = None  # a background refresh is on its way

    @property
    def size(self) -> int:
        return len(self.response.raw_content or b"")

    def current_age(self, now: float) -> float:
        return self.initial_age + max(0.0, now - self.stored_at)

    def staleness(self, now: float) -> float:
        """Seconds past its freshness lifetime (negative while fresh)."""
        return self.current_age(now) - self.lifetime

    def is_fresh(self, now: float) -> bool:
        return self.staleness(now) < 0

    def matches(self, request: http.Request) -> bool:
        return cache_policy.vary_values(self.vary_fields, request.headers) == self.vary_values


@dataclass(frozen=True)
class Settings:
    """The addon's options, as of the last configure."""

    enabled: bool = True
    heuristic_ttl: int = 0
    lm_fraction: float = 0.1
    add_headers: bool = False
    max_entries: int = 1000
    max_bytes: int = 64 * MiB

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Settings:
        """From the addon's option values (mitmproxy's, or a profile's [options]); options
        not given keep their defaults. OptionsError names the first bad one."""
        get = options.get
        heuristic_ttl = get("cache_heuristic_ttl", cls.heuristic_ttl)
        lm_percent = get("cache_heuristic_lm_percent", round(cls.lm_fraction * 100))
        max_entries = get("cache_max_entries", cls.max_entries)
        max_bytes = get("cache_max_bytes", cls.max_bytes)
        if heuristic_ttl < 0:
            raise exceptions.OptionsError("cache_heuristic_ttl must be >= 0")
        if not 0 <= lm_percent <= 100:
            raise exceptions.OptionsError("cache_heuristic_lm_percent must be within [0, 100]")
        if max_entries < 1:
            raise exceptions.OptionsError("cache_max_entries must be >= 1")
        if max_bytes < 1:
            raise exceptions.OptionsError("cache_max_bytes must be >= 1")
        return cls(
            enabled=get("cache_enabled", cls.enabled),
            heuristic_ttl=heuristic_ttl,
            lm_fraction=lm_percent / 100,
            add_headers=get("cache_add_headers", cls.add_headers),
            max_entries=max_entries,
            max_bytes=max_bytes,
        )


@dataclass
class Admission:
    """What the cache decided about a response it may store."""

    lifetime: float
    vary_fields: tuple[str, ...]
    never_stale: bool
    revalidate_always: bool
    stale_while_revalidate: float | None
    stale_if_error: float | None


class SharedCache:
    """Imitates a shared cache (corporate forward proxy, ISP cache, CDN edge).

    By default it follows RFC 9111 for shared caches, so it only keeps what the origin
    allows. ``cache_heuristic_ttl`` turns it into the aggressive kind of proxy that caches
    anything without explicit freshness - e.g. a polled task-status endpoint that forgot its
    Cache-Control header. The profile's cache misbehaviours (proxies/misbehaviours/) bend each
    decision: every decision is the RFC one, then passed through each misbehaviour's hook.

    It revalidates (4.3): a stale entry, or a ``no-cache`` one, that has an ETag or a
    Last-Modified is revalidated with If-None-Match / If-Modified-Since; a 304 refreshes the
    stored headers and the stored body is served. A client's own conditional request is
    forwarded as it is and its 304 passed back. Stale entries are served only when
    stale-while-revalidate / stale-if-error (RFC 5861) or a misbehaviour allow it, never when
    must-revalidate / proxy-revalidate / s-maxage forbid it (unless a misbehaviour says so).

    The outcome of each flow is put in ``flow.metadata["cache"]``: HIT (a stored answer, fresh
    or allowed stale, or a 304 for the client's copy), REVALIDATED (the stored answer after a
    304 from the origin), STORE (forwarded and stored), MISS (forwarded, not stored) or BYPASS
    (not the cache's business: method, request no-store, disabled). Answers from the cache get
    an ``Age`` field and ``flow.metadata["cache_age"]``.
    """

    def __init__(self, misbehaviours: Callable[[], Sequence[Misbehaviour]] = lambda: ()) -> None:
        # The profile's cache misbehaviours, consulted at every decision (see misbehaviours/).
        self.misbehaviours = misbehaviours
        # Injectable so tests can move time without sleeping.
        self.clock: Callable[[], float] = time.time
        # Starts a background request for a flow (stale-while-revalidate); injectable for tests.
        self.refresh_in_background: Callable[[http.HTTPFlow], None] = _replay
        self.entries: OrderedDict[CacheKey, CacheEntry] = OrderedDict()
        self.stored_bytes = 0
        self.settings = Settings()

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
            "Add 'Via' and 'X-Cache: HIT|STALE|REVALIDATED|MISS' to responses; off keeps the "
            "cache invisible (Age is always added to answers from the cache).",
        )
        loader.add_option(
            "cache_max_entries",
            int,
            1000,
            "Maximum number of stored responses; the least recently used is evicted.",
        )
        loader.add_option(
            "cache_max_bytes",
            int,
            64 * MiB,
            "Maximum sum of the stored bodies' sizes, in bytes; the least recently used "
            "responses are evicted, and a larger body is not stored at all.",
        )

    def configure(self, updated: set[str]) -> None:
        # Read once here, not per flow: mitmproxy type-checks every option access.
        self.apply(
            Settings.from_options({name: getattr(ctx.options, name) for name in OPTION_NAMES})
        )

    def apply(self, settings: Settings) -> None:
        """Take new settings (configure does, from mitmproxy's options; a ProfileListeners
        chain does, from its profile)."""
        if self.settings.enabled and not settings.enabled:
            # Re-enabling later must not resurrect responses from before.
            self.entries.clear()
            self.stored_bytes = 0
        self.settings = settings
        self._evict()

    # -- mitmproxy hooks -------------------------------------------------------------------
    def request(self, flow: http.HTTPFlow) -> None:
        request = flow.request
        if (
            flow.response is not None  # another addon already answered
            or not self.settings.enabled
            or not self._cacheable_method(request)
            or cache_policy.request_no_store(request.headers)
        ):
            flow.metadata["cache"] = "BYPASS"
            return
        key = self.key(request)
        flow.metadata["cache_key"] = key
        flow.metadata["cache"] = "MISS"
        entry = self.entries.get(key)
        if entry is None or not entry.matches(request):
            return
        self.entries.move_to_end(key)
        now = self.clock()
        if not flow.metadata.get("cache_refresh") and self._accepts_stored(request):
            if entry.is_fresh(now):
                self._serve(flow, entry, now)
                return
            if self._serve_stale(request, entry, now, upstream_failed=False):
                self._serve(flow, entry, now, stale=True)
                self._refresh(flow, entry, now)
                return
        # To the origin. The entry stays: a 304 revalidates it, a 5xx may let us serve it stale.
        flow.metadata["cache_entry"] = entry
        if not cache_policy.is_conditional(request.headers):
            validators = cache_policy.conditional_headers(entry.response.headers)
            if validators:
                request.headers.update(validators)
                flow.metadata["cache_validating"] = True

    def response(self, flow: http.HTTPFlow) -> None:
        outcome = flow.metadata.setdefault("cache", "BYPASS")
        response = flow.response
        if outcome == "HIT" or response is None:
            return  # answered by us in `request`, already decorated
        if outcome == "BYPASS":
            self._invalidate(flow)
            self._decorate(response, outcome)
            return
        key: CacheKey = flow.metadata["cache_key"]
        entry: CacheEntry | None = flow.metadata.get("cache_entry")
        now = self.clock()
        if (
            entry is not None
            and response.status_code in SERVER_ERRORS
            and self._serve_stale(flow.request, entry, now, upstream_failed=True)
        ):
            self._serve(flow, entry, now, stale=True)
            return
        if entry is not None and response.status_code == 304:
            self._not_modified(flow, key, entry, now)
            return
        if self._store(flow, key, now):
            flow.metadata["cache"] = "STORE"
        elif entry is not None and response.status_code < 500:
            self._drop(key, entry)  # superseded by a newer answer we may not keep
        self._decorate(response, flow.metadata["cache"])

    def error(self, flow: http.HTTPFlow) -> None:
        entry: CacheEntry | None = flow.metadata.get("cache_entry")
        if entry is not None and flow.metadata.get("cache_refresh"):
            entry.updating_since = None  # the background refresh failed: the next one may try

    # -- decisions, each the RFC one passed through the misbehaviours ----------------------
    def _cacheable_method(self, request: http.Request) -> bool:
        decision = request.method.upper() in cache_policy.CACHEABLE_METHODS
        for m in self.misbehaviours():
            decision = m.cacheable_method(request, decision)
        return decision

    def key(self, request: http.Request) -> CacheKey:
        key: CacheKey = (request.method.upper(), request.url)
        for m in self.misbehaviours():
            key = m.cache_key(request, key)
        return key

    def _accepts_stored(self, request: http.Request) -> bool:
        decision = cache_policy.request_accepts_stored(request.headers)
        for m in self.misbehaviours():
            decision = m.accepts_stored(request, decision)
        return decision

    def _serve_stale(
        self, request: http.Request, entry: CacheEntry, now: float, *, upstream_failed: bool
    ) -> bool:
        if entry.revalidate_always:
            # RFC 9111 4.2.4. No cache imitated here serves one stale either: nginx and Varnish
            # do not store no-cache answers, Squid fails when their revalidation fails.
            return False
        stale_for = entry.staleness(now)
        limit = entry.stale_if_error if upstream_failed else entry.stale_while_revalidate
        decision = not entry.never_stale and limit is not None and stale_for <= limit
        for m in self.misbehaviours():
            decision = m.serve_stale(request, stale_for, upstream_failed, decision)
        return decision

    def _admit(
        self, request: http.Request, response: http.Response, now: float
    ) -> Admission | None:
        """Should this response be stored, and with which freshness? None: not stored."""
        chain = self.misbehaviours()
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
            heuristic_ttl=self.settings.heuristic_ttl,
            lm_fraction=self.settings.lm_fraction,
        )
        for m in chain:
            lifetime = m.freshness_lifetime(request, response, lifetime, now)
        if lifetime <= 0 and not cache_policy.has_validator(response.headers):
            return None  # stale on arrival and impossible to revalidate: useless
        fields = cache_policy.vary_fields(seen) or ()
        for m in chain:
            fields = m.vary_fields(response, fields)
        return Admission(
            lifetime=lifetime,
            vary_fields=fields,
            never_stale=cache_policy.never_serve_stale(seen),
            revalidate_always=cache_policy.requires_validation(seen),
            stale_while_revalidate=cache_policy.stale_while_revalidate(seen),
            stale_if_error=cache_policy.stale_if_error(seen),
        )

    # -- actions ---------------------------------------------------------------------------
    def _serve(
        self, flow: http.HTTPFlow, entry: CacheEntry, now: float, *, stale: bool = False
    ) -> None:
        age = int(entry.current_age(now))
        response = _snapshot(entry.response)
        if self._client_copy_is_current(flow.request, entry):
            response.status_code, response.reason = 304, "Not Modified"
            response.raw_content = b""
        response.timestamp_start = response.timestamp_end = now
        response.headers["Age"] = str(age)
        self._decorate(response, "STALE" if stale else "HIT")
        flow.response = response
        flow.metadata["cache"] = "HIT"
        flow.metadata["cache_age"] = age
        if stale:
            flow.metadata["cache_stale"] = True

    @staticmethod
    def _client_copy_is_current(request: http.Request, entry: CacheEntry) -> bool:
        """The client validates a copy of its own that matches ours (RFC 9111 4.3.2)."""
        if request.method.upper() not in cache_policy.CACHEABLE_METHODS:
            return False
        if "If-None-Match" in request.headers:
            etag = entry.response.headers.get("ETag")
            return cache_policy.weak_match(etag, request.headers["If-None-Match"])
        return cache_policy.not_modified_since(
            entry.response.headers, request.headers.get("If-Modified-Since")
        )

    def _not_modified(
        self, flow: http.HTTPFlow, key: CacheKey, entry: CacheEntry, now: float
    ) -> None:
        """The origin answered 304 to our validators or to the client's own.

        A 304 naming another ETag than ours cannot refresh our copy: the entry is dropped and
        the 304 passed on (to a client that did not ask conditionally, if the validators were
        ours: a broken origin, shown as it is rather than papered over)."""
        not_modified = flow.response
        assert not_modified is not None
        ours = bool(flow.metadata.get("cache_validating"))
        if not cache_policy.validates_stored(entry.response.headers, not_modified.headers):
            if ours:
                self._drop(key, entry)  # a 304 for another copy: ours cannot be trusted
            self._decorate(not_modified, "MISS")
            return
        refreshed, age = self._freshen(flow.request, key, entry, not_modified, now)
        if not ours:
            # The client validated its own copy: the 304 is its answer (ours was refreshed).
            self._decorate(not_modified, "MISS")
            return
        response = _snapshot(refreshed)
        response.timestamp_start, response.timestamp_end = (
            not_modified.timestamp_start,
            not_modified.timestamp_end,
        )
        response.headers["Age"] = str(age)
        self._decorate(response, "REVALIDATED")
        flow.response = response
        flow.metadata["cache"] = "REVALIDATED"
        flow.metadata["cache_age"] = age

    def _freshen(
        self,
        request: http.Request,
        key: CacheKey,
        entry: CacheEntry,
        not_modified: http.Response,
        now: float,
    ) -> tuple[http.Response, int]:
        """RFC 9111 4.3.4: the stored response with the 304's fields, and its age, reset to the
        304's own. The entry is replaced by the refreshed one, or dropped if the new fields
        forbid keeping it (this answer may still use it)."""
        response = _snapshot(entry.response)
        for name in {name.lower() for name in not_modified.headers}:
            if name not in cache_policy.NOT_UPDATED_BY_304:
                response.headers.set_all(name, not_modified.headers.get_all(name))
        refreshed = self._entry(request, response, now, initial_headers=not_modified.headers)
        if refreshed is None:
            self._drop(key, entry)
            return response, int(cache_policy.initial_age(not_modified.headers, now))
        if self.entries.get(key) is entry:
            self._put(key, refreshed)
        return response, int(refreshed.current_age(now))

    def _store(self, flow: http.HTTPFlow, key: CacheKey, now: float) -> bool:
        request, response = flow.request, flow.response
        if response is None or response.raw_content is None:  # streamed bodies aren't kept
            return False
        entry = self._entry(request, _snapshot(response), now, initial_headers=response.headers)
        if entry is None or entry.size > self.settings.max_bytes:
            return False
        self._put(key, entry)
        return True

    def _entry(
        self,
        request: http.Request,
        response: http.Response,
        now: float,
        *,
        initial_headers: http.Headers,
    ) -> CacheEntry | None:
        admission = self._admit(request, response, now)
        if admission is None:
            return None
        return CacheEntry(
            response=response,
            stored_at=now,
            initial_age=cache_policy.initial_age(initial_headers, now),
            lifetime=admission.lifetime,
            vary_fields=admission.vary_fields,
            vary_values=cache_policy.vary_values(admission.vary_fields, request.headers),
            never_stale=admission.never_stale,
            revalidate_always=admission.revalidate_always,
            stale_while_revalidate=admission.stale_while_revalidate,
            stale_if_error=admission.stale_if_error,
        )

    def _refresh(self, flow: http.HTTPFlow, entry: CacheEntry, now: float) -> None:
        """Revalidate a stale entry behind the client's back (stale-while-revalidate)."""
        if entry.updating_since is not None and now - entry.updating_since < REFRESH_TIMEOUT:
            return  # one refresh at a time (nginx: "updating")
        entry.updating_since = now
        refresh = flow.copy()
        refresh.response = None
        for name in ("If-None-Match", "If-Modified-Since"):
            refresh.request.headers.pop(name, None)
        refresh.metadata = {"cache_refresh": True}
        self.refresh_in_background(refresh)

    def _invalidate(self, flow: http.HTTPFlow) -> None:
        """RFC 9111 4.4: a non-error answer to an unsafe method invalidates the stored
        GET/HEAD answers for the same URL."""
        request, response = flow.request, flow.response
        if request.method.upper() in cache_policy.SAFE_METHODS or response is None:
            return
        if not 200 <= response.status_code < 400:
            return
        for method in cache_policy.CACHEABLE_METHODS:
            key: CacheKey = (method, request.url)
            for m in self.misbehaviours():
                key = m.cache_key(request, key)
            entry = self.entries.get(key)
            if entry is not None:
                self._drop(key, entry)

    def _put(self, key: CacheKey, entry: CacheEntry) -> None:
        old = self.entries.pop(key, None)
        if old is not None:
            self.stored_bytes -= old.size
        self.entries[key] = entry
        self.stored_bytes += entry.size
        self._evict()

    def _drop(self, key: CacheKey, entry: CacheEntry) -> None:
        if self.entries.get(key) is entry:
            del self.entries[key]
            self.stored_bytes -= entry.size

    def _evict(self) -> None:
        while self.entries and (
            len(self.entries) > self.settings.max_entries
            or self.stored_bytes > self.settings.max_bytes
        ):
            _, evicted = self.entries.popitem(last=False)
            self.stored_bytes -= evicted.size

    def _decorate(self, response: http.Response | None, outcome: str) -> None:
        if response is None or not self.settings.add_headers:
            return
        via = response.headers.get("Via")
        response.headers["Via"] = f"{via}, {VIA}" if via else VIA
        response.headers["X-Cache"] = X_CACHE.get(outcome, "MISS")


def _snapshot(response: http.Response) -> http.Response:
    """An independent copy (own headers; the body bytes are immutable anyway). Like
    Response.copy(), without its per-field type checks, which dominate a busy cache."""
    clone = copy.copy(response)
    data = copy.copy(response.data)
    data.headers = response.data.headers.copy()
    if data.trailers is not None:
        data.trailers = data.trailers.copy()
    clone.data = data
    return clone


def _replay(flow: http.HTTPFlow) -> None:
    """Send a copy of the request through the proxy again, with nobody waiting for it, using
    mitmproxy's client replay (the replayed flow passes through every addon, this one too)."""
    try:
        ctx.master.commands.call("replay.client", [flow])
    except Exception as exc:  # noqa: BLE001 - a refresh that cannot start only costs freshness
        logging.warning("shared cache: no background refresh (%s)", exc)
