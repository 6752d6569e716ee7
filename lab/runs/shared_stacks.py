"""The matrix's shared stacks: which cells share an app stack and a proxy, and starting them.

One app stack (worker pool + app server) per broker and app/worker set-up, one proxy listener
per profile (per app stack it fronts, for a reverse proxy); cells that fill their broker get a
stack of their own instead (`lab repro`'s, one each).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from lab.data import profiles
from lab.data.errors import BadInput
from lab.data.scenarios import Scenario
from lab.runs.cell import task_duration
from lab.runs.lifecycle import RunResources
from lab.stacks.brokers import BrokerRuntime
from lab.stacks.proxy_hosts import ProxyKey, launch_proxy_group
from lab.stacks.stack import AppStack, ProxyEndpoint, external_proxy, launch_proxy, stack_key


def needs_own_stack(scenario: Scenario) -> bool:
    """A cell that fills its broker (a [load] stream, a capped Redis) cannot share one."""
    return bool(scenario.load.tasks) or scenario.redis.maxmemory != "0"


Cell = tuple[Scenario, str]


def split_cells(
    scenarios: Iterable[Scenario], fixes: Iterable[str]
) -> tuple[list[Cell], list[Cell], list[Cell]]:
    """Every (scenario, fix) that applies; those that need a stack of their own; the rest."""
    fixes = list(fixes)
    cells = [(sc, fix) for sc in scenarios for fix in fixes if sc.applies(fix)]
    own = [cell for cell in cells if needs_own_stack(cell[0])]
    return cells, own, [cell for cell in cells if not needs_own_stack(cell[0])]


def app_stacks_needed(cells: list[tuple[Scenario, str]]) -> list[str]:
    """The shared app stacks these cells need on one broker (a cell that needs its own stack
    counts as one more), for a check made before anything starts."""
    shared = {stack_key(sc, fix) for sc, fix in cells if not needs_own_stack(sc)}
    own = [f"{sc.name}--{fix}" for sc, fix in cells if needs_own_stack(sc)]
    return sorted(shared) + own


def cell_key(sc: Scenario, fix: str, brokers: dict[str, BrokerRuntime], forced: str | None) -> str:
    """Which shared app stack serves the cell: its broker and its set-up."""
    kind = forced or sc.default_broker
    return f"{kind}-{stack_key(sc, fix)}" if len(brokers) > 1 else stack_key(sc, fix)


def proxy_key(sc: Scenario, akey: str) -> ProxyKey:
    """Which proxy serves the cell: a forward profile's serves every app ("*"), one per TLS
    mode (tunnel and inspect are mitmproxy's own options: a process each); a reverse
    profile's fronts the cell's app stack (an HTTPS one for the TLS edge)."""
    if profiles.described(sc.proxy).mode == "reverse":
        return (sc.proxy, akey)
    return (sc.proxy, f"*-{sc.tls}" if sc.tls else "*")


def start_stacks(
    resources: RunResources,
    cells: list[tuple[Scenario, str]],
    concurrency: int,
    proxy_url: str | None,
    proxy_mode: str,
    brokers: dict[str, BrokerRuntime],
    forced: str | None = None,
    app_port: int = 0,
    external: dict[str, ProxyEndpoint] | None = None,
) -> tuple[dict[str, AppStack], dict[ProxyKey, ProxyEndpoint]]:
    """All processes start at once; forward proxies don't wait for the apps. app_port: the
    one app stack's port on 127.0.0.1 (a real reverse proxy forwards there). external: a
    proxy the lab did not start for each profile (`lab verify`'s real products), instead of
    the profile's mitmdump; `proxy_url` is one for every profile."""
    app_waits: dict[str, Callable[[], AppStack]] = {}
    for sc, fix in cells:
        key = cell_key(sc, fix, brokers, forced)
        if key not in app_waits:
            if app_port and app_waits:
                raise BadInput(
                    f"--app-port {app_port}: these cells need more than one app stack "
                    f"({', '.join([*app_waits, key])}); run them one scenario at a time"
                )
            app_waits[key] = resources.app_stack(
                sc,
                fix,
                brokers[forced or sc.default_broker],
                task_duration=task_duration(sc),
                key=key,
                concurrency=concurrency,
                port=app_port,
            )
    wanted = {(sc.proxy, cell_key(sc, fix, brokers, forced)) for sc, fix in cells if sc.uses_proxy}
    loaded = {name: profiles.load(name) for name, _ in wanted}
    # The HTTPS cells' proxies: a mitmdump each, with the TLS mode's own options.
    tls_cells = {
        proxy_key(sc, cell_key(sc, fix, brokers, forced)): sc
        for sc, fix in cells
        if sc.uses_proxy and sc.tls
    }
    wanted -= {(sc.proxy, cell_key(sc, fix, brokers, forced)) for sc, fix in cells if sc.tls}
    proxies: dict[ProxyKey, ProxyEndpoint] = {}
    if proxy_url:
        external = {name: external_proxy(proxy_url, proxy_mode) for name, _ in wanted}
        external |= {sc.proxy: external_proxy(proxy_url, proxy_mode) for sc in tls_cells.values()}
    if not external:
        # A forward proxy serves every app; a reverse proxy stands in front of one app. The
        # profiles share mitmdumps per kind (forward now, reverse once the apps are up), five
        # profiles a process, each on a listener of its own; a profile with mitmproxy's own
        # options runs alone.
        forward = sorted({name for name, _ in wanted if loaded[name].mode == "forward"})
        reverse = sorted((name, akey) for name, akey in wanted if loaded[name].mode == "reverse")
        forward_ready = launch_proxy_group(
            resources.sup, "proxy-forward", [((name, "*"), loaded[name], None) for name in forward]
        )
        tls_waits = {
            pkey: _launch_tls_proxy(resources, pkey, sc, None)
            for pkey, sc in tls_cells.items()
            if sc.tls != "edge"
        }
        apps = {key: wait() for key, wait in app_waits.items()}
        tls_waits |= {
            pkey: _launch_tls_proxy(resources, pkey, sc, apps[pkey[1]].url)
            for pkey, sc in tls_cells.items()
            if sc.tls == "edge"
        }
        reverse_ready = launch_proxy_group(
            resources.sup,
            "proxy-reverse",
            [((name, akey), loaded[name], apps[akey].url) for name, akey in reverse],
        )
        proxies = forward_ready() | reverse_ready() | {k: wait() for k, wait in tls_waits.items()}
    else:
        apps = {key: wait() for key, wait in app_waits.items()}
        cell_proxies = [(sc, cell_key(sc, fix, brokers, forced)) for sc, fix in cells]
        proxies = {
            proxy_key(sc, akey): external[sc.proxy] for sc, akey in cell_proxies if sc.uses_proxy
        }
    return apps, proxies


def _launch_tls_proxy(
    resources: RunResources, pkey: ProxyKey, sc: Scenario, app_url: str | None
) -> Callable[[], ProxyEndpoint]:
    name, akey = pkey
    label = f"{name}-tls-{sc.tls}" if akey.startswith("*") else f"{name}-{akey}"
    return launch_proxy(
        resources.sup,
        label,
        profiles.load(name),
        app_url,
        single=False,
        tls_mode=sc.tls,
        tls=resources.tls(),
    )
