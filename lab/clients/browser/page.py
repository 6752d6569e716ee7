"""Driving the page: one user's browser context and page on the host's loop, opened, clicked
and watched, with the page scripts the lab injects (the .js files beside this module)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.clients.browser.host import CALL_TIMEOUT, BrowserHost
from lab.stacks.processes import start_timeout

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, CDPSession, Page

VIEWPORT = {"width": 800, "height": 600}


@functools.cache
def page_script(name: str) -> str:
    """One of the scripts beside this module: watch_page.js (an init script that reports what
    the page shows to the __labUi binding), read_panel.js (the debug panel as text, one field
    per row, None for a row the page hides: logged beside the screenshot at the verdict) and
    read_page_setup.js (the fix the page selected and its configuration, in one round trip)."""
    return resources.files(__package__).joinpath(name).read_text("utf-8").strip()


@dataclass(eq=False)
class BrowserPage:
    """A fresh browser context (its own HTTP cache, on, and its own connections; the proxy for
    a forward profile, with loopback sent through it too) and the sample app's page in it. What
    the page shows goes to `on_ui`, its network events to `on_network`, and what happened to
    `log`; every method but `body` runs on the host's loop."""

    host: BrowserHost
    url: str
    proxy_url: str | None
    log: Callable[..., None]
    on_ui: Callable[[dict[str, Any]], None]
    on_crash: Callable[[], None]
    on_network: Callable[[str, dict[str, Any]], None]
    network_events: list[str]
    _context: BrowserContext | None = field(default=None, init=False)
    _page: Page | None = field(default=None, init=False)
    _cdp: CDPSession | None = field(default=None, init=False)

    @property
    def opened(self) -> bool:
        return self._page is not None

    async def open(self) -> None:
        """Open the page, waiting for a turn (LAB_BROWSER_OPENING)."""
        assert self.host.opening is not None
        async with self.host.opening:
            await self._open_page()

    async def read_setup(self) -> tuple[str, dict[str, Any]]:
        """The fix the page selected, and its configuration."""
        assert self._page is not None
        selected, config_text = await self._page.evaluate(page_script("read_page_setup.js"))
        return selected, json.loads(config_text or "{}")

    async def click_start(self) -> None:
        assert self._page is not None
        await self._page.click("#start", timeout=start_timeout() * 1000)

    async def close(self) -> None:
        if self._context is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._context.close(), 10)

    async def screenshot(self, path: Path) -> None:
        if self._page is None:
            raise RuntimeError("no page was opened")
        await self._page.screenshot(path=str(path), timeout=CALL_TIMEOUT * 1000)
        with contextlib.suppress(Exception):  # evidence beside the picture, not a failure
            self.log("panel", **await self._page.evaluate(page_script("read_panel.js")))

    async def body(self, request_id: str) -> str | None:
        """A finished request's body, or None (evicted, or the page is gone)."""
        if self._cdp is None:
            return None
        try:
            got = await self._cdp.send("Network.getResponseBody", {"requestId": request_id})
        except Exception:  # noqa: BLE001 - evicted or the page is gone
            return None
        if got.get("base64Encoded"):
            return base64.b64decode(got["body"]).decode("utf-8", errors="replace")
        return got.get("body")

    async def _open_page(self) -> None:
        proxy = {"server": self.proxy_url, "bypass": "<-loopback>"} if self.proxy_url else None
        steps: dict[str, float] = {}
        began = time.monotonic()

        def step(name: str) -> None:
            nonlocal began
            now = time.monotonic()
            steps[name] = round(now - began, 3)
            began = now

        # A context of its own: a fresh HTTP cache (on, in memory), cookies and connections.
        # Reduced motion: the page's spinner stands still (style.css), which saves a renderer
        # drawing 60 frames a second for every page of a matrix.
        self._context = await self.host.browser.new_context(
            proxy=proxy, viewport=VIEWPORT, service_workers="block", reduced_motion="reduce"
        )
        step("context")
        page = await self._context.new_page()
        self._page = page
        step("page")
        page.on("crash", lambda _: self.on_crash())
        page.on("console", lambda msg: self.log("console", type=msg.type, text=msg.text))
        page.on("pageerror", lambda exc: self.log("pageerror", error=str(exc)))
        cdp = await self._context.new_cdp_session(page)
        self._cdp = cdp
        for event in self.network_events:
            cdp.on(event, functools.partial(self.on_network, event))
        # Independent of one another: one round trip's wait for all three.
        await asyncio.gather(
            cdp.send("Network.enable"),
            page.expose_binding("__labUi", lambda _source, shown: self.on_ui(shown)),
            page.add_init_script(page_script("watch_page.js")),
        )
        step("watch")
        self.log("open", url=self.url, proxy=self.proxy_url, browser=self.host.version)
        await page.goto(self.url, wait_until="load", timeout=start_timeout() * 1000)
        step("goto")
        self.log("opened", seconds=steps)
