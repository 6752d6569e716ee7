"""What `lab agent` and `lab matrix|verify|audit --dispatch` say to each other: the lab's own
Celery app and queue (never the sample app's), the messages, and their check against the
agent's own data.

Three kinds of message, told by their `kind` field (one task name, one queue): a matrix cell
("cell", the default: a message without `kind` is one), one profile's verification ("verify",
lab/verify/dispatch.py) and one profile's audit of a flow file ("audit",
lab/runs/dispatch_audit.py). A message names a scenario, fix, profile or flow file (by name and
sha256), nothing else: it never carries code or files to run. JSON only (no pickle). Messages
are acknowledged late and rejected when their agent is lost, so the broker hands one whose
agent died to another agent.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lab.data import fixes, scenarios
from lab.data.errors import BadInput
from lab.data.kinds import BrokerKind, ClientKind

if TYPE_CHECKING:
    from celery import Celery

APP_NAME = "proxy-cache-lab-agents"
QUEUE = "lab.cells"  # the sample app's worker listens on "celery"; agents only on this one
TASK_NAME = "lab.run_cell"
# Seconds an unacknowledged cell may stay with an agent before the broker gives it to another
# (Redis has no connection-bound acknowledgement: kombu's visibility timeout is the rule).
DEFAULT_REDELIVER_AFTER = 120.0
# How many cells in flight at once through the dispatch (all agents together).
NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


class CellMessage(BaseModel):
    """One cell, as the coordinator sends it. Unknown keys are refused: a message from a
    different version of the lab is rejected, not half understood."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["cell"] = "cell"
    run: str = Field(pattern=NAME.pattern)  # the coordinator's run: part of the cache keys
    scenario: str = Field(pattern=NAME.pattern)
    fix: str = Field(pattern=NAME.pattern)
    round: int = Field(ge=1, le=100)
    attempt: int = Field(ge=1, le=10)
    client: ClientKind = "python"
    broker: BrokerKind | None = None
    screenshots: Literal["mismatches", "all"] = "mismatches"
    # A folder every agent and the coordinator see (NFS, a bind mount); None: the evidence
    # comes back in the result when it is small.
    evidence_dir: str | None = None

    @property
    def cell_id(self) -> str:
        """What the coordinator counts once: one run of one cell in one round."""
        return f"{self.run}/r{self.round}a{self.attempt}/{self.scenario}--{self.fix}"


class Rejected(Exception):
    """A message this agent will not run; the reason is one line."""


class Failed(Exception):
    """A verification or audit the agent ran that ended in error (a product or an app that
    would not start, bad input found on the way): the reason is one line, and the agent keeps
    serving (its own stacks are not concerned)."""


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


Name = Annotated[str, Field(pattern=NAME.pattern)]


class VerifyMessage(BaseModel):
    """One profile's verification (`lab verify PROFILE` on the agent): its real side, its
    simulated side and, with `suite`, the HTTP caching test suite through both."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["verify"]
    run: Name
    profile: Name
    suite: bool = False
    concurrency: int = Field(default=48, ge=1, le=256)
    evidence_dir: str | None = None

    @property
    def cell_id(self) -> str:
        return f"{self.run}/verify/{self.profile}"


class AuditMessage(BaseModel):
    """Profiles of an audit of a flow file the agent has itself (`lab agent --flow FILE`): the
    file's name and the sha256 of its content say which; the app is the file's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["audit"]
    run: Name
    flow: Name  # the flow file's name, audit.toml
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    profiles: list[Name] = Field(min_length=1, max_length=100)
    strategies: list[Name] = Field(min_length=1, max_length=10)
    forward_tls: Literal["tunnel", "inspect"] = "tunnel"
    concurrency: int = Field(default=32, ge=1, le=256)
    evidence_dir: str | None = None

    @property
    def cell_id(self) -> str:
        return f"{self.run}/audit/{'+'.join(self.profiles)}"


Message = CellMessage | VerifyMessage | AuditMessage
KINDS: dict[str, type[Message]] = {
    "cell": CellMessage,
    "verify": VerifyMessage,
    "audit": AuditMessage,
}


def parse(body: Any) -> Message:
    """The message checked for shape (Rejected with the first problem, one line)."""
    if not isinstance(body, dict):
        raise Rejected(f"a cell message is a JSON object, got {type(body).__name__}")
    kind = body.get("kind", "cell")
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise Rejected(f"field kind={kind!r}: not a message kind ({', '.join(KINDS)})")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "message"
        if first["type"] == "missing":
            raise Rejected(f"field {where}: {first['msg']}") from None
        raise Rejected(f"field {where}={first.get('input')!r}: {first['msg']}") from None


def check_against_own_data(
    message: CellMessage, have: set[str], client: str, broker: str | None
) -> scenarios.Scenario:
    """The scenario from this agent's own files, if it has it and the message is one it
    serves (Rejected otherwise)."""
    if message.scenario not in have:
        raise Rejected(f"scenario {message.scenario!r}: this agent does not have it")
    try:
        fixes.check(message.fix)
        scenario = scenarios.load(message.scenario)
    except BadInput as exc:
        raise Rejected(str(exc)) from None
    if not scenario.applies(message.fix):
        raise Rejected(f"fix {message.fix!r} does not apply to scenario {scenario.name!r}")
    if message.client != client or message.broker != broker:
        raise Rejected(
            f"client {message.client}, broker {message.broker or 'default'}: this agent serves "
            f"client {client}, broker {broker or 'default'}"
        )
    return scenario


def celery_app(broker_url: str, redeliver_after: float = DEFAULT_REDELIVER_AFTER) -> Celery:
    """The lab's Celery app for agents and coordinator: the broker is also the result
    backend (a Redis URL). Celery is imported here: `lab --help` does not pay for it."""
    from celery import Celery

    app = Celery(APP_NAME, broker=broker_url, backend=broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_default_queue=QUEUE,
        task_routes={TASK_NAME: {"queue": QUEUE}},
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_track_started=True,
        # One cell reserved per free thread: an agent never sits on cells another could run.
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        # The agent prints its own lines (ready, each cell) on its own stderr.
        worker_redirect_stdouts=False,
        broker_connection_retry_on_startup=False,
        broker_transport_options={
            "visibility_timeout": redeliver_after,
            # Look for cells of lost agents every second, not every 100 s.
            "unacked_restore_interval": 1,
            "unacked_restore_throttle": 1,
            # The lock an agent holds while it looks for them: kombu's 300 s default, held by an
            # agent killed while looking, kept every other agent from looking for 5 minutes.
            "unacked_mutex_expire": 30,
        },
        result_expires=24 * 3600,
    )
    return app


def check_dispatch_url(url: str, what: str = "--dispatch") -> None:
    """A Redis URL on 127.0.0.1-style host:port/db; BadInput naming the value otherwise."""
    if not re.match(r"^rediss?://[^/\s]*(:\d+)?(/\d+)?$", url):
        raise BadInput(f"{what} {url!r}: a Redis URL, redis://HOST:PORT/DB")
