"""A proxy the lab does not start (`--proxy-url`, or a real product under `lab verify`), and a
fixed port for the app so that a real reverse proxy can be pointed at it (`--app-port`).

Everything here is checked before anything starts, as a broker is: a URL that cannot be a
proxy's is bad input (exit 2), a proxy that does not accept a connection and an app port
already taken are a component that cannot be reached or started (exit 3), each named.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from lab.data.errors import BadInput, ComponentError
from lab.stacks.brokers import REACH_TIMEOUT, redact
from lab.stacks.ports import LOOPBACK

SCHEMES = ("http", "https")


def proxy_label(url: str) -> str:
    """How verdicts, JSON and pages name a proxy that is not one of the lab's profiles."""
    return f"external proxy {redact(url.rstrip('/'))}"


def check_proxy_url(url: str, option: str = "--proxy-url") -> None:
    """BadInput naming the option, the URL (password hidden) and what is wrong with it."""
    shown = redact(url) if "://" in url else url
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BadInput(f"{option} {shown!r}: {exc}") from None
    if parts.scheme not in SCHEMES:
        found = f"{parts.scheme}://" if parts.scheme else "no scheme"
        raise BadInput(
            f"{option} {shown!r}: a proxy URL starts with http:// or https:// (found {found}), "
            "for example http://127.0.0.1:3128"
        )
    if not parts.hostname:
        raise BadInput(f"{option} {shown!r}: no host (for example http://127.0.0.1:3128)")
    if parts.query or parts.fragment:
        raise BadInput(f"{option} {shown!r}: a proxy URL has no query or fragment")
    if port == 0:
        raise BadInput(f"{option} {shown!r}: port 0 is no proxy's port")


def check_proxy_reachable(url: str, option: str = "--proxy-url") -> None:
    """ComponentError (exit 3) within REACH_TIMEOUT when nothing accepts a connection there."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or LOOPBACK
    try:
        with socket.create_connection((host, port), timeout=REACH_TIMEOUT):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ComponentError(
            "proxy",
            f"cannot reach the proxy at {redact(url)} ({option}): {reason} (is it running "
            f"and listening on {host}:{port}?)",
        ) from None


def check_app_port(port: int) -> None:
    """ComponentError (exit 3) when the app could not listen on 127.0.0.1:port."""
    with socket.socket() as sock:
        # As the app server binds (werkzeug's HTTPServer sets SO_REUSEADDR): a port held only
        # by connections closing (TIME_WAIT) is free for it, a port someone listens on is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
            sock.listen(1)
        except OSError as exc:
            raise ComponentError(
                "app",
                f"--app-port {port}: {LOOPBACK}:{port} is not free ({exc.strerror}); choose "
                "another port, or stop what listens there",
            ) from None
