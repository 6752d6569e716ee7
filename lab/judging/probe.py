"""`lab probe`'s verdicts: for each strategy polled through the path, whether a cache froze its
answers (`cached`: an answer repeated a count the probe had already seen, so it did not come
from the app), let every poll through (`fresh`), or whether the polls failed as its page would
give up (`error`); with the evidence a cache leaves in the answers (Age, Via, X-Cache,
X-Cache-Lookup, a Date older than the request, the origin's headers missing or changed) and
the signs on the path that any answer shows, cache or not.

detect-stale is a page that heals itself: plain polls until the same answer came back a few
times, then a path nonce. It is judged as its page ends, on the answers after its switch; the
freeze before the switch is kept as evidence.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

from lab.clients.probe import Answer, IndexedStrategy, StrategyRun

CACHED, FRESH, ERROR = "cached", "fresh", "error"
PLAIN_POLL = "none"  # the story's poll: no cache headers, no nonce
# Headers that a proxy or cache adds; no origin behind the probe sends them.
PROXY_HEADERS = (
    "via",
    "age",
    "x-cache",
    "x-cache-lookup",
    "x-cache-status",
    "x-cache-hits",
    "x-served-by",
    "x-varnish",
    "x-proxy-cache",
    "x-squid-error",
    "cf-cache-status",
    "proxy-connection",
)
INDEX_HEADERS = {"cache-control": "no-store"}  # what the endpoint's index is sent with
MAX_VALUES = 3  # distinct values kept per header in the evidence


@dataclass
class Evidence:
    """What the answers of one strategy show of a cache."""

    frozen_s: float = 0.0  # the longest a count stayed the same, first to last answer with it
    age: int | None = None  # the largest Age
    via: list[str] = field(default_factory=list)
    x_cache: list[str] = field(default_factory=list)
    x_cache_lookup: list[str] = field(default_factory=list)
    date_lag_s: float | None = None  # the most an answer's Date was behind its arrival
    date_vs_origin_s: float | None = None  # the most a Date differed from the body's time
    missing: list[str] = field(default_factory=list)  # origin headers an answer came without
    changed: dict[str, list[str]] = field(default_factory=dict)  # origin header -> values seen
    other_probe: bool = False  # an answer about another probe id: a key that drops the id
    frozen_before_switch_s: float | None = None  # detect-stale: the freeze it healed from

    def to_json(self) -> dict[str, Any]:
        return {
            "frozen_s": round(self.frozen_s, 2),
            "age": self.age,
            "via": self.via,
            "x_cache": self.x_cache,
            "x_cache_lookup": self.x_cache_lookup,
            "date_lag_s": _rounded(self.date_lag_s),
            "date_vs_origin_s": _rounded(self.date_vs_origin_s),
            "missing_headers": self.missing,
            "changed_headers": self.changed,
            "other_probe": self.other_probe,
            "frozen_before_switch_s": _rounded(self.frozen_before_switch_s),
        }


@dataclass
class StrategyVerdict:
    strategy: str
    verdict: str  # cached | fresh | error
    polls: int  # requests made, retries included
    counts: list[int | None]  # each request's count (None: it failed)
    failed: int  # requests that failed (retried or not)
    error: str | None  # the failure the page would stop at
    switched_after: int | None
    evidence: Evidence

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "polls": self.polls,
            "counts": self.counts,
            "failed": self.failed,
            "error": self.error,
            "switched_after": self.switched_after,
            "evidence": self.evidence.to_json(),
        }


def judge_strategy(run: StrategyRun, indexed: IndexedStrategy) -> StrategyVerdict:
    answers = [a for a in run.answers if a.count is not None]
    judged = answers
    evidence = Evidence()
    if run.switched_after is not None:
        before = [a for a in answers if a.seq <= run.switched_after]
        judged = [a for a in answers if a.seq > run.switched_after]
        evidence.frozen_before_switch_s = longest_freeze(before)
    repeated = repeats(judged, run.probe_id)
    evidence.frozen_s = longest_freeze(judged)
    evidence.other_probe = any(a.probe != run.probe_id for a in answers)
    read_cache_headers(evidence, answers)
    evidence.missing, evidence.changed = header_differences(answers, origin_headers(indexed))
    if repeated:
        verdict = CACHED
    elif run.gave_up is not None or not answers:
        verdict = ERROR
    else:
        verdict = FRESH
    return StrategyVerdict(
        strategy=run.strategy,
        verdict=verdict,
        polls=len(run.answers),
        counts=[a.count for a in run.answers],
        failed=sum(1 for a in run.answers if a.error),
        error=run.gave_up or (None if answers else "no answer"),
        switched_after=run.switched_after,
        evidence=evidence,
    )


def repeats(answers: list[Answer], probe_id: str) -> int:
    """Answers that did not come from the app: a count not above one already seen (the app
    counts every request it answers), or an answer about another probe."""
    seen, repeated = 0, 0
    for answer in answers:
        assert answer.count is not None
        if answer.count <= seen or answer.probe != probe_id:
            repeated += 1
        seen = max(seen, answer.count)
    return repeated


def longest_freeze(answers: list[Answer]) -> float:
    longest, first = 0.0, None
    for previous, answer in zip([None, *answers], answers, strict=False):
        if previous is None or answer.count != previous.count:
            first = answer
        assert first is not None
        longest = max(longest, answer.received_at - first.received_at)
    return longest


def origin_headers(indexed: IndexedStrategy) -> dict[str, str | None]:
    """Lower-case name -> the value the origin sends (None: some value, not known ahead)."""
    expected: dict[str, str | None] = {k.lower(): v for k, v in indexed.headers.items()}
    if indexed.etag:
        expected["etag"] = None
    if indexed.last_modified_age_s is not None:
        expected["last-modified"] = None
    return expected


def header_differences(
    answers: Iterable[Answer], expected: Mapping[str, str | None]
) -> tuple[list[str], dict[str, list[str]]]:
    """Origin headers missing from an answer, and values other than the origin's. A 304 (or a
    kept copy) carries only some headers and is left out."""
    missing: list[str] = []
    changed: dict[str, list[str]] = {}
    for answer in answers:
        if answer.kept_copy or answer.status is None or not 200 <= answer.status < 300:
            continue
        for name, value in expected.items():
            seen = answer.headers.get(name)
            if seen is None:
                if name not in missing:
                    missing.append(name)
            elif value is not None and _normal(seen) != _normal(value):
                values = changed.setdefault(name, [])
                if seen not in values and len(values) < MAX_VALUES:
                    values.append(seen)
    return missing, changed


def read_cache_headers(evidence: Evidence, answers: list[Answer]) -> None:
    for answer in answers:
        headers = answer.headers
        if (age := _int(headers.get("age"))) is not None:
            evidence.age = max(evidence.age or 0, age)
        for name, values in (
            ("via", evidence.via),
            ("x-cache", evidence.x_cache),
            ("x-cache-lookup", evidence.x_cache_lookup),
        ):
            if (value := headers.get(name)) and value not in values and len(values) < MAX_VALUES:
                values.append(value)
        date = _date(headers.get("date"))
        if date is None:
            continue
        lag = answer.sent_at - date
        evidence.date_lag_s = max(evidence.date_lag_s or 0.0, lag)
        if answer.server_time is not None and not answer.kept_copy:
            off = abs(date - answer.server_time)
            evidence.date_vs_origin_s = max(evidence.date_vs_origin_s or 0.0, off)


@dataclass
class PathSigns:
    """What any answer shows of the path, cache or not."""

    proxy_headers: dict[str, list[str]] = field(default_factory=dict)  # name -> values seen
    missing: dict[str, list[str]] = field(default_factory=dict)  # header -> strategies
    changed: dict[str, list[str]] = field(default_factory=dict)  # header -> strategies

    @property
    def any(self) -> bool:
        return bool(self.proxy_headers or self.missing or self.changed)

    def lines(self) -> list[str]:
        said = [f"{name}: {' | '.join(values)}" for name, values in self.proxy_headers.items()]
        said += [f"{name} removed (sent for {', '.join(s)})" for name, s in self.missing.items()]
        said += [f"{name} changed (on {', '.join(s)})" for name, s in self.changed.items()]
        return said

    def to_json(self) -> dict[str, Any]:
        return {
            "proxy_headers": self.proxy_headers,
            "missing_headers": self.missing,
            "changed_headers": self.changed,
        }


def path_signs(
    index: Answer | None, verdicts: Mapping[str, StrategyVerdict], answers: Iterable[Answer]
) -> PathSigns:
    signs = PathSigns()
    everything = [*([index] if index is not None else []), *answers]
    for answer in everything:
        for name in PROXY_HEADERS:
            value = answer.headers.get(name)
            if value is None:
                continue
            values = signs.proxy_headers.setdefault(name, [])
            if value not in values and len(values) < MAX_VALUES:
                values.append(value)
    if index is not None:
        missing, changed = header_differences([index], INDEX_HEADERS)
        for name in missing:
            signs.missing.setdefault(name, []).append("the index")
        for name in changed:
            signs.changed.setdefault(name, []).append("the index")
    for name, verdict in verdicts.items():
        for header in verdict.evidence.missing:
            signs.missing.setdefault(header, []).append(name)
        for header in verdict.evidence.changed:
            signs.changed.setdefault(header, []).append(name)
    return signs


def summary_line(verdicts: Mapping[str, StrategyVerdict]) -> str:
    """One sentence: what froze, for how long at least, and what got through."""
    cached = [v for v in verdicts.values() if v.verdict == CACHED]
    fresh = [v.strategy for v in verdicts.values() if v.verdict == FRESH]
    failed = [v for v in verdicts.values() if v.verdict == ERROR]
    failed_text = "; ".join(f"{v.strategy} ({v.error})" for v in failed)
    if not cached:
        if failed:
            return f"no cache froze a poll on this path, but polls failed: {failed_text}"
        return (
            f"no cache on this path: every poll of all {len(verdicts)} strategies reached the app"
        )
    plain = verdicts.get(PLAIN_POLL)
    if plain is not None and plain.verdict == CACHED:
        what, seconds = "the plain poll", plain.evidence.frozen_s
        others = [v.strategy for v in cached if v is not plain]
        also = f" (and {', '.join(others)})" if others else ""
    else:
        what = ", ".join(v.strategy for v in cached)
        seconds, also = max(v.evidence.frozen_s for v in cached), ""
    through = ", ".join(s for s in fresh if s != PLAIN_POLL) or "none"
    line = f"a cache on this path froze {what} for at least {seconds:.1f} s{also}; "
    line += f"these fixes got through: {through}"
    return line + (f"; failed: {failed_text}" if failed else "")


def _normal(value: str) -> str:
    return ",".join(part.strip() for part in value.lower().split(","))


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


def _rounded(value: float | None) -> float | None:
    return round(value, 2) if value is not None else None
