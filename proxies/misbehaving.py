"""mitmproxy addon: applies a profile's misbehaviours to every flow, in profile order."""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Sequence

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader

from proxies.misbehaviours import Misbehaviour, MisbehaviourError, build


class Misbehaving:
    """Imitates whatever the profile says: latency, flaky upstreams, buffering, header rewrites.

    The misbehaviours are chosen by the `misbehaviours` option, a JSON list such as
    `[{"name": "latency", "ms": 200}]`. Cache misbehaviours are consulted by the SharedCache
    addon through `active`; flow misbehaviours run here. Place this addon before the cache.
    """

    def __init__(self) -> None:
        self.active: list[Misbehaviour] = []

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "misbehaviours",
            str,
            "[]",
            'JSON list of misbehaviours, e.g. [{"name": "ignore-query-in-key"}]; see '
            "proxies/misbehaviours/ for the names and their parameters.",
        )

    def configure(self, updated: set[str]) -> None:
        if "misbehaviours" not in updated:
            return
        try:
            self.active = build(json.loads(ctx.options.misbehaviours or "[]"))
        except json.JSONDecodeError as exc:
            raise exceptions.OptionsError(f"misbehaviours: not valid JSON: {exc}") from None
        except MisbehaviourError as exc:
            raise exceptions.OptionsError(str(exc)) from None

    def in_scope(self, flow: http.HTTPFlow) -> list[Misbehaviour]:
        """The misbehaviours whose scope takes this flow's request, in profile order."""
        return [m for m in self.active if m.applies_to(flow.request)]

    async def request(self, flow: http.HTTPFlow) -> None:
        for misbehaviour in self.in_scope(flow):
            result = misbehaviour.request(flow)
            if inspect.isawaitable(result):
                await result
            if flow.response is not None or flow.error is not None:
                return  # answered or killed: later misbehaviours do not see it

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        for misbehaviour in self.in_scope(flow):
            misbehaviour.responseheaders(flow)

    def response(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """In profile order; a misbehaviour that holds the answer back returns an awaitable,
        which mitmproxy awaits, and the ones after it run once it is done."""
        chain = self.in_scope(flow)
        for at, misbehaviour in enumerate(chain):
            result = misbehaviour.response(flow)
            if inspect.isawaitable(result):
                return _then(result, chain[at + 1 :], flow)
        return None

    def error(self, flow: http.HTTPFlow) -> None:
        for misbehaviour in self.in_scope(flow):
            misbehaviour.error(flow)


async def _then(held: Awaitable[None], rest: Sequence[Misbehaviour], flow: http.HTTPFlow) -> None:
    await held
    for misbehaviour in rest:
        result = misbehaviour.response(flow)
        if inspect.isawaitable(result):
            await result


addons = [Misbehaving()]
