"""What every page (and the CLI's table) shares: how an outcome and a poll's source are spelt
and coloured, the file names, the templates, and writing a page that must never fail a run."""

from __future__ import annotations

import base64
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jinja2

from lab.reports.redis import human_bytes, signed_bytes

REPORT_FILE = "report.html"
MATRIX_FILE = "matrix.html"
MATRIX_MARKDOWN = "matrix.md"
SCREENSHOT_FILE = "screenshot.png"
TEMPLATES = Path(__file__).with_name("templates")


@dataclass(frozen=True)
class OutcomeLook:
    short: str  # in a table cell (matrix.html, the CLI's table)
    word: str  # in matrix.md
    background: str
    text: str  # the text colour on that background
    terminal: str  # the CLI's colour (rich)


# Every place that shows an outcome (the pages, matrix.md, the CLI's table) spells and colours
# it from here; the colour is never the only sign (the text says the outcome too).
OUTCOMES: dict[str, OutcomeLook] = {
    "completed": OutcomeLook("ok", "completed", "#CDEBC5", "#14532D", "green"),
    "hung": OutcomeLook("HUNG", "HUNG", "#FFD58A", "#7A3E00", "yellow"),
    "errored": OutcomeLook("ERR", "ERRORED", "#F4B4AC", "#7F1D1D", "red"),
    "leaked": OutcomeLook("LEAK", "LEAKED", "#D9C6F0", "#4C1D95", "magenta"),
}
NOT_RUN = OutcomeLook("n/a", "n/a", "#F1F1F1", "#9A9A9A", "white")


def look_of(outcome: str) -> OutcomeLook:
    """An outcome the table does not know is spelt as it is, uncoloured."""
    return OUTCOMES.get(outcome) or OutcomeLook(
        outcome, outcome, NOT_RUN.background, NOT_RUN.text, NOT_RUN.terminal
    )


# What answered a poll: (label, colour, meaning). Colours from the Okabe-Ito palette (readable
# with the common colour-vision deficiencies); errors are also drawn as a different shape.
SOURCES: dict[str, tuple[str, str, str]] = {
    "origin": ("origin (fresh)", "#009E73", "the app itself answered this poll"),
    "cache": (
        "proxy cache hit (stale)",
        "#E69F00",
        "the proxy answered from its cache; the app never saw the poll",
    ),
    "revalidated": (
        "revalidated (304)",
        "#0072B2",
        "a kept copy was confirmed with a conditional request (304)",
    ),
    "error": ("error", "#C0392B", "no usable answer: an HTTP error or a failed request"),
    "other": (
        "other",
        "#8C8C8C",
        "answered by something the lab cannot see: a proxy without a log, or the browser's cache",
    ),
}


def write_page(path: Path, render: Callable[[], str]) -> Path | None:
    """Writes the page `render` draws. A page that cannot be drawn never fails the run: the
    reason goes to stderr and the verdicts stand (a page is a view of them)."""
    try:
        html = render()
    except Exception as exc:  # noqa: BLE001 - the report is a view; the verdict is the result
        print(
            f"report: no {path.name} in {path.parent}: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return None
    path.write_text(html, "utf-8")
    return path


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def relative_link(target: Path, base: Path) -> str:
    try:
        rel = target.relative_to(base)
    except ValueError:
        rel = Path(os.path.relpath(target.resolve(), base.resolve()))
    return rel.as_posix()


@cache
def templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        # The templates do not change during a run: no stat of each one per page (a matrix
        # draws hundreds of pages).
        auto_reload=False,
    )
    env.filters["secs"] = lambda t: "-" if t is None else f"{t:.3f}"
    env.filters["bytes"] = human_bytes
    env.filters["signed_bytes"] = signed_bytes
    return env
