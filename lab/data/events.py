"""The one reader of the evidence files the stacks write while a run goes on: the worker's
task-events, the origin's and the proxies' events, grouped by task id.

A run reads them while they grow (the worker's record tells when a task finished; a matrix
judges each cell when it ends, against files shared by many cells), so every read takes only
what was appended since the last one. The report reads the same files once, after the run.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lab.data.jsonl import JsonLinesTail
from sample_app.debug import DEBUG_ENDPOINT, is_debug_path

Event = dict[str, Any]
Grouped = dict[str, list[Event]]

TASK_ID_IN_URL = re.compile(r"/tasks/([0-9a-fA-F-]{8,})|[?&]task_id=([0-9a-fA-F-]{8,})")
# The files' names in a run folder; a matrix has one of each per stack: origin-events-<app>.jsonl.
ORIGIN_FILES = "origin-events*.jsonl"
PROXY_FILES = "proxy-events*.jsonl"
TASK_FILES = "task-events*.jsonl"


def task_id_in(event: Event) -> str | None:
    if event.get("task_id"):
        return str(event["task_id"])
    match = TASK_ID_IN_URL.search(event.get("url") or event.get("path") or "")
    return (match.group(1) or match.group(2)) if match else None


def is_status_request(event: Event) -> bool:
    """An answer about a task's status: a poll, or one event on an SSE stream.

    Not the POST that starts the task, not the request opening an SSE stream (its events,
    logged one by one by the origin, are the answers), and not the page's debug panel asking
    the origin for the truth (POST /debug/tasks/<id>: no poll, and no cache answers it).
    """
    if event.get("endpoint") in ("task_events", DEBUG_ENDPOINT):
        return False
    path = event.get("path") or (event.get("url") or "").split("://", 1)[-1].split("?")[0]
    if is_debug_path(path):
        return False
    return not path.rstrip("/").endswith("/tasks")


class EventLog:
    """Origin, proxy and worker events of some files, grouped by task id. `refresh` reads
    only what was appended since the last read; safe across threads (a matrix's cells share
    the files of their stacks)."""

    def __init__(
        self,
        *,
        origin: Iterable[Path] = (),
        proxy: Iterable[Path] = (),
        tasks: Iterable[Path] = (),
    ) -> None:
        self.origin: Grouped = {}
        self.proxy: Grouped = {}
        self.worker_ready = False
        self.started: dict[str, float] = {}
        self.finished: dict[str, float] = {}
        self.final_state: dict[str, str | None] = {}
        self.files: dict[str, set[Path]] = {}  # task id -> the files that hold its events
        self.proxy_files = sorted(proxy)
        self._tails = [(JsonLinesTail(p), self.origin) for p in sorted(origin)]
        self._tails += [(JsonLinesTail(p), self.proxy) for p in self.proxy_files]
        self._tails += [(JsonLinesTail(p), None) for p in sorted(tasks)]
        self._lock = threading.Lock()
        self._last_read = float("-inf")

    @classmethod
    def in_folder(cls, folder: Path) -> EventLog:
        """Every evidence file of a run (or matrix) folder, read."""
        log = cls(
            origin=folder.glob(ORIGIN_FILES),
            proxy=folder.glob(PROXY_FILES),
            tasks=folder.glob(TASK_FILES),
        )
        log.refresh()
        return log

    def refresh(self, min_interval: float = 0.0) -> None:
        """Reads what was appended since the last read; with `min_interval`, not again within
        that many seconds (many threads asking many times a second share one read)."""
        with self._lock:
            now = time.monotonic()
            if now - self._last_read < min_interval:
                return
            self._last_read = now
            for tail, grouped in self._tails:
                for event in tail.read_new():
                    if grouped is None:
                        self._take_task_event(event, tail.path)
                    elif (task_id := task_id_in(event)) and is_status_request(event):
                        grouped.setdefault(task_id, []).append(event)
                        self.files.setdefault(task_id, set()).add(tail.path)

    def _take_task_event(self, event: Event, path: Path) -> None:
        kind, task_id = event.get("event"), event.get("task_id")
        if kind == "worker_ready":
            self.worker_ready = True
            return
        if not task_id:
            return
        if kind == "task_started":
            self.started.setdefault(task_id, event["time"])
        elif kind == "task_finished":
            self.finished.setdefault(task_id, event["time"])
            self.final_state[task_id] = event.get("state")
        else:
            return
        self.files.setdefault(task_id, set()).add(path)

    def finished_at(self, task_id: str | None) -> float | None:
        if task_id is None:
            return None
        self.refresh(0.01)
        return self.finished.get(task_id)


class StackEventReaders:
    """One reader per origin or proxy events file of the running stacks, shared by every cell
    judged against it: each judgement reads only what was appended since the last one (a
    matrix's cells share their stacks' files, and the machine's CPU is scarce)."""

    def __init__(self) -> None:
        self._logs: dict[Path, EventLog] = {}
        self._lock = threading.Lock()

    def origin(self, path: Path | None) -> Grouped:
        return self._read(path, "origin").origin

    def proxy(self, path: Path | None) -> Grouped:
        return self._read(path, "proxy").proxy

    def _read(self, path: Path | None, kind: str) -> EventLog:
        if path is None:
            return EventLog()
        with self._lock:
            log = self._logs.get(path)
            if log is None:
                log = self._logs[path] = EventLog(**{kind: [path]})
        log.refresh()
        return log
