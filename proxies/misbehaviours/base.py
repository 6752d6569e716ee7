"""The one small interface every misbehaviour implements (in the spirit of Toxiproxy's toxics).

A misbehaviour is one way a real intermediary departs from the HTTP specs. It has a registry
name, a docstring-like `summary`, the real product and setting it `imitates`, and a pydantic
`Params` model for its parameters. Two kinds of hooks, both optional; the defaults change nothing:

- cache-policy hooks, called by the SharedCache addon: each receives the RFC 9111 decision (or
  the decision of the misbehaviour before it in the profile) and returns its own;
- flow hooks (`request`, `responseheaders`, `response`, `error`), called by the Misbehaving addon
  with mitmproxy's flow, in profile order; `request` may be a coroutine (to add latency).

Which requests a misbehaviour touches is its `Scope`, the same few fields for every
misbehaviour (Toxiproxy's toxicity, with a URL and method filter in place of its direction):
`url_pattern`, `methods`, `probability` and `probability_seed`. The addons that call the hooks
(Misbehaving, SharedCache) skip a misbehaviour for a request outside its scope, so no
misbehaviour filters requests itself.
"""

from __future__ import annotations

import random
import re
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Generic, TypeVar, get_args, get_origin
from weakref import WeakKeyDictionary

from pydantic import BaseModel, ConfigDict, Field, field_validator

from proxies.misbehaviours._common import Regex

if TYPE_CHECKING:
    from mitmproxy import http

CacheKey = tuple[str, ...]


class Parameters(BaseModel):
    """The base of every misbehaviour's parameters: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(Parameters):
    pass


class Scope(BaseModel):
    """The requests a misbehaviour applies to; a profile gives these fields beside the
    misbehaviour's own parameters. The defaults: every request."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Only requests whose whole URL matches this regex (re.search); empty: every URL.
    url_pattern: Regex = ""
    # Only requests with one of these methods; empty: every method.
    methods: list[str] = []
    # The share of the requests in scope that it applies to, drawn once per request from a
    # random.Random(probability_seed), so a run with the same requests repeats itself.
    probability: Annotated[float, Field(ge=0, le=1)] = 1.0
    probability_seed: int = 0

    @field_validator("methods")
    @classmethod
    def upper_case(cls, methods: list[str]) -> list[str]:
        return [method.upper() for method in methods]

    @classmethod
    def fields(cls) -> frozenset[str]:
        return frozenset(cls.model_fields)


P = TypeVar("P", bound=BaseModel)


class Misbehaviour(Generic[P]):
    """`class Latency(Misbehaviour[LatencyParams])`: the type argument is the model of its
    parameters (`Params`, checked when a profile is loaded); without one, it takes none."""

    name: ClassVar[str]
    summary: ClassVar[str]
    imitates: ClassVar[str]
    Params: ClassVar[type[BaseModel]] = NoParams
    params: P

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in cls.__dict__.get("__orig_bases__", ()):
            if get_origin(base) is Misbehaviour:
                (cls.Params,) = get_args(base)

    def __init__(self, params: P | None = None, scope: Scope | None = None) -> None:
        self.params = params if params is not None else self.Params()  # type: ignore[assignment]
        self.scope = scope if scope is not None else Scope()
        self._url = re.compile(self.scope.url_pattern) if self.scope.url_pattern else None
        self._random = random.Random(self.scope.probability_seed)
        # One draw per request, so every hook of one request agrees.
        self._drawn: WeakKeyDictionary[http.Request, bool] = WeakKeyDictionary()
        self.prepare()

    def prepare(self) -> None:
        """Set up what the parameters call for (compiled patterns, counters); `params` is set."""

    def applies_to(self, request: http.Request) -> bool:
        """Is the request in this misbehaviour's scope? The callers of the hooks ask."""
        if self._url is not None and not self._url.search(request.url):
            return False
        if self.scope.methods and request.method.upper() not in self.scope.methods:
            return False
        if self.scope.probability >= 1:
            return True
        drawn = self._drawn.get(request)
        if drawn is None:
            drawn = self._drawn[request] = self._random.random() < self.scope.probability
        return drawn

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

    def initial_age(
        self, request: http.Request, headers: http.Headers, age: float, now: float
    ) -> float:
        """The answer's age when it reached the cache (RFC 9111 4.2.3: the larger of its Age
        field and now minus its Date); `headers`: the fields that give it."""
        return age

    def from_store(
        self, request: http.Request, stored: http.Response, answer: http.Response
    ) -> None:
        """Edit an answer the cache built from a stored one (a hit, a stale answer, one
        revalidated by a 304) after the cache set its Age field (RFC 9111 4): `stored` is the
        stored response as kept. The cache's own events still say where the answer came from.
        """

    def explain_lifetime(self, request: http.Request, response: http.Response) -> str:
        """A few words on how its `freshness_lifetime` chose the lifetime it gave this response
        (which rule line, which step), logged with the stored answer; asked only when it set
        the lifetime. Empty: the summary and the lifetime say enough."""
        return ""

    def serve_stale(
        self, request: http.Request, stale_for: float, upstream_failed: bool, decision: bool
    ) -> bool:
        """May a stale entry be served (stale-while-revalidate, stale-if-error)?"""
        return decision

    def revalidates(self, request: http.Request, decision: bool) -> bool:
        """Does the cache add its stored answer's validators to the request it sends for a
        stale or no-cache entry (RFC 9111 4.3.1)?"""
        return decision

    def accepts_304(self, request: http.Request, decision: bool) -> bool:
        """May a 304 from the origin refresh the stored answer, although its validators name
        another one (RFC 9111 4.3.4: decision False then)? Asked only for such a 304."""
        return decision

    def kept_on_304(self, request: http.Request, names: frozenset[str]) -> frozenset[str]:
        """The stored answer's fields (lower case) that a refreshing 304 leaves as they are
        (RFC 9111 3.2: Content-Length, the content's coding, range and digest, hop-by-hop)."""
        return names

    def invalidates(self, request: http.Request, response: http.Response, decision: bool) -> bool:
        """Does this non-error answer to an unsafe method drop the stored answers for its URL
        (and its same-origin Location and Content-Location, RFC 9111 4.4)?"""
        return decision

    def invalidates_locations(
        self, request: http.Request, response: http.Response, decision: bool
    ) -> bool:
        """When that answer drops its URL's stored answers, does it also drop those of its
        same-origin Location and Content-Location (RFC 9111 4.4 lets a cache)?"""
        return decision

    def not_stored_fields(self, request: http.Request, names: frozenset[str]) -> frozenset[str]:
        """The response fields (lower case) the cache removes before storing an answer: the
        hop-by-hop ones and those its Connection field names (RFC 9111 3.1)."""
        return names

    # -- flow hooks (Misbehaving addon) -----------------------------------------------------
    def request(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        return None

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        return None

    def response(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """May return an awaitable to hold the answer back until it is done."""
        return None

    def error(self, flow: http.HTTPFlow) -> None:
        return None
