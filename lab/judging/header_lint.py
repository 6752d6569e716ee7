"""An HTTP linter's reading of a status answer (httplint, the library extracted from REDbot):
its notes as plain text, caching first, and one line on what a shared cache may do with it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import unescape
from http import HTTPStatus
from typing import Literal

from httplint import HttpRequestLinter, HttpResponseLinter
from httplint import cache as rules
from httplint.note import Note, categories

Level = Literal["good", "info", "warning", "bad"]
# Noise for a JSON status answer, dropped: "the Content-Length is correct" is a framing check
# that passed (the answer was read whole) and says nothing to someone fixing caching. A failed
# one (CL_INCORRECT) is kept. The clock checks (DATE_CORRECT/INCORRECT) never arise: the
# answer is linted without a receive time, since an app on loopback shares the lab's clock.
NOISE = frozenset({"CL_CORRECT"})


@dataclass(frozen=True)
class HeaderNote:
    level: Level
    category: str  # httplint's category, e.g. "Caching"
    summary: str  # plain text
    detail: str  # plain text (httplint renders it as HTML)
    code: str  # httplint's note class, e.g. "FRESHNESS_HEURISTIC": stable across wordings


def lint_response(
    status: int,
    headers: list[tuple[str, str]],
    body: bytes,
    *,
    method: str = "GET",
    url: str = "",
) -> list[HeaderNote]:
    """httplint's notes on one answer: the caching notes first, then the others, minus NOISE."""
    response, request = _lint(status, headers, body, method, url)
    # Of the stand-in request's notes only the caching ones are about the answer (a POST's
    # answer cannot be stored); "no User-Agent" would be about the lint's own request.
    notes = [*response.notes, *(n for n in request.notes if n.category == categories.CACHING)]
    flat = [flat_note for note in notes for flat_note in (note, *note.subnotes)]
    flat.sort(key=lambda note: note.category != categories.CACHING)  # stable: keeps the order
    return [_header_note(note) for note in flat if type(note).__name__ not in NOISE]


# What a shared cache may do, by httplint's caching notes: the first that applies.
_FRESHNESS = (
    ((rules.STORE_NO_STORE,), "Cache-Control: no-store: no cache may keep it"),
    (
        (rules.STORE_UNSTORABLE,),
        "no explicit freshness and status {status} is not cacheable by default: "
        "no cache may keep it",
    ),
    (
        (rules.STORE_PRIVATE_CC,),
        "Cache-Control: private: no shared cache may keep it (the browser's own cache may)",
    ),
    (
        (rules.FRESHNESS_NO_CACHE, rules.FRESHNESS_NO_CACHE_NO_VALIDATOR),
        "Cache-Control: no-cache with {validator}: a shared cache may keep it but must {ask} "
        "before every reuse",
    ),
    (
        (rules.FRESHNESS_FRESH, rules.FRESHNESS_SHARED_PRIVATE),
        "explicitly fresh for {lifetime:g} s: a shared cache may serve it unchanged that long "
        "without asking the app",
    ),
    (
        (rules.FRESHNESS_STALE_ALREADY, rules.FRESHNESS_NONE),
        "stale at once, with {validator}: a shared cache may keep it but must ask the app "
        "before reusing it",
    ),
    (
        (rules.FRESHNESS_HEURISTIC,),
        "no explicit freshness and {validator}: a shared cache may apply heuristic freshness "
        "and serve it unchanged",
    ),
)


def freshness_summary(headers: list[tuple[str, str]], *, status: int = 200) -> str:
    """One line: what a shared cache following RFC 9111 may do with this answer to a GET,
    read from httplint's caching notes."""
    response, _ = _lint(status, headers, b"", "GET", "")
    caching = response.caching
    if "*" in caching.vary_value:
        return "Vary: *: no cache can reuse it for another request"
    has_validator = caching.etag_value is not None or caching.lm_value is not None
    facts = {
        "status": status,
        "validator": "a validator" if has_validator else "no validator",
        "ask": "revalidate it (a 304 when unchanged)" if has_validator else "fetch it again",
        "lifetime": caching.freshness_lifetime_shared - caching.age,
    }
    found = {type(note) for note in response.notes}
    for notes, line in _FRESHNESS:
        if found.intersection(notes):
            return line.format(**facts)
    return "httplint found nothing to say about caching it"


def _lint(
    status: int, headers: list[tuple[str, str]], body: bytes, method: str, url: str
) -> tuple[HttpResponseLinter, HttpRequestLinter]:
    request = HttpRequestLinter()
    request.process_request_topline(method.encode("ascii"), (url or "/").encode(), b"1.1")
    request.process_headers([])
    request.finish_content(True)
    response = HttpResponseLinter()
    response.request = request  # so the cache rules see the method (a POST answer is not stored)
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:  # a status code Python does not name: the linter will say so
        phrase = ""
    response.process_response_topline(b"1.1", str(status).encode("ascii"), phrase.encode())
    response.process_headers([(_wire(name), _wire(value)) for name, value in headers])
    response.feed_content(body)
    response.finish_content(True)
    return response, request


def _wire(text: str) -> bytes:
    """A header as it went over the wire: HTTP clients decode header bytes as Latin-1."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


def _header_note(note: Note) -> HeaderNote:
    return HeaderNote(
        level=note.level.value,
        category=str(note.category.value),
        summary=" ".join(note.summary.split()),
        detail=_plain_text(str(note.detail)),
        code=type(note).__name__,
    )


def _plain_text(html: str) -> str:
    """httplint's details are HTML rendered from Markdown: paragraphs, lists, code and links.
    Each paragraph or list item becomes one line."""
    block_break = "\x00"  # never in httplint's text; the source's own line breaks are not breaks
    text = re.sub(r"<li\b[^>]*>", f"{block_break}- ", html)
    text = re.sub(r"</?(?:p|ul|ol|pre|br|h[1-6])\b[^>]*>", block_break, text)
    text = unescape(re.sub(r"<[^>]+>", "", text))
    lines = (" ".join(block.split()) for block in text.split(block_break))
    return "\n".join(line for line in lines if line)
