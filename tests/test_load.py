"""The stream of other users' tasks ([load]): its pace follows what the machine achieves."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import pytest

from lab.clients import load
from lab.data.scenarios import LoadSetup
from tests.lab_helpers import LoopbackOrigin


class SlowWorker:
    """Stands in for the worker's record (an EventLog): the worker finishes one queued task each
    time it is looked at after `every` seconds have passed, however many are waiting (a starved
    worker)."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.queued: list[str] = []
        self.finished: dict[str, float] = {}
        self.final_state: dict[str, str] = {}
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def queue(self, task_id: str) -> int:
        """Queue a task; returns how many of the stream's tasks were waiting before it."""
        with self._lock:
            waiting = len(self.queued)
            self.queued.append(task_id)
            return waiting

    def refresh(self, _min_interval: float = 0.0) -> None:
        with self._lock:
            if self.queued and time.monotonic() - self._last >= self.every:
                task_id = self.queued.pop(0)
                self.finished[task_id] = time.time()
                self.final_state[task_id] = "SUCCESS"
                self._last = time.monotonic()


@pytest.fixture
def app():
    worker = SlowWorker(every=0.05)
    waiting_at_send: list[int] = []
    sent_at: list[float] = []

    def start_task(_method: str, _path: str) -> tuple[int, str, bytes]:
        task_id = str(uuid.uuid4())
        sent_at.append(time.monotonic())
        waiting_at_send.append(worker.queue(task_id))
        return 202, "application/json", json.dumps({"task_id": task_id}).encode()

    with LoopbackOrigin(start_task) as origin:
        yield origin.url, worker, waiting_at_send, sent_at


def stream_to(url: str, worker: SlowWorker, tmp_path: Path, **setup: float) -> load.TaskStream:
    return load.TaskStream(
        LoadSetup(report_kb=1, **setup),
        url,
        "none",
        worker,  # type: ignore[arg-type]
        tmp_path / "load.jsonl",
        check_alive=lambda: None,
    )


def test_a_starved_worker_holds_the_stream_back_instead_of_catching_up_in_a_burst(
    app, tmp_path: Path
):
    url, worker, waiting_at_send, sent_at = app
    stream = stream_to(url, worker, tmp_path, tasks=20, per_second=1000)
    stream.run()
    result = stream.finish()
    assert result.sent == result.accepted == 20 and result.finished == 20
    # Never more than MAX_IN_FLIGHT of the stream's tasks waited for the worker.
    assert max(waiting_at_send) <= load.MAX_IN_FLIGHT, waiting_at_send


def test_a_late_task_is_not_made_up_for_by_a_burst(app, tmp_path: Path, monkeypatch):
    url, worker, _, _ = app
    worker.every = 0.0
    # When the stream sends, not when the app happens to receive (a busy loopback can deliver
    # two paced requests close together).
    sent_at: list[float] = []
    start_task = load._start_task

    def timed_start_task(*args, **kwargs):
        sent_at.append(time.monotonic())
        return start_task(*args, **kwargs)

    monkeypatch.setattr(load, "_start_task", timed_start_task)
    stream = stream_to(url, worker, tmp_path, tasks=6, per_second=20)
    # The scenario, not a wait: the machine was busy before the stream began, so that all six
    # tasks were "due" at once.
    time.sleep(0.3)
    stream.run()
    stream.finish()
    gaps = [b - a for a, b in zip(sent_at, sent_at[1:], strict=False)]
    assert len(sent_at) == 6
    assert min(gaps) >= 1 / 20 * 0.9, gaps  # at most per_second tasks in any second (a burst: ~0)
