"""Hold a streamed response back until it has ended, as a scanning proxy does."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from proxies.misbehaviours._common import media_type
from proxies.misbehaviours.base import Misbehaviour, Parameters

if TYPE_CHECKING:
    from mitmproxy import http


class BufferStreamsParams(Parameters):
    # Media types (without parameters) whose responses are held back until complete.
    content_types: Annotated[list[str], Field(min_length=1)] = ["text/event-stream"]
    # Also buffer every chunked response, whatever its type (a scanner buffers everything).
    also_chunked: bool = False
    # nginx: an upstream's `X-Accel-Buffering: no` switches buffering off for that response.
    # Scanners and gateways know nothing of it (false, the default).
    honour_x_accel_buffering: bool = False


class BufferStreams(Misbehaviour[BufferStreamsParams]):
    """The client receives nothing of a matching response (not even its headers) until the
    upstream has sent all of it. An event stream that stays open is never delivered at all.

    Mechanism: in `responseheaders`, `flow.response.stream = False` for matching responses; the
    StreamPassThrough addon, earlier in the chain, had set it True for event streams. mitmproxy
    buffers every other response anyway, so `also_chunked` only matters when something else
    streams them (mitmproxy's `stream_large_bodies`, for one). `honour_x_accel_buffering`
    imitates nginx, which streams a response whose upstream sent `X-Accel-Buffering: no`.
    """

    name = "buffer-streams"
    summary = "Holds each event stream (and, optionally, chunked response) back until it has ended."
    imitates = (
        "Antivirus HTTPS scanning and secure web gateways that download a response completely "
        "before scanning and forwarding it: Sophos and ESET web scanning, Zscaler, Blue Coat "
        "ProxySG; nginx's default `proxy_buffering on;` for an SSE response that does not carry "
        "`X-Accel-Buffering: no` (with honour_x_accel_buffering = true)."
    )

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if response is None:
            return
        if (
            self.params.honour_x_accel_buffering
            and response.headers.get("x-accel-buffering", "").strip().lower() == "no"
        ):
            return
        types = {t.strip().lower() for t in self.params.content_types}
        chunked = "chunked" in response.headers.get("transfer-encoding", "").lower()
        if media_type(response.headers) in types or (self.params.also_chunked and chunked):
            response.stream = False
