"""Append-only JSON-lines evidence files, safe to write from several threads."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, TextIO


class EventLog:
    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        # Opened at the first event and kept: an open and a close per line was a tenth of the
        # app's CPU in a matrix. Line-buffered, so every line is in the file when written (the
        # lab reads these files as they grow).
        self._file: TextIO | None = None

    def write(self, event: str, **fields: Any) -> None:
        if self.path is None:
            return
        line = json.dumps({"time": time.time(), "event": event, **fields}, default=str)
        with self._lock:
            if self._file is None:
                self._file = self.path.open("a", encoding="utf-8", buffering=1)
            self._file.write(line + "\n")


def write_json_atomically(path: str | Path, data: dict[str, Any]) -> None:
    """A launcher polls for this file: it must never see half of it."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data), "utf-8")
    tmp.replace(path)
