"""`lab audit FLOW.toml --dispatch URL`: the audit's profiles run by `lab agent`s that have the
flow file themselves (`lab agent URL --flow FLOW.toml`).

A message names the flow by its file name and the sha256 of its content, the profile and the
client strategies; an agent without that exact file rejects it (one line) and keeps serving:
a message never carries the app's commands. The unit of work is one profile, all the client
strategies asked for: `run_audit` restricted to it, so each unit starts the app once (a few
seconds: the app's start, then its trial) and the units of several profiles run at once on
several agents. The coordinator merges the units into a local run's AuditResult: the same
audit.json, report, table and exit code. Each cell's folder (with its report.html, drawn by the
agent) comes back to `cells/PROFILE--STRATEGY` as in a local run; the rest of a unit's folder
(its trial, the app's and proxies' logs) to `agent-PROFILE/`.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.data import profiles
from lab.data.errors import BadInput, ComponentError
from lab.data.flows import AUDIT_STRATEGIES, Flow
from lab.judging.evidence import Verdict
from lab.judging.header_lint import HeaderNote
from lab.runs.agent_protocol import AuditMessage, Failed, Rejected, one_line
from lab.runs.audit import AUDIT_JSON, AuditCell, AuditResult, StatusSample
from lab.runs.dispatch import (
    DEADLINE_SLACK_S,
    mend_results,
    rebase_json,
    take_evidence,
)
from lab.runs.dispatch_units import ask_each, coordinating
from lab.runs.lifecycle import Progress
from lab.runs.repro import write_json

log = logging.getLogger("lab.agent")
# One profile's cells: the app's start, its trial, and each cell's task and hang window, run
# again up to three times, with room for a loaded host.
AUDIT_DEADLINE_S = 600.0


@dataclass(frozen=True)
class AgentFlow:
    """A flow file an agent serves audits of (`lab agent --flow FILE`)."""

    name: str  # the file's name: audit.toml
    sha256: str  # of its content, when the agent started
    flow: Flow


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_flow(path: Path) -> AgentFlow:
    """The flow file, checked as `lab audit FILE` checks it (BadInput naming the problem)."""
    from lab.data import flows

    return AgentFlow(path.name, sha256_of(path), flows.load(path))


# --- on the agent ----------------------------------------------------------------------------


def check_audit(message: AuditMessage, have: list[AgentFlow]) -> Flow:
    """The agent's own flow the message names (same file name, same sha256), if its profiles
    and strategies are ones it knows; Rejected with a one-line reason otherwise."""
    same_name = [found for found in have if found.name == message.flow]
    if not same_name:
        having = ", ".join(sorted({found.name for found in have})) or "none (lab agent --flow)"
        raise Rejected(f"flow {message.flow!r}: this agent does not have it (it has {having})")
    chosen = next((found for found in same_name if found.sha256 == message.sha256), None)
    if chosen is None:
        theirs = ", ".join(found.sha256[:12] for found in same_name)
        raise Rejected(
            f"flow {message.flow!r}: sha256 {message.sha256[:12]}... is not this agent's "
            f"({theirs}...): a different version of the file"
        )
    known = set(profiles.names())
    for profile in message.profiles:
        if profile not in known:
            raise Rejected(f"profile {profile!r}: this agent does not have it")
    for strategy in message.strategies:
        if strategy not in AUDIT_STRATEGIES:
            raise Rejected(
                f"client strategy {strategy!r}: not one of {', '.join(AUDIT_STRATEGIES)}"
            )
    return chosen.flow


def serve_audit(
    message: AuditMessage,
    folder: Path,
    *,
    have: list[AgentFlow],
    publish: Callable[[AuditResult], object],
) -> tuple[dict[str, Any], Path]:
    """The profiles' audit run here, its reports drawn (`publish`: lab.reports.audit_page's,
    given by `lab agent`): (the result for the coordinator, the run folder to hand over).
    Failed (one line) if the run ended in error."""
    from lab.runs.audit import run_audit

    flow = check_audit(message, have)

    def say(line: str) -> None:
        log.info("audit %s %s: %s", flow.name, ",".join(message.profiles), line)

    try:
        result = run_audit(
            flow,
            list(message.profiles),
            list(message.strategies),
            folder,
            say,
            concurrency=message.concurrency,
            forward_tls=message.forward_tls,
        )
    except (BadInput, ComponentError) as exc:
        raise Failed(f"lab audit {message.flow}: {one_line(exc)}") from None
    publish(result)
    return result.to_json(), result.run_dir


# --- on the coordinator ----------------------------------------------------------------------


def run_dispatched_audit(
    flow_file: Path,
    flow: Flow,
    profile_names: list[str],
    strategy_names: list[str],
    runs_root: Path,
    progress: Progress,
    *,
    dispatch_url: str,
    evidence_dir: Path | None = None,
    deadline: float | None = None,
    concurrency: int = 32,
    forward_tls: str = "tunnel",
) -> AuditResult:
    """`run_audit`'s result, one profile's cells per agent task."""
    began = time.monotonic()
    sha256 = sha256_of(flow_file)
    with coordinating(
        dispatch_url,
        runs_root,
        f"audit-{flow.name}",
        progress,
        evidence_dir=evidence_dir,
        deadline=deadline,
        command="lab audit --dispatch",
    ) as dispatcher:
        run_dir = dispatcher.run_dir
        allowed = deadline or AUDIT_DEADLINE_S + DEADLINE_SLACK_S
        progress(
            f"sending {len(profile_names)} profiles of {flow_file.name} (sha256 {sha256[:12]}...) "
            f"to the agents on {dispatch_url}"
        )

        def one(profile: str) -> dict[str, Any]:
            message = AuditMessage(
                kind="audit",
                run=dispatcher.token,
                flow=flow_file.name,
                sha256=sha256,
                profiles=[profile],
                strategies=strategy_names,
                forward_tls=forward_tls,  # type: ignore[arg-type]
                concurrency=concurrency,
                evidence_dir=str(evidence_dir) if evidence_dir else None,
            )
            payload = dispatcher.ask(message, allowed)
            unit = run_dir / f"agent-{profile}"
            take_evidence(payload.get("evidence") or {}, unit)
            agent_dir = payload.get("agent_dir", "")
            if (unit / "cells").is_dir():
                for cell in sorted((unit / "cells").iterdir()):
                    shutil.move(str(cell), run_dir / "cells" / cell.name)
                (unit / "cells").rmdir()
            mend_results(run_dir / "cells")
            rebase_json(unit, agent_dir, unit)
            (unit / "audit.html").unlink(missing_ok=True)  # its links were to the cells moved out
            found = payload["audit"]
            for cell in found["cells"]:
                if cell.get("verdict") and agent_dir:
                    where = str(cell["verdict"].get("run_dir", ""))
                    cell["verdict"]["run_dir"] = where.replace(agent_dir, str(run_dir), 1)
            progress(f"{profile}: {found['headline']} (by {payload.get('agent')})")
            return found

        (run_dir / "cells").mkdir()
        try:
            units = ask_each(dispatcher, profile_names, one)
        except (ComponentError, BadInput) as exc:
            exc.run_dir = str(run_dir)  # type: ignore[attr-defined]
            raise
    result = merge(flow, run_dir, profile_names, strategy_names, units)
    result.seconds = time.monotonic() - began
    write_json(run_dir / AUDIT_JSON, result.to_json())
    return result


def merge(
    flow: Flow,
    run_dir: Path,
    profile_names: list[str],
    strategy_names: list[str],
    units: list[dict[str, Any]],
) -> AuditResult:
    """The units' audit.json (one profile each, in `profile_names` order) as one AuditResult:
    the app's status answer, its lint and the app URL are the first unit's (every unit asked
    the same app), the recommendation is made for all the profiles."""
    from lab.judging.advice import recommend

    first = units[0]
    result = AuditResult(flow, run_dir, first["app_url"], profile_names, strategy_names)
    if answer := first.get("status_answer"):
        result.status_sample = StatusSample(
            answer["url"],
            answer["status"],
            [(name, value) for name, value in answer["headers"]],
            str(answer["body"]).encode("utf-8"),
        )
        result.lint = [HeaderNote(**note) for note in answer.get("lint", [])]
        result.freshness = answer.get("freshness", "")
    if first.get("tls"):
        result.tls = dict(first["tls"])
        result.tls["profiles"] = {
            name: tls for unit in units for name, tls in unit["tls"]["profiles"].items()
        }
    for unit in units:
        for cell in unit["cells"]:
            verdict = Verdict.from_json(cell["verdict"]) if cell.get("verdict") else None
            result.cells[(cell["profile"], cell["strategy"])] = AuditCell(
                cell["profile"], cell["strategy"], verdict, None, cell.get("not_applicable")
            )
    result.startup_seconds = max(float(unit.get("startup_seconds", 0.0)) for unit in units)
    result.recommendation = recommend(profile_names)
    return result
