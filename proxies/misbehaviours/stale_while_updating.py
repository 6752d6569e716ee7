"""Serve a stale copy at once and refresh it in the background."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxies.misbehaviours._cache_rules import Seconds
from proxies.misbehaviours.base import Misbehaviour, Parameters

if TYPE_CHECKING:
    from mitmproxy import http


class StaleWhileUpdatingParams(Parameters):
    max_stale: Seconds  # how long past its lifetime a copy may be served while it is refreshed


class StaleWhileUpdating(Misbehaviour[StaleWhileUpdatingParams]):
    """A stale entry (up to `max_stale` seconds past its lifetime) is served at once and
    refreshed behind the client's back, the first stale hit starting one background request
    (the cache's refresh goes through the proxy like any request); until it is back, every
    hit gets the stale copy. The origin did not say stale-while-revalidate, and
    must-revalidate is ignored. A poller sees at least one more old status after every
    expiry, however short the TTL.
    """

    name = "stale-while-updating"
    summary = "Serves stale copies (up to max_stale s) while refreshing them in the background."
    imitates = (
        "nginx `proxy_cache_use_stale updating;` with `proxy_cache_background_update on;`; "
        "Varnish grace (`default_grace` 10 s: a stale object is delivered while a background "
        "fetch refreshes it); CDNs that serve stale while revalidating by default."
    )

    def serve_stale(
        self, request: http.Request, stale_for: float, upstream_failed: bool, decision: bool
    ) -> bool:
        if not upstream_failed and stale_for <= self.params.max_stale:
            return True
        return decision
