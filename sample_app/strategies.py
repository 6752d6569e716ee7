"""Fix strategies, loaded from strategies.json: the single definition shared by the page's
JavaScript, the server and the lab's Python client."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode

NONCE_BYTES = 8  # the page uses the same length (16 hex digits)


@dataclass(frozen=True)
class Strategy:
    name: str
    summary: str
    nonce_param: str | None = None
    request_headers: dict[str, str] = field(default_factory=dict)
    response_headers: dict[str, str] = field(default_factory=dict)

    def poll_target(self, status_path: str, nonce: str | None = None) -> str:
        """The path and query of one poll, exactly as the page builds it."""
        if not self.nonce_param:
            return status_path
        return f"{status_path}?{urlencode({self.nonce_param: nonce or new_nonce()})}"


@dataclass(frozen=True)
class StrategyBook:
    final_states: frozenset[str]
    status_path: str
    strategies: dict[str, Strategy]

    def get(self, name: str) -> Strategy:
        try:
            return self.strategies[name]
        except KeyError:
            known = ", ".join(self.strategies)
            raise KeyError(f"unknown fix strategy {name!r} (known: {known})") from None

    def status_path_for(self, task_id: str) -> str:
        # quote() matches the page's encodeURIComponent for anything a task id may hold.
        return self.status_path.format(task_id=quote(task_id, safe=""))


def new_nonce() -> str:
    return secrets.token_hex(NONCE_BYTES)


def raw_definitions() -> dict[str, Any]:
    """The JSON document as is, for embedding in the page."""
    text = resources.files("sample_app").joinpath("strategies.json").read_text("utf-8")
    return json.loads(text)


@cache
def load() -> StrategyBook:
    raw = raw_definitions()
    strategies = {
        name: Strategy(
            name=name,
            summary=spec["summary"],
            nonce_param=spec.get("nonce_param"),
            request_headers=dict(spec.get("request_headers", {})),
            response_headers=dict(spec.get("response_headers", {})),
        )
        for name, spec in raw["strategies"].items()
    }
    return StrategyBook(
        final_states=frozenset(raw["final_states"]),
        status_path=raw["status_path"],
        strategies=strategies,
    )


def names() -> list[str]:
    return list(load().strategies)
