"""The jobs of one process, in memory, with a bound on their number: a finished job is
forgotten some time after it finished, and the oldest finished one first when the table is full.
Only the event loop's thread touches the table, so it needs no lock."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

JobStatus = Literal["running", "done", "failed"]


@dataclass
class Job:
    id: str
    status: JobStatus = "running"


class JobTable:
    def __init__(
        self, max_jobs: int, finished_ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_jobs = max_jobs
        self.finished_ttl_s = finished_ttl_s
        self._clock = clock
        self._jobs: dict[str, Job] = {}
        # The finished jobs' ids, oldest first, with when each finished.
        self._finished: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._jobs)

    def add(self, job_id: str) -> Job | None:
        """A new running job; None when the table is full of running jobs."""
        self._forget_expired()
        if len(self._jobs) >= self.max_jobs:
            if not self._finished:
                return None
            oldest, _ = self._finished.popitem(last=False)
            del self._jobs[oldest]
        job = Job(job_id)
        self._jobs[job_id] = job
        return job

    def get(self, job_id: str) -> Job | None:
        self._forget_expired()
        return self._jobs.get(job_id)

    def finish(self, job: Job, status: JobStatus) -> None:
        job.status = status
        self._finished[job.id] = self._clock()  # only finished jobs are ever forgotten

    def _forget_expired(self) -> None:
        cutoff = self._clock() - self.finished_ttl_s
        while self._finished:
            job_id, finished_at = next(iter(self._finished.items()))
            if finished_at > cutoff:
                break
            del self._finished[job_id]
            del self._jobs[job_id]
