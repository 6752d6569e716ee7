"""A FastAPI app (ASGI, under uvicorn) that runs slow work as an asyncio task in its own process
and lets the page poll for it: `POST /jobs` answers 202 with `Location: /jobs/<id>`,
`GET /jobs/<id>` answers `{"id": ..., "status": "running" | "done" | "failed"}`.

The story's bug is the default: the status answer carries no caching headers, so a proxy that
gives heuristic freshness to a 200 answer keeps serving the first "running" one. The fix is one
setting, the environment variable `STATUS_CACHE_CONTROL=no-store` (the `Cache-Control` value of
the status answers; unset or empty: none).

Run it with the factory: `uvicorn examples.fastapi_jobs.app:create_app --factory --port 8000`.
One process only: the jobs live in its memory.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from cache_probe import ASGIProbeMiddleware
from examples.fastapi_jobs.jobs import Job, JobTable

MAX_SECONDS = 60.0


@dataclass(frozen=True)
class Settings:
    status_cache_control: str | None = None
    max_jobs: int = 10_000
    # A finished job answers its status this long, then it is forgotten (404).
    finished_job_ttl_s: float = 600.0

    @classmethod
    def from_env(cls) -> Settings:
        return cls(status_cache_control=os.environ.get("STATUS_CACHE_CONTROL") or None)


class JobRequest(BaseModel):
    seconds: float = Field(1.0, ge=0, le=MAX_SECONDS, allow_inf_nan=False)
    # Ends the job "failed" instead of "done": to see how a page handles a failure.
    fail: bool = False


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app; `settings` default to the environment's."""
    settings = settings or Settings.from_env()
    table = JobTable(settings.max_jobs, settings.finished_job_ttl_s)
    running: set[asyncio.Task[None]] = set()  # the loop keeps only weak references to tasks

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        for task in running:  # a server that stops takes its unfinished jobs with it
            task.cancel()

    app = FastAPI(title="fastapi_jobs example", lifespan=lifespan)
    # The cache probe (`lab probe http://.../_cache-probe/`): one line, answers only its path.
    app.add_middleware(ASGIProbeMiddleware)

    def status_answer(status_code: int, content: dict[str, object]) -> JSONResponse:
        answer = JSONResponse(content, status_code=status_code)
        if settings.status_cache_control:
            answer.headers["Cache-Control"] = settings.status_cache_control
        return answer

    @app.get("/")
    async def index() -> dict[str, str]:
        return {"start": "POST /jobs", "status": "GET /jobs/{id}"}

    @app.post("/jobs", status_code=202)
    async def start_job(
        response: Response, job_request: JobRequest | None = None
    ) -> dict[str, str]:
        job_request = job_request or JobRequest()  # no body: a job of the default length
        job = table.add(uuid.uuid4().hex)
        if job is None:
            response.status_code = 503
            response.headers["Retry-After"] = "5"
            return {"detail": f"{settings.max_jobs} jobs are running: try again later"}
        task = asyncio.create_task(run_job(table, job, job_request))
        running.add(task)
        task.add_done_callback(running.discard)
        response.headers["Location"] = f"/jobs/{job.id}"
        return {"id": job.id}

    @app.get("/jobs/{job_id}")
    # The page's half of the fix: a fresh last segment on each poll, a URL no cache has seen.
    @app.get("/jobs/{job_id}/{nonce}")
    async def job_status(job_id: str, nonce: str = "") -> JSONResponse:
        job = table.get(job_id)
        if job is None:
            return status_answer(404, {"detail": f"no job {job_id}"})
        return status_answer(200, {"id": job.id, "status": job.status})

    return app


async def run_job(table: JobTable, job: Job, job_request: JobRequest) -> None:
    await asyncio.sleep(job_request.seconds)  # stands in for the slow part of real work
    table.finish(job, "failed" if job_request.fail else "done")
