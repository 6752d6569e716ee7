"""The matrix's running stacks and how one shared cell runs on them: used by `lab matrix` for
one run, and kept warm by `lab agent` for every cell it is sent.

Started once (`warm_stacks`): the brokers, one app stack per app/worker set-up and the proxies
(lab/runs/shared_stacks.py), the browser for the browser client. Each cell then runs with its
own client under a URL prefix of its own, paced by the matrix's StartPacer, and is judged once
when it ends, against the shared evidence files read as they grow.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lab.data.errors import RunStopped
from lab.data.events import StackEventReaders
from lab.data.scenarios import Scenario
from lab.judging.evidence import Verdict
from lab.runs.cell import CellRun, run_cell
from lab.runs.lifecycle import Progress, RunResources
from lab.runs.repro import verdict_for
from lab.runs.schedule import CELL_STARTS_PER_SECOND, StartPacer
from lab.runs.shared_stacks import cell_key, proxy_key, start_stacks
from lab.stacks.brokers import BrokerChoice, BrokerRuntime
from lab.stacks.proxy_hosts import ProxyKey
from lab.stacks.stack import AppStack, ProxyEndpoint

if TYPE_CHECKING:
    from lab.clients.browser import BrowserHost

ALIVE_CHECK_EVERY = 0.1  # seconds: how stale "every component is alive" may be in a cell


class CellsStopped(RunStopped):
    """Raised in the cells still running when the matrix is interrupted or fails."""


class AliveCheck:
    """Every running cell asks many times a second whether every component is alive; one
    check per interval answers them all. Set `stopping` and every cell gives up at its next
    check instead of waiting out its verdict."""

    def __init__(
        self,
        resources: RunResources,
        during: str,
        also: list[Callable[[str], None]],
    ) -> None:
        self.resources = resources
        self.during = during
        self.also = also
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._checked_at = 0.0

    def __call__(self) -> None:
        if self.stopping.is_set():
            raise CellsStopped
        if time.monotonic() - self._checked_at < ALIVE_CHECK_EVERY:
            return
        with self._lock:
            if time.monotonic() - self._checked_at < ALIVE_CHECK_EVERY:
                return
            self.resources.check_alive(self.during)
            for check in self.also:
                check(self.during)
            self._checked_at = time.monotonic()  # only after a check that passed


@dataclass
class WarmStacks:
    apps: dict[str, AppStack]
    proxies: dict[ProxyKey, ProxyEndpoint]
    runtimes: dict[str, BrokerRuntime]
    broker: str | None  # forced for every scenario, or None: each scenario's default
    browser: BrowserHost | None = None
    readers: StackEventReaders = field(default_factory=StackEventReaders)
    starts: StartPacer = field(default_factory=lambda: StartPacer(CELL_STARTS_PER_SECOND["python"]))

    def run_shared(
        self,
        sc: Scenario,
        fix: str,
        cell_dir: Path,
        prefix: str,
        check_alive: Callable[[], None],
        *,
        attempt: int,
        screenshots: str,
    ) -> tuple[CellRun, Verdict]:
        """One run of a cell on these stacks, under `prefix` (its own cache keys on the
        shared proxy, see CellPrefix), judged once, when it ends."""
        akey = cell_key(sc, fix, self.runtimes, self.broker)
        proxy = self.proxies[proxy_key(sc, akey)] if sc.uses_proxy else None
        self.starts.wait(check_alive)
        run = run_cell(
            sc,
            fix,
            self.apps[akey],
            proxy,
            cell_dir,
            check_alive,
            path_prefix=prefix,
            browser=self.browser,
            screenshots=screenshots,
        )
        run.attempt = attempt
        verdict = verdict_for(run, self.readers)
        verdict.run_dir = str(cell_dir)
        return run, verdict


def warm_stacks(
    resources: RunResources,
    shared: list[tuple[Scenario, str]],
    progress: Progress,
    *,
    client: str,
    broker: str | None,
    broker_url: str | None,
    concurrency: int,
    proxy_url: str | None = None,
    proxy_mode: str = "forward",
    app_port: int = 0,
    external_proxies: dict[str, ProxyEndpoint] | None = None,
    https: bool = False,
) -> WarmStacks:
    """Start what these shared cells need, all at once; return when it is all up."""
    browser, browser_ready = resources.browser(client, https=https)
    runtimes: dict[str, BrokerRuntime] = {}
    for kind in sorted({broker or sc.default_broker for sc, _ in shared}):
        runtimes[kind] = resources.broker(BrokerChoice(kind, broker_url if broker else None))
        progress(f"broker: {runtimes[kind].label}")
    apps, proxies = start_stacks(
        resources,
        shared,
        concurrency,
        proxy_url,
        proxy_mode,
        runtimes,
        broker,
        app_port,
        external_proxies,
    )
    if browser_ready:
        browser_ready()
    pacer = StartPacer(CELL_STARTS_PER_SECOND[client])
    return WarmStacks(apps, proxies, runtimes, broker, browser, starts=pacer)
