"""Seconds to verdict on each broker: the story's cell on SQLite, Redis and RabbitMQ, and
redis-oom with and without a fix. No goal in the issues: figures for the closing note.

Runs the real CLI as a user would (RabbitMQ at the default URL or $LAB_RABBITMQ_URL, the lab's
own redis-server), and reads the `seconds` field of the JSON verdict.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile

CASES = [
    ("proxy-cache", "none", "sqlite"),
    ("proxy-cache", "none", "redis"),
    ("proxy-cache", "none", "rabbitmq"),
    ("proxy-cache", "nonce", "sqlite"),
    ("proxy-cache", "nonce", "redis"),
    ("proxy-cache", "nonce", "rabbitmq"),
    ("redis-oom", "none", "redis"),
    ("redis-oom", "result-expires", "redis"),
]


def one_run(scenario: str, fix: str, broker: str, runs_dir: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "lab", "repro", scenario, "--fix", fix, "--broker", broker]
        + ["--json", "--runs-dir", runs_dir],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise SystemExit(f"lab repro {scenario} failed ({done.returncode}): {done.stderr[-500:]}")
    return json.loads(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as runs_dir:
        one_run("proxy-cache", "nonce", "sqlite", runs_dir)  # warm-up
        for scenario, fix, broker in CASES:
            verdicts = [one_run(scenario, fix, broker, runs_dir) for _ in range(args.runs)]
            seconds = [v["seconds"] for v in verdicts]
            observed = {v["observed"] for v in verdicts}
            extra = ""
            if verdicts[0].get("redis"):
                peaks = [v["redis"]["peak"] / 2**20 for v in verdicts]
                flat = all(v["redis"]["flat"] for v in verdicts)
                extra = f"; Redis peak {max(peaks):.2f} MiB, flat: {flat}"
            print(
                f"{scenario:<12} fix={fix:<15} broker={broker:<9} observed {'/'.join(observed)}; "
                f"median to verdict {statistics.median(seconds):.2f} s "
                f"(runs: {', '.join(f'{s:.2f}' for s in seconds)}){extra}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
