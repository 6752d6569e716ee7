"""run_in_turn: the matrix's cell threads."""

from __future__ import annotations

import random
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

from lab.runs import schedule
from lab.runs.schedule import run_in_turn


def test_a_failing_judgement_of_whether_to_run_again_ends_the_run_instead_of_hanging_it():
    def again(run: object) -> bool:
        raise FileNotFoundError("the run folder was deleted")

    stopping = threading.Event()
    with pytest.raises(FileNotFoundError):
        run_in_turn([0, 1, 2], lambda item, attempt: object(), again, 2, stopping)
    assert stopping.is_set()  # the other cells give up too


def test_each_item_runs_again_while_it_tested_nothing_and_its_last_run_is_kept():
    runs: list[tuple[int, int]] = []

    def run_one(item: int, attempt: int) -> tuple[int, int]:
        runs.append((item, attempt))
        return item, attempt

    final = run_in_turn([0, 1], run_one, lambda run: run == (1, 1), 2, threading.Event())
    assert final == {0: (0, 1), 1: (1, 2)}
    assert sorted(runs) == [(0, 1), (1, 1), (1, 2)]


def test_many_threads_finish_when_the_last_item_is_done_however_their_waits_race(monkeypatch):
    """CPython 3.11's SimpleQueue.get(timeout) waits for ever when another thread took the item
    it was woken for after its deadline: at the end of a matrix on a busy machine one cell
    thread never returned. Very short waits, many threads and items trickling in (runs of
    uneven length, retried items put back by the workers) make that race frequent; the run
    must still end."""
    monkeypatch.setattr(schedule, "QUEUE_WAIT_S", 0.0002)
    done = threading.Event()
    results: list[dict[int, object]] = []

    def run_one(item: int, attempt: int) -> tuple[int, int]:
        time.sleep(random.uniform(0, 0.002))
        return item, attempt

    def run() -> None:
        for _ in range(150):  # each a small matrix: more threads than items, all retried
            results.append(
                run_in_turn(list(range(6)), run_one, lambda r: True, 16, threading.Event())
            )
        done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(30), "run_in_turn did not return: a cell thread is stuck in its queue"
    assert all(sorted(result) == list(range(6)) for result in results)


def test_a_ctrl_c_while_the_cell_threads_start_stops_the_ones_already_running(monkeypatch):
    """The interrupt lands between two thread starts: the cell already running is told to stop,
    and the interrupt goes on at once (it used to bypass the stop, and leave that cell running;
    the audit's pool the same way waited a whole cell for it)."""
    starts: list[threading.Thread] = []

    class InterruptedAtTheSecondStart(threading.Thread):
        def start(self) -> None:
            starts.append(self)
            if len(starts) == 2:
                raise KeyboardInterrupt
            super().start()

    fake = SimpleNamespace(**vars(threading))
    fake.Thread = InterruptedAtTheSecondStart
    monkeypatch.setattr(schedule, "threading", fake)
    stopping = threading.Event()
    told_to_stop = threading.Event()

    def run_one(item: int, attempt: int) -> int:
        if stopping.wait(10):
            told_to_stop.set()
        return item

    with pytest.raises(KeyboardInterrupt):
        run_in_turn([0, 1, 2, 3], run_one, lambda run: False, 2, stopping)
    assert told_to_stop.wait(10)


class Interrupted(Exception):
    pass


def test_a_signal_the_kernel_gave_another_thread_still_interrupts_the_wait_for_cells(monkeypatch):
    """CPython runs handlers in the main thread; a signal delivered to another thread is acted
    on when the main thread next runs. Waiting for a cell must not block it until the cell ends
    (an interrupted audit went on for minutes)."""
    released = threading.Event()

    def cell() -> str:
        released.wait(30)
        return "done"

    def raise_interrupted(signum, frame):
        raise Interrupted

    main = threading.get_ident()

    def signal_another_thread_once_the_main_one_waits() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "results" not in frames_of(main):
            time.sleep(0.01)  # poll interval
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)  # this thread, not main

    previous = signal.signal(signal.SIGUSR1, raise_interrupted)
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            future = pool.submit(cell)
            sender = threading.Thread(target=signal_another_thread_once_the_main_one_waits)
            sender.start()
            try:
                with pytest.raises(Interrupted):
                    schedule.results([future])
                assert not future.done()  # interrupted while the cell still ran
            finally:
                released.set()
                sender.join()
    finally:
        signal.signal(signal.SIGUSR1, previous)


def frames_of(thread_id: int) -> set[str]:
    frame = sys._current_frames().get(thread_id)
    names = set()
    while frame is not None:
        names.add(frame.f_code.co_name)
        frame = frame.f_back
    return names
