"""Evidence files are JSON lines, written by other processes while the lab reads them."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete line of the file (none if it does not exist yet)."""
    tail = JsonLinesTail(path)
    return tail.read_new()


class JsonLinesTail:
    """Reads only what was appended since the last call; a line still being written waits for
    its newline. Safe to call from several threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._lock = threading.Lock()

    def read_new(self) -> list[dict[str, Any]]:
        with self._lock:
            try:
                with self.path.open("rb") as fh:
                    fh.seek(self._offset)
                    chunk = fh.read()
            except FileNotFoundError:
                return []
            complete = chunk[: chunk.rfind(b"\n") + 1]
            self._offset += len(complete)
        events = []
        for line in complete.splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a torn line from a process killed mid-write
        return events
