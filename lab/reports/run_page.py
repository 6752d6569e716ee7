"""report.html: the page of one run (or matrix cell), self-contained (inline CSS and SVG, no
script, no font or image fetched), so it opens from the run folder on any machine, offline.

It draws the verdict as judged (lab.judging.evidence.Verdict) over the evidence it was judged
from (lab.reports.run_data), and on Redis the memory chart, key patterns and redis-cli commands
(lab.reports.redis).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lab.data.events import EventLog
from lab.data.scenarios import Scenario
from lab.judging.evidence import HOPS, Evidence, Verdict
from lab.reports.look import (
    NOT_RUN,
    OUTCOMES,
    REPORT_FILE,
    SCREENSHOT_FILE,
    SOURCES,
    data_uri,
    templates,
    write_page,
)
from lab.reports.redis import load_section, redis_section
from lab.reports.run_data import RunData
from lab.reports.timeline import build_timeline, join_hops, where

DEFAULT_HANG_WINDOW = 3.0  # for a verdict that does not say its own


def _load_scenario(name: str) -> Scenario | None:
    from lab.data import scenarios
    from lab.data.errors import BadInput

    try:
        return scenarios.load(name)
    except (BadInput, OSError):
        return None


def _hop_chain(verdict: Verdict) -> list[dict[str, Any]]:
    task = verdict.task
    finished = task.get("finished_at")
    if verdict.ground_truth == "direct":
        return _audit_hop_chain(verdict, finished)
    values = {
        "worker": (
            f"task {task.get('final_state')} at {finished:.2f} s"
            if finished is not None
            else (
                "task started, never finished"
                if task.get("started_at") is not None
                else "task never started"
            )
        ),
        "result backend": str(verdict.backend_state),
        "origin": f"{_n(verdict.polls.get('reached_origin', 0), 'poll')} reached it",
        "proxy": (
            "none (direct)"
            if verdict.proxy == "none"
            else f"{verdict.proxy}: {verdict.polls.get('from_cache', 0)} from its cache"
        ),
        "client": f"{_n(verdict.polls.get('total', 0), 'poll')}, UI {verdict.observed}",
    }
    return [
        {"name": hop, "value": values[hop], "stopped": hop == verdict.stopped_at} for hop in HOPS
    ]


def _audit_hop_chain(verdict: Verdict, finished: float | None) -> list[dict[str, Any]]:
    """An audit of the user's app: the lab sees no worker or origin, only the app's answers
    to a direct poller (the ground truth), the proxy's records and the page's polls."""
    task = verdict.task
    values = {
        "app (direct poller)": (
            f"showed {task.get('final_state')} at {finished:.2f} s"
            if finished is not None
            else "showed no final state"
        ),
        "proxy": f"{verdict.proxy}: {verdict.polls.get('from_cache', 0)} from its cache",
        "client": f"{_n(verdict.polls.get('total', 0), 'poll')}, UI {verdict.observed}",
    }
    stopped = {"origin": "app (direct poller)"}.get(verdict.stopped_at or "", verdict.stopped_at)
    return [
        {"name": hop, "value": value, "stopped": hop == stopped} for hop, value in values.items()
    ]


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _evidence_files(run_dir: Path, shared: Iterable[Path]) -> list[dict[str, str]]:
    files = [
        {"href": p.name, "name": p.name, "size": _size(p)}
        for p in sorted(run_dir.iterdir())
        if p.is_file()
        and p.name != REPORT_FILE
        and not p.name.startswith(".")
        # SQLite's write-ahead log and its index: folded into the database and deleted when
        # the last connection closes, so a link to them would soon point nowhere.
        and not p.name.endswith(("-wal", "-shm"))
    ]
    for p in shared:
        rel = Path(os.path.relpath(p, run_dir)).as_posix()
        files.append({"href": rel, "name": rel, "size": _size(p)})
    return files


def _size(path: Path) -> str:
    try:
        n = path.stat().st_size
    except OSError:
        return ""
    return f"{n / 1024:.1f} KB" if n >= 1024 else f"{n} B"


def _stale_headers(stale: dict[str, Any] | None) -> list[tuple[str, str]]:
    if not stale:
        return []
    rows = [
        ("Age", stale.get("age")),
        ("Date", stale.get("date")),
        ("Via", stale.get("via")),
        ("Cache-Control", stale.get("cache_control")),
        ("X-Cache", stale.get("x_cache")),
    ]
    return [(name, "(none)" if value in (None, "") else str(value)) for name, value in rows]


def render_run_report(
    run_dir: Path,
    verdict: Verdict,
    *,
    scenario: Scenario | None = None,
    evidence: Evidence | None = None,
    events: EventLog | None = None,
) -> str:
    """The page for one run; evidence from `evidence` if given, else from the files (`events`:
    the files already read, else those in the run folder)."""
    scenario = scenario or _load_scenario(verdict.scenario)
    if evidence is not None:
        data = RunData.from_evidence(evidence)
    else:
        data = RunData.from_files(run_dir, verdict, events or EventLog.in_folder(run_dir))
    hang_window = DEFAULT_HANG_WINDOW if verdict.hang_window is None else verdict.hang_window
    joined = join_hops(data)
    timeline = build_timeline(verdict, data, joined, hang_window)
    counts = {key: sum(1 for j in joined if j.source == key) for key in SOURCES}
    screenshot = run_dir / SCREENSHOT_FILE
    warnings = list(verdict.warnings)
    if not data.polls and verdict.polls.get("total"):
        warnings.append("client.jsonl holds no polls: the timeline has nothing to draw.")
    if verdict.retried:
        why = verdict.retried_because or "the machine was too slow for it"
        warnings.append(
            f"This cell was run {verdict.attempts} times: the run before this one tested "
            f"nothing ({why})."
        )
    return (
        templates()
        .get_template("run_report.html.j2")
        .render(
            v=verdict,
            scenario=scenario,
            outcome=OUTCOMES.get(verdict.observed, NOT_RUN),
            hops=_hop_chain(verdict),
            timeline=timeline,
            sources=SOURCES,
            counts=counts,
            stale_headers=_stale_headers(verdict.first_stale_answer),
            stale=verdict.first_stale_answer,
            joined=joined,
            t0=data.client_started_at or 0.0,
            where=where,
            files=_evidence_files(run_dir, data.shared_files),
            screenshot=data_uri(screenshot) if screenshot.is_file() else None,
            warnings=warnings,
            hang_window=hang_window,
            folder=run_dir.name,
            redis=redis_section(
                run_dir,
                verdict,
                data.client_started_at,
                scenario.default_broker if scenario else None,
            ),
            load=load_section(verdict.load),
        )
    )


def write_run_report(run_dir: Path, verdict: Verdict, **sources: Any) -> Path | None:
    """Writes report.html in the run folder (`sources`: as render_run_report takes them)."""
    run_dir = Path(run_dir)
    return write_page(run_dir / REPORT_FILE, lambda: render_run_report(run_dir, verdict, **sources))
