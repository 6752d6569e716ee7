"""What a UI's polls prove, whoever judges them: the lab's own cells (against the worker's
record) and an audit's (against its direct poller) count them with the same rules."""

from __future__ import annotations

from collections.abc import Iterable

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
