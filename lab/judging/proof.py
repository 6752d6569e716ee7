"""What a UI's polls prove, whoever judges them: the lab's own cells (against the worker's
record) and an audit's (against its direct poller) read them with the same rules: a hang is
proven in polls, and a first answer that was already final tested nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from lab.clients.poll import Poll


def hang_proof_polls(window: float, interval: float) -> int:
    """Answered polls after the finish that make a hang proven: two thirds of those an idle
    machine makes in the hang window at this poll interval (8 for 3 s at 250 ms), at least 1."""
    return max(1, int(window / interval * 2 / 3))


def kept_asking(polls: Iterable[Poll], since: float, window: float, interval: float) -> bool:
    """Enough polls sent after `since` (the finish) were answered with a state to prove a hang
    (hang_proof_polls). Counted in polls, not seconds: a busy machine that polls less often
    waits longer for the same proof."""
    answered = sum(1 for poll in polls if poll.sent_at > since and poll.state)
    return answered >= hang_proof_polls(window, interval)


def already_final(polls: Iterable[Poll], is_final: Callable[[Poll], bool]) -> Poll | None:
    """The UI's first answer about its own task (not a failed request, not another user's
    task), when it already said a final state (`is_final`: as the judge knows them). Then the
    task finished before any poll could see it running: a cache can only freeze what it was
    given, so no cache had anything stale to serve and the run tested nothing."""
    first = next((p for p in polls if p.state is not None and not p.foreign_task_id), None)
    return first if first is not None and is_final(first) else None
