"""`lab audit` of an HTTPS app: which CA each poller trusts, and how each profile meets the
app's HTTPS, with the TLS modes the https scenarios use (lab/stacks/tls.py, tls_args).

- A forward profile *tunnels* by default (`--tls tunnel`): the client sends CONNECT and the
  proxy passes the encrypted bytes through, as a forward proxy that does not inspect TLS does
  (the common case: it cannot see or cache the poll). `--tls inspect` makes it the managed
  laptop's secure web gateway: it terminates TLS with the run's gateway CA, which the proxied
  poller trusts as a managed laptop does, and opens TLS of its own to the app.
- A reverse (CDN-like) profile is an *edge*: it terminates TLS with a certificate for
  127.0.0.1 that the run's origin CA signs (a CDN's certificate for the site's name) and
  fetches from the app over HTTPS.

Every proxy that opens TLS to the app verifies it with the app's CA; the direct poller trusts
the app's CA alone; a proxied poller trusts the app's CA plus, where the proxy terminates TLS,
the run CA that signed what the proxy shows. The app's CA is the user's file (`--cacert`) or,
for an app the lab starts with `{certfile}`/`{keyfile}`, the run's origin CA, which issued
that certificate. Every file the lab makes stays in `<run>/tls/`.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lab.data import profiles
from lab.data.paths import relative
from lab.judging.tls_path import TERMINATED_AT, path_facts
from lab.stacks.processes import Supervisor
from lab.stacks.proxy_hosts import launch_proxy_group
from lab.stacks.stack import ProxyEndpoint, tls_args
from lab.stacks.tls import RunTls

ForwardTls = Literal["tunnel", "inspect"]
FORWARD_MODES: tuple[str, ...] = ("tunnel", "inspect")


@dataclass(frozen=True)
class AuditTls:
    run: RunTls
    app_ca: Path  # what verifies the app's certificate
    forward: ForwardTls = "tunnel"
    made_by_lab: bool = False  # the app's certificate is the run's ({certfile}/{keyfile})

    def mode_for(self, profile_mode: str) -> str:
        return "edge" if profile_mode == "reverse" else self.forward

    @property
    def app_ca_label(self) -> str:
        if self.made_by_lab:
            return "the run's origin CA (it issued the app's {certfile})"
        return f"your CA ({relative(self.app_ca)})"

    def trust_file(self, mode: str | None) -> Path:
        """What a poller through a proxy in `mode` trusts (None: the direct poller)."""
        extra = {"inspect": self.run.gateway_ca, "edge": self.run.origin_ca}.get(mode or "")
        if extra is None or extra == self.app_ca:
            return self.app_ca
        path = self.run.folder / f"audit-trust-{mode}.pem"
        if not path.exists():
            path.write_bytes(self.app_ca.read_bytes().rstrip(b"\n") + b"\n" + extra.read_bytes())
        return path

    def context(self, mode: str | None) -> ssl.SSLContext:
        return _context(str(self.trust_file(mode)))

    def trusted(self, mode: str | None) -> str:
        """The verdict's `client_trusted`, in words."""
        run_ca = {"inspect": "the run's gateway CA", "edge": "the run's origin CA (the edge's)"}
        if mode in run_ca and not (mode == "edge" and self.made_by_lab):
            return f"{self.app_ca_label} and {run_ca[mode]}, nothing else"
        return f"{self.app_ca_label}, nothing else"

    def proxy_args(self, mode: str, name: str) -> list[str]:
        """mitmdump's options for the mode (one mitmdump per mode: they are the process's)."""
        return tls_args(mode, self.run, name, upstream_ca=self.app_ca)

    def summary(self, loaded: list[profiles.Profile]) -> dict[str, Any]:
        """The audit's `tls`: the app's CA, and for each profile its mode, where TLS ended and
        what its poller trusted."""
        return {
            "app_ca": self.app_ca_label,
            "forward": self.forward,
            "direct_trusted": self.trusted(None),
            "profiles": {
                profile.name: {
                    "mode": (mode := self.mode_for(profile.mode)),
                    "ended_at": TERMINATED_AT[mode].format(proxy=profile.name),
                    "client_trusted": self.trusted(mode),
                }
                for profile in loaded
            },
        }

    def facts(self, mode: str, proxy: str, seen: dict[str, str] | None) -> dict:
        """The cell verdict's `tls`: where TLS ended and what the poller was shown."""
        return path_facts(mode, proxy, "python", seen) | {"client_trusted": self.trusted(mode)}


@functools.cache
def _context(cafile: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cafile)


def for_audit(run: RunTls, cacert: Path | None, forward: ForwardTls) -> AuditTls:
    """The user's CA, or the run's origin CA for a certificate the lab made."""
    if cacert is not None:
        return AuditTls(run, cacert, forward)
    return AuditTls(run, run.origin_ca, forward, made_by_lab=True)


def launch_audit_proxies(
    sup: Supervisor,
    name: str,
    loaded: list[profiles.Profile],
    strategy_names: list[str],
    app_url: str,
    per_process: int,
    tls: AuditTls | None,
) -> Callable[[], dict[Any, ProxyEndpoint]]:
    """Every cell's listener, forward and reverse alike, a few to a mitmdump, one group of
    processes per TLS mode (its options are the process's); return the function that waits
    for them all. The app's address is known before it is up (the lab chose its port)."""
    groups: dict[str | None, list[Any]] = {}
    for profile in loaded:
        mode = tls.mode_for(profile.mode) if tls else None
        url = app_url if profile.mode == "reverse" else None
        groups.setdefault(mode, []).extend(
            ((profile.name, strategy), profile, url) for strategy in strategy_names
        )
    waits = [
        launch_proxy_group(
            sup,
            f"{name}-{mode}" if mode else name,
            wanted,
            per_process,
            tls=(mode, functools.partial(_mode_args, tls, mode)) if tls and mode else None,
        )
        for mode, wanted in groups.items()
    ]
    return lambda: {key: endpoint for wait in waits for key, endpoint in wait().items()}


def _mode_args(tls: AuditTls, mode: str, process: str) -> list[str]:
    return tls.proxy_args(mode, process)
