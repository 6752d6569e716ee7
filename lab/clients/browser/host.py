"""Launching the browser: one Chromium for a run (`lab repro`) or for a whole `lab matrix`,
with one asyncio event loop in a thread of its own where every page of the run lives.
Playwright's API is not thread-safe, so the runner's threads only ever hand coroutines to that
loop and read the clients' plain attributes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from lab.data import settings
from lab.data.errors import ComponentError
from lab.stacks.processes import COMPONENT_MARKER, RUN_MARKER, log_tail, start_timeout

if TYPE_CHECKING:
    from playwright.async_api import Browser, Playwright

COMPONENT = "browser"
INSTALL_HINT = "apt-get install -y chromium-headless-shell (or chromium, or set LAB_CHROMIUM)"
PLAYWRIGHT_HINT = "pip install 'playwright>=1.45'"
# Chromium's own headless shell first: the same Blink, V8, network stack and HTTP cache
# without the desktop browser around them, and what Playwright itself runs for headless
# Chromium. On 2 cores Chromium's processes used 43% less CPU a cell in it than in the full
# browser (102 cells of the browser matrix, measured per process), every cell the same outcome.
CHROMIUM_CANDIDATES = ("chromium-headless-shell", "chromium")
# Debian's /usr/bin/chromium-headless-shell is a shell script that runs this binary as its
# child, without exec: the lab runs the binary itself, so that the browser process is the one
# Playwright started (and a signal to it reaches the browser, not a waiting shell).
DEBIAN_HEADLESS_SHELL = "/usr/lib/chromium/chromium-headless-shell"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
# Chromium keeps only the last --disable-features, so this one repeats Playwright's own list
# (chromiumSwitches.ts in Playwright 1.65; unknown names are ignored) before adding the omnibox
# popups that every new window (every context) pre-renders: each cost a tenth of a core, for
# nothing, as long as its window was open.
PLAYWRIGHT_DISABLED_FEATURES = [
    "AvoidUnnecessaryBeforeUnloadCheckSync",
    "DestroyProfileOnBrowserClose",
    "HttpsUpgrades",
    "HttpsFirstBalancedModeAutoEnable",
    "LensOverlay",
    "MediaRouter",
    "PaintHolding",
    "ThirdPartyStoragePartitioning",
    "AvoidCorsURLLoaderRestartOnRedirect",
    "TcpPortRandomizationWin",
    "OptimizationHints",
    "NetworkTimeServiceQuerying",
    "AimEnabled",
    "PreconnectToSearch",
]
LAB_DISABLED_FEATURES = ["WebUIOmniboxPopup", "WebUIOmniboxAimPopup", "WebUIOmniboxFullPopup"]
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-features=" + ",".join(PLAYWRIGHT_DISABLED_FEATURES + LAB_DISABLED_FEATURES),
]
CALL_TIMEOUT = 15.0  # any one call into the browser's loop from another thread
T = TypeVar("T")


def chromium_executable() -> str:
    """LAB_CHROMIUM, else `chromium-headless-shell` or `chromium` on the PATH, else
    /usr/bin/chromium; ComponentError if none."""
    override = settings.current().chromium
    candidates = (
        [override]
        if override
        else [
            DEBIAN_HEADLESS_SHELL,
            *(shutil.which(name) for name in CHROMIUM_CANDIDATES),
            DEFAULT_CHROMIUM,
        ]
    )
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    where = f" (LAB_CHROMIUM={override})" if override else ""
    raise ComponentError(COMPONENT, f"Chromium not found{where}: {INSTALL_HINT}")


def playwright_missing() -> str | None:
    """Why Playwright cannot be used, or None."""
    try:
        import playwright.async_api  # noqa: F401
    except ImportError as exc:
        return f"Playwright is not installed ({exc}): {PLAYWRIGHT_HINT}"
    return None


def unavailable() -> str | None:
    """Why the browser client cannot run here, or None (for tests and the CLI)."""
    if missing := playwright_missing():
        return missing
    try:
        chromium_executable()
    except ComponentError as exc:
        return str(exc)
    return None


class BrowserHost:
    """One Chromium and the event loop its pages live on; `close` is safe to call more than once
    and stops every process Playwright started (its driver and the browser)."""

    def __init__(self, run_id: str, log_path: Path) -> None:
        self.run_id = run_id
        self.log_path = log_path
        self.version: str | None = None
        self.extra_args: list[str] = []  # set before launch: the run's TLS trust
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="browser-loop", daemon=True)
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._launched: Future[None] | None = None
        self.opening: asyncio.Semaphore | None = None  # made on the loop
        self._disconnected = False
        self._closing = False
        self._closed = False

    # -- from any thread
    def launch(self) -> Callable[[], BrowserHost]:
        """Start Chromium in the background; return a function that waits until it is up."""
        if missing := playwright_missing():
            raise ComponentError(COMPONENT, missing)
        executable = chromium_executable()
        self._thread.start()
        self._launched = self.submit(self._launch(executable))

        def ready() -> BrowserHost:
            assert self._launched is not None
            try:
                self._launched.result(timeout=start_timeout() + 5)
            except ComponentError:
                raise
            except Exception as exc:  # noqa: BLE001 - any launch failure names the browser
                raise ComponentError(
                    COMPONENT,
                    f"could not be started ({executable}): {first_line(exc)}",
                    log_tail(self.log_path),
                ) from None
            return self

        return ready

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT) -> T:
        return self.submit(coro).result(timeout=timeout)

    def check_alive(self, during: str) -> None:
        if self._disconnected and not self._closing:
            raise ComponentError(COMPONENT, f"Chromium exited {during}", log_tail(self.log_path))

    @property
    def browser(self) -> Browser:
        assert self._browser is not None, "the browser was not launched"
        return self._browser

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._closing = True
        if self._thread.is_alive():
            if self._launched is not None:
                # Still launching (Ctrl-C right at the start): let it finish, then close it.
                with contextlib.suppress(Exception):
                    self._launched.result(timeout=start_timeout() + 5)
            with contextlib.suppress(Exception):
                self.call(self._shutdown(), timeout=20)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        elif not self._loop.is_closed():
            self._loop.close()
        self._kill_leftovers()
        self._log("closed")

    # -- on the loop
    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()
        # Whatever is left (a page's tasks after its context closed) ends with the loop.
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        with contextlib.suppress(Exception):
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    async def _launch(self, executable: str) -> None:
        from playwright.async_api import async_playwright

        began = time.monotonic()
        self.opening = asyncio.Semaphore(settings.current().browser_opening)
        self._playwright = await async_playwright().start()
        env = {**os.environ, RUN_MARKER: self.run_id, COMPONENT_MARKER: COMPONENT}
        env.pop("PYTHONSTARTUP", None)
        self._browser = await self._playwright.chromium.launch(
            executable_path=executable,
            headless=True,
            args=[*CHROMIUM_FLAGS, *self.extra_args],
            env=env,
            # The lab stops the browser itself, in its finally blocks, on Ctrl-C or SIGTERM.
            handle_sigint=False,
            handle_sigterm=False,
            handle_sighup=False,
            timeout=start_timeout() * 1000,
        )
        self._browser.on("disconnected", lambda _: self._on_disconnected())
        self.version = self._browser.version
        self._log(
            "launched",
            executable=executable,
            version=self.version,
            args=[*CHROMIUM_FLAGS, *self.extra_args],
            seconds=round(time.monotonic() - began, 3),
        )

    def _on_disconnected(self) -> None:
        self._disconnected = True
        if not self._closing:
            self._log("disconnected: Chromium exited")

    async def _shutdown(self) -> None:
        if self._browser is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._browser.close(), 10)
        if self._playwright is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._playwright.stop(), 10)

    def _kill_leftovers(self) -> None:
        """Chromium runs in a process group of its own, started by Playwright's driver; if a
        close failed, anything still carrying this run's marker is killed here."""
        import psutil

        for proc in psutil.process_iter():
            try:
                env = proc.environ()
                if env.get(RUN_MARKER) == self.run_id and env.get(COMPONENT_MARKER) == COMPONENT:
                    proc.kill()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue

    def _log(self, event: str, **fields: Any) -> None:
        line = json.dumps({"time": time.time(), "event": event, **fields})
        with contextlib.suppress(OSError), self.log_path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")


def first_line(exc: BaseException) -> str:
    """An exception as one line, for an error message that names the browser."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")
