"""Registry of misbehaviours: every module in this package that defines a `Misbehaviour`
subclass with a `name` is found by that name, so adding a misbehaviour is adding a file."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from pydantic import ValidationError

from proxies.misbehaviours.base import Misbehaviour, Scope


class MisbehaviourError(ValueError):
    """A misbehaviour spec that names no known misbehaviour or has bad parameters."""


@cache
def registry() -> dict[str, type[Misbehaviour]]:
    found: dict[str, type[Misbehaviour]] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Misbehaviour) and cls is not Misbehaviour and "name" in vars(cls):
                if cls.name in found and found[cls.name] is not cls:
                    raise MisbehaviourError(f"two misbehaviours are named {cls.name!r}")
                found[cls.name] = cls
    return dict(sorted(found.items()))


def build_one(spec: Mapping[str, Any], where: str = "misbehaviour") -> Misbehaviour:
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        raise MisbehaviourError(f"{where}: needs a 'name' (one of {', '.join(registry())})")
    name = spec["name"]
    cls = registry().get(name)
    if cls is None:
        raise MisbehaviourError(
            f"{where}: unknown misbehaviour {name!r} (known: {', '.join(registry())})"
        )
    scope = {k: v for k, v in spec.items() if k in Scope.fields()}
    params = {k: v for k, v in spec.items() if k != "name" and k not in Scope.fields()}
    try:
        return cls(cls.Params.model_validate(params), Scope.model_validate(scope))
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(params)"
        raise MisbehaviourError(f"{where} ({name}): field '{field}': {first['msg']}") from None


def build(specs: Sequence[Mapping[str, Any]]) -> list[Misbehaviour]:
    if not isinstance(specs, Sequence) or isinstance(specs, str):
        raise MisbehaviourError("misbehaviours must be a list of {name = ..., params...} tables")
    return [build_one(spec, f"misbehaviours[{i}]") for i, spec in enumerate(specs)]


__all__ = ["Misbehaviour", "MisbehaviourError", "Scope", "build", "build_one", "registry"]
