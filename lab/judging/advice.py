"""What `lab audit` recommends beside its verdicts: which fixes from the catalogue
(sample_app/strategies.json) the lab's own scenario files expect to survive the audited proxy
profiles, with the exact headers to send; and, from lab/judging/header_lint.py, what an HTTP
linter says of the app's own status answer. Pure functions: nothing here starts or reads a run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from lab.data import profiles
from lab.data import scenarios as scenario_files
from lab.data.errors import BadInput
from lab.data.scenarios import (
    AppSetup,
    LoadSetup,
    Outcome,
    RedisSetup,
    ResultsSetup,
    Scenario,
    WorkerSetup,
)
from lab.judging.header_lint import HeaderNote, freshness_summary, lint_response
from sample_app import strategies
from sample_app.strategies import PollSpec, Strategy

__all__ = [
    "Failure",
    "FixAdvice",
    "HeaderNote",
    "Recommendation",
    "counts",
    "freshness_summary",
    "kind_of",
    "lint_response",
    "recommend",
]

Kind = Literal["server", "client", "both"]
CLIENT = "python"  # the scenario files' expectations this advice reads
# The story's app and the anti-fix: the lab shows them failing, it never recommends them.
NEVER_RECOMMENDED = ("none", "last-modified")
RANKING_RULE = "fewest headers, then fewest httplint warnings, then the catalogue's order"


@dataclass(frozen=True)
class Failure:
    profile: str
    scenario: str | None  # None: no counted scenario of this profile applies the fix
    expected: str  # an Outcome, or "unchecked"


@dataclass(frozen=True)
class FixAdvice:
    fix: str
    kind: Kind
    summary: str
    headers: tuple[tuple[str, str], ...]  # on every status answer, exactly
    server_also: tuple[str, ...]  # what else the server must do (answer If-None-Match...)
    failures: tuple[Failure, ...]  # where a counted scenario expects something but completed
    # httplint's warnings and bad notes on an answer with these headers (server-side only)
    lint_warnings: int | None

    @property
    def survives(self) -> bool:
        return not self.failures

    def header_text(self) -> str:
        return "; ".join(f"{name}: {value}" for name, value in self.headers) or "(no headers)"


@dataclass(frozen=True)
class Recommendation:
    profiles: tuple[str, ...]  # as audited
    checked: dict[str, tuple[str, ...]]  # profile -> the counted scenarios that stand for it
    plain_app: dict[str, str]  # checked profile -> what the plain app ("none") is expected to do
    retry_needed_on: tuple[str, ...]  # where the plain app errored: the fixes also retry
    server_fixes: tuple[FixAdvice, ...]  # survivors first, in RANKING_RULE's order
    client_fixes: tuple[FixAdvice, ...]  # client-side or both, survivors first

    @property
    def unknown_profiles(self) -> tuple[str, ...]:
        return tuple(p for p in self.profiles if p not in self.checked)

    @property
    def survivors(self) -> tuple[FixAdvice, ...]:
        """The server-side fixes that survive every checked profile; none when none is checked."""
        return tuple(f for f in self.server_fixes if f.survives) if self.checked else ()

    @property
    def client_survivors(self) -> tuple[FixAdvice, ...]:
        return tuple(f for f in self.client_fixes if f.survives) if self.checked else ()

    @property
    def first(self) -> FixAdvice | None:
        return self.survivors[0] if self.survivors else None

    def lines(self) -> list[str]:
        lines = []
        if self.checked:
            failing = [f"{o} behind {p}" for p, o in self.plain_app.items() if o != "completed"]
            plain = ", ".join(failing) or "completed behind every checked profile"
            lines.append(f"A plain app (no cache headers, no retry) is expected to end {plain}.")
        if self.first:
            lines.append(f"Recommended: send {self.first.header_text()} on every status answer")
            lines += [f"  and {also}" for also in self.first.server_also]
            lines.append(f"  (fix {self.first.fix!r}: of the survivors, {RANKING_RULE}).")
            others = [f"{f.fix} ({f.header_text()})" for f in self.survivors[1:]]
            if others:
                lines.append(f"Also survive: {', '.join(others)}.")
        elif self.checked:
            lines.append("No server-side fix from the catalogue survives every audited profile.")
        failing = [f for f in self.server_fixes if not f.survives] if self.checked else []
        if failing:
            lines.append("Fail: " + "; ".join(f"{f.fix} ({_where(f)})" for f in failing) + ".")
        if self.client_survivors:
            names = ", ".join(
                f.fix + (" (both sides)" if f.kind == "both" else "") for f in self.client_survivors
            )
            lines.append(f"Client-side fixes that survive: {names}.")
        if self.retry_needed_on:
            retry = strategies.load().get((self.first or self.server_fixes[0]).fix).retry
            lines.append(
                f"Behind {', '.join(self.retry_needed_on)} the plain app errored on a failed poll: "
                f"the fixes also retry (up to {retry.attempts} times, {retry.initial_ms} ms "
                f"apart, x{retry.factor:g} each time); retry too."
            )
        for profile in self.unknown_profiles:
            lines.append(f"{profile}: no checked knowledge: audit it with the client fixes.")
        return lines

    def to_json(self) -> dict[str, Any]:
        def fix_json(advice: FixAdvice) -> dict[str, Any]:
            return {
                "fix": advice.fix,
                "kind": advice.kind,
                "survives": advice.survives,
                "headers": dict(advice.headers),
                "server_also": list(advice.server_also),
                "failures": [vars(failure) for failure in advice.failures],
                "lint_warnings": advice.lint_warnings,
            }

        return {
            "profiles": list(self.profiles),
            "checked": {p: list(s) for p, s in self.checked.items()},
            "unknown_profiles": list(self.unknown_profiles),
            "plain_app": dict(self.plain_app),
            "retry_needed_on": list(self.retry_needed_on),
            "recommended": self.first.fix if self.first else None,
            "ranking": RANKING_RULE,
            "survivors": [f.fix for f in self.survivors],
            "client_survivors": [f.fix for f in self.client_survivors],
            "server_fixes": [fix_json(f) for f in self.server_fixes],
            "client_fixes": [fix_json(f) for f in self.client_fixes],
        }


def _where(advice: FixAdvice) -> str:
    return ", ".join(f"{f.expected} behind {f.profile}" for f in advice.failures)


def counts(scenario: Scenario) -> bool:
    """A scenario that stands for a plain app behind its profile: the story's app, worker and
    results, no other traffic, no neighbours, run by the python client, over plain HTTP (an
    HTTPS scenario is about what TLS hides from the profile, not about the profile)."""
    return (
        scenario.uses_proxy
        and scenario.over_plain_http
        and scenario.app == AppSetup()
        and scenario.worker == WorkerSetup()
        and scenario.results == ResultsSetup()
        and scenario.redis == RedisSetup()
        and scenario.load == LoadSetup()
        and scenario.neighbours == 0
        and scenario.runs_with(CLIENT)
    )


def kind_of(strategy: Strategy) -> Kind:
    """server: the poll is the plain GET of "none", only the answer differs; client: only the
    poll differs; both: each side changes (sse: a stream endpoint and EventSource;
    belt-and-braces: a nonce and headers)."""
    plain_poll = (
        strategy.transport == "poll" and strategy.poll == PollSpec() and not strategy.detect_stale
    )
    plain_answer = strategy.transport == "poll" and not (
        strategy.response_headers or strategy.etag or strategy.last_modified_age_s is not None
    )
    if plain_poll:
        return "server"
    return "client" if plain_answer else "both"


def recommend(
    profiles_audited: Sequence[str], *, scenarios: Sequence[Scenario] | None = None
) -> Recommendation:
    """Which fixes the scenario files expect to survive every audited profile (python client).
    `scenarios`: all of scenarios/ by default."""
    audited = tuple(dict.fromkeys(profiles_audited))
    if not audited:
        raise BadInput("no proxy profile to recommend a fix for")
    known = profiles.names()
    for name in audited:
        if name not in known:
            raise BadInput(f"unknown proxy profile {name!r} (known: {', '.join(known)})")
    every = scenario_files.load_all() if scenarios is None else scenarios
    counted = [s for s in every if counts(s)]
    by_profile = {p: [s for s in counted if s.proxy == p] for p in audited}
    by_profile = {p: found for p, found in by_profile.items() if found}
    book = strategies.load()
    advice = [
        _advise(book.get(fix), by_profile)
        for fix in book.strategies
        if fix not in NEVER_RECOMMENDED
    ]
    server = [a for a in advice if a.kind == "server"]
    server.sort(key=lambda a: (not a.survives, len(a.headers), a.lint_warnings))
    client = sorted((a for a in advice if a.kind != "server"), key=lambda a: not a.survives)
    plain_app = {
        p: _worst(s.expected_for("none", CLIENT) for s in found if s.applies("none"))
        for p, found in by_profile.items()
    }
    return Recommendation(
        profiles=audited,
        checked={p: tuple(s.name for s in ss) for p, ss in by_profile.items()},
        plain_app=plain_app,
        retry_needed_on=tuple(p for p, o in plain_app.items() if o == Outcome.errored),
        server_fixes=tuple(server),
        client_fixes=tuple(client),
    )


def _advise(strategy: Strategy, by_profile: dict[str, list[Scenario]]) -> FixAdvice:
    failures = []
    for profile, scenarios in by_profile.items():
        applying = [s for s in scenarios if s.applies(strategy.name)]
        if not applying:
            failures.append(Failure(profile, None, "unchecked"))
        for scenario in applying:
            expected = scenario.expected_for(strategy.name, CLIENT)
            if expected != Outcome.completed:
                failures.append(Failure(profile, scenario.name, expected.value))
    headers, also = _server_side(strategy)
    kind = kind_of(strategy)
    return FixAdvice(
        fix=strategy.name,
        kind=kind,
        summary=strategy.summary,
        headers=headers,
        server_also=also,
        failures=tuple(failures),
        lint_warnings=_lint_warnings(headers) if kind == "server" else None,
    )


def _server_side(strategy: Strategy) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    headers = list(strategy.response_headers.items())
    also = []
    if strategy.etag:
        headers.append(("ETag", '"<a hash of the status body>"'))
        also.append(
            "answer a GET whose If-None-Match holds that ETag with 304 Not Modified (no body, "
            "same ETag and Cache-Control); hash only what a poll must notice (task id, state, "
            "result), not a timestamp, or no answer is ever a 304"
        )
    if strategy.last_modified_age_s is not None:
        headers.append(("Last-Modified", f"<{strategy.last_modified_age_s} s before the answer>"))
    if strategy.transport == "sse":
        book = strategies.load()
        headers = list(book.events_response_headers.items())
        also.append(f"serve the status as a Server-Sent Events stream at {book.events_path}")
    return tuple(headers), tuple(also)


def _lint_warnings(headers: tuple[tuple[str, str], ...]) -> int:
    # A fixed Date, so "no Date" does not count against every fix alike.
    answer = [
        ("Content-Type", "application/json"),
        ("Date", "Mon, 01 Jan 2024 00:00:00 GMT"),
        *((name, 'W/"0"' if name == "ETag" else value) for name, value in headers),
    ]
    notes = lint_response(200, answer, b'{"state": "PENDING"}')
    return sum(note.level in ("warning", "bad") for note in notes)


def _worst(outcomes: Iterable[Outcome]) -> str:
    """The first outcome that is not completed; "unchecked" when there is none to read."""
    found = [outcome.value for outcome in outcomes]
    return next((o for o in found if o != Outcome.completed), found[0] if found else "unchecked")
