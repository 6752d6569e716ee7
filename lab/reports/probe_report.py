"""`lab probe`'s words: the per-strategy table's rows, and the short plain-text block a user
pastes into a bug report (what was probed, through which proxy, what froze and what got
through, the signs on the path, the closest lab profile, the summary)."""

from __future__ import annotations

import time

from lab.judging.probe import CACHED, ERROR, FRESH, StrategyVerdict
from lab.judging.probe_result import PLAIN_LIMITS, ProbeResult

VERDICT_STYLE = {CACHED: "bold red", FRESH: "green", ERROR: "bold yellow"}
TABLE_COLUMNS = ("strategy", "verdict", "counts", "frozen", "Age", "X-Cache", "notes")


def verdict_row(verdict: StrategyVerdict) -> list[str]:
    """One strategy as the table shows it (plain text; the CLI colours the verdict)."""
    e = verdict.evidence
    counts = " ".join("x" if c is None else str(c) for c in verdict.counts)
    notes = []
    if verdict.error:
        notes.append(verdict.error)
    elif verdict.failed:
        notes.append(f"{verdict.failed} failed, retried")
    if verdict.switched_after is not None:
        notes.append(
            f"switched to a path nonce after {verdict.switched_after} polls "
            f"(frozen {e.frozen_before_switch_s or 0:.1f} s before)"
        )
    if e.other_probe:
        notes.append("an answer about another probe id")
    if e.missing:
        notes.append("missing " + ", ".join(e.missing))
    if e.changed:
        notes.append("changed " + ", ".join(f"{k}: {' | '.join(v)}" for k, v in e.changed.items()))
    if e.date_lag_s is not None and e.date_lag_s >= 2:
        notes.append(f"Date {e.date_lag_s:.0f} s old")
    return [
        verdict.strategy,
        verdict.verdict,
        counts,
        f"{e.frozen_s:.1f} s" if e.frozen_s else "-",
        str(e.age) if e.age is not None else "-",
        " | ".join(e.x_cache) or "-",
        "; ".join(notes),
    ]


def match_line(result: ProbeResult) -> str:
    best = result.best
    if not best:
        return "closest lab profile: none to compare with"
    first = best[0]
    names = ", ".join(m.profile for m in best)
    line = f"closest lab profile: {names} ({first.agree} of {first.of} strategies agree"
    if len(best) > 1:
        line += f"; {len(best)} profiles tie"
    line += ")"
    if first.differ:
        line += "; differs on " + ", ".join(
            f"{s} (profile {p}, seen {o})" for s, (p, o) in first.differ.items()
        )
    return line


def report_block(result: ProbeResult, now: float | None = None) -> list[str]:
    """The text to paste into a bug report, between its own first and last lines."""
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now or time.time()))
    proxy = f"{result.proxy} ({result.proxy_source})" if result.proxy else result.proxy_source
    lines = [
        "--- lab probe report (proxy-cache-lab) ---",
        f"url:     {result.url}",
        f"proxy:   {proxy}",
        f"when:    {when}",
    ]
    if result.plain is not None:
        lines.append(f"check:   two requests {result.plain.gap_s:.1f} s apart (plain URL)")
        for name, (first, second) in result.plain.seen.items():
            if first is not None or second is not None:
                lines.append(f"  {name}: {first} -> {second}")
        lines.append(f"limits:  {PLAIN_LIMITS}")
    else:
        lines.append(f"polls:   {result.polls} per strategy, {result.interval:g} s apart")
        for word in (CACHED, FRESH, ERROR):
            chosen = [v for v in result.verdicts.values() if v.verdict == word]
            if chosen:
                lines.append(f"{word + ':':<8} " + ", ".join(_short(v) for v in chosen))
        lines.append(match_line(result).replace("closest lab profile: ", "like:    ", 1))
    if result.signs.any:
        lines.append("path:    " + "; ".join(result.signs.lines()))
    if result.tls is not None:
        lines += [f"tls:     {line}" for line in result.tls.lines()[1:]]
    lines += [f"summary: {result.summary}", "--- end of lab probe report ---"]
    return lines


def _short(verdict: StrategyVerdict) -> str:
    e = verdict.evidence
    if verdict.verdict == CACHED:
        facts = [f"frozen {e.frozen_s:.1f} s"]
        if e.age is not None:
            facts.append(f"Age {e.age}")
        if e.x_cache:
            facts.append(f"X-Cache {e.x_cache[-1]}")
        return f"{verdict.strategy} ({', '.join(facts)})"
    if verdict.verdict == ERROR:
        return f"{verdict.strategy} ({verdict.error})"
    return verdict.strategy
