"""Cache POST answers under the URL alone, as nginx's default cache key does."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxies.misbehaviours.base import CacheKey, Misbehaviour

if TYPE_CHECKING:
    from mitmproxy import http


class CachePost(Misbehaviour):
    """POST answers are looked up and stored like GET answers, under a key without the method
    or the body. RFC 9111 allows caching a POST answer only with explicit freshness and a
    Content-Location, and never serving it to a later POST (a POST is not a lookup: RFC 9110
    9.3.3); here every POST to a URL gets the first stored answer, whatever its body, and so
    does a GET of the same URL (the key has no method). POST also no longer invalidates.
    """

    name = "cache-post"
    summary = "Caches POST answers keyed on the URL only (no method, no body in the key)."
    imitates = (
        "nginx `proxy_cache_methods GET HEAD POST;` with the default "
        "`proxy_cache_key $scheme$proxy_host$request_uri;` (no $request_method, no "
        "$request_body: GET, HEAD and POST to a URL share one entry)."
    )

    def cacheable_method(self, request: http.Request, decision: bool) -> bool:
        return decision or request.method.upper() == "POST"

    def cache_key(self, request: http.Request, key: CacheKey) -> CacheKey:
        if key and key[0] == "POST":
            return ("GET", *key[1:])
        return key
