"""The page itself in a real browser: Chromium, driven by Playwright, as the lab's client.

`BrowserHost` is one Chromium for a run (`lab repro`) or for a whole `lab matrix`, with one
asyncio event loop in a thread of its own where every page of the run lives: Playwright's API is
not thread-safe, so the runner's threads only ever hand coroutines to that loop and read the
clients' plain attributes.

`BrowserClient` is one user, with the read API the runner uses from `PollingClient`
(`start`, `stop`, `done`, `ui_state`, `task_id`, `started_at`, `finished_at`, `error`, `polls`,
`warnings`, `last_state`) plus `open` (set-up, before the cell starts anyone's task: at most
LAB_BROWSER_OPENING pages open at a time), `screenshot` and `check_alive`: a fresh browser context
(its own HTTP cache, on, and its own connections; the proxy for a forward profile, with
loopback sent through it too), the sample app's real page opened at `<base>/?fix=<fix>`, a click
on Start, and from then on only watching:

- what the page shows: an init script's MutationObserver reports body[data-ui-state], the
  #status text, data-task-id, data-foreign-task-id and the #warnings items to a binding each time
  they change; the page's own ui state decides `done` and `ui_state`;
- every status answer the page got, from the page's own network traffic, through the Chrome
  DevTools Protocol's Network domain (Playwright's response API cannot tell a browser-cache hit
  from a network answer): `requestWillBeSent` (URL, method, wall time), `responseReceived` (what
  the page got: status, the headers as merged by the HTTP cache, `fromDiskCache`),
  `responseReceivedExtraInfo` (the status on the wire: 304 when the cache revalidated its copy),
  `requestServedFromCache`, `loadingFinished`/`loadingFailed` (then the body, from
  `Network.getResponseBody`), and `eventSourceMessageReceived` (one answer per event of the
  `sse` fix's stream). A poll answered by the browser's own cache has `browser_cache` set and
  says how in `browser_cache_kind`: "fresh" (no request left the browser) or "revalidated" (a
  304 confirmed the kept copy; `status` is then 304, as for the Python client).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from concurrent.futures import wait as futures_wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar
from urllib.parse import parse_qs, quote, urlsplit

from lab.clients.polling import Poll
from lab.data import settings
from lab.data.errors import ComponentError
from lab.stacks.processes import COMPONENT_MARKER, RUN_MARKER, log_tail, start_timeout
from sample_app.debug import is_debug_path
from sample_app.strategies import Strategy, StrategyBook

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, CDPSession, Page, Playwright

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
SETTLE_TIMEOUT = 1.0  # at a final ui state: how long to wait for the last answer's record
VIEWPORT = {"width": 800, "height": 600}
# The fix the page selected and its configuration, in one round trip.
READ_PAGE_SETUP = (
    "() => [document.querySelector('#fix').value,"
    " document.querySelector('#page-config').textContent]"
)
FINAL_UI_STATES = ("completed", "errored", "leaked")
EVENT_STREAM = "text/event-stream"

# Reports what the page shows to the __labUi binding whenever it changes: the page itself is
# not changed, only watched.
WATCH_PAGE = """
(() => {
  let last = "";
  const report = () => {
    const body = document.body;
    if (!body || typeof window.__labUi !== "function") return;
    const status = document.getElementById("status");
    const snapshot = {
      ui: body.dataset.uiState || null,
      status: status ? status.textContent : "",
      taskId: body.dataset.taskId || null,
      taskState: body.dataset.taskState || null,
      foreignTaskId: body.dataset.foreignTaskId || null,
      retries: Number(body.dataset.retries || 0),
      warnings: Array.from(document.querySelectorAll("#warnings li"), (li) => li.textContent),
    };
    const seen = JSON.stringify(snapshot);
    if (seen === last) return;
    last = seen;
    window.__labUi({ ...snapshot, t: Date.now() / 1000 });
  };
  const watch = () => {
    new MutationObserver(report).observe(document.body, {
      attributes: true, childList: true, characterData: true, subtree: true,
    });
    report();
  };
  if (document.body) watch();
  else document.addEventListener("DOMContentLoaded", watch);
})();
"""

# The page's debug panel as text, one field per row (None for a row the page hides): logged
# (client.jsonl, event "panel") beside the screenshot at the verdict.
READ_PANEL = """
() => Object.fromEntries(
  Array.from(document.querySelectorAll("#debug dd[id^='debug-']"), (dd) => [
    dd.id.slice("debug-".length).replaceAll("-", "_"),
    dd.closest("[hidden]") ? null : dd.textContent,
  ])
)
"""

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
                    f"could not be started ({executable}): {_first_line(exc)}",
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
            args=CHROMIUM_FLAGS,
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
            args=CHROMIUM_FLAGS,
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


@dataclass
class BrowserPoll(Poll):
    """A lab.clients.polling.Poll, plus how the browser's own HTTP cache took part."""

    browser_cache_kind: str | None = None  # "fresh": no request sent; "revalidated": a 304


@dataclass
class _Request:
    """One request of the page's that the client follows, while it is in flight."""

    id: str
    kind: str  # "poll", "events" or "start"
    url: str
    method: str
    sent_at: float
    timestamp: float  # the browser's monotonic clock, for the events that follow
    status: int | None = None
    headers: dict[str, str] | None = None
    mime: str | None = None
    from_cache: bool = False
    retry: int = 0
    stream: int | None = None
    settled: bool = False  # events: its failure (or final answer) is already recorded


class BrowserClient:
    """The sample app's page in Chromium, clicked and watched; the runner reads `ui_state`,
    `polls` and `task_id` from its own thread while the page runs on the host's loop."""

    kind = "browser"

    def __init__(
        self,
        *,
        host: BrowserHost,
        base_url: str,
        proxy_url: str | None,
        book: StrategyBook,
        strategy: Strategy,
        poll_interval: float,
        task_duration: float,
        log_path: Path,
        status_url_style: str = "path",
    ) -> None:
        self.host = host
        self.base_url = base_url.rstrip("/")
        self.proxy_url = proxy_url
        self.book = book
        self.strategy = strategy
        self.poll_interval = poll_interval
        self.task_duration = task_duration
        self.log_path = log_path
        self.status_url_style = status_url_style
        self.page_url = f"{self.base_url}/?fix={quote(strategy.name)}"
        base = urlsplit(self.base_url)
        self._origin = (base.scheme, base.netloc)
        self._prefix = base.path.rstrip("/")
        self._status_routes = [_status_route(t) for t in book.status_paths.values()]
        self._events_path = re.compile(_path_regex(book.events_path))
        self.ui_state = "idle"  # idle -> running -> completed | errored | leaked
        self.task_id: str | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.error: str | None = None
        self.foreign_task_id: str | None = None
        self.status_text: str = ""
        self.warnings: list[str] = []
        self.polls: list[Poll] = []
        self.crashed: str | None = None
        self.setup_failed: str | None = None
        # Loop-side state.
        self._context: BrowserContext | None = None
        self._page: Page | None = None
        self._cdp: CDPSession | None = None
        self._run_task: Future[None] | None = None
        self._requests: dict[str, _Request] = {}
        self._wire_status: dict[str, int] = {}
        self._served_from_cache: set[str] = set()
        self._chain: asyncio.Future[None] | None = None
        self._failures = 0
        self._streams = 0
        self._clock_offset: float | None = None  # wall time minus the browser's monotonic clock
        self._retries_seen = 0
        self._finishing = False
        self._stopping = False

    # -- the runner's side
    def open(self, check_alive: Callable[[], None] = lambda: None) -> None:
        """Open the page, ready for the click: set-up, before anyone starts a task. Waits its
        turn (LAB_BROWSER_OPENING), calling `check_alive` meanwhile (it may raise to give up);
        ComponentError if the page cannot be opened (no profile touches the page itself, so
        that is the lab's problem, not a verdict)."""
        limit = 3 * start_timeout()
        opening = self.host.submit(self._open())
        deadline = time.monotonic() + limit
        try:
            while not opening.done():
                check_alive()
                if time.monotonic() > deadline:
                    self._fail_setup(f"could not open {self.page_url} within {limit:g} s")
                futures_wait([opening], timeout=0.1)
        except BaseException:
            opening.cancel()
            raise
        if opening.cancelled():
            self._fail_setup(f"opening {self.page_url} was cancelled")
        if (exc := opening.exception()) is not None:
            self._fail_setup(f"could not open {self.page_url}: {_first_line(exc)}")

    def _fail_setup(self, problem: str) -> NoReturn:
        self.setup_failed = problem
        self._log("setup_failed", error=problem)
        raise ComponentError(COMPONENT, problem, log_tail(self.host.log_path))

    def start(self) -> None:
        """The user clicks Start (the page is opened first if `open` was not called)."""
        self._run_task = self.host.submit(self._run())

    def stop(self) -> None:
        self._stopping = True
        with contextlib.suppress(Exception):
            self.host.call(self._close(), timeout=CALL_TIMEOUT)

    def screenshot(self, path: Path) -> bool:
        """What the user sees right now, as a PNG; False (and a log line) if it failed."""
        try:
            self.host.call(self._screenshot(path), timeout=CALL_TIMEOUT)
            return True
        except Exception as exc:  # noqa: BLE001 - evidence, not control flow
            self._log("screenshot_failed", error=f"{type(exc).__name__}: {exc}")
            return False

    def check_alive(self, during: str = "during the run") -> None:
        self.host.check_alive(during)
        if self.crashed:
            raise ComponentError(COMPONENT, f"the page crashed {during}: {self.crashed}")
        if self.setup_failed:
            raise ComponentError(COMPONENT, self.setup_failed, log_tail(self.host.log_path))

    @property
    def last_state(self) -> str | None:
        return next((poll.state for poll in reversed(self.polls) if poll.state), None)

    @property
    def done(self) -> bool:
        return self.ui_state in FINAL_UI_STATES

    # -- on the host's loop
    async def _open(self) -> None:
        if self._page is not None:
            return
        assert self.host.opening is not None
        async with self.host.opening:
            await self._open_page()
        # What the page says about itself is read after the opening slot is given back.
        await self._check_page()

    async def _run(self) -> None:
        try:
            await self._open()
            assert self._page is not None
        except Exception as exc:  # noqa: BLE001 - reported by check_alive, in the runner's thread
            if not self._stopping:
                self.setup_failed = f"could not open {self.page_url}: {_first_line(exc)}"
                self._log("setup_failed", error=self.setup_failed)
            return
        # The user clicks Start: the page takes it from here.
        self.started_at = time.time()
        try:
            await self._page.click("#start", timeout=start_timeout() * 1000)
        except Exception as exc:  # noqa: BLE001
            if not self._stopping:
                self.setup_failed = f"could not click Start on {self.page_url}: {_first_line(exc)}"
                self._log("setup_failed", error=self.setup_failed)
            return
        self._log("clicked", fix=self.strategy.name)

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
        page.on("crash", lambda _: self._on_crash())
        page.on("console", lambda msg: self._log("console", type=msg.type, text=msg.text))
        page.on("pageerror", lambda exc: self._log("pageerror", error=str(exc)))
        cdp = await self._context.new_cdp_session(page)
        self._cdp = cdp
        handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "Network.requestWillBeSent": self._on_request,
            "Network.requestServedFromCache": self._on_served_from_cache,
            "Network.responseReceivedExtraInfo": self._on_extra_info,
            "Network.responseReceived": self._on_response,
            "Network.loadingFinished": self._on_finished,
            "Network.loadingFailed": self._on_failed,
            "Network.eventSourceMessageReceived": self._on_event_message,
        }
        for event, handler in handlers.items():
            cdp.on(event, _guarded(handler, self._log))
        # Independent of one another: one round trip's wait for all three.
        await asyncio.gather(
            cdp.send("Network.enable"),
            page.expose_binding("__labUi", lambda _source, shown: self._on_ui(shown)),
            page.add_init_script(WATCH_PAGE),
        )
        step("watch")
        self._log("open", url=self.page_url, proxy=self.proxy_url, browser=self.host.version)
        await page.goto(self.page_url, wait_until="load", timeout=start_timeout() * 1000)
        step("goto")
        self._log("opened", seconds=steps)

    async def _check_page(self) -> None:
        """The page selected our fix, and polls at the scenario's interval (else a note)."""
        assert self._page is not None
        selected, config_text = await self._page.evaluate(READ_PAGE_SETUP)
        if selected != self.strategy.name:
            raise RuntimeError(f"the page selected fix {selected!r}, not {self.strategy.name!r}")
        config = json.loads(config_text or "{}")
        if config.get("pollIntervalMs") != round(self.poll_interval * 1000):
            self._log(
                "note",
                message=f"the page polls every {config.get('pollIntervalMs')} ms (its app's "
                f"setting), the scenario says {round(self.poll_interval * 1000)} ms",
            )

    async def _close(self) -> None:
        self._stopping = True
        if self._run_task is not None and not self._run_task.done():
            self._run_task.cancel()
        if self._context is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._context.close(), 10)

    async def _screenshot(self, path: Path) -> None:
        if self._page is None:
            raise RuntimeError("no page was opened")
        await self._page.screenshot(path=str(path), timeout=CALL_TIMEOUT * 1000)
        with contextlib.suppress(Exception):  # evidence beside the picture, not a failure
            self._log("panel", **await self._page.evaluate(READ_PANEL))

    def _on_crash(self) -> None:
        if not self._stopping:
            self.crashed = "the renderer process crashed"
            self._log("crash")

    # -- what the page shows
    def _on_ui(self, shown: dict[str, Any]) -> None:
        if self._stopping or self.done:
            return
        if shown.get("taskId") and self.task_id is None:
            self.task_id = shown["taskId"]
        self.status_text = shown.get("status") or ""
        for message in shown.get("warnings") or []:
            if message not in self.warnings:
                self.warnings.append(message)
                self._log("warning", message=message)
        retries = int(shown.get("retries") or 0)
        if retries > self._retries_seen:
            self._retries_seen = retries
            self._log("retry", retry=retries, status=self.status_text)
        ui = shown.get("ui") or "idle"
        if ui == self.ui_state or self._finishing:
            return
        if ui not in FINAL_UI_STATES:
            self.ui_state = ui
            return
        # Final: settle the network record first, so the verdict sees the answer that ended it.
        self._finishing = True
        asyncio.ensure_future(self._finish(ui, shown))

    async def _finish(self, ui: str, shown: dict[str, Any]) -> None:
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while time.monotonic() < deadline and not self._settled(ui):
            await asyncio.sleep(0.01)
        if self._chain is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._chain), SETTLE_TIMEOUT)
        self.finished_at = shown.get("t") or time.time()
        if ui == "leaked":
            self.foreign_task_id = shown.get("foreignTaskId")
        if ui == "errored":
            self.error = (shown.get("status") or "").removeprefix("Error: ")
        self.ui_state = ui
        self._log(
            "ui",
            ui_state=ui,
            state=shown.get("taskState"),
            status=shown.get("status"),
            foreign_task_id=shown.get("foreignTaskId"),
            error=self.error,
        )

    def _settled(self, ui: str) -> bool:
        if any(r.kind == "poll" for r in self._requests.values()):
            return False
        if self._chain is not None and not self._chain.done():
            return False
        if self.strategy.transport == "sse" and ui != "errored":
            last = self.polls[-1] if self.polls else None
            return last is not None and (
                last.foreign_task_id is not None or last.state in self.book.final_states
            )
        return True

    # -- the page's network traffic
    def _classify(self, method: str, url: str) -> str | None:
        parts = urlsplit(url)
        if (parts.scheme, parts.netloc) != self._origin:
            return None
        path = parts.path
        if self._prefix:
            if not path.startswith(self._prefix + "/"):
                return None
            path = path[len(self._prefix) :]
        if method == "POST" and path == "/tasks":
            return "start"
        if is_debug_path(path):
            return None  # the page's debug panel asking for the truth: not a poll
        if self._events_path.fullmatch(path):
            return "events"
        query = parse_qs(parts.query)
        for pattern, task_param in self._status_routes:
            if pattern.fullmatch(path) and (task_param is None or task_param in query):
                return "poll"
        return None

    def _wall(self, timestamp: float) -> float:
        if self._clock_offset is None:
            return time.time()
        return timestamp + self._clock_offset

    def _on_request(self, event: dict[str, Any]) -> None:
        self._clock_offset = event["wallTime"] - event["timestamp"]
        if self._stopping:
            return
        request = event["request"]
        kind = self._classify(request["method"], request["url"])
        if kind is None:
            return
        tracked = _Request(
            id=event["requestId"],
            kind=kind,
            url=request["url"],
            method=request["method"],
            sent_at=event["wallTime"],
            timestamp=event["timestamp"],
            retry=self._failures,
        )
        if kind == "events":
            self._streams += 1
            tracked.stream = self._streams
        self._requests[tracked.id] = tracked

    def _on_served_from_cache(self, event: dict[str, Any]) -> None:
        self._served_from_cache.add(event["requestId"])

    def _on_extra_info(self, event: dict[str, Any]) -> None:
        # May come before requestWillBeSent: kept by id until the request finishes.
        self._wire_status[event["requestId"]] = event["statusCode"]

    def _on_response(self, event: dict[str, Any]) -> None:
        tracked = self._requests.get(event["requestId"])
        if tracked is None:
            return
        response = event["response"]
        tracked.status = response["status"]
        tracked.headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
        tracked.mime = response.get("mimeType")
        tracked.from_cache = bool(response.get("fromDiskCache"))
        if tracked.kind == "events":
            mime = (tracked.mime or "").lower()
            if tracked.status != 200:
                self._stream_failed(tracked, f"HTTP {tracked.status}", event["timestamp"])
            elif mime != EVENT_STREAM:
                what = mime or "no content type"
                self._stream_failed(tracked, f"not an event stream ({what})", event["timestamp"])

    def _on_finished(self, event: dict[str, Any]) -> None:
        tracked = self._requests.pop(event["requestId"], None)
        wire = self._wire_status.pop(event["requestId"], None)
        fresh = event["requestId"] in self._served_from_cache
        self._served_from_cache.discard(event["requestId"])
        if tracked is None or self._stopping:
            return
        received_at = self._wall(event["timestamp"])
        if tracked.kind == "events":
            self._stream_failed(tracked, "the event stream ended before a final state", None)
            return
        self._in_order(self._answer(tracked, received_at, wire, fresh or tracked.from_cache))

    def _on_failed(self, event: dict[str, Any]) -> None:
        tracked = self._requests.pop(event["requestId"], None)
        self._wire_status.pop(event["requestId"], None)
        self._served_from_cache.discard(event["requestId"])
        if tracked is None or self._stopping:
            return
        error = event.get("errorText") or "the request failed"
        if tracked.kind == "events":
            if not event.get("canceled"):  # canceled: the page closed it itself
                self._stream_failed(tracked, error, event["timestamp"])
            return
        if tracked.kind == "start":
            self._log("start", status=None, error=error)
            return
        poll = self._new_poll(tracked, self._wall(event["timestamp"]))
        poll.status, poll.error = None, error
        self._in_order(_ready(poll))

    def _on_event_message(self, event: dict[str, Any]) -> None:
        tracked = self._requests.get(event["requestId"])
        if tracked is None or self._stopping or tracked.settled:
            return
        at = self._wall(event["timestamp"])
        poll = self._new_poll(tracked, at)
        poll.sent_at = at
        _read_answer(poll, event.get("data") or "", self.task_id)
        if poll.error is None and (
            poll.foreign_task_id is not None or poll.state in self.book.final_states
        ):
            tracked.settled = True
        self._in_order(_ready(poll))

    def _stream_failed(self, tracked: _Request, error: str, timestamp: float | None) -> None:
        if tracked.settled or self.done:
            return
        tracked.settled = True
        at = self._wall(timestamp) if timestamp is not None else time.time()
        poll = self._new_poll(tracked, at)
        poll.sent_at = tracked.sent_at
        poll.state, poll.error = None, error
        self._in_order(_ready(poll))

    def _new_poll(self, tracked: _Request, received_at: float) -> BrowserPoll:
        poll = BrowserPoll(
            0, tracked.sent_at, received_at, tracked.url, tracked.status, None, retry=tracked.retry
        )
        poll.method, poll.stream = tracked.method, tracked.stream
        headers = tracked.headers or {}
        poll.age = headers.get("age")
        poll.date = headers.get("date")
        poll.via = headers.get("via")
        poll.x_cache = headers.get("x-cache")
        poll.cache_control = headers.get("cache-control")
        poll.etag = headers.get("etag")
        return poll

    async def _answer(
        self, tracked: _Request, received_at: float, wire: int | None, from_cache: bool
    ) -> BrowserPoll | None:
        if tracked.kind == "start":
            body = await self._body(tracked.id)
            self._log("start", status=tracked.status, body=(body or "")[:500])
            with contextlib.suppress(ValueError, TypeError, KeyError):
                self.task_id = self.task_id or json.loads(body or "")["task_id"]
            return None
        poll = self._new_poll(tracked, received_at)
        if from_cache:
            poll.browser_cache, poll.browser_cache_kind = True, "fresh"
        elif wire == 304 and tracked.status != 304:
            poll.browser_cache, poll.browser_cache_kind = True, "revalidated"
            poll.status = 304
        status = tracked.status
        if status is None or not 200 <= status < 300:
            poll.error = f"HTTP {status}"
            return poll
        body = await self._body(tracked.id)
        if body is None:
            poll.error = "the answer's body could not be read from the browser"
            return poll
        _read_answer(poll, body, self.task_id)
        return poll

    async def _body(self, request_id: str) -> str | None:
        if self._cdp is None:
            return None
        try:
            got = await self._cdp.send("Network.getResponseBody", {"requestId": request_id})
        except Exception:  # noqa: BLE001 - evicted or the page is gone
            return None
        if got.get("base64Encoded"):
            return base64.b64decode(got["body"]).decode("utf-8", errors="replace")
        return got.get("body")

    def _in_order(self, answer: Awaitable[BrowserPoll | None]) -> None:
        """Record answers in the order their requests finished, though reading a body waits."""
        before = self._chain

        async def record() -> None:
            poll = await answer
            if before is not None:
                with contextlib.suppress(Exception):
                    await before
            if poll is None or self._stopping:
                return
            poll.seq = len(self.polls) + 1
            poll.retry = self._failures if poll.stream is None else poll.retry
            if poll.error:
                self._failures += 1
            else:
                self._failures = 0
            self.polls.append(poll)
            self._log("poll", **asdict(poll))

        self._chain = asyncio.ensure_future(record())

    def _log(self, event: str, **fields: Any) -> None:
        line = json.dumps({"time": time.time(), "event": event, "client": self.kind, **fields})
        with contextlib.suppress(OSError), self.log_path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


async def _ready(poll: BrowserPoll) -> BrowserPoll:
    return poll


def _guarded(
    handler: Callable[[dict[str, Any]], None], log: Callable[..., None]
) -> Callable[[dict[str, Any]], None]:
    """A bug in a handler is logged, not lost in Playwright's event emitter."""

    def run(event: dict[str, Any]) -> None:
        try:
            handler(event)
        except Exception as exc:  # noqa: BLE001
            log("client_bug", error=f"{type(exc).__name__}: {exc}", handler=handler.__name__)

    return run


def _status_route(template: str) -> tuple[re.Pattern[str], str | None]:
    """A status URL template as (path regex, allowing the page's path nonce; the query parameter
    holding the task id, or None)."""
    path, _, query = template.partition("?")
    param = next((p.partition("=")[0] for p in query.split("&") if p.endswith("={task_id}")), None)
    return re.compile(_path_regex(path) + "(?:/[^/]+)?"), param


def _path_regex(path: str) -> str:
    return re.escape(path).replace(re.escape("{task_id}"), "[^/]+")


def _read_answer(poll: Poll, text: str, task_id: str | None) -> None:
    """The page's reading of a status document (requestStatus and handleAnswer in poller.js)."""
    try:
        body = json.loads(text)
        if not isinstance(body, dict) or not isinstance(body.get("state"), str):
            raise ValueError("no state")
    except ValueError as exc:
        poll.error = f"unreadable status answer: {exc}"
        return
    poll.state = body["state"]
    poll.served_at = body.get("served_at")
    poll.server_seq = body.get("seq")
    poll.task_id = body.get("task_id")
    if poll.task_id is not None and task_id is not None and poll.task_id != task_id:
        poll.foreign_task_id = poll.task_id
