"""Fixes for the story's second bug: a Redis that fills up with results nobody cleans.

These are server-side settings, not page behaviour (the page polls as with fix "none"), so they
live here and not in strategies.json: the lab starts the app and worker with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ResultFix:
    name: str
    summary: str
    # Merged into the Celery mapping of the app and the worker.
    celery: dict[str, Any] = field(default_factory=dict)
    # Tasks started without a page watching them are sent with ignore_result=True.
    ignore_unwatched_results: bool = False
    # The app reads every result once (the status endpoint, or a collector for tasks nobody
    # polls) and then forgets it (AsyncResult.forget: the key is deleted).
    forget_after_read: bool = False

    def app_flags(self) -> dict[str, bool]:
        return {
            "ignore_unwatched_results": self.ignore_unwatched_results,
            "forget_after_read": self.forget_after_read,
        }


FIXES: dict[str, ResultFix] = {
    fix.name: fix
    for fix in (
        ResultFix(
            "result-expires",
            "Results expire after 1 s (result_expires). On Redis the backend sets a TTL and "
            "Redis itself deletes the keys; on a database backend nothing expires unless "
            "celery beat runs its celery.backend_cleanup task.",
            celery={"result_expires": 1},
        ),
        ResultFix(
            "ignore-unwatched-results",
            "Results nobody reads are not stored: tasks started without a page polling them "
            "are sent with ignore_result=True; the polled task still stores its result.",
            ignore_unwatched_results=True,
        ),
        ResultFix(
            "forget-after-read",
            "Every result is read once and then forgotten (AsyncResult.forget deletes it): by "
            "the status endpoint once it has served a final state, and by a collector in the "
            "app for tasks nobody polls.",
            forget_after_read=True,
        ),
    )
}


def names() -> list[str]:
    return list(FIXES)


def get(name: str) -> ResultFix | None:
    return FIXES.get(name)
