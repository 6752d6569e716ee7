"""Running `lab repro proxy-cache --json` as a user would (shared by the repro benches)."""

from __future__ import annotations

import json
import subprocess
import sys
import time


def repro_seconds(fix: str, runs_dir: str, *args: str) -> tuple[float, float]:
    """The verdict's `seconds` (from the lab's start to the verdict) and the whole command's
    wall time, Python's start-up and the clean-up included."""
    began = time.monotonic()
    command = [sys.executable, "-m", "lab", "repro", "proxy-cache", "--fix", fix, *args]
    done = subprocess.run(
        [*command, "--json", "--runs-dir", runs_dir], capture_output=True, text=True, timeout=120
    )
    wall = time.monotonic() - began
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[2:])} failed ({done.returncode}): {done.stderr}")
    return json.loads(done.stdout)["seconds"], wall
