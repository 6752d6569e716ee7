"""Other traffic on the app before the UI's task: a stream of tasks ([load] in a scenario).

The stream goes to the app directly, not through the scenario's proxy: it stands for other
users, API clients and cron jobs, whose tasks fill the same broker and result backend.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from lab.clients.polling import http_client, http_error
from lab.data.events import EventLog
from lab.data.scenarios import LoadSetup

REQUEST_TIMEOUT = 10.0
# After the last task was sent, the lab waits for the worker to finish the stream's tasks as
# long as it keeps finishing some (a worker the bug killed finishes none).
DRAIN_STALL_TIMEOUT = 3.0
MAX_TOP_UP = 2000  # tasks sent after the stream to make sure a full broker is full right now
# Refusals in a row that say "full" before the UI's task may start: a full Redis still takes
# a small message now and then, when another client's buffers shrink.
FULL_IN_A_ROW = 5
# The stream's tasks that may wait for the worker at once (see TaskStream._wait_for_worker).
MAX_IN_FLIGHT = 3
KEEP_FULL_EVERY = 0.01  # seconds between other users' tasks while the UI's task starts


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
    seconds: float = 0.0
    task_ids: list[str] = field(default_factory=list)

    @property
    def completed(self) -> bool:
        """Every task was queued and finished successfully."""
        return self.refused == 0 and self.failed == 0 and self.finished == self.sent

    def to_json(self) -> dict:
        data = asdict(self)
        data.pop("task_ids")
        data["completed"] = self.completed
        return data


class TaskStream:
    """The stream of other users' tasks, sent to the app directly; thread-safe counters.

    `run` sends the stream at its rate and waits (bounded) until the worker finished what it
    took. If the broker refused a write meanwhile (the app said so, or `broker_refused()`:
    Redis counted an OOM error, perhaps only the worker's), the broker is full: `run` then
    keeps sending until the app says so FULL_IN_A_ROW times in a row, and `keep_full` goes
    on sending in the background while the UI's own task starts. A full Redis still takes a
    small message whenever another client's buffers shrink (a worker the bug killed frees
    its connection's memory): other users keep coming, and their messages take that room, as
    they would in production, so the UI's Start meets a broker that is full right now.
    """

    def __init__(
        self,
        load: LoadSetup,
        app_url: str,
        fix: str,
        task_events: EventLog,
        log_path: Path,
        check_alive: Callable[[], None],
        broker_refused: Callable[[], bool] | None = None,
    ) -> None:
        self.load = load
        self.app_url = app_url
        self.fix = fix
        self.task_events = task_events
        self.check_alive = check_alive
        self.broker_refused = broker_refused
        self.result = StreamResult()
        self.full = False
        self._seen_refusal = False
        self._began = time.monotonic()
        self._last_sent = float("-inf")
        self._lock = threading.Lock()
        self._log = log_path.open("a", encoding="utf-8")
        self._http = http_client(timeout=REQUEST_TIMEOUT)
        self._stop = threading.Event()
        self._filler: threading.Thread | None = None

    def run(self) -> None:
        for _ in range(self.load.tasks):
            if not self._refused():
                self._wait_for_worker()
            self._send(paced=True)
        if not self._refused():
            self._drain()
        self.full = self._refused()
        if self.full:
            # Until the app refuses every Start: a full Redis still takes a small message now
            # and then (the kombu errors that follow an OOM on a connection are refusals too).
            refused_in_a_row = 0
            for _ in range(MAX_TOP_UP):
                error = self._send(paced=False)
                refused_in_a_row = refused_in_a_row + 1 if error is not None else 0
                if refused_in_a_row == FULL_IN_A_ROW:
                    break

    def _refused(self) -> bool:
        """The broker refused a write (the app said so, or Redis counted an OOM error). Once
        true it stays true, so Redis is not asked again."""
        if not self._seen_refusal:
            self._seen_refusal = any(says_full(error) for error in self.result.errors) or (
                self.broker_refused is not None and self.broker_refused()
            )
        return self._seen_refusal

    def _wait_for_worker(self) -> None:
        """The pace follows what the machine achieves: no more than MAX_IN_FLIGHT of the
        stream's tasks wait for the worker. On a busy machine a starved worker would
        otherwise catch up in a burst, and a burst of results outlives a short expiry together:
        the same stream would fill Redis on a slow machine and not on a fast one."""
        ids = self.result.task_ids
        progress_at, done = time.monotonic(), -1
        while time.monotonic() - progress_at < DRAIN_STALL_TIMEOUT:
            self.task_events.refresh(0)
            now_done = sum(1 for task_id in ids if task_id in self.task_events.finished)
            if len(ids) - now_done <= MAX_IN_FLIGHT or self._refused():
                return
            if now_done != done:
                done, progress_at = now_done, time.monotonic()
            self.check_alive()
            time.sleep(0.02)

    def keep_full(self) -> None:
        """While the UI's task starts: other users keep coming (only if the broker is full)."""
        if self.full:
            self._filler = threading.Thread(target=self._fill, name="keep-full", daemon=True)
            self._filler.start()

    def finish(self) -> StreamResult:
        self._stop.set()
        if self._filler is not None:
            self._filler.join(timeout=REQUEST_TIMEOUT + 1)
        self._http.close()
        self._log.close()
        result = self.result
        self.task_events.refresh(0)
        for task_id in result.task_ids:
            if task_id in self.task_events.finished:
                result.finished += 1
                if self.task_events.final_state.get(task_id) != "SUCCESS":
                    result.failed += 1
        result.seconds = round(time.monotonic() - self._began, 3)
        return result

    def _fill(self) -> None:
        while not self._stop.wait(KEEP_FULL_EVERY):
            try:
                self._send(paced=False, check=False)
            except Exception:  # noqa: BLE001 - the run goes on; its checks report a dead app
                return

    def _send(self, paced: bool, check: bool = True) -> str | None:
        """One task; None when the app took it, else the error it gave."""
        if check:
            self.check_alive()
        result = self.result
        if paced:
            # At most per_second tasks in any second: a late send is not made up for by a
            # burst (which is what a busy machine would otherwise send).
            due = self._last_sent + 1 / self.load.per_second
            time.sleep(max(0.0, due - time.monotonic()))
            self._last_sent = time.monotonic()
        task_id, error = _start_task(self._http, self.app_url, self.fix, self.load)
        with self._lock:
            result.sent += 1
            record = {"time": time.time(), "n": result.sent, "task_id": task_id, "error": error}
            self._log.write(json.dumps(record) + "\n")
            if task_id is not None:
                result.accepted += 1
                result.task_ids.append(task_id)
                return None
            result.refused += 1
            assert error is not None
            result.errors[error] = result.errors.get(error, 0) + 1
            if result.first_error is None:
                result.first_error = error
                result.first_error_at = round(time.monotonic() - self._began, 3)
            return error

    def _drain(self) -> None:
        done, progress_at = -1, time.monotonic()
        ids = self.result.task_ids
        while time.monotonic() - progress_at < DRAIN_STALL_TIMEOUT:
            self.check_alive()
            self.task_events.refresh(0)
            now_done = sum(1 for task_id in ids if task_id in self.task_events.finished)
            if now_done == len(ids):
                return
            if now_done != done:
                done, progress_at = now_done, time.monotonic()
            time.sleep(0.02)


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
