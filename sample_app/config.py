"""Configuration passed in to the app factory, the Celery factory and the two entry points.

The lab writes one JSON file per run and hands its path to the web server and the worker, so both
processes see the same broker, result backend and evidence files.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FAST_SQLITE_TRANSPORT = "sample_app.broker_transport:FastSQLAlchemyTransport"
REUSING_DATABASE_BACKEND = "sample_app.result_backend:ReusingDatabaseBackend"


def sqlite_celery_config(data_dir: Path) -> dict[str, Any]:
    """The story's set-up: the database as message store, here SQLite through SQLAlchemy."""
    data_dir = data_dir.resolve()
    return {
        "broker_url": f"sqlite:///{data_dir / 'broker.db'}",
        "broker_transport": FAST_SQLITE_TRANSPORT,
        # Celery's database backend, keeping its engine (sample_app/result_backend.py).
        "result_backend": f"{REUSING_DATABASE_BACKEND}+sqlite:///{data_dir / 'results.db'}",
        "broker_connection_retry_on_startup": True,
        # The status endpoint reads results: they must be stored (Flask's own Celery
        # pattern sets task_ignore_result=True, which leaves every poll PENDING).
        "task_ignore_result": False,
        "worker_hijack_root_logger": False,
    }


@dataclass
class AppConfig:
    celery: dict[str, Any]
    poll_interval_ms: int = 250
    default_fix: str = "none"
    default_duration: float = 1.0
    host: str = "127.0.0.1"
    port: int = 0
    # Evidence files, written when set: every request the origin answered, and the worker's
    # own record of when it really started and finished each task.
    origin_events: str | None = None
    task_events: str | None = None
    # The web server writes {"host", "port", "pid"} here once it listens.
    ready_file: str | None = None
    # HTTPS: the server's certificate chain and key (PEM files); both None: plain HTTP.
    tls_cert: str | None = None
    tls_key: str | None = None
    # Which status URL the app hands out and the page polls: a key of strategies.json's
    # status_paths ("path": /tasks/<id>/status, "query": /status?task_id=<id>). Both are served.
    status_url_style: str = "path"
    # The app's own caching headers on every status answer, set before the fix's (a fix's
    # header of the same name wins); None: not sent. A Cache-Control value ("max-age=30",
    # "cache briefly"), and a Last-Modified this many seconds in the past (an invitation to
    # heuristic freshness in any cache, the browser's own included).
    status_cache_control: str | None = None
    status_last_modified_age_s: float | None = None
    # The event stream (fix "sse"): a heartbeat comment this often, and the stream is closed
    # after this long even if the client stays (it stays open after the final state until then).
    sse_heartbeat_ms: int = 500
    sse_max_seconds: float = 60.0
    # Fixes for a result backend that fills up (sample_app/result_fixes.py): tasks started
    # with watch=false are sent with ignore_result=True; every result is forgotten once read.
    ignore_unwatched_results: bool = False
    forget_after_read: bool = False
    # The page's own tasks (watched) carry the user's document of this many KiB in their
    # message, as an upload would: a broker that is nearly full refuses them first.
    document_kb: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2), "utf-8")

    @classmethod
    def load(cls, path: Path) -> AppConfig:
        return cls(**json.loads(Path(path).read_text("utf-8")))

    @classmethod
    def standalone(cls, data_dir: Path) -> AppConfig:
        """Defaults for running the sample app by hand, outside the lab."""
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(celery=sqlite_celery_config(data_dir))
