"""Other users started before the user's own client (lab/clients/base.py start_neighbours), with
stand-in clients: no process started."""

from __future__ import annotations

import threading
import time

import pytest

from lab.clients.base import start_neighbours


class Neighbour:
    """Makes its first poll `first_poll_after` seconds after it was started (None: never)."""

    done = False

    def __init__(self, first_poll_after: float | None) -> None:
        self.first_poll_after = first_poll_after
        self.started_at: float | None = None
        self.polls: list[object] = []

    def start(self) -> None:
        self.started_at = time.monotonic()
        if self.first_poll_after is not None:
            timer = threading.Timer(self.first_poll_after, lambda: self.polls.append("poll"))
            timer.daemon = True
            timer.start()


def test_each_neighbour_is_waited_for_until_its_first_poll_in_turn():
    first, second = Neighbour(0.1), Neighbour(0.1)
    began = time.monotonic()
    start_neighbours([first, second], lambda: None)
    assert first.polls and second.polls
    assert second.started_at is not None and first.started_at is not None
    assert second.started_at - first.started_at >= 0.1  # the second started after the first poll
    assert time.monotonic() - began < 5.0


def test_a_neighbour_that_never_polls_is_given_up_on_at_the_deadline():
    silent, stopped = Neighbour(None), Neighbour(None)
    stopped.done = True  # a neighbour that stopped (say, on an error) is not waited for
    began = time.monotonic()
    start_neighbours([stopped, silent], lambda: None, timeout=0.2)
    assert 0.2 <= time.monotonic() - began < 2.0
    assert silent.started_at is not None and stopped.started_at is not None


def test_a_dying_component_ends_the_wait():
    class Died(Exception):
        pass

    def check_alive() -> None:
        raise Died

    with pytest.raises(Died):
        start_neighbours([Neighbour(None)], check_alive, timeout=5.0)
