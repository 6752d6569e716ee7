"""Fail every Nth matching request, as a flaky upstream behind a proxy does."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated

from mitmproxy import http
from pydantic import Field

from proxies.misbehaviours._common import Regex, path_without_query
from proxies.misbehaviours.base import Misbehaviour, Parameters

if TYPE_CHECKING:
    from collections.abc import Awaitable

# nginx's own error page, byte for byte apart from the status line: what users behind an
# nginx reverse proxy or a gateway built on it actually see.
ERROR_PAGE = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


class FlakyUpstreamParams(Parameters):
    # Fail the every-th, 2*every-th... matching request of each key (1: all of them).
    every: Annotated[int, Field(ge=1)] = 3
    # The proxy's answer when it fails one: 502 Bad Gateway, 504 Gateway Timeout, or any 5xx.
    status: Annotated[int, Field(ge=500, le=599)] = 502
    # True: no answer at all, the connection is closed (a reset) instead of an error page.
    reset: bool = False
    # The count's key: the match of this regex in the URL path (without the query), so every
    # task's polls are counted apart whatever nonce they carry; empty or no match: the path.
    key_pattern: Regex = ""


class FlakyUpstream(Misbehaviour[FlakyUpstreamParams]):
    """Deterministically, not at random: the requests in scope (its `url_pattern`, say) are
    counted per key and every `every`-th one is answered by the proxy itself with an HTTP error
    page (`status`), or, with `reset`, killed so the client sees the connection closed without
    an answer. It never reaches the origin. The other requests pass untouched, so a client that
    retries gets through.
    """

    name = "flaky-upstream"
    summary = "Answers every Nth matching request with a 502/504 error page (or a reset)."
    imitates = (
        "A proxy or load balancer in front of a flaky upstream: nginx answering `502 Bad "
        "Gateway` when an upstream worker restarts or resets the connection and `504 Gateway "
        "Timeout` past `proxy_read_timeout`; the same from an AWS ALB or a corporate proxy. "
        "Toxiproxy's idea (`reset_peer`, `timeout` toxics) at the HTTP level, made periodic "
        "instead of random so every run is the same."
    )

    def prepare(self) -> None:
        self.key_pattern = re.compile(self.params.key_pattern) if self.params.key_pattern else None
        self.counts: dict[str, int] = {}

    def key(self, request: http.Request) -> str:
        path = path_without_query(request)
        match = self.key_pattern.search(path) if self.key_pattern is not None else None
        return match.group(0) if match else path

    def request(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        key = self.key(flow.request)
        count = self.counts[key] = self.counts.get(key, 0) + 1
        if count % self.params.every:
            return None
        if self.params.reset:
            flow.metadata["misbehaviour"] = f"{self.name}: reset (#{count} of {key})"
            if flow.killable:
                flow.kill()
        else:
            flow.metadata["misbehaviour"] = f"{self.name}: {self.params.status} (#{count} of {key})"
            flow.response = self.error_page(self.params.status)
        return None

    @staticmethod
    def error_page(status: int) -> http.Response:
        response = http.Response.make(status, b"", {"Content-Type": "text/html"})
        response.text = ERROR_PAGE.format(status=status, reason=response.reason)
        return response
