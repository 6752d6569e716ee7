"""A user's own start-and-poll flow (`lab audit my-app.toml`): how to start the work, where its
id is, how to poll it and which answers end the polling. Validated like scenarios: every error
names the file, the field and the problem.

The two common shapes are presets (`[status] shape`): Celery's own `{"state": "SUCCESS"}` and
a home-made `{"status": "done"}`; any field given overrides its preset.
"""

from __future__ import annotations

import secrets
import shlex
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from lab.data.errors import BadInput
from lab.data.flow_inputs import (  # noqa: F401 - the flow's API
    ca_file_problem,
    check_files,
    parse_json_option,
    parse_request_line,
    procfile_commands,
)
from lab.data.paths import relative
from lab.data.tomlfile import load_model

APP_POLLING = "app"  # the audit's client strategy "the app's own polling"
CLIENT_FIXES = ("nonce", "path-nonce", "post", "request-no-cache")  # the audit's client fixes
AUDIT_STRATEGIES = (APP_POLLING, *CLIENT_FIXES)
DEFAULT_AUDIT_CONCURRENCY = 32  # cells of an audit running at once

JsonValue = str | bool | int | float
HEADER_PREFIX = "header:"
ID_PLACEHOLDER = "{id}"
# In the status path: a fresh random value on every poll (a page's cache buster: the story's fix).
NONCE_PLACEHOLDER = "{nonce}"
PLACEHOLDERS = ("{port}", "{data_dir}", "{python}", "{certfile}", "{keyfile}")
# An app the lab starts serves HTTPS with a certificate made for the run when its commands or
# environment name these (lab/runs/audit_tls.py); the pollers then trust the run's CA.
TLS_PLACEHOLDERS = ("{certfile}", "{keyfile}")

SHAPES: dict[str, dict[str, Any]] = {
    "celery": {
        "state": "state",
        "final_states": ["SUCCESS", "FAILURE", "REVOKED"],
        "failure_states": ["FAILURE", "REVOKED"],
    },
    "status-done": {
        "state": "status",
        "final_states": ["done", "failed", "error"],
        "failure_states": ["failed", "error"],
    },
}
METHODS = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _contains(values: list[JsonValue], value: Any) -> bool:
    # JSON's true is not 1 here: `1 == True` in Python, and a state 1 is not "ready".
    return any(type(v) is type(value) and v == value for v in values)


def _dotted(value: str) -> str:
    if not value or any(not part for part in value.split(".")):
        raise ValueError("must be a dotted path into the JSON answer, like 'task_id' or 'data.id'")
    return value


class AppSpec(_Strict):
    """Where the app is: already running (`url`), or started by the lab (`commands` or a
    `procfile`: the first command, or the Procfile's `web`, is the web server on `{port}`)."""

    url: str | None = None
    # The CA file that verifies the app's certificate (an https:// app); relative to the flow
    # file. The pollers trust it and nothing else (no system store).
    cacert: str | None = None
    commands: list[Annotated[str, Field(min_length=1)]] = []
    procfile: str | None = None
    cwd: str | None = None  # relative to the flow file; default its folder
    env: dict[str, str] = {}
    ready_path: Annotated[str, Field(pattern=r"^/")] = "/"
    start_timeout_s: Annotated[float, Field(gt=0, le=600)] = 30.0

    @field_validator("url")
    @classmethod
    def loopback_http(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from urllib.parse import urlsplit

        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http:// or https:// URL with a host, got {value!r}")
        return value.rstrip("/")

    @field_validator("commands")
    @classmethod
    def parseable(cls, value: list[str]) -> list[str]:
        for command in value:
            try:
                if not shlex.split(command):
                    raise ValueError("an empty command")
            except ValueError as exc:
                raise ValueError(f"command {command!r} cannot be split into words: {exc}") from None
        return value

    @model_validator(mode="after")
    def one_way(self) -> AppSpec:
        ways = [self.url is not None, bool(self.commands), self.procfile is not None]
        if sum(ways) != 1:
            raise ValueError("give exactly one of url, commands or procfile")
        if self.commands and not any("{port}" in c or "$PORT" in c for c in self.commands[:1]):
            raise ValueError(
                "the first command is the web server: it must bind the port the lab chooses, "
                "written {port} (or $PORT)"
            )
        if self.url is not None and self.url.startswith("https://") and self.cacert is None:
            raise ValueError(
                "an https:// app needs the CA file that verifies its certificate: cacert "
                "(--cacert FILE)"
            )
        if self.url is not None and self.url.startswith("http://") and self.cacert is not None:
            raise ValueError("cacert is for an https:// app; this url is http://")
        if self.cacert is not None and self.makes_certificate:
            raise ValueError(
                "give cacert (the app's own certificate) or {certfile}/{keyfile} (one the lab "
                "makes), not both"
            )
        return self

    @property
    def makes_certificate(self) -> bool:
        """The commands or environment ask for a certificate made for the run."""
        texts = [*self.commands, *self.env.values()]
        return any(mark in text for text in texts for mark in TLS_PLACEHOLDERS)

    @property
    def started_by_lab(self) -> bool:
        return self.url is None


class StartSpec(_Strict):
    method: METHODS = "POST"
    path: Annotated[str, Field(pattern=r"^/")] = "/tasks"
    json_body: dict[str, Any] | None = Field(default=None, alias="json")
    headers: dict[str, str] = {}
    # A dotted path into the JSON answer, or "header:Location" (the id is the URL's last segment).
    task_id: str = "task_id"

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("task_id")
    @classmethod
    def where_the_id_is(cls, value: str) -> str:
        if value.lower().startswith(HEADER_PREFIX):
            if not value[len(HEADER_PREFIX) :].strip():
                raise ValueError("'header:' must name a header, such as 'header:Location'")
            return value
        return _dotted(value)

    @property
    def id_header(self) -> str | None:
        if self.task_id.lower().startswith(HEADER_PREFIX):
            return self.task_id[len(HEADER_PREFIX) :].strip()
        return None


class StatusSpec(_Strict):
    shape: Literal["celery", "status-done"] = "celery"
    method: METHODS = "GET"
    path: Annotated[str, Field(pattern=r"^/")] = "/tasks/{id}/status"
    state: str | None = None
    final_states: list[JsonValue] | None = None
    failure_states: list[JsonValue] | None = None
    task_id: str = ""  # where the answer names its task ("": it does not)
    headers: dict[str, str] = {}

    @field_validator("path")
    @classmethod
    def names_the_id(cls, value: str) -> str:
        if ID_PLACEHOLDER not in value:
            raise ValueError(f"must contain {ID_PLACEHOLDER} where the task id goes, got {value!r}")
        return value

    @field_validator("state")
    @classmethod
    def state_path(cls, value: str | None) -> str | None:
        return None if value is None else _dotted(value)

    @field_validator("task_id")
    @classmethod
    def id_path(cls, value: str) -> str:
        return value and _dotted(value)

    @model_validator(mode="after")
    def failures_are_final(self) -> StatusSpec:
        if not self.finals:
            raise ValueError("final_states: at least one value must end the polling")
        stray = [v for v in self.failures if not _contains(self.finals, v)]
        if stray:
            raise ValueError(f"failure_states {stray} are not among final_states {self.finals}")
        return self

    @property
    def state_at(self) -> str:
        return self.state or SHAPES[self.shape]["state"]

    @property
    def finals(self) -> list[JsonValue]:
        if self.final_states is not None:
            return self.final_states
        return SHAPES[self.shape]["final_states"]

    @property
    def failures(self) -> list[JsonValue]:
        if self.failure_states is not None:
            return self.failure_states
        return [v for v in SHAPES[self.shape]["failure_states"] if _contains(self.finals, v)]

    def is_final(self, value: Any) -> bool:
        return _contains(self.finals, value)

    def is_failure(self, value: Any) -> bool:
        return _contains(self.failures, value)


class PollingSpec(_Strict):
    interval_s: Annotated[float, Field(gt=0, le=60)] = 0.25
    hang_window_s: Annotated[float, Field(gt=0, le=600)] = 3.0
    task_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    retries: Annotated[int, Field(ge=0, le=20)] = 0

    @model_validator(mode="after")
    def window_longer_than_a_poll(self) -> PollingSpec:
        if self.hang_window_s <= self.interval_s:
            raise ValueError(
                f"hang_window_s ({self.hang_window_s:g}) must be longer than interval_s "
                f"({self.interval_s:g})"
            )
        return self


class Flow(_Strict):
    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")] = "app"
    summary: str = ""
    app: AppSpec
    start: StartSpec = StartSpec()
    status: StatusSpec = StatusSpec()
    polling: PollingSpec = PollingSpec()
    _source: str | None = PrivateAttr(default=None)  # the file it came from, if any

    @property
    def source(self) -> str | None:
        return self._source

    def from_file(self, path: str | None) -> Flow:
        """This flow, as read from `path` (commands, cwd and the Procfile are relative to it)."""
        copy = self.model_copy()
        copy._source = path
        return copy

    @property
    def base_dir(self) -> Path:
        return Path(self.source).resolve().parent if self.source else Path.cwd()

    @property
    def cwd(self) -> Path:
        return (self.base_dir / (self.app.cwd or ".")).resolve()

    @property
    def makes_certificate(self) -> bool:
        """The app the lab starts asks for a certificate made for the run ({certfile} or
        {keyfile} in its commands, environment or Procfile)."""
        if self.app.makes_certificate:
            return True
        if self.app.procfile is None:
            return False
        lines = procfile_commands(self.base_dir / self.app.procfile)
        return any(mark in command for _, command in lines for mark in TLS_PLACEHOLDERS)

    @property
    def https(self) -> bool:
        """The app answers over HTTPS: at an https:// URL, or started with a certificate."""
        return self.app.cacert is not None or self.makes_certificate

    @property
    def cacert(self) -> Path | None:
        """The user's CA file, resolved (a flow file's relative path is relative to it)."""
        return (self.base_dir / self.app.cacert).resolve() if self.app.cacert else None

    def status_path(self, task_id: str) -> str:
        path = self.status.path.replace(ID_PLACEHOLDER, task_id)
        return path.replace(NONCE_PLACEHOLDER, secrets.token_hex(8))  # a new one on each call

    @property
    def two_users(self) -> bool:
        """The status answer names its task: a second user polling at once shows a cache
        that mixes users up (`leaked`)."""
        return bool(self.status.task_id)


def dig(document: Any, dotted: str) -> Any:
    """The value at a dotted path (`data.id`, `items.0.state`), or KeyError naming the first
    part that is missing."""
    value = document
    for part in dotted.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise KeyError(part)
    return value


def load(path: Path) -> Flow:
    """The flow in a TOML file; BadInput naming file, field and problem."""
    flow = load_model(path, Flow)
    if "name" not in flow.model_fields_set:
        flow = flow.model_copy(update={"name": _safe_name(path.stem)})
    flow = flow.from_file(str(path))
    check_files(flow, relative(path))
    return flow


def from_options(base: Flow | None, **given: Any) -> Flow:
    """A flow from command-line values laid over `base` (a file's flow, or the defaults):
    `given` maps "section.field" to a value; None means not given."""
    data = base.model_dump(by_alias=True, exclude_unset=True) if base else {}
    source = base.source if base else None
    for key, value in given.items():
        if value is None or value == ():
            continue
        section, _, field = key.partition(".")
        data.setdefault(section, {})
        if section == "app" and field in ("url", "commands", "procfile"):
            # Another app: the file's CA belonged to the file's app (--cacert comes after).
            for other in ("url", "commands", "procfile", "cacert"):
                data["app"].pop(other, None)
        if key == "app.cacert":
            value = str(Path(value).resolve())  # the command line's is relative to its folder
        data[section][field] = list(value) if isinstance(value, tuple) else value
    where = relative(Path(source)) if source else "command line"
    given_now = {key for key, value in given.items() if value is not None and value != ()}
    flow = _validate(data, where, given_now).from_file(source)
    check_files(flow, where, given_now)
    return flow


# A value given on the command line is named by its option, not by the flow file's field.
OPTIONS = {
    "app": "--app-cmd",
    "app.url": "--app-url",
    "app.commands": "--app-cmd",
    "app.procfile": "--procfile",
    "app.cacert": "--cacert",
    "start.method": "--start",
    "start.path": "--start",
    "start.json": "--start-json",
    "start.task_id": "--task-id-at",
    "status.method": "--status",
    "status.path": "--status",
    "status.shape": "--shape",
    "status.state": "--state-at",
    "status.final_states": "--final-states",
    "status.failure_states": "--failure-states",
    "status.task_id": "--status-task-id-at",
    "polling.interval_s": "--poll-interval",
    "polling.hang_window_s": "--hang-window",
}


def _validate(data: dict[str, Any], where: str, given: set[str] = frozenset()) -> Flow:
    from pydantic import ValidationError

    try:
        return Flow.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(flow)"
        problem = first["msg"].removeprefix("Value error, ")
        if field == "app" and first["type"] == "missing":
            raise BadInput(f"{where}: no app: give --app-url, --app-cmd or a flow file") from None
        if field == "app" and (options := given & {"app.commands", "app.url", "app.cacert"}):
            # The app's checks span its fields: name the options given, in the order typed.
            named = "/".join(OPTIONS[key] for key in sorted(options, key=list(OPTIONS).index))
            raise BadInput(f"{named}: {problem}") from None
        if field in given:
            raise BadInput(f"{OPTIONS.get(field, field)}: {problem}") from None
        raise BadInput(f"{where}: field '{field}': {problem}") from None


def _safe_name(stem: str) -> str:
    name = "".join(c if c.isalnum() or c in "_.-" else "-" for c in stem)
    return name if name and name[0].isalnum() else f"app-{name}"
