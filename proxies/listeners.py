"""mitmproxy addon: several proxy profiles in one mitmdump, one profile per listening port."""

from __future__ import annotations

import inspect
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader

from proxies.cache_settings import Settings, options_a_listener_cannot_set
from proxies.misbehaving import Misbehaving
from proxies.misbehaviours import MisbehaviourError, build
from proxies.observer import Observer, write_ready_file
from proxies.shared_cache import SharedCache
from proxies.stream_passthrough import StreamPassThrough

PORT_KEY = "listener_port"  # flow.metadata: the listener a flow (and its replays) came in on


class Chain:
    """One profile's addons, in lab_addons.py's order, configured from the profile itself
    rather than from mitmproxy's (process-wide) options: its own cache, its own misbehaviours,
    its own access log."""

    def __init__(self, spec: Mapping[str, Any], where: str) -> None:
        options = spec.get("options", {})
        try:
            misbehaviours = build(spec.get("misbehaviours", []))
            settings = Settings.from_options(options)
        except (MisbehaviourError, exceptions.OptionsError) as exc:
            raise exceptions.OptionsError(f"{where}: {exc}") from None
        unknown = options_a_listener_cannot_set(options)
        if unknown:
            raise exceptions.OptionsError(
                f"{where}: options {sorted(unknown)} cannot differ per listener"
            )
        self.misbehaving = Misbehaving()
        self.misbehaving.active = misbehaviours
        cache = SharedCache(misbehaviours=lambda: self.misbehaving.active)
        cache.apply(settings)
        self.observer = Observer(events_path=spec.get("events", ""))
        self.addons: list[Any] = [StreamPassThrough(), self.misbehaving, cache, self.observer]

    async def run(self, hook: str, flow: http.HTTPFlow) -> None:
        for addon in self.addons:
            method = getattr(addon, hook, None)
            if method is None:
                continue
            result = method(flow)
            if inspect.isawaitable(result):
                await result


class ProfileListeners:
    """Imitates several different proxies side by side, as one machine would see a squid,
    an nginx and a CDN edge: each listening port is its own proxy with its own profile.

    The `listeners` option maps a port to a profile's `options` (the cache's), its
    `misbehaviours` and the access log (`events`) of that listener, e.g.
    `{"8081": {"options": {"cache_heuristic_ttl": 300}, "misbehaviours": [], "events": "a.jsonl"}}`.
    Start mitmdump with one `--mode ...@PORT` per entry. Every flow is handled by the chain of
    the port it arrived on (a flow on any other port is refused with a 502), and a replayed flow
    (a background refresh) by the chain of its original. `listeners_ready` gets
    `{"pid", "listeners": {"PORT": "mode spec"}}` once every listener is up. The lab uses this
    to run a whole matrix's profiles in one process instead of one process each.
    """

    def __init__(self) -> None:
        self.chains: dict[int, Chain] = {}

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "listeners",
            str,
            "{}",
            'JSON: {"PORT": {"options": {...}, "misbehaviours": [...], "events": PATH}}, one '
            "proxy profile per listening port (each needs its --mode ...@PORT).",
        )
        loader.add_option(
            "listeners_ready",
            str,
            "",
            "Once every listener is up, atomically write {pid, listeners} as JSON here.",
        )

    def configure(self, updated: set[str]) -> None:
        if "listeners" not in updated:
            return
        try:
            specs = json.loads(ctx.options.listeners or "{}")
        except json.JSONDecodeError as exc:
            raise exceptions.OptionsError(f"listeners: not valid JSON: {exc}") from None
        if not isinstance(specs, dict):
            raise exceptions.OptionsError("listeners: must be a JSON object of port: profile")
        chains: dict[int, Chain] = {}
        for port, spec in specs.items():
            if not str(port).isdigit() or not isinstance(spec, dict):
                raise exceptions.OptionsError(f"listeners: {port!r}: a port and an object")
            chains[int(port)] = Chain(spec, f"listeners[{port}]")
        for chain in self.chains.values():
            chain.observer.done()
        self.chains = chains

    def running(self) -> None:
        if not ctx.options.listeners_ready:
            return
        servers = ctx.master.addons.get("proxyserver").servers
        ports = {
            str(addr[1]): server.mode.full_spec
            for server in servers
            for addr in server.listen_addrs
        }
        missing = set(map(str, self.chains)) - set(ports)
        if missing:
            logging.warning("listeners: no server listens on %s", ", ".join(sorted(missing)))
            return
        write_ready_file(ctx.options.listeners_ready, {"pid": os.getpid(), "listeners": ports})

    def done(self) -> None:
        for chain in self.chains.values():
            chain.observer.done()

    def _chain(self, flow: http.HTTPFlow) -> Chain | None:
        port = flow.metadata.get(PORT_KEY)
        if port is None:
            sockname = flow.client_conn.sockname
            port = sockname[1] if sockname else None
            flow.metadata[PORT_KEY] = port
        return self.chains.get(port) if port is not None else None

    async def _dispatch(self, hook: str, flow: http.HTTPFlow) -> None:
        chain = self._chain(flow)
        if chain is None:
            if hook == "request" and flow.response is None:
                flow.response = http.Response.make(502, b"no proxy profile on this port\n")
            return
        await chain.run(hook, flow)

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        await self._dispatch("requestheaders", flow)

    async def request(self, flow: http.HTTPFlow) -> None:
        await self._dispatch("request", flow)

    async def responseheaders(self, flow: http.HTTPFlow) -> None:
        await self._dispatch("responseheaders", flow)

    async def response(self, flow: http.HTTPFlow) -> None:
        await self._dispatch("response", flow)

    async def error(self, flow: http.HTTPFlow) -> None:
        await self._dispatch("error", flow)


addons = [ProfileListeners()]
