"""A one-file Django app (no database) with the FastAPI example's API: `POST /jobs` (202,
`Location: /jobs/<id>`), `GET /jobs/<id>` (`{"id", "status": running|done|failed}`), the job in a
thread. Bug by default; fix: STATUS_CACHE_CONTROL=no-store. One process (the jobs live in its
memory): `gunicorn 'examples.django_jobs.app:create_app()' --bind 127.0.0.1:8000 --threads 4`."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.http import require_GET, require_POST

from cache_probe import ProbeMiddleware

MAX_SECONDS = 60.0
MAX_JOBS = 10_000
FINISHED_JOB_TTL_S = 600.0  # then a finished job is forgotten (404)

_jobs: dict[str, dict[str, Any]] = {}  # id: {"status", "finished": when, once it has}
_lock = threading.Lock()


def create_app():
    """The WSGI app. Django's settings are made here, once per process, not on import."""
    if not settings.configured:
        settings.configure(
            ROOT_URLCONF=__name__,
            ALLOWED_HOSTS=["127.0.0.1", "localhost"],
            SECRET_KEY=uuid.uuid4().hex,  # nothing here signs anything that must outlive it
            MIDDLEWARE=[],
            STATUS_CACHE_CONTROL=os.environ.get("STATUS_CACHE_CONTROL") or None,
        )
    from django.core.wsgi import get_wsgi_application

    # The cache probe (`lab probe http://.../_cache-probe/`): one line, answers only its path.
    return ProbeMiddleware(get_wsgi_application())


def run_job(job: dict[str, Any], seconds: float, fail: bool) -> None:
    time.sleep(seconds)  # stands in for the slow part of real work
    with _lock:
        job.update(status="failed" if fail else "done", finished=time.monotonic())


@require_POST
def start_job(request: HttpRequest) -> JsonResponse:
    try:
        body = json.loads(request.body or b"{}")
        seconds, fail = float(body.get("seconds", 1.0)), bool(body.get("fail", False))
    except (ValueError, TypeError, AttributeError):
        return JsonResponse({"detail": 'expected JSON like {"seconds": 1}'}, status=400)
    if not 0 <= seconds <= MAX_SECONDS:
        return JsonResponse(
            {"detail": f"seconds: {seconds} is not between 0 and {MAX_SECONDS:g}"}, status=400
        )
    with _lock:
        now = time.monotonic()
        for job_id, job in list(_jobs.items()):  # the oldest first
            if job["finished"] and (
                now - job["finished"] > FINISHED_JOB_TTL_S or len(_jobs) >= MAX_JOBS
            ):
                del _jobs[job_id]
        if len(_jobs) >= MAX_JOBS:
            return JsonResponse({"detail": "too many jobs running"}, status=503)
        job_id, job = uuid.uuid4().hex, {"status": "running", "finished": None}
        _jobs[job_id] = job
    # A daemon thread: a server that stops takes its unfinished jobs with it.
    threading.Thread(target=run_job, args=(job, seconds, fail), daemon=True).start()
    answer = JsonResponse({"id": job_id}, status=202)
    answer["Location"] = f"/jobs/{job_id}"
    return answer


@require_GET
def job_status(request: HttpRequest, job_id: str, nonce: str = "") -> JsonResponse:
    with _lock:
        status = _jobs.get(job_id, {}).get("status")
    if status is None:
        answer = JsonResponse({"detail": f"no job {job_id}"}, status=404)
    else:
        answer = JsonResponse({"id": job_id, "status": status})
    if settings.STATUS_CACHE_CONTROL:
        answer["Cache-Control"] = settings.STATUS_CACHE_CONTROL
    return answer


urlpatterns = [
    path("jobs", start_job),
    path("jobs/<str:job_id>", job_status),
    # The page's half of the fix: a fresh last segment on each poll, a URL no cache has seen.
    path("jobs/<str:job_id>/<str:nonce>", job_status),
]
