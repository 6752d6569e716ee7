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

from lab.data.kinds import DEFAULT_MATRIX_CONCURRENCY, MATRIX_CONCURRENCY
from lab.data.scenarios import Scenario
from lab.judging.evidence import Verdict
from lab.runs import repro
from lab.runs.lifecycle import Progress, RunResources, new_run_dir
from lab.runs.repro import write_json
from lab.runs.schedule import MAX_ATTEMPTS, attempt_dir, results, run_in_turn, start_order
from lab.runs.shared_stacks import split_cells
from lab.runs.warm_stacks import AliveCheck, warm_stacks
from lab.stacks.brokers import BrokerChoice, redis_server_installed
from lab.stacks.stack import ProxyEndpoint, external_proxy

NOT_JUDGED = "not judged"  # a cell's outcome in a round where the machine was too slow for it
DEFAULT_CONCURRENCY = DEFAULT_MATRIX_CONCURRENCY
# Cells with stacks of their own (a capped Redis that the cell fills) run this many at once,
# beside the shared cells.
OWN_STACK_CONCURRENCY = 8
MATRIX_JSON = "matrix.json"  # the result, for machines; the pages are lab.reports' work


@dataclass
class MatrixResult:
    run_dir: Path
    scenarios: list[str]
    fixes: list[str]
    rounds: list[dict[tuple[str, str], Verdict]] = field(default_factory=list)
    seconds: float = 0.0
    startup_seconds: float = 0.0  # from the command's start until every stack was up
    round_seconds: list[float] = field(default_factory=list)  # each round, its re-runs included
    client: str = "python"  # or "browser": the page itself in Chromium
    broker: str | None = None  # forced for every scenario, or None: each scenario's default

    @property
    def last(self) -> dict[tuple[str, str], Verdict]:
        return self.rounds[-1]

    @property
    def mismatches(self) -> list[Verdict]:
        """Judged cells whose outcome was not the expected one, in every round."""
        return [v for r in self.rounds for v in r.values() if v.wrong]

    @property
    def unjudged(self) -> list[Verdict]:
        """Cells the machine was too slow to test in MAX_ATTEMPTS runs: no verdict either way."""
        return [v for r in self.rounds for v in r.values() if v.inconclusive]

    @property
    def flips(self) -> dict[tuple[str, str], list[str]]:
        """Cells whose outcome changed between rounds (with --repeat); an unjudged run shows
        as "not judged"."""
        seen: dict[tuple[str, str], list[str]] = {}
        for r in self.rounds:
            for key, verdict in r.items():
                seen.setdefault(key, []).append(
                    NOT_JUDGED if verdict.inconclusive else verdict.observed
                )
        return {k: v for k, v in seen.items() if len(set(v)) > 1}

    @property
    def ok(self) -> bool:
        return not self.mismatches and not self.flips and not self.unjudged

    def round_counts(self) -> list[dict[str, int]]:
        """Per round: cells, mismatches, not judged, and cells run more than once."""
        return [
            {
                "round": n,
                "cells": len(r),
                "mismatches": sum(1 for v in r.values() if v.wrong),
                "not_judged": sum(1 for v in r.values() if v.inconclusive),
                "run_again": sum(1 for v in r.values() if v.retried),
            }
            for n, r in enumerate(self.rounds, 1)
        ]

    def headline(self) -> str:
        """The one sentence both the CLI's last line and matrix.html lead with: exactly what
        happened, every round counted."""
        rounds = self.round_counts()
        cells = rounds[-1]["cells"] if rounds else 0
        again = sum(r["run_again"] for r in rounds)
        rerun = (
            f"; {_count(again, 'cell run was', 'cell runs were')} repeated because the machine "
            f"was too slow to test {'it' if again == 1 else 'them'}"
            if again
            else ""
        )
        several = len(rounds) > 1
        if self.ok:
            every = f" in every one of {len(rounds)} rounds" if several else ""
            return f"all {cells} cells matched their expected outcome{every}{rerun}"
        parts = []
        for r in rounds:
            where = f"round {r['round']}: " if several else ""
            text = f"{where}{r['mismatches']} of {r['cells']} cells did not match"
            if r["not_judged"]:
                text += f", {r['not_judged']} could not be judged (machine too slow)"
            parts.append(text)
        if several:
            parts.append(f"{_count(len(self.flips), 'cell', 'cells')} changed between rounds")
        return "; ".join(parts) + rerun

    def to_json(self) -> dict:
        return {
            "run_dir": str(self.run_dir),
            "seconds": round(self.seconds, 3),
            "startup_seconds": round(self.startup_seconds, 3),
            "round_seconds": [round(t, 3) for t in self.round_seconds],
            "client": self.client,
            "broker": self.broker,
            "scenarios": self.scenarios,
            "fixes": self.fixes,
            "ok": self.ok,
            "headline": self.headline(),
            "round_counts": self.round_counts(),
            "rounds": [
                [asdict(v) | {"run_dir": v.run_dir} for v in r.values()] for r in self.rounds
            ],
            "flips": {f"{s}/{f}": o for (s, f), o in self.flips.items()},
        }


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def run_matrix(
    scenarios: list[Scenario],
    fixes: list[str],
    runs_root: Path,
    progress: Progress,
    *,
    repeat: int = 1,
    concurrency: int | None = None,
    proxy_url: str | None = None,
    proxy_mode: str = "forward",
    app_port: int = 0,
    external_proxies: dict[str, ProxyEndpoint] | None = None,
    also_alive: Callable[[str], None] | None = None,
    client: str = "python",
    broker: str | None = None,
    broker_url: str | None = None,
    run_dir: Path | None = None,
    screenshots: str = "mismatches",
) -> MatrixResult:
    """client="browser": every cell's client is the app's real page, each in a context of its
    own (fresh HTTP cache and connections) of one Chromium shared by the whole matrix.

    screenshots (browser client): "mismatches" (cells whose outcome was not the expected one)
    or "all".

    app_port: the app's port on 127.0.0.1 (one app stack only), for a real reverse proxy.
    external_proxies: by profile name, a proxy the lab did not start that stands in for it
    (`lab verify`'s real products; proxy_url is one proxy for every profile).
    also_alive(during): ComponentError when something the caller started for the matrix (a
    real proxy) died; checked as often as the matrix's own components.

    broker: every scenario on this broker (those that cannot run on it are left out); None:
    each on its own default. Cells that fill their broker get a stack of their own each.
    """
    began = time.monotonic()
    concurrency = concurrency or MATRIX_CONCURRENCY[client]
    scenarios = [
        sc for sc in scenarios if sc.runs_with(client) and (broker is None or sc.runs_on(broker))
    ]
    if not broker_url and not redis_server_installed():
        for sc in [sc for sc in scenarios if (broker or sc.default_broker) == "redis"]:
            progress(f"{sc.name}: left out, it needs redis-server (apt-get install redis-server)")
            scenarios.remove(sc)
    if run_dir is None:
        run_dir = new_run_dir(runs_root, "matrix")
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
    cells, own, shared = split_cells(scenarios, fixes)
    result = MatrixResult(
        run_dir, [sc.name for sc in scenarios], fixes, client=client, broker=broker
    )
    with RunResources(run_dir) as resources:
        progress(f"starting the stacks for {len(scenarios)} scenarios")
        stacks = warm_stacks(
            resources,
            shared,
            progress,
            client=client,
            broker=broker,
            broker_url=broker_url,
            concurrency=concurrency,
            proxy_url=proxy_url,
            proxy_mode=proxy_mode,
            app_port=app_port,
            external_proxies=external_proxies,
            https=any(sc.tls for sc, _ in cells),
        )
        progress(
            f"{len(stacks.apps)} app stacks and {len(set(map(id, stacks.proxies.values())))} "
            f"proxies up after {time.monotonic() - began:.1f} s; running {len(cells)} cells x "
            f"{repeat}"
        )
        browser = stacks.browser
        check_alive = AliveCheck(
            resources,
            "during the matrix",
            [c for c in (also_alive, browser and browser.check_alive) if c is not None],
        )

        def own_stack(cell: tuple[Scenario, str], round_no: int) -> Verdict:
            sc, fix = cell
            # Through the same external proxy as the shared cells (never on app_port: the
            # checks before a matrix allow it with one shared stack only).
            outside = external_proxies.get(sc.proxy) if external_proxies else None
            if outside is None and proxy_url and sc.uses_proxy:
                outside = external_proxy(proxy_url, proxy_mode)
            return repro.run_until_tested(
                sc,
                fix,
                run_dir,
                lambda _message: None,
                attempts=MAX_ATTEMPTS,
                run_dir=run_dir / f"round-{round_no}" / f"{sc.name}--{fix}",
                client=client,
                proxy_url=outside.address if outside else None,
                proxy_mode=outside.mode if outside else "forward",
                broker=BrokerChoice(broker or sc.default_broker, broker_url if broker else None),
                should_stop=check_alive.stopping.is_set,
                screenshots=screenshots,
            )

        def one(i: int, attempt: int, round_no: int) -> Verdict:
            sc, fix = shared[i]
            cell_dir = attempt_dir(run_dir / f"round-{round_no}" / f"{sc.name}--{fix}", attempt)
            _, verdict = stacks.run_shared(
                sc,
                fix,
                cell_dir,
                f"/_lab/r{round_no}a{attempt}-{sc.name}--{fix}",
                check_alive,
                attempt=attempt,
                screenshots=screenshots,
            )
            return verdict

        result.startup_seconds = time.monotonic() - began
        run_rounds(
            result,
            cells,
            shared,
            own,
            one,
            own_stack,
            repeat,
            concurrency,
            check_alive.stopping,
            progress,
        )
        result.seconds = time.monotonic() - began
        write_json(run_dir / MATRIX_JSON, result.to_json())
        return result


RunShared = Callable[[int, int, int], Verdict]  # (index in `shared`, attempt, round) -> verdict
RunOwn = Callable[[tuple[Scenario, str], int], Verdict]  # (cell, round) -> its last verdict


def run_rounds(
    result: MatrixResult,
    cells: list[tuple[Scenario, str]],
    shared: list[tuple[Scenario, str]],
    own: list[tuple[Scenario, str]],
    run_shared: RunShared,
    run_own: RunOwn,
    repeat: int,
    concurrency: int,
    stopping: threading.Event,
    progress: Progress,
) -> None:
    """Every round of the matrix, in the order and at the pace lab/runs/schedule.py sets
    (`lab matrix` runs the cells itself, `lab matrix --dispatch` sends them to agents):
    a shared cell that tested nothing runs again at the back of the line; the cells with
    stacks of their own run beside them. Each round's verdicts go to `result`."""
    for round_no in range(1, repeat + 1):
        round_began = time.monotonic()
        untested_before: dict[tuple[str, str], str] = {}  # why a cell is run again

        def run_again(verdict: Verdict, untested_before=untested_before) -> bool:
            """A mismatch on a run that tested nothing (the machine was too slow)."""
            if verdict.inconclusive and verdict.untested is not None:
                untested_before[(verdict.scenario, verdict.fix)] = verdict.untested
            return verdict.inconclusive

        def one(i: int, attempt: int, round_no=round_no, untested_before=untested_before):
            verdict = run_shared(i, attempt, round_no)
            verdict.retried_because = untested_before.get((shared[i][0].name, shared[i][1]))
            return verdict

        with ThreadPoolExecutor(max_workers=OWN_STACK_CONCURRENCY) as own_pool:
            try:  # a Ctrl-C among the submits must stop the cells already running
                own_futures = [own_pool.submit(run_own, cell, round_no) for cell in own]
                done = run_in_turn(start_order(shared), one, run_again, concurrency, stopping)
                own_verdicts = results(own_futures)
            except BaseException:
                stopping.set()
                raise
        verdicts = [done[i] for i in range(len(shared))]
        for verdict in verdicts:
            write_json(Path(verdict.run_dir) / "result.json", verdict.to_json())
        by_cell = {(sc.name, fix): v for (sc, fix), v in zip(shared, verdicts, strict=True)}
        by_cell.update({(sc.name, fix): v for (sc, fix), v in zip(own, own_verdicts, strict=True)})
        result.rounds.append({(sc.name, fix): by_cell[(sc.name, fix)] for sc, fix in cells})
        result.round_seconds.append(time.monotonic() - round_began)
        counts = result.round_counts()[-1]
        progress(
            f"round {round_no}: {counts['mismatches']} of {counts['cells']} cells did not "
            f"match, {counts['not_judged']} could not be judged, {counts['run_again']} "
            "were run again"
        )


def defeats(result: MatrixResult) -> dict[str, list[str]]:
    """For each fix, the proxy scenarios where the UI did not complete (lookalikes left out:
    no HTTP fix can help there)."""
    beaten: dict[str, list[str]] = {fix: [] for fix in result.fixes}
    for (scenario, fix), verdict in result.last.items():
        if verdict.proxy != "none" and verdict.observed != "completed":
            beaten[fix].append(scenario)
    return beaten


def survivors(result: MatrixResult) -> list[str]:
    """Fixes that completed behind every proxy profile that was run (and met at least one)."""
    behind_a_proxy = {fix for (_, fix), v in result.last.items() if v.proxy != "none"}
    return [fix for fix, lost in defeats(result).items() if not lost and fix in behind_a_proxy]


def to_json_text(result: MatrixResult) -> str:
    return json.dumps(result.to_json())
