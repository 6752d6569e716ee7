"""`lab repro`: one scenario with one fix -> processes -> client -> evidence -> verdict."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from lab.data import fixes, profiles
from lab.data.errors import ComponentError, RunStopped
from lab.data.events import StackEventReaders
from lab.data.kinds import CLIENTS as CLIENTS  # the CLI's --client choices
from lab.data.scenarios import Scenario
from lab.judging.evidence import Evidence, Verdict, judge
from lab.judging.tls_path import certificate_line, path_facts
from lab.runs.cell import CellRun, run_cell, task_duration
from lab.runs.lifecycle import Progress, RunResources, new_run_dir
from lab.runs.schedule import MAX_ATTEMPTS
from lab.stacks.brokers import BrokerChoice, BrokerRuntime
from lab.stacks.stack import AppStack, ProxyEndpoint, external_proxy, launch_proxy
from sample_app import strategies

if TYPE_CHECKING:
    from lab.clients.browser import BrowserHost


def gather_evidence(cell: CellRun, readers: StackEventReaders) -> Evidence:
    """What every hop saw of the cell's task, as far as written now."""
    return Evidence.gather(
        task_events=cell.app.task_events,
        origin=readers.origin(cell.app.origin_events),
        proxy=readers.proxy(cell.proxy.events if cell.proxy else None),
        task_id=cell.client.task_id,
        client=cell.client,
        backend_state=cell.backend_state,
        uses_proxy=cell.proxy is not None,
        proxy_visible=cell.proxy is not None and cell.proxy.events is not None,
        worker_running=cell.scenario.worker.running,
        decided_at=cell.decided_at,
    )


def verdict_for(cell: CellRun, readers: StackEventReaders) -> Verdict:
    """The cell's one judgement, made when it ends."""
    evidence = gather_evidence(cell, readers)
    verdict = judge(
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
        # A proxy the lab did not start is named by its URL, not by the scenario's profile.
        proxy=cell.proxy.profile if cell.proxy and cell.proxy.events is None else None,
    )
    if cell.scenario.tls:
        proxy = cell.proxy.profile if cell.proxy else "none"
        outside = cell.proxy is not None and cell.proxy.events is None
        verdict.tls = path_facts(
            cell.scenario.tls, proxy, cell.client.kind, cell.client.tls_seen, external=outside
        )
        if verdict.first_stale_answer is not None and cell.client.tls_seen:
            # The stale answer came over TLS too: from whom the client accepted it.
            verdict.first_stale_answer["tls_certificate"] = certificate_line(verdict.tls)
    return verdict


def run(
    scenario: Scenario,
    fix: str,
    runs_root: Path,
    progress: Progress,
    *,
    proxy_url: str | None = None,
    proxy_mode: str = "forward",
    app_port: int = 0,
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
    app_port: the app's port on 127.0.0.1 (0: any free one), for a real reverse proxy.
    """
    began = time.monotonic()
    broker = broker or BrokerChoice(scenario.default_broker)
    if run_dir is None:
        run_dir = new_run_dir(runs_root, f"{scenario.name}-{fix}")
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
    try:
        with RunResources(run_dir) as resources:
            app, proxy, browser, broker_rt = _start(
                resources, scenario, fix, broker, client, progress, proxy_url, proxy_mode, app_port
            )

            def check_alive() -> None:
                if should_stop is not None and should_stop():
                    raise RunStopped
                resources.check_alive("during the run")

            memory = resources.memory_watch(broker_rt)
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
            verdict = verdict_for(cell, StackEventReaders())
            verdict.run_dir = str(run_dir)
            if exit_note := app.worker_exit():
                verdict.warnings.append(exit_note)
            if cell.stream is not None:
                verdict.load = cell.stream.to_json()
            if memory is not None:
                summary = memory.stop()
                verdict.redis = summary.to_json() if summary else None
            write_json(run_dir / "result.json", verdict.to_json())
            return verdict
    except ComponentError as exc:
        write_json(
            run_dir / "result.json", {"scenario": scenario.name, "fix": fix, "error": str(exc)}
        )
        exc.run_dir = str(run_dir)  # type: ignore[attr-defined]
        raise


def _start(
    resources: RunResources,
    scenario: Scenario,
    fix: str,
    broker: BrokerChoice,
    client: str,
    progress: Progress,
    proxy_url: str | None,
    proxy_mode: str,
    app_port: int = 0,
) -> tuple[AppStack, ProxyEndpoint | None, BrowserHost | None, BrokerRuntime]:
    """The run's browser, broker, app stack and proxy, started through `resources`."""
    sup = resources.sup
    browser, browser_ready = resources.browser(client, https=scenario.tls is not None)
    profile = profiles.load(scenario.proxy) if scenario.uses_proxy and not proxy_url else None
    broker_rt = resources.broker(broker, scenario)
    progress(f"broker: {broker_rt.label}")
    what = "worker and app server" if scenario.worker.running else "app server (no worker)"
    if profile:
        what += f" and proxy ({profile.name})"
    progress(f"starting {what}")
    app_ready = resources.app_stack(
        scenario, fix, broker_rt, task_duration=task_duration(scenario), port=app_port
    )
    proxy_ready = None
    tls = {"tls_mode": scenario.tls, "tls": resources.tls() if scenario.tls else None}
    if profile and profile.mode == "forward":
        proxy_ready = launch_proxy(sup, profile.name, profile, None, single=True, **tls)
    app = app_ready()
    if profile and profile.mode == "reverse":
        proxy_ready = launch_proxy(sup, profile.name, profile, app.url, single=True, **tls)
    proxy: ProxyEndpoint | None = proxy_ready() if proxy_ready else None
    if proxy_url:
        proxy = external_proxy(proxy_url, proxy_mode)
        progress(f"app at {app.url}, polled through {proxy.profile} ({proxy_mode})")
    if browser_ready:
        browser_ready()
        progress(f"browser up: Chromium {browser.version if browser else ''}")
    return app, proxy, browser, broker_rt


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
        before = verdict.untested if verdict is not None else None
        verdict = run(scenario, fix, runs_root, progress, run_dir=here, **run_args)
        verdict.attempts, verdict.retried_because = attempt, before
        first_dir = first_dir or Path(verdict.run_dir)
        if not verdict.inconclusive:
            break
    assert verdict is not None
    return verdict


def write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2), "utf-8")
