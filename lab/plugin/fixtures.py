"""What the pytest plugin's fixtures hand out: proxies in front of the user's app, the user's
app started from its flow, and audits run from a test (lab/plugin/__init__.py wires them)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from lab.data import flows, profiles
from lab.data.errors import BadInput
from lab.data.jsonl import read_jsonl
from lab.reports.audit_page import publish_audit, summary_lines
from lab.runs import audit as audit_run
from lab.runs.lifecycle import RunResources, new_run_dir
from lab.stacks import user_app
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
            chosen += audit_run.deployment_profiles()
        else:
            profiles.load(name)
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

    def __enter__(self) -> ProxyPool:
        self.resources.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.resources.__exit__(*exc)

    def get(self, profile: str, target: str | None = None) -> LabProxy:
        loaded = profiles.load(profile)
        target = _loopback_http(target) if target else None
        if loaded.mode == "reverse" and target is None:
            raise BadInput(f"profile {profile!r} is a reverse proxy: give target='http://...'")
        key = (profile, target if loaded.mode == "reverse" else None)
        with self._lock:
            if key not in self._proxies:
                label = f"{profile}-{len(self._proxies) + 1}"
                ready = launch_proxy(self.resources.sup, label, loaded, target, single=False)
                endpoint: ProxyEndpoint = ready()
                assert endpoint.events is not None
                self._proxies[key] = LabProxy(
                    profile,
                    loaded.mode,
                    endpoint.address,
                    endpoint.address if loaded.mode == "reverse" else (target or ""),
                    endpoint.events,
                )
            return self._proxies[key]


class AppPool:
    """The session's apps, each started from its flow's commands once, each in its own folder
    (its logs there), all stopped when the session ends."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._stack = contextlib.ExitStack()
        self._urls: dict[str, str] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> AppPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.__exit__(*exc)

    def url_of(self, flow: flows.Flow | str | Path) -> str:
        flow = as_flow(flow)
        if not flow.app.started_by_lab:
            assert flow.app.url is not None
            return flow.app.url
        key = flow.model_dump_json() + (flow.source or "")
        with self._lock:
            if key not in self._urls:
                resources = RunResources(new_run_dir(self.folder, f"app-{flow.name}"))
                self._stack.enter_context(resources)
                self._urls[key] = user_app.launch(resources.sup, flow)().url
            return self._urls[key]


def as_flow(flow: flows.Flow | str | Path) -> flows.Flow:
    return flow if isinstance(flow, flows.Flow) else flows.load(Path(flow))


class Audit:
    """An audit's result in a test: `.ok`, `.outcome(profile, strategy)`, and
    `.assert_completed()`, which fails with the table and each failing cell's reason."""

    def __init__(self, result: audit_run.AuditResult, page: Path | None) -> None:
        self.result = result
        self.page = page

    @property
    def ok(self) -> bool:
        return self.result.ok

    def outcome(self, profile: str, strategy: str = audit_run.STRATEGIES[0]) -> str:
        return self.result.cells[(profile, strategy)].outcome

    def __str__(self) -> str:
        lines = summary_lines(self.result)
        if self.page is not None:
            lines.append(f"report: {self.page}")
        return "\n".join(lines)

    def assert_completed(self) -> None:
        __tracebackhide__ = True
        if not self.ok:
            raise AssertionError(f"the polling did not survive every proxy:\n{self}")


def make_auditor(apps: AppPool, folder: Path) -> Callable[..., Audit]:
    def audit(
        flow: flows.Flow | str | Path,
        profiles: Sequence[str] | None = None,
        client_fixes: Sequence[str] = (),
        concurrency: int = audit_run.DEFAULT_CONCURRENCY,
    ) -> Audit:
        loaded = as_flow(flow)
        if loaded.app.started_by_lab:
            loaded = flows.from_options(loaded, **{"app.url": apps.url_of(loaded)})
        chosen = profiles_for(profiles, None)
        for fix in client_fixes:
            if fix not in audit_run.STRATEGIES[1:]:
                raise BadInput(f"client fix {fix!r}: not one of {audit_run.STRATEGIES[1:]}")
        result = audit_run.run_audit(
            loaded,
            chosen,
            [audit_run.STRATEGIES[0], *client_fixes],
            folder,
            progress=lambda _line: None,
            concurrency=concurrency,
        )
        return Audit(result, publish_audit(result))

    return audit
