"""What the lab needs to know of one real caching proxy to run it on loopback as ground truth.

A product module (lab/verify/products/<name>.py) defines `PRODUCT`, one `Product`; the
profile's `[real]` table names it and a configuration template in proxies/real/. The lab fills
the template, calls `prepare`, then runs `command` in the foreground under its Supervisor (own
session, log in the run folder, stopped on every way out), exactly as it runs its own children.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

VERSION_TIMEOUT = 10.0  # seconds: `squid -v` and `nginx -v` answer at once


def no_prepare(config: Path, folder: Path) -> None:
    """Nothing to do before the product starts."""


def first_line(argv: list[str]) -> str:
    """The first non-empty line a command prints (stdout, else stderr: `nginx -v` uses
    stderr), or what went wrong, for the report: never an exception."""
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=VERSION_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    for line in (done.stdout + "\n" + done.stderr).splitlines():
        if line.strip():
            return line.strip()
    return "unknown (printed nothing)"


def running_as_root() -> bool:
    return os.geteuid() == 0


def give_to(user: str, folder: Path) -> None:
    """Make `folder` (and everything in it) the user's: a product started as root drops to
    that user, which must still write its pid file, logs and cache there."""
    if not running_as_root():
        return  # the product runs as us and already owns the folder
    for path in [folder, *folder.rglob("*")]:
        shutil.chown(path, user=user)


_VERSION_UNSET: Callable[[], str] = lambda: ""  # noqa: E731 - a marker, replaced below


@dataclass(frozen=True)
class Product:
    name: str  # "squid": the module's name, and what [real].product says
    package: str  # the Debian package that installs it: "squid", "nginx-light", ...
    binary: str  # absolute path: "/usr/sbin/squid"
    # (filled config, folder) -> argv that runs the product in the FOREGROUND.
    command: Callable[[Path, Path], list[str]]
    # (filled config, folder) -> None: run before `command` (chown the folder, `squid -z`...).
    prepare: Callable[[Path, Path], None] = no_prepare
    # () -> one line naming the installed version; default: `<binary> -v`, first line.
    version: Callable[[], str] = _VERSION_UNSET
    # The user the product drops to when started as root: the template's $user.
    user: str = "nobody"
    # Seconds from SIGTERM to SIGKILL; None: the lab's default for its children (3 s).
    stop_grace: float | None = None

    def __post_init__(self) -> None:
        if self.version is _VERSION_UNSET:
            object.__setattr__(self, "version", lambda: first_line([self.binary, "-v"]))

    @property
    def installed(self) -> bool:
        return os.access(self.binary, os.X_OK)

    @property
    def install_command(self) -> str:
        return f"apt-get install -y {self.package}"

    @property
    def run_as(self) -> str:
        """The template's $user: the product's own user when the lab runs as root, else ours
        (a non-root process cannot change user, and nginx warns when told to)."""
        if running_as_root():
            return self.user
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
