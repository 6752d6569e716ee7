"""Many proxy profiles in few mitmdump processes (a matrix's proxies): one listener a profile.

Each mitmdump costs about a second of CPU to start and is one core at most, and a matrix has
seventeen profiles: the profiles that can share a process go a few to each
(proxies/lab_listeners.py), the others (mitmproxy options of their own) get one each.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

from lab.data import profiles
from lab.stacks.ports import LOOPBACK, free_ports, launch_retrying_taken_ports
from lab.stacks.processes import Component, Supervisor, read_ready_file
from lab.stacks.stack import ProxyEndpoint, launch_proxy, mitmdump_executable

PROFILES_PER_PROXY_PROCESS = 5  # listeners of one mitmdump in a matrix
ProxyKey = tuple[str, str]  # (profile, "*" for a forward proxy or the app stack it fronts)
Listener = tuple[str, profiles.Profile, str | None]  # key, profile, app URL of a reverse one
# A TLS mode's mitmproxy options for one process, by its name (its own confdir): TlsOptions.
TlsOptions = tuple[str, Callable[[str], list[str]]]


def launch_proxy_host(
    sup: Supervisor, name: str, listeners: list[Listener], tls: TlsOptions | None = None
) -> Callable[[], dict[str, ProxyEndpoint]]:
    """Start one mitmdump for several profiles, one listener each (proxies/lab_listeners.py):
    `listeners` are (key, profile, app URL for a reverse profile or None). Return a function
    that waits and gives each key's endpoint.

    mitmproxy cannot report the port it chose for several listeners, so the lab picks free
    ports; one taken in between is tried again with new ports (as for the lab's Redis).
    `tls`: (mode, options) for every listener, as for an HTTPS scenario (stack.tls_args).
    """
    run_dir = sup.run_dir
    ready_file = run_dir / f"{name}.ready.json"
    events = {key: run_dir / f"proxy-events-{key}.jsonl" for key, _, _ in listeners}
    import proxies.lab_listeners as listeners_script

    def start() -> tuple[Component, dict[str, int]]:
        ports = dict(zip((key for key, _, _ in listeners), free_ports(len(listeners)), strict=True))
        modes: list[str] = []
        specs: dict[str, dict] = {}
        for key, profile, app_url in listeners:
            port = ports[key]
            if profile.mode == "reverse":
                assert app_url is not None
                modes += ["--mode", f"reverse:{app_url}@{port}"]
            else:
                modes += ["--mode", f"regular@{port}"]
            specs[str(port)] = profiles.listener_spec(profile) | {"events": str(events[key])}
        # keep_host_header: as launch_proxy for reverse profiles; a forward proxy keeps the
        # client's Host in any case (the request's absolute URL names it).
        proc = sup.add(
            name,
            [
                mitmdump_executable(),
                "--listen-host",
                LOOPBACK,
                "-s",
                listeners_script.__file__,
                "--set",
                "keep_host_header=true",
                "--set",
                f"listeners={json.dumps(specs)}",
                "--set",
                f"listeners_ready={ready_file}",
                *modes,
                *(tls[1](name) if tls else []),
            ],
        )
        return proc, ports

    def wait(proc: Component, _ports: dict[str, int]) -> None:
        sup.wait_until(proc, lambda: read_ready_file(ready_file) is not None, "its ready file")

    _, launched = launch_retrying_taken_ports(sup, start, wait)

    def ready() -> dict[str, ProxyEndpoint]:
        _, ports = launched()
        return {
            key: with_tls(
                ProxyEndpoint(
                    key, profile.name, profile.mode, f"http://{LOOPBACK}:{ports[key]}", events[key]
                ),
                tls[0] if tls else None,
            )
            for key, profile, _ in listeners
        }

    return ready


def launch_proxy_group(
    sup: Supervisor,
    name: str,
    wanted: list[tuple[ProxyKey, profiles.Profile, str | None]],
    per_process: int = PROFILES_PER_PROXY_PROCESS,
    tls: TlsOptions | None = None,
) -> Callable[[], dict[ProxyKey, ProxyEndpoint]]:
    """A few listeners a mitmdump (`per_process`) for the profiles that can share one, one each
    for the others; return a function that waits for them all and gives each key's endpoint.
    `tls`: every process in one TLS mode (launch_proxy_host)."""
    shared = [item for item in wanted if profiles.can_share_a_process(item[1])]
    waits: dict[ProxyKey, Callable[[], ProxyEndpoint]] = {}
    for pkey, profile, app_url in wanted:
        if (pkey, profile, app_url) not in shared:
            label = _listener_label(pkey)
            own = tls[1](f"proxy-{label}") if tls else None
            waits[pkey] = _tls_endpoint(
                launch_proxy(sup, label, profile, app_url, single=False, extra_args=own),
                tls[0] if tls else None,
            )
    labels = {_listener_label(pkey): pkey for pkey, _, _ in shared}
    # A few profiles a process: one mitmdump is one core at most, and the cells starting
    # together would all wait for it.
    groups = [shared[start : start + per_process] for start in range(0, len(shared), per_process)]
    hosts = [
        launch_proxy_host(
            sup,
            f"{name}-{n}",
            [(_listener_label(pkey), profile, url) for pkey, profile, url in group],
            tls,
        )
        for n, group in enumerate(groups, 1)
    ]

    def ready() -> dict[ProxyKey, ProxyEndpoint]:
        endpoints = {
            labels[label]: endpoint for host in hosts for label, endpoint in host().items()
        }
        return endpoints | {pkey: wait() for pkey, wait in waits.items()}

    return ready


def with_tls(endpoint: ProxyEndpoint, mode: str | None) -> ProxyEndpoint:
    """The endpoint of a listener in a TLS mode: an edge is reached over HTTPS."""
    if mode is None:
        return endpoint
    scheme = "https" if mode == "edge" else "http"
    address = endpoint.address.replace("http://", f"{scheme}://", 1)
    return dataclasses.replace(endpoint, address=address, tls=mode)


def _tls_endpoint(
    ready: Callable[[], ProxyEndpoint], mode: str | None
) -> Callable[[], ProxyEndpoint]:
    return lambda: with_tls(ready(), mode)


def _listener_label(pkey: ProxyKey) -> str:
    """Names the listener's files (proxy-events-<label>.jsonl), as launch_proxy's key did."""
    name, akey = pkey
    return name if akey == "*" else f"{name}-{akey}"
