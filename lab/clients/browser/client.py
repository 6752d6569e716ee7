"""`BrowserClient`: one user, the sample app's real page in Chromium, clicked and watched.

It is a `lab.clients.base.Client` like the Python client, plus real set-up: `open` (before
the cell starts anyone's task; at most LAB_BROWSER_OPENING pages open at a time), `screenshot` and
`check_alive`. The page is opened at `<base>/?fix=<fix>` in a context of its own, Start is
clicked, and from then on it is only watched:

- what the page shows: an init script's MutationObserver reports body[data-ui-state], the
  #status text, data-task-id, data-foreign-task-id and the #warnings items to a binding each time
  they change; the page's own ui state decides `done` and `ui_state`;
- every status answer the page got, from the page's own network traffic (`NetworkRecorder`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

from lab.clients.base import FINAL_UI_STATES, ClientBase
from lab.clients.browser.host import CALL_TIMEOUT, COMPONENT, BrowserHost, first_line
from lab.clients.browser.page import BrowserPage
from lab.clients.browser.recorder import NetworkRecorder
from lab.data.errors import ComponentError
from lab.stacks.processes import log_tail, start_timeout

SETTLE_TIMEOUT = 1.0  # at a final ui state: how long to wait for the last answer's record


@dataclass(kw_only=True, eq=False, repr=False)
class BrowserClient(ClientBase):
    """The sample app's page in Chromium, clicked and watched; the runner reads `ui_state`,
    `polls` and `task_id` from its own thread while the page runs on the host's loop."""

    kind = "browser"
    host: BrowserHost

    def __post_init__(self) -> None:
        super().__post_init__()
        self.log_label = {"client": self.kind}
        self.page_url = f"{self.base_url}/?fix={quote(self.strategy.name)}"
        self.status_text: str = ""
        self.crashed: str | None = None
        self.setup_failed: str | None = None
        self.network = NetworkRecorder(self, self._fetch_body)
        self.page = BrowserPage(
            host=self.host,
            url=self.page_url,
            proxy_url=self.proxy_url,
            log=self.log,
            on_ui=self._on_ui,
            on_crash=self._on_crash,
            on_network=self.network.handle,
            network_events=self.network.events,
        )
        # Loop-side state.
        self._run_task: Future[None] | None = None
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
                # A Chromium that died leaves some of Playwright's calls waiting for ever.
                self.host.check_alive("while the page was opening")
                if time.monotonic() > deadline:
                    self._fail_setup(f"could not open {self.page_url} within {limit:g} s")
                futures_wait([opening], timeout=0.1)
        except BaseException:
            opening.cancel()
            raise
        if opening.cancelled():
            self._fail_setup(f"opening {self.page_url} was cancelled")
        if (exc := opening.exception()) is not None:
            self._fail_setup(f"could not open {self.page_url}: {first_line(exc)}{tls_hint(exc)}")

    def _fail_setup(self, problem: str) -> NoReturn:
        self.setup_failed = problem
        self.log("setup_failed", error=problem)
        raise ComponentError(COMPONENT, problem, log_tail(self.host.log_path))

    def start(self) -> None:
        """The user clicks Start (the page is opened first if `open` was not called)."""
        self._run_task = self.host.submit(self._run())

    def stop(self) -> None:
        self._stopping = True
        self.network.stopping = True
        with contextlib.suppress(Exception):
            self.host.call(self._close(), timeout=CALL_TIMEOUT)

    def screenshot(self, path: Path) -> bool:
        """What the user sees right now, as a PNG; False (and a log line) if it failed."""
        try:
            self.host.call(self.page.screenshot(path), timeout=CALL_TIMEOUT)
            return True
        except Exception as exc:  # noqa: BLE001 - evidence, not control flow
            self.log("screenshot_failed", error=f"{type(exc).__name__}: {exc}")
            return False

    def check_alive(self, during: str = "during the run") -> None:
        self.host.check_alive(during)
        if self.crashed:
            raise ComponentError(COMPONENT, f"the page crashed {during}: {self.crashed}")
        if self.setup_failed:
            raise ComponentError(COMPONENT, self.setup_failed, log_tail(self.host.log_path))

    # -- on the host's loop
    async def _open(self) -> None:
        if self.page.opened:
            return
        await self.page.open()
        # What the page says about itself is read after the opening slot is given back.
        await self._check_page()

    async def _check_page(self) -> None:
        """The page selected our fix, and polls at the scenario's interval (else a note)."""
        selected, config = await self.page.read_setup()
        if selected != self.strategy.name:
            raise RuntimeError(f"the page selected fix {selected!r}, not {self.strategy.name!r}")
        if config.get("pollIntervalMs") != round(self.poll_interval * 1000):
            self.log(
                "note",
                message=f"the page polls every {config.get('pollIntervalMs')} ms (its app's "
                f"setting), the scenario says {round(self.poll_interval * 1000)} ms",
            )

    async def _run(self) -> None:
        try:
            await self._open()
        except Exception as exc:  # noqa: BLE001 - reported by check_alive, in the runner's thread
            if not self._stopping:
                self.setup_failed = (
                    f"could not open {self.page_url}: {first_line(exc)}{tls_hint(exc)}"
                )
                self.log("setup_failed", error=self.setup_failed)
            return
        # The user clicks Start: the page takes it from here.
        self.started_at = time.time()
        try:
            await self.page.click_start()
        except Exception as exc:  # noqa: BLE001
            if not self._stopping:
                self.setup_failed = f"could not click Start on {self.page_url}: {first_line(exc)}"
                self.log("setup_failed", error=self.setup_failed)
            return
        self.log("clicked", fix=self.strategy.name)

    async def _close(self) -> None:
        self._stopping = True
        if self._run_task is not None and not self._run_task.done():
            self._run_task.cancel()
        await self.page.close()

    def _on_crash(self) -> None:
        if not self._stopping:
            self.crashed = "the renderer process crashed"
            self.log("crash")

    def _fetch_body(self, request_id: str) -> None:
        async def deliver() -> None:
            self.network.body(request_id, await self.page.body(request_id))

        asyncio.ensure_future(deliver())

    # -- what the page shows
    def _on_ui(self, shown: dict[str, Any]) -> None:
        if self._stopping or self.done:
            return
        if shown.get("taskId") and self.task_id is None:
            self.task_id = shown["taskId"]
        self.status_text = shown.get("status") or ""
        for message in shown.get("warnings") or []:
            if message not in self.warnings:
                self.warn(message)
        retries = int(shown.get("retries") or 0)
        if retries > self._retries_seen:
            self._retries_seen = retries
            self.log("retry", retry=retries, status=self.status_text)
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
        while time.monotonic() < deadline and not self.network.settled(ui):
            await asyncio.sleep(0.01)
        # Then up to as long again for a body still being read (the last answer's, perhaps).
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while time.monotonic() < deadline and self.network.pending:
            await asyncio.sleep(0.01)
        if ui == "leaked":
            self.foreign_task_id = shown.get("foreignTaskId")
        if ui == "errored":
            self.error = (shown.get("status") or "").removeprefix("Error: ")
        self.show_final(
            ui,
            shown.get("t") or time.time(),
            state=shown.get("taskState"),
            status=shown.get("status"),
            foreign_task_id=shown.get("foreignTaskId"),
            error=self.error,
        )


def tls_hint(exc: BaseException) -> str:
    """What a certificate error means here: the lab never adds its CAs to a trust store, it
    names the run's keys to Chromium (--ignore-certificate-errors-spki-list); a Chromium that
    ignores that switch (LAB_CHROMIUM naming another browser, or a policy) cannot run HTTPS
    scenarios."""
    if "ERR_CERT_" not in str(exc):
        return ""
    return (
        " (Chromium did not accept the run's certificate: the lab trusts its CAs only through "
        "--ignore-certificate-errors-spki-list, never through a trust store, and this Chromium "
        "did not honour it; use Debian's chromium-headless-shell or chromium, or the Python "
        "client)"
    )
