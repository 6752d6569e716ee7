"""Which cell runs when in a matrix: longest first and scenarios interleaved, at most so many
starts a second, and a run that tested nothing (the machine was too slow) again at the back of
the line, up to MAX_ATTEMPTS runs."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, wait
from pathlib import Path
from typing import TypeVar

from lab.data.scenarios import Scenario

# Runs of one cell in one round while the machine is too slow for it to test anything (see
# evidence.untested_because); after that its verdict says "not judged", never a wrong outcome.
MAX_ATTEMPTS = 3
# Cells started a second (see StartPacer), per client (lab/data/kinds.py MATRIX_CONCURRENCY).
CELL_STARTS_PER_SECOND: dict[str, float] = {"python": 40.0, "browser": 25.0}


def attempt_dir(cell_dir: Path, attempt: int) -> Path:
    return cell_dir if attempt == 1 else cell_dir / f"attempt-{attempt}"


def expected_seconds(scenario: Scenario, fix: str) -> float:
    if scenario.expected_for(fix).value == "completed":
        return scenario.task_duration
    return scenario.task_duration + scenario.hang_window


def start_order(cells: list[tuple[Scenario, str]]) -> list[int]:
    """Longest first (cells expected to hang wait out a whole hang window), and among equals
    one scenario after another, so that the first dozens of cells do not all go through the
    same proxy and app at the same moment."""
    turn: dict[str, int] = {}
    keys = {}
    for i, (sc, fix) in enumerate(cells):
        turn[sc.name] = turn.get(sc.name, -1) + 1
        keys[i] = (-expected_seconds(sc, fix), turn[sc.name], i)
    return sorted(range(len(cells)), key=keys.__getitem__)


# How long an idle cell thread waits for an item before it looks at `finished` again.
QUEUE_WAIT_S = 0.05

T = TypeVar("T")  # what one run of an item gives (a matrix cell's verdict)
R = TypeVar("R")


# How often the main thread wakes while it waits for cells. CPython runs signal handlers in the
# main thread only; when the kernel hands a Ctrl-C or SIGTERM to another thread (any thread that
# does not block it), a main thread blocked in a wait without a timeout acts on it only when the
# wait ends: an interrupted audit waited for its cells, minutes, instead of stopping them.
WAKE_S = 0.25


def results(futures: list[Future[R]]) -> list[R]:
    """Each future's result in order (its exception raised), waiting in short steps."""
    for future in futures:
        while not future.done():
            wait([future], timeout=WAKE_S)
    return [future.result() for future in futures]


def join_all(threads: list[threading.Thread]) -> None:
    """Wait for every started thread, in short steps."""
    for thread in threads:
        while thread.is_alive():
            thread.join(WAKE_S)


def run_in_turn(
    items: list[int],
    run_one: Callable[[int, int], T],
    again: Callable[[T], bool],
    workers: int,
    stopping: threading.Event,
) -> dict[int, T]:
    """Run `run_one(item, attempt)` for each item on `workers` threads, in order. An item whose
    run tested nothing (`again`) goes to the back of the line for its next attempt, up to
    MAX_ATTEMPTS: by then the burst that starved it has passed. The last run of each item."""
    if not items:
        return {}
    # queue.Queue, not SimpleQueue: CPython 3.11's SimpleQueue.get(timeout=...) can wait for
    # ever when another thread takes the item it was woken for after its deadline has passed
    # (it then blocks with no timeout until the next put). At the end of a matrix there is no
    # next put, and the last cell thread never returned: the whole matrix hung under load.
    todo: queue.Queue[tuple[int, int]] = queue.Queue()
    for item in items:
        todo.put((item, 1))
    final: dict[int, T] = {}
    failures: list[BaseException] = []
    lock = threading.Lock()
    finished = threading.Event()

    def work() -> None:
        while not finished.is_set():
            try:
                item, attempt = todo.get(timeout=QUEUE_WAIT_S)
            except queue.Empty:
                continue
            try:
                run = run_one(item, attempt)
                # Inside the try: a thread that died here would lose its item, and the
                # others would wait for it for ever.
                run_again = attempt < MAX_ATTEMPTS and again(run)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                with lock:
                    failures.append(exc)
                stopping.set()
                finished.set()
                return
            if run_again:
                todo.put((item, attempt + 1))
                continue
            with lock:
                final[item] = run
                if len(final) == len(items):
                    finished.set()

    threads = [
        threading.Thread(target=work, name=f"cell-{n}", daemon=True)
        for n in range(min(workers, len(items)))
    ]
    try:  # a Ctrl-C among the starts must stop the cells already running
        for thread in threads:
            thread.start()
        join_all(threads)
    except BaseException:
        stopping.set()  # every running cell gives up at its next check
        finished.set()
        for thread in threads:
            if thread.ident is not None:  # started
                thread.join(timeout=30)
        raise
    if failures:
        raise failures[0]
    return final


class StartPacer:
    """Cells start at most `per_second` a second: dozens starting in the same instant (each a
    Start, a task, a first poll) starve one another, and a starved cell tests nothing."""

    def __init__(self, per_second: float) -> None:
        self.gap = 1 / per_second
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self, check_alive: Callable[[], None]) -> None:
        with self._lock:
            now = time.monotonic()
            at = max(now, self._next)
            self._next = at + self.gap
        while (left := at - time.monotonic()) > 0:
            check_alive()
            time.sleep(min(left, 0.05))
