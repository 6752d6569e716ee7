"""The whole matrix, round after round, on a machine kept busy: the same verdict every time?

Goal (issue 9): `lab matrix --repeat 5` with every core kept busy by another process gives 0
mismatches and 0 flips. The busy processes are started and stopped by this benchmark (each also
ends by itself after --busy-limit seconds, so nothing outlives it). A cell the machine was too
slow to test is run again by the matrix and says so; the figures count those too.

    python bench/stability.py [--rounds 5] [--busy N] [-- extra lab matrix arguments]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))

from _matrix_run import run_matrix  # noqa: E402

# A busy loop that stops by itself: the benchmark's own bound, whatever happens to it.
BUSY_LOOP = (
    "import time, sys\n"
    "end = time.monotonic() + float(sys.argv[1])\n"
    "while time.monotonic() < end: pass\n"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--busy", type=int, default=os.cpu_count() or 2, help="busy processes")
    parser.add_argument("--busy-limit", type=float, default=1500.0, help="seconds, at most")
    parser.add_argument("matrix_args", nargs="*", help="more `lab matrix` arguments")
    args = parser.parse_args()
    busy = [
        subprocess.Popen([sys.executable, "-c", BUSY_LOOP, str(args.busy_limit)])
        for _ in range(args.busy)
    ]
    try:
        with tempfile.TemporaryDirectory() as runs_dir:
            run = run_matrix(runs_dir, "--repeat", str(args.rounds), *args.matrix_args)
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    result = run.result
    print(f"{run.cells} cells x {args.rounds} rounds with {args.busy} busy processes:")
    print("| round | seconds | mismatches | not judged | run again |")
    print("| --- | --- | --- | --- | --- |")
    for counts, seconds in zip(result["round_counts"], result["round_seconds"], strict=True):
        print(
            f"| {counts['round']} | {seconds:.1f} | {counts['mismatches']} | "
            f"{counts['not_judged']} | {counts['run_again']} |"
        )
    flips = result.get("flips", {})
    print(f"flips: {len(flips)}" + "".join(f"\n  {k}: {' -> '.join(v)}" for k, v in flips.items()))
    print(f"headline: {result['headline']}")
    print(f"wall {run.wall:.1f} s, CPU {run.cpu_total:.1f} s: {run.cpu_by_kind}")
    mismatches = sum(c["mismatches"] for c in result["round_counts"])
    goal_met = mismatches == 0 and not flips and result.get("ok")
    print(f"goal (0 mismatches, 0 flips): {'met' if goal_met else 'MISSED'}")
    return 0 if goal_met else 1


if __name__ == "__main__":
    raise SystemExit(main())
