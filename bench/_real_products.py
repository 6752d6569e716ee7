"""The real product a profile's [real] table names (lab/verify/real.py: its template in
proxies/real/, started from the system's package on 127.0.0.1, on its leash, under the run's
Supervisor), as a reverse proxy in front of the HTTP caching test suite's origin, for
bench/cache_tests.py's per-product agreement.

The suite needs a reverse proxy (Node's fetch ignores HTTP_PROXY). A profile placed in reverse
(the nginx ones) runs its own template as `lab verify` does. A forward one (the Squid ones) runs
its template with the one listening line turned into Squid's accelerator set-up (the lines of
the suite's own docker/squid/squid.conf): the caching lines, refresh_pattern included, stay the
profile's.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from lab.data.errors import BadInput
from lab.stacks.processes import Supervisor
from lab.verify.real import ProductFolder, RealSetup, launch

# squid.conf.documented: http_port ... accel, cache_peer ... originserver.
SQUID_ACCEL = """\
http_port $app_host:$listen_port accel defaultsite=$app_host:$listen_port no-vhost
cache_peer $app_host parent $app_port 0 no-query no-digest originserver name=origin
cache_peer_access origin allow all"""
SQUID_LISTEN = re.compile(r"^http_port \S+$", re.M)


def reverse_setup(profile: str, folder: Path) -> RealSetup:
    """The profile's real set-up, placed as a reverse proxy (its template rewritten in
    `folder` when it is a forward one)."""
    setup = RealSetup.of(profile)
    setup.check_installed()
    if setup.placement == "reverse":
        return setup
    if setup.product.name != "squid":
        raise BadInput(f"profile {profile!r}: no reverse set-up for {setup.product.name} yet")
    text, found = SQUID_LISTEN.subn(SQUID_ACCEL, setup.template.read_text("utf-8"))
    if found != 1:
        raise BadInput(f"{setup.template}: expected one `http_port` line to turn into accel")
    template = folder / f"{profile}-accel.conf"
    template.write_text(text, "utf-8")
    return dataclasses.replace(setup, template=template, placement="reverse")


def start(profile: str, sup: Supervisor, origin_port: int) -> tuple[str, str]:
    """The profile's real product in front of 127.0.0.1:origin_port: (its URL, its version)."""
    setup = reverse_setup(profile, sup.run_dir)
    running = launch(sup, setup, origin_port, ProductFolder(sup.run_dir, profile))()
    return running.url, running.version
