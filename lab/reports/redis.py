"""The Redis part of report.html: memory over time, key patterns before and after, the scenario's
load stream, and the redis-cli commands that show the same figures (issue #5).

Drawn from the run folder's redis-memory.jsonl (one INFO memory sample every ~0.1 s, from
lab/stacks/redis_memory.py) and load.jsonl (one line per task of the [load] stream, from
lab/clients/load.py), and from the verdict's `redis` (MemorySummary.to_json) and `load`
(StreamResult.to_json). Like the rest of the report, a missing or garbled file or figure
becomes a note on the page, never an error: the section is a view, the verdict is the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lab.data.jsonl import read_jsonl
from lab.judging.evidence import Verdict
from lab.stacks.redis_memory import redis_cli_commands

MEMORY_FILE = "redis-memory.jsonl"
LOAD_FILE = "load.jsonl"
CLIENT_FILE = "client.jsonl"
OWN_REDIS_LOG = "redis.log"  # the lab's own redis-server logs here; an external Redis does not
KIB = 1024
MIB = 1024 * 1024


def human_bytes(n: float) -> str:
    sign, n = ("-" if n < 0 else ""), abs(n)
    if n >= MIB:
        return f"{sign}{n / MIB:.2f} MiB"
    if n >= KIB:
        return f"{sign}{n / KIB:.1f} KiB"
    return f"{sign}{int(n)} B"


def signed_bytes(n: float) -> str:
    return "0" if n == 0 else ("+" if n > 0 else "") + human_bytes(n)


# -- the chart --------------------------------------------------------------------------------
@dataclass
class ChartMark:
    x: float
    y: float
    title: str


@dataclass
class MemoryChart:
    width: int
    height: int
    left: int
    right: int
    top: float
    bottom: float  # the x axis
    rug_y: float  # the strip of refused requests, under the axis
    used: str  # polyline points, one per sample
    dataset: str
    samples: list[ChartMark]
    cap: tuple[float, str] | None  # y, label
    peak: ChartMark | None
    peak_anchor: str
    peak_below: bool
    refusals: list[ChartMark]
    stream: tuple[float, float, str] | None  # x from, x to, label
    client_start: tuple[float, str, str] | None  # x, label, text-anchor
    x_ticks: list[tuple[float, str]]
    y_ticks: list[tuple[float, str]]


def nice_ticks(top: float, count: int = 6) -> list[float]:
    """0, step, 2 step, ... up to top, with a step of 1, 2 or 5 times a power of ten."""
    raw = max(top, 1e-9) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return [round(i * step, 6) for i in range(int(top / step) + 1)]


def _samples(run_dir: Path) -> list[dict[str, Any]]:
    good = [
        s
        for s in read_jsonl(run_dir / MEMORY_FILE)
        if isinstance(s, dict)
        and isinstance(s.get("time"), int | float)
        and isinstance(s.get("used_memory"), int | float)
    ]
    return sorted(good, key=lambda s: s["time"])


def _client_start(run_dir: Path, client_started_at: float | None) -> float | None:
    if client_started_at is not None:
        return client_started_at
    start = next((e for e in read_jsonl(run_dir / CLIENT_FILE) if e.get("event") == "start"), None)
    return start.get("time") if start else None


def build_chart(
    samples: list[dict[str, Any]],
    load_lines: list[dict[str, Any]],
    maxmemory: int,
    policy: str,
    client_started_at: float | None,
) -> MemoryChart:
    width, left, right, top, bottom = 1120, 100, 40, 40.0, 290.0
    t0 = samples[0]["time"]
    load_times = [e["time"] for e in load_lines if isinstance(e.get("time"), int | float)]
    t0 = min([t0, *load_times])
    ends = [samples[-1]["time"], *load_times]
    if client_started_at is not None:
        ends.append(client_started_at)
    t_max = max(max(ends) - t0, 1.0) * 1.02
    used = [s["used_memory"] for s in samples]
    high = max([*used, maxmemory, 1]) * 1.12
    unit, unit_name = (MIB, "MiB") if high >= MIB else (KIB, "KiB")

    def x(t: float) -> float:
        return round(left + (width - left - right) * max(0.0, min(t - t0, t_max)) / t_max, 1)

    def y(n: float) -> float:
        return round(bottom - (bottom - top) * max(0.0, min(n, high)) / high, 1)

    marks = []
    for s in samples:
        dataset = s.get("used_memory_dataset")
        title = f"{s['time'] - t0:.1f} s: used_memory {human_bytes(s['used_memory'])}"
        if isinstance(dataset, int | float):
            title += f", dataset {human_bytes(dataset)}"
        title += f", {s.get('keys', '?')} keys, {s.get('rejected_calls', '?')} refused so far"
        marks.append(ChartMark(x(s["time"]), y(s["used_memory"]), title))
    dataset_points = " ".join(
        f"{x(s['time'])},{y(s['used_memory_dataset'])}"
        for s in samples
        if isinstance(s.get("used_memory_dataset"), int | float)
    )
    peak_sample = max(samples, key=lambda s: s["used_memory"])
    peak = ChartMark(
        x(peak_sample["time"]),
        y(peak_sample["used_memory"]),
        f"peak {human_bytes(peak_sample['used_memory'])} at {peak_sample['time'] - t0:.1f} s",
    )
    refusals = [
        ChartMark(
            x(e["time"]),
            0.0,
            f"task {e.get('n', '?')} of the stream refused at {e['time'] - t0:.2f} s: {e['error']}",
        )
        for e in load_lines
        if e.get("error") and isinstance(e.get("time"), int | float)
    ]
    stream = None
    if load_times:
        stream = (
            x(min(load_times)),
            x(max(load_times)),
            f"load stream: {len(load_lines)} tasks from other users",
        )
    client_start = None
    if client_started_at is not None:
        cx = x(client_started_at)
        client_start = (cx, "the UI's Start", "end" if cx > 0.75 * width else "start")
    cap = None
    if maxmemory:
        cap = (y(maxmemory), f"maxmemory {human_bytes(maxmemory)} ({policy})")
    return MemoryChart(
        width=width,
        height=int(bottom + (80 if refusals else 50)),
        left=left,
        right=right,
        top=top,
        bottom=bottom,
        rug_y=bottom + 44,
        used=" ".join(f"{m.x},{m.y}" for m in marks),
        dataset=dataset_points,
        samples=marks,
        cap=cap,
        peak=peak,
        peak_anchor="end" if peak.x > 0.7 * width else "start",
        # Under the point when it is close to the cap line (whose label is above it).
        peak_below=cap is not None and abs(peak.y - cap[0]) < 24,
        refusals=refusals,
        stream=stream,
        client_start=client_start,
        x_ticks=[(x(t0 + t), f"{t:g} s") for t in nice_ticks(t_max, 10)],
        y_ticks=[(y(v * unit), f"{v:g} {unit_name}") for v in nice_ticks(high / unit, 5)],
    )


# -- the section ------------------------------------------------------------------------------
@dataclass
class KeyRow:
    pattern: str
    before_count: int
    before_bytes: int
    after_count: int
    after_bytes: int

    @property
    def growth(self) -> int:
        return self.after_bytes - self.before_bytes

    @property
    def count_growth(self) -> int:
        return self.after_count - self.before_count


def key_rows(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[KeyRow]:
    """One row per key pattern seen before or after the run, largest (after) first."""
    rows: dict[str, KeyRow] = {}
    for group in before:
        row = rows.setdefault(group["pattern"], KeyRow(group["pattern"], 0, 0, 0, 0))
        row.before_count, row.before_bytes = int(group["count"]), int(group["bytes"])
    for group in after:
        row = rows.setdefault(group["pattern"], KeyRow(group["pattern"], 0, 0, 0, 0))
        row.after_count, row.after_bytes = int(group["count"]), int(group["bytes"])
    return sorted(rows.values(), key=lambda r: (-r.after_bytes, -r.before_bytes, r.pattern))


@dataclass
class RedisSection:
    url: str | None
    figures: list[tuple[str, str]] = field(default_factory=list)
    flat: bool | None = None
    flat_text: str = ""
    chart: MemoryChart | None = None
    keys: list[KeyRow] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    port: int | None = None
    lab_up: str | None = None  # None: not the lab's own redis-server
    notes: list[str] = field(default_factory=list)


def _flat_text(r: dict[str, Any], flat: bool) -> str:
    growth = int(r.get("key_bytes_growth", 0))
    if flat:
        return (
            f"Memory stayed flat: Redis refused no write, and its keys ended "
            f"{signed_bytes(growth)} from where they started."
        )
    reasons = []
    refused = int(r.get("refused_writes", 0))
    if refused:
        plural = "s" if refused != 1 else ""
        reasons.append(f"Redis refused {refused} write{plural} (out of memory)")
    grew = f"its keys grew by {human_bytes(growth)}"
    headroom = int(r.get("headroom", 0))
    if r.get("maxmemory") and headroom:
        grew += f", {100 * growth / headroom:.0f}% of the {human_bytes(headroom)} headroom"
        grew += " below the cap the run started with"
    reasons.append(grew)
    return "Memory did not stay flat: " + " and ".join(reasons) + "."


def _figures(r: dict[str, Any]) -> list[tuple[str, str]]:
    cap = int(r.get("maxmemory") or 0)
    peak = int(r["peak"])
    peak_text = human_bytes(peak) + (f" ({100 * peak / cap:.0f}% of the cap)" if cap else "")
    return [
        ("baseline", f"{human_bytes(r['baseline'])} (used_memory when the run began)"),
        ("peak", peak_text),
        ("final", human_bytes(r["final"])),
        ("cap (maxmemory)", human_bytes(cap) if cap else "none (maxmemory 0)"),
        ("policy", str(r.get("policy", "?"))),
        ("refused writes", f"{r.get('refused_writes', 0)} (OOM errors Redis counted)"),
        ("keys' growth", f"{signed_bytes(r.get('key_bytes_growth', 0))} (MEMORY USAGE)"),
        ("dataset growth", f"{signed_bytes(r.get('dataset_growth', 0))} (used_memory_dataset)"),
        ("samples", f"{r.get('samples', 0)} (INFO memory, every 0.1 s)"),
    ]


def _lab_up(run_dir: Path, scenario: str, default_broker: str | None) -> str | None:
    """The command that starts a live Redis like the run's, or None when the run used a Redis
    the lab did not start (it was not stopped after the run)."""
    if not (run_dir / OWN_REDIS_LOG).exists():
        return None
    return f"lab up {scenario}" + ("" if default_broker == "redis" else " --broker redis")


def redis_section(
    run_dir: Path,
    verdict: Verdict,
    client_started_at: float | None = None,
    default_broker: str | None = None,
) -> RedisSection | None:
    """The Redis memory section, or None for a run without Redis figures (not on Redis)."""
    r = verdict.redis
    if r is None:
        if verdict.broker != "redis":
            return None
        return RedisSection(
            url=None, notes=["The lab could not read Redis at the end of the run: no figures."]
        )
    section = RedisSection(url=None)
    try:
        section.url = str(r["url"])
        section.flat = r["flat"] if isinstance(r.get("flat"), bool) else None
        section.figures = _figures(r)
        if section.flat is not None:
            section.flat_text = _flat_text(r, section.flat)
    except Exception as exc:  # noqa: BLE001 - garbled figures: a note, the rest still drawn
        section.figures = []
        section.notes.append(f"result.json's Redis figures are unreadable ({exc!r}).")
    try:
        section.keys = key_rows(r.get("keys_before") or [], r.get("keys_after") or [])
    except Exception as exc:  # noqa: BLE001
        section.notes.append(f"result.json's key patterns are unreadable ({exc!r}).")
    try:
        samples = _samples(run_dir)
        if not samples:
            section.notes.append(f"{MEMORY_FILE} is missing or holds no samples: no chart.")
        else:
            load_lines = [e for e in read_jsonl(run_dir / LOAD_FILE) if isinstance(e, dict)]
            if verdict.load and verdict.load.get("refused") and not load_lines:
                section.notes.append(f"{LOAD_FILE} is missing: refused requests are not drawn.")
            section.chart = build_chart(
                samples,
                load_lines,
                int(r.get("maxmemory") or samples[-1].get("maxmemory") or 0),
                str(r.get("policy", "?")),
                _client_start(run_dir, client_started_at),
            )
    except Exception as exc:  # noqa: BLE001
        section.notes.append(f"The memory chart cannot be drawn ({type(exc).__name__}: {exc}).")
    if section.url:
        try:
            section.commands = redis_cli_commands(section.url)
            section.port = urlsplit(section.url).port
            section.lab_up = _lab_up(run_dir, verdict.scenario, default_broker)
        except Exception as exc:  # noqa: BLE001
            section.notes.append(f"No redis-cli commands for {section.url} ({exc!r}).")
    return section


# -- the load stream --------------------------------------------------------------------------
@dataclass
class LoadSection:
    figures: list[tuple[str, str]]
    text: str
    first_error: str | None
    first_error_at: float | None
    completed: bool


def load_section(load: dict[str, Any] | None) -> LoadSection | None:
    """The [load] stream's summary (other users' tasks before the UI's), or None without one."""
    if not load:
        return None
    try:
        sent, refused = int(load["sent"]), int(load["refused"])
        accepted, finished = int(load["accepted"]), int(load["finished"])
        failed = int(load.get("failed", 0))
        figures = [
            ("sent", f"{sent} tasks in {load.get('seconds', '?')} s"),
            ("accepted", f"{accepted} (queued by the app)"),
            ("refused", f"{refused} (the app answered an error: not queued)"),
            ("finished", f"{finished} (the worker's own record)"),
            ("failed", f"{failed} (finished in a state other than SUCCESS)"),
        ]
        completed = bool(load.get("completed", refused == 0 and failed == 0 and finished == sent))
        if completed:
            text = "Every task of the stream was queued and finished."
        else:
            parts = []
            if refused:
                parts.append(f"the app refused {refused} of {sent} tasks")
            if accepted - finished:
                unfinished = accepted - finished
                parts.append(
                    f"the worker never finished {unfinished} of the {accepted} it accepted"
                )
            if failed:
                parts.append(f"{failed} failed")
            text = "The stream did not complete: " + (", ".join(parts) or "see the figures") + "."
        return LoadSection(
            figures, text, load.get("first_error"), load.get("first_error_at"), completed
        )
    except Exception as exc:  # noqa: BLE001
        text = f"result.json's load figures are unreadable ({exc!r})."
        return LoadSection([], text, None, None, False)
