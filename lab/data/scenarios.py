"""Scenarios: one TOML file each in scenarios/, validated on load."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from lab.data import fixes, profiles
from lab.data.errors import BadInput
from lab.data.kinds import BROKERS, CLIENTS, BrokerKind, ClientKind
from lab.data.paths import relative, scenarios_dir
from lab.data.tomlfile import NamedFile, Paragraph, load_model

NO_PROXY = "none"
OTHER_FIXES = "others"


class Outcome(StrEnum):
    completed = "completed"  # the UI reached the final state
    hung = "hung"  # the task had finished a hang window ago and the UI still showed it running
    errored = "errored"  # the UI got an error and stopped
    leaked = "leaked"  # the UI showed someone else's task (a shared cache served it)


NOT_APPLICABLE = "n/a"  # an expected value: this fix does not apply to the scenario; not run

# What a scenario file may expect: an outcome, or n/a.
Expectation = StrEnum(
    "Expectation", {**{o.name: o.value for o in Outcome}, "not_applicable": NOT_APPLICABLE}
)


class AppSetup(BaseModel):
    """How the sample app is set up for the scenario (the defaults are the story's app)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # "path": /tasks/<id>/status; "query": /status?task_id=<id> (the task id in the query).
    status_url_style: Literal["path", "query"] = "path"
    # Celery stores no results: Flask's own Celery pattern sets task_ignore_result=True.
    ignore_result: bool = False
    # The app's own caching headers on every status answer, whatever the fix: what the app
    # sends before anyone "fixes" it (a framework default, a middleware, someone's idea of a
    # safe setting). They are set before the fix's headers, so a fix's header of the same name
    # wins. None (the story's app): no such header unless the fix sends one.
    # Cache-Control, e.g. "max-age=30": "cache briefly", which a browser's own cache obeys.
    status_cache_control: Annotated[str, Field(min_length=1)] | None = None
    # A Last-Modified this many seconds in the past: with no explicit freshness, any cache may
    # apply heuristic freshness to the answer (RFC 9111 4.2.2), the browser's own included.
    status_last_modified_age_s: Annotated[float, Field(ge=0)] | None = None


class WorkerSetup(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    running: bool = True  # false: no worker at all, nobody takes the task
    task_never_finishes: bool = False  # the task blocks forever once started
    # The bug may kill the worker (Celery exits with "Unrecoverable error" when a full Redis
    # refuses even its acknowledgements): then its exit is part of the evidence, not exit 3.
    may_exit: bool = False


class ResultsSetup(BaseModel):
    """How long Celery keeps results ([results] in a scenario file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Celery's result_expires in seconds; None: Celery's default (1 day); 0: never (the keys
    # stay until someone deletes them). Fix "result-expires" overrides it.
    expires_s: Annotated[float, Field(ge=0)] | None = None


class RedisSetup(BaseModel):
    """The lab's own redis-server for this scenario ([redis]; --broker redis without a URL)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # redis.conf syntax: "0" (no cap), "2mb", "512kb"...
    maxmemory: Annotated[str, Field(pattern=r"^[0-9]+(b|kb|mb|gb)?$")] = "0"
    maxmemory_policy: Literal[
        "noeviction",
        "allkeys-lru",
        "allkeys-lfu",
        "allkeys-random",
        "volatile-lru",
        "volatile-lfu",
        "volatile-random",
        "volatile-ttl",
    ] = "noeviction"


class LoadSetup(BaseModel):
    """Other traffic on the app before the UI's task ([load]): a stream of tasks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tasks: Annotated[int, Field(ge=0, le=10_000)] = 0
    per_second: Annotated[float, Field(gt=0, le=1000)] = 20.0
    # Each task returns a report this big (KiB): what the result backend then holds.
    report_kb: Annotated[int, Field(ge=0, le=1024)] = 0
    # false: nobody polls these tasks (API clients, cron jobs, users who closed the tab).
    watched: bool = False
    # The page's own task carries the user's document of this many KiB in its message (an
    # upload): a nearly full Redis refuses it while it still takes the small API messages.
    page_document_kb: Annotated[int, Field(ge=0, le=4096)] = 0


TlsMode = Literal["tunnel", "inspect", "edge"]
TLS_PROXY_MODES: dict[str, str] = {"tunnel": "forward", "inspect": "forward", "edge": "reverse"}


class Scenario(NamedFile):
    situation: Annotated[Paragraph, Field(min_length=1)]
    lesson: Paragraph = ""
    proxy: str
    task_duration: Annotated[float, Field(ge=0, le=600)] = 1.0
    poll_interval: Annotated[float, Field(gt=0, le=60)] = 0.25
    hang_window: Annotated[float, Field(gt=0, le=600)] = 3.0
    app: AppSetup = AppSetup()
    worker: WorkerSetup = WorkerSetup()
    # Other users polling through the same proxy, each starting a task just before this one.
    neighbours: Annotated[int, Field(ge=0, le=5)] = 0
    results: ResultsSetup = ResultsSetup()
    # Which brokers the scenario runs on (--broker); the first is the default.
    brokers: Annotated[list[BrokerKind], Field(min_length=1)] = list(BROKERS)
    redis: RedisSetup = RedisSetup()
    load: LoadSetup = LoadSetup()
    # HTTPS on the poll's path (None: plain HTTP). The app serves HTTPS with a certificate of the
    # run's origin CA, and the proxy (a forward profile) "tunnel"s: passes CONNECT through, sees
    # nothing; or "inspect"s: terminates TLS with the run's gateway CA, which the client trusts
    # as a managed laptop does. A reverse profile's "edge" terminates TLS with a certificate of
    # the origin CA for the name the client uses and fetches from the app over HTTPS.
    tls: TlsMode | None = None
    # Which clients reproduce it: a scenario about the browser's own HTTP cache is "browser"
    # only, since the Python client has no HTTP cache of its own to be fooled by.
    clients: list[ClientKind] = list(CLIENTS)
    # Why a client is left out, or why its outcome may differ (shown by lab list / the matrix).
    client_notes: str = ""
    # The UI's verdict for each fix; `others` covers the poll fixes not named; result backend
    # fixes (sample_app/result_fixes.py) not named do not apply; "n/a": not run.
    expected: dict[str, Expectation]
    # Where one client's outcome differs (say why in client_notes), e.g.
    # [expected_by_client.browser] last-modified = "hung": the browser's own cache.
    expected_by_client: dict[ClientKind, dict[str, Expectation]] = {}

    @field_validator("summary")
    @classmethod
    def one_line(cls, value: str) -> str:
        if "\n" in value.strip():
            raise ValueError("must be one line")
        return value.strip()

    @field_validator("proxy")
    @classmethod
    def known_profile(cls, value: str) -> str:
        if value != NO_PROXY and value not in profiles.names():
            known = ", ".join([NO_PROXY, *profiles.names()])
            raise ValueError(f"unknown proxy profile (known: {known})")
        return value

    @field_validator("expected")
    @classmethod
    def known_fixes(cls, value: dict[str, Expectation]) -> dict[str, Expectation]:
        known = fixes.names()
        for fix in value:
            if fix != OTHER_FIXES and fix not in known:
                raise ValueError(f"unknown fix {fix!r} (known: {', '.join(known)}, {OTHER_FIXES})")
        missing = [fix for fix in fixes.poll_fixes() if fix not in value]
        if missing and OTHER_FIXES not in value:
            raise ValueError(
                f"no expected outcome for {', '.join(missing)} (or add '{OTHER_FIXES}')"
            )
        return value

    @field_validator("hang_window")
    @classmethod
    def longer_than_a_poll(cls, value: float, info: ValidationInfo) -> float:
        poll_interval = info.data.get("poll_interval")
        if poll_interval is not None and value <= poll_interval:
            raise ValueError(f"must be longer than poll_interval ({poll_interval:g} s)")
        return value

    @field_validator("tls")
    @classmethod
    def tls_fits_the_profile(cls, value: str | None, info: ValidationInfo) -> str | None:
        proxy = info.data.get("proxy")
        if value is None or proxy is None:
            return value
        if proxy == NO_PROXY:
            raise ValueError("needs a proxy profile (tunnel, inspect: forward; edge: reverse)")
        mode = profiles.described(proxy).mode
        if TLS_PROXY_MODES[value] != mode:
            raise ValueError(
                f"{value!r} needs a {TLS_PROXY_MODES[value]} proxy profile; {proxy!r} is {mode}"
            )
        return value

    @property
    def uses_proxy(self) -> bool:
        return self.proxy != NO_PROXY

    @property
    def over_plain_http(self) -> bool:
        """Polled over plain HTTP: what `lab probe`, `lab verify` and the audit's advice compare
        with (an HTTPS scenario's path differs: a tunnel hides everything from its cache)."""
        return self.tls is None

    @field_validator("expected_by_client")
    @classmethod
    def known_client_fixes(
        cls, value: dict[str, dict[str, Expectation]]
    ) -> dict[str, dict[str, Expectation]]:
        known = fixes.names()
        for client, overrides in value.items():
            for fix in overrides:
                if fix not in known:
                    raise ValueError(f"{client}: unknown fix {fix!r} (known: {', '.join(known)})")
        return value

    def expected_for(self, fix: str, client: str = "python") -> Outcome:
        """The expected outcome; BadInput if the fix does not apply to this scenario."""
        value = (
            self.expected_by_client.get(client, {}).get(fix)  # type: ignore[call-overload]
            or self._expected(fix)
        )
        if value == NOT_APPLICABLE:
            raise BadInput(f"fix {fix!r} does not apply to scenario {self.name!r}")
        return Outcome(value.value)

    def runs_with(self, client: str) -> bool:
        return client in self.clients

    def _expected(self, fix: str) -> str:
        if fix in self.expected:
            return self.expected[fix]
        if fixes.is_result_fix(fix):
            return NOT_APPLICABLE
        return self.expected[OTHER_FIXES]

    def applies(self, fix: str) -> bool:
        return self._expected(fix) != NOT_APPLICABLE

    def runs_on(self, broker: str) -> bool:
        return broker in self.brokers

    @property
    def default_broker(self) -> str:
        return self.brokers[0]

    @property
    def fixes(self) -> list[str]:
        """The fixes that apply: poll fixes in strategies.json's order, then result fixes."""
        return [fix for fix in fixes.names() if self.applies(fix)]


def path_for(name_or_path: str) -> Path:
    if name_or_path.endswith(".toml") or "/" in name_or_path:
        return Path(name_or_path)
    return scenarios_dir() / f"{name_or_path}.toml"


def names() -> list[str]:
    return sorted(path.stem for path in scenarios_dir().glob("*.toml"))


def load(name_or_path: str) -> Scenario:
    path = path_for(name_or_path)
    if not path.exists() and not name_or_path.endswith(".toml") and "/" not in name_or_path:
        raise BadInput(f"unknown scenario {name_or_path!r} (known: {', '.join(names())})")
    scenario = load_model(path, Scenario)
    if scenario.name != path.stem:
        raise BadInput(
            f"{relative(path)}: field 'name': {scenario.name!r} must match the file name "
            f"{path.stem!r}"
        )
    return scenario


def load_all() -> list[Scenario]:
    return [load(name) for name in names()]
