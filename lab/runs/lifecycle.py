"""What one run starts, and the one way it is all stopped.

`lab repro`, `lab matrix` and `lab up` start their browser, broker, processes, app stacks and
Redis memory watch through a `RunResources`. Leaving its `with` block, whichever way (return,
error, a component dying, Ctrl-C, SIGTERM), stops them in reverse order, each clean-up running
even when an earlier one raised:

    memory watch, app stacks' result backend readers, browser (the reverse of their start),
    then every child process (the lab's redis-server, workers, app servers, mitmdumps),
    then the brokers' queues on a shared broker, once nothing uses them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from lab.data.kinds import CLIENTS
from lab.data.scenarios import Scenario
from lab.stacks import tls as run_tls
from lab.stacks.brokers import BrokerChoice, BrokerRuntime, start_broker
from lab.stacks.processes import Supervisor
from lab.stacks.redis_memory import RedisMemoryWatch
from lab.stacks.stack import AppStack, launch_app_stack, stack_key

if TYPE_CHECKING:
    from lab.clients.browser import BrowserHost

Progress = Callable[[str], None]  # one line of news for the user (stderr)


def new_run_dir(root: Path, label: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    stem = f"{datetime.now():%Y%m%d-%H%M%S}-{label}"
    for n in range(1, 1000):
        path = root / (stem if n == 1 else f"{stem}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"too many runs named {stem} in {root}")


def new_supervisor(run_dir: Path) -> Supervisor:
    return Supervisor(run_id=f"{run_dir.name}-{uuid.uuid4().hex[:6]}", run_dir=run_dir)


class RunResources:
    """Everything one run starts (in `run_dir`), stopped on the way out of its `with` block."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.sup = new_supervisor(run_dir)
        self._cleanups = ExitStack()
        self._broker_cleanups = ExitStack()
        self.brokers: list[BrokerRuntime] = []
        self._tls: run_tls.RunTls | None = None

    def __enter__(self) -> RunResources:
        # Unwound last: a shared broker's queues are deleted only once no process uses them.
        self._cleanups.enter_context(self._broker_cleanups)
        self._cleanups.callback(self.sup.stop_all)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        return self._cleanups.__exit__(exc_type, exc, traceback)

    def tls(self) -> run_tls.RunTls:
        """The run's certificates (lab/stacks/tls.py), made on first use in the run folder."""
        if self._tls is None:
            self._tls = run_tls.make(self.run_dir)
        return self._tls

    def browser(
        self, client: str, https: bool = False
    ) -> tuple[BrowserHost | None, Callable[[], BrowserHost] | None]:
        """For client "browser": a Chromium starting in the background (its log in the run
        folder) and the function that waits for it; (None, None) for the Python client.
        ComponentError at once when Chromium or Playwright is missing. `https`: it accepts
        the run's certificates (RunTls.chromium_args), and nothing else that is not public."""
        if client not in CLIENTS:
            raise ValueError(f"client {client!r}: not one of {', '.join(CLIENTS)}")
        if client != "browser":
            return None, None
        from lab.clients.browser import BrowserHost

        host = BrowserHost(self.sup.run_id, self.run_dir / "browser.log")
        if https:
            host.extra_args = self.tls().chromium_args()
        self._cleanups.callback(host.close)
        return host, host.launch()

    def broker(self, choice: BrokerChoice, scenario: Scenario | None = None) -> BrokerRuntime:
        """Reach or start the broker (the lab's own redis-server capped as the scenario says)."""
        runtime = start_broker(self.sup, choice, scenario.redis if scenario else None)
        self._broker_cleanups.callback(runtime.cleanup)
        self.brokers.append(runtime)
        return runtime

    def check_alive(self, during: str) -> None:
        """ComponentError when a child process died or a broker the lab did not start stopped
        answering."""
        self.sup.check_all_alive(during)
        for broker in self.brokers:
            broker.check()

    def app_stack(
        self,
        scenario: Scenario,
        fix: str,
        broker: BrokerRuntime,
        *,
        task_duration: float,
        key: str | None = None,
        concurrency: int = 1,
        port: int = 0,
    ) -> Callable[[], AppStack]:
        """Start the scenario's worker and app server; return the function that waits for
        them. key: a stack shared by several cells (its files named after it); port: the
        app's on 127.0.0.1 (0: any free one)."""
        ready = launch_app_stack(
            self.sup,
            key or stack_key(scenario, fix),
            scenario.app,
            scenario.worker,
            poll_interval=scenario.poll_interval,
            task_duration=task_duration,
            concurrency=concurrency,
            single=key is None,
            broker=broker,
            results=scenario.results,
            fix=fix,
            load=scenario.load,
            port=port,
            tls=self.tls() if scenario.tls else None,
        )

        def up() -> AppStack:
            app = ready()
            self._cleanups.callback(app.backend.close)
            return app

        return up

    def memory_watch(self, broker: BrokerRuntime) -> RedisMemoryWatch | None:
        """Samples of the Redis broker's memory (redis-memory.jsonl), for a Redis only."""
        if broker.kind != "redis" or not broker.url:
            return None
        memory = RedisMemoryWatch(broker.url, self.run_dir / "redis-memory.jsonl")
        self._cleanups.callback(memory.stop)
        memory.start()
        return memory
