"""One audit cell: the user's flow behind one proxy listener, polled with one client strategy,
beside a direct poller of the same task (ground truth), and judged when it ends."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.clients.base import start_neighbours
from lab.clients.flow import FlowClient, build_client
from lab.data.flows import APP_POLLING, Flow
from lab.data.jsonl import JsonLinesTail
from lab.data.scenarios import Outcome
from lab.judging.audit import CellFacts, judge_cell
from lab.judging.evidence import Verdict
from lab.judging.proof import kept_asking
from lab.judging.tls_path import certificate_line
from lab.stacks.stack import ProxyEndpoint
from sample_app.strategies import StrategyBook

if TYPE_CHECKING:
    from lab.runs.audit_tls import AuditTls

WAIT_STEP = 0.05
START_ANSWER_TIMEOUT = 15.0  # for the page's start request to be answered through the proxy
DIRECT_RETRIES = 5  # the ground truth rides out a passing failure of the app


@dataclass(frozen=True)
class CellTls:
    """An HTTPS app's cell: what its two pollers trust, and how TLS met the cell's proxy."""

    proxied: ssl.SSLContext
    direct: ssl.SSLContext
    facts: Callable[[dict[str, str] | None], dict[str, Any]]  # the verdict's `tls`

    @classmethod
    def of(cls, tls: AuditTls, proxy: ProxyEndpoint) -> CellTls:
        mode = proxy.tls or tls.mode_for(proxy.mode)
        return cls(
            tls.context(mode), tls.context(None), lambda seen: tls.facts(mode, proxy.profile, seen)
        )


@dataclass
class CellRun:
    verdict: Verdict
    facts: CellFacts


def wait_for_outcome(
    flow: Flow,
    client: FlowClient,
    direct: Callable[[], FlowClient | None],
    check: Callable[[], None],
) -> Outcome | None:
    """completed/errored/leaked as soon as the page stops; hung a hang window after the direct
    path showed a final state, with the page still asking; None when there is no ground truth
    (the direct path never showed a final state within the task timeout, or failed)."""
    window = flow.polling.hang_window_s
    while True:
        check()
        if client.done:
            return Outcome(client.ui_state)
        now = time.time()
        truth = direct()
        if truth is not None and truth.done:
            if truth.ui_state not in ("completed", "errored") or truth.finished_at is None:
                return None
            due = truth.finished_at
            waited = now - due
            # The proof in polls, as for the lab's own cells, from the direct path's final state.
            asked = kept_asking(list(client.polls), due, window, flow.polling.interval_s)
            if (waited >= window and asked) or waited >= 3 * window:
                return Outcome.hung
        elif client.started_at and now - client.started_at > flow.polling.task_timeout_s:
            return None
        time.sleep(WAIT_STEP)


def run_audit_cell(
    flow: Flow,
    book: StrategyBook,
    strategy: str,
    proxy: ProxyEndpoint,
    proxy_record: JsonLinesTail | None,
    app_url: str,
    cell_dir: Path,
    check_alive: Callable[[], None],
    attempt: int = 1,
    tls: CellTls | None = None,
) -> CellRun:
    """One run of the cell. `proxy_record`: the listener's events file, read as it grows and
    kept from one run of the cell to the next, so each run reads only what came since the last
    (None: the proxy keeps no record). `tls`: the app is HTTPS."""
    cell_dir.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    base_url, proxy_url = proxy.client_route(app_url)

    def client_for(log: str, **more: Any) -> FlowClient:
        return build_client(
            flow, book, strategy, base_url=base_url, proxy_url=proxy_url,
            log_path=cell_dir / log, verify=tls.proxied if tls else None, **more,
        )  # fmt: skip

    neighbours = [client_for("client-neighbour-1.jsonl")] if flow.two_users else []
    client = client_for("client.jsonl")
    direct: FlowClient | None = None

    def ground_truth() -> FlowClient | None:
        nonlocal direct
        if direct is None and client.task_id is not None:
            direct = build_client(
                flow,
                book,
                APP_POLLING,
                base_url=app_url,
                proxy_url=None,
                log_path=cell_dir / "direct.jsonl",
                given_task_id=client.task_id,
                retries=DIRECT_RETRIES,
                verify=tls.direct if tls else None,
            )
            direct.start()
        return direct

    try:
        start_neighbours(neighbours, check_alive)
        client.start()
        deadline = time.monotonic() + START_ANSWER_TIMEOUT
        while client.task_id is None and not client.done and time.monotonic() < deadline:
            check_alive()
            time.sleep(0.005)
        observed = wait_for_outcome(flow, client, ground_truth, check_alive)
        decided_at = (client.finished_at if observed is not Outcome.hung else None) or time.time()
    finally:
        client.stop()
        for neighbour in neighbours:
            neighbour.stop()
        if direct is not None:
            direct.stop()
    facts = CellFacts(
        flow=flow.name,
        profile=proxy.profile,
        strategy=strategy,
        task_id=client.task_id,
        client_started_at=client.started_at,
        polls=list(client.polls),
        client_error=client.error,
        foreign_task_id=client.foreign_task_id,
        direct_final_at=direct.finished_at if direct and direct.done else None,
        direct_final_state=direct.last_state if direct and direct.done else None,
        direct_outcome=direct.ui_state if direct and direct.done else None,
        direct_error=direct.error if direct else None,
        proxy_events=listener_events(proxy_record, client.task_id),
        hang_window=flow.polling.hang_window_s,
        decided_at=decided_at,
    )
    verdict = judge_cell(
        facts,
        observed if observed is not None else Outcome.hung,
        seconds=time.monotonic() - began,
        attempts=attempt,
    )
    if observed is None and verdict.untested is None:
        verdict.untested = "no ground truth: the direct path showed no final state"
    if tls is not None:
        # Where TLS ended and whose certificate the poller accepted, as the https scenarios say.
        verdict.tls = tls.facts(client.tls_seen)
        if verdict.first_stale_answer is not None and client.tls_seen:
            verdict.first_stale_answer["tls_certificate"] = certificate_line(verdict.tls)
    verdict.run_dir = str(cell_dir)
    return CellRun(verdict, facts)


def listener_events(record: JsonLinesTail | None, task_id: str | None) -> list[dict[str, Any]]:
    """The listener's records of this task's status requests (its URL names the task), among
    those written since the cell's last run read it: the task is this run's own."""
    events = record.read_new() if record is not None else []
    if task_id is None:
        return []
    return [event for event in events if task_id in (event.get("url") or "")]
