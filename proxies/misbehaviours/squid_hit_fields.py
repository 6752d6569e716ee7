"""Answers from the store: no Set-Cookie, and a 304 with only four of the stored fields."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxies.misbehaviours.base import Misbehaviour

if TYPE_CHECKING:
    from mitmproxy import http

# HttpReply::make304's ImsEntries, plus the Age the cache adds to every hit.
FIELDS_OF_304 = ("Date", "Content-Type", "Expires", "Last-Modified", "Age")


class SquidHitFields(Misbehaviour):
    """RFC 9111 3: a cache stores an answer's fields (Set-Cookie included: 3.1 lets it keep
    every field but the hop-by-hop ones) and serves them with it; RFC 9110 15.4.5: a 304 it
    makes for a client's own conditional request carries the fields a 200 would have, ETag,
    Cache-Control, Expires, Vary and Content-Location among them. This cache drops Set-Cookie
    from every answer it serves from its store (hits and revalidated answers), and the 304s it
    makes carry only Date, Content-Type, Expires and Last-Modified (and its Age): no ETag, no
    Cache-Control. The answers it forwards from the origin are left as they are.
    """

    name = "squid-hit-fields"
    summary = "Drops Set-Cookie from answers from the store; its own 304s carry no ETag."
    imitates = (
        "Squid 5.7: clientReplyContext::buildReplyHeader (src/client_side_reply.cc) 'remove "
        "Set-Cookie if a hit'; HttpReply::make304 (src/HttpReply.cc) copies only Date, "
        "Content-Type, Expires and Last-Modified. Squid 5.7 here fails the HTTP caching test "
        "suite's headers-store-Set-Cookie, 304-etag-update-response-Set-Cookie and "
        "conditional-304-etag (bench/cache_tests.py --real)."
    )

    def from_store(
        self, request: http.Request, stored: http.Response, answer: http.Response
    ) -> None:
        answer.headers.pop("Set-Cookie", None)
        if answer.status_code == 304:
            for name in {name.lower() for name in answer.headers}:
                if name not in {f.lower() for f in FIELDS_OF_304}:
                    answer.headers.pop(name, None)
