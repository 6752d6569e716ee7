"""kombu's SQLAlchemy transport, polling its table every 100 ms instead of every second, and safe
when the web server and the worker set up a new broker file at the same moment.

The stock transport hands `broker_transport_options` straight to SQLAlchemy's `create_engine`, so
`polling_interval` cannot be set there (create_engine raises TypeError). The virtual transport reads
the class attribute instead, so a subclass is the clean place. Celery selects it by dotted path:
`broker_transport = "sample_app.broker_transport:FastSQLAlchemyTransport"`.

The stock channel guards its table set-up and its queue row with a lock of one process only. The
web server and the worker start together on an empty file, so on a busy machine both create the
tables ("table kombu_queue already exists") or both insert the `celery` queue ("UNIQUE constraint
failed: kombu_queue.name"). The first killed the worker ("Unrecoverable error"); the second is an
OperationalError, which kombu takes for a lost connection: it closed the web server's channel and
the click answered 500 ("'NoneType' object has no attribute 'client'"). Both mean that the other
process got there first, which is what each wanted: the table or the row now exists.
"""

from __future__ import annotations

from kombu.transport import sqlalchemy
from sqlalchemy.exc import IntegrityError, OperationalError

# A race is lost once per table or queue; more failures in a row are not a race.
SET_UP_ATTEMPTS = 3


def _lost_a_race(exc: OperationalError) -> bool:
    return "already exists" in str(exc.orig)


class SharedSetUpChannel(sqlalchemy.Channel):
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


class FastSQLAlchemyTransport(sqlalchemy.Transport):
    Channel = SharedSetUpChannel
    polling_interval = 0.1
