"""Other traffic on the app before the UI's task: a stream of tasks ([load] in a scenario).

The stream goes to the app directly, not through the scenario's proxy: it stands for other
users, API clients and cron jobs, whose tasks fill the same broker and result backend.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from lab.client import http_error
from lab.scenarios import LoadSetup
from lab.stack import TaskEvents

REQUEST_TIMEOUT = 10.0
# After the last task was sent, the lab waits for the worker to finish the stream's tasks as
# long as it keeps finishing some (a worker the bug killed finishes none).
DRAIN_STALL_TIMEOUT = 3.0
MAX_TOP_UP = 500  # tasks sent after the stream to make sure a full broker is full right now


@dataclass
class StreamResult:
    sent: int = 0
    accepted: int = 0
    refused: int = 0  # answered with an error: the task was not queued
    finished: int = 0  # accepted tasks the worker finished (its own record)
    failed: int = 0  # finished in a state other than SUCCESS (e.g. the result could not be stored)
    first_error: str | None = None
    first_error_at: float | None = None  # seconds from the stream's start
    errors: dict[str, int] = field(default_factory=dict)  # each distinct error, how often
    last_error: str | None = None
    seconds: float = 0.0
    task_ids: list[str] = field(default_factory=list)

    @property
    def completed(self) -> bool:
        """Every task was queued and finished successfully."""
        return self.refused == 0 and self.failed == 0 and self.finished == self.sent

    def to_json(self) -> dict:
        data = asdict(self)
        data.pop("task_ids")
        data.pop("last_error")
        data["completed"] = self.completed
        return data


def run_stream(
    load: LoadSetup,
    app_url: str,
    fix: str,
    task_events: TaskEvents,
    log_path: Path,
    check_alive: Callable[[], None],
) -> StreamResult:
    """Send the stream at its rate and wait (bounded) until the worker finished what it took.

    If the app refused any of it because the broker was full, keep sending until it says so
    twice in a row, so the UI's task meets a broker that is full right now: a worker the bug
    killed frees its connection's memory, and a full Redis has room again for a few messages.
    """
    result = StreamResult()
    began = time.monotonic()
    with (
        httpx.Client(timeout=REQUEST_TIMEOUT, trust_env=False) as http,
        log_path.open("a", encoding="utf-8") as log,
    ):

        def send() -> bool:
            check_alive()
            # Paced from the start, so a slow answer does not slow the whole stream down.
            time.sleep(max(0.0, began + result.sent / load.per_second - time.monotonic()))
            result.sent += 1
            task_id, error = _start_task(http, app_url, fix, load)
            result.last_error = error
            log.write(
                json.dumps(
                    {"time": time.time(), "n": result.sent, "task_id": task_id, "error": error}
                )
                + "\n"
            )
            if task_id is not None:
                result.accepted += 1
                result.task_ids.append(task_id)
                return True
            result.refused += 1
            assert error is not None
            result.errors[error] = result.errors.get(error, 0) + 1
            if result.first_error is None:
                result.first_error = error
                result.first_error_at = round(time.monotonic() - began, 3)
            return False

        for _ in range(load.tasks):
            send()
        _drain(result, task_events, check_alive)
        if any(says_full(error) for error in result.errors):
            full_in_a_row = 0
            for _ in range(MAX_TOP_UP):
                full_in_a_row = (
                    0 if send() or not says_full(result.last_error) else full_in_a_row + 1
                )
                if full_in_a_row == 2:
                    break
    for task_id in result.task_ids:
        if task_id in task_events.finished:
            result.finished += 1
            if task_events.final_state.get(task_id) != "SUCCESS":
                result.failed += 1
    result.seconds = round(time.monotonic() - began, 3)
    return result


def says_full(error: str | None) -> bool:
    """The broker refused because it is full (Redis: OOM ... used memory > 'maxmemory')."""
    return error is not None and ("maxmemory" in error or "OOM" in error)


def _start_task(
    http: httpx.Client, app_url: str, fix: str, load: LoadSetup
) -> tuple[str | None, str | None]:
    """(task id, None) or (None, the error the app gave)."""
    try:
        response = http.post(
            f"{app_url}/tasks",
            json={"fix": fix, "duration": 0, "report_kb": load.report_kb, "watch": load.watched},
        )
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"
    if not response.is_success:
        return None, http_error(response)
    return response.json()["task_id"], None


def _drain(result: StreamResult, task_events: TaskEvents, check_alive: Callable[[], None]) -> None:
    done, progress_at = -1, time.monotonic()
    while time.monotonic() - progress_at < DRAIN_STALL_TIMEOUT:
        check_alive()
        task_events.refresh(0)
        now_done = sum(1 for task_id in result.task_ids if task_id in task_events.finished)
        if now_done == len(result.task_ids):
            return
        if now_done != done:
            done, progress_at = now_done, time.monotonic()
        time.sleep(0.02)
