"""Fail the fetch of an answer that carries a Content-Range nobody asked for."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mitmproxy import http

from proxies.misbehaviours.base import Misbehaviour

if TYPE_CHECKING:
    from mitmproxy.http import HTTPFlow

# Varnish's builtin vcl_backend_error: a synthetic 503 with this reason, never stored.
FAILED_STATUS = 503
FAILED_REASON = "Backend fetch failed"


class VarnishRangeCheck(Misbehaviour):
    """An origin answer with a Content-Range to a request that sent no Range is a failed
    fetch: the client gets Varnish's own 503 "Backend fetch failed" (vcl_backend_error) and
    nothing is stored. RFC 9110 14.4 lets Content-Range appear on a 200 or 416 too (a 200 with
    it is odd, not invalid), and RFC 9111 stores such a 200; Varnish checks every backend
    answer's Content-Range against the backend request's Range before it stores or delivers
    the body, and a Content-Range without a Range is an error.

    Answers from the cache are left alone: none it stored carries the field.
    """

    name = "varnish-range-check"
    summary = "An origin answer with Content-Range but no Range in the request becomes a 503."
    imitates = (
        "Varnish 7.1 bin/varnishd/cache/cache_range.c VRG_CheckBo, called by cache_fetch.c "
        "before the body is fetched: with http_range_support on (the default), a backend "
        "Content-Range and no Range in the backend request logs `Unexpected content-range "
        "header` and fails the fetch (503 from the built-in vcl_backend_error). Varnish 7.1.1 "
        "answers 503 to the HTTP caching test suite's headers-store-Content-Range here."
    )

    def response(self, flow: HTTPFlow) -> None:
        response = flow.response
        if response is None or flow.metadata.get("cache") in ("HIT", "STALE"):
            return None
        if "Content-Range" not in response.headers or "Range" in flow.request.headers:
            return None
        flow.response = http.Response.make(
            FAILED_STATUS,
            f"{FAILED_STATUS} {FAILED_REASON}\n",
            {"Content-Type": "text/plain; charset=utf-8", "Retry-After": "5"},
        )
        flow.response.reason = FAILED_REASON
        return None
