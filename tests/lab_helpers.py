"""Shared test helpers: run the CLI as a user would, and find any process a run left behind."""

from __future__ import annotations

import os
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

import psutil

TOKEN_VAR = "PROXY_CACHE_LAB_TEST_TOKEN"


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def processes_with_token(token: str) -> list[psutil.Process]:
    """Every live process that inherited this test's token (the lab and all its children)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(TOKEN_VAR) == token and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def component(token: str, name: str) -> psutil.Process | None:
    for proc in processes_with_token(token):
        try:
            if proc.environ().get("PROXY_CACHE_LAB_COMPONENT") == name:
                return proc
        except psutil.NoSuchProcess:
            continue
    return None


class LabProcess:
    """`python -m lab ...` in the background, its stderr collected line by line."""

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
        self.stderr_lines: list[str] = []
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line.rstrip("\n"))

    @property
    def stderr(self) -> str:
        return "\n".join(self.stderr_lines)

    def wait_for_stderr(self, text: str, timeout: float = 30) -> None:
        wait_for(
            lambda: any(text in line for line in self.stderr_lines) or self.proc.poll() is not None,
            timeout,
            f"{text!r} on the lab's stderr",
        )
        assert any(text in line for line in self.stderr_lines), self.stderr

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        # Not communicate(): it would read stderr too, racing the reader thread for lines.
        assert self.proc.stdout is not None
        stdout = self.proc.stdout.read()
        self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return self.proc.returncode, stdout

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


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
) -> Iterator[Mitmdump]:
    """mitmdump on 127.0.0.1 with these scripts (paths from the project's root) and `--set`
    options, from the project's root as a user starts it. `modes` are `--mode` specs
    (`reverse:http://...`); none: a regular proxy. `{port}` in a mode or an option stands for
    the port it listens on. Ready once it accepts connections there; always stopped, and its
    exit awaited."""
    port = free_loopback_port()
    log_path = work_dir / f"mitmdump-{port}.log"
    cmd = [
        str(Path(sys.executable).parent / "mitmdump"),
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
