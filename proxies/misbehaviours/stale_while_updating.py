"""Serve a stale copy at once and refresh it in the background."""

from __future__ import annotations

from proxies.misbehaviours._cache_rules import ServesStale


class StaleWhileUpdating(ServesStale):
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
    when_upstream_failed = False
