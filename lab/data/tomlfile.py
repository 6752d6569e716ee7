"""Load a TOML data file into a pydantic model, with one-line errors naming file and field."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from lab.data.errors import BadInput
from lab.data.paths import relative

M = TypeVar("M", bound=BaseModel)

# TOML multi-line strings keep the file's line breaks; the text is one paragraph.
Paragraph = Annotated[str, AfterValidator(lambda value: " ".join(value.split()))]


class NamedFile(BaseModel):
    """How a scenario or proxy profile file starts: its name (the file's stem) and a summary."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]
    summary: Annotated[str, Field(min_length=1, max_length=120)]


def load_model(path: Path, model: type[M]) -> M:
    where = relative(path)
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise BadInput(f"{where}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"{where}: TOML syntax error: {exc}") from None
    except UnicodeDecodeError as exc:
        raise BadInput(f"{where}: not UTF-8 text: {exc}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(file)"
        problem = first["msg"].removeprefix("Value error, ")  # a validator's own words
        if first["type"] != "missing" and not isinstance(first.get("input", {}), dict | list):
            problem += f" (got {first['input']!r})"
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise BadInput(f"{where}: field '{field}': {problem}{more}") from None
