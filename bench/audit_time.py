"""Issue 11's timing goals, measured as a user meets them:

1. `lab audit` of an example app against every real-deployment profile with one client
   strategy: under 15 s on a 2-core machine (the whole command, the app's own start included).
2. The pytest plugin adds under 2 s to a test session that uses one profile: a session whose
   one test takes `lab_proxy("corporate-cache", ...)` and sends one request through it, against
   the same session with a test that sends the request straight to the app.

Runs the real CLI and real pytest sessions (loopback only); prints medians and every run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

from _matrix_run import machine_speed  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FLOW = ROOT / "examples" / "flask_celery" / "audit.toml"
AUDIT_GOAL = 15.0
PLUGIN_GOAL = 2.0
TINY_APP = ROOT / "tests" / "fixtures" / "tiny_jobs_app.py"
SESSION = """\
import subprocess, sys, time, socket
import pytest, requests

@pytest.fixture(scope="session")
def app_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, %(app)r, "--port", str(port)])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1); break
        except requests.ConnectionError:
            time.sleep(0.02)
    yield url
    proc.terminate(); proc.wait()

def test_one_request(app_url%(fixture)s):
    %(body)s
"""


def audit_seconds(runs_dir: str) -> tuple[float, float]:
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "lab", "audit", str(FLOW), "--json", "--runs-dir", runs_dir],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    wall = time.monotonic() - began
    if done.returncode not in (0, 1):
        raise SystemExit(f"lab audit failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall, json.loads(done.stdout)["startup_seconds"]


def session_seconds(folder: Path, with_proxy: bool) -> float:
    body = (
        'lab_proxy("corporate-cache", target=app_url).session.get("/")'
        if with_proxy
        else "requests.get(app_url)"
    )
    test = folder / "test_one.py"
    test.write_text(
        SESSION
        % {"app": str(TINY_APP), "fixture": ", lab_proxy" if with_proxy else "", "body": body},
        "utf-8",
    )
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=folder,
    )
    if done.returncode != 0:
        raise SystemExit(f"pytest session failed: {done.stdout[-2000:]}")
    return time.monotonic() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: 10 million additions take {machine_speed():.2f} s of one core")
    failed = False
    with tempfile.TemporaryDirectory() as runs_dir:
        audit_seconds(runs_dir)  # warm-up: imports and disk caches
        audits = [audit_seconds(runs_dir) for _ in range(args.runs)]
    wall = statistics.median(w for w, _ in audits)
    ok = wall < AUDIT_GOAL
    failed |= not ok
    print(
        f"lab audit {FLOW.relative_to(ROOT)} (every deployment profile, client strategy app): "
        f"median {wall:.1f} s (goal < {AUDIT_GOAL:g} s: {'met' if ok else 'MISSED'}); runs: "
        + ", ".join(f"{w:.1f} s (all up after {s:.1f} s)" for w, s in audits)
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder)
        session_seconds(path, with_proxy=True)  # warm-up
        pairs = [
            (session_seconds(path, with_proxy=False), session_seconds(path, with_proxy=True))
            for _ in range(args.runs)
        ]
    added = statistics.median(with_ - without for without, with_ in pairs)
    ok = added < PLUGIN_GOAL
    failed |= not ok
    print(
        f"pytest plugin, one profile: adds a median {added:.2f} s to a session "
        f"(goal < {PLUGIN_GOAL:g} s: {'met' if ok else 'MISSED'}); sessions without/with: "
        + ", ".join(f"{a:.2f}/{b:.2f} s" for a, b in pairs)
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
