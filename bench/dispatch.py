"""Cells per second: a local `lab matrix` against `lab matrix --dispatch` to one agent and to
two agents on this machine, and the paper model for N hosts (issue 15).

Goal: one agent within 10% of the local matrix's cells per second (the dispatch costs little).
The rate counts a round's own seconds (`round_seconds`): the local run's stack start-up is
left out, as an agent's is (its stacks are warm before the first cell). Two agents on one
machine share its cores: they show the same table, not a speed-up; the model says what N
hosts would give from the measured one-agent rate and the coordinator's CPU per cell.

    python bench/dispatch.py [--scenarios A,B] [--fixes X,Y] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

from _matrix_run import machine_speed, run_matrix  # noqa: E402

GOAL = 0.10  # one agent's cells per second may be at most this much below the local matrix's
SCENARIOS = "proxy-cache,squid-override,nginx-default,direct,squid-default,varnish-builtin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_agents(n: int, url: str, args: list[str], folder: Path) -> list[subprocess.Popen]:
    agents = []
    for i in range(n):
        log = (folder / f"agent-{i}.log").open("w")
        agents.append(
            subprocess.Popen(
                [sys.executable, "-m", "lab", "agent", url, *args, "--runs-dir", str(folder)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    deadline = time.monotonic() + 600
    for i, agent in enumerate(agents):
        while "agent ready" not in (folder / f"agent-{i}.log").read_text():
            if agent.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"agent {i} did not start: see {folder / f'agent-{i}.log'}")
            time.sleep(0.2)
    return agents


def stop(agents: list[subprocess.Popen]) -> None:
    for agent in agents:
        agent.terminate()
    for agent in agents:
        try:
            agent.wait(timeout=60)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()


def rate(run) -> float:
    return run.cells / sum(run.result["round_seconds"])


def outcomes(run) -> dict:
    return {(c["scenario"], c["fix"]): c["observed"] for c in run.result["rounds"][0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default=SCENARIOS)
    parser.add_argument("--fixes", default="")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    select = ["--scenarios", args.scenarios] + (["--fixes", args.fixes] if args.fixes else [])
    print(f"machine: 10 million Python additions take {machine_speed():.2f} s of one core")
    port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        + ["--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        with tempfile.TemporaryDirectory() as runs:
            folder = Path(runs)
            local = run_matrix(runs, *select, "--concurrency", str(args.concurrency))
            print(
                f"local:      {local.cells} cells, round {sum(local.result['round_seconds']):.1f} s"
                f" = {rate(local):.2f} cells/s (start-up {local.result['startup_seconds']:.1f} s)"
            )
            figures = {}
            for n in (1, 2):
                agents = start_agents(
                    n, url, [*select, "--concurrency", str(args.concurrency)], folder
                )
                try:
                    run = run_matrix(
                        runs, *select, "--dispatch", url, "--concurrency", str(n * args.concurrency)
                    )
                finally:
                    stop(agents)
                same = outcomes(run) == outcomes(local)
                figures[n] = run
                print(
                    f"{n} agent{'s' if n > 1 else ' '}:   {run.cells} cells in "
                    f"{run.result['seconds']:.1f} s = {rate(run):.2f} cells/s; coordinator CPU "
                    f"{run.cpu_total / run.cells * 1000:.0f} ms a cell; same table as local: {same}"
                )
    finally:
        redis.terminate()
        redis.wait()
    one = rate(figures[1])
    behind = 1 - one / rate(local)
    print(
        f"one agent vs local: {behind:+.0%} slower (goal <= {GOAL:.0%}: "
        f"{'met' if behind <= GOAL else 'MISSED'})"
    )
    coordinator = figures[1].cpu_total / figures[1].cells  # CPU seconds a cell, one core
    ceiling = 1 / coordinator if coordinator else float("inf")
    print(
        f"paper model: N hosts like this one give about N x {one:.2f} cells/s, until the "
        f"coordinator's one core is full at about {ceiling:.0f} cells/s "
        f"(N = {ceiling / one:.0f}); a whole hour-long CI load of cells takes 1/N of it"
    )
    return 0 if behind <= GOAL else 1


if __name__ == "__main__":
    raise SystemExit(main())
