"""Squid (Debian package squid, 5.7 on Debian 12) as a forward proxy on loopback.

`squid -N` keeps the master in the foreground as the one worker (no kids, no daemon), so the
lab supervises it like its own children. Started as root, Squid drops to cache_effective_user
(`proxy` in Debian's build): its pid file, logs and coredump_dir are in a folder owned by
`proxy`. The templates hold only a memory cache (cache_mem, no cache_dir), so no `squid -z`
is needed, and `shutdown_lifetime 1 second` lets SIGTERM stop it in about a second.
See squid.conf.documented: http_port, cache_effective_user, shutdown_lifetime.
"""

from __future__ import annotations

from pathlib import Path

from lab.verify.products.base import Product, give_to

BINARY = "/usr/sbin/squid"


def command(config: Path, folder: Path) -> list[str]:
    return [BINARY, "-f", str(config), "-N"]


def prepare(config: Path, folder: Path) -> None:
    give_to("proxy", folder)


PRODUCT = Product(
    name="squid",
    package="squid",
    binary=BINARY,
    command=command,
    prepare=prepare,
    user="proxy",
    # Squid waits shutdown_lifetime (1 s in the templates), then takes up to 2 s more to
    # close: measured 2.8 s here, too close to the lab's 3 s.
    stop_grace=6.0,
)
