"""`lab audit`: the user's own start-and-poll flow behind proxy profiles, each cell judged
against a direct poller of the same task.

One listener per cell (profile x client strategy), a few to a mitmdump as in the matrix: the
user's URLs cannot carry the matrix's per-cell prefix, so each cell gets a cache of its own
this way. The app is reached at its URL, or started from its commands. Before any cell, a trial
start and poll straight at the app checks the flow itself (bad input, exit 2, nothing left
running) and keeps the app's own status answer for the header lint.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from lab.clients.flow import build_client
from lab.data import profiles
from lab.data.errors import BadInput, ComponentError, RunStopped
from lab.data.flows import APP_POLLING, CLIENT_FIXES, DEFAULT_AUDIT_CONCURRENCY, Flow
from lab.data.jsonl import JsonLinesTail
from lab.judging.advice import (
    HeaderNote,
    Recommendation,
    freshness_summary,
    lint_response,
    recommend,
)
from lab.judging.audit import CellFacts
from lab.judging.evidence import Verdict
from lab.runs.audit_cell import CellTls, run_audit_cell
from lab.runs.audit_tls import AuditTls, ForwardTls, for_audit, launch_audit_proxies
from lab.runs.lifecycle import Progress, RunResources, new_run_dir
from lab.runs.repro import write_json
from lab.runs.schedule import MAX_ATTEMPTS, results
from lab.stacks import user_app
from lab.stacks.stack import ProxyEndpoint
from sample_app import strategies

DEFAULT_CONCURRENCY = DEFAULT_AUDIT_CONCURRENCY
# An audit has at most a few dozen cells polling at once: fewer, fuller mitmdumps start faster
# (each is seconds of CPU to start) and still keep up.
LISTENERS_PER_PROXY_PROCESS = 8
AUDIT_JSON = "audit.json"
NOT_JUDGED = "not judged"
STRATEGIES = (APP_POLLING, *CLIENT_FIXES)


def deployment_profiles() -> list[str]:
    """Every profile that stands for a real deployment: what an audit checks by default."""
    return profiles.deployment_names()


@dataclass
class StatusSample:
    """An answer of the app's own, straight from it (no proxy)."""

    url: str
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "status": self.status,
            "headers": [list(pair) for pair in self.headers],
            "body": self.body[:2000].decode("utf-8", errors="replace"),
        }


@dataclass
class AuditCell:
    profile: str
    strategy: str
    verdict: Verdict | None = None
    facts: CellFacts | None = None
    not_applicable: str | None = None  # why this client strategy cannot be used on this app

    @property
    def outcome(self) -> str:
        if self.not_applicable:
            return "n/a"
        if self.verdict is None:
            return NOT_JUDGED
        return NOT_JUDGED if self.verdict.untested else self.verdict.observed

    @property
    def ok(self) -> bool:
        return self.not_applicable is not None or self.outcome == "completed"


@dataclass
class AuditResult:
    flow: Flow
    run_dir: Path
    app_url: str
    profiles: list[str]
    strategies: list[str]
    cells: dict[tuple[str, str], AuditCell] = field(default_factory=dict)
    status_sample: StatusSample | None = None
    seconds: float = 0.0
    startup_seconds: float = 0.0
    # What the lab knows: the linter's notes on the app's own status answer, what a cache may
    # do with it, and which catalogue fixes the audited profiles let through.
    lint: list[HeaderNote] = field(default_factory=list)
    freshness: str = ""
    recommendation: Recommendation | None = None
    tls: dict[str, Any] | None = None  # an HTTPS app: where TLS ended for each profile

    def tls_lines(self) -> list[str]:
        """Where TLS ended, one line per profile (and what the pollers trusted)."""
        if not self.tls:
            return []
        lines = [
            f"{p}: TLS {m['mode']}, ended at {m['ended_at']}"
            for p, m in self.tls["profiles"].items()
        ]
        return [*lines, f"the direct poller trusted {self.tls['direct_trusted']}"]

    @property
    def ok(self) -> bool:
        return all(cell.ok for cell in self.cells.values())

    def failing(self) -> list[AuditCell]:
        return [cell for cell in self.cells.values() if not cell.ok]

    def headline(self) -> str:
        judged = [c for c in self.cells.values() if not c.not_applicable]
        done = sum(1 for c in judged if c.outcome == "completed")
        not_judged = sum(1 for c in judged if c.outcome == NOT_JUDGED)
        text = f"{done} of {len(judged)} cells completed"
        if not_judged:
            text += f", {not_judged} not judged"
        return text + ("" if self.ok else f", {len(judged) - done - not_judged} did not")

    def to_json(self) -> dict[str, Any]:
        return {
            "flow": self.flow.name,
            "app_url": self.app_url,
            "profiles": self.profiles,
            "strategies": self.strategies,
            "ok": self.ok,
            "headline": self.headline(),
            "seconds": round(self.seconds, 3),
            "startup_seconds": round(self.startup_seconds, 3),
            "status_answer": (
                self.status_sample.to_json()
                | {"freshness": self.freshness, "lint": [asdict(note) for note in self.lint]}
                if self.status_sample
                else None
            ),
            "recommendation": self.recommendation.to_json() if self.recommendation else None,
            "tls": self.tls,
            "cells": [
                {
                    "profile": cell.profile,
                    "strategy": cell.strategy,
                    "outcome": cell.outcome,
                    "not_applicable": cell.not_applicable,
                    "verdict": cell.verdict.to_json() if cell.verdict else None,
                }
                for cell in self.cells.values()
            ],
            "run_dir": str(self.run_dir),
        }


def run_audit(
    flow: Flow,
    profile_names: list[str],
    strategy_names: list[str],
    runs_root: Path,
    progress: Progress,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    forward_tls: ForwardTls = "tunnel",
) -> AuditResult:
    """`forward_tls`: how forward profiles meet an HTTPS app (lab/runs/audit_tls.py)."""
    began = time.monotonic()
    run_dir = new_run_dir(runs_root, f"audit-{flow.name}")
    book = strategies.load()
    stopping = threading.Event()
    # The profiles are checked with the addons (a few seconds of imports) while the app starts.
    checking = ThreadPoolExecutor(max_workers=1, thread_name_prefix="profiles")
    checked = checking.submit(lambda: [profiles.load(name) for name in profile_names])
    checking.shutdown(wait=False)
    try:
        with RunResources(run_dir) as resources:
            sup = resources.sup
            tls = for_audit(resources.tls(), flow.cacert, forward_tls) if flow.https else None
            direct = tls.context(None) if tls else None
            ca = tls.app_ca_label if tls else ""
            if flow.app.started_by_lab:
                progress(f"starting the app: {', '.join(n for n, _ in user_app.commands(flow))}")
                made = resources.tls() if flow.makes_certificate else None
                launch = user_app.launch(sup, flow, made, direct, ca)
                app_url, app_ready = launch.url, launch.ready
            else:
                app = user_app.reach(flow, direct, ca)
                app_url, app_ready = app.url, lambda: app
            loaded = checked.result()

            def start_proxies(url: str, name: str) -> Callable[[], dict[Any, ProxyEndpoint]]:
                return launch_audit_proxies(
                    sup, name, loaded, strategy_names, url, LISTENERS_PER_PROXY_PROCESS, tls
                )

            proxies_ready = start_proxies(app_url, "proxies")
            app = app_ready()
            progress(f"app up at {app.url}")
            if app.url != app_url:  # its first port was taken: the reverse listeners follow it
                proxies_ready = start_proxies(app.url, "proxies-again")
            sample, unusable = trial(flow, book, app.url, run_dir, strategy_names, direct)
            endpoints = proxies_ready()
            result = AuditResult(flow, run_dir, app.url, profile_names, strategy_names)
            result.status_sample = sample
            result.tls = tls.summary(loaded) if tls else None
            result.startup_seconds = time.monotonic() - began
            progress(
                f"all up after {result.startup_seconds:.1f} s: {len(endpoints)} cells "
                f"({len(loaded)} profiles x {len(strategy_names)} client strategies)"
            )

            def check_alive() -> None:
                if stopping.is_set():
                    raise RunStopped
                resources.check_alive("during the audit")

            for profile in loaded:
                for strategy in strategy_names:
                    cell = AuditCell(profile.name, strategy, not_applicable=unusable.get(strategy))
                    result.cells[(profile.name, strategy)] = cell
            runnable = [c for c in result.cells.values() if not c.not_applicable]
            with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="audit") as pool:
                # Submitted inside the try: a Ctrl-C or SIGTERM while cells are being handed
                # out must stop the ones already running, or leaving the block waits for them.
                try:
                    futures = [
                        pool.submit(
                            _run_until_tested,
                            flow,
                            book,
                            cell,
                            endpoints[(cell.profile, cell.strategy)],
                            app.url,
                            run_dir / "cells" / f"{cell.profile}--{cell.strategy}",
                            check_alive,
                            tls,
                        )
                        for cell in runnable
                    ]
                    results(futures)
                except BaseException:
                    stopping.set()
                    raise
            advise(result)
            result.seconds = time.monotonic() - began
            write_json(run_dir / AUDIT_JSON, result.to_json())
            return result
    except (ComponentError, BadInput) as exc:
        exc.run_dir = str(run_dir)  # type: ignore[attr-defined]
        raise


def advise(result: AuditResult) -> None:
    """The lint of the app's own status answer and the recommendation for these profiles."""
    sample = result.status_sample
    if sample is not None:
        result.lint = lint_response(sample.status, sample.headers, sample.body)
        result.freshness = freshness_summary(sample.headers, status=sample.status)
    result.recommendation = recommend(result.profiles)


def _run_until_tested(
    flow: Flow,
    book: strategies.StrategyBook,
    cell: AuditCell,
    proxy: ProxyEndpoint,
    app_url: str,
    cell_dir: Path,
    check_alive: Any,
    tls: AuditTls | None = None,
) -> None:
    """The cell, run again (on the same listener, a new task) while a run tested nothing, up
    to MAX_ATTEMPTS runs; the last run's verdict stands, "not judged" if it still tested
    nothing."""
    # The listener is this cell's alone: its record is read on from where the last run stopped.
    record = JsonLinesTail(proxy.events) if proxy.events is not None else None
    over_tls = CellTls.of(tls, proxy) if tls else None
    for attempt in range(1, MAX_ATTEMPTS + 1):
        here = cell_dir if attempt == 1 else cell_dir / f"attempt-{attempt}"
        run = run_audit_cell(
            flow, book, cell.strategy, proxy, record, app_url, here, check_alive, attempt, over_tls
        )
        cell.verdict, cell.facts = run.verdict, run.facts
        if run.verdict.untested:
            run.verdict.retried_because = run.verdict.untested
        write_json(here / "result.json", run.verdict.to_json())
        if not run.verdict.untested:
            return


def trial(
    flow: Flow,
    book: strategies.StrategyBook,
    app_url: str,
    run_dir: Path,
    strategy_names: list[str],
    verify: Any = None,
) -> tuple[StatusSample | None, dict[str, str]]:
    """Start the work once and read its status once, straight at the app: a flow that does not
    fit the app is bad input (exit 2), an app that fails is exit 3. Returns the app's own status
    answer and, for each client strategy the app does not accept, why."""
    client = build_client(
        flow, book, APP_POLLING, base_url=app_url, proxy_url=None,
        log_path=run_dir / "trial.jsonl", verify=verify,
    )  # fmt: skip
    where = _where(flow)
    start = f"{flow.start.method} {flow.start.path}"
    try:
        try:
            client.start_once()
        except ValueError as exc:
            raise BadInput(f"{where}: field 'start.task_id': {exc}") from None
        except RuntimeError as exc:
            if 400 <= client.start_answer.get("status", 0) < 500:
                raise BadInput(f"{where}: field 'start.path': {start} answered {exc}") from None
            raise ComponentError("app", f"{start} answered {exc}") from None
        except httpx.HTTPError as exc:
            raise ComponentError("app", f"{start} got no answer: {exc}") from None
        poll = client.poll_once()
        if poll.error:
            asked = f"{flow.status.method} {poll.url.removeprefix(app_url)}"
            if poll.status is not None and 400 <= poll.status < 500:
                raise BadInput(f"{where}: field 'status.path': {asked} answered {poll.error}")
            if poll.status is not None and poll.status < 400:
                raise BadInput(f"{where}: field 'status.state': {asked}: {poll.error}")
            raise ComponentError("app", f"{asked} -> {poll.error}")
        sample = None
        if client.first_answer is not None:
            status, headers, body = client.first_answer
            sample = StatusSample(poll.url, status, headers, body)
        unusable = {
            strategy: why
            for strategy in strategy_names
            if (
                why := _not_accepted(flow, book, strategy, app_url, client.task_id, run_dir, verify)
            )
        }
        return sample, unusable
    finally:
        client.close()


def _not_accepted(
    flow: Flow,
    book: strategies.StrategyBook,
    strategy: str,
    app_url: str,
    task_id: str | None,
    run_dir: Path,
    verify: Any = None,
) -> str | None:
    """Why the app does not take this client strategy's status request (a POST, or a nonce
    segment after its status path), from one such request straight at the app."""
    if strategy not in ("path-nonce", "post") or task_id is None:
        return None
    probe = build_client(
        flow,
        book,
        strategy,
        base_url=app_url,
        proxy_url=None,
        log_path=run_dir / f"trial-{strategy}.jsonl",
        given_task_id=task_id,
        verify=verify,
    )
    try:
        probe.start_once()
        poll = probe.poll_once()
    finally:
        probe.close()
    if poll.error:
        return f"the app does not answer {poll.method} {poll.url.split('?')[0]}: {poll.error}"
    return None


def _where(flow: Flow) -> str:
    from lab.data.paths import relative

    return relative(Path(flow.source)) if flow.source else "command line"
