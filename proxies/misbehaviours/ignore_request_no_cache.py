"""Answer from the cache even when the client asks for an end-to-end reload."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxies.misbehaviours.base import Misbehaviour

if TYPE_CHECKING:
    from mitmproxy import http


class IgnoreRequestNoCache(Misbehaviour):
    """The client's `Cache-Control: no-cache` and `Pragma: no-cache` are ignored (RFC 9111
    5.2.1.4: a cache must not use a stored response for such a request without validating it
    first): a fresh stored answer is served as if the client had not asked. What a browser's
    Reload, `fetch(url, {cache: "no-store"})` and EventSource send therefore does not get
    past the cache. Request no-store is still honoured.
    """

    name = "ignore-request-no-cache"
    summary = "Serves stored answers even to requests with Cache-Control/Pragma: no-cache."
    imitates = (
        "nginx proxy_cache by default (request Cache-Control/Pragma are only honoured with "
        "`proxy_cache_bypass $http_pragma $http_cache_control`); Varnish (builtin.vcl never "
        "looks at req.http.Cache-Control); Squid `refresh_pattern ... ignore-reload`; "
        "Edgecast/Edgio 'Honor No-Cache Request' off (its default)."
    )

    def accepts_stored(self, request: http.Request, decision: bool) -> bool:
        return True
