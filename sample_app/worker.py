"""Run a Celery worker for the sample app: `python -m sample_app.worker [--config FILE]`.

The worker keeps its own record of each task (worker ready, task started, task finished) in the
config's `task_events` file, from Celery's signals in this process. That record is the ground
truth the lab judges against: it does not pass through the result backend, the app or the proxy.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

from celery import signals

from sample_app.celery_app import create_celery
from sample_app.config import AppConfig
from sample_app.events import EventLog


def record_task_events(log: EventLog) -> None:
    pid = os.getpid()

    def ready(**_: Any) -> None:
        log.write("worker_ready", pid=pid)

    def started(task_id: str, **_: Any) -> None:
        log.write("task_started", task_id=task_id, pid=pid)

    def finished(task_id: str, state: str | None = None, **_: Any) -> None:
        # task_postrun fires after the result was handed to the result backend.
        log.write("task_finished", task_id=task_id, state=state, pid=pid)

    # weak=False: the handlers are closures that would otherwise be collected at once.
    signals.worker_ready.connect(ready, weak=False)
    signals.task_prerun.connect(started, weak=False)
    signals.task_postrun.connect(finished, weak=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, help="JSON config written by the lab")
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="without --config: keep the SQLite broker and results here (the web server and "
        "the worker of one app must be given the same folder)",
    )
    parser.add_argument("--loglevel", default="INFO")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="1: the solo pool, one task at a time; more: a thread pool of this size",
    )
    args = parser.parse_args(argv)
    if args.config:
        config = AppConfig.load(args.config)
    else:
        config = AppConfig.standalone(
            args.data_dir or Path(tempfile.gettempdir()) / "proxy-cache-lab-app"
        )

    record_task_events(EventLog(config.task_events))
    celery = create_celery(config.celery)
    # app.Worker, not worker_main(["worker", ...]): the same worker as `celery worker` builds,
    # without importing Celery's command line (click-repl, prompt_toolkit, the amqp shell), a
    # third of the worker's start-up CPU, and the lab starts dozens of workers a matrix.
    from celery import concurrency
    from celery.utils.log import mlevel
    from celery.utils.nodenames import default_nodename, host_format

    worker = celery.Worker(
        hostname=host_format(default_nodename(f"lab-worker-{os.getpid()}@%h")),
        pool_cls=concurrency.get_implementation("solo" if args.concurrency <= 1 else "threads"),
        concurrency=max(args.concurrency, 1),
        loglevel=mlevel(args.loglevel.upper()),
        without_gossip=True,
        without_mingle=True,
        without_heartbeat=True,
    )
    worker.start()
    return worker.exitcode or 0


if __name__ == "__main__":
    raise SystemExit(main())
