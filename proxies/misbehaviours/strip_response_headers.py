"""Remove and rewrite response headers on the way to the client."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, field_validator

from proxies.misbehaviours.base import Misbehaviour, Parameters

if TYPE_CHECKING:
    from mitmproxy import http


class StripResponseHeadersParams(Parameters):
    # Response header names to remove (case-insensitive).
    names: Annotated[list[str], Field(min_length=1)]
    # Headers to set (replacing any value). A profile's misbehaviour values cannot be tables,
    # so a list of "Name: value" strings is accepted too.
    set: dict[str, str] = {}

    @field_validator("set", mode="before")
    @classmethod
    def name_value_lines(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        pairs: dict[str, str] = {}
        for line in value:
            name, sep, text = str(line).partition(":")
            if not sep or not name.strip():
                raise ValueError(f"{line!r}: expected 'Name: value'")
            pairs[name.strip()] = text.strip()
        return pairs


class StripResponseHeaders(Misbehaviour[StripResponseHeadersParams]):
    """Every response (from the origin, from the cache, or made by the proxy) loses the named
    headers and gets the `set` ones, before its headers go to the client.

    Runs in `responseheaders`, before the SharedCache's `response` hook, so the proxy's own
    cache never sees a stripped header either: the lab's proxy behaves like a stripping box
    between the origin and the cache (a WAF or load balancer in front of the app, a corporate
    cache further out). nginx's `proxy_hide_header` with its own `proxy_cache` differs: its
    cache still obeys the hidden header and only the client misses it. With the cache off, as
    in the header-stripping profile, the difference does not arise: the only cache left is the
    client's own.
    """

    name = "strip-response-headers"
    summary = "Removes the named response headers (Cache-Control, say) and sets others."
    imitates = (
        "Proxies and edge rules that drop or rewrite caching headers: nginx "
        "`proxy_hide_header Cache-Control;` (often with `add_header`), Apache `Header unset "
        "Cache-Control`, WAF and CDN response-header rules (Cloudflare Transform Rules, "
        "F5 iRules), old HTTP/1.0 proxies that forward only the headers they know."
    )

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if response is None:
            return
        for name in self.params.names:
            response.headers.pop(name, None)
        for name, value in self.params.set.items():
            response.headers[name] = value
