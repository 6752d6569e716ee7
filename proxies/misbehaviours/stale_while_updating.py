"""Serve a stale copy at once and refresh it in the background."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, cast

from proxies.misbehaviours._cache_rules import REFRESH_FLOW, MaxStaleParams, ServesStale

if TYPE_CHECKING:
    from mitmproxy import http

# The longest a stale answer waits for its refresh (Varnish's connect_timeout, 3.5 s: a
# backend that takes longer to accept the connection fails the background fetch).
REFRESH_WAIT = 3.5
# How often the held answer looks at its refresh (the replayed flow has no event to await).
POLL_SECONDS = 0.005


class StaleWhileUpdatingParams(MaxStaleParams):
    # Hold the stale answer until its background refresh has reached the origin (Varnish
    # starts the background fetch before it delivers the stale object).
    wait_for_refresh: bool = False


class StaleWhileUpdating(ServesStale):
    """A stale entry (up to `max_stale` seconds past its lifetime) is served at once and
    refreshed behind the client's back, the first stale hit starting one background request
    (the cache's refresh goes through the proxy like any request); until it is back, every
    hit gets the stale copy. The origin did not say stale-while-revalidate, and
    must-revalidate is ignored. A poller sees at least one more old status after every
    expiry, however short the TTL.

    With `wait_for_refresh`, the stale answer that started the refresh leaves only once the
    refresh has reached the origin, as in Varnish: cache_req_fsm.c's cnt_lookup calls
    VBF_Fetch(..., VBF_BACKGROUND) before it delivers the stale object, and VBF_Fetch, for a
    background fetch, waits for `ObjWaitState(oc, BOS_REQ_DONE)` (cache_fetch.c), which the
    fetch thread sets once its conditional backend request is built (vbf_stp_mkbereq, for a
    request without a body) and then sends at once. So a client that asks the origin right
    after its stale answer (the HTTP caching test suite does: /state/) finds the conditional
    request there. mitmproxy shows no moment between "request sent" and "answer headers
    back", so the answer waits for the refresh's answer headers (or its error), at most
    REFRESH_WAIT seconds: about one origin turn longer than Varnish, which only orders the
    two rather than waiting.
    """

    name = "stale-while-updating"
    summary = "Serves stale copies (up to max_stale s) while refreshing them in the background."
    imitates = (
        "nginx `proxy_cache_use_stale updating;` with `proxy_cache_background_update on;`; "
        "Varnish grace (`default_grace` 10 s: a stale object is delivered while a background "
        "fetch refreshes it, started first: VBF_Fetch waits for BOS_REQ_DONE); CDNs that serve "
        "stale while revalidating by default."
    )
    Params = StaleWhileUpdatingParams
    when_upstream_failed = False

    def response(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        refresh = flow.metadata.get(REFRESH_FLOW)
        if refresh is None or not cast(StaleWhileUpdatingParams, self.params).wait_for_refresh:
            return None
        return _reached_origin(refresh)


async def _reached_origin(refresh: http.HTTPFlow) -> None:
    deadline = time.monotonic() + REFRESH_WAIT
    while refresh.response is None and refresh.error is None and time.monotonic() < deadline:
        await asyncio.sleep(POLL_SECONDS)
