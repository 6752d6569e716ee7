"""Delay requests on their way upstream: a slow network or a slow proxy."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from proxies.misbehaviours.base import Misbehaviour, Parameters

if TYPE_CHECKING:
    from mitmproxy import http


class LatencyParams(Parameters):
    ms: Annotated[int, Field(ge=0, le=60_000)]
    # Each delay is ms + a uniform draw in [-jitter_ms, +jitter_ms] (never below 0).
    jitter_ms: Annotated[int, Field(ge=0, le=60_000)] = 0
    # Seeds the jitter: the same seed gives the same delays in the same order.
    seed: int = 0


class Latency(Misbehaviour[LatencyParams]):
    """Every request in scope waits `ms` ± `jitter_ms` milliseconds before it goes on (to the
    origin or the cache). Nothing fails; everything is just later. The jitter comes from a
    `random.Random(seed)` on the instance, so a run is repeatable.
    """

    name = "latency"
    summary = "Delays every matching request by ms ± jitter_ms (seeded, repeatable)."
    imitates = (
        "A slow or distant network path: satellite or congested mobile links, a VPN hairpin "
        "through a far-away head office, an overloaded corporate proxy. The same idea as "
        "Toxiproxy's `latency` toxic (latency, jitter) and Linux `tc qdisc ... netem delay "
        "300ms 100ms`."
    )

    def prepare(self) -> None:
        self.random = random.Random(self.params.seed)
        # Injectable so tests need not wait.
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def next_delay(self) -> float:
        """Seconds to wait for the next matching request."""
        jitter = self.params.jitter_ms
        offset = self.random.uniform(-jitter, jitter) if jitter else 0.0
        return max(0.0, self.params.ms + offset) / 1000

    def request(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        delay = self.next_delay()
        flow.metadata["latency_ms"] = round(delay * 1000)
        return self.sleep(delay)
