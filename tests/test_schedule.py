"""run_in_turn: the matrix's cell threads."""

from __future__ import annotations

import threading

import pytest

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
