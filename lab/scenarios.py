"""Scenarios: one TOML file each in scenarios/, validated on load."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from lab import profiles
from lab.errors import BadInput
from lab.paths import relative, scenarios_dir
from lab.tomlfile import load_model
from sample_app import strategies

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


class WorkerSetup(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    running: bool = True  # false: no worker at all, nobody takes the task
    task_never_finishes: bool = False  # the task blocks forever once started


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]
    summary: Annotated[str, Field(min_length=1, max_length=120)]
    situation: Annotated[str, Field(min_length=1)]
    lesson: str = ""
    proxy: str
    task_duration: Annotated[float, Field(ge=0, le=600)] = 1.0
    poll_interval: Annotated[float, Field(gt=0, le=60)] = 0.25
    hang_window: Annotated[float, Field(gt=0, le=600)] = 3.0
    app: AppSetup = AppSetup()
    worker: WorkerSetup = WorkerSetup()
    # Other users polling through the same proxy, each starting a task just before this one.
    neighbours: Annotated[int, Field(ge=0, le=5)] = 0
    # Which clients reproduce it: a scenario about the browser's own HTTP cache is "browser"
    # only, since the Python client has no HTTP cache of its own to be fooled by.
    clients: list[Literal["python", "browser"]] = ["python", "browser"]
    # Why a client is left out, or why its outcome may differ (shown by lab list / the matrix).
    client_notes: str = ""
    # The UI's verdict for each fix strategy; `others` covers fixes not named; "n/a": not run.
    expected: dict[str, Expectation]
    # Where one client's outcome differs (say why in client_notes), e.g.
    # [expected_by_client.browser] last-modified = "hung": the browser's own cache.
    expected_by_client: dict[Literal["python", "browser"], dict[str, Expectation]] = {}

    @field_validator("summary")
    @classmethod
    def one_line(cls, value: str) -> str:
        if "\n" in value.strip():
            raise ValueError("must be one line")
        return value.strip()

    @field_validator("situation", "lesson")
    @classmethod
    def fold_paragraph(cls, value: str) -> str:
        # TOML multi-line strings keep the file's line breaks; the text is one paragraph.
        return " ".join(value.split())

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
        known = strategies.names()
        for fix in value:
            if fix != OTHER_FIXES and fix not in known:
                raise ValueError(f"unknown fix {fix!r} (known: {', '.join(known)}, {OTHER_FIXES})")
        missing = [fix for fix in known if fix not in value]
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

    @property
    def uses_proxy(self) -> bool:
        return self.proxy != NO_PROXY

    @field_validator("expected_by_client")
    @classmethod
    def known_client_fixes(
        cls, value: dict[str, dict[str, Expectation]]
    ) -> dict[str, dict[str, Expectation]]:
        known = strategies.names()
        for client, overrides in value.items():
            for fix in overrides:
                if fix not in known:
                    raise ValueError(f"{client}: unknown fix {fix!r} (known: {', '.join(known)})")
        return value

    def expected_for(self, fix: str, client: str = "python") -> Outcome:
        """The expected outcome; BadInput if the fix does not apply to this scenario."""
        value = (
            self.expected_by_client.get(client, {}).get(fix)  # type: ignore[call-overload]
            or self.expected.get(fix)
            or self.expected[OTHER_FIXES]
        )
        if value == NOT_APPLICABLE:
            raise BadInput(f"fix {fix!r} does not apply to scenario {self.name!r}")
        return Outcome(value.value)

    def runs_with(self, client: str) -> bool:
        return client in self.clients

    def applies(self, fix: str) -> bool:
        return (self.expected.get(fix) or self.expected[OTHER_FIXES]) != NOT_APPLICABLE

    @property
    def fixes(self) -> list[str]:
        """The fixes that apply, in the order strategies.json lists them."""
        return [fix for fix in strategies.names() if self.applies(fix)]


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
