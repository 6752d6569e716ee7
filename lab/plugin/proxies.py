"""The pytest plugin's proxies: a profile's mitmdump in front of (or on the way to) the user's
app, started once per profile and target per test session (lab/plugin/__init__.py wires it).
It imports only what a proxy needs: a session that uses one profile pays for little else."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from lab.data import profiles
from lab.data.errors import BadInput
from lab.data.jsonl import read_jsonl
from lab.runs.lifecycle import RunResources, new_run_dir
from lab.stacks.spare import SpareProxy, launch_spare
from lab.stacks.stack import ProxyEndpoint, launch_proxy

ALL = "all"
DEPLOYMENT = "deployment"


def profiles_for(marked: Sequence[str] | None, option: str | None) -> list[str]:
    """The profiles a `lab_profile` test runs behind: the marker's, else the option's, else
    every profile that stands for a real deployment. BadInput for an unknown name."""
    names = list(marked or []) or [n.strip() for n in (option or "").split(",") if n.strip()]
    chosen: list[str] = []
    for name in names or [DEPLOYMENT]:
        if name == ALL:
            chosen += profiles.names()
        elif name == DEPLOYMENT:
            chosen += profiles.deployment_names()
        else:
            profiles.described(name)
            chosen.append(name)
    return list(dict.fromkeys(chosen))


class RoutedSession(requests.Session):
    """A requests.Session whose relative URLs ("/jobs") go to `base_url`, through the proxy
    when it is a forward one; the environment's proxy settings are not used."""

    def __init__(self, base_url: str, proxy_url: str | None) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/") + "/"
        self.trust_env = False
        if proxy_url:
            self.proxies = {"http": proxy_url}

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        if isinstance(url, str) and url.startswith("/"):
            url = urljoin(self.base_url, url.lstrip("/"))
        return super().request(method, url, *args, **kwargs)


@dataclass
class LabProxy:
    """One profile's proxy in front of (or on the way to) the target, and its own record."""

    profile: str
    mode: str  # "forward" (the client is configured to use it) or "reverse" (in front of the app)
    url: str  # the proxy's own address
    base_url: str  # where requests go: the proxy itself (reverse) or the target (forward)
    events_path: Path

    @property
    def session(self) -> RoutedSession:
        """A new requests.Session routed through the proxy ("/path" is relative to base_url)."""
        return RoutedSession(self.base_url, self.url if self.mode == "forward" else None)

    def events(self) -> list[dict[str, Any]]:
        """Every request the proxy finished, one dict each: method, url, cache (HIT, MISS,
        STORE, BYPASS, REVALIDATED), status, age, and the cache rule that stored an answer."""
        return read_jsonl(self.events_path)

    def served_from_cache(self, url_part: str = "") -> list[dict[str, Any]]:
        return [e for e in self._about(url_part) if e.get("cache") == "HIT"]

    def stored(self, url_part: str = "") -> list[dict[str, Any]]:
        return [e for e in self._about(url_part) if e.get("cache") == "STORE"]

    def revalidated(self, url_part: str = "") -> list[dict[str, Any]]:
        return [e for e in self._about(url_part) if e.get("cache") == "REVALIDATED"]

    def _about(self, url_part: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if url_part in (e.get("url") or "")]


def _loopback_http(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise BadInput(f"target {url!r}: the lab's proxies front loopback http:// URLs only")
    return url.rstrip("/")


class ProxyPool:
    """The session's proxies: one mitmdump per (profile, target), started when first asked
    for, all stopped when the session ends."""

    def __init__(self, folder: Path) -> None:
        self.resources = RunResources(new_run_dir(folder, "proxies"))
        self._proxies: dict[tuple[str, str | None], LabProxy] = {}
        self._lock = threading.Lock()
        self._spare: SpareProxy | None = None
        self._entered = False  # entered early by the plugin, then again by its fixture

    def start_spare(self) -> None:
        """Start a proxy whose profile is given later: the first `get` takes it, its start-up
        already done."""
        with self._lock:
            if self._spare is None:
                self._spare = launch_spare(self.resources.sup, "spare")

    def __enter__(self) -> ProxyPool:
        if not self._entered:
            self._entered = True
            self.resources.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._entered:
            self._entered = False
            self.resources.__exit__(*exc)

    def get(self, profile: str, target: str | None = None) -> LabProxy:
        # Read, not checked with the addons (a second of imports): mitmdump checks the options
        # as it starts, and one it refuses is a ComponentError with its log.
        loaded = profiles.described(profile)
        target = _loopback_http(target) if target else None
        if loaded.mode == "reverse" and target is None:
            raise BadInput(f"profile {profile!r} is a reverse proxy: give target='http://...'")
        key = (profile, target if loaded.mode == "reverse" else None)
        with self._lock:
            if key not in self._proxies:
                label = f"{profile}-{len(self._proxies) + 1}"
                spare, self._spare = self._spare, None
                endpoint: ProxyEndpoint = (
                    spare.claim(loaded, target)
                    if spare is not None
                    else launch_proxy(self.resources.sup, label, loaded, target, single=False)()
                )
                assert endpoint.events is not None
                self._proxies[key] = LabProxy(
                    profile,
                    loaded.mode,
                    endpoint.address,
                    endpoint.address if loaded.mode == "reverse" else (target or ""),
                    endpoint.events,
                )
            return self._proxies[key]
