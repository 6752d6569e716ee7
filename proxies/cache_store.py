"""What the shared cache keeps: its entries, least recently used first, within its limits."""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

from mitmproxy import http

from proxies import cache_policy, cache_rule
from proxies.cache_rule import StoreRule
from proxies.cache_settings import Settings
from proxies.misbehaviours.base import CacheKey


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
    # Why it is kept as long as it is (proxies/cache_rule.py); logged with every answer from it.
    rule: StoreRule | None = None
    hits: int = 0  # answers served from it so far

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

    def is_current_for(self, request: http.Request) -> bool:
        """The client validates a copy of its own that matches ours (RFC 9111 4.3.2)."""
        if request.method.upper() not in cache_policy.CACHEABLE_METHODS:
            return False
        if "If-None-Match" in request.headers:
            etag = self.response.headers.get("ETag")
            return cache_policy.weak_match(etag, request.headers["If-None-Match"])
        return cache_policy.not_modified_since(
            self.response.headers, request.headers.get("If-Modified-Since")
        )

    def record(self, metadata: MutableMapping[str, Any], notes: Iterable[str | None] = ()) -> None:
        """Put why it is stored, its lifetime and when it was stored in the metadata of a flow
        it stored or answered (plain values: mitmproxy copies metadata with the flow); `notes`
        say what let it be used for this one (proxies/cache_rule.py)."""
        if self.rule is not None:
            metadata[cache_rule.RULE] = self.rule.sentence
            metadata[cache_rule.RULE_KIND] = self.rule.kind
        metadata[cache_rule.LIFETIME] = round(self.lifetime, 3)
        metadata[cache_rule.STORED_AT] = self.stored_at
        if self.hits:
            metadata[cache_rule.HITS] = self.hits
        said = "; ".join(note for note in notes if note)
        if said:
            metadata[cache_rule.SERVE_NOTE] = said

    def freshened_by(
        self, not_modified: http.Response, kept: frozenset[str] = cache_policy.NOT_UPDATED_BY_304
    ) -> http.Response:
        """A copy of the stored response with the 304's fields but the `kept` ones (RFC 9111
        4.3.4)."""
        response = snapshot(self.response)
        kept |= cache_policy.not_stored_fields(not_modified.headers)
        for name in {name.lower() for name in not_modified.headers}:
            if name not in kept:
                response.headers.set_all(name, not_modified.headers.get_all(name))
        return response


class EntryStore:
    """The stored answers by cache key, least recently used first, and their bodies' size."""

    def __init__(self) -> None:
        self.entries: OrderedDict[CacheKey, CacheEntry] = OrderedDict()
        self.stored_bytes = 0
        self.max_entries = Settings.max_entries
        self.max_bytes = Settings.max_bytes

    def limit(self, max_entries: int, max_bytes: int) -> None:
        """New limits, applied at once: the least recently used entries go first."""
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self.evict()

    def get(self, key: CacheKey) -> CacheEntry | None:
        return self.entries.get(key)

    def touch(self, key: CacheKey) -> None:
        self.entries.move_to_end(key)

    def put(self, key: CacheKey, entry: CacheEntry) -> None:
        old = self.entries.pop(key, None)
        if old is not None:
            self.stored_bytes -= old.size
        self.entries[key] = entry
        self.stored_bytes += entry.size
        self.evict()

    def drop(self, key: CacheKey, entry: CacheEntry) -> None:
        """Forget `entry`, unless another answer has replaced it under `key` since."""
        if self.entries.get(key) is entry:
            del self.entries[key]
            self.stored_bytes -= entry.size

    def clear(self) -> None:
        self.entries.clear()
        self.stored_bytes = 0

    def evict(self) -> None:
        while self.entries and (
            len(self.entries) > self.max_entries or self.stored_bytes > self.max_bytes
        ):
            _, evicted = self.entries.popitem(last=False)
            self.stored_bytes -= evicted.size


def snapshot(response: http.Response) -> http.Response:
    """An independent copy (own headers; the body bytes are immutable anyway). Like
    Response.copy(), without its per-field type checks, which dominate a busy cache."""
    clone = copy.copy(response)
    data = copy.copy(response.data)
    data.headers = response.data.headers.copy()
    if data.trailers is not None:
        data.trailers = data.trailers.copy()
    clone.data = data
    return clone
