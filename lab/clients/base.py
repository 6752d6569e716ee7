"""What the lab reads from a client, whichever it is (the Python client or the real page in a
browser): the `Client` protocol, and `ClientBase`, the state and log both clients keep."""

from __future__ import annotations

import contextlib
import json
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from lab.clients.poll import Poll
from sample_app.strategies import Strategy, StrategyBook

FINAL_UI_STATES = ("completed", "errored", "leaked")
NEIGHBOUR_FIRST_POLL_TIMEOUT = 10.0


@runtime_checkable
class Client(Protocol):
    """One user of the sample app's page. The runner starts it, reads its plain attributes from
    its own thread while it runs (the UI's state, the task it started, every poll), and stops
    it. `open`, `check_alive` and `screenshot` are the browser's set-up, health and picture:
    the Python client has nothing to open, cannot die on its own and has nothing to show."""

    kind: ClassVar[str]  # the verdict's `client`: "python" or "browser"
    strategy: Strategy
    ui_state: str  # idle -> running -> completed | errored | leaked
    task_id: str | None
    started_at: float | None
    finished_at: float | None
    error: str | None
    foreign_task_id: str | None  # the task a leaked answer was about
    warnings: list[str]
    polls: list[Poll]

    @property
    def done(self) -> bool: ...

    @property
    def last_state(self) -> str | None: ...

    def open(self, check_alive: Callable[[], None] = ...) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def check_alive(self, during: str = ...) -> None: ...

    def screenshot(self, path: Path) -> bool: ...


@dataclass(kw_only=True, eq=False, repr=False)
class ClientBase:
    """The settings both clients are made with, what the UI shows, and the client's log
    (client.jsonl): one JSON line per event, the same events from both clients."""

    kind: ClassVar[str]
    base_url: str
    proxy_url: str | None  # None: straight to the app
    book: StrategyBook
    strategy: Strategy
    poll_interval: float
    task_duration: float
    log_path: Path
    status_url_style: str = "path"
    # HTTPS: the run's CAs, the only ones the Python client trusts (the browser is given
    # them at launch); None: the default context (plain HTTP needs none).
    verify: ssl.SSLContext | None = None

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        self.ui_state = "idle"
        self.task_id: str | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.error: str | None = None
        self.foreign_task_id: str | None = None
        self.warnings: list[str] = []
        self.polls: list[Poll] = []
        # Written into every line after time and event ({"client": "browser"} for the page).
        self.log_label: dict[str, str] = {}
        # HTTPS: the first certificate the client accepted ({"subject", "issuer"}).
        self.tls_seen: dict[str, str] | None = None

    @property
    def last_state(self) -> str | None:
        """The state the UI shows: the last answer's (failed requests change nothing)."""
        return next((poll.state for poll in reversed(self.polls) if poll.state), None)

    @property
    def done(self) -> bool:
        return self.ui_state in FINAL_UI_STATES

    def is_final(self, poll: Poll) -> bool:
        """An answer the UI stops at: a leak, or a final state."""
        return poll.foreign_task_id is not None or poll.state in self.book.final_states

    # -- no set-up, nothing that can die on its own, nothing to show (the browser has them)
    def open(self, check_alive: Callable[[], None] = lambda: None) -> None:
        return None

    def check_alive(self, during: str = "during the run") -> None:
        return None

    def screenshot(self, path: Path) -> bool:
        return False

    def saw_certificate(self, subject: str | None, issuer: str | None) -> None:
        """The certificate a connection was shown and accepted: the first is kept, each new
        one is logged (client.jsonl, event "tls")."""
        seen = {"subject": subject or "?", "issuer": issuer or "?"}
        if seen != self.tls_seen:
            self.log("tls", **seen)
        if self.tls_seen is None:
            self.tls_seen = seen

    # -- what the UI shows, logged as it changes
    def record(self, poll: Poll) -> None:
        self.polls.append(poll)
        self.log("poll", **asdict(poll))

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.log("warning", message=message)

    def show_final(self, ui_state: str, finished_at: float, **logged: Any) -> None:
        """The UI stops; `ui_state` is set last, as the runner's thread reads `done` from it."""
        self.finished_at = finished_at
        self.ui_state = ui_state
        self.log("ui", ui_state=ui_state, **logged)

    def show_error(self, message: str | None) -> None:
        self.error = message
        self.show_final("errored", time.time(), error=message)

    def log(self, event: str, **fields: Any) -> None:
        line = json.dumps({"time": time.time(), "event": event, **self.log_label, **fields})
        # Evidence, not control flow: a line that cannot be written changes nothing the UI does.
        with contextlib.suppress(OSError), self.log_path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")


def start_neighbours(
    neighbours: Iterable[Client],
    check_alive: Callable[[], None],
    timeout: float = NEIGHBOUR_FIRST_POLL_TIMEOUT,
) -> None:
    """Other users, started one after the other, each given up to `timeout` seconds to make its
    first poll (or stop): their answers are in a shared cache before the user's own client
    starts, so a cache that mixes users up shows it."""
    for neighbour in neighbours:
        neighbour.start()
        deadline = time.monotonic() + timeout
        while not neighbour.polls and not neighbour.done and time.monotonic() < deadline:
            check_alive()
            time.sleep(0.01)
