"""The pages of an audit: every cell's report.html (the run page and its timeline, with the
direct poller as ground truth) and audit.html (the table of profiles x client strategies, the
app's own status answer with what the linter says of it, and the recommendation)."""

from __future__ import annotations

from pathlib import Path

from lab.judging.audit import CellFacts
from lab.judging.evidence import Evidence, Verdict
from lab.reports.look import (
    NOT_RUN,
    OUTCOMES,
    REPORT_FILE,
    look_of,
    relative_link,
    templates,
    write_page,
)
from lab.reports.run_page import write_run_report
from lab.runs.audit import NOT_JUDGED, AuditResult

AUDIT_PAGE = "audit.html"


def evidence_of(facts: CellFacts, verdict: Verdict) -> Evidence:
    """The cell's evidence in the shape the run page draws: the direct poller's final answer
    stands in for the worker's finish; the origin (the user's app) keeps no record."""
    return Evidence(
        task_id=facts.task_id,
        client_started_at=facts.client_started_at,
        task_started_at=None,
        task_finished_at=facts.direct_final_at,
        task_final_state=facts.direct_final_state,
        backend_state=None,
        origin_status_requests=[],
        proxy_status_requests=facts.proxy_events,
        polls=facts.polls,
        client_error=facts.client_error,
        ui_state=verdict.observed,
        uses_proxy=True,
        proxy_visible=True,
        foreign_task_id=facts.foreign_task_id,
        decided_at=facts.decided_at,
    )


def publish_audit(result: AuditResult) -> Path | None:
    """Each cell's report.html, then audit.html linking them; audit.html's path (None when it
    could not be drawn: a page never fails the audit)."""
    for cell in result.cells.values():
        if cell.verdict is None or cell.facts is None:
            continue
        write_run_report(
            Path(cell.verdict.run_dir), cell.verdict, evidence=evidence_of(cell.facts, cell.verdict)
        )
    path = result.run_dir / AUDIT_PAGE
    return write_page(path, lambda: render_audit(result))


def render_audit(result: AuditResult) -> str:
    rows = []
    for profile in result.profiles:
        cells = []
        for strategy in result.strategies:
            cell = result.cells[(profile, strategy)]
            look = NOT_RUN if cell.not_applicable else look_of(cell.outcome)
            link = None
            if cell.verdict is not None:
                link = relative_link(Path(cell.verdict.run_dir) / REPORT_FILE, result.run_dir)
            cells.append(
                {
                    "outcome": cell.outcome,
                    "short": look.short if cell.outcome in OUTCOMES else cell.outcome,
                    "look": look,
                    "link": link,
                    "title": (
                        cell.not_applicable
                        or (cell.verdict.untested if cell.verdict and cell.verdict.untested else "")
                        or (cell.verdict.sentence if cell.verdict else "")
                    ),
                    "not_judged": cell.outcome == NOT_JUDGED,
                }
            )
        rows.append({"profile": profile, "cells": cells})
    return (
        templates()
        .get_template("audit_report.html.j2")
        .render(
            result=result,
            rows=rows,
            failing=failing_reasons(result),
            sample=result.status_sample,
            outcomes=OUTCOMES,
            folder=result.run_dir.name,
            lint=result.lint,
            freshness=result.freshness,
            recommendation=result.recommendation.lines() if result.recommendation else [],
        )
    )


def summary_lines(result: AuditResult) -> list[str]:
    """The audit as plain text: the table (profiles x client strategies), each failing cell's
    reason, and the headline (what a test's assertion message shows)."""
    width = max([len("profile"), *(len(p) for p in result.profiles)]) + 2
    columns = [max(len(s), 10) + 2 for s in result.strategies]
    lines = [
        "profile".ljust(width)
        + "".join(s.ljust(w) for s, w in zip(result.strategies, columns, strict=True))
    ]
    for profile in result.profiles:
        row = profile.ljust(width)
        for strategy, w in zip(result.strategies, columns, strict=True):
            row += result.cells[(profile, strategy)].outcome.ljust(w)
        lines.append(row.rstrip())
    lines += [f"- {reason}" for reason in failing_reasons(result)]
    if not result.ok and result.recommendation is not None:
        lines += result.recommendation.lines()
    lines.append(f"audit: {result.headline()} ({result.seconds:.1f} s)")
    return lines


def failing_reasons(result: AuditResult) -> list[str]:
    reasons = []
    for cell in result.failing():
        if cell.verdict is None:
            reasons.append(f"{cell.profile} ({cell.strategy}): {cell.outcome}")
        elif cell.verdict.untested:
            reasons.append(f"{cell.profile} ({cell.strategy}): not judged: {cell.verdict.untested}")
        else:
            reasons.append(cell.verdict.sentence)
    return reasons
