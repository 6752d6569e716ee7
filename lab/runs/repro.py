"""`lab repro`: one scenario with one fix -> processes -> client -> evidence -> verdict."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from lab.data import fixes
from lab.data import profiles
from lab.reports import report
from lab.stacks.brokers import BrokerChoice, BrokerRuntime, start_broker
from lab.runs.cell import CellRun, run_cell, task_duration
from lab.data.errors import ComponentError, RunStopped
from lab.judging.evidence import EventIndex, Evidence, Verdict, judge
from lab.stacks.processes import Supervisor
from lab.stacks.redis_memory import RedisMemoryWatch
from lab.data.scenarios import Scenario
from lab.runs.schedule import MAX_ATTEMPTS
from lab.stacks.stack import (
    AppStack,
    ProxyEndpoint,
    external_proxy,
    launch_app_stack,
    launch_proxy,
    stack_key,
)
from sample_app import strategies

if TYPE_CHECKING:
    from lab.clients.browser import BrowserHost

Progress = Callable[[str], None]
CLIENTS = ("python", "browser")


def new_run_dir(root: Path, label: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    stem = f"{datetime.now():%Y%m%d-%H%M%S}-{label}"
    for n in range(1, 1000):
        path = root / (stem if n == 1 else f"{stem}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"too many runs named {stem} in {root}")


def new_supervisor(run_dir: Path) -> Supervisor:
    return Supervisor(run_id=f"{run_dir.name}-{uuid.uuid4().hex[:6]}", run_dir=run_dir)


def new_browser(sup: Supervisor, client: str) -> BrowserHost | None:
    """For --client browser: a Chromium starting in the background (its log in the run folder);
    None for the Python client. ComponentError at once when Chromium or Playwright is missing."""
    if client not in CLIENTS:
        raise ValueError(f"client {client!r}: not one of {', '.join(CLIENTS)}")
    if client != "browser":
        return None
    from lab.clients.browser import BrowserHost

    return BrowserHost(sup.run_id, sup.run_dir / "browser.log")


def gather_evidence(cell: CellRun, index: EventIndex) -> Evidence:
    return Evidence.gather(
        task_events=cell.app.task_events,
        index=index,
        task_id=cell.client.task_id,
        client=cell.client,
        backend_state=cell.backend_state,
        uses_proxy=cell.proxy is not None,
        proxy_visible=cell.proxy is not None and cell.proxy.events is not None,
        worker_running=cell.scenario.worker.running,
    )


def verdict_for(cell: CellRun, index: EventIndex) -> Verdict:
    evidence = gather_evidence(cell, index)
    return judge(
        cell.scenario,
        cell.fix,
        cell.observed,
        evidence,
        seconds=cell.seconds,
        final_states=strategies.load().final_states,
        client=cell.client.kind,
        broker=cell.app.broker,
        result_lifetime=fixes.result_lifetime(cell.fix, cell.scenario.results.expires_s),
        attempts=cell.attempt,
    )


def run(
    scenario: Scenario,
    fix: str,
    runs_root: Path,
    progress: Progress,
    *,
    proxy_url: str | None = None,
    proxy_mode: str = "forward",
    client: str = "python",
    broker: BrokerChoice | None = None,
    run_dir: Path | None = None,
    should_stop: Callable[[], bool] | None = None,
    screenshots: str = "all",
) -> Verdict:
    """Start a stack for the scenario, run the fix once, judge it, stop everything.

    client="browser": the client is the app's real page in Chromium (one browser for the run).
    broker: the scenario's default broker unless given. run_dir: this folder instead of a new
    one under runs_root; should_stop: the caller's "give up now" (RunStopped is raised).
    """
    began = time.monotonic()
    broker = broker or BrokerChoice(scenario.default_broker)
    if run_dir is None:
        run_dir = new_run_dir(runs_root, f"{scenario.name}-{fix}")
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
    sup = new_supervisor(run_dir)
    app: AppStack | None = None
    browser: BrowserHost | None = None
    broker_rt: BrokerRuntime | None = None
    memory: RedisMemoryWatch | None = None
    try:
        browser = new_browser(sup, client)
        browser_ready = browser.launch() if browser else None
        profile = profiles.load(scenario.proxy) if scenario.uses_proxy and not proxy_url else None
        broker_rt = start_broker(sup, broker, scenario.redis)
        progress(f"broker: {broker_rt.label}")
        what = "worker and app server" if scenario.worker.running else "app server (no worker)"
        if profile:
            what += f" and proxy ({profile.name})"
        progress(f"starting {what}")
        _, app_ready = launch_app_stack(
            sup,
            stack_key(scenario, fix),
            scenario.app,
            scenario.worker,
            poll_interval=scenario.poll_interval,
            task_duration=task_duration(scenario),
            broker=broker_rt,
            results=scenario.results,
            fix=fix,
            load=scenario.load,
        )
        proxy_ready = None
        if profile and profile.mode == "forward":
            _, proxy_ready = launch_proxy(sup, profile.name, profile, None, single=True)
        app = app_ready()
        if profile and profile.mode == "reverse":
            _, proxy_ready = launch_proxy(sup, profile.name, profile, app.url, single=True)
        proxy: ProxyEndpoint | None = proxy_ready() if proxy_ready else None
        if proxy_url:
            proxy = external_proxy(proxy_url, proxy_mode)
        if browser_ready:
            browser_ready()
            progress(f"browser up: Chromium {browser.version if browser else ''}")
        watched_broker = broker_rt

        def check_alive() -> None:
            if should_stop is not None and should_stop():
                raise RunStopped
            sup.check_all_alive("during the run")
            watched_broker.check()

        if broker_rt.kind == "redis" and broker_rt.url:
            memory = RedisMemoryWatch(broker_rt.url, run_dir / "redis-memory.jsonl")
            memory.start()
        progress(f"all up after {time.monotonic() - began:.1f} s; starting a task (fix={fix})")
        if scenario.load.tasks:
            progress(
                f"first a stream of {scenario.load.tasks} tasks from other users "
                f"({scenario.load.per_second:g}/s, {scenario.load.report_kb} KiB results)"
            )
        cell = run_cell(
            scenario,
            fix,
            app,
            proxy,
            run_dir,
            check_alive,
            began=began,
            browser=browser,
            broker_refused=memory.refused_any if memory else None,
            screenshots=screenshots,
        )
        # A component that died during the run makes the verdict worthless, whatever the UI
        # showed (a Redis stopped mid-run errors the UI a moment before the lab notices).
        check_alive()
        index = EventIndex(app.origin_events, proxy.events if proxy else None)
        verdict = verdict_for(cell, index)
        verdict.run_dir = str(run_dir)
        if exit_note := app.worker_exit():
            verdict.warnings.append(exit_note)
        if cell.stream is not None:
            verdict.load = cell.stream.to_json()
        if memory is not None:
            summary = memory.stop()
            memory = None
            verdict.redis = summary.to_json() if summary else None
        write_json(run_dir / "result.json", verdict.to_json())
        report.write_run_report(run_dir, verdict, scenario=scenario)
        return verdict
    except ComponentError as exc:
        write_json(
            run_dir / "result.json", {"scenario": scenario.name, "fix": fix, "error": str(exc)}
        )
        exc.run_dir = str(run_dir)  # type: ignore[attr-defined]
        raise
    finally:
        if memory is not None:
            memory.stop()
        if browser is not None:
            browser.close()
        if app is not None:
            app.backend.close()
        sup.stop_all()
        if broker_rt is not None:
            broker_rt.cleanup()


def run_until_tested(
    scenario: Scenario,
    fix: str,
    runs_root: Path,
    progress: Progress,
    *,
    attempts: int = MAX_ATTEMPTS,
    run_dir: Path | None = None,
    **run_args,
) -> Verdict:
    """`run`, again with a fresh stack while a run missed its expectation without testing
    anything (evidence.untested_because: the machine was too slow), up to `attempts` runs. The
    verdict says how many it took; one still untested is "not judged", never a wrong outcome.
    Later runs go to attempt-N/ inside the first run's folder."""
    first_dir: Path | None = run_dir
    verdict: Verdict | None = None
    for attempt in range(1, attempts + 1):
        here = first_dir
        if verdict is not None and first_dir is not None:
            here = first_dir / f"attempt-{attempt}"
            progress(f"run {attempt - 1} tested nothing ({verdict.untested}); running it again")
        verdict = run(scenario, fix, runs_root, progress, run_dir=here, **run_args)
        verdict.attempts = attempt
        first_dir = first_dir or Path(verdict.run_dir)
        if not verdict.inconclusive:
            break
    assert verdict is not None
    return verdict


def write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2), "utf-8")
