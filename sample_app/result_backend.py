"""Celery's database result backend, keeping its engine for the life of the process.

Celery's SessionManager caches the SQLAlchemy engine only in a forked pool child; in any other
process (a web server, a worker with `-P solo` or `-P threads`, a reader like the lab's) it
builds a new engine, with a new connection, for every single result read or write. A status
poll then costs a few milliseconds of connecting for a microsecond query. This subclass caches
the engine as a forked child would: the processes that use it never fork after start-up.

Celery also keeps one backend per thread (`app.backend`), and the web server starts a thread
per request: `send_task` in each start request built a backend anew, with its own engine, its
own connection and a CREATE TABLE check (a quarter of the app's CPU in a matrix). So every
backend of a process shares one session manager per database URL, and checks its tables once.
Celery selects it by dotted path: `result_backend = "sample_app.result_backend:
ReusingDatabaseBackend+sqlite:///..."` (by_url splits the class from the database URL at "+").
"""

from __future__ import annotations

import threading
from typing import Any

from celery.backends.database import DatabaseBackend
from celery.backends.database.session import SessionManager

BACKEND = "sample_app.result_backend:ReusingDatabaseBackend"


class ReusingDatabaseBackend(DatabaseBackend):
    # Per process, per database URL: what a forked pool child keeps for its life. A class
    # attribute because Celery builds the backend itself, from its dotted path, in each thread.
    _shared: dict[str, SessionManager] = {}
    _tables_checked: set[str] = set()
    _lock = threading.Lock()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.session_manager = self._shared_manager()

    def _shared_manager(self) -> SessionManager:
        with self._lock:
            manager = self._shared.setdefault(self.url, self.session_manager)
        # What Celery sets after a fork: cache the engine and session factory per database URL.
        manager.forked = True
        return manager

    def _create_tables(self) -> None:
        # Called from DatabaseBackend.__init__, before it returns to ours.
        self.session_manager = self._shared_manager()
        with self._lock:
            if self.url in self._tables_checked:
                return
        super()._create_tables()
        with self._lock:
            self._tables_checked.add(self.url)
