"""Where the lab finds its data and keeps its runs; each can be moved by an environment variable."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def scenarios_dir() -> Path:
    return Path(os.environ.get("LAB_SCENARIOS_DIR", PROJECT_ROOT / "scenarios"))


def profiles_dir() -> Path:
    import proxies

    return Path(os.environ.get("LAB_PROFILES_DIR", Path(proxies.__file__).parent / "profiles"))


def runs_dir() -> Path:
    return Path(os.environ.get("LAB_RUNS_DIR", "runs"))


def relative(path: Path) -> str:
    """A path as a user would type it: relative to the current folder when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
