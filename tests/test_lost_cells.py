"""The coordinator's look for cells whose message kombu lost (lab/runs/lost_cells.py): a cell
is lost only when two looks in a row find it in no queue and with no agent."""

from __future__ import annotations

import json

from lab.runs.lost_cells import PRIORITY_SEPARATOR, UNACKED_KEY, LostCells


class FakeRedis:
    """The two reads LostCells makes, from dicts the test changes between looks."""

    def __init__(self) -> None:
        self.lists: dict[str, list[bytes]] = {}
        self.hashes: dict[str, dict[bytes, bytes]] = {}

    def pipeline(self, transaction: bool = True) -> FakeRedis.Pipeline:
        return FakeRedis.Pipeline(self)

    class Pipeline:
        def __init__(self, redis: FakeRedis) -> None:
            self.redis = redis
            self.reads: list[list[bytes]] = []

        def lrange(self, key: str, start: int, end: int) -> None:
            self.reads.append(list(self.redis.lists.get(key, [])))

        def hvals(self, key: str) -> None:
            self.reads.append(list(self.redis.hashes.get(key, {}).values()))

        def execute(self) -> list[list[bytes]]:
            return self.reads


def message(cell_id: str) -> bytes:
    """A message as kombu keeps it: the task id in its headers."""
    return json.dumps({"headers": {"id": cell_id, "task": "lab.run_cell"}}).encode()


def test_a_cell_missing_in_two_looks_in_a_row_is_lost():
    redis = FakeRedis()
    queued, held, gone = "run1/r1a1/proxy-cache--none", "run1/r1a1/direct--none", "run1/r1a1/x--y"
    redis.lists["lab.cells"] = [message(queued)]
    redis.hashes[UNACKED_KEY] = {b"tag1": json.dumps([message(held).decode(), "", "q"]).encode()}
    lost = LostCells(redis, "lab.cells")
    assert lost.look([queued, held, gone]) == []  # once: it may have been between two places
    assert lost.look([queued, held, gone]) == [gone]
    assert lost.look([queued, held]) == []  # sent again: it starts over


def test_a_cell_found_at_the_second_look_is_not_lost():
    redis = FakeRedis()
    cell = "run1/r1a1/proxy-cache--nonce"
    lost = LostCells(redis, "lab.cells")
    assert lost.look([cell]) == []
    redis.lists[f"lab.cells{PRIORITY_SEPARATOR}3"] = [message(cell)]  # a priority list counts
    assert lost.look([cell]) == []
    redis.lists.clear()
    assert lost.look([cell]) == []  # missing once more: one look is not enough
    assert lost.look([cell]) == [cell]


def test_nothing_waiting_reads_nothing():
    class Untouchable:
        def pipeline(self, transaction: bool = True) -> None:
            raise AssertionError("no read when no cell waits")

    assert LostCells(Untouchable(), "lab.cells").look([]) == []
