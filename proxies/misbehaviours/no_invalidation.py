"""Keep the stored answers for a URL after a POST, PUT or DELETE to it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxies.misbehaviours.base import Misbehaviour

if TYPE_CHECKING:
    from mitmproxy import http


class NoInvalidation(Misbehaviour):
    """RFC 9111 4.4: a cache MUST invalidate its stored GET/HEAD answers for a URL when an
    unsafe method (POST, PUT, DELETE, an unknown one) to it gets a non-error answer, and may
    invalidate the URLs its Location and Content-Location name. This cache does neither: after
    a successful `DELETE /tasks/42` it keeps serving the stored `GET /tasks/42` until it expires.
    """

    name = "no-invalidation"
    summary = "Keeps serving a stored GET answer after a POST/PUT/DELETE to the same URL."
    imitates = (
        "nginx proxy_cache (1.22): the upstream module looks entries up and stores them by key "
        "for the proxy_cache_methods only (GET, HEAD); nothing removes an entry when another "
        "method passes (only proxy_cache_purge, part of the commercial subscription, does, on "
        "request). The HTTP caching test suite's published nginx results (http-cache-tests "
        "0.4.5, results/nginx.json) fail every invalidate-* test, and so does nginx 1.22.1 "
        "here (bench/cache_tests.py --product nginx). Varnish 7.1's built-in VCL: vcl_recv "
        "passes every method but GET and HEAD (vcl_req_method) and a pass never touches the "
        "objects in cache; only a VCL's own `return (purge)` or ban removes them (Varnish's "
        "users-guide, purging.rst); Varnish 7.1.1 fails every invalidate-* test here "
        "(`lab verify varnish-builtin --suite`)."
    )

    def invalidates(self, request: http.Request, response: http.Response, decision: bool) -> bool:
        return False
