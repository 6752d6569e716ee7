"""One cell: one scenario with one fix, on stacks that are already running."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lab.clients.base import Client, start_neighbours
from lab.clients.load import StreamResult, TaskStream
from lab.clients.polling import PollingClient
from lab.data import fixes
from lab.data.scenarios import Outcome, Scenario
from lab.judging.proof import kept_asking
from lab.stacks.stack import AppStack, ProxyEndpoint
from sample_app import strategies

# How long past duration + hang window a task that will finish may take (queued, or slowed by
# a busy machine) before the lab calls the UI hung anyway.
TASK_START_GRACE = 20.0
NEVER_FINISHING_DURATION = 600.0  # the app's longest task: "forever" for a lab run
WAIT_STEP = 0.05  # seconds between looks at the client while waiting for the verdict
START_ANSWER_TIMEOUT = 15.0  # for the UI's Start to be answered while other users keep coming
SCREENSHOT = "screenshot.png"  # the browser client's view at the verdict, in the cell's folder

if TYPE_CHECKING:
    from lab.clients.browser import BrowserHost


@dataclass
class CellRun:
    scenario: Scenario
    fix: str
    app: AppStack
    proxy: ProxyEndpoint | None
    client: Client
    observed: Outcome
    seconds: float  # from the cell's start (or the run's, for lab repro) to the verdict
    neighbours: list[PollingClient] = field(default_factory=list)
    stream: StreamResult | None = None  # the scenario's [load], sent before the client started
    backend_state: str | None = None  # what the result backend held at the verdict
    attempt: int = 1  # the matrix's runs of this cell in this round, this one included
    decided_at: float | None = None  # epoch seconds: when the verdict fell


def task_duration(scenario: Scenario) -> float:
    """How long the client asks the task to take: "forever" when the scenario's task never
    finishes. The app stack's default duration is set from it too: the page posts that one."""
    if scenario.worker.task_never_finishes:
        return NEVER_FINISHING_DURATION
    return scenario.task_duration


def task_stream(
    scenario: Scenario,
    app: AppStack,
    fix: str,
    path: Path,
    check_alive: Callable[[], None],
    broker_refused: Callable[[], bool] | None = None,
) -> TaskStream:
    """The scenario's other users ([load]) on the app, their tasks recorded in `path`."""
    return TaskStream(
        scenario.load,
        app.url,
        fixes.poll_strategy(fix),
        app.task_events,
        path,
        check_alive,
        broker_refused,
    )


def make_client(
    scenario: Scenario,
    fix: str,
    app: AppStack,
    proxy: ProxyEndpoint | None,
    log_path: Path,
    path_prefix: str = "",
    browser: BrowserHost | None = None,
) -> Client:
    """The Python client, or with `browser` the page itself in that browser."""
    base_url, proxy_url = proxy.client_route(app.url) if proxy else (app.url, None)
    base_url += path_prefix
    book = strategies.load()
    common = {
        "base_url": base_url,
        "proxy_url": proxy_url,
        "book": book,
        "strategy": book.get(fixes.poll_strategy(fix)),
        "poll_interval": scenario.poll_interval,
        # The page posts its app's default duration (task_duration(scenario), see the stacks).
        "task_duration": task_duration(scenario),
        "log_path": log_path,
        "status_url_style": scenario.app.status_url_style,
        "verify": app.tls.client_context() if app.tls else None,
    }
    if browser is not None:
        from lab.clients.browser import BrowserClient

        return BrowserClient(host=browser, **common)
    return PollingClient(**common)


def wait_for_outcome(
    client: Client, scenario: Scenario, app: AppStack, check_alive: Callable[[], None]
) -> Outcome:
    """completed/errored/leaked as soon as the client stops; hung after the hang window."""
    task_will_not_finish = not scenario.worker.running or scenario.worker.task_never_finishes
    give_up_after = scenario.task_duration + scenario.hang_window + TASK_START_GRACE
    while True:
        check_alive()
        if client.done:
            return Outcome(client.ui_state)
        now = time.time()
        # From when the UI should have shown the end: the finish, or for a task that will not
        # finish, when it would have (its duration after Start).
        finished = app.task_events.finished_at(client.task_id)
        due = finished
        if due is None and task_will_not_finish and client.started_at:
            due = client.started_at + scenario.task_duration
        # Hung only with proof: the hang window has passed since then, and the UI kept asking
        # meanwhile (polls sent after it, each answered "running"). The proof is counted in
        # polls, not seconds: a busy machine that polls less often waits longer for the same
        # proof, so a fix that needs a few polls to recover (detect-stale) gets them. A client
        # whose polls get no answer (a proxy holding them, or a starved machine) gets up to
        # 3 windows.
        waited = now - due if due is not None else 0.0
        if due is not None and (
            (
                waited >= scenario.hang_window
                and _ui_kept_asking(client, scenario, due, finished is not None)
            )
            or waited >= 3 * scenario.hang_window
        ):
            return Outcome.hung
        if due is None and client.started_at and now - client.started_at > give_up_after:
            return Outcome.hung
        time.sleep(WAIT_STEP)


def _ui_kept_asking(client: Client, scenario: Scenario, due: float, finished: bool) -> bool:
    """Enough polls sent after `due` were answered with a state (proof.kept_asking). An event
    stream says a state once and keeps it: for a task that will not finish, the one message
    that came is the proof."""
    polls = list(client.polls)
    if not finished and client.strategy.transport == "sse":
        return any(poll.state for poll in polls)
    return kept_asking(polls, due, scenario.hang_window, scenario.poll_interval)


def run_cell(
    scenario: Scenario,
    fix: str,
    app: AppStack,
    proxy: ProxyEndpoint | None,
    logs_dir: Path,
    check_alive: Callable[[], None],
    began: float | None = None,
    path_prefix: str = "",
    browser: BrowserHost | None = None,
    broker_refused: Callable[[], bool] | None = None,
    screenshots: str = "all",
) -> CellRun:
    """Run one cell; `path_prefix` (e.g. /_lab/<cell>) gives it cache keys of its own.

    With `browser`, the client is the real page in that browser (the neighbours, other users
    who only need to fill a shared cache first, stay Python clients), and a screenshot of the
    page at the verdict goes to the cell's folder: always, or with screenshots="mismatches"
    only when the outcome was not the expected one (a screenshot costs Chromium about a fifth
    of a whole cell's CPU; a matrix of hundreds of cells takes them where they tell something).
    """
    logs_dir.mkdir(parents=True, exist_ok=True)
    began = time.monotonic() if began is None else began
    neighbours = [
        make_client(
            scenario, fix, app, proxy, logs_dir / f"client-neighbour-{n}.jsonl", path_prefix
        )
        for n in range(1, scenario.neighbours + 1)
    ]
    client = make_client(
        scenario, fix, app, proxy, logs_dir / "client.jsonl", path_prefix, browser=browser
    )

    def watch() -> None:
        check_alive()
        client.check_alive()

    stream: TaskStream | None = None
    stream_result: StreamResult | None = None
    try:
        client.open(check_alive)  # set-up: the page is there before anyone starts a task
        if scenario.load.tasks:
            # Other users' tasks first: what they leave in the broker and result backend is
            # what the UI's own task meets.
            stream = task_stream(
                scenario, app, fix, logs_dir / "load.jsonl", check_alive, broker_refused
            )
            stream.run()
            stream.keep_full()
        start_neighbours(neighbours, check_alive)
        client.start()
        if stream is not None:
            # Other users keep coming until the UI's Start was answered.
            deadline = time.monotonic() + START_ANSWER_TIMEOUT
            while not (client.task_id or client.done) and time.monotonic() < deadline:
                watch()
                time.sleep(0.005)
            stream_result, stream = stream.finish(), None
        observed = wait_for_outcome(client, scenario, app, watch)
        # When the verdict fell: when the UI showed its end (its answer came back), or for a
        # hung UI when the lab stopped waiting for one.
        decided_at = (client.finished_at if observed is not Outcome.hung else None) or time.time()
        seconds = time.monotonic() - began
        backend_state = app.backend.state(client.task_id)  # read at the verdict, by this cell
        if screenshots == "all" or observed is not scenario.expected_for(fix, client.kind):
            client.screenshot(logs_dir / SCREENSHOT)  # the Python client has nothing to show
    finally:
        if stream is not None:
            stream.finish()
        client.stop()
        for neighbour in neighbours:
            neighbour.stop()
    return CellRun(
        scenario,
        fix,
        app,
        proxy,
        client,
        observed,
        seconds,
        neighbours,
        stream_result,
        backend_state,
        decided_at=decided_at,
    )
