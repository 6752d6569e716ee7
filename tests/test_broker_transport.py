"""The SQLite broker set up by the web server and the worker at the same moment.

kombu's stock SQLAlchemy channel guards its tables and queue rows with a lock of one process:
four processes setting up one new file at once failed in 4 of 10 tries on 2 cores ("table
kombu_queue already exists", "UNIQUE constraint failed: kombu_queue.name"). In a run, the worker
died of it or the click answered 500 (sample_app/broker_transport.py).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import sqlite3
from collections.abc import Callable
from pathlib import Path
from queue import Empty

import pytest

from sample_app.celery_app import create_celery
from sample_app.config import sqlite_celery_config
from sample_app.sqlite_pragmas import _on_connect

PROCESSES = 4
TRIES = 6
FORK = multiprocessing.get_context("fork")  # the modules are imported once, here


def set_up_together(role: int, data_dir: str, barrier, errors) -> None:  # noqa: ANN001
    """A worker's consumer (even roles) or a web server's first click (odd), on a new file."""
    celery = create_celery(sqlite_celery_config(Path(data_dir)))
    try:
        barrier.wait(timeout=30)
        if role % 2 == 0:
            with celery.connection_for_read() as connection:
                celery.amqp.TaskConsumer(connection.default_channel).close()
        else:
            celery.send_task("sample_app.wait", kwargs={"duration": 0})
    except Exception as exc:  # noqa: BLE001 - every failure is the finding
        errors.put(f"role {role}: {type(exc).__name__}: {str(exc).splitlines()[0]}")


def switch_together(path: str, barrier, errors) -> None:  # noqa: ANN001
    barrier.wait(timeout=30)
    try:
        connection = sqlite3.connect(path)
        _on_connect(connection, None)
        connection.close()
    except sqlite3.Error as exc:
        errors.put(f"{type(exc).__name__}: {exc}")


def all_at_once(target: Callable[..., None], each: list[tuple], errors, attempt: int) -> None:  # noqa: ANN001
    """One forked process for each argument tuple, all let go together through a barrier
    (`target(*args, barrier, errors)`); every one must finish."""
    barrier = FORK.Barrier(len(each))
    children = [FORK.Process(target=target, args=(*args, barrier, errors)) for args in each]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0, f"try {attempt}: a process did not finish"


def drained(errors) -> list[str]:  # noqa: ANN001
    found = []
    while not errors.empty():
        found.append(errors.get())
    return found


def test_a_new_file_switched_to_wal_by_four_connections_at_once(tmp_path):
    """SQLite refuses one of two switches at once without waiting ("database is locked"): 13
    of 100 new files failed so, and this test 6 runs of 6, before the switch looked again."""
    errors = FORK.Queue()
    for attempt in range(30):
        path = str(tmp_path / f"{attempt}.db")
        all_at_once(switch_together, [(path,)] * PROCESSES, errors, attempt)
        mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal", f"try {attempt}: {mode}"
    assert drained(errors) == []


@pytest.mark.stack
def test_a_new_sqlite_broker_set_up_by_four_processes_at_once(tmp_path):
    errors = FORK.Queue()
    for attempt in range(TRIES):
        data_dir = tmp_path / f"try-{attempt}"
        data_dir.mkdir()
        each = [(role, str(data_dir)) for role in range(PROCESSES)]
        all_at_once(set_up_together, each, errors, attempt)
    assert drained(errors) == []


def test_messages_are_taken_oldest_first_and_each_by_one_consumer(tmp_path):
    """The transport's own take (one UPDATE) against kombu's contract: first in, first out,
    Empty when nothing waits, each message delivered once among consumers, size and purge."""
    celery = create_celery(sqlite_celery_config(tmp_path))
    with celery.connection_for_write() as producer, celery.connection_for_read() as other:
        sending, taking = producer.default_channel, other.default_channel
        for n in range(40):
            sending._put("jobs", {"n": n})
        assert sending._size("jobs") == 40
        first = [sending._get("jobs")["n"] for _ in range(3)]
        assert first == [0, 1, 2]
        taken: list[int] = []
        for _ in range(37):  # two consumers in turn, each on its own connection
            for channel in (taking, sending):
                with contextlib.suppress(Empty):
                    taken.append(channel._get("jobs")["n"])
        assert sorted(taken) == list(range(3, 40))
        assert len(taken) == len(set(taken))
        with pytest.raises(Empty):
            taking._get("jobs")
        assert sending._size("jobs") == 0
        sending._put("jobs", {"n": 40})
        assert sending._purge("jobs") == 1
        with pytest.raises(Empty):
            taking._get("jobs")
