"""The one small interface every misbehaviour implements (in the spirit of Toxiproxy's toxics).

A misbehaviour is one way a real intermediary departs from the HTTP specs. It has a registry
name, a docstring-like `summary`, the real product and setting it `imitates`, and a pydantic
`Params` model for its parameters. Two kinds of hooks, both optional; the defaults change nothing:

- cache-policy hooks, called by the SharedCache addon: each receives the RFC 9111 decision (or
  the decision of the misbehaviour before it in the profile) and returns its own;
- flow hooks (`request`, `responseheaders`, `response`, `error`), called by the Misbehaving addon
  with mitmproxy's flow, in profile order; `request` may be a coroutine (to add latency).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from mitmproxy import http

CacheKey = tuple[str, ...]


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Misbehaviour:
    name: ClassVar[str]
    summary: ClassVar[str]
    imitates: ClassVar[str]
    Params: ClassVar[type[BaseModel]] = NoParams

    def __init__(self, params: BaseModel | None = None) -> None:
        self.params = params if params is not None else self.Params()

    # -- cache-policy hooks (SharedCache) ---------------------------------------------------
    def cacheable_method(self, request: http.Request, decision: bool) -> bool:
        """May the cache look up / store responses to this request's method at all?"""
        return decision

    def cache_key(self, request: http.Request, key: CacheKey) -> CacheKey:
        return key

    def accepts_stored(self, request: http.Request, decision: bool) -> bool:
        """May a stored answer be used for this request (request no-cache, Pragma)?"""
        return decision

    def visible_headers(
        self, request: http.Request, response: http.Response, headers: http.Headers
    ) -> http.Headers:
        """The response fields the cache's RFC 9111 rules see (storability, freshness, Vary,
        must-revalidate): `headers` is a copy, maybe already edited by the misbehaviour before;
        edit and return it to make the cache blind to a directive or a field. The response that
        is stored and served keeps all its fields; the later hooks get it unedited."""
        return headers

    def storable(self, request: http.Request, response: http.Response, decision: bool) -> bool:
        return decision

    def freshness_lifetime(
        self, request: http.Request, response: http.Response, lifetime: float, now: float
    ) -> float:
        return lifetime

    def vary_fields(self, response: http.Response, fields: tuple[str, ...]) -> tuple[str, ...]:
        return fields

    def serve_stale(
        self, request: http.Request, stale_for: float, upstream_failed: bool, decision: bool
    ) -> bool:
        """May a stale entry be served (stale-while-revalidate, stale-if-error)?"""
        return decision

    # -- flow hooks (Misbehaving addon) -----------------------------------------------------
    def request(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        return None

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        return None

    def response(self, flow: http.HTTPFlow) -> None:
        return None

    def error(self, flow: http.HTTPFlow) -> None:
        return None
