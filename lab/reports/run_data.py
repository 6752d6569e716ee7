"""What a run's page draws, read from the run's evidence files (or taken from an `Evidence`
object, for callers that hold one), with the facts the verdict already decided:

- client.jsonl: one mark per poll in the client lane;
- proxy-events*.jsonl / origin-events*.jsonl: where each poll went (lab.data.events reads them);
- the task's start and finish, the client's start, and whether the proxy could be seen: from
  the verdict, as judged.

A matrix keeps the origin, proxy and worker evidence of its shared cells in files at its top;
they are read once for all its pages.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.clients.polling import Poll
from lab.data.events import EventLog
from lab.data.jsonl import read_jsonl
from lab.judging.evidence import Evidence, Verdict


@dataclass
class RunData:
    """What the report draws, times in epoch seconds."""

    client_started_at: float | None
    polls: list[Poll]
    origin: list[dict[str, Any]]
    proxy: list[dict[str, Any]]
    task_started_at: float | None
    task_finished_at: float | None
    proxy_visible: bool
    shared_files: list[Path] = field(default_factory=list)  # evidence outside the run folder

    @classmethod
    def from_evidence(cls, evidence: Evidence) -> RunData:
        return cls(
            client_started_at=evidence.client_started_at,
            polls=list(evidence.polls),
            origin=list(evidence.origin_status_requests),
            proxy=list(evidence.proxy_status_requests),
            task_started_at=evidence.task_started_at,
            task_finished_at=evidence.task_finished_at,
            proxy_visible=evidence.uses_proxy and evidence.proxy_visible,
        )

    @classmethod
    def from_files(cls, run_dir: Path, verdict: Verdict, events: EventLog) -> RunData:
        task_id = verdict.task.get("id") or ""
        shared = [p for p in sorted(events.files.get(task_id, ())) if p.parent != run_dir]
        if shared:
            shared += _logs_beside(shared)
        t0 = verdict.client_started_at

        def epoch(key: str) -> float | None:
            at = verdict.task.get(key)
            return None if at is None or t0 is None else t0 + at

        return cls(
            client_started_at=t0,
            polls=read_polls(run_dir / "client.jsonl"),
            origin=events.origin.get(task_id, []),
            proxy=events.proxy.get(task_id, []),
            task_started_at=epoch("started_at"),
            task_finished_at=epoch("finished_at"),
            proxy_visible=verdict.proxy_visible,
            shared_files=shared,
        )


def read_polls(path: Path) -> list[Poll]:
    names = {f.name for f in dataclasses.fields(Poll)}
    polls = []
    for event in read_jsonl(path):
        if event.get("event") == "poll":
            poll = Poll(**{k: v for k, v in event.items() if k in names})
            # The browser client's polls say how the browser's own HTTP cache took part.
            poll.browser_cache_kind = event.get("browser_cache_kind")  # type: ignore[attr-defined]
            polls.append(poll)
    return polls


def _logs_beside(files: list[Path]) -> list[Path]:
    """The logs of the components that wrote these shared files (origin-events-path.jsonl ->
    app-path.log, worker-path.log; proxy-events-rfc.jsonl -> proxy-rfc.log)."""
    suffixes = {p.stem.split("-events-", 1)[1] for p in files if "-events-" in p.stem}
    folder = files[0].parent
    return sorted(log for log in folder.glob("*.log") if log.stem.partition("-")[2] in suffixes)
