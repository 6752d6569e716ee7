"""Child processes of a run: started in their own session, watched, and always stopped."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.data import settings
from lab.data.errors import ComponentError
from lab.stacks import fork_jobs, fork_sharing, forkserver
from lab.stacks.death_signal import _die_with_parent
from lab.stacks.fork_jobs import Family, Job
from lab.stacks.forkserver import ForkedProcess, ForkServer, ForkServerGone

RUN_MARKER = "PROXY_CACHE_LAB_RUN"  # every child carries it: tests find leftovers by it
COMPONENT_MARKER = "PROXY_CACHE_LAB_COMPONENT"
STOP_GRACE_SECONDS = 3.0
# A Celery worker on a polling transport (SQLAlchemy) checks for shutdown only between 2 s
# drain_events timeouts, so a warm shutdown takes 2-5 s. The lab has its evidence by the time it
# stops the worker, and the broker and result stores are transactional: no need to wait.
# A proxy writes its evidence line by line, flushed as it goes, and its graceful exit (mitmproxy's
# done hooks, asyncio's executor shut down) took 0.3-1.5 s for nothing the lab reads: it is
# killed at once, which is most of what the pytest plugin's session end costs. So is the sample
# app: its evidence lines are flushed one by one too, and its exit (werkzeug joining every
# connection's thread, then the interpreter's own) took 0.9-1.6 s of both cores for each stack
# at the end of a matrix.
STOP_GRACE_BY_COMPONENT = {"worker": 0.5, "proxy": 0.0, "app": 0.0}
LOG_TAIL_LINES = 15
CPU_FILE = "cpu.json"  # CPU seconds per component, read just before the run stops them


def start_timeout() -> float:
    return settings.current().start_timeout


# The signal a child gets from the kernel when the lab is killed with SIGKILL. A Celery worker
# gets SIGKILL: on SIGTERM its warm shutdown waits for the running task, and a task that never
# finishes (task-never-finishes) kept the worker alive for ever after its lab was gone.
# The fork server too: it has nothing to clean up, and its children die of their own signal
# when it is gone (lab.stacks.forkserver).
DEATH_SIGNAL_BY_COMPONENT = {"worker": signal.SIGKILL, "forkserver": signal.SIGKILL}


def component_kind(name: str) -> str:
    """ "worker-query" and "worker" are both workers: a stack's suffix follows its kind."""
    return name.split("-", 1)[0]


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def stop_signals_held() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP wait until the block is done, then act as they would have.

    One that landed inside Popen, after the fork but before Popen returned, left a child the
    Supervisor never heard of, alive until the lab had exited (`lab verify` interrupted while
    it started its stacks). Python runs signal handlers in the main thread only, so a child
    started from another thread needs nothing held.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, _frame: caught.append(signum))
        for sig in STOP_SIGNALS
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if caught:
            handler = previous[signal.Signals(caught[0])]
            if callable(handler):
                handler(caught[0], None)  # the lab's own: KeyboardInterrupt
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), caught[0])


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text("utf-8", errors="replace")
    except FileNotFoundError:
        return "(no log written)"
    tail = text.rstrip("\n").splitlines()[-lines:]
    return "\n".join(tail) if tail else "(log is empty)"


@dataclass
class Component:
    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | ForkedProcess | None = None
    cwd: Path | None = None  # None: the lab's own
    pass_fds: tuple[int, ...] = ()
    # The fork server that forks it instead of a new interpreter, and what it runs there.
    fork: tuple[ForkServer, Job] | None = None
    stop_grace: float | None = None  # seconds from SIGTERM to SIGKILL; None: by its name
    info: dict[str, Any] = field(default_factory=dict)
    # The scenario's bug may end this component (a Celery worker exits on an unrecoverable
    # broker error): its exit is evidence for the verdict, not a failure of the lab.
    may_exit: bool = False
    # Launched on ports the lab picked, by a starter that launches it again when another
    # program took one in between (ports.launch_retrying_taken_ports): that exit is the
    # starter's to handle when it waits for this component, not a failure of the run.
    relaunched_if_port_taken: bool = False

    def start(self) -> None:
        death_signal = DEATH_SIGNAL_BY_COMPONENT.get(component_kind(self.name), signal.SIGTERM)
        if self.fork is not None:
            server, job = self.fork
            try:
                with stop_signals_held():  # a request asked for is a child the run knows of
                    self.proc = server.spawn(
                        self.name,
                        job,
                        self.env,
                        self.cwd,
                        self.log_path,
                        death_signal,
                        start_timeout(),
                    )
            except ForkServerGone as exc:
                raise ComponentError(
                    self.name,
                    f"could not be started: the fork server: {exc}",
                    log_tail(server.log_path),
                ) from None
            return
        with self.log_path.open("ab") as log, stop_signals_held():
            try:
                self.proc = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    cwd=self.cwd,
                    # Own session: a Ctrl-C in the terminal reaches the lab only, and the lab
                    # stops each child's whole process group in order.
                    start_new_session=True,
                    pass_fds=self.pass_fds,
                    preexec_fn=functools.partial(_die_with_parent, death_signal, os.getpid()),
                )
            except OSError as exc:
                raise ComponentError(self.name, f"could not be started: {exc}") from None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def fail(self, problem: str) -> ComponentError:
        return ComponentError(self.name, problem, log_tail(self.log_path))

    def lost_its_port(self) -> bool:
        """Exited because another program took the port it was to listen on."""
        exited = self.proc is not None and self.proc.poll() is not None
        return exited and "address already in use" in log_tail(self.log_path).lower()

    def check_alive(self, during: str, *, awaited: bool = True) -> None:
        """ComponentError if it exited. `awaited=False`: it is checked while the lab waits for
        another one, and an exit its starter will launch again is left to that starter."""
        if self.may_exit:
            return
        if self.proc is not None and self.proc.poll() is not None:
            if not awaited and self.relaunched_if_port_taken and self.lost_its_port():
                return
            problem = f"exited with code {self.proc.returncode} {during}"
            if isinstance(self.proc, ForkedProcess) and self.proc.server.gone:
                server_log = self.proc.server.log_path
                problem += f" (its fork server exited before it: see {server_log})"
            raise self.fail(problem)

    def signal_group(self, sig: int) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        # ForkServerGone: its fork server died before forking it, and there is no one to stop.
        with contextlib.suppress(ProcessLookupError, ForkServerGone):
            os.killpg(self.proc.pid, sig)

    def kill_leftovers(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError, ForkServerGone):
            os.killpg(self.proc.pid, signal.SIGKILL)


class Supervisor:
    """Owns every process of one run; `stop_all` is safe to call more than once."""

    def __init__(self, run_id: str, run_dir: Path) -> None:
        self.run_id = run_id
        self.run_dir = run_dir
        self.components: list[Component] = []
        self._cpu_written = False
        self._forkservers: dict[str, ForkServer] = {}  # by family
        self._forkserver_lock = threading.Lock()

    def add(
        self,
        name: str,
        argv: list[str],
        extra_env: dict[str, str] | None = None,
        cwd: Path | None = None,
        pass_fds: tuple[int, ...] = (),
    ) -> Component:
        component = Component(name, argv, self.run_dir / f"{name}.log", self._env(name, extra_env))
        component.cwd = cwd
        component.pass_fds = pass_fds
        job = fork_jobs.forkable(argv)
        if job is not None and (server := self._forkserver_for(job)) is not None:
            component.fork = (server, job)
        self.components.append(component)
        component.start()
        return component

    def _env(self, name: str, extra_env: dict[str, str] | None) -> dict[str, str]:
        env = {
            **os.environ,
            # Every line a child writes reaches its log as it is written, so the tail the lab
            # shows when a child dies, or that it reads after killing it, is complete.
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
            RUN_MARKER: self.run_id,
            COMPONENT_MARKER: name,
        }
        env.pop("PYTHONSTARTUP", None)
        return env

    def _forkserver_for(self, job: Job) -> ForkServer | None:
        """The lab's fork server (started on first use) for `job`; None when
        LAB_FORKSERVER=0."""
        if not settings.current().forkserver:
            return None
        return self._acquire_forkserver(job.family)

    def _acquire_forkserver(self, family: Family, listen_in: Path | None = None) -> ForkServer:
        with self._forkserver_lock:
            if family.name not in self._forkservers:
                name = f"{forkserver.NAME}-{family.name}"
                log = self.run_dir / f"{name}.log"
                env = self._env(name, None)

                def server_process(argv: list[str], pass_fds: tuple[int, ...]) -> Component:
                    return Component(name, argv, log, env, pass_fds=pass_fds)

                self._forkservers[family.name] = fork_sharing.shared.acquire(
                    family,
                    self.run_id,
                    server_process,
                    lambda c: self.stop_components([c]),
                    listen_in,
                )
            return self._forkservers[family.name]

    def hand_down_forkservers(self) -> None:
        """Start a fork server of each family now, listening in the run folder, and hand them
        down to every lab this process starts from now on (fork_sharing.HANDED_DOWN); they serve
        until this Supervisor stops."""
        for family in fork_jobs.FAMILIES:
            self._acquire_forkserver(family, listen_in=self.run_dir)
        os.environ[fork_sharing.HANDED_DOWN] = str(self.run_dir)

    def check_all_alive(self, during: str) -> None:
        for component in self.components:
            component.check_alive(during, awaited=False)

    def wait_until(
        self,
        component: Component,
        ready: Callable[[], bool],
        what: str,
        timeout: float | None = None,
    ) -> None:
        """Wait for a readiness condition, failing fast if any component dies meanwhile."""
        limit = timeout if timeout is not None else start_timeout()
        deadline = time.monotonic() + limit
        while True:
            if ready():
                return
            component.check_alive("while starting")
            self.check_all_alive("while starting")
            if time.monotonic() > deadline:
                raise component.fail(f"not ready after {limit:g} s (waiting for {what})")
            time.sleep(0.02)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds (user + system) each running component has used so far, by name."""
        import psutil

        used: dict[str, float] = {}
        for component in self.components:
            if not component.alive():
                continue  # its CPU time is gone with it
            with contextlib.suppress(psutil.Error, ForkServerGone):
                times = psutil.Process(component.pid).cpu_times()
                used[component.name] = round(times.user + times.system, 3)
        for server in self._forkservers.values():
            if server.run_id == self.run_id and server.component and server.component.alive():
                with contextlib.suppress(psutil.Error):
                    times = psutil.Process(server.component.pid).cpu_times()
                    used[server.component.name] = round(times.user + times.system, 3)
        return used

    def stop_all(self) -> None:
        if not self._cpu_written and self.run_dir.is_dir():
            # Where a run's CPU went (bench/matrix_time.py sums it by process kind).
            self._cpu_written = True
            with contextlib.suppress(OSError):
                (self.run_dir / CPU_FILE).write_text(json.dumps(self.cpu_seconds()), "utf-8")
        self.stop_components([c for c in self.components if c.alive()])
        with self._forkserver_lock:
            # After their children: they report their exits.
            for server in self._forkservers.values():
                fork_sharing.shared.release(server)
            self._forkservers.clear()  # a child added after this acquires one again
        # A component may have left children in its group (none of ours do today).
        for component in self.components:
            component.kill_leftovers()

    @staticmethod
    def stop_components(running: list[Component]) -> None:
        """SIGTERM to each, then SIGKILL to those still there after their grace."""
        for component in running:
            component.signal_group(signal.SIGTERM)
        signalled_at = time.monotonic()
        for component in running:
            assert component.proc is not None
            grace = stop_grace_for(component.name, component.stop_grace)
            try:
                component.proc.wait(timeout=max(0.0, signalled_at + grace - time.monotonic()))
            except subprocess.TimeoutExpired:
                component.signal_group(signal.SIGKILL)
                component.proc.wait()


def stop_grace_for(name: str, given: float | None) -> float:
    """Seconds from SIGTERM to SIGKILL for a component: `given`, else by its kind."""
    if given is not None:
        return given
    return STOP_GRACE_BY_COMPONENT.get(component_kind(name), STOP_GRACE_SECONDS)


def read_ready_file(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text("utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
