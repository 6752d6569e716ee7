"""Requests per second through each proxy profile, against plain mitmproxy, in one run.

Goal (issue 3): each profile at least 0.8 of plain mitmproxy's requests per second. Everything
runs on 127.0.0.1: a small threaded origin answering like the status endpoint (JSON, no cache
headers), one mitmdump per profile (and one with no addons at all), and an asyncio client with a
fixed number of requests in flight. Profiles that add latency or fail requests on purpose are
measured too, but their ratio says how slow they are meant to be, not the addons' overhead.
A request that a proxy answered by closing its kept-alive connection (idle-timeout, when the
machine left a connection idle for 0.2 s) is sent again, as a browser does, and counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from lab.data import profiles
from lab.stacks.stack import mitmdump_executable

SLOW_BY_DESIGN = {"slow-network", "flaky-network", "idle-timeout"}


class Origin(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = json.dumps({"state": "PENDING", "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def start_proxy(
    extra: list[str], workdir: Path, name: str, executable: str | None = None
) -> tuple[subprocess.Popen, int]:
    """`executable`: the mitmdump to run (bench/proxy_cpu.py compares two); None: the lab's."""
    import proxies.lab_addons as addons_script

    ready = workdir / f"{name}.ready.json"
    ready.unlink(missing_ok=True)  # a name started again in one folder: not the last one's port
    script = ["-s", addons_script.__file__, "--set", f"observer_ready={ready}"]
    plain = name == "plain-mitmproxy"
    argv = [
        executable or mitmdump_executable(),
        "-q",
        "--listen-host",
        "127.0.0.1",
        "--listen-port",
        "0" if not plain else str(free_port()),
        *([] if plain else script),
        *extra,
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if plain:
            port = int(argv[argv.index("--listen-port") + 1])
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=0.5)
                return proc, port
            except httpx.HTTPError:
                time.sleep(0.05)
                continue
        if ready.exists():
            try:
                return proc, json.loads(ready.read_text())["port"]
            except json.JSONDecodeError:
                pass
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"{name}: mitmdump did not start")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Hammered:
    rps: float
    # Requests whose kept-alive connection the proxy closed under them, each then sent again:
    # what idle-timeout does on purpose (a browser too sends such a request again, on a new
    # connection). Any other profile with one misses the goal.
    resent: int


async def hammer(
    proxy_port: int, origin_port: int, total: int, in_flight: int, reverse: bool = False
) -> Hammered:
    """A reverse proxy is asked directly; a forward proxy is the client's proxy."""
    proxy = None if reverse else f"http://127.0.0.1:{proxy_port}"
    target = proxy_port if reverse else origin_port
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    resent = 0
    async with httpx.AsyncClient(proxy=proxy, limits=limits, trust_env=False, timeout=30) as c:
        queue = iter(range(total))

        async def worker() -> None:
            nonlocal resent
            for n in queue:
                # A status poll per "task": 50 distinct URLs, each polled many times.
                url = f"http://127.0.0.1:{target}/tasks/{n % 50}/status"
                # Every pooled connection may have been closed under it: one try per
                # connection the pool can hold, and one on a new connection.
                for attempt in range(in_flight + 1):
                    try:
                        await c.get(url)
                        break
                    except (httpx.RemoteProtocolError, httpx.ReadError):
                        if attempt == in_flight:
                            raise
                        resent += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return Hammered(total / (time.perf_counter() - began), resent)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    origin = ThreadingHTTPServer(("127.0.0.1", 0), Origin)
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    origin_port = origin.server_address[1]
    names = ["plain-mitmproxy", *profiles.names()]
    reverse = {n for n in profiles.names() if profiles.load(n).mode == "reverse"}
    samples: dict[str, list[float]] = {name: [] for name in names}
    resent = dict.fromkeys(names, 0)
    with tempfile.TemporaryDirectory() as tmp:
        running = {}
        try:
            for name in names:
                args_for = [] if name == "plain-mitmproxy" else None
                extra = (
                    args_for
                    if args_for is not None
                    else profiles.mitmdump_args(profiles.load(name))
                )
                if name in reverse:
                    extra = [*extra, "--mode", f"reverse:http://127.0.0.1:{origin_port}"]
                running[name] = start_proxy(extra, Path(tmp), name)
            # Rounds interleave the proxies so a busy moment on the machine hits them all
            # alike; the median of the rounds is reported.
            for _ in range(args.rounds):
                for name, (_, port) in running.items():
                    rev = name in reverse
                    asyncio.run(hammer(port, origin_port, 100, args.in_flight, rev))  # warm-up
                    got = asyncio.run(hammer(port, origin_port, args.requests, args.in_flight, rev))
                    samples[name].append(got.rps)
                    resent[name] += got.resent
        finally:
            for proc, _ in running.values():
                proc.terminate()
                proc.wait(timeout=10)
    results = {name: statistics.median(values) for name, values in samples.items()}
    origin.shutdown()
    plain = results["plain-mitmproxy"]
    print(f"{'profile':<22} {'req/s':>8} {'ratio':>6} {'resent':>6}")
    missed = []
    for name, rps in results.items():
        ratio = rps / plain
        note = " (slow by design)" if name in SLOW_BY_DESIGN else ""
        if name not in SLOW_BY_DESIGN and (ratio < 0.8 or resent[name]):
            missed.append(name)
        print(f"{name:<22} {rps:8.0f} {ratio:6.2f} {resent[name]:6d}{note}")
    print(
        "goal (>= 0.8 of plain mitmproxy, no request resent): "
        + ("met" if not missed else f"MISSED by {missed}")
    )
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
