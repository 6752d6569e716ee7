"""kombu's filesystem transport, with each message whole before a worker can see it.

kombu's own `_put` creates the message file in the queue folder and only then writes it; a
worker listing the folder in between moves and reads an empty file and dies with
"JSONDecodeError: Expecting value" (celery/kombu#1551, open; it happened here when 19 pages
started work at once). This one writes the file in a folder beside the queue's and renames it
in: a rename on one filesystem is atomic, so the worker sees no file or the whole file.

Its exchange table has the same gap: kombu creates the table's file, and only then locks and
writes it; a web server and a worker starting at once read the empty file and one died of the
same JSONDecodeError (seen once in CI, under load). Here the file is created and written
under one lock, and an empty table file reads as an empty table.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.transport.filesystem import LOCK_EX, LOCK_SH, exchange_queue_t, lock, unlock
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads


class Channel(filesystem.Channel):
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        # kombu's own name: the worker takes files in sorted order, so the time comes first.
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        staging = f"{os.path.normpath(self.data_folder_out)}-staging"
        os.makedirs(staging, exist_ok=True)
        written = os.path.join(staging, name)
        try:
            with open(written, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(written, os.path.join(self.data_folder_out, name))
        except OSError as exc:
            raise ChannelError(f"Cannot add file {name!r} to directory") from exc

    def get_table(self, exchange: str) -> list[Any]:
        file = self._exchange_file(exchange)
        try:
            with file.open("rb") as f_obj:
                lock(f_obj, LOCK_SH)
                try:
                    return _read_table(f_obj)
                finally:
                    unlock(f_obj)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ChannelError(f"Cannot open {file}") from exc

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        file = self._exchange_file(exchange)
        self.control_folder.mkdir(exist_ok=True)
        wanted = exchange_queue_t(routing_key or "", pattern or "", queue or "")
        try:
            # "a+b": created if missing, never emptied by opening; read and rewritten under
            # the lock (in append mode every write goes to the end: after truncate, 0).
            with file.open("a+b", buffering=0) as f_obj:
                lock(f_obj, LOCK_EX)
                try:
                    f_obj.seek(0)
                    queues = _read_table(f_obj)
                    if wanted not in queues:
                        queues.insert(0, wanted)
                        f_obj.truncate(0)
                        f_obj.write(str_to_bytes(dumps(queues)))
                finally:
                    unlock(f_obj)
        except OSError as exc:
            raise ChannelError(f"Cannot open {file}") from exc


def _read_table(f_obj: Any) -> list[Any]:
    text = bytes_to_str(f_obj.read())
    return [exchange_queue_t(*q) for q in loads(text)] if text.strip() else []


class Transport(filesystem.Transport):
    Channel = Channel
