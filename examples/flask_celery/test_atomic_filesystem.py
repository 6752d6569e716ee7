"""The example's filesystem transport: an exchange table caught between its creation and its
first write (an empty file) reads as empty and is bound into, never a JSONDecodeError."""

from __future__ import annotations

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
    (tmp_path / "queue").mkdir()
    (tmp_path / "control").mkdir()
    # What another process leaves for an instant: the table file created, not yet written.
    (tmp_path / "control" / "celery.exchange").write_bytes(b"")
    with connection(tmp_path) as conn:
        channel = conn.default_channel
        assert channel.get_table("celery") == []
        Queue("celery", Exchange("celery", type="direct"), "celery", channel=channel).declare()
        assert [q.queue for q in channel.get_table("celery")] == ["celery"]
        # Bound again (the worker after the web server): kept once.
        Queue("celery", Exchange("celery", type="direct"), "celery", channel=channel).declare()
        assert [q.queue for q in channel.get_table("celery")] == ["celery"]
