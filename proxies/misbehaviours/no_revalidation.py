"""Fetch an expired entry again in full instead of revalidating it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxies.misbehaviours.base import Misbehaviour

if TYPE_CHECKING:
    from mitmproxy import http


class NoRevalidation(Misbehaviour):
    """RFC 9111 4.3.1: a cache revalidates a stale stored answer that has an ETag or a
    Last-Modified with a conditional request (If-None-Match / If-Modified-Since), and a 304
    refreshes it. This cache sends the client's request as it is: the origin answers in full
    and the new answer replaces the stored one. Nothing is served wrongly; only the bytes a
    304 would have saved are spent, and a 304's updated fields are never seen.
    """

    name = "no-revalidation"
    summary = "Fetches stale entries again in full, never with If-None-Match/If-Modified-Since."
    imitates = (
        "nginx proxy_cache with proxy_cache_revalidate off, its default (nginx docs, "
        "ngx_http_proxy_module: 'Enables revalidation of expired cache items using conditional "
        "requests with the If-Modified-Since and If-None-Match header fields', default off)."
    )

    def revalidates(self, request: http.Request, decision: bool) -> bool:
        return False
