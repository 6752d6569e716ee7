"""The cache probe as ASGI middleware (FastAPI, Starlette, any ASGI app), in one line:

    app.add_middleware(ASGIProbeMiddleware)     # FastAPI / Starlette
    app = ASGIProbeMiddleware(app)              # any ASGI app

Requests under the probe's path are answered by the probe; everything else (other paths,
websockets, lifespan) goes to the app untouched."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from cache_probe.core import DEFAULT_PATH, Probe, ProbeTable

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class ASGIProbeMiddleware:
    def __init__(
        self, app: Callable[..., Any], path: str = DEFAULT_PATH, table: ProbeTable | None = None
    ) -> None:
        self.app = app
        self.probe = Probe(path, table)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.probe.handles(scope.get("path") or "/"):
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET").upper()
        if_none_match = next(
            (v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"if-none-match"),
            None,
        )
        status, headers, body = self.probe.answer(method, scope["path"], if_none_match)
        if method == "HEAD":
            body = b""
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        raw.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})
