"""Key the cache on the URL alone, whatever Vary says."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxies.misbehaviours.base import Misbehaviour

if TYPE_CHECKING:
    from mitmproxy import http


class IgnoreVary(Misbehaviour):
    """The cache does not see the response's Vary field (RFC 9111 4.1: a stored response may
    only be used for a request whose Vary-named fields match; `Vary: *` never matches). One
    variant per URL is served to everybody: the answer for `Cookie: user=alice` goes to bob,
    the answer for `Accept-Language: de` to everyone. `Vary: *` responses are stored too.
    """

    name = "ignore-vary"
    summary = "Ignores Vary: one stored answer per URL for every user (cross-user leaks)."
    imitates = (
        "Akamai's 'Remove Vary Header' behavior (removeVary), which property managers enable "
        "because Akamai does not cache responses that Vary on anything but Accept-Encoding; a "
        "Varnish VCL with `unset beresp.http.Vary;` in vcl_backend_response."
    )

    def visible_headers(
        self, request: http.Request, response: http.Response, headers: http.Headers
    ) -> http.Headers:
        if "Vary" in headers:
            del headers["Vary"]
        return headers
