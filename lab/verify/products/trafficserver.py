"""Apache Traffic Server (Debian package trafficserver, 9.2 on Debian 12) from the run folder.

Traffic Server reads a directory of files, not one: the template (proxies/real/*.config) holds
them as parts, each after a `# file: NAME` line, and `prepare` writes each part to
FOLDER/etc/NAME, the empty files Traffic Server expects beside them, and a runroot.yaml that
puts its config, runtime, log and cache directories in the run folder (the "runroot" of
traffic_layout(1); `traffic_server --run-root=FILE`, docs.trafficserver.apache.org,
"Runroot"). The programs and plugins stay Debian's (/usr/bin, /usr/lib/trafficserver). Started
as root, traffic_server drops to proxy.config.admin.user_id (`trafficserver`), which owns the
folder. `traffic_server` alone (no traffic_manager) stays in the foreground.
"""

from __future__ import annotations

import re
from pathlib import Path

from lab.data.errors import BadInput
from lab.verify.products.base import Product, first_line, give_to

BINARY = "/usr/bin/traffic_server"
PART = re.compile(r"^# file: (?P<name>[A-Za-z0-9._-]+)\s*$")
# Read at start-up; empty is their default (no plugins, no parents, no extra volumes...).
EMPTY_FILES = (
    "plugin.config",
    "cache.config",
    "hosting.config",
    "volume.config",
    "parent.config",
    "socks.config",
    "splitdns.config",
    "ssl_multicert.config",
)
DIRECTORIES = ("etc", "run", "log", "cache", "var")


def parts(config: Path) -> dict[str, str]:
    """The template's files: name -> text (what precedes the first `# file:` is a comment)."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in config.read_text("utf-8").splitlines():
        match = PART.match(line)
        if match:
            current = found.setdefault(match["name"], [])
        elif current is not None:
            current.append(line)
    if "records.config" not in found:
        raise BadInput(f"{config}: no '# file: records.config' part")
    return {name: "\n".join(lines) + "\n" for name, lines in found.items()}


def runroot(folder: Path) -> str:
    return "\n".join(
        [
            "prefix: /usr",
            "exec_prefix: /usr",
            "bindir: /usr/bin",
            "sbindir: /usr/sbin",
            "includedir: /usr/include",
            "libdir: /usr/lib/trafficserver",
            "libexecdir: /usr/lib/trafficserver/modules",
            f"sysconfdir: {folder}/etc",
            f"datadir: {folder}/cache",
            f"localstatedir: {folder}/var",
            f"runtimedir: {folder}/run",
            f"logdir: {folder}/log",
            f"cachedir: {folder}/cache",
            "",
        ]
    )


def prepare(config: Path, folder: Path) -> None:
    for name in DIRECTORIES:
        (folder / name).mkdir(exist_ok=True)
    etc = folder / "etc"
    for name in EMPTY_FILES:
        (etc / name).touch()
    for name, text in parts(config).items():
        (etc / name).write_text(text, "utf-8")
    (folder / "runroot.yaml").write_text(runroot(folder), "utf-8")
    give_to("trafficserver", folder)


def command(config: Path, folder: Path) -> list[str]:
    return [BINARY, f"--run-root={folder / 'runroot.yaml'}"]


PRODUCT = Product(
    name="trafficserver",
    package="trafficserver",
    binary=BINARY,
    command=command,
    prepare=prepare,
    version=lambda: first_line([BINARY, "--version"]),
    user="trafficserver",
)
