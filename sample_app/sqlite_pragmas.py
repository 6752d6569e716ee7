"""SQLite settings for many processes and threads sharing the broker and result files.

In SQLite's default rollback-journal mode a writer locks out every reader, and each commit waits
for the disk: with a matrix's dozens of concurrent tasks, the worker's result writes, the app's
status reads and the transport's polling queue behind one another ("database is locked"), and a
one-second task took ten. Write-ahead logging lets readers go on while one process writes, and
`synchronous=NORMAL` (safe with WAL: a power cut may lose the last commits, never corrupt the
file) skips the wait for the disk. The lab's files live and die with one run.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

BUSY_TIMEOUT_MS = 10_000  # wait for a lock this long before "database is locked"
RELOCK_WAIT_S = 0.005  # between two tries at a switch another connection refused at once


def _on_connect(dbapi_connection: Any, _record: Any) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        _switch_to_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _switch_to_wal(cursor: sqlite3.Cursor) -> None:
    """Switching takes a write lock: only when the file is not in WAL mode yet (it stays so).

    Two connections switching a new file at the same moment each hold the read lock the other
    needs gone, and SQLite refuses one of them at once, without its busy timeout, rather than
    deadlock: "database is locked" (13 of 100 new files, four processes at once; the web server
    and the worker start together on one). The other switch is the one this connection wanted,
    so it looks again until the file is in WAL mode or the busy timeout has passed.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                return
            cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(RELOCK_WAIT_S)


def use_wal_for_sqlite() -> None:
    """Every SQLite connection SQLAlchemy opens in this process gets the settings above
    (kombu's transport and Celery's database backend each build their own engine).
    SQLAlchemy is imported here, not above: a Redis-only app does not need it."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    if not event.contains(Engine, "connect", _on_connect):
        event.listen(Engine, "connect", _on_connect)
