"""The run page's timeline: each poll joined to the proxy and origin records of the same
request, and drawn across four lanes (client, proxy, origin, worker)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from lab.clients.polling import Poll
from lab.judging.evidence import Verdict
from lab.reports.look import SOURCES
from lab.reports.run_data import RunData
from sample_app import strategies

LANES = ("client", "proxy", "origin", "worker")
MATCH_SLACK = 0.02  # seconds: clocks are one machine's, events are logged around the poll


# -- joining polls to hops --------------------------------------------------------------------
@dataclass
class PollHops:
    poll: Poll
    proxy: dict[str, Any] | None
    origin: dict[str, Any] | None
    source: str


def join_hops(data: RunData) -> list[PollHops]:
    """Each poll with the proxy and origin records of the same request (or stream event)."""
    proxy_events = sorted(data.proxy, key=lambda e: e.get("time", 0.0))
    origin_events = sorted(data.origin, key=lambda e: e.get("time", 0.0))
    streams = sorted({p.stream for p in data.polls if p.stream is not None})
    stream_opens = [e for e in proxy_events if _path(e).rstrip("/").endswith("/events")]
    by_stream = dict(zip(streams, stream_opens, strict=False))
    used_proxy: set[int] = set()
    used_origin: set[int] = set()
    joined = []
    for poll in data.polls:
        if poll.stream is not None:
            # One event on a stream: its proxy record is the stream's; the origin logged each
            # event it sent with the seq the client read.
            proxy = by_stream.get(poll.stream)
            origin = next(
                (
                    e
                    for e in origin_events
                    if id(e) not in used_origin
                    and e.get("event") == "sse_event"
                    and poll.server_seq is not None
                    and e.get("seq") == poll.server_seq
                ),
                None,
            )
            if origin is not None:
                used_origin.add(id(origin))
        else:
            proxy = _take(proxy_events, used_proxy, poll)
            origin = _take(
                [e for e in origin_events if e.get("event") != "sse_event"], used_origin, poll
            )
        joined.append(PollHops(poll, proxy, origin, classify(poll, proxy, origin)))
    return joined


def _take(events: list[dict[str, Any]], used: set[int], poll: Poll) -> dict[str, Any] | None:
    """The first unused event of the poll's own request logged while it was in flight, else the
    first one then that names no path (a tunnel's). One of another request is never taken: on a
    slow machine the task's POST was logged within the slack of poll 1 and taken for it."""
    low, high = poll.sent_at - MATCH_SLACK, poll.received_at + MATCH_SLACK
    in_flight = [e for e in events if id(e) not in used and low <= e.get("time", 0.0) <= high]
    event = next((e for e in in_flight if _same_request(e, poll)), None)
    if event is None:
        event = next((e for e in in_flight if not _path(e)), None)
    if event is not None:
        used.add(id(event))
    return event


def _same_request(event: dict[str, Any], poll: Poll) -> bool:
    """The event's method and path are the poll's. The app logs its path without a matrix
    cell's prefix (/_lab/<cell>/...), so the poll's path ends with it."""
    path = _path(event)
    method = event.get("method") or poll.method
    return bool(path) and method == poll.method and urlsplit(poll.url).path.endswith(path)


def classify(poll: Poll, proxy: dict[str, Any] | None, origin: dict[str, Any] | None) -> str:
    """What answered the poll: origin, cache, revalidated, error or other."""
    cache_result = (proxy or {}).get("cache")
    if poll.error or (poll.status is not None and poll.status >= 400):
        return "error"
    browser_kind = getattr(poll, "browser_cache_kind", None)
    revalidated = poll.browser_cache or browser_kind == "revalidated"
    if cache_result == "REVALIDATED" or revalidated or (origin or {}).get("status") == 304:
        return "revalidated"
    if cache_result == "HIT":
        return "cache"
    # The proxy's own record that it went upstream counts where the origin keeps none (an
    # audited app's).
    if origin is not None or cache_result in ("MISS", "STORE", "BYPASS"):
        return "origin"
    return "other"


def _path(event: dict[str, Any]) -> str:
    return event.get("path") or urlsplit(event.get("url") or "").path


def where(url: str) -> str:
    """A URL without scheme and host: the page links nowhere."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


# -- the timeline -----------------------------------------------------------------------------
@dataclass
class Mark:
    x: float
    y: float


@dataclass
class PollMark:
    seq: int
    source: str
    colour: str
    client: Mark
    flight_end: float  # x where the answer came back
    proxy: Mark | None
    origin: Mark | None
    path: str  # the SVG polyline through the hops
    title: str
    state: str | None
    label: str | None  # the state, drawn when it changed
    final: bool
    first_stale: bool
    foreign: bool
    error: bool


LANE_Y = {"client": 78.0, "proxy": 168.0, "origin": 258.0, "worker": 348.0}


@dataclass(frozen=True)
class Scale:
    """Where things go on the SVG: seconds after the client's start -> x, a lane -> y."""

    t_max: float  # the right edge, in seconds
    width: int = 1120
    left: int = 180
    right: int = 40
    axis_y: float = 400.0

    @property
    def lanes(self) -> dict[str, float]:
        return LANE_Y

    @property
    def height(self) -> int:
        return int(self.axis_y + 48)

    @property
    def start_x(self) -> float:
        return self.x(0.0)

    @property
    def ticks(self) -> list[tuple[float, str]]:
        return [(self.x(t), f"{t:g} s") for t in _ticks(self.t_max)]

    def x(self, t: float) -> float:
        span = self.width - self.left - self.right
        return round(self.left + span * max(0.0, min(t, self.t_max)) / self.t_max, 1)


@dataclass
class TaskMarks:
    """The worker's task and the verdict, drawn across the lanes."""

    bar: tuple[float, float, str] | None = None  # x from, x to, label
    finish: tuple[float, str, str] | None = None  # x, label, text-anchor
    hang: tuple[float, float, str] | None = None  # x from, x to, label
    verdict_line: tuple[float, str, str] | None = None  # x, label, text-anchor


@dataclass
class Timeline:
    scale: Scale
    polls: list[PollMark]
    stray_proxy: list[Mark]  # records of the task that no poll got
    stray_origin: list[Mark]
    task: TaskMarks
    lane_notes: dict[str, str]
    stopped_lane: str | None
    notes: list[str]


def build_timeline(
    verdict: Verdict,
    data: RunData,
    joined: list[PollHops],
    hang_window: float,
) -> Timeline:
    """The swim lanes of one run: each poll through the hops, the task, and the verdict where
    and when it fell."""
    t0 = data.client_started_at or 0.0
    finished = None if data.task_finished_at is None else data.task_finished_at - t0
    ends = [p.poll.received_at - t0 for p in joined]
    ends += [t for t in (finished, verdict.verdict_at) if t is not None]
    if finished is not None and verdict.observed == "hung":
        ends.append(finished + hang_window)
    scale = Scale(t_max=max([1.0, *ends]) * 1.04)
    marks = _poll_marks(verdict, joined, t0, scale)
    used = {id(e) for hop in joined for e in (hop.proxy, hop.origin) if e is not None}
    lane_notes, notes = _notes(verdict, data)
    stopped = verdict.stopped_at
    return Timeline(
        scale,
        marks,
        [Mark(scale.x(e["time"] - t0), LANE_Y["proxy"]) for e in data.proxy if id(e) not in used],
        [Mark(scale.x(e["time"] - t0), LANE_Y["origin"]) for e in data.origin if id(e) not in used],
        _task_marks(verdict, data, scale, hang_window),
        lane_notes,
        stopped if stopped in LANES else ("worker" if stopped == "result backend" else None),
        notes,
    )


def _poll_marks(
    verdict: Verdict, joined: list[PollHops], t0: float, scale: Scale
) -> list[PollMark]:
    """Each poll from the client lane through the hops it reached."""
    x = scale.x
    stale_seq = (verdict.first_stale_answer or {}).get("seq")
    final_states = strategies.load().final_states
    marks: list[PollMark] = []
    previous_state: str | None = None
    for hop in joined:
        poll = hop.poll
        sent, got = poll.sent_at - t0, poll.received_at - t0
        client = Mark(x(sent), LANE_Y["client"])
        proxy_mark = origin_mark = None
        points = [client]
        if hop.proxy is not None:
            proxy_mark = Mark(x(hop.proxy["time"] - t0), LANE_Y["proxy"])
        if hop.origin is not None:
            origin_mark = Mark(x(hop.origin["time"] - t0), LANE_Y["origin"])
        if proxy_mark:
            points.append(proxy_mark)
        if origin_mark:
            points.append(origin_mark)
        if len(points) == 1 and verdict.proxy != "none":
            # Answered on the way by a proxy the lab cannot see: down to the proxy lane only.
            points.append(Mark(x((sent + got) / 2), LANE_Y["proxy"]))
        label = poll.state if poll.state and poll.state != previous_state else None
        previous_state = poll.state or previous_state
        marks.append(
            PollMark(
                seq=poll.seq,
                source=hop.source,
                colour=SOURCES[hop.source][1],
                client=client,
                flight_end=x(got),
                proxy=proxy_mark,
                origin=origin_mark,
                path=" ".join(f"{m.x},{m.y}" for m in points),
                title=_poll_title(poll, hop, sent, got),
                state=poll.state,
                label=label,
                final=poll.state in final_states,
                first_stale=poll.seq == stale_seq,
                foreign=bool(poll.foreign_task_id),
                error=hop.source == "error",
            )
        )
    return marks


def _notes(verdict: Verdict, data: RunData) -> tuple[dict[str, str], list[str]]:
    """A note beside each lane, and notes under the timeline, on what it cannot show."""
    notes: list[str] = []
    lane_notes = {lane: "" for lane in LANES}
    if verdict.proxy == "none":
        lane_notes["proxy"] = "none: direct"
    elif not data.proxy_visible:
        lane_notes["proxy"] = f"{verdict.proxy} (not visible)"
        notes.append(
            "The proxy keeps no record the lab can read: polls that never reached the "
            "origin are drawn as answered on the way (grey)."
        )
    else:
        lane_notes["proxy"] = verdict.proxy
    if verdict.ground_truth == "direct":
        lane_notes["worker"] = "your app, polled directly"
        lane_notes["origin"] = "not visible (your app)"
    elif data.task_started_at is None and data.task_finished_at is None:
        lane_notes["worker"] = "never started the task"
    if data.task_finished_at is None and verdict.observed == "hung":
        notes.append("The worker never finished the task: there is no finish line to wait from.")
    if verdict.stopped_at == "result backend":
        lane_notes["worker"] = "result not stored"
    return lane_notes, notes


def _task_marks(verdict: Verdict, data: RunData, scale: Scale, hang_window: float) -> TaskMarks:
    x, t_max = scale.x, scale.t_max
    t0 = data.client_started_at or 0.0
    started = None if data.task_started_at is None else data.task_started_at - t0
    finished = None if data.task_finished_at is None else data.task_finished_at - t0
    marks = TaskMarks()
    if started is not None:
        end = finished if finished is not None else t_max
        text = "task running" if finished is not None else "task running, never finished"
        marks.bar = (x(started), x(end), text)
    if finished is not None:
        at = verdict.task.get("finished_at")
        at = finished if at is None else at  # as the verdict rounds it
        source = "direct poller" if verdict.ground_truth == "direct" else "worker"
        label = f"task {verdict.task.get('final_state') or 'finished'} at {at:.2f} s ({source})"
        marks.finish = (x(finished), label, "end" if finished > 0.6 * t_max else "start")
        if verdict.observed == "hung":
            shown = next((p.state for p in reversed(data.polls) if p.state), None) or "nothing"
            marks.hang = (
                x(finished),
                x(finished + hang_window),
                f"hang window {hang_window:g} s: the UI still showed {shown}",
            )
    if (at := verdict.verdict_at) is not None:
        label = f"verdict: {verdict.observed} at {at:.2f} s"
        marks.verdict_line = (x(at), label, "end" if at > 0.35 * t_max else "start")
    return marks


def _ticks(t_max: float) -> list[float]:
    raw = t_max / 8
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    count = int(t_max / step) + 1
    return [round(i * step, 6) for i in range(count)]


def _poll_title(poll: Poll, hop: PollHops, sent: float, got: float) -> str:
    lines = [
        f"poll {poll.seq}: {SOURCES[hop.source][0]}",
        f"{poll.method} {where(poll.url)}",
        f"sent {sent:.3f} s, answered {got:.3f} s",
        f"status {poll.status if poll.status is not None else '-'}, state {poll.state or '-'}",
    ]
    if hop.proxy is not None:
        lines.append(f"proxy: {hop.proxy.get('cache')}, Age {hop.proxy.get('age')}")
    if hop.origin is not None:
        lines.append(f"origin answered {hop.origin.get('state') or hop.origin.get('status')}")
    if getattr(poll, "browser_cache_kind", None) == "fresh":
        lines.append("the browser's own HTTP cache answered: no request was sent")
    if poll.error:
        lines.append(f"error: {poll.error}")
    if poll.foreign_task_id:
        lines.append(f"another user's task: {poll.foreign_task_id}")
    return "\n".join(lines)
