"""The example's filesystem transport: an exchange table caught between its creation and its
first write (an empty file) reads as empty and is bound into, never a JSONDecodeError."""

from __future__ import annotations

import uuid
from pathlib import Path

from kombu import Connection, Exchange, Queue


def connection(folder: Path) -> Connection:
    return Connection(
        transport="examples.flask_celery.atomic_filesystem:Transport",
        transport_options={
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "control_folder": str(folder / "control"),
        },
    )


def test_an_empty_exchange_table_reads_as_empty_and_is_bound_into(tmp_path: Path):
    # Names of its own: kombu keeps the bindings a process has declared in a state shared by
    # every connection of the transport, and binds a known one again without the file.
    name = f"celery-{uuid.uuid4().hex}"
    (tmp_path / "queue").mkdir()
    (tmp_path / "control").mkdir()
    # What another process leaves for an instant: the table file created, not yet written.
    (tmp_path / "control" / f"{name}.exchange").write_bytes(b"")
    with connection(tmp_path) as conn:
        channel = conn.default_channel
        assert channel.get_table(name) == []
        Queue(name, Exchange(name, type="direct"), name, channel=channel).declare()
        assert [q.queue for q in channel.get_table(name)] == [name]
        # Another queue bound to it (as a second process would): both kept, once each.
        other = f"{name}-other"
        Queue(other, Exchange(name, type="direct"), other, channel=channel).declare()
        assert sorted(q.queue for q in channel.get_table(name)) == sorted([name, other])
