"""Where `lab probe` sends its requests: the URL it was given, checked, and the forward proxy on
the way (`--proxy`, else the environment's HTTP_PROXY / HTTPS_PROXY / ALL_PROXY and NO_PROXY,
read as requests reads them), named so the output can say which proxy was used; and, when the
endpoint cannot be reached, which of the two (the proxy or the server) did not answer.

The proxy is resolved here and handed to httpx explicitly (its own `trust_env` off), so the
proxy the output names is the one the requests went through.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from lab.data.errors import BadInput, ComponentError

SCHEMES = ("http", "https")
PROXY_SCHEMES = ("http", "https")
GATEWAY_FAILURES = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


class Unreachable(ComponentError):
    """The probe endpoint (or the plain URL) could not be reached: exit 3, one line."""

    def __init__(self, problem: str) -> None:
        super().__init__("unreachable", problem)


@dataclass(frozen=True)
class Route:
    url: str  # as given, checked: http(s)://host[:port]/path
    proxy: str | None  # the forward proxy every request goes through; None: straight there
    source: str  # where the proxy came from: "--proxy", "HTTP_PROXY", ..., or why there is none
    cacert: str | None = None  # https: the server's own CA to verify with (--cacert)

    @property
    def https(self) -> bool:
        return self.url.startswith("https:")

    @property
    def server(self) -> str:
        """host:port of the server, as a person would name it."""
        parts = urlsplit(self.url)
        return f"{parts.hostname}:{parts.port or (443 if self.https else 80)}"

    def describe(self) -> str:
        if self.proxy is None:
            return f"proxy: none ({self.source})"
        return f"proxy: {redacted(self.proxy)} (from {self.source})"


def resolve(url: str, proxy_option: str | None, environ: Mapping[str, str] | None = None) -> Route:
    """The checked URL and its proxy; BadInput (exit 2) naming the bad value."""
    checked = check_url(url)
    if proxy_option is not None:
        return Route(checked, check_proxy(proxy_option, "--proxy"), "--proxy")
    env = os.environ if environ is None else environ
    scheme = urlsplit(checked).scheme
    value, name = environment_proxy(scheme, env)
    if value is None:
        return Route(checked, None, f"no --proxy, no {scheme.upper()}_PROXY in the environment")
    proxy = check_proxy(value, name)
    no_proxy, no_name = first_set(env, ("no_proxy", "NO_PROXY"))
    host = urlsplit(checked).hostname or ""
    if no_proxy and urllib.request.proxy_bypass_environment(host, {"no": no_proxy}):
        return Route(checked, None, f"{no_name} matches {host}; {name} not used")
    return Route(checked, proxy, name)


def check_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise BadInput(
            f"URL {url!r}: must be an http:// or https:// URL with a host "
            "(the probe endpoint, http://HOST:PORT/_cache-probe, or any page)"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise BadInput(f"URL {url!r}: the port is not a number from 0 to 65535") from None
    return url.strip()


def check_proxy(value: str, where: str) -> str:
    """A proxy URL as requests and curl take it: `host:port` alone means http://host:port."""
    text = value.strip()
    if "://" not in text:
        text = f"http://{text}"
    parts = urlsplit(text)
    if parts.scheme not in PROXY_SCHEMES:
        raise BadInput(
            f"{where} {redacted(text)!r}: the proxy's scheme must be http:// or https:// "
            f"(not {parts.scheme}://)"
        )
    try:
        port = parts.port
    except ValueError:
        port = -1
    if not parts.hostname or port == -1:
        raise BadInput(f"{where} {redacted(text)!r}: not a proxy address (http://HOST:PORT)")
    return text.rstrip("/")


def environment_proxy(scheme: str, env: Mapping[str, str]) -> tuple[str | None, str]:
    """The proxy the environment sets for `scheme`, and the variable that set it. Lower-case
    names win over upper-case ones, as in urllib (and so requests); ALL_PROXY last."""
    names = (f"{scheme}_proxy", f"{scheme.upper()}_PROXY", "all_proxy", "ALL_PROXY")
    value, name = first_set(env, names)
    return value, name


def first_set(env: Mapping[str, str], names: tuple[str, ...]) -> tuple[str | None, str]:
    for name in names:
        if value := (env.get(name) or "").strip():
            return value, name
    return None, ""


def redacted(proxy: str) -> str:
    """A proxy URL without its password, for the output and the bug report."""
    try:
        parts = urlsplit(proxy)
        password = parts.password
    except ValueError:
        return proxy
    if password is None:
        return proxy
    host = parts.netloc.rpartition("@")[2]
    return proxy.replace(parts.netloc, f"{parts.username}:***@{host}", 1)


def failure(route: Route, exc: httpx.HTTPError) -> Unreachable:
    """A request that got no answer at all, said as which side did not answer."""
    reason = str(exc) or type(exc).__name__
    refused = "refused" in reason.lower()
    if isinstance(exc, httpx.ProxyError):
        return Unreachable(
            f"the proxy {redacted(route.proxy or '')} did not open a tunnel to {route.server}: "
            f"{reason}"
        )
    if isinstance(exc, httpx.TimeoutException):
        who = f"the proxy {redacted(route.proxy)}" if route.proxy else f"the server {route.server}"
        return Unreachable(f"no answer from {who} within the timeout ({type(exc).__name__})")
    if route.proxy is not None and isinstance(exc, httpx.ConnectError):
        # Through a forward proxy the connection is to the proxy: it is the one that failed.
        did = "refused the connection" if refused else "could not be reached"
        return Unreachable(f"the proxy {redacted(route.proxy)} ({route.source}) {did}: {reason}")
    did = "refused the connection" if refused else "could not be reached"
    return Unreachable(f"the server {route.server} {did}: {reason}")


def gateway_failure(route: Route, status: int) -> Unreachable | None:
    """A 502/503/504 or a 407 that is not the probe's answer: the proxy (or a gateway in front
    of the server) speaking for a server it could not reach. None for any other answer."""
    if status == 407:
        return Unreachable(
            f"the proxy {redacted(route.proxy or '')} wants credentials (407 Proxy "
            "Authentication Required): give them as --proxy http://USER:PASSWORD@HOST:PORT"
        )
    if status not in GATEWAY_FAILURES:
        return None
    said = f"{status} {GATEWAY_FAILURES[status]}"
    if route.proxy is not None:
        return Unreachable(
            f"the proxy {redacted(route.proxy)} answered {said}: it could not reach the "
            f"server {route.server}"
        )
    return Unreachable(
        f"{route.server} answered {said}: a gateway in front of the server could not reach it"
    )
