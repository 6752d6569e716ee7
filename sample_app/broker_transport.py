"""kombu's SQLAlchemy transport, polling its table every 100 ms instead of every second, and safe
when the web server and the worker set up a new broker file at the same moment.

The stock transport hands `broker_transport_options` straight to SQLAlchemy's `create_engine`, so
`polling_interval` cannot be set there (create_engine raises TypeError). The virtual transport reads
the class attribute instead, so a subclass is the clean place. Celery selects it by dotted path:
`broker_transport = "sample_app.broker_transport:FastSQLAlchemyTransport"`.

The stock channel guards its table set-up and its queue row with a lock of one process only. The
web server and the worker start together on an empty file, so on a busy machine both create the
tables ("table kombu_queue already exists") or both insert the `celery` queue ("UNIQUE constraint
failed: kombu_queue.name"). The UNIQUE violation killed the worker ("Unrecoverable error"); the
table error is an OperationalError, which kombu's transport lists as a connection error: most
likely how the web server's channel came to be closed, so that the click answered 500 ("'NoneType'
object has no attribute 'client'"; read in kombu's code, not caught in the act). Both
mean that the other process got there first, which is what each wanted: the table or row exists.

The stock channel also looks its queue's row up again for every message it sends and every time
it polls; it polls inside a write lock (BEGIN IMMEDIATE) even when nothing is waiting, and takes
a message in three statements through the ORM. In a matrix, that polling was four fifths of each
worker's CPU and the look-up an eighth of the web server's. Here the queue's id is kept (kombu
never deletes a queue's row: deleting a queue purges its messages), a poll first looks for a
waiting message without the lock, and one UPDATE takes it.
"""

from __future__ import annotations

from datetime import datetime
from json import dumps, loads
from queue import Empty

from kombu.transport import sqlalchemy
from kombu.utils.encoding import bytes_to_str
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

# A race is lost once per table or queue; more failures in a row are not a race.
SET_UP_ATTEMPTS = 3


def _lost_a_race(exc: OperationalError) -> bool:
    return "already exists" in str(exc.orig)


class SharedSetUpChannel(sqlalchemy.Channel):
    _queue_ids: dict[str, int] | None = None

    def _open(self):  # noqa: ANN202 - kombu's signature
        for attempt in range(SET_UP_ATTEMPTS):
            try:
                return super()._open()
            except OperationalError as exc:
                # The engine was not kept: the next attempt builds it again and finds the tables.
                if not _lost_a_race(exc) or attempt == SET_UP_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _get_or_create(self, queue: str):  # noqa: ANN202 - kombu's signature
        try:
            return super()._get_or_create(queue)
        except IntegrityError:
            self.session.rollback()
            found = self.session.query(self.queue_cls).filter(self.queue_cls.name == queue).first()
            if found is None:
                raise
            return found

    def _queue_id(self, queue: str) -> int:
        if self._queue_ids is None:
            self._queue_ids = {}
        if queue not in self._queue_ids:
            self._queue_ids[queue] = self._get_or_create(queue).id
        return self._queue_ids[queue]

    def _put(self, queue: str, payload, **_kwargs) -> None:  # noqa: ANN001 - kombu's
        # The row the stock channel's Message(payload, queue) makes: visible, version 1, no
        # timestamp until it is taken.
        table = self.message_cls.__table__
        row = {"payload": dumps(payload), "queue_id": self._queue_id(queue), "visible": True}
        try:
            self.session.execute(insert(table).values(version=1, **row))
            self.session.commit()
        except OperationalError:
            self.session.rollback()
            raise  # the publish fails (and can be retried), as in the stock channel

    def _get(self, queue: str):  # noqa: ANN202 - kombu's signature
        message = self.message_cls
        waiting = message.queue_id == self._queue_id(queue), message.visible == True  # noqa: E712
        oldest = select(message.id).where(*waiting).order_by(message.sent_at, message.id).limit(1)
        try:
            if self.session.execute(select(message.id).where(*waiting).limit(1)).first() is None:
                raise Empty()
            # The stock channel's take in one statement, which holds SQLite's write lock by
            # itself: the oldest waiting message made invisible, as its ORM update would (the
            # time it was taken, the next version), and its payload returned.
            taken = self.session.execute(
                update(message.__table__)
                .where(message.id == oldest.scalar_subquery(), *waiting)
                .values(visible=False, timestamp=datetime.now(), version=message.version + 1)
                .returning(message.payload)
            ).first()
        finally:
            self.session.commit()
        if taken is None:
            raise Empty()  # another worker took it first
        return loads(bytes_to_str(taken.payload))


class FastSQLAlchemyTransport(sqlalchemy.Transport):
    Channel = SharedSetUpChannel
    polling_interval = 0.1
