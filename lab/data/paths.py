"""Where the lab finds its data and keeps its runs; each can be moved by an environment variable
(lab.data.settings)."""

from __future__ import annotations

from pathlib import Path

from lab.data import settings


def scenarios_dir() -> Path:
    return settings.current().scenarios_dir


def profiles_dir() -> Path:
    return settings.current().profiles_dir


def runs_dir() -> Path:
    return settings.current().runs_dir


def relative(path: Path) -> str:
    """A path as a user would type it: relative to the current folder when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
