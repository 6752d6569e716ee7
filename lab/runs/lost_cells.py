"""Cells whose message is nowhere: not queued, not held by any agent, not finished.

kombu's Redis transport takes a message off the queue (BRPOP) and only then records it as held
(the `unacked` hash): an agent killed between the two loses the message, and no visibility
timeout brings it back. Seen once in tests/test_agents.py under load (a cell "never picked up"
after its agent was SIGKILLed). The coordinator looks for the cells it waits on in the queue
and the hash, and sends again a cell found in neither twice in a row (a cell that was only
between the two places the first time is found the second). A cell sent again may run twice;
its id counts once.
"""

from __future__ import annotations

from typing import Any

# kombu's names for a queue's priority lists and the held messages (kombu/transport/redis.py:
# Channel.sep, PRIORITY_STEPS, unacked_key), for the default settings the lab's app keeps.
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITIES = (3, 6, 9)
UNACKED_KEY = "unacked"


class LostCells:
    """Two looks in a row that find a cell's id in no message: it is lost."""

    def __init__(self, client: Any, queue: str) -> None:
        self.client = client  # redis-py, on the broker's database
        self.keys = [queue, *(f"{queue}{PRIORITY_SEPARATOR}{p}" for p in PRIORITIES)]
        self._missing_before: set[str] = set()

    def look(self, waiting: list[str]) -> list[str]:
        """The cells of `waiting` (still without a result) missing now and at the last look."""
        if not waiting:
            self._missing_before = set()
            return []
        pipe = self.client.pipeline(transaction=False)
        for key in self.keys:
            pipe.lrange(key, 0, -1)
        pipe.hvals(UNACKED_KEY)
        found = b"\n".join(raw for values in pipe.execute() for raw in values)
        missing = {cell for cell in waiting if cell.encode() not in found}
        lost = sorted(missing & self._missing_before)
        self._missing_before = missing - set(lost)
        return lost
