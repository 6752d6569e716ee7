"""The message broker and result backend under the app: SQLite (default), Redis or RabbitMQ.

Each broker comes with the result backend that makes sense beside it (README, "Brokers"):
- sqlite: kombu's SQLAlchemy transport and Celery's database backend, both SQLite files in the
  run folder. No server: the story's "database as broker".
- redis: broker and results in one Redis, as in the story after the move. The lab starts its
  own `redis-server` on a free 127.0.0.1 port with the scenario's memory cap and eviction
  policy, unless `--broker-url` names one.
- rabbitmq: the broker by URL; results in SQLite. Celery's usual `rpc://` backend sends each
  result as a message to the process that sent the task, so neither the lab (which reads the
  backend directly as ground truth) nor another web server process could read it.

Every app stack gets a queue of its own, so runs sharing one RabbitMQ (or an external Redis)
never take each other's tasks.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from lab.data import settings
from lab.data.errors import BadInput, ComponentError
from lab.data.kinds import BROKERS
from lab.data.scenarios import RedisSetup
from lab.stacks.ports import LOOPBACK, free_port, launch_retrying_taken_ports, listens_itself
from lab.stacks.processes import Component, Supervisor
from sample_app.config import sqlite_celery_config

REACH_TIMEOUT = 3.0  # seconds: a broker that does not answer by then is unreachable
WATCH_EVERY = 0.5  # seconds between reachability checks of an external broker during a run
# An unused queue left by a lab that was killed disappears from RabbitMQ after this long.
QUEUE_EXPIRES_MS = 10 * 60 * 1000
EXCHANGE = "proxy-cache-lab"
START_HINT = {
    "redis": "start one: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 "
    '--save "" --appendonly no',
    "rabbitmq": "start it: rabbitmq-server -detached",
}


@dataclass(frozen=True)
class BrokerChoice:
    """What the user asked for: a broker kind and, optionally, the URL of a running one."""

    kind: str = "sqlite"
    url: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in BROKERS:
            raise BadInput(f"--broker {self.kind!r}: not one of {', '.join(BROKERS)}")
        if self.url is not None:
            if self.kind == "sqlite":
                raise BadInput("--broker-url: the sqlite broker is a file in the run folder")
            scheme = urlsplit(self.url).scheme
            wanted = {"redis": ("redis",), "rabbitmq": ("amqp", "pyamqp")}[self.kind]
            if scheme not in wanted:
                raise BadInput(
                    f"--broker-url {redact(self.url)!r}: a {self.kind} URL starts with "
                    f"{' or '.join(s + '://' for s in wanted)}"
                )

    @property
    def lab_starts_redis(self) -> bool:
        return self.kind == "redis" and self.url is None

    @property
    def external_url(self) -> str | None:
        """The URL of a broker the lab does not start (and so must check and watch)."""
        if self.kind == "rabbitmq":
            return self.url or settings.current().rabbitmq_url
        return self.url if self.kind == "redis" else None


def redact(url: str) -> str:
    """The URL without its password, for messages and reports."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def celery_config(
    kind: str, data_dir: Path, queue: str, broker_url: str | None = None
) -> dict[str, Any]:
    """The Celery mapping for one app stack on this broker (broker_url: Redis's or RabbitMQ's)."""
    conf = sqlite_celery_config(data_dir)
    if kind == "sqlite":
        return conf
    assert broker_url is not None
    conf.pop("broker_transport")  # the fast-polling SQLite transport
    conf["broker_url"] = broker_url
    if kind == "redis":
        conf["result_backend"] = broker_url
        # A Redis that stops answering must fail a request, not hang it.
        conf["redis_socket_connect_timeout"] = REACH_TIMEOUT
        conf["redis_socket_timeout"] = REACH_TIMEOUT
        conf["broker_transport_options"] = {
            "socket_connect_timeout": REACH_TIMEOUT,
            "socket_timeout": REACH_TIMEOUT,
        }
    conf["broker_connection_timeout"] = REACH_TIMEOUT
    # Publishing retries on a lost connection, but not for long: the UI's request is waiting.
    conf["task_publish_retry_policy"] = {"max_retries": 2, "interval_start": 0.1}
    conf["task_default_queue"] = queue
    conf["task_default_exchange"] = EXCHANGE
    conf["task_default_routing_key"] = queue
    conf["task_queues"] = {
        queue: {
            "exchange": EXCHANGE,
            "routing_key": queue,
            "queue_arguments": {"x-expires": QUEUE_EXPIRES_MS},
        }
    }
    # No pidbox reply queues (remote control): the lab never uses them, and they are keys
    # in Redis and queues in RabbitMQ that would outlive a killed run.
    conf["worker_enable_remote_control"] = False
    return conf


def queue_name(run_id: str, stack_key: str) -> str:
    return f"lab.{run_id}.{stack_key}"


def host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or LOOPBACK, parts.port or default_port


def default_port(kind: str) -> int:
    return 6379 if kind == "redis" else 5672


def check_reachable(kind: str, url: str) -> None:
    """ComponentError (exit 3) within REACH_TIMEOUT when the broker does not answer."""
    try:
        if kind == "redis":
            import redis

            client = redis.Redis.from_url(
                url, socket_connect_timeout=REACH_TIMEOUT, socket_timeout=REACH_TIMEOUT
            )
            try:
                client.ping()
            finally:
                client.close()
        else:
            from kombu import Connection

            with Connection(url, connect_timeout=REACH_TIMEOUT) as conn:
                conn.ensure_connection(max_retries=1, timeout=REACH_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - any failure means "cannot use it"
        raise ComponentError(
            "broker",
            f"cannot reach {kind} at {redact(url)}: {type(exc).__name__}: {exc} "
            f"(is it running? {START_HINT[kind]})",
        ) from None


class BrokerWatch:
    """Checks, during a run, that a broker the lab did not start still accepts connections.

    Without it a broker that stops would look like a slow app (publishes retry, polls time
    out); with it the run ends with exit 3 and a message that names the broker.
    """

    def __init__(self, kind: str, url: str, every: float = WATCH_EVERY) -> None:
        self.kind = kind
        self.url = url
        self.every = every
        self.address = host_port(url, default_port(kind))
        self._next = 0.0

    def check(self) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.every
        try:
            socket.create_connection(self.address, timeout=REACH_TIMEOUT).close()
        except OSError as exc:
            raise ComponentError(
                "broker",
                f"{self.kind} at {redact(self.url)} stopped answering during the run: {exc}",
            ) from None


def delete_queue(url: str, queue: str) -> None:
    """Remove a stack's queue from a shared broker once the run is over (best effort)."""
    from kombu import Connection

    with (
        contextlib.suppress(Exception),
        Connection(url, connect_timeout=REACH_TIMEOUT) as conn,
    ):
        conn.default_channel.queue_delete(queue)


# --- the lab's own redis-server -------------------------------------------------------------


def redis_server_installed() -> bool:
    return shutil.which("redis-server") is not None


def redis_server_executable() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise ComponentError(
            "redis",
            "redis-server is not installed (apt-get install -y redis-server), or pass "
            "--broker-url redis://127.0.0.1:6379/0 to use a running one",
        )
    return found


def launch_redis(
    sup: Supervisor, name: str, setup: RedisSetup | None = None
) -> tuple[Component, str]:
    """Start redis-server on 127.0.0.1 with a scenario's [redis] settings (default: no cap);
    return it and its URL once it answers."""
    import redis

    executable = redis_server_executable()

    def start() -> tuple[Component, int]:
        port = free_port()
        argv = [executable, "--bind", LOOPBACK, "--port", str(port), "--save", ""]
        argv += ["--appendonly", "no", "--dir", str(sup.run_dir), "--protected-mode", "yes"]
        argv += ["--maxmemory", setup.maxmemory if setup else "0"]
        argv += ["--maxmemory-policy", setup.maxmemory_policy if setup else "noeviction"]
        return sup.add(name, argv), port

    def wait(proc: Component, port: int) -> None:
        client = redis.Redis(host=LOOPBACK, port=port, socket_connect_timeout=0.2)

        def answers() -> bool:
            try:
                return bool(client.ping()) and listens_itself(proc, port)
            except redis.RedisError:
                return False

        try:
            sup.wait_until(proc, answers, "it to answer PING")
        finally:
            client.close()

    _, ready = launch_retrying_taken_ports(sup, start, wait)
    proc, port = ready()
    return proc, f"redis://{LOOPBACK}:{port}/0"


# --- one run's broker -----------------------------------------------------------------------


@dataclass
class BrokerRuntime:
    """The broker a run's app stacks use: ready, watched, and cleaned up after."""

    kind: str
    url: str | None  # None: SQLite files per stack
    lab_started: bool = False
    watch: BrokerWatch | None = None
    queues: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        if self.url is None:
            return "sqlite (files in the run folder)"
        return f"{self.kind} at {redact(self.url)}" + (
            " (started by the lab)" if self.lab_started else ""
        )

    def celery_config(self, data_dir: Path, queue: str) -> dict[str, Any]:
        if self.url is not None:
            self.queues.append(queue)
        return celery_config(self.kind, data_dir, queue, self.url)

    def check(self) -> None:
        """During a run: a broker the lab did not start must still answer (its own
        redis-server is watched by the supervisor like any component)."""
        if self.watch is not None:
            self.watch.check()

    def cleanup(self) -> None:
        # Queues on a shared RabbitMQ or Redis outlive the run otherwise (x-expires would
        # remove them after 10 minutes on RabbitMQ; Redis has no such thing).
        if self.url is None or self.lab_started:
            return
        for queue in self.queues:
            delete_queue(self.url, queue)


def start_broker(
    sup: Supervisor,
    choice: BrokerChoice,
    redis: RedisSetup | None = None,
    name: str = "redis",
) -> BrokerRuntime:
    """Reach or start the chosen broker; ComponentError (exit 3) within seconds if it cannot."""
    if choice.kind == "sqlite":
        return BrokerRuntime("sqlite", None)
    if choice.lab_starts_redis:
        _, url = launch_redis(sup, name, redis)
        return BrokerRuntime("redis", url, lab_started=True)
    url = choice.external_url
    assert url is not None
    check_reachable(choice.kind, url)
    return BrokerRuntime(choice.kind, url, watch=BrokerWatch(choice.kind, url))
