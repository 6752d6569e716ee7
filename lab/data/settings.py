"""Every `LAB_*` environment variable the lab reads, in one place, checked once per process.

A bad value is bad input (exit 2, one line naming the variable), found before anything starts:
the CLI reads the settings first. The README's table lists them with their defaults.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, PositiveFloat, PositiveInt, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lab.data.errors import BadInput

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ENV_PREFIX = "LAB_"
DEFAULT_RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"
RABBITMQ_SCHEMES = ("amqp", "pyamqp")


def _profiles_folder() -> Path:
    import proxies  # the profiles ship inside the proxies package, wherever it is installed

    return Path(proxies.__file__).parent / "profiles"


class LabSettings(BaseSettings):
    # An empty variable counts as unset, as `VAR= lab ...` means to a shell user.
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, frozen=True)

    scenarios_dir: Path = PROJECT_ROOT / "scenarios"
    profiles_dir: Path = Field(default_factory=_profiles_folder)
    runs_dir: Path = Path("runs")
    # Seconds a component (worker, app, proxy, browser) may take to say it is ready.
    start_timeout: PositiveFloat = 30.0
    mitmdump: str | None = None  # the mitmdump to run; None: lab-mitmdump beside Python, or on PATH
    rabbitmq_url: str = DEFAULT_RABBITMQ_URL
    chromium: str | None = None  # the Chromium executable; None: looked for (lab.clients.browser)
    # Pages opened at once: opening one costs a renderer process's start-up and a dozen protocol
    # round trips; on 2 cores, 48 at once took 30 s each, a few at a time well under a second.
    browser_opening: PositiveInt = 4
    # Seconds between two looks for dispatched cells whose message is lost (in no queue and
    # with no agent): one found so twice in a row is sent again (lab.runs.lost_cells).
    lost_cell_check: PositiveFloat = 10.0
    # The sample app's servers and workers are forked from one process that imported Celery
    # and Flask once (lab.stacks.forkserver); false: each is a new interpreter.
    forkserver: bool = True

    @field_validator("rabbitmq_url")
    @classmethod
    def amqp_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in RABBITMQ_SCHEMES:
            raise ValueError(
                f"a rabbitmq URL starts with {' or '.join(s + '://' for s in RABBITMQ_SCHEMES)}"
            )
        return value


@cache
def current() -> LabSettings:
    """The settings of this process, read from the environment on first use. Tests that change
    a variable call `current.cache_clear()` (tests/conftest.py does it around every test)."""
    try:
        return LabSettings()
    except ValidationError as exc:
        raise BadInput("; ".join(_one_line(error) for error in exc.errors())) from None


def _one_line(error: dict) -> str:
    variable = ENV_PREFIX + str(error["loc"][0]).upper() if error["loc"] else "LAB_*"
    value = _without_password(str(error["input"]))
    problem = error["msg"].removeprefix("Value error, ")
    return f"{variable}={value!r}: {problem[0].lower()}{problem[1:]}"


def _without_password(value: str) -> str:
    password = urlsplit(value).password
    return value.replace(f":{password}@", ":***@") if password else value
