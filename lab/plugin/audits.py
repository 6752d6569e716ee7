"""The pytest plugin's audits: the user's app started from its flow once per test session, and
`lab audit` run from a test (lab/plugin/__init__.py wires them)."""

from __future__ import annotations

import contextlib
import ssl
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lab.data import flows
from lab.data.errors import BadInput
from lab.plugin.proxies import profiles_for
from lab.reports.audit_page import publish_audit, summary_lines
from lab.runs import audit as audit_run
from lab.runs.audit_tls import ForwardTls
from lab.runs.lifecycle import RunResources, new_run_dir
from lab.stacks import user_app


class AppPool:
    """The session's apps, each started from its flow's commands once, each in its own folder
    (its logs there), all stopped when the session ends."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._stack = contextlib.ExitStack()
        self._urls: dict[str, str] = {}
        self._cas: dict[str, Path] = {}  # an HTTPS app's CA, by flow
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
                made, verify, ca = None, None, ""
                if flow.https:  # its own CA, or the run's for {certfile}/{keyfile}
                    made = resources.tls() if flow.makes_certificate else None
                    self._cas[key] = flow.cacert or resources.tls().origin_ca
                    verify, ca = ssl.create_default_context(cafile=self._cas[key]), "its CA"
                launch = user_app.launch(resources.sup, flow, made, verify, ca)
                self._urls[key] = launch.ready().url
            return self._urls[key]

    def cacert_of(self, flow: flows.Flow) -> Path | None:
        """The CA of an HTTPS app url_of started (None: plain HTTP)."""
        return self._cas.get(flow.model_dump_json() + (flow.source or ""))


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
        tls: ForwardTls = "tunnel",
    ) -> Audit:
        loaded = as_flow(flow)
        if loaded.app.started_by_lab:
            running = {"app.url": apps.url_of(loaded)}
            if (ca := apps.cacert_of(loaded)) is not None:
                running["app.cacert"] = str(ca)
            loaded = flows.from_options(loaded, **running)
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
            forward_tls=tls,
        )
        return Audit(result, publish_audit(result))

    return audit
