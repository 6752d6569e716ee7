"""Which of the lab's proxy profiles behaves like the path `lab probe` saw: for each profile,
the outcomes its scenario file expects (and the matrix checks) for the strategies the probe
tested, read as the probe's verdicts, compared with what the probe observed.

A matrix cell runs the page with a real task for seconds; the probe polls a counter for two.
They say the same thing in different words, which MATRIX_TO_PROBE translates: a page that
`hung` was answered from a cache (`cached`); one that `leaked` was too, with another user's
answer, which a probe that is one user sees as its own answer frozen; `completed` means every
poll got through (`fresh`); `errored`, that the page gave up on failed polls (`error`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lab.data import scenarios
from lab.data.scenarios import Outcome, Scenario

CLIENT = "python"  # the probe polls as the lab's Python client does
MATRIX_TO_PROBE = {
    Outcome.hung: "cached",
    Outcome.leaked: "cached",
    Outcome.completed: "fresh",
    Outcome.errored: "error",
}


@dataclass(frozen=True)
class ProfileMatch:
    profile: str
    scenario: str
    agree: int
    of: int
    differ: dict[str, tuple[str, str]]  # strategy -> (the profile's verdict, the observed one)

    def to_json(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "scenario": self.scenario,
            "agree": self.agree,
            "of": self.of,
            "differ": {s: {"profile": p, "observed": o} for s, (p, o) in self.differ.items()},
        }


def expected_verdicts(scenario: Scenario, tested: list[str]) -> dict[str, str]:
    """The probe's verdict for each tested strategy as the scenario's matrix cell expects it;
    strategies that do not apply to the scenario are left out."""
    return {
        strategy: MATRIX_TO_PROBE[scenario.expected_for(strategy, CLIENT)]
        for strategy in tested
        if scenario.applies(strategy)
    }


def proxy_scenarios() -> list[Scenario]:
    """The scenarios that put a proxy profile on the path, as the Python matrix runs them, over
    plain HTTP (https-tunnel would make corporate-cache look like no cache at all)."""
    return [
        s
        for s in scenarios.load_all()
        if s.uses_proxy and s.runs_with(CLIENT) and s.over_plain_http
    ]


def match_profiles(
    observed: Mapping[str, str], candidates: list[Scenario] | None = None
) -> list[ProfileMatch]:
    """Every profile scored by how many tested strategies agree, best first (then by name);
    a profile with several scenarios is scored by its best one."""
    best: dict[str, ProfileMatch] = {}
    for scenario in proxy_scenarios() if candidates is None else candidates:
        expected = expected_verdicts(scenario, list(observed))
        differ = {s: (v, observed[s]) for s, v in expected.items() if v != observed[s]}
        match = ProfileMatch(
            scenario.proxy, scenario.name, len(expected) - len(differ), len(expected), differ
        )
        held = best.get(match.profile)
        if held is None or (match.agree, -match.of) > (held.agree, -held.of):
            best[match.profile] = match
    return sorted(best.values(), key=lambda m: (-(m.agree / max(m.of, 1)), -m.agree, m.profile))


def best_matches(matches: list[ProfileMatch]) -> list[ProfileMatch]:
    """The profiles that tie for the best share of agreeing strategies."""
    if not matches:
        return []
    top = matches[0].agree / max(matches[0].of, 1)
    return [m for m in matches if m.agree / max(m.of, 1) == top]
