"""The documentation stands on its own: it names no file that someone who cloned the repository
does not have (say, a `../shared/...` beside the author's checkout)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted(
    [
        *PROJECT_ROOT.glob("*.md"),
        *(PROJECT_ROOT / "docs").rglob("*.md"),
        *(PROJECT_ROOT / "examples").rglob("*.md"),
    ],
    key=lambda path: path.relative_to(PROJECT_ROOT),
)
LINK = re.compile(r"\]\(([^)\s]+)\)")  # a Markdown link's target
UP_PATH = re.compile(r"(?<![\w./])((?:\.\./)+[^\s`'\")\]]*)")  # ../ at the start of a path


def outside_references(doc: Path, text: str) -> list[str]:
    """Every path in `text` that leaves the repository, or a link to a file it does not have.

    A link's target is read from the document's folder, as a Markdown viewer reads it. Any other
    path is read as the docs write them, from the repository's root (where their commands are
    typed), so a `../` there always leaves it."""
    found = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:|#", target):  # a URL, mailto: or an anchor
            continue
        path = (doc.parent / target.split("#", 1)[0]).resolve()
        if not path.is_relative_to(PROJECT_ROOT) or not path.exists():
            found.append(target)
    without_links = LINK.sub("]", text)
    found += UP_PATH.findall(without_links)
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: str(path.relative_to(PROJECT_ROOT)))
def test_docs_name_only_files_in_the_repository(doc):
    assert outside_references(doc, doc.read_text("utf-8")) == []


def test_a_reference_outside_the_repository_is_found():
    doc = PROJECT_ROOT / "docs" / "guide.md"
    text = (
        "Tell the story in `../shared/seed/story.txt`; see [the notes](../../notes.md), "
        "[the README](../README.md), [missing](missing.md) and [the site](https://example.org/x)."
    )
    assert outside_references(doc, text) == [
        "../../notes.md",
        "missing.md",
        "../shared/seed/story.txt",
    ]
