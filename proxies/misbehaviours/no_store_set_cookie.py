"""Store no answer that carries Set-Cookie."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxies.misbehaviours.base import Misbehaviour

if TYPE_CHECKING:
    from mitmproxy import http


class NoStoreSetCookie(Misbehaviour):
    """RFC 9111 3: an answer with Set-Cookie may be stored like any other (a server that does
    not want a shared cache to keep it says `private` or `no-store`), and 3.1 lets a cache keep
    the field with it. This cache stores no answer that carries Set-Cookie, whatever its
    Cache-Control says: stricter than the RFC, so nothing wrong is served; such an answer is
    fetched again every time.
    """

    name = "no-store-set-cookie"
    summary = "Stores no answer that carries Set-Cookie, whatever its Cache-Control says."
    imitates = (
        "nginx proxy_cache (1.22): the Set-Cookie handler of src/http/ngx_http_upstream.c sets "
        "u->cacheable = 0 unless `proxy_ignore_headers Set-Cookie` (nginx docs, "
        'proxy_cache_valid: \'If the header includes the "Set-Cookie" field, such a response '
        "will not be cached'); nginx 1.22.1 here fails the HTTP caching test suite's "
        "headers-store-Set-Cookie setup (bench/cache_tests.py --real)."
    )

    def storable(self, request: http.Request, response: http.Response, decision: bool) -> bool:
        return decision and "Set-Cookie" not in response.headers
