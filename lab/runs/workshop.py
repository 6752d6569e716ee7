"""`lab up`: start a scenario's stack and keep it running for people to try in any browser.

The page is served through the scenario's proxy in reverse mode, so nobody has to configure a
proxy; the same proxy process also listens as a forward proxy for those who want to. A live
table shows what the proxy does with each request until Ctrl-C stops everything.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from lab.data import fixes, profiles
from lab.data.errors import BadInput
from lab.data.jsonl import JsonLinesTail
from lab.data.scenarios import Scenario
from lab.runs.cell import task_stream
from lab.runs.lifecycle import Progress, RunResources, new_run_dir
from lab.runs.workshop_notice import Workshop, announce
from lab.stacks.addresses import addresses_for, machine_addresses
from lab.stacks.brokers import BrokerChoice
from lab.stacks.ports import LOOPBACK, free_port
from lab.stacks.redis_memory import redis_cli_commands
from lab.stacks.stack import launch_proxy

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def up(
    scenario: Scenario,
    fix: str,
    runs_root: Path,
    progress: Progress,
    *,
    host: str = LOOPBACK,
    console: Console,
    until: Callable[[], bool] = lambda: False,
    broker: BrokerChoice | None = None,
) -> None:
    """Run until Ctrl-C (or `until()` is true); every process is stopped on the way out."""
    exposed = host not in LOOPBACK_HOSTS
    if scenario.tls is not None:
        # Its page would need the run's CA in the visitor's browser: not for a room.
        raise BadInput(
            f"scenario {scenario.name!r}: field 'tls' ({scenario.tls}): lab up serves plain "
            "HTTP only; run HTTPS scenarios with lab repro or lab matrix"
        )
    if exposed and not scenario.uses_proxy:
        raise BadInput(
            f"--host {host}: scenario {scenario.name!r} has no proxy to put authentication on; "
            "only proxied scenarios can be shared on a network"
        )
    run_dir = new_run_dir(runs_root, f"up-{scenario.name}-{fix}")
    with RunResources(run_dir) as resources:
        sup = resources.sup
        broker_rt = resources.broker(broker or BrokerChoice(scenario.default_broker), scenario)
        progress(f"broker: {broker_rt.label}")
        app = resources.app_stack(scenario, fix, broker_rt, task_duration=scenario.task_duration)()
        page_fix = fixes.poll_strategy(fix)  # a result backend fix: the page polls as "none"
        shop = Workshop(app.url, f"/?fix={page_fix}", run_dir, bind=host)
        events = None
        if scenario.uses_proxy:
            profile = profiles.load(scenario.proxy)
            reverse_port = free_port(host)
            modes = [f"reverse:{app.url}@{reverse_port}"]
            forward_port = None
            if profile.mode == "forward":
                forward_port = free_port(host)
                modes.append(f"regular@{forward_port}")
            extra: list[str] = []
            if exposed:
                # Never an open proxy on a classroom network.
                shop.credentials = f"lab:{secrets.token_urlsafe(9)}"
                extra = ["--set", f"proxyauth={shop.credentials}"]
            proxy_ready = launch_proxy(
                sup,
                profile.name,
                profile,
                app.url,
                single=True,
                listen_host=host,
                modes=modes,
                extra_args=extra,
            )
            proxy_ready()
            events = run_dir / "proxy-events.jsonl"
            shop.reverse_port, shop.forward_port = reverse_port, forward_port
        console.print(f"[bold]{scenario.name}[/] (fix={fix}): {scenario.summary}", highlight=False)
        # Only a room needs the machine's addresses; on loopback the bind is the address.
        announce(shop, addresses_for(host, machine_addresses() if exposed else []), console)

        if broker_rt.kind == "redis" and broker_rt.url:
            console.print(
                "Look inside the broker: " + "; ".join(redis_cli_commands(broker_rt.url)[:2]),
                highlight=False,
            )
        if scenario.load.tasks:
            # The other users' stream, once, in the background: then Start meets what it left.
            stream = task_stream(scenario, app, fix, run_dir / "load.jsonl", lambda: None)
            threading.Thread(target=stream.run, name="load", daemon=True).start()
            progress(
                f"sending {scenario.load.tasks} tasks from other users "
                f"({scenario.load.per_second:g}/s) in the background"
            )

        _watch(events, console, until, lambda: resources.check_alive("while up"))


def _table(rows: deque[dict]) -> Table:
    table = Table(title="What the proxy does", box=None, header_style="bold")
    for column in ("time", "method", "path", "cache", "status", "age"):
        table.add_column(column)
    colour = {"HIT": "yellow", "STORE": "cyan", "MISS": "green", "REVALIDATED": "blue"}
    for event in rows:
        path = (event.get("url") or "").split("://", 1)[-1]
        path = "/" + path.split("/", 1)[1] if "/" in path else path
        cache = event.get("cache") or "-"
        table.add_row(
            time.strftime("%H:%M:%S", time.localtime(event.get("time", 0))),
            event.get("method") or "",
            path[:70],
            f"[{colour.get(cache, 'white')}]{cache}[/]",
            str(event.get("status") or event.get("error") or ""),
            str(event.get("age") if event.get("age") is not None else ""),
        )
    return table


def _watch(
    events: Path | None,
    console: Console,
    until: Callable[[], bool],
    check_alive: Callable[[], None],
) -> None:
    rows: deque[dict] = deque(maxlen=15)
    tail = JsonLinesTail(events) if events is not None else None
    live = Live(_table(rows), console=console, auto_refresh=False) if console.is_terminal else None
    if live:
        live.start()
    try:
        while not until():
            check_alive()
            if tail is not None:
                new = tail.read_new()
                for event in new:
                    rows.append(event)
                    if live is None:
                        # No terminal: one plain line per request.
                        console.print(
                            f"proxy: {event.get('method')} {event.get('url')} "
                            f"{event.get('cache')} {event.get('status')}",
                            highlight=False,
                        )
                if live and new:
                    live.update(_table(rows), refresh=True)
            time.sleep(0.2)
    finally:
        if live:
            live.stop()
