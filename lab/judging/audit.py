"""The verdict of one audit cell: the user's flow behind one proxy profile, polled with one
client strategy, judged against a direct poller of the same task (no proxy) as ground truth.

- completed / errored / leaked: what the proxied page showed when it stopped;
- hung: the direct path showed a final state and the proxied path still showed an earlier one a
  hang window later (with proof in polls, as for the lab's own cells);
- not judged: the run could not test anything (the task finished before any poll reached the
  app, or never finished even on the direct path), said with the reason, never a verdict.

The verdict is the lab's own `Verdict`, so the run page and its timeline draw it as they draw a
scenario's: the "worker" lane shows when the direct path first saw the final state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lab.clients.poll import Poll
from lab.data.scenarios import Outcome
from lab.judging.evidence import Verdict
from lab.judging.proof import already_final

HOP = "proxy"


@dataclass
class CellFacts:
    """What one audit cell saw, times in epoch seconds."""

    flow: str
    profile: str
    strategy: str
    task_id: str | None
    client_started_at: float | None
    polls: list[Poll]
    client_error: str | None
    foreign_task_id: str | None
    direct_final_at: float | None  # the direct poller's first final answer
    direct_final_state: str | None
    direct_outcome: str | None  # what the direct path showed: completed or errored
    direct_error: str | None
    proxy_events: list[dict[str, Any]]  # the listener's records of this task's status polls
    hang_window: float
    decided_at: float | None

    def rel(self, t: float | None) -> float | None:
        if t is None or self.client_started_at is None:
            return None
        return round(t - self.client_started_at, 3)

    @property
    def from_cache(self) -> list[dict[str, Any]]:
        return [e for e in self.proxy_events if e.get("cache") in ("HIT", "STALE")]


def untested_because(facts: CellFacts, observed: Outcome) -> str | None:
    """Why the cell tested nothing, from its evidence. A page that stopped on an error or on
    another user's task showed what it showed; one that completed tested a cache only if it
    was shown the task running first (a cache can only freeze what it was given); a hang is
    only proven against the direct path's final state."""
    if observed in (Outcome.errored, Outcome.leaked):
        return None
    if observed is Outcome.completed:
        # The page stops at its first final answer (the flow's own states, which the polls'
        # text alone cannot tell): its first answer was final if it was also its last.
        answer = already_final(facts.polls, lambda poll: poll is facts.polls[-1])
        if answer is not None:
            at = facts.rel(answer.received_at) or 0.0
            return (
                f"the first answer (at {at:.2f} s) already said {answer.state}: the task "
                "finished before any poll could see it running, so no cache had anything "
                "stale to serve"
            )
        return None
    if facts.direct_final_at is None:
        if facts.direct_error:
            return f"the direct path itself failed ({facts.direct_error}): no ground truth"
        return "the task never showed a final state on the direct path: no ground truth"
    return None


def hop_detail(facts: CellFacts, observed: Outcome) -> str:
    """Which hop stopped the status, from the proxy's own records."""
    served = facts.from_cache
    if observed is Outcome.hung or observed is Outcome.leaked:
        if not served:
            return "the proxy records no answer from its cache for this task"
        stored = next((e for e in facts.proxy_events if e.get("cache") == "STORE"), None)
        first = served[0]
        rule = first.get("cache_rule") or (stored or {}).get("cache_rule")
        stored_at = first.get("cache_stored_at") or (stored or {}).get("time")
        ages = [int(e["age"]) for e in served if str(e.get("age") or "").isdigit()]
        parts = [f"proxy {facts.profile}"]
        if stored_at is not None:
            parts.append(f"stored the answer at {facts.rel(stored_at):.2f} s")
        if rule:
            parts.append(f"({rule})")
        parts.append(f"and served it {len(served)} times from its cache")
        if ages:
            parts.append(f"(Age up to {max(ages)} s)")
        # Why the cache used it for this request although the page's fix asked otherwise
        # (a key without the query string, a client no-cache ignored): the proxy's own words.
        extra = [first.get("cache_key_note"), first.get("cache_serve_note")]
        return " ".join(parts) + "".join(f"; {note}" for note in extra if note)
    if observed is Outcome.errored:
        if facts.direct_outcome == "errored":
            return f"the app itself answered with a failure ({facts.direct_final_state})"
        acted = [e for e in facts.proxy_events if e.get("misbehaviour")]
        if acted:
            return f"proxy {facts.profile}: {acted[-1]['misbehaviour']}"
        return f"the page stopped on {facts.client_error or 'an error'}"
    return ""


def stopped_at(facts: CellFacts, observed: Outcome) -> str | None:
    if observed is Outcome.completed:
        return None
    if observed is Outcome.errored and facts.direct_outcome == "errored":
        return "origin"
    return HOP


def judge_cell(
    facts: CellFacts, observed: Outcome, *, seconds: float, attempts: int = 1
) -> Verdict:
    """The cell's one judgement, made when it ends."""
    expected = facts.direct_outcome or Outcome.completed.value
    total = len(facts.polls)
    hits = len(facts.from_cache)
    reached = sum(1 for e in facts.proxy_events if e.get("cache") not in ("HIT", "STALE"))
    detail = hop_detail(facts, observed)
    head = f"{facts.flow} behind {facts.profile} ({facts.strategy}): {observed.value}"
    what = _what_happened(facts, observed)
    sentence = f"{head} - {what}" + (f"; {detail}" if detail else "")
    sentence += f"; {hits} of {total} polls were answered by the proxy"
    return Verdict(
        scenario=facts.flow,
        fix=facts.strategy,
        client="python",
        proxy=facts.profile,
        expected=expected,
        observed=observed.value,
        matched=observed.value == expected,
        seconds=round(seconds, 3),
        polls={"total": total, "reached_origin": reached, "from_cache": hits},
        stopped_at=stopped_at(facts, observed),
        sentence=sentence,
        task={
            "id": facts.task_id,
            "started_at": None,
            "finished_at": facts.rel(facts.direct_final_at),
            "final_state": facts.direct_final_state,
        },
        first_stale_answer=_first_stale(facts),
        warnings=[],
        first_poll_at=facts.rel(facts.polls[0].sent_at) if facts.polls else None,
        untested=untested_because(facts, observed),
        attempts=attempts,
        client_started_at=facts.client_started_at,
        verdict_at=facts.rel(facts.decided_at),
        hang_window=facts.hang_window,
        proxy_visible=True,
        ground_truth="direct",
    )


def _what_happened(facts: CellFacts, observed: Outcome) -> str:
    final = facts.rel(facts.direct_final_at)
    last = facts.polls[-1] if facts.polls else None
    if observed is Outcome.completed and last is not None:
        return f"the page showed {last.state} at {facts.rel(last.received_at):.1f} s"
    if observed is Outcome.leaked:
        return f"the page was shown another user's task ({facts.foreign_task_id})"
    if observed is Outcome.errored:
        return f"the page stopped with an error: {facts.client_error or (last and last.state)}"
    shown = (last.state if last else None) or "nothing"
    if final is None:
        return f"the task never showed a final state; the page still showed {shown}"
    return (
        f"the direct path showed {facts.direct_final_state} at {final:.1f} s, the page still "
        f"showed {shown} {facts.hang_window:g} s later"
    )


def _first_stale(facts: CellFacts) -> dict[str, Any] | None:
    if facts.direct_final_at is None:
        return None
    for poll in facts.polls:
        if (
            poll.sent_at > facts.direct_final_at
            and poll.state
            and poll.state != (facts.direct_final_state)
        ):
            return {
                "seq": poll.seq,
                "at": facts.rel(poll.received_at),
                "state": poll.state,
                "age": poll.age,
                "date": poll.date,
                "via": poll.via,
                "x_cache": poll.x_cache,
                "cache_control": poll.cache_control,
                "served_at": None,
            }
    return None
