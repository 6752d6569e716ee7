"""Median seconds to verdict for `lab repro proxy-cache`, fix none and nonce, with each client.

Goal: the browser client (the app's real page in Chromium) within 3 s of the Python client for
each fix, on a 2-core machine. Runs the real CLI as a user would (`--json`) and reads the
verdict's `seconds` (wall time from the lab's start to the verdict: the browser's launch and the
page's opening count). Runs alternate between the clients, so a busy moment hits both.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

from lab.data.kinds import CLIENTS

sys.path.insert(0, os.path.dirname(__file__))

from _repro_run import repro_seconds  # noqa: E402

GOAL = 3.0
FIXES = ("none", "nonce")


def one_run(fix: str, client: str, runs_dir: str) -> float:
    return repro_seconds(fix, runs_dir, "--client", client)[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    failed = False
    with tempfile.TemporaryDirectory() as runs_dir:
        for client in CLIENTS:  # warm-up: imports, disk caches, Chromium's first start
            one_run("nonce", client, runs_dir)
        for fix in FIXES:
            seconds: dict[str, list[float]] = {client: [] for client in CLIENTS}
            for _ in range(args.runs):
                for client in CLIENTS:
                    seconds[client].append(one_run(fix, client, runs_dir))
            median = {client: statistics.median(seconds[client]) for client in CLIENTS}
            difference = median["browser"] - median["python"]
            ok = difference <= GOAL
            failed |= not ok
            print(
                f"proxy-cache fix={fix:<5} median to verdict: python {median['python']:.2f} s, "
                f"browser {median['browser']:.2f} s, difference {difference:+.2f} s "
                f"(goal <= {GOAL:g} s: {'met' if ok else 'MISSED'}); runs: "
                + "; ".join(
                    f"{client} " + ", ".join(f"{s:.2f}" for s in seconds[client])
                    for client in CLIENTS
                )
            )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
