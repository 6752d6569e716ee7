"""The slow work, a shared task as in Flask's pattern: it belongs to whichever Celery app is
the default, the one `celery_init_app` made."""

from __future__ import annotations

import time

from celery import shared_task


# The app sets task_ignore_result=True, as the pattern does: this task's result is read by the
# status route, so it asks for it to be stored.
@shared_task(ignore_result=False)
def add_together(a: int, b: int, seconds: float = 1.0) -> int:
    time.sleep(seconds)  # stands in for the slow part of real work
    return a + b
