"""The one publishing step: after a run returns, its pages are written from its verdicts.

`lab repro` -> the run's report.html; `lab matrix` -> matrix.md, every cell's report.html and
matrix.html (with --brokers, those of each broker's matrix). The pages draw the verdicts as
judged, over the evidence files (lab.data.events reads them: a matrix's shared files once for
all its cells).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path

from lab.data.events import TASK_FILES, EventLog
from lab.data.scenarios import Scenario
from lab.judging.evidence import Verdict
from lab.reports.look import REPORT_FILE
from lab.reports.matrix_page import write_markdown, write_matrix_report
from lab.reports.run_page import write_run_report
from lab.runs.broker_comparison import BrokerComparison
from lab.runs.matrix import MatrixResult
from lab.runs.schedule import attempt_dir


def publish_run(verdict: Verdict, scenario: Scenario | None = None) -> Path | None:
    """report.html in the run's folder, and in the folder of each earlier run of it that
    tested nothing (`lab repro` runs again when the machine was too slow)."""
    for earlier in _earlier_attempts(verdict):
        write_run_report(Path(earlier.run_dir), earlier, scenario=scenario)
    return write_run_report(Path(verdict.run_dir), verdict, scenario=scenario)


def _earlier_attempts(verdict: Verdict) -> list[Verdict]:
    """The verdicts the earlier runs of this one left in their folders (attempt N runs in
    attempt-N/ inside the first run's folder)."""
    if verdict.attempts <= 1:
        return []
    first = Path(verdict.run_dir).parent
    found = []
    for attempt in range(1, verdict.attempts):
        path = attempt_dir(first, attempt) / "result.json"
        try:
            found.append(Verdict.from_json(json.loads(path.read_text("utf-8"))))
        except (OSError, ValueError, TypeError) as exc:  # a page is a view: never fail the run
            print(f"report: no {REPORT_FILE} in {path.parent}: {exc}", file=sys.stderr)
    return found


def publish_matrix(result: MatrixResult, scenarios: Iterable[Scenario] = ()) -> Path | None:
    """matrix.md, report.html in every cell folder of every round, then matrix.html (which
    links them all). Returns matrix.html's path, None when it could not be drawn."""
    known = {sc.name: sc for sc in scenarios}
    root = Path(result.run_dir)
    write_markdown(result)
    shared = EventLog.in_folder(root)
    for round_verdicts in result.rounds:
        for (name, _fix), verdict in round_verdicts.items():
            folder = Path(verdict.run_dir)
            # A cell on a stack of its own (a whole `lab repro` run) keeps its evidence in
            # its own folder; the others share the files at the matrix's top.
            if any(folder.glob(TASK_FILES)):
                publish_run(verdict, known.get(name))
            else:
                write_run_report(folder, verdict, scenario=known.get(name), events=shared)
    return write_matrix_report(result, known.values())


def publish_comparison(comparison: BrokerComparison, scenarios: Iterable[Scenario] = ()) -> None:
    """The pages of each broker's matrix."""
    loaded = list(scenarios)
    for result in comparison.results.values():
        publish_matrix(result, loaded)
