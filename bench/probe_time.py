"""Issue 12's timing goal, measured as a user meets it: `lab probe` (the whole command, all of
the catalogue's poll strategies, 9 polls each 0.25 s apart) against the sample app behind a
proxy profile on loopback, under 10 s on a 2-core machine.

Starts the sample app's web server (its probe endpoint needs no worker) and one mitmdump with
the profile (forward, or reverse as the profile says), runs the real CLI `--runs` times after a
warm-up, and prints the median and every run: the command's wall time, and the probe's own
seconds from its JSON (without the interpreter's start).
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

from lab.data import profiles  # noqa: E402
from lab.runs.lifecycle import RunResources, new_run_dir  # noqa: E402
from lab.stacks.ports import free_port  # noqa: E402
from lab.stacks.stack import launch_proxy  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GOAL = 10.0
PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY")


def start_app(resources: RunResources) -> str:
    """The sample app's web server, as `python -m sample_app.serve` starts it."""
    port = free_port()
    proc = resources.sup.add(
        "app",
        [sys.executable, "-m", "sample_app.serve", "--port", str(port), "--data-dir",
         str(resources.run_dir / "app-data")],
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        import httpx

        try:
            return httpx.get(f"{url}/_cache-probe/", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    resources.sup.wait_until(proc, answers, "its probe endpoint")
    return url


def probe_seconds(url: str, proxy: str | None) -> tuple[float, float, int]:
    """(wall seconds, the probe's own seconds, cached strategies) of one `lab probe`."""
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    began = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lab",
            "probe",
            url,
            "--json",
            *(["--proxy", proxy] if proxy else []),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )
    wall = time.monotonic() - began
    if done.returncode not in (0, 1):
        raise SystemExit(f"lab probe failed ({done.returncode}): {done.stderr[-2000:]}")
    doc = json.loads(done.stdout)
    return wall, doc["seconds"], len(doc["cached"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="squid-override")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: 10 million additions take {machine_speed():.2f} s of one core")
    profile = profiles.load(args.profile)
    with (
        tempfile.TemporaryDirectory() as folder,
        RunResources(new_run_dir(Path(folder), "bench-probe")) as resources,
    ):
        app_url = start_app(resources)
        endpoint = launch_proxy(resources.sup, "proxy", profile, app_url, single=True)()
        if profile.mode == "reverse":
            url, proxy = f"{endpoint.address}/_cache-probe", None
        else:
            url, proxy = f"{app_url}/_cache-probe", endpoint.address
        probe_seconds(url, proxy)  # warm-up: imports and disk caches
        runs = [probe_seconds(url, proxy) for _ in range(args.runs)]
    wall = statistics.median(w for w, _, _ in runs)
    ok = wall < GOAL
    print(
        f"lab probe behind {args.profile} [{profile.mode}], every poll strategy: median "
        f"{wall:.1f} s (goal < {GOAL:g} s: {'met' if ok else 'MISSED'}); runs (wall / probe "
        "itself / strategies cached): " + ", ".join(f"{w:.1f}/{p:.1f} s/{c}" for w, p, c in runs)
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
