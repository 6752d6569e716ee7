"""What the fork servers (lab.stacks.forkserver) run: a family of modules each server
imports once, and the Job it forks a child for, worked out from the command line the lab would
otherwise exec."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Family:
    """Children one server forks: the modules they run (`python -m MODULE`), the console
    scripts of this package beside the interpreter and the module each runs, and what the
    server imports first: those modules and what they import only once running (a worker's
    bootsteps and transports, a proxy's layers and TLS), which each child would import again."""

    name: str
    modules: tuple[str, ...] = ()
    scripts: dict[str, str] = field(default_factory=dict)
    preload: tuple[str, ...] = ()


FAMILIES = (
    Family(
        "app",
        modules=("sample_app.serve", "sample_app.worker"),
        preload=(
            "sample_app.serve",
            "sample_app.worker",
            "celery.apps.worker",
            "celery.worker.consumer",
            "celery.concurrency.solo",
            "celery.concurrency.thread",
            "kombu.transport.redis",
            "kombu.transport.pyamqp",
            "sample_app.broker_transport",
        ),
    ),
    # A proxy's start was a second of CPU, nearly all of it imports; forked, a twentieth.
    Family(
        "proxy",
        scripts={"lab-mitmdump": "proxies.lab_mitmdump"},
        preload=(
            "proxies.lab_mitmdump",
            "proxies.lab_listeners",
            "mitmproxy.proxy.server",
            "mitmproxy.proxy.layers",
            "mitmproxy.proxy.layers.http",
            "mitmproxy.net.tls",
            "mitmproxy.certs",
        ),
    ),
)


@dataclass(frozen=True)
class Job:
    """A command a fork server runs: its family, the module, and the child's `sys.argv` as
    `python -m MODULE` (runpy puts the module's file first) or the console script would set it."""

    family: Family
    module: str
    argv: list[str]


def forkable(argv: list[str]) -> Job | None:
    """What a fork server would run for `argv`; None if none can (another program, or a
    mitmdump other than this package's)."""
    for family in FAMILIES:
        if argv[:2] == [sys.executable, "-m"] and argv[2:3] and argv[2] in family.modules:
            return Job(family, argv[2], [argv[2], *argv[3:]])
        script = Path(argv[0]) if argv else Path()
        module = family.scripts.get(script.name)
        if module and script.parent == Path(sys.executable).parent:
            return Job(family, module, [argv[0], *argv[1:]])
    return None
