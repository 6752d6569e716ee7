"""Load a TOML data file into a pydantic model, with one-line errors naming file and field."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from lab.data.errors import BadInput
from lab.data.paths import relative

M = TypeVar("M", bound=BaseModel)


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
        problem = first["msg"]
        if first["type"] != "missing" and not isinstance(first.get("input", {}), dict | list):
            problem += f" (got {first['input']!r})"
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise BadInput(f"{where}: field '{field}': {problem}{more}") from None
