"""Varnish's built-in VCL: what it passes and what it makes hit-for-miss."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from werkzeug.http import parse_date

from proxies import cache_policy
from proxies.misbehaviours._cache_rules import hide_directives
from proxies.misbehaviours.base import Misbehaviour

if TYPE_CHECKING:
    from mitmproxy import http

# vcl_beresp_control: a substring search, case-insensitive, anywhere in the field.
_REFUSED_DIRECTIVES = re.compile(r"no-cache|no-store|private", re.IGNORECASE)
_NO_STORE = re.compile(r"no-store", re.IGNORECASE)
# RFC2616_Ttl's `switch (http_GetStatus(hp))`: only these get a TTL (default_ttl, or the
# answer's own); every other status gets -1, so vcl_beresp_stale makes it hit-for-miss.
_TTL_STATUSES = frozenset({200, 203, 204, 300, 301, 304, 404, 410, 414})
# 302 and 307 fall through to the same rules with -1 in place of default_ttl: only their own
# max-age, s-maxage or Expires makes them cacheable.
_EXPLICIT_ONLY_STATUSES = frozenset({302, 307})
# The directives vcl_beresp_control looks for; with Surrogate-Control they are not read.
_CONTROL_DIRECTIVES = ("no-cache", "no-store", "private")


class VarnishBuiltinVcl(Misbehaviour):
    """The storing rules of Varnish's built-in VCL (`varnishd -x builtin`, Varnish 7.1), which
    runs after any VCL of the admin's that does not return first. Freshness is not set here:
    Varnish's TTL (default_ttl for an answer without max-age, s-maxage or Expires, an invalid
    Expires counting as none) is the heuristic-ttl misbehaviour, its grace stale-while-updating.

    Requests (vcl_recv):
    - `vcl_req_method`: only GET and HEAD are looked up; every other method is passed.
    - `vcl_req_authorization`: a request with Authorization is passed ("Not cacheable by
      default"), whatever the answer says (RFC 9111 3.5 would let s-maxage or public store it).
    - `vcl_req_cookie`: a request with any Cookie is passed ("Risky to cache by default"): a
      page whose users carry a session cookie is never cached by a stock Varnish.
    - The client's Cache-Control and Pragma are never read (list ignore-request-no-cache).

    Answers (vcl_backend_response); each of these is made hit-for-miss (`beresp.uncacheable`,
    ttl 120 s: the object is not stored, and for two minutes requests for that hash go to the
    backend without waiting for each other), never stored:
    - `vcl_beresp_stale`: a TTL of 0 or less (bin/varnishd/cache/cache_rfc2616.c RFC2616_Ttl):
      max-age=0, s-maxage=0, an Expires before the Date, and every status outside RFC2616_Ttl's
      list (200, 203, 204, 300, 301, 304, 404, 410, 414) whatever its Cache-Control (the
      `default:` case sets -1: a 201, 303, 308, 403 or 5xx is never stored), and a 302 or 307
      without max-age, s-maxage or Expires;
    - `vcl_beresp_cookie`: any Set-Cookie;
    - `vcl_beresp_control`: Surrogate-Control containing no-store, or, without
      Surrogate-Control, a Cache-Control matching `(?i:no-cache|no-store|private)`: a
      substring match, so `no-cache` is refused outright (RFC 9111 would store it and
      revalidate), and `no-cache="Set-Cookie"` or `private="X"` too. With Surrogate-Control
      present, Cache-Control's no-cache, no-store and private are not read at all (the cache
      here does not see them either: a `Cache-Control: no-store` answer is stored for
      default_ttl);
    - `vcl_beresp_vary`: `Vary: *` exactly (the whole field, after vbf_stp_startfetch's
      http_CollectHdr joined every Vary line into one). A `*` inside a list (`*, Foo`, two
      `Vary: *` lines) is not refused: VRY_Create (cache_vary.c) takes every token for a
      header name, and no request has a `*` header, so that token varies on nothing; the
      cache here does not see it.
    A 304 to its conditional request refreshes the stored object even when it names another
    ETag (cache_fetch.c vbf_stp_startfetch merges it, HTTP_Merge, without comparing), and
    the 304's Content-MD5 replaces the stored one (RFC 9111 3.2 keeps it). The other content
    fields RFC 9111 keeps (Content-Encoding, Content-Range) are kept here too: Varnish 7.1.1
    kept the stored Content-Encoding in the HTTP caching test suite (observed; the source
    line that keeps it was not found), and it never stores a Content-Range
    (varnish-range-check).
    Everything else with a positive TTL is stored: Varnish keeps no Last-Modified heuristic
    and reads no Pragma, so `Pragma: no-cache` alone changes nothing.
    """

    name = "varnish-builtin-vcl"
    summary = "Varnish's builtin.vcl: passes Cookie/Authorization requests, refuses Set-Cookie etc."
    imitates = (
        "Varnish 7.1's built-in VCL (`varnishd -x builtin`: vcl_req_method, "
        "vcl_req_authorization, vcl_req_cookie, vcl_beresp_stale, vcl_beresp_cookie, "
        "vcl_beresp_control, vcl_beresp_vary, vcl_beresp_hitmiss) with the TTL of "
        "bin/varnishd/cache/cache_rfc2616.c RFC2616_Ttl."
    )

    def cacheable_method(self, request: http.Request, decision: bool) -> bool:
        headers = request.headers
        if "Authorization" in headers or "Cookie" in headers:
            return False  # return (pass)
        return decision and request.method.upper() in cache_policy.CACHEABLE_METHODS

    def visible_headers(
        self, request: http.Request, response: http.Response, headers: http.Headers
    ) -> http.Headers:
        if "Surrogate-Control" in headers:
            hide_directives(headers, _CONTROL_DIRECTIVES)
        vary = headers.get("Vary")
        if vary is not None and vary.strip() != "*":
            names = [name.strip() for name in vary.split(",")]
            kept = [name for name in names if name and name != "*"]
            if len(kept) != len(names):
                if kept:
                    headers["Vary"] = ", ".join(kept)
                else:
                    del headers["Vary"]
        return headers

    def accepts_304(self, request: http.Request, decision: bool) -> bool:
        # cache_fetch.c: a 304 to a conditional fetch is merged into the stale object
        # (HTTP_Merge) whatever ETag it names; RFC 9111 4.3.4 would refuse it.
        return True

    def kept_on_304(self, request: http.Request, names: frozenset[str]) -> frozenset[str]:
        # HTTP_Merge: the 304's fields replace the stored ones (its Content-Length is unset
        # first); Varnish 7.1.1 here serves a 304's Content-MD5 from then on.
        return names - {"content-md5"}

    def storable(self, request: http.Request, response: http.Response, decision: bool) -> bool:
        headers = response.headers
        if "Set-Cookie" in headers:
            return False
        surrogate = headers.get("Surrogate-Control")
        if surrogate is not None:
            if _NO_STORE.search(surrogate):
                return False
        elif _REFUSED_DIRECTIVES.search(headers.get("Cache-Control", "")):
            return False
        if headers.get("Vary", "").strip() == "*":
            return False
        if _ttl_not_positive(response.status_code, headers):
            return False
        # The RFC's own refusals (a request's no-store, a 206) are kept.
        return decision


def _ttl_not_positive(status: int, headers: http.Headers) -> bool:
    """RFC2616_Ttl gives a TTL of 0 or less: a status outside its list (-1), s-maxage or
    max-age 0 (a negative one counts as 0), an Expires before the Date (an unparsable Expires
    is no Expires: VTIM_parse gives 0, 'No expire header, fall back to default'), or a 302 or
    307 with none of them (-1 in place of default_ttl)."""
    if status not in _TTL_STATUSES and status not in _EXPLICIT_ONLY_STATUSES:
        return True
    cc = cache_policy.response_cache_control(headers)
    max_age = cc.s_maxage if cc.s_maxage is not None else cc.max_age
    if max_age is not None:
        return max_age <= 0
    expires, date = parse_date(headers.get("Expires")), parse_date(headers.get("Date"))
    if expires is None:
        return status in _EXPLICIT_ONLY_STATUSES
    return date is not None and expires < date
