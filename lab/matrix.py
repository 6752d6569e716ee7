"""`lab matrix`: every scenario against every fix, concurrently over shared stacks.

One app stack (worker pool + app server) per app/worker set-up, one proxy per profile; cells run
in a thread pool, each with its own client (and neighbours), judged like `lab repro`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lab import profiles, report
from lab.cell import CellRun, run_cell, task_duration
from lab.evidence import EventIndex, Verdict
from lab.runner import new_browser, new_run_dir, new_supervisor, verdict_for, write_json
from lab.scenarios import Scenario
from lab.stack import (
    AppStack,
    ProxyEndpoint,
    app_key,
    external_proxy,
    launch_app_stack,
    launch_proxy,
)

Progress = Callable[[str], None]
DEFAULT_CONCURRENCY = 48


@dataclass
class MatrixResult:
    run_dir: Path
    scenarios: list[str]
    fixes: list[str]
    rounds: list[dict[tuple[str, str], Verdict]] = field(default_factory=list)
    seconds: float = 0.0
    client: str = "python"  # or "browser": the page itself in Chromium

    @property
    def last(self) -> dict[tuple[str, str], Verdict]:
        return self.rounds[-1]

    @property
    def mismatches(self) -> list[Verdict]:
        return [v for r in self.rounds for v in r.values() if not v.matched]

    @property
    def flips(self) -> dict[tuple[str, str], list[str]]:
        """Cells whose outcome changed between rounds (with --repeat)."""
        seen: dict[tuple[str, str], list[str]] = {}
        for r in self.rounds:
            for key, verdict in r.items():
                seen.setdefault(key, []).append(verdict.observed)
        return {k: v for k, v in seen.items() if len(set(v)) > 1}

    @property
    def ok(self) -> bool:
        return not self.mismatches and not self.flips

    def to_json(self) -> dict:
        return {
            "run_dir": str(self.run_dir),
            "seconds": round(self.seconds, 3),
            "client": self.client,
            "scenarios": self.scenarios,
            "fixes": self.fixes,
            "ok": self.ok,
            "rounds": [
                [asdict(v) | {"run_dir": v.run_dir} for v in r.values()] for r in self.rounds
            ],
            "flips": {f"{s}/{f}": o for (s, f), o in self.flips.items()},
        }


def start_stacks(
    sup, scenarios: list[Scenario], concurrency: int, proxy_url: str | None, proxy_mode: str
) -> tuple[dict[str, AppStack], dict[tuple[str, str], ProxyEndpoint]]:
    """All processes start at once; forward proxies don't wait for the apps."""
    app_waits: dict[str, Callable[[], AppStack]] = {}
    for sc in scenarios:
        key = app_key(sc.app, sc.worker)
        if key not in app_waits:
            _, ready = launch_app_stack(
                sup,
                key,
                sc.app,
                sc.worker,
                poll_interval=sc.poll_interval,
                task_duration=task_duration(sc),
                concurrency=concurrency,
                single=False,
            )
            app_waits[key] = ready
    proxy_waits: dict[tuple[str, str], Callable[[], ProxyEndpoint]] = {}
    wanted = {(sc.proxy, app_key(sc.app, sc.worker)) for sc in scenarios if sc.uses_proxy}
    loaded = {name: profiles.load(name) for name, _ in wanted}
    # A forward proxy serves every app; a reverse proxy stands in front of one app.
    for name, _akey in sorted(wanted):
        if proxy_url:
            continue
        profile = loaded[name]
        if profile.mode == "forward":
            pkey = (name, "*")
            if pkey not in proxy_waits:
                _, proxy_waits[pkey] = launch_proxy(sup, name, profile, None, single=False)
    apps = {key: wait() for key, wait in app_waits.items()}
    for name, akey in sorted(wanted):
        profile = loaded[name]
        if not proxy_url and profile.mode == "reverse":
            _, proxy_waits[(name, akey)] = launch_proxy(
                sup, f"{name}-{akey}", profile, apps[akey].url, single=False
            )
    proxies = {key: wait() for key, wait in proxy_waits.items()}
    if proxy_url:
        endpoint = external_proxy(proxy_url, proxy_mode)
        proxies = {(name, "*"): endpoint for name, _ in wanted}
    return apps, proxies


def run_matrix(
    scenarios: list[Scenario],
    fixes: list[str],
    runs_root: Path,
    progress: Progress,
    *,
    repeat: int = 1,
    concurrency: int = DEFAULT_CONCURRENCY,
    proxy_url: str | None = None,
    proxy_mode: str = "forward",
    client: str = "python",
) -> MatrixResult:
    """client="browser": every cell's client is the app's real page, each in a context of its
    own (fresh HTTP cache and connections) of one Chromium shared by the whole matrix."""
    began = time.monotonic()
    scenarios = [sc for sc in scenarios if sc.runs_with(client)]
    run_dir = new_run_dir(runs_root, "matrix")
    sup = new_supervisor(run_dir)
    cells = [(sc, fix) for sc in scenarios for fix in fixes if sc.applies(fix)]
    result = MatrixResult(run_dir, [sc.name for sc in scenarios], fixes, client=client)
    apps: dict[str, AppStack] = {}
    browser = None
    try:
        browser = new_browser(sup, client)
        browser_ready = browser.launch() if browser else None
        progress(f"starting the stacks for {len(scenarios)} scenarios")
        apps, proxies = start_stacks(sup, scenarios, concurrency, proxy_url, proxy_mode)
        if browser_ready:
            browser_ready()
        progress(
            f"{len(apps)} app stacks and {len(set(map(id, proxies.values())))} proxies up after "
            f"{time.monotonic() - began:.1f} s; running {len(cells)} cells x {repeat}"
        )
        alive_lock = threading.Lock()
        # Set when the matrix is interrupted: every running cell gives up at its next check
        # instead of waiting out its verdict (a browser cell may still be waiting to open).
        stopping = threading.Event()

        def check_alive() -> None:
            if stopping.is_set():
                raise CellsStopped
            with alive_lock:
                sup.check_all_alive("during the matrix")
                if browser is not None:
                    browser.check_alive("during the matrix")

        for round_no in range(1, repeat + 1):
            runs: list[CellRun] = []

            def one(
                cell: tuple[Scenario, str], round_no: int = round_no, attempt: int = 1
            ) -> CellRun:
                sc, fix = cell
                akey = app_key(sc.app, sc.worker)
                proxy = None
                if sc.uses_proxy:
                    proxy = proxies.get((sc.proxy, "*")) or proxies[(sc.proxy, akey)]
                logs = run_dir / f"round-{round_no}" / f"{sc.name}--{fix}"
                if attempt > 1:
                    logs = logs / f"attempt-{attempt}"
                # Each cell its own cache namespace on the shared proxy (see CellPrefix).
                prefix = f"/_lab/r{round_no}a{attempt}-{sc.name}--{fix}"
                return run_cell(
                    sc,
                    fix,
                    apps[akey],
                    proxy,
                    logs,
                    check_alive,
                    path_prefix=prefix,
                    browser=browser,
                )

            # Longest first: cells expected to hang wait out a whole hang window.
            order = sorted(range(len(cells)), key=lambda i: _expected_seconds(*cells[i]))
            order.reverse()
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                try:
                    done = dict(zip(order, pool.map(lambda i: one(cells[i]), order), strict=True))
                except BaseException:
                    stopping.set()
                    raise
            runs = [done[i] for i in range(len(cells))]
            verdicts = _judge_all(runs, apps, proxies)
            # A mismatch whose first poll came after the task had finished (a busy machine)
            # did not test the cache at all: run those cells once more.
            again = [i for i, v in enumerate(verdicts) if not v.matched and v.inconclusive]
            if again:
                progress(f"re-running {len(again)} inconclusive cells (first poll came too late)")
                with ThreadPoolExecutor(max_workers=concurrency) as pool:
                    try:
                        reruns = list(pool.map(lambda i, r=round_no: one(cells[i], r, 2), again))
                    except BaseException:
                        stopping.set()
                        raise
                for i, verdict in zip(again, _judge_all(reruns, apps, proxies), strict=True):
                    verdict.retried = True
                    verdicts[i] = verdict
            for (sc, fix), verdict in zip(cells, verdicts, strict=True):
                cell_dir = run_dir / f"round-{round_no}" / f"{sc.name}--{fix}"
                verdict.run_dir = str(cell_dir / "attempt-2" if verdict.retried else cell_dir)
                write_json(Path(verdict.run_dir) / "result.json", verdict.to_json())
            result.rounds.append(
                {(sc.name, fix): v for (sc, fix), v in zip(cells, verdicts, strict=True)}
            )
            bad = sum(1 for v in verdicts if not v.matched)
            progress(f"round {round_no}: {len(verdicts) - bad} of {len(verdicts)} cells matched")
        result.seconds = time.monotonic() - began
        write_json(run_dir / "matrix.json", result.to_json())
        (run_dir / "matrix.md").write_text(markdown(result), "utf-8")
        report.write_matrix_report(result, scenarios)  # matrix.html and each cell's report.html
        return result
    finally:
        if browser is not None:
            browser.close()
        for app in apps.values():
            app.backend.close()
        sup.stop_all()


class CellsStopped(Exception):
    """Raised in the cells still running when the matrix is interrupted or fails."""


def _expected_seconds(scenario: Scenario, fix: str) -> float:
    if scenario.expected_for(fix).value == "completed":
        return scenario.task_duration
    return scenario.task_duration + scenario.hang_window


def _judge_all(
    runs: list[CellRun],
    apps: dict[str, AppStack],
    proxies: dict[tuple[str, str], ProxyEndpoint],
) -> list[Verdict]:
    indexes: dict[tuple[str, str | None], EventIndex] = {}
    verdicts = []
    for run in runs:
        key = (run.app.key, str(run.proxy.events) if run.proxy and run.proxy.events else None)
        if key not in indexes:
            indexes[key] = EventIndex(
                run.app.origin_events, run.proxy.events if run.proxy else None
            )
        verdicts.append(verdict_for(run, indexes[key]))
    return verdicts


def defeats(result: MatrixResult) -> dict[str, list[str]]:
    """For each fix, the proxy scenarios where the UI did not complete (lookalikes left out:
    no HTTP fix can help there)."""
    beaten: dict[str, list[str]] = {fix: [] for fix in result.fixes}
    for (scenario, fix), verdict in result.last.items():
        if verdict.proxy != "none" and verdict.observed != "completed":
            beaten[fix].append(scenario)
    return beaten


def survivors(result: MatrixResult) -> list[str]:
    """Fixes that completed behind every proxy profile that was run."""
    return [fix for fix, lost in defeats(result).items() if not lost]


SYMBOL = {"completed": "completed", "hung": "HUNG", "errored": "ERRORED", "leaked": "LEAKED"}


def cell_text(verdict: Verdict | None) -> str:
    if verdict is None:
        return "n/a"
    text = SYMBOL.get(verdict.observed, verdict.observed)
    return text if verdict.matched else f"{text} (!= {verdict.expected})"


def markdown(result: MatrixResult) -> str:
    last = result.last
    lines = [
        f"# Matrix ({len(last)} cells, {result.seconds:.1f} s)",
        "",
        "Rows are scenarios (their proxy profile in brackets), columns are fixes. "
        "A cell reads `observed`; a mismatch reads `observed (!= expected)`.",
        "",
        "| scenario | " + " | ".join(result.fixes) + " |",
        "| --- | " + " | ".join("---" for _ in result.fixes) + " |",
    ]
    for name in result.scenarios:
        proxy = next((v.proxy for (s, _), v in last.items() if s == name), "")
        cells = [cell_text(last.get((name, fix))) for fix in result.fixes]
        lines.append(f"| {name} [{proxy}] | " + " | ".join(cells) + " |")
    lines += ["", "## Which proxies defeat which fix", ""]
    for fix, lost in defeats(result).items():
        lines.append(f"- `{fix}`: " + (", ".join(lost) if lost else "survives every proxy profile"))
    if result.flips:
        lines += ["", "## Cells that changed between rounds", ""]
        lines += [f"- {s} / {f}: {' -> '.join(o)}" for (s, f), o in result.flips.items()]
    return "\n".join(lines) + "\n"


def to_json_text(result: MatrixResult) -> str:
    return json.dumps(result.to_json())
