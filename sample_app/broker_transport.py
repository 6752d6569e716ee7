"""kombu's SQLAlchemy transport, polling its table every 50 ms instead of every second.

The stock transport hands `broker_transport_options` straight to SQLAlchemy's `create_engine`, so
`polling_interval` cannot be set there (create_engine raises TypeError). The virtual transport reads
the class attribute instead, so a subclass is the clean place. Celery selects it by dotted path:
`broker_transport = "sample_app.broker_transport:FastSQLAlchemyTransport"`.
"""

from kombu.transport import sqlalchemy


class FastSQLAlchemyTransport(sqlalchemy.Transport):
    polling_interval = 0.1
