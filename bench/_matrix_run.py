"""Running `lab matrix --json` as a user would, and where its CPU went (shared by the benches)."""

from __future__ import annotations

import json
import re
import resource
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lab.stacks.processes import CPU_FILE


@dataclass
class MatrixRun:
    result: dict
    returncode: int
    wall: float
    cpu_total: float  # the lab and every process it started, user + system
    cpu_by_kind: dict[str, float] = field(default_factory=dict)

    @property
    def cells(self) -> int:
        return len(self.result["rounds"][0]) if self.result.get("rounds") else 0


def run_matrix(runs_dir: str, *args: str, timeout: float = 1800) -> MatrixRun:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "lab", "matrix", "--json", "--runs-dir", runs_dir, *args],
        stdout=subprocess.PIPE,
        stderr=sys.stderr,
        text=True,
        timeout=timeout,
    )
    wall = time.monotonic() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if not done.stdout.strip():
        raise SystemExit(f"lab matrix printed no result (exit {done.returncode})")
    result = json.loads(done.stdout)
    if "rounds" not in result:  # the lab's one-line error, as JSON
        raise SystemExit(f"lab matrix failed (exit {done.returncode}): {result.get('error')}")
    cpu_total = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return MatrixRun(result, done.returncode, wall, cpu_total, cpu_by_kind(runs_dir, cpu_total))


def cpu_by_kind(runs_dir: str, cpu_total: float) -> dict[str, float]:
    """CPU seconds per process kind (worker, app, proxy, redis, browser) from each run's
    cpu.json; "lab" is the rest: the lab's own process (clients, judging, reports)."""
    kinds: Counter[str] = Counter()
    for path in Path(runs_dir).rglob(CPU_FILE):
        for name, seconds in json.loads(path.read_text("utf-8")).items():
            kinds[re.split(r"[-.]", name)[0]] += seconds
    kinds["lab"] = max(0.0, cpu_total - sum(kinds.values()))
    return {kind: round(seconds, 1) for kind, seconds in kinds.most_common()}


def machine_speed() -> float:
    """Seconds one core takes for a fixed piece of pure Python (10 million additions; about
    0.6 s on a typical 3 GHz core): the same matrix takes longer on a slower or busier machine,
    so a round's time is only comparable beside this figure."""
    began = time.process_time()
    total = 0
    for n in range(10_000_000):
        total += n
    return time.process_time() - began
