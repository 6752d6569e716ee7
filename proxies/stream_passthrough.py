"""mitmproxy addon: pass Server-Sent Events through as they come, like a well-behaved proxy."""

from __future__ import annotations

from mitmproxy import http


class StreamPassThrough:
    """Streams `text/event-stream` responses instead of buffering them.

    Stock mitmdump buffers whole responses, SSE included (mitmproxy issue #4469), which is itself
    a misbehaviour; a transparent proxy forwards each event as it arrives. Misbehaviours that
    buffer streams run after this addon and switch streaming off again.
    """

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        assert flow.response is not None
        content_type = flow.response.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() == "text/event-stream":
            flow.response.stream = True


addons = [StreamPassThrough()]
