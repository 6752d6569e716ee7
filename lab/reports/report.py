"""HTML reports: `report.html` in every run (and matrix cell) folder, `matrix.html` per matrix.

Each page is self-contained (inline CSS and SVG, no script, no font or image fetched), so it opens
from the run folder on any machine, offline. Everything drawn comes from the run's own evidence
files (or from an `Evidence` object, for callers that hold one):

- client.jsonl: one mark per poll in the client lane (`.poll`, `data-poll="<seq>"`);
- proxy-events*.jsonl / origin-events*.jsonl: where each poll went, joined to it by time (a poll
  is one request at a time) or, for an event stream, by the answer's seq;
- task-events*.jsonl: when the worker really finished the task (the vertical line);
- redis-memory.jsonl / load.jsonl, on Redis: the memory chart, key patterns and redis-cli
  commands (lab/report_redis.py).

A matrix keeps the origin, proxy and worker evidence of all its cells in shared files at its top;
they are read once and split by task id.
"""

from __future__ import annotations

import base64
import dataclasses
import math
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jinja2

from lab.clients.polling import Poll
from lab.data.jsonl import read_jsonl
from lab.data.scenarios import Scenario
from lab.judging.evidence import HOPS, Evidence, Verdict, is_status_request, task_id_in
from lab.reports.redis import human_bytes, load_section, redis_section, signed_bytes
from sample_app import strategies

if TYPE_CHECKING:
    from lab.runs.matrix import MatrixResult

REPORT_FILE = "report.html"
MATRIX_FILE = "matrix.html"
SCREENSHOT_FILE = "screenshot.png"
DEFAULT_HANG_WINDOW = 3.0
TEMPLATES = Path(__file__).with_name("templates")

# What answered a poll: (label, colour, meaning). Colours from the Okabe-Ito palette (readable
# with the common colour-vision deficiencies); errors are also drawn as a different shape.
SOURCES: dict[str, tuple[str, str, str]] = {
    "origin": ("origin (fresh)", "#009E73", "the app itself answered this poll"),
    "cache": (
        "proxy cache hit (stale)",
        "#E69F00",
        "the proxy answered from its cache; the app never saw the poll",
    ),
    "revalidated": (
        "revalidated (304)",
        "#0072B2",
        "a kept copy was confirmed with a conditional request (304)",
    ),
    "error": ("error", "#C0392B", "no usable answer: an HTTP error or a failed request"),
    "other": (
        "other",
        "#8C8C8C",
        "answered by something the lab cannot see: a proxy without a log, or the browser's cache",
    ),
}
OUTCOMES: dict[str, tuple[str, str, str]] = {
    # outcome: (short text, background, text colour)
    "completed": ("ok", "#CDEBC5", "#14532D"),
    "hung": ("HUNG", "#FFD58A", "#7A3E00"),
    "errored": ("ERR", "#F4B4AC", "#7F1D1D"),
    "leaked": ("LEAK", "#D9C6F0", "#4C1D95"),
}
NOT_RUN = ("n/a", "#F1F1F1", "#9A9A9A")
LANES = ("client", "proxy", "origin", "worker")
MATCH_SLACK = 0.02  # seconds: clocks are one machine's, events are logged around the poll


# -- evidence -------------------------------------------------------------------------------
class EventFiles:
    """The origin, proxy and worker evidence files in one folder, read once, split by task id.

    A run folder has origin-events.jsonl, proxy-events.jsonl and task-events.jsonl; a matrix
    folder has one of each per app stack or proxy (origin-events-<app>.jsonl, ...)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.origin: dict[str, list[dict[str, Any]]] = {}
        self.proxy: dict[str, list[dict[str, Any]]] = {}
        self.started: dict[str, float] = {}
        self.finished: dict[str, float] = {}
        self.final_state: dict[str, str] = {}
        self.files: dict[str, set[Path]] = {}  # task id -> the files that hold its events
        self.proxy_files = sorted(folder.glob("proxy-events*.jsonl"))
        for path in sorted(folder.glob("origin-events*.jsonl")):
            self._group(path, self.origin)
        for path in self.proxy_files:
            self._group(path, self.proxy)
        for path in sorted(folder.glob("task-events*.jsonl")):
            for event in read_jsonl(path):
                task_id = event.get("task_id")
                if not task_id:
                    continue
                if event.get("event") == "task_started":
                    self.started.setdefault(task_id, event["time"])
                elif event.get("event") == "task_finished":
                    self.finished.setdefault(task_id, event["time"])
                    self.final_state.setdefault(task_id, event.get("state") or "")
                else:
                    continue
                self.files.setdefault(task_id, set()).add(path)

    def _group(self, path: Path, into: dict[str, list[dict[str, Any]]]) -> None:
        for event in read_jsonl(path):
            task_id = task_id_in(event)
            if task_id and is_status_request(event):
                into.setdefault(task_id, []).append(event)
                self.files.setdefault(task_id, set()).add(path)


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
    def from_files(cls, run_dir: Path, verdict: Verdict, events: EventFiles) -> RunData:
        polls = read_polls(run_dir / "client.jsonl")
        task_id = verdict.task.get("id") or ""
        started = events.started.get(task_id)
        finished = events.finished.get(task_id)
        shared = [p for p in sorted(events.files.get(task_id, ())) if p.parent != run_dir]
        if shared:
            shared += _logs_beside(shared)
        return cls(
            client_started_at=_client_start(run_dir / "client.jsonl", polls, verdict, finished),
            polls=polls,
            origin=events.origin.get(task_id, []),
            proxy=events.proxy.get(task_id, []),
            task_started_at=started,
            task_finished_at=finished,
            proxy_visible=verdict.proxy != "none" and bool(events.proxy_files),
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


def _client_start(
    client_log: Path, polls: list[Poll], verdict: Verdict, finished: float | None
) -> float | None:
    """The client's start in epoch seconds, from the verdict's relative times (exact to 1 ms)."""
    if polls and verdict.first_poll_at is not None:
        return polls[0].sent_at - verdict.first_poll_at
    if finished is not None and verdict.task.get("finished_at") is not None:
        return finished - verdict.task["finished_at"]
    start = next((e for e in read_jsonl(client_log) if e.get("event") == "start"), None)
    return start["time"] if start else None  # logged when the POST returned: close enough


def _logs_beside(files: list[Path]) -> list[Path]:
    """The logs of the components that wrote these shared files (origin-events-path.jsonl ->
    app-path.log, worker-path.log; proxy-events-rfc.jsonl -> proxy-rfc.log)."""
    suffixes = {p.stem.split("-events-", 1)[1] for p in files if "-events-" in p.stem}
    folder = files[0].parent
    return sorted(log for log in folder.glob("*.log") if log.stem.partition("-")[2] in suffixes)


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
    """The first unused event logged while the poll was in flight."""
    low, high = poll.sent_at - MATCH_SLACK, poll.received_at + MATCH_SLACK
    for event in events:
        if id(event) not in used and low <= event.get("time", 0.0) <= high:
            used.add(id(event))
            return event
    return None


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
    if origin is not None:
        return "origin"
    return "other"


def _path(event: dict[str, Any]) -> str:
    return event.get("path") or urlsplit(event.get("url") or "").path


def _where(url: str) -> str:
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


@dataclass
class Timeline:
    width: int
    height: int
    left: int
    right: int
    lanes: dict[str, float]
    lane_notes: dict[str, str]
    stopped_lane: str | None
    ticks: list[tuple[float, str]]
    polls: list[PollMark]
    stray_proxy: list[Mark]
    stray_origin: list[Mark]
    start_x: float
    task_bar: tuple[float, float, str] | None  # x from, x to, label
    finish: tuple[float, str, str] | None  # x, label, text-anchor
    hang: tuple[float, float, str] | None
    verdict_line: tuple[float, str, str] | None  # x, label, text-anchor
    axis_y: float
    t_max: float
    notes: list[str]


LANE_Y = {"client": 78.0, "proxy": 168.0, "origin": 258.0, "worker": 348.0}


def build_timeline(
    verdict: Verdict,
    data: RunData,
    joined: list[PollHops],
    hang_window: float,
    verdict_at: float | None,
) -> Timeline:
    width, left, right = 1120, 180, 40
    axis_y = 400.0
    t0 = data.client_started_at or 0.0

    def rel(t: float | None) -> float | None:
        return None if t is None else t - t0

    finished = rel(data.task_finished_at)
    started = rel(data.task_started_at)
    ends = [p.poll.received_at - t0 for p in joined]
    ends += [t for t in (finished, verdict_at) if t is not None]
    if finished is not None and verdict.observed == "hung":
        ends.append(finished + hang_window)
    t_max = max([1.0, *ends]) * 1.04
    span = width - left - right

    def x(t: float) -> float:
        return round(left + span * max(0.0, min(t, t_max)) / t_max, 1)

    stale_seq = (verdict.first_stale_answer or {}).get("seq")
    final_states = strategies.load().final_states
    marks: list[PollMark] = []
    previous_state: str | None = None
    used_proxy = {id(p.proxy) for p in joined if p.proxy is not None}
    used_origin = {id(p.origin) for p in joined if p.origin is not None}
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
        path = " ".join(f"{m.x},{m.y}" for m in points)
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
                path=path,
                title=_poll_title(poll, hop, sent, got),
                state=poll.state,
                label=label,
                final=poll.state in final_states,
                first_stale=poll.seq == stale_seq,
                foreign=bool(poll.foreign_task_id),
                error=hop.source == "error",
            )
        )
    stray_proxy = [
        Mark(x(e["time"] - t0), LANE_Y["proxy"]) for e in data.proxy if id(e) not in used_proxy
    ]
    stray_origin = [
        Mark(x(e["time"] - t0), LANE_Y["origin"]) for e in data.origin if id(e) not in used_origin
    ]

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
    task_bar = finish = hang = verdict_line = None
    final_state = verdict.task.get("final_state") or "finished"
    if started is not None:
        end = finished if finished is not None else t_max
        text = "task running" if finished is not None else "task running, never finished"
        task_bar = (x(started), x(end), text)
    elif finished is None:
        lane_notes["worker"] = "never started the task"
    if finished is not None:
        at = verdict.task.get("finished_at")
        at = finished if at is None else at  # as the verdict rounds it
        label = f"task {final_state} at {at:.2f} s (worker)"
        finish = (x(finished), label, "end" if finished > 0.6 * t_max else "start")
        if verdict.observed == "hung":
            shown = next((p.state for p in reversed(data.polls) if p.state), None) or "nothing"
            hang = (
                x(finished),
                x(finished + hang_window),
                f"hang window {hang_window:g} s: the UI still showed {shown}",
            )
    elif verdict.observed == "hung":
        notes.append("The worker never finished the task: there is no finish line to wait from.")
    if verdict_at is not None:
        label = f"verdict: {verdict.observed} at {verdict_at:.2f} s"
        verdict_line = (x(verdict_at), label, "end" if verdict_at > 0.35 * t_max else "start")
    stopped = verdict.stopped_at
    stopped_lane = (
        stopped if stopped in LANES else ("worker" if stopped == "result backend" else None)
    )
    if stopped == "result backend":
        lane_notes["worker"] = "result not stored"
    return Timeline(
        width=width,
        height=int(axis_y + 48),
        left=left,
        right=right,
        lanes=LANE_Y,
        lane_notes=lane_notes,
        stopped_lane=stopped_lane,
        ticks=[(x(t), f"{t:g} s") for t in _ticks(t_max)],
        polls=marks,
        stray_proxy=stray_proxy,
        stray_origin=stray_origin,
        start_x=x(0.0),
        task_bar=task_bar,
        finish=finish,
        hang=hang,
        verdict_line=verdict_line,
        axis_y=axis_y,
        t_max=t_max,
        notes=notes,
    )


def _ticks(t_max: float) -> list[float]:
    raw = t_max / 8
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    count = int(t_max / step) + 1
    return [round(i * step, 6) for i in range(count)]


def _poll_title(poll: Poll, hop: PollHops, sent: float, got: float) -> str:
    lines = [
        f"poll {poll.seq}: {SOURCES[hop.source][0]}",
        f"{poll.method} {_where(poll.url)}",
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


# -- the run page -----------------------------------------------------------------------------
def _verdict_at(
    verdict: Verdict, data: RunData, scenario: Scenario | None, hang_window: float
) -> float | None:
    """Seconds after the client's start at which the verdict fell."""
    t0 = data.client_started_at
    if t0 is None:
        return None
    if verdict.observed != "hung":
        last = data.polls[-1].received_at if data.polls else None
        return None if last is None else last - t0
    if data.task_finished_at is not None:
        return data.task_finished_at - t0 + hang_window
    if scenario is None:
        return None
    from lab.runs.cell import TASK_START_GRACE

    give_up = scenario.task_duration + hang_window
    if scenario.worker.running and not scenario.worker.task_never_finishes:
        give_up += TASK_START_GRACE
    return give_up


def _load_scenario(name: str) -> Scenario | None:
    from lab.data import scenarios
    from lab.data.errors import BadInput

    try:
        return scenarios.load(name)
    except (BadInput, OSError):
        return None


def _hop_chain(verdict: Verdict, data: RunData) -> list[dict[str, Any]]:
    task = verdict.task
    finished = task.get("finished_at")
    values = {
        "worker": (
            f"task {task.get('final_state')} at {finished:.2f} s"
            if finished is not None
            else ("task started, never finished" if data.task_started_at else "task never started")
        ),
        "result backend": str(verdict.backend_state),
        "origin": f"{_n(verdict.polls.get('reached_origin', 0), 'poll')} reached it",
        "proxy": (
            "none (direct)"
            if verdict.proxy == "none"
            else f"{verdict.proxy}: {verdict.polls.get('from_cache', 0)} from its cache"
        ),
        "client": f"{_n(verdict.polls.get('total', 0), 'poll')}, UI {verdict.observed}",
    }
    return [
        {"name": hop, "value": values[hop], "stopped": hop == verdict.stopped_at} for hop in HOPS
    ]


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _evidence_files(run_dir: Path, shared: Iterable[Path]) -> list[dict[str, str]]:
    files = [
        {"href": p.name, "name": p.name, "size": _size(p)}
        for p in sorted(run_dir.iterdir())
        if p.is_file()
        and p.name != REPORT_FILE
        and not p.name.startswith(".")
        # SQLite's write-ahead log and its index: folded into the database and deleted when
        # the last connection closes, so a link to them would soon point nowhere.
        and not p.name.endswith(("-wal", "-shm"))
    ]
    for p in shared:
        rel = Path(os.path.relpath(p, run_dir)).as_posix()
        files.append({"href": rel, "name": rel, "size": _size(p)})
    return files


def _size(path: Path) -> str:
    try:
        n = path.stat().st_size
    except OSError:
        return ""
    return f"{n / 1024:.1f} KB" if n >= 1024 else f"{n} B"


def _stale_headers(stale: dict[str, Any] | None) -> list[tuple[str, str]]:
    if not stale:
        return []
    rows = [
        ("Age", stale.get("age")),
        ("Date", stale.get("date")),
        ("Via", stale.get("via")),
        ("Cache-Control", stale.get("cache_control")),
        ("X-Cache", stale.get("x_cache")),
    ]
    return [(name, "(none)" if value in (None, "") else str(value)) for name, value in rows]


def render_run_report(
    run_dir: Path,
    verdict: Verdict,
    *,
    scenario: Scenario | None = None,
    evidence: Evidence | None = None,
    events: EventFiles | None = None,
) -> str:
    """The page for one run; evidence from `evidence` if given, else from the files."""
    scenario = scenario or _load_scenario(verdict.scenario)
    if evidence is not None:
        data = RunData.from_evidence(evidence)
    else:
        data = RunData.from_files(run_dir, verdict, events or EventFiles(run_dir))
    hang_window = scenario.hang_window if scenario else DEFAULT_HANG_WINDOW
    joined = join_hops(data)
    timeline = build_timeline(
        verdict, data, joined, hang_window, _verdict_at(verdict, data, scenario, hang_window)
    )
    counts = {key: sum(1 for j in joined if j.source == key) for key in SOURCES}
    screenshot = run_dir / SCREENSHOT_FILE
    warnings = list(verdict.warnings)
    if not data.polls and verdict.polls.get("total"):
        warnings.append("client.jsonl holds no polls: the timeline has nothing to draw.")
    if verdict.retried:
        warnings.append(
            "This cell was run a second time: its first poll came after the task "
            "had finished (a busy machine), so the cache was never tested."
        )
    return (
        _env()
        .get_template("run_report.html.j2")
        .render(
            v=verdict,
            scenario=scenario,
            outcome=OUTCOMES.get(verdict.observed, NOT_RUN),
            expected_outcome=OUTCOMES.get(verdict.expected, NOT_RUN),
            hops=_hop_chain(verdict, data),
            timeline=timeline,
            sources=SOURCES,
            counts=counts,
            stale_headers=_stale_headers(verdict.first_stale_answer),
            stale=verdict.first_stale_answer,
            joined=joined,
            t0=data.client_started_at or 0.0,
            where=_where,
            files=_evidence_files(run_dir, data.shared_files),
            screenshot=_data_uri(screenshot) if screenshot.is_file() else None,
            warnings=warnings,
            hang_window=hang_window,
            folder=run_dir.name,
            redis=redis_section(
                run_dir,
                verdict,
                data.client_started_at,
                scenario.default_broker if scenario else None,
            ),
            load=load_section(verdict.load),
        )
    )


def write_run_report(
    run_dir: Path,
    verdict: Verdict,
    *,
    scenario: Scenario | None = None,
    evidence: Evidence | None = None,
    events: EventFiles | None = None,
) -> Path | None:
    """Writes report.html in the run folder. A report that cannot be drawn never fails the run:
    the reason goes to stderr and the verdict stands."""
    try:
        html = render_run_report(
            Path(run_dir), verdict, scenario=scenario, evidence=evidence, events=events
        )
    except Exception as exc:  # noqa: BLE001 - the report is a view; the verdict is the result
        print(
            f"report: no {REPORT_FILE} in {run_dir}: {type(exc).__name__}: {exc}", file=sys.stderr
        )
        return None
    path = Path(run_dir) / REPORT_FILE
    path.write_text(html, "utf-8")
    return path


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


# -- the matrix page --------------------------------------------------------------------------
def render_matrix_report(result: MatrixResult, scenarios: Iterable[Scenario] = ()) -> str:
    from lab.runs.matrix import defeats, survivors

    last = result.last
    root = Path(result.run_dir)
    known = {sc.name: sc for sc in scenarios}
    flips = result.flips
    rows = []
    for name in result.scenarios:
        proxy = next((v.proxy for (s, _), v in last.items() if s == name), None)
        if proxy is None and name in known:
            proxy = known[name].proxy
        cells = []
        for fix in result.fixes:
            verdict = last.get((name, fix))
            if verdict is None:
                cells.append(None)
                continue
            short, background, colour = OUTCOMES.get(verdict.observed, NOT_RUN)
            cells.append(
                {
                    "id": f"{name}/{fix}",
                    "text": short,
                    "background": background,
                    "colour": colour,
                    "observed": verdict.observed,
                    "expected": verdict.expected,
                    "expected_text": OUTCOMES.get(verdict.expected, NOT_RUN)[0],
                    "matched": verdict.matched,
                    "retried": verdict.retried,
                    "unjudged": verdict.inconclusive,
                    "flips": flips.get((name, fix)),
                    "href": _relative_link(Path(verdict.run_dir) / REPORT_FILE, root),
                    "title": verdict.sentence,
                }
            )
        summary = known[name].summary if name in known else ""
        rows.append({"name": name, "proxy": proxy or "?", "summary": summary, "cells": cells})
    beaten = defeats(result)
    mismatches = [(n, v) for n, r in enumerate(result.rounds, 1) for v in r.values() if v.wrong]
    unjudged = [
        (n, v) for n, r in enumerate(result.rounds, 1) for v in r.values() if v.inconclusive
    ]
    return (
        _env()
        .get_template("matrix_report.html.j2")
        .render(
            result=result,
            rows=rows,
            outcomes=OUTCOMES,
            not_run=NOT_RUN,
            cells=len(last),
            mismatches=mismatches,
            unjudged=unjudged,
            ok=result.ok,
            headline=result.headline(),
            round_counts=result.round_counts(),
            defeats=beaten,
            survivors=survivors(result),
            flips=flips,
            files=[f for f in ("matrix.json", "matrix.md") if (root / f).exists()],
            folder=root.name,
        )
    )


def write_matrix_report(result: MatrixResult, scenarios: Iterable[Scenario] = ()) -> Path | None:
    """Writes report.html in every cell folder of every round, then matrix.html beside
    matrix.json. Like write_run_report, never fails the matrix."""
    known = {sc.name: sc for sc in scenarios}
    root = Path(result.run_dir)
    try:
        events = EventFiles(root)
    except Exception as exc:  # noqa: BLE001
        print(f"report: cannot read the matrix evidence in {root}: {exc}", file=sys.stderr)
        return None
    for round_verdicts in result.rounds:
        for (name, _fix), verdict in round_verdicts.items():
            write_run_report(
                Path(verdict.run_dir), verdict, scenario=known.get(name), events=events
            )
    try:
        html = render_matrix_report(result, known.values())
    except Exception as exc:  # noqa: BLE001
        print(f"report: no {MATRIX_FILE} in {root}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None
    path = root / MATRIX_FILE
    path.write_text(html, "utf-8")
    return path


def _relative_link(target: Path, base: Path) -> str:
    try:
        rel = target.relative_to(base)
    except ValueError:
        rel = Path(os.path.relpath(target.resolve(), base.resolve()))
    return rel.as_posix()


# -- templates --------------------------------------------------------------------------------
@cache
def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["secs"] = lambda t: "-" if t is None else f"{t:.3f}"
    env.filters["bytes"] = human_bytes
    env.filters["signed_bytes"] = signed_bytes
    return env
