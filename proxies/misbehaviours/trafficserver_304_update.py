"""Traffic Server's stored headers: no Set-Cookie, and a 304 merged as its own rules say."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxies import cache_policy
from proxies.misbehaviours.base import Misbehaviour

if TYPE_CHECKING:
    from mitmproxy import http

# merge_response_header_with_cached_header skips these fields of a 304; every other field
# replaces the stored one, the Content-Encoding, Content-Range and Content-MD5 too.
KEPT_ON_304 = cache_policy.HOP_BY_HOP | {
    "content-length",
    "transfer-encoding",
    "set-cookie",
    "content-type",
    "warning",
}


class Trafficserver304Update(Misbehaviour):
    """RFC 9111 3.1 and 4.3.4 ask a cache to store an answer's end-to-end fields (Set-Cookie
    included: 7.3 only warns about it), to drop those its Connection field names, and to let a
    304 that selects the stored answer update its fields but Content-Length, Content-Encoding,
    Content-Range and Content-MD5. Traffic Server 9.2 instead:
    - deletes Set-Cookie from every answer it writes to the cache ("Set-Cookie should not be
      put in the cache to prevent sending person A's cookie to person B"), so a hit has none;
    - keeps the fields a Connection header names (only the hop-by-hop ones are not stored);
    - merges a 304 into the stored header field by field, skipping hop-by-hop fields,
      Content-Length, Transfer-Encoding, Set-Cookie, Content-Type and Warning: a 304's
      Content-Encoding replaces the stored one, and its Content-Type does not;
    - takes a 304 as a refresh of the stored answer even when its ETag names another one,
      and that ETag replaces the stored one.
    """

    name = "trafficserver-304-update"
    summary = "Stores no Set-Cookie; a 304 updates every field but Content-Type and Set-Cookie."
    imitates = (
        "Apache Traffic Server 9.2 (proxy/http/HttpTransact.cc set_headers_for_cache_write: "
        "field_delete(MIME_FIELD_SET_COOKIE); merge_response_header_with_cached_header: the "
        "fields a 304 does not update), checked with Traffic Server 9.2.9 through the HTTP "
        "caching test suite (lab verify trafficserver-default --suite)."
    )

    def not_stored_fields(self, request: http.Request, names: frozenset[str]) -> frozenset[str]:
        return (names & cache_policy.HOP_BY_HOP) | {"set-cookie"}

    def accepts_304(self, request: http.Request, decision: bool) -> bool:
        return True

    def kept_on_304(self, request: http.Request, names: frozenset[str]) -> frozenset[str]:
        return KEPT_ON_304
