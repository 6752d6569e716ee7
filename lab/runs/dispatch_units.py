"""`lab verify --dispatch` and `lab audit --dispatch`: the coordinator's side of units that are
whole profiles (lab/verify/dispatch.py, lab/runs/dispatch_audit.py), on the matrix's Dispatcher
(lab/runs/dispatch.py): one run folder, every unit asked at once, the first failure stopping
the rest."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from lab.runs.dispatch import Dispatcher, connect
from lab.runs.lifecycle import Progress, new_run_dir
from lab.runs.schedule import results

T = TypeVar("T")


@contextlib.contextmanager
def coordinating(
    dispatch_url: str,
    runs_root: Path,
    run_name: str,
    progress: Progress,
    *,
    evidence_dir: Path | None,
    deadline: float | None,
    command: str,
) -> Iterator[Dispatcher]:
    """A dispatcher on the broker (exit 3 if it does not answer) with a new run folder; its
    watcher and connection closed whichever way the run ends. For `lab verify` and `lab audit`,
    whose units are whole profiles."""
    app = connect(dispatch_url)
    dispatcher = Dispatcher(
        app,
        new_run_dir(runs_root, run_name),
        progress,
        evidence_dir=evidence_dir,
        deadline=deadline,
        stopping=threading.Event(),
        command=command,
    )
    try:
        yield dispatcher
    finally:
        dispatcher.close()
        app.close()


def ask_each(dispatcher: Dispatcher, names: list[str], one: Callable[[str], T]) -> list[T]:
    """`one(name)` for every name at once, in their order; at the first that fails, the others
    stop waiting and the units still queued are revoked."""
    with ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="dispatch") as pool:
        try:  # a Ctrl-C among the submits must stop the ones already running
            return results([pool.submit(one, name) for name in names])
        except BaseException:
            dispatcher.stopping.set()
            dispatcher.revoke_pending()
            raise
