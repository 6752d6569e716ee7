"""WSGI middleware: serve the app under any `/_lab/<cell>/` prefix as well as at the root.

The lab's matrix runs many clients through one shared proxy. Giving each cell its own path prefix
gives it its own cache keys, as if each cell had its own site, so one cell's cached answers can
never reach another's client, while neighbours within a cell still share them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

PREFIX = re.compile(r"^(/_lab/[A-Za-z0-9_.-]+)(/.*)?$")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class CellPrefix:
    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]):
        match = PREFIX.match(environ.get("PATH_INFO", ""))
        if match:
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + match.group(1)
            environ["PATH_INFO"] = match.group(2) or "/"
        return self.app(environ, start_response)
