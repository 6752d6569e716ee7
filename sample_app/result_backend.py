"""Celery's database result backend, keeping its engine for the life of the process.

Celery's SessionManager caches the SQLAlchemy engine only in a forked pool child; in any other
process (a web server, a worker with `-P solo` or `-P threads`, a reader like the lab's) it
builds a new engine, with a new connection, for every single result read or write. A status
poll then costs a few milliseconds of connecting for a microsecond query. This subclass caches
the engine as a forked child would: the processes that use it never fork after start-up.
Celery selects it by dotted path: `result_backend = "sample_app.result_backend:
ReusingDatabaseBackend+sqlite:///..."` (by_url splits the class from the database URL at "+").
"""

from __future__ import annotations

from typing import Any

from celery.backends.database import DatabaseBackend

BACKEND = "sample_app.result_backend:ReusingDatabaseBackend"


class ReusingDatabaseBackend(DatabaseBackend):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # What Celery sets after a fork: cache the engine and session factory per database URL.
        self.session_manager.forked = True
