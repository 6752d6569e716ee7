"""Varnish (Debian package varnish, 7.1 on Debian 12) in front of the app, built-in VCL only.

A stock Varnish's configuration is its command line: the template (proxies/real/*.args) holds
varnishd's options, one per line, and `-F` keeps the manager in the foreground. `-n` puts its
working directory (the shared memory log, the compiled VCL) in the run folder; started as root,
varnishd's jail drops the worker to the `varnish` user on its own (varnishd(1): -j unix), so
nothing in the folder needs another owner. See varnishd(1): -a, -b, -F, -n.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from lab.verify.products.base import Product, first_line

BINARY = "/usr/sbin/varnishd"


def options(config: Path) -> list[str]:
    """The filled template's options: each line split as a shell would, `#` lines skipped."""
    words: list[str] = []
    for line in config.read_text("utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            words.extend(shlex.split(line))
    return words


def command(config: Path, folder: Path) -> list[str]:
    return [BINARY, "-F", *options(config)]


PRODUCT = Product(
    name="varnish",
    package="varnish",
    binary=BINARY,
    command=command,
    version=lambda: first_line([BINARY, "-V"]),
    user="varnish",
)
