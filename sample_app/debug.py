"""The page's debug panel asks the origin what is really true about a task.

`POST /debug/tasks/<task_id>` answers with the result backend's own state and `date_done`
(through `celery.AsyncResult`, like the status, but never cached: POST, and `Cache-Control:
no-store`). It is the panel's ground truth, not a poll: the lab's evidence (origin and proxy
events) and its browser client leave these requests out, by `DEBUG_ENDPOINT` (the Flask endpoint
in the origin's events) or by `is_debug_path` (a URL path, with or without the matrix's
`/_lab/<cell>` prefix).
"""

from __future__ import annotations

import re

DEBUG_TASK_PATH = "/debug/tasks/{task_id}"
DEBUG_ENDPOINT = "debug_task"
# The headers of each status answer the panel shows, as (name, shown even when absent): the
# page reads them from its config (poller.js names no header itself).
DEBUG_HEADERS = [("Age", True), ("Date", True), ("Cache-Control", False), ("Via", False)]
_DEBUG_PATH = re.compile(r"/debug/tasks/[^/?#]+/?$")


def is_debug_path(path: str) -> bool:
    """A path (no scheme or host; a query is ignored) of the debug endpoint."""
    return _DEBUG_PATH.search(path.split("?", 1)[0]) is not None
