"""HAProxy (Debian package haproxy, 2.6 on Debian 12) with its `cache` section, reverse.

`haproxy -db` keeps it in the foreground (no daemon, no master-worker), so the lab supervises
it like its own children; the template binds 127.0.0.1 only and keeps its pid file in the run
folder. HAProxy needs no user of its own here (the template does not ask it to drop to one).
See doc/management.txt: -db, -f.
"""

from __future__ import annotations

from pathlib import Path

from lab.verify.products.base import Product

BINARY = "/usr/sbin/haproxy"


def command(config: Path, folder: Path) -> list[str]:
    return [BINARY, "-db", "-f", str(config)]


PRODUCT = Product(name="haproxy", package="haproxy", binary=BINARY, command=command)
