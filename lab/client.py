"""The lab's Python client: the page's polling logic, step for step, through the proxy.

Like static/poller.js: POST /tasks, then poll -> wait for the answer -> stop on a final state,
stop with an error on any failed request, else wait the poll interval and poll again. Both build
their polls from sample_app/strategies.json.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from sample_app.strategies import Strategy, StrategyBook

REQUEST_TIMEOUT = 10.0


@dataclass
class Poll:
    seq: int
    sent_at: float
    received_at: float
    url: str
    status: int | None
    state: str | None
    served_at: float | None = None
    age: str | None = None
    date: str | None = None
    via: str | None = None
    x_cache: str | None = None
    cache_control: str | None = None
    error: str | None = None


class PollingClient:
    """Runs in its own thread; the runner reads `ui_state`, `polls` and `task_id` while it runs."""

    def __init__(
        self,
        *,
        base_url: str,
        proxy_url: str | None,
        book: StrategyBook,
        strategy: Strategy,
        poll_interval: float,
        task_duration: float,
        log_path: Path,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.book = book
        self.strategy = strategy
        self.poll_interval = poll_interval
        self.task_duration = task_duration
        self.log_path = log_path
        self._http = httpx.Client(
            proxy=proxy_url, timeout=REQUEST_TIMEOUT, trust_env=False, follow_redirects=False
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="polling-client", daemon=True)
        self.ui_state = "idle"  # idle -> running -> completed | errored
        self.task_id: str | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.error: str | None = None
        self.polls: list[Poll] = []

    # -- the runner's side
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=REQUEST_TIMEOUT + 1)
        self._http.close()

    @property
    def last_state(self) -> str | None:
        return self.polls[-1].state if self.polls else None

    @property
    def done(self) -> bool:
        return self.ui_state in ("completed", "errored")

    # -- the page's logic
    def _run(self) -> None:
        try:
            self._start_task()
        except Exception as exc:  # noqa: BLE001 - the page shows any error and stops
            self._show_error(f"starting the task failed: {exc}")
            return
        while not self._stop.is_set():
            poll = self._poll_once(len(self.polls) + 1)
            self.polls.append(poll)
            self._log("poll", **asdict(poll))
            if poll.error:
                self._show_error(poll.error)
                return
            if poll.state in self.book.final_states:
                self.finished_at = poll.received_at
                self.ui_state = "completed" if poll.state == "SUCCESS" else "errored"
                self._log("ui", ui_state=self.ui_state, state=poll.state)
                return
            self._stop.wait(self.poll_interval)

    def _start_task(self) -> None:
        self.ui_state = "running"
        self.started_at = time.time()
        response = self._http.post(
            f"{self.base_url}/tasks",
            json={"fix": self.strategy.name, "duration": self.task_duration},
        )
        self._log("start", status=response.status_code, body=response.text[:500])
        response.raise_for_status()
        self.task_id = response.json()["task_id"]

    def _poll_once(self, seq: int) -> Poll:
        assert self.task_id is not None
        target = self.strategy.poll_target(self.book.status_path_for(self.task_id))
        url = f"{self.base_url}{target}"
        sent_at = time.time()
        try:
            response = self._http.get(url, headers=self.strategy.request_headers)
        except httpx.HTTPError as exc:
            return Poll(
                seq, sent_at, time.time(), url, None, None, error=f"{type(exc).__name__}: {exc}"
            )
        headers = response.headers
        poll = Poll(
            seq,
            sent_at,
            time.time(),
            url,
            response.status_code,
            None,
            age=headers.get("age"),
            date=headers.get("date"),
            via=headers.get("via"),
            x_cache=headers.get("x-cache"),
            cache_control=headers.get("cache-control"),
        )
        if not response.is_success:
            poll.error = f"HTTP {response.status_code}"
            return poll
        try:
            body: dict[str, Any] = response.json()
            poll.state = body["state"]
            poll.served_at = body.get("served_at")
        except (ValueError, KeyError, TypeError) as exc:
            poll.error = f"unreadable status answer: {exc}"
        return poll

    def _show_error(self, message: str) -> None:
        self.error = message
        self.finished_at = time.time()
        self.ui_state = "errored"
        self._log("ui", ui_state="errored", error=message)

    def _log(self, event: str, **fields: Any) -> None:
        line = json.dumps({"time": time.time(), "event": event, **fields})
        with self.log_path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
