"""One reader of the evidence files (lab.data.events), used by the stacks, the judge and the
report; the verdict carries what the report draws; the pages are published after the run."""

from __future__ import annotations

import ast
import json
import threading
from pathlib import Path
from typing import Any

from lab.clients.polling import Poll
from lab.data import scenarios
from lab.data.events import EventLog, StackEventReaders
from lab.data.scenarios import Outcome
from lab.judging.evidence import Evidence, Verdict, judge
from lab.reports import look, publish
from sample_app import strategies

T0 = 1_800_000_000.0
TASK = "5c1e0a2b-7d3f-4e8a-9b6c-0d1e2f3a4b5c"
OTHER = "9f8e7d6c-5b4a-4938-8271-605f4e3d2c1b"
FINAL = strategies.load().final_states


def append(path: Path, *events: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as fh:
        for event in events:
            fh.write(json.dumps(event) + "\n")


def status(task: str, at: float, **extra: Any) -> dict[str, Any]:
    return {"time": T0 + at, "path": f"/tasks/{task}/status", "status": 200, **extra}


def test_each_read_takes_only_what_was_appended_grouped_by_task(tmp_path):
    origin, tasks = tmp_path / "origin-events.jsonl", tmp_path / "task-events.jsonl"
    log = EventLog(origin=[origin], tasks=[tasks])
    log.refresh()  # nothing written yet
    assert log.origin == {} and not log.worker_ready

    append(tasks, {"time": T0, "event": "worker_ready"})
    append(origin, status(TASK, 0.1), {"time": T0, "path": "/tasks", "task_id": TASK})
    log.refresh()
    assert log.worker_ready
    assert [e["time"] for e in log.origin[TASK]] == [T0 + 0.1]  # the POST is no status read

    append(origin, status(TASK, 0.2), status(OTHER, 0.3))
    append(tasks, {"time": T0 + 1, "event": "task_finished", "task_id": TASK, "state": "SUCCESS"})
    log.refresh()
    assert [e["time"] for e in log.origin[TASK]] == [T0 + 0.1, T0 + 0.2]  # not read twice
    assert len(log.origin[OTHER]) == 1
    assert log.finished_at(TASK) == T0 + 1 and log.final_state[TASK] == "SUCCESS"
    assert log.files[TASK] == {origin, tasks}


def test_a_folder_is_read_whole_with_one_file_per_stack(tmp_path):
    append(tmp_path / "origin-events-path.jsonl", status(TASK, 0.1))
    append(tmp_path / "origin-events-query.jsonl", status(OTHER, 0.1))
    append(tmp_path / "proxy-events-rfc.jsonl", {"time": T0, "url": f"http://a/tasks/{TASK}"})
    append(
        tmp_path / "task-events-path.jsonl", {"time": T0, "event": "task_started", "task_id": TASK}
    )

    log = EventLog.in_folder(tmp_path)
    assert set(log.origin) == {TASK, OTHER} and set(log.proxy) == {TASK}
    assert log.started[TASK] == T0
    assert log.proxy_files == [tmp_path / "proxy-events-rfc.jsonl"]


def test_cells_judged_against_a_shared_file_each_see_it_as_it_is_then(tmp_path):
    """A matrix judges each cell when it ends: the shared origin file is read on from where the
    last judgement stopped, and a later event of a judged task does not change its evidence."""
    shared = tmp_path / "origin-events-path.jsonl"
    readers = StackEventReaders()
    append(shared, status(TASK, 0.1))
    first = list(readers.origin(shared)[TASK])
    append(shared, status(OTHER, 0.2), status(TASK, 0.3))
    assert [e["time"] for e in readers.origin(shared)[OTHER]] == [T0 + 0.2]
    assert len(first) == 1
    assert readers.origin(None) == {} and readers.proxy(None) == {}


def test_concurrent_reads_take_each_event_once(tmp_path):
    path = tmp_path / "origin-events.jsonl"
    append(path, *(status(TASK, n / 1000) for n in range(500)))
    log = EventLog(origin=[path])
    threads = [threading.Thread(target=log.refresh) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(log.origin[TASK]) == 500


def evidence(decided_at: float | None, uses_proxy: bool = True) -> Evidence:
    polls = [
        Poll(n, T0 + n * 0.25, T0 + n * 0.25 + 0.01, "http://a", 200, "PENDING") for n in (1, 2)
    ]
    return Evidence(
        task_id=TASK,
        client_started_at=T0,
        task_started_at=T0 + 0.2,
        task_finished_at=T0 + 1.2,
        task_final_state="SUCCESS",
        backend_state="SUCCESS",
        origin_status_requests=[],
        proxy_status_requests=[],
        polls=polls,
        client_error=None,
        ui_state="running",
        uses_proxy=uses_proxy,
        decided_at=decided_at,
    )


def test_the_verdict_carries_what_the_report_draws():
    scenario = scenarios.load("proxy-cache")
    verdict = judge(
        scenario, "none", Outcome.hung, evidence(T0 + 4.5), seconds=5, final_states=FINAL
    )
    assert verdict.client_started_at == T0
    assert verdict.verdict_at == 4.5
    assert verdict.hang_window == scenario.hang_window
    assert verdict.proxy_visible
    direct = judge(
        scenario, "none", Outcome.hung, evidence(None, False), seconds=5, final_states=FINAL
    )
    assert direct.verdict_at is None and not direct.proxy_visible
    # result.json gains fields and is read back whole.
    assert Verdict.from_json(json.loads(json.dumps(verdict.to_json()))) == verdict


def test_publishing_a_run_draws_its_earlier_runs_too(tmp_path):
    """`lab repro` runs again when the machine was too slow; each run's folder keeps a page."""
    scenario = scenarios.load("proxy-cache")
    first = judge(
        scenario, "none", Outcome.completed, evidence(T0 + 2), seconds=5, final_states=FINAL
    )
    first.run_dir = str(tmp_path)
    (tmp_path / "result.json").write_text(json.dumps(first.to_json()), "utf-8")
    again = judge(scenario, "none", Outcome.hung, evidence(T0 + 4.5), seconds=5, final_states=FINAL)
    again.run_dir, again.attempts = str(tmp_path / "attempt-2"), 2
    (tmp_path / "attempt-2").mkdir()

    assert publish.publish_run(again, scenario) == tmp_path / "attempt-2" / look.REPORT_FILE
    assert (tmp_path / look.REPORT_FILE).is_file()
    assert "verdict: hung at 4.50 s" in (tmp_path / "attempt-2" / look.REPORT_FILE).read_text()


def test_runs_never_import_reports():
    """The run returns its verdicts; the pages are drawn after it (lab.reports.publish)."""
    for path in (Path(__file__).parents[1] / "lab" / "runs").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            assert not any(n.startswith("lab.reports") for n in names), (path, names)


def test_an_unreadable_earlier_verdict_costs_its_page_only(tmp_path, capsys):
    scenario = scenarios.load("proxy-cache")
    (tmp_path / "result.json").write_text('{"scenario": "proxy-cache", "error": "x"}', "utf-8")
    again = judge(scenario, "none", Outcome.hung, evidence(T0 + 4.5), seconds=5, final_states=FINAL)
    again.run_dir, again.attempts = str(tmp_path / "attempt-2"), 2
    (tmp_path / "attempt-2").mkdir()

    assert publish.publish_run(again, scenario) == tmp_path / "attempt-2" / look.REPORT_FILE
    assert not (tmp_path / look.REPORT_FILE).exists()
    assert f"report: no report.html in {tmp_path}" in capsys.readouterr().err
