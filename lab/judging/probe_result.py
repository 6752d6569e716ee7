"""`lab probe`'s whole result: the per-strategy verdicts (lab/judging/probe.py), the signs on
the path, the lab profiles that behave alike (lab/judging/probe_match.py), the one-line summary
and the exit code; or, for a URL that is no probe endpoint, the two-request check and how much
less it can tell."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lab.clients.probe import Answer, FirstLook, StrategyRun
from lab.clients.probe_route import redacted
from lab.clients.probe_tls import TlsFacts
from lab.judging.probe import (
    CACHED,
    PathSigns,
    StrategyVerdict,
    judge_strategy,
    path_signs,
    summary_line,
)
from lab.judging.probe_match import ProfileMatch, best_matches, match_profiles

EXIT_NO_CACHE = 0
EXIT_CACHED = 1
PLAIN_LIMITS = (
    "this URL has no probe endpoint, so only two requests were compared: a page that does not "
    "change looks the same from a cache as from the server unless an answer carries Age, "
    "X-Cache or an old Date; no fix was tested, and this URL's own cache headers (not your "
    "status endpoint's) decide what a cache may do with it. Mount the probe endpoint "
    "(cache_probe) in the app for the full test."
)
HIT_HEADERS = ("x-cache", "x-cache-status", "cf-cache-status", "x-cache-lookup")
COMPARED = ("status", "date", "age", "etag", "last-modified", "cache-control", "via", "x-cache")


@dataclass
class PlainCheck:
    """The same URL twice: was the second answer made anew?"""

    verdict: str  # cached | fresh | unknown
    reasons: list[str]
    seen: dict[str, list[str | None]]  # header (and "status") -> [first, second]
    same_body: bool
    gap_s: float

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "reasons": self.reasons,
            "seen": self.seen,
            "same_body": self.same_body,
            "gap_s": round(self.gap_s, 2),
            "limits": PLAIN_LIMITS,
        }


@dataclass
class ProbeResult:
    url: str
    proxy: str | None  # the forward proxy used (password hidden), None: none
    proxy_source: str
    tls: TlsFacts | None
    seconds: float
    signs: PathSigns
    polls: int = 0
    interval: float = 0.0
    verdicts: dict[str, StrategyVerdict] = field(default_factory=dict)
    matches: list[ProfileMatch] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # listed by the endpoint, unknown here
    plain: PlainCheck | None = None

    @property
    def mode(self) -> str:
        return "plain" if self.plain is not None else "endpoint"

    @property
    def cached(self) -> list[str]:
        return [name for name, v in self.verdicts.items() if v.verdict == CACHED]

    @property
    def best(self) -> list[ProfileMatch]:
        return best_matches(self.matches)

    @property
    def summary(self) -> str:
        if self.plain is None:
            return summary_line(self.verdicts)
        said = {
            "cached": "a cache on this path answered the second request",
            "fresh": "the second request was answered anew",
            "unknown": "two requests could not tell whether a cache is on this path",
        }[self.plain.verdict]
        return f"{said} ({'; '.join(self.plain.reasons)}); plain-URL check only"

    @property
    def exit_code(self) -> int:
        if self.plain is not None:
            return EXIT_CACHED if self.plain.verdict == CACHED else EXIT_NO_CACHE
        return EXIT_CACHED if self.cached else EXIT_NO_CACHE

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "url": self.url,
            "mode": self.mode,
            "proxy": self.proxy,
            "proxy_source": self.proxy_source,
            "tls": self.tls.to_json() if self.tls else None,
            "seconds": round(self.seconds, 2),
            "summary": self.summary,
            "exit_code": self.exit_code,
            "signs": self.signs.to_json(),
        }
        if self.plain is not None:
            return doc | {"plain": self.plain.to_json()}
        return doc | {
            "polls": self.polls,
            "interval_s": self.interval,
            "strategies": {name: v.to_json() for name, v in self.verdicts.items()},
            "cached": self.cached,
            "best_match": {
                "profiles": [m.profile for m in self.best],
                "agree": self.best[0].agree if self.best else 0,
                "of": self.best[0].of if self.best else 0,
            },
            "profiles": [m.to_json() for m in self.matches],
            "skipped": self.skipped,
        }


def judge_probe(
    look: FirstLook,
    runs: dict[str, StrategyRun],
    *,
    polls: int,
    interval: float,
    seconds: float,
    skipped: list[str],
) -> ProbeResult:
    assert look.index is not None
    verdicts = {name: judge_strategy(run, look.index[name]) for name, run in runs.items()}
    answers = [a for run in runs.values() for a in run.answers]
    observed = {name: v.verdict for name, v in verdicts.items()}
    return ProbeResult(
        **_where(look, seconds),
        signs=path_signs(look.answer, verdicts, answers),
        polls=polls,
        interval=interval,
        verdicts=verdicts,
        matches=match_profiles(observed),
        skipped=skipped,
    )


def _where(look: FirstLook, seconds: float) -> dict[str, Any]:
    """What every result says of its path: the URL, the proxy (its password hidden), TLS."""
    return {
        "url": look.route.url,
        "proxy": redacted(look.route.proxy) if look.route.proxy else None,
        "proxy_source": look.route.source,
        "tls": look.tls,
        "seconds": seconds,
    }


def judge_plain(look: FirstLook, second: Answer, second_body: bytes, seconds: float) -> ProbeResult:
    first = look.answer
    return ProbeResult(
        **_where(look, seconds),
        signs=path_signs(None, {}, [first, second]),
        plain=plain_check(first, look.body, second, second_body),
    )


def plain_check(first: Answer, first_body: bytes, second: Answer, second_body: bytes) -> PlainCheck:
    gap = second.sent_at - first.sent_at
    seen: dict[str, list[str | None]] = {
        "status": [str(first.status), str(second.status)],
        **{name: [first.headers.get(name), second.headers.get(name)] for name in COMPARED[1:]},
    }
    cached: list[str] = []
    age = second.headers.get("age")
    if age is not None and age.strip().isdigit() and int(age) > 0:
        cached.append(f"Age: {age} on the second answer")
    for name in HIT_HEADERS:
        value = second.headers.get(name) or ""
        if "HIT" in value.upper():
            cached.append(f"{name}: {value}")
    dates = seen["date"]
    if dates[0] is not None and dates[0] == dates[1] and gap >= 1.0:
        cached.append(f"the same Date on both answers, {gap:.1f} s apart")
    same_body = first_body == second_body
    if cached:
        return PlainCheck(CACHED, cached, seen, same_body, gap)
    if not same_body:
        return PlainCheck("fresh", ["the body changed"], seen, same_body, gap)
    if dates[0] is not None and dates[1] is not None and dates[0] != dates[1]:
        reason = "Date moved on with the clock: the server made it, or a cache revalidated it"
        return PlainCheck("fresh", [reason], seen, same_body, gap)
    return PlainCheck(
        "unknown", ["the same body, no Date, Age or X-Cache to tell"], seen, same_body, gap
    )
