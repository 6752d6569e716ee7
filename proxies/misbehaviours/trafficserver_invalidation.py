"""Traffic Server's invalidation: DELETE, PURGE, PUT and POST drop their own URL only."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxies.misbehaviours.base import Misbehaviour

if TYPE_CHECKING:
    from mitmproxy import http

# does_method_require_cache_copy_deletion with proxy.config.http.cache.post_method 0 (default).
DELETING_METHODS = frozenset({"DELETE", "PURGE", "PUT", "POST"})


class TrafficserverInvalidation(Misbehaviour):
    """RFC 9111 4.4: a non-error answer to any unsafe method invalidates the stored answers for
    its URL, and a cache may invalidate those its same-origin Location and Content-Location
    name. Traffic Server 9.2 deletes the cached copy only for the methods
    does_method_require_cache_copy_deletion names (DELETE, PURGE, PUT, and POST while
    proxy.config.http.cache.post_method is 0), and only for the request's own URL: an
    unknown method (M-SEARCH) leaves the stored GET answer in place, and a POST answered
    with `Location: /other` leaves /other's answer in place.
    """

    name = "trafficserver-invalidation"
    summary = "Invalidates only after DELETE/PURGE/PUT/POST, and only the request's own URL."
    imitates = (
        "Apache Traffic Server 9.2 (proxy/http/HttpTransact.cc "
        "does_method_require_cache_copy_deletion: the cache action becomes "
        "CACHE_PREPARE_TO_DELETE for the request's URL; nothing reads Location or "
        "Content-Location for the cache)."
    )

    def invalidates(self, request: http.Request, response: http.Response, decision: bool) -> bool:
        return decision and request.method.upper() in DELETING_METHODS

    def invalidates_locations(
        self, request: http.Request, response: http.Response, decision: bool
    ) -> bool:
        return False
