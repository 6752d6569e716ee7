"""`lab up`: the page through the proxy on a printed URL; Ctrl-C leaves no process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import uuid

import httpx
import pytest

from tests.lab_helpers import TOKEN_VAR, processes_with_token, wait_for

pytestmark = pytest.mark.stack


class Up:
    def __init__(self, args: list[str], cwd) -> None:
        self.token = uuid.uuid4().hex
        env = {**os.environ, TOKEN_VAR: self.token, "LAB_RUNS_DIR": str(cwd / "runs")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lab", "up", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def find(self, pattern: str) -> str:
        def match() -> str | None:
            for line in self.lines:
                if found := re.search(pattern, line):
                    return found.group(1)
            assert self.proc.poll() is None, "\n".join(self.lines)
            return None

        return str(wait_for(match, 60, f"{pattern!r} in lab up's output"))

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=20)


def test_up_serves_the_page_through_the_proxy_and_ctrl_c_stops_all(tmp_path):
    up = Up(["proxy-cache"], tmp_path)
    try:
        page = up.find(r"Open this page in any browser:\s+(http://127\.0\.0\.1:\d+/\S*)")
        forward = up.find(r"forward proxy .*: (127\.0\.0\.1:\d+)")
        with httpx.Client(trust_env=False, timeout=10) as client:
            answer = client.get(page)
        assert answer.status_code == 200
        assert 'id="start"' in answer.text
        up.find(r"proxy: (GET) ")  # the live log saw the request go through the proxy
        assert forward
        assert up.interrupt() == 0
    finally:
        if up.proc.poll() is None:
            up.proc.kill()
    assert not processes_with_token(up.token), "lab up left processes behind"


def test_up_on_another_address_requires_proxy_authentication(tmp_path):
    # 127.0.0.2 is still loopback, but not 127.0.0.1: the lab treats it as "exposed".
    up = Up(["proxy-cache", "--host", "127.0.0.2"], tmp_path)
    try:
        credentials = up.find(r"Proxy authentication: (\S+)")
        forward = up.find(r"forward proxy .*: (127\.0\.0\.2:\d+)")
        target = "http://127.0.0.1:9/"  # never reached: the proxy must refuse first
        with httpx.Client(proxy=f"http://{forward}", trust_env=False, timeout=10) as client:
            assert client.get(target).status_code == 407
        user, password = credentials.split(":", 1)
        with httpx.Client(
            proxy=f"http://{user}:{password}@{forward}", trust_env=False, timeout=10
        ) as client:
            assert client.get(target).status_code != 407
        assert up.interrupt() == 0
    finally:
        if up.proc.poll() is None:
            up.proc.kill()
    assert not processes_with_token(up.token)
