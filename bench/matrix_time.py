"""Seconds per round of the whole matrix with the Python client, and where the CPU goes.

Goal (issue 9): under 25 s a round on 2 cores, measured as the issue did: the whole command's
time divided by its rounds (stack start-up shared among them). Runs `lab matrix --repeat N
--json` as a user would; prints each round's own seconds, the start-up, and the CPU seconds of
each process kind (from each run's cpu.json; "lab" is the lab's own process) per cell.

    python bench/matrix_time.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))

from _matrix_run import machine_speed, run_matrix  # noqa: E402

GOAL = 25.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: 10 million Python additions take {machine_speed():.2f} s of one core")
    with tempfile.TemporaryDirectory() as runs_dir:
        run = run_matrix(runs_dir, "--repeat", str(args.rounds))
    result = run.result
    per_round = run.wall / args.rounds
    rounds = result["round_seconds"]
    cell_runs = run.cells * args.rounds
    print(
        f"matrix: {run.cells} cells x {args.rounds} rounds, ok={result['ok']}; start-up "
        f"{result['startup_seconds']:.1f} s, rounds {', '.join(f'{t:.1f}' for t in rounds)} s "
        f"(median {statistics.median(rounds):.1f} s); whole command {run.wall:.1f} s = "
        f"{per_round:.1f} s a round (goal < {GOAL:g} s: {'met' if per_round < GOAL else 'MISSED'})"
    )
    print(f"CPU: {run.cpu_total:.1f} s in all, {run.cpu_total / cell_runs * 1000:.0f} ms a cell")
    for kind, seconds in run.cpu_by_kind.items():
        print(f"  {kind:8} {seconds:6.1f} s  {seconds / cell_runs * 1000:5.0f} ms a cell")
    return 0 if run.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
