"""The Celery app, configured by mapping, and its one task: wait a given number of seconds."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from celery import Celery

from sample_app.sqlite_pragmas import use_wal_for_sqlite

TASK_NAME = "sample_app.wait"


def create_celery(conf: Mapping[str, Any]) -> Celery:
    if any("sqlite" in str(conf.get(key, "")) for key in ("broker_url", "result_backend")):
        use_wal_for_sqlite()
    celery = Celery("sample_app", set_as_current=False)
    celery.conf.update(dict(conf))

    # shared=False: this app's task only. A shared one (Celery's default for @app.task) would be
    # attached to every Celery app finalized later in the process, the user's default app
    # among them, and every app made here after the first would warn of a duplicate name.
    @celery.task(name=TASK_NAME, shared=False)
    def wait(duration: float = 1.0, report_kb: int = 0, document: str = "") -> dict[str, Any]:
        """Stands in for the story's heavy lifting; report_kb: the size of the report it
        returns (an export, a rendered page), which the result backend then holds; document:
        the user's input the page sends with the task (it travels in the message)."""
        time.sleep(duration)
        result: dict[str, Any] = {"slept": duration}
        if report_kb:
            result["report"] = "x" * (report_kb * 1024)
        return result

    return celery
