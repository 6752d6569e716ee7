"""Drop the query string from the cache key."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxies.misbehaviours.base import CacheKey, Misbehaviour

if TYPE_CHECKING:
    from mitmproxy import http


class IgnoreQueryInKey(Misbehaviour):
    """Keys stored answers by the URL without its query string, so a nonce in the query (or a
    task id there) no longer makes a poll a new URL to the cache. Breaks RFC 9111 section 2
    (the primary cache key is the target URI, query included); keeps every freshness rule."""

    name = "ignore-query-in-key"
    summary = "The cache key is the URL without its query string: /status?id=1 and ?id=2 collide."
    imitates = (
        "CDN 'ignore query string' caching levels (Cloudflare Caching Level: Ignore Query String, "
        "Fastly/Akamai cache-key rules that strip the query); nginx with "
        "`proxy_cache_key $scheme$proxy_host$uri;` instead of the default "
        "`$scheme$proxy_host$request_uri`."
    )

    def cache_key(self, request: http.Request, key: CacheKey) -> CacheKey:
        url_without_query = request.url.split("?", 1)[0]
        return (*key[:-1], url_without_query) if key else key
