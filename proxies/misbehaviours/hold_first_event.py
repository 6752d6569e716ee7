"""Pass an event stream through, but hold its first event back until a second one arrives."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from proxies.misbehaviours._common import media_type
from proxies.misbehaviours.base import Misbehaviour

if TYPE_CHECKING:
    from mitmproxy import http

# An SSE event (or comment block) ends with a blank line; all three line endings are allowed.
EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")


def holding_stream(events_to_hold: int = 2) -> Callable[[bytes], Iterable[bytes]]:
    """A `flow.response.stream` callable: keeps everything until `events_to_hold` event
    delimiters have arrived, then passes the held bytes and every later chunk straight on.

    Returns lists, never `b""`: mitmproxy would send an empty chunk, which in a chunked
    response is the terminating `0\\r\\n\\r\\n`. mitmproxy calls it with `b""` at the end of
    the response, when anything still held is flushed.
    """
    held = bytearray()
    released = False

    def stream(chunk: bytes) -> Iterable[bytes]:
        nonlocal released
        if released:
            return [chunk] if chunk else []
        held.extend(chunk)
        ended = chunk == b"" or len(EVENT_END.findall(held)) >= events_to_hold
        if not ended:
            return []
        released = True
        out = bytes(held)
        held.clear()
        return [out] if out else []

    return stream


class HoldFirstEvent(Misbehaviour):
    """Each event stream is streamed, except that its first event reaches the client only
    together with the second one: whatever the client would do on the first event (render the
    first state, confirm the subscription) waits for the next event or heartbeat.

    Mechanism: in `responseheaders`, `flow.response.stream` becomes a callable that accumulates
    the body until the second event delimiter (a blank line) and then passes everything on.
    """

    name = "hold-first-event"
    summary = "Streams Server-Sent Events but holds the first event back until the second arrives."
    imitates = (
        "Intermediaries that forward a stream only once a write fills or flushes their buffer: "
        "response compression on the path (nginx `gzip on; gzip_types text/event-stream;`, "
        "Apache mod_deflate, Express `compression()` without `res.flush()`), and scanning "
        "proxies that forward in blocks; the next event flushes what was held."
    )

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if response is None or media_type(response.headers) != "text/event-stream":
            return
        response.stream = holding_stream()
