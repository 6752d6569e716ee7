"""What the fork servers save a run: `lab repro proxy-cache --fix nonce` with LAB_FORKSERVER=1
and =0, in turn, several rounds.

Reports the medians of the CPU seconds of the whole process tree (the lab, its worker, app,
proxy and fork servers: everything reaped under this process), the seconds to "all up" and to
the verdict, and the whole command's wall time. No goal: it shows what one run costs to start.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ALL_UP = re.compile(r"all up after ([0-9.]+) s")


def one_run(runs_dir: str, forkserver: bool) -> dict[str, float]:
    env = {**os.environ, "LAB_FORKSERVER": "1" if forkserver else "0"}
    command = [sys.executable, "-m", "lab", "repro", "proxy-cache", "--fix", "nonce"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.monotonic()
    done = subprocess.run(
        [*command, "--json", "--runs-dir", runs_dir],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    wall = time.monotonic() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[2:])} failed ({done.returncode}): {done.stderr}")
    up = ALL_UP.search(done.stderr)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "cpu": cpu,
        "all_up": float(up.group(1)) if up else float("nan"),
        "verdict": json.loads(done.stdout)["seconds"],
        "wall": wall,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    runs: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as runs_dir:
        one_run(runs_dir, True)  # warm-up: imports and disk caches
        for _ in range(args.rounds):
            for forkserver in (True, False):  # in turn: a busy spell hits both alike
                runs[forkserver].append(one_run(runs_dir, forkserver))
    for forkserver, label in ((True, "fork servers"), (False, "new processes")):
        median = {k: statistics.median(r[k] for r in runs[forkserver]) for k in runs[True][0]}
        print(
            f"{label:14} CPU {median['cpu']:.2f} s, all up after {median['all_up']:.2f} s, "
            f"verdict at {median['verdict']:.2f} s, whole command {median['wall']:.2f} s "
            f"(median of {args.rounds})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
