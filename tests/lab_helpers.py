"""Shared test helpers: run the CLI as a user would, and find any process a run left behind."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil

from lab.stacks import fork_sharing, forkserver
from lab.stacks.processes import COMPONENT_MARKER

TOKEN_VAR = "PROXY_CACHE_LAB_TEST_TOKEN"
TINY_APP = Path(__file__).parent / "fixtures" / "tiny_jobs_app.py"
# `lab verify --all`: every product at once, then the simulation (about 30 s here).
VERIFY_TIMEOUT = 600
# The tiny app's start-and-poll flow for `lab audit` and the plugin, started from its command.
TINY_FLOW = """\
[app]
commands = ["{python} %(app)s --port {port} %(args)s"]
[start]
path = "/jobs"
json = { seconds = 1 }
task_id = "%(task_id)s"
[status]
shape = "status-done"
path = "/jobs/{id}"
task_id = "id"
"""


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> object:
    """The condition's first true value, asked every 50 ms (at least once) until `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)  # poll interval, not a wait for something to happen


def processes_with_token(token: str) -> list[psutil.Process]:
    """Every live process that inherited this test's token (the lab and all its children).

    The session keeps this process's fork servers from test to test (conftest): /proc shows
    such a server, and each child it forked, with the environment of the test that started the
    server, so they are left out of that match and each child is found by the environment it
    was forked with instead."""
    kept = fork_sharing.shared.servers()
    servers = {server.component.pid for server in kept if server.component}
    forked = {pid: env for server in kept for pid, env in server.children()}
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid in servers:
                continue
            env = forked[proc.pid] if proc.pid in forked else proc.environ()
            if env.get(TOKEN_VAR) == token and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def assert_nothing_left(token: str, within: float = 0.0) -> None:
    """No process that carried the run's token is alive, now or within `within` seconds (after
    a SIGKILL the kernel stops the children on its own time). Any left are named and killed, so
    one failing test leaves nothing behind for the next."""
    try:
        wait_for(lambda: not processes_with_token(token), within, "the run's processes to exit")
    except AssertionError:
        left = processes_with_token(token)
        names = [_command_line(proc) for proc in left]
        for proc in left:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        raise AssertionError(f"processes left behind: {names}") from None


def _command_line(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return f"pid {proc.pid}"


def tiny_flow(
    folder: Path, args: str = "", task_id: str = "header:Location", file: str = "tiny.toml"
) -> Path:
    """The tiny app's flow file in `folder` (the flow is named after the file); `args` go to the
    app's command line (say `--cache-control no-store`, `--broken exit`), `task_id` says where
    the start answer has the job's id."""
    path = folder / file
    path.write_text(TINY_FLOW % {"app": TINY_APP, "args": args, "task_id": task_id}, "utf-8")
    return path


def component(token: str, name: str) -> psutil.Process | None:
    for proc in processes_with_token(token):
        try:
            if component_name(proc) == name:
                return proc
        except psutil.NoSuchProcess:
            continue
    return None


def component_name(proc: psutil.Process) -> str | None:
    """The lab component a process is: its environment's marker, or for a child of the fork
    server (whose environment in /proc is the server's) the process name it gave itself."""
    name = proc.environ().get(COMPONENT_MARKER)
    if name and name.startswith(forkserver.NAME):
        parent = proc.parent()
        if parent is not None and parent.environ().get(COMPONENT_MARKER) == name:
            return proc.name()
    return name


class LabProcess:
    """`python -m lab ...` in the background, its stdout and stderr collected line by line.

    As a context manager (the way to use it): leaving the block kills the lab if it still runs,
    then asserts that no process of its run is left (kills any that are, either way)."""

    # A lab killed with SIGKILL leaves its children to the kernel's parent-death signal.
    CHILDREN_EXIT_WITHIN = 15.0

    def __init__(self, args: list[str], cwd: Path, extra_env: dict[str, str] | None = None):
        self.token = uuid.uuid4().hex
        env = {
            **os.environ,
            TOKEN_VAR: self.token,
            "LAB_RUNS_DIR": str(cwd / "runs"),
            **(extra_env or {}),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lab", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self._readers = [
            threading.Thread(target=_read_lines, args=(stream, lines), daemon=True)
            for stream, lines in (
                (self.proc.stdout, self.stdout_lines),
                (self.proc.stderr, self.stderr_lines),
            )
        ]
        for reader in self._readers:
            reader.start()

    def __enter__(self) -> LabProcess:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_exc: object) -> None:
        was_running = self.proc.poll() is None
        self.kill()
        try:
            assert_nothing_left(self.token, self.CHILDREN_EXIT_WITHIN if was_running else 0.0)
        except AssertionError:
            if exc_type is None:  # else the test's own failure says more
                raise

    @property
    def stderr(self) -> str:
        return "\n".join(self.stderr_lines)

    @property
    def output(self) -> str:
        return "\n".join([*self.stdout_lines, *self.stderr_lines])

    # The lab gives each component LAB_START_TIMEOUT (30 s) to be ready before it fails on its
    # own: a test that waits less gives up first on a loaded machine, with nothing learnt.
    def wait_for_stderr(self, text: str, timeout: float = 60) -> None:
        self.wait_for_match(f"({re.escape(text)})", timeout, stderr_only=True)

    def wait_for_match(self, pattern: str, timeout: float = 60, stderr_only: bool = False) -> str:
        """The first group of the first line (of stdout or stderr) that matches `pattern`;
        fails at once if the lab exits first, and shows what the lab printed."""

        def found() -> str | None:
            lines = self.stderr_lines if stderr_only else [*self.stdout_lines, *self.stderr_lines]
            return next((m.group(1) for line in lines if (m := re.search(pattern, line))), None)

        def match() -> str | None:
            if self.proc.poll() is None:
                return found()
            for reader in self._readers:  # its last lines may still be on their way
                reader.join(timeout=5)
            assert found() is not None, "the lab exited first"
            return found()

        try:
            return str(wait_for(match, timeout, f"{pattern!r} in the lab's output"))
        except AssertionError as exc:
            raise AssertionError(f"{exc}; it printed:\n{self.output}") from None

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        """The exit code and stdout, once the lab has exited by itself."""
        self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=5)
        return self.proc.returncode, "\n".join(self.stdout_lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _read_lines(stream: IO[str] | None, lines: list[str]) -> None:
    assert stream is not None
    for line in stream:
        lines.append(line.rstrip("\n"))


class LoopbackOrigin:
    """A tiny HTTP server on 127.0.0.1 for tests: `answer(method, path)` gives each answer's
    status, content type and body. Use as a context manager."""

    def __init__(self, answer: Callable[[str, str], tuple[int, str, bytes]]) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                status, content_type, body = answer(self.command, self.path)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer  # noqa: N815 - http.server's names

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> LoopbackOrigin:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


PROJECT_ROOT = Path(__file__).resolve().parents[1]


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Mitmdump:
    """A running mitmdump: where it listens, and its process and log."""

    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def running_mitmdump(
    work_dir: Path,
    scripts: Sequence[str],
    options: Mapping[str, object] | None = None,
    *,
    modes: Sequence[str] = (),
    timeout: float = 30,
    executable: str = "mitmdump",
) -> Iterator[Mitmdump]:
    """mitmdump on 127.0.0.1 with these scripts (paths from the project's root) and `--set`
    options, from the project's root as a user starts it. `modes` are `--mode` specs
    (`reverse:http://...`); none: a regular proxy. `{port}` in a mode or an option stands for
    the port it listens on. `executable`: the one beside Python to run (lab-mitmdump). Ready
    once it accepts connections there; always stopped, and its exit awaited."""
    port = free_loopback_port()
    log_path = work_dir / f"mitmdump-{port}.log"
    cmd = [
        str(Path(sys.executable).parent / executable),
        "--listen-host", "127.0.0.1", "--listen-port", str(port),
        "--set", f"confdir={work_dir / 'mitmproxy-confdir'}",
    ]  # fmt: skip
    for mode in modes:
        cmd += ["--mode", mode.replace("{port}", str(port))]
    for script in scripts:
        cmd += ["-s", script]
    for name, value in (options or {}).items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        cmd += ["--set", f"{name}={text.replace('{port}', str(port))}"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT)
    running = Mitmdump(port, proc, log_path)
    try:

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"mitmdump exited {proc.returncode}: {running.log()}")
            return accepts_connections(port)

        wait_for(up, timeout, f"mitmdump to listen on 127.0.0.1:{port}")
        yield running
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def running_redis() -> Iterator[str]:
    """A redis-server of the test's own on a free loopback port, keeping nothing on disk;
    yields its base URL (redis://127.0.0.1:PORT: add /DB); stopped when the block ends."""
    port = free_loopback_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        + ["--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"redis://127.0.0.1:{port}"
    finally:
        redis.terminate()
        redis.wait(timeout=10)
