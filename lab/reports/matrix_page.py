"""The matrix's pages: matrix.html (every cell, linked to its report.html) and matrix.md,
both drawn from the verdicts of a finished matrix."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from lab.data.scenarios import Scenario
from lab.judging.evidence import Verdict
from lab.reports.look import (
    MATRIX_FILE,
    MATRIX_MARKDOWN,
    NOT_RUN,
    OUTCOMES,
    REPORT_FILE,
    look_of,
    relative_link,
    templates,
    write_page,
)
from lab.runs.matrix import MATRIX_JSON, MatrixResult, defeats, survivors


def render_matrix_report(result: MatrixResult, scenarios: Iterable[Scenario] = ()) -> str:
    last = result.last
    root = Path(result.run_dir)
    known = {sc.name: sc for sc in scenarios}
    flips = result.flips
    rows = []
    for name in result.scenarios:
        proxy = next((v.proxy for (s, _), v in last.items() if s == name), None)
        if proxy is None and name in known:
            proxy = known[name].proxy
        cells = []
        for fix in result.fixes:
            verdict = last.get((name, fix))
            if verdict is None:
                cells.append(None)
                continue
            look = look_of(verdict.observed)
            cells.append(
                {
                    "id": f"{name}/{fix}",
                    "text": look.short,
                    "background": look.background,
                    "colour": look.text,
                    "observed": verdict.observed,
                    "expected": verdict.expected,
                    "expected_text": look_of(verdict.expected).short,
                    "matched": verdict.matched,
                    "retried": verdict.retried,
                    "unjudged": verdict.inconclusive,
                    "flips": flips.get((name, fix)),
                    "href": relative_link(Path(verdict.run_dir) / REPORT_FILE, root),
                    "title": verdict.sentence,
                }
            )
        summary = known[name].summary if name in known else ""
        rows.append({"name": name, "proxy": proxy or "?", "summary": summary, "cells": cells})
    beaten = defeats(result)
    mismatches = [(n, v) for n, r in enumerate(result.rounds, 1) for v in r.values() if v.wrong]
    unjudged = [
        (n, v) for n, r in enumerate(result.rounds, 1) for v in r.values() if v.inconclusive
    ]
    return (
        templates()
        .get_template("matrix_report.html.j2")
        .render(
            result=result,
            rows=rows,
            outcomes=OUTCOMES,
            not_run=NOT_RUN,
            cells=len(last),
            mismatches=mismatches,
            unjudged=unjudged,
            ok=result.ok,
            headline=result.headline(),
            round_counts=result.round_counts(),
            defeats=beaten,
            survivors=survivors(result),
            flips=flips,
            files=[f for f in (MATRIX_JSON, MATRIX_MARKDOWN) if (root / f).exists()],
            folder=root.name,
        )
    )


def write_matrix_report(result: MatrixResult, scenarios: Iterable[Scenario] = ()) -> Path | None:
    """Writes matrix.html beside matrix.json; like every page, never fails the matrix."""
    root = Path(result.run_dir)
    return write_page(root / MATRIX_FILE, lambda: render_matrix_report(result, scenarios))


def write_markdown(result: MatrixResult) -> Path:
    path = Path(result.run_dir) / MATRIX_MARKDOWN
    path.write_text(markdown(result), "utf-8")
    return path


def cell_text(verdict: Verdict | None) -> str:
    if verdict is None:
        return "n/a"
    text = look_of(verdict.observed).word
    return text if verdict.matched else f"{text} (!= {verdict.expected})"


def markdown(result: MatrixResult) -> str:
    """matrix.md: the matrix's table and which proxies defeat which fix, in plain text."""
    last = result.last
    lines = [
        f"# Matrix ({len(last)} cells, {result.seconds:.1f} s)",
        "",
        f"**{result.headline().capitalize()}.**",
        "",
        "Rows are scenarios (their proxy profile in brackets), columns are fixes. "
        "A cell reads `observed`; a mismatch reads `observed (!= expected)`.",
        "",
        "| scenario | " + " | ".join(result.fixes) + " |",
        "| --- | " + " | ".join("---" for _ in result.fixes) + " |",
    ]
    for name in result.scenarios:
        proxy = next((v.proxy for (s, _), v in last.items() if s == name), "")
        cells = [cell_text(last.get((name, fix))) for fix in result.fixes]
        lines.append(f"| {name} [{proxy}] | " + " | ".join(cells) + " |")
    lines += ["", "## Which proxies defeat which fix", ""]
    for fix, lost in defeats(result).items():
        lines.append(f"- `{fix}`: " + (", ".join(lost) if lost else "survives every proxy profile"))
    if result.flips:
        lines += ["", "## Cells that changed between rounds", ""]
        lines += [f"- {s} / {f}: {' -> '.join(o)}" for (s, f), o in result.flips.items()]
    return "\n".join(lines) + "\n"
