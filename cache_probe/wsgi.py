"""The cache probe as WSGI middleware (Flask, Django, any WSGI app), in one line:

    app.wsgi_app = ProbeMiddleware(app.wsgi_app)            # Flask
    application = ProbeMiddleware(get_wsgi_application())   # Django's wsgi.py

Requests under the probe's path are answered by the probe; every other request goes to the app
untouched."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from cache_probe.core import DEFAULT_PATH, Probe, ProbeTable

REASONS = {200: "OK", 304: "Not Modified", 400: "Bad Request", 404: "Not Found"}


class ProbeMiddleware:
    def __init__(
        self, app: Callable[..., Any], path: str = DEFAULT_PATH, table: ProbeTable | None = None
    ) -> None:
        self.app = app
        self.probe = Probe(path, table)

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if not self.probe.handles(path):
            return self.app(environ, start_response)
        method = environ.get("REQUEST_METHOD", "GET").upper()
        status, headers, body = self.probe.answer(method, path, environ.get("HTTP_IF_NONE_MATCH"))
        if method == "HEAD":
            body = b""
        headers = [*headers, ("Content-Length", str(len(body)))]
        start_response(f"{status} {REASONS.get(status, 'Method Not Allowed')}", headers)
        return [body]
