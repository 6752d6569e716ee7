"""CPU a request of lab-mitmdump against the stock mitmdump, through one profile.

lab-mitmdump (proxies/lab_mitmdump.py) is mitmdump less the default addons a run leaves idle.
Both run the same profile in reverse mode in front of a small origin on 127.0.0.1, and one
client asks for distinct status URLs one after another on a kept-alive connection, as a page's
polls go. Rounds interleave the two; the proxy's own CPU (user + system, from /proc) per
request is reported for each round, with the median.

    python bench/proxy_cpu.py [--requests 1500] [--rounds 3] [--profile corporate-cache]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import psutil

from lab.data import profiles

sys.path.insert(0, os.path.dirname(__file__))

from proxy_rps import Origin, start_proxy  # noqa: E402 - the same origin and proxy start

BIN = Path(sys.executable).parent
PROXIES = {"mitmdump": BIN / "mitmdump", "lab-mitmdump": BIN / "lab-mitmdump"}


class BufferedOrigin(Origin):
    wbufsize = 65536  # head and body in one write: no delayed-ACK wait between them


def cpu_ms_a_request(proc: subprocess.Popen, port: int, requests: int) -> float:
    with httpx.Client(trust_env=False, timeout=30) as client:
        for n in range(50):  # warm: connections, caches, lazy imports
            client.get(f"http://127.0.0.1:{port}/warm/{n}")
        before = psutil.Process(proc.pid).cpu_times()
        for n in range(requests):
            client.get(f"http://127.0.0.1:{port}/tasks/x/status?nonce={n}").raise_for_status()
        after = psutil.Process(proc.pid).cpu_times()
    used = (after.user - before.user) + (after.system - before.system)
    return used / requests * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", default="corporate-cache")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), BufferedOrigin)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    samples: dict[str, list[float]] = {name: [] for name in PROXIES}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for name, executable in PROXIES.items():
                extra = ["--mode", f"reverse:{origin}", "--set", "keep_host_header=true",
                         *profiles.mitmdump_args(profiles.load(args.profile))]  # fmt: skip
                proc, port = start_proxy(extra, Path(tmp), name, str(executable))
                try:
                    samples[name].append(cpu_ms_a_request(proc, port, args.requests))
                finally:
                    proc.kill()
                    proc.wait()
    server.shutdown()
    for name, values in samples.items():
        rounds = ", ".join(f"{v:.2f}" for v in values)
        print(f"{name:13s} {statistics.median(values):.2f} ms of CPU a request (rounds: {rounds})")
    stock, lab = (statistics.median(samples[n]) for n in PROXIES)
    print(f"lab-mitmdump uses {100 * (1 - lab / stock):.0f}% less CPU a request ({args.profile})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
