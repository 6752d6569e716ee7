"""kombu's filesystem transport, with each message whole before a worker can see it.

kombu's own `_put` creates the message file in the queue folder and only then writes it; a
worker listing the folder in between moves and reads an empty file and dies with
"JSONDecodeError: Expecting value" (celery/kombu#1551, open; it happened here when 19 pages
started work at once). This one writes the file in a folder beside the queue's and renames it
in: a rename on one filesystem is atomic, so the worker sees no file or the whole file.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


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


class Transport(filesystem.Transport):
    Channel = Channel
