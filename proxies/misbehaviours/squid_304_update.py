"""Refresh a stored answer with every field of a 304, its validators and content fields too."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxies import cache_policy
from proxies.misbehaviours.base import Misbehaviour

if TYPE_CHECKING:
    from mitmproxy import http

# The fields a 304 leaves in place: hop-by-hop ones (never forwarded, so never stored), Vary
# and Warning (Squid's HttpHeader::skipUpdateHeader).
KEPT = cache_policy.HOP_BY_HOP | {"vary", "warning"}


class Squid304Update(Misbehaviour):
    """RFC 9111 4.3.4: a 304 refreshes the stored answer it selects (by its ETag, else its
    Last-Modified), and 3.2: its Content-Length, Content-Encoding, Content-Range and
    Content-MD5 must not replace the stored ones (they describe a body the 304 does not
    carry), nor may a 304 naming another ETag refresh the stored answer at all. This cache
    takes every field of the origin's 304 into the stored answer and serves it: a 304 with
    `Content-Length: 10` makes a stored 5-byte answer claim 10 bytes, and a 304 with another
    ETag re-labels the stored body with it.
    """

    name = "squid-304-update"
    summary = "Takes every field of a 304 into the stored answer, ETag and Content-* included."
    imitates = (
        "Squid 5.7 (src/HttpHeader.cc HttpHeader::update, called from "
        "HttpReply::recreateOnNotModified): each field of the 304 replaces the stored one but "
        "for those HttpHeader::skipUpdateHeader names (Vary, Warning), and the 304's ETag is "
        "not compared with the stored one. Squid 5.7 here fails the HTTP caching test suite's "
        "304-etag-update-response-{Content-Encoding,Content-Length,Content-MD5,Content-Range,"
        "ETag} (bench/cache_tests.py --real)."
    )

    def accepts_304(self, request: http.Request, decision: bool) -> bool:
        return True

    def kept_on_304(self, request: http.Request, names: frozenset[str]) -> frozenset[str]:
        return KEPT
