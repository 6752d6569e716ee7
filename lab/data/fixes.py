"""Every fix the lab knows: the page's poll strategies (strategies.json) and the result backend
fixes (sample_app/result_fixes.py), under one set of names for --fix and the scenario files."""

from __future__ import annotations

from lab.data.errors import BadInput
from sample_app import result_fixes, strategies


def poll_fixes() -> list[str]:
    return strategies.names()


def names() -> list[str]:
    """Poll strategies first (the order of strategies.json), then the result backend fixes."""
    return [*strategies.names(), *result_fixes.names()]


def is_result_fix(fix: str) -> bool:
    return result_fixes.get(fix) is not None


def check(fix: str, what: str = "fix") -> None:
    if fix not in names():
        raise BadInput(f"unknown {what} {fix!r} (known: {', '.join(names())})")


def poll_strategy(fix: str) -> str:
    """How the page polls under this fix: a result backend fix polls like the story's page."""
    return "none" if is_result_fix(fix) else fix


def result_lifetime(fix: str, expires_s: float | None) -> float | None:
    """Seconds a stored result lives under this fix and the scenario's [results] expires_s;
    None: longer than any run (Celery's default of a day, or never)."""
    result_fix = result_fixes.get(fix)
    if result_fix is not None and "result_expires" in result_fix.celery:
        return float(result_fix.celery["result_expires"])
    return expires_s or None
