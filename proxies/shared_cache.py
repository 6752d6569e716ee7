"""mitmproxy addon: a shared HTTP cache living inside the proxy.

    mitmdump -s proxies/shared_cache.py --set cache_heuristic_ttl=300

Alone it is a plain cache; lab_addons.py puts the profile's misbehaviours in front of it.

The outcome of each flow is put in ``flow.metadata["cache"]``: HIT (a stored answer, fresh or
allowed stale, or a 304 for the client's copy), REVALIDATED (the stored answer after a 304 from
the origin), STORE (forwarded and stored), MISS (forwarded, not stored) or BYPASS (not the
cache's business: method, request no-store, disabled). Answers from the cache get an ``Age``
field (unless a misbehaviour removes it) and ``flow.metadata["cache_age"]``, always. Why an
answer was kept, and what the misbehaviours did to the key or the lookup, go in more metadata
(proxies/cache_rule.py).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from urllib.parse import urljoin, urlsplit

from mitmproxy import ctx, http
from mitmproxy.addonmanager import Loader

from proxies import cache_policy, cache_rule, targeted_fields
from proxies.cache_decisions import CacheRules
from proxies.cache_settings import OPTION_NAMES, Settings, add_options
from proxies.cache_store import CacheEntry, EntryStore, snapshot
from proxies.misbehaviours._cache_rules import REFRESH_FLOW
from proxies.misbehaviours.base import CacheKey, Misbehaviour

VIA = "1.1 proxy-cache-lab"
# nginx proxy_cache_use_stale http_500 http_502 http_503 http_504; RFC 5861 stale-if-error.
SERVER_ERRORS = frozenset({500, 502, 503, 504})
# A background refresh that has not come back after this long may be started again.
REFRESH_TIMEOUT = 30.0
# What X-Cache says for each outcome (when cache_add_headers is on).
X_CACHE = {"HIT": "HIT", "STALE": "STALE", "REVALIDATED": "REVALIDATED"}
__all__ = ["OPTION_NAMES", "SharedCache", "Settings"]


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

    Its outcomes and metadata: see the module's docstring.
    """

    def __init__(self, misbehaviours: Callable[[], Sequence[Misbehaviour]] = lambda: ()) -> None:
        # The profile's cache misbehaviours bend every decision (see cache_decisions.py).
        self.rules = CacheRules(misbehaviours)
        # Injectable so tests can move time without sleeping.
        self.clock: Callable[[], float] = time.time
        # Starts a background request for a flow (stale-while-revalidate); injectable for tests.
        self.refresh_in_background: Callable[[http.HTTPFlow], None] = _replay
        self.store = EntryStore()
        self.settings = Settings()

    @property
    def misbehaviours(self) -> Callable[[], Sequence[Misbehaviour]]:
        return self.rules.misbehaviours

    @misbehaviours.setter
    def misbehaviours(self, misbehaviours: Callable[[], Sequence[Misbehaviour]]) -> None:
        self.rules.misbehaviours = misbehaviours

    @property
    def entries(self) -> OrderedDict[CacheKey, CacheEntry]:
        return self.store.entries

    def load(self, loader: Loader) -> None:
        add_options(loader)

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
            self.store.clear()
        self.settings = settings
        self.store.limit(settings.max_entries, settings.max_bytes)

    def key(self, request: http.Request) -> CacheKey:
        return self.rules.key(request)

    # -- mitmproxy hooks -------------------------------------------------------------------
    def request(self, flow: http.HTTPFlow) -> None:
        request = flow.request
        if (
            flow.response is not None  # another addon already answered
            or not self.settings.enabled
            or not self.rules.cacheable_method(request)
            or cache_policy.request_no_store(request.headers)
        ):
            flow.metadata["cache"] = "BYPASS"
            return
        key, key_note = self.rules.key_and_note(request)
        flow.metadata["cache_key"] = key
        flow.metadata["cache"] = "MISS"
        if key_note:
            flow.metadata[cache_rule.KEY_NOTE] = key_note
        entry = self.store.get(key)
        if entry is None or not entry.matches(request):
            return
        self.store.touch(key)
        now = self.clock()
        accepts, note = False, None
        if not flow.metadata.get("cache_refresh"):
            accepts, note = self.rules.accepts_stored(request)
        if accepts:
            if entry.is_fresh(now):
                self._serve(flow, entry, now, note)
                return
            stale_note = self.rules.stale_allowed(request, entry, now, upstream_failed=False)
            if stale_note:
                self._serve(flow, entry, now, note, stale_note)
                self._refresh(flow, entry, now)
                return
        # To the origin. The entry stays: a 304 revalidates it, a 5xx may let us serve it stale.
        flow.metadata["cache_entry"] = entry
        if not cache_policy.is_conditional(request.headers) and self.rules.revalidates(request):
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
            _invalidate(self.rules, self.store, flow)
            _decorate(response, outcome, self.settings)
            return
        key: CacheKey = flow.metadata["cache_key"]
        entry: CacheEntry | None = flow.metadata.get("cache_entry")
        now = self.clock()
        if entry is not None and response.status_code in SERVER_ERRORS:
            stale_note = self.rules.stale_allowed(flow.request, entry, now, upstream_failed=True)
            if stale_note:
                self._serve(flow, entry, now, None, stale_note)
                return
        if entry is not None and response.status_code == 304:
            self._not_modified(flow, key, entry, now)
            return
        stored = self._store(flow, key, now)
        if stored is not None:
            flow.metadata["cache"] = "STORE"
            stored.record(flow.metadata)
        elif entry is not None and response.status_code < 500:
            self.store.drop(key, entry)  # superseded by a newer answer we may not keep
        _decorate(response, flow.metadata["cache"], self.settings)

    def error(self, flow: http.HTTPFlow) -> None:
        entry: CacheEntry | None = flow.metadata.get("cache_entry")
        if entry is not None and flow.metadata.get("cache_refresh"):
            entry.updating_since = None  # the background refresh failed: the next one may try

    # -- actions ---------------------------------------------------------------------------
    def _serve(
        self,
        flow: http.HTTPFlow,
        entry: CacheEntry,
        now: float,
        note: str | None,
        stale_note: str | None = None,
    ) -> None:
        """Answer from `entry`: stale when `stale_note` says who allowed it; `note`: what let
        a stored answer be used at all (a misbehaviour ignoring the request's no-cache)."""
        stale = stale_note is not None
        age = int(entry.current_age(now))
        response = snapshot(entry.response)
        if entry.is_current_for(flow.request):
            response.status_code, response.reason = 304, "Not Modified"
            response.raw_content = b""
        response.timestamp_start = response.timestamp_end = now
        self._answer(flow, entry.response, response, age, "HIT", "STALE" if stale else "HIT")
        if stale:
            flow.metadata["cache_stale"] = True
        entry.hits += 1
        entry.record(flow.metadata, (note, stale_note))

    def _answer(
        self,
        flow: http.HTTPFlow,
        stored: http.Response,
        response: http.Response,
        age: int,
        outcome: str,
        shown: str,
    ) -> None:
        """Answer the flow with `response`, built from `stored`: `outcome` for the log,
        `shown` in X-Cache; the misbehaviours may edit it (nginx sends no Age of its own)."""
        response.headers["Age"] = str(age)
        self.rules.from_store(flow.request, stored, response)
        _decorate(response, shown, self.settings)
        flow.response = response
        flow.metadata["cache"] = outcome
        flow.metadata["cache_age"] = age

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
        if not self.rules.accepts_304(flow.request, entry.response.headers, not_modified.headers):
            if ours:
                self.store.drop(key, entry)  # a 304 for another copy: ours cannot be trusted
            _decorate(not_modified, "MISS", self.settings)
            return
        refreshed, age, kept = self._freshen(flow, key, entry, not_modified, now)
        if not ours:
            # The client validated its own copy: the 304 is its answer (ours was refreshed).
            _decorate(not_modified, "MISS", self.settings)
            return
        response = snapshot(refreshed)
        response.timestamp_start, response.timestamp_end = (
            not_modified.timestamp_start,
            not_modified.timestamp_end,
        )
        self._answer(flow, refreshed, response, age, "REVALIDATED", "REVALIDATED")
        if kept is not None:
            kept.record(flow.metadata)

    def _freshen(
        self,
        flow: http.HTTPFlow,
        key: CacheKey,
        entry: CacheEntry,
        not_modified: http.Response,
        now: float,
    ) -> tuple[http.Response, int, CacheEntry | None]:
        """RFC 9111 4.3.4: the stored response with the 304's fields, its age, reset to the
        304's own, and the refreshed entry. The entry is replaced by the refreshed one, or
        dropped if the new fields forbid keeping it (this answer may still use it: None)."""
        response = entry.freshened_by(not_modified, self.rules.kept_on_304(flow.request))
        refreshed = _entry(self, flow, response, now, not_modified.headers)
        if refreshed is None:
            self.store.drop(key, entry)
            age = self.rules.initial_age(flow.request, not_modified.headers, now)
            return response, int(age), None
        if self.store.get(key) is entry:
            self.store.put(key, refreshed)
        return response, int(refreshed.current_age(now)), refreshed

    def _store(self, flow: http.HTTPFlow, key: CacheKey, now: float) -> CacheEntry | None:
        """The entry stored for the flow's answer; None: not stored."""
        response = flow.response
        if response is None or response.raw_content is None:  # streamed bodies aren't kept
            return None
        stored = snapshot(response)
        for name in self.rules.not_stored_fields(flow.request, response):
            stored.headers.pop(name, None)  # removes every line of the field
        entry = _entry(self, flow, stored, now, response.headers)
        if entry is None or entry.size > self.settings.max_bytes:
            return None
        self.store.put(key, entry)
        return entry

    def _refresh(self, flow: http.HTTPFlow, entry: CacheEntry, now: float) -> None:
        """Revalidate a stale entry behind the client's back (stale-while-revalidate)."""
        if entry.updating_since is not None and now - entry.updating_since < REFRESH_TIMEOUT:
            return  # one refresh at a time (nginx: "updating")
        entry.updating_since = now
        self.refresh_in_background(_started_refresh(flow))


def _entry(
    cache: SharedCache,
    flow: http.HTTPFlow,
    response: http.Response,
    now: float,
    arrived: http.Headers,
) -> CacheEntry | None:
    """The rules' entry for `response`, with the listener's RFC 9213 target list; `arrived`:
    the headers that give its age on arrival."""
    settings = cache.settings
    targets = targeted_fields.targets_for(flow, settings.targeted_fields)
    return cache.rules.entry(
        flow.request, response, now, settings, initial_headers=arrived, targets=targets
    )


def _decorate(response: http.Response | None, outcome: str, settings: Settings) -> None:
    """Via and X-Cache, when the cache shows itself (cache_add_headers)."""
    if response is None or not settings.add_headers:
        return
    via = response.headers.get("Via")
    response.headers["Via"] = f"{via}, {VIA}" if via else VIA
    response.headers["X-Cache"] = X_CACHE.get(outcome, "MISS")


def _invalidate(rules: CacheRules, store: EntryStore, flow: http.HTTPFlow) -> None:
    """RFC 9111 4.4: a non-error answer to an unsafe method invalidates the stored GET/HEAD
    answers for the same URL."""
    request, response = flow.request, flow.response
    if request.method.upper() in cache_policy.SAFE_METHODS or response is None:
        return
    if not 200 <= response.status_code < 400 or not rules.invalidates(request, response):
        return
    targets = [request]
    if rules.invalidates_locations(request, response):
        targets += _same_origin_locations(request, response)
    for target in targets:
        for method in cache_policy.CACHEABLE_METHODS:
            key = rules.key(target, method)
            entry = store.get(key)
            if entry is not None:
                store.drop(key, entry)


def _same_origin_locations(request: http.Request, response: http.Response) -> list[http.Request]:
    """The request for each URI in Location and Content-Location that has the target URI's
    origin: RFC 9111 4.4 lets a cache invalidate them too, and forbids it for another origin
    (a denial of service). In reverse mode the client's origin is the Host it sent."""
    own = urlsplit(request.url)
    origins = {own.netloc.lower(), (request.host_header or "").lower()}
    found = []
    for name in ("Location", "Content-Location"):
        value = response.headers.get(name)
        if not value:
            continue
        target = urlsplit(urljoin(request.url, value.strip()))
        if target.scheme != own.scheme or target.netloc.lower() not in origins:
            continue
        other = request.copy()
        other.path = target.path + (f"?{target.query}" if target.query else "")
        found.append(other)
    return found


def _refresh_of(flow: http.HTTPFlow) -> http.HTTPFlow:
    """The cache's own request for what `flow` asked, without the client's validators."""
    refresh = flow.copy()
    refresh.response = None
    for name in ("If-None-Match", "If-Modified-Since"):
        refresh.request.headers.pop(name, None)
    refresh.metadata = {"cache_refresh": True}
    return refresh


def _started_refresh(flow: http.HTTPFlow) -> http.HTTPFlow:
    """`_refresh_of(flow)`, also named in the client flow's metadata (REFRESH_FLOW), so a
    misbehaviour can hold the stale answer until the refresh has reached the origin."""
    refresh = flow.metadata[REFRESH_FLOW] = _refresh_of(flow)
    return refresh


def _replay(flow: http.HTTPFlow) -> None:
    """Send a copy of the request through the proxy again, with nobody waiting for it, using
    mitmproxy's client replay (the replayed flow passes through every addon, this one too)."""
    try:
        ctx.master.commands.call("replay.client", [flow])
    except Exception as exc:  # noqa: BLE001 - a refresh that cannot start only costs freshness
        logging.warning("shared cache: no background refresh (%s)", exc)


addons = [SharedCache()]
