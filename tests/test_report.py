"""The HTML reports: report.html per run (and matrix cell), matrix.html per matrix.

Unit tests build runs from synthetic evidence (files in tmp_path, or an Evidence object) and read
the page back with html.parser. The tests marked `stack` open the pages in headless Chromium (a
real process), and run the real lab once to see its hooks write them.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import html
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
import uuid
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from lab.clients.polling import Poll
from lab.data import scenarios
from lab.data.scenarios import Outcome
from lab.judging.evidence import Evidence, Verdict, judge
from lab.reports import look, publish, run_page, timeline
from lab.runs.broker_comparison import BrokerComparison
from lab.runs.matrix import MatrixResult
from lab.stacks.redis_memory import redis_cli_commands
from sample_app import strategies

T0 = 1_800_000_000.0  # the client's start, epoch seconds
TASK = "0b8a3c1e-5d2f-4e6a-9c7b-1f2e3d4c5b6a"
FINAL = strategies.load().final_states
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


# -- synthetic runs ---------------------------------------------------------------------------
@dataclass
class Run:
    """A run's evidence, as the lab would have written it."""

    polls: list[Poll]
    origin: list[dict[str, Any]]
    proxy: list[dict[str, Any]]
    started: float | None  # seconds after T0
    finished: float | None
    uses_proxy: bool = True
    task: str = TASK
    extra_task_events: list[dict[str, Any]] = field(default_factory=list)

    def evidence(self, backend_state: str = "SUCCESS") -> Evidence:
        return Evidence(
            # The lab saw the outcome with the last answer.
            decided_at=self.polls[-1].received_at if self.polls else None,
            task_id=self.task,
            client_started_at=T0,
            task_started_at=None if self.started is None else T0 + self.started,
            task_finished_at=None if self.finished is None else T0 + self.finished,
            task_final_state=None if self.finished is None else "SUCCESS",
            backend_state=backend_state,
            origin_status_requests=self.origin,
            proxy_status_requests=self.proxy,
            polls=self.polls,
            client_error=None,
            ui_state="running",
            uses_proxy=self.uses_proxy,
        )

    def write(self, folder: Path, suffix: str = "", with_client: bool = True) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        if with_client:
            lines = [{"time": T0 + 0.01, "event": "start", "status": 202}]
            lines += [{"time": p.received_at, "event": "poll", **asdict(p)} for p in self.polls]
            _jsonl(folder / "client.jsonl", lines)
        _jsonl(folder / f"origin-events{suffix}.jsonl", self.origin)
        if self.uses_proxy:
            _jsonl(folder / f"proxy-events{suffix}.jsonl", self.proxy)
        task_events = [{"time": T0 - 1, "event": "worker_ready", "pid": 1}]
        if self.started is not None:
            task_events.append(
                {"time": T0 + self.started, "event": "task_started", "task_id": self.task}
            )
        if self.finished is not None:
            task_events.append(
                {
                    "time": T0 + self.finished,
                    "event": "task_finished",
                    "task_id": self.task,
                    "state": "SUCCESS",
                }
            )
        _jsonl(folder / f"task-events{suffix}.jsonl", task_events + self.extra_task_events)
        return folder


def _jsonl(path: Path, lines: list[dict[str, Any]]) -> None:
    with path.open("a", encoding="utf-8") as fh:
        for line in lines:
            fh.write(json.dumps(line) + "\n")


def _poll(
    seq: int, sent: float, took: float, state: str, served: float, task: str = TASK, **kw: Any
) -> Poll:
    return Poll(
        seq=seq,
        sent_at=T0 + sent,
        received_at=T0 + sent + took,
        url=f"http://127.0.0.1:41234/tasks/{task}/status",
        status=kw.pop("status", 200),
        state=state,
        served_at=T0 + served,
        date="Fri, 27 Nov 2026 23:58:41 GMT",
        task_id=task,
        **kw,
    )


def _origin(at: float, state: str, seq: int, task: str = TASK) -> dict[str, Any]:
    return {
        "time": T0 + at,
        "event": "request",
        "method": "GET",
        "path": f"/tasks/{task}/status",
        "query": "",
        "endpoint": "status_path",
        "task_id": task,
        "status": 200,
        "state": state,
        "seq": seq,
    }


def _proxy(at: float, cache: str, age: int | None = None, task: str = TASK) -> dict[str, Any]:
    return {
        "time": T0 + at,
        "method": "GET",
        "url": f"http://127.0.0.1:41234/tasks/{task}/status",
        "cache": cache,
        "status": 200,
        "age": age,
    }


def hung_story(task: str = TASK) -> Run:
    """The story: the first poll is stored, every later one is a cache HIT; done at 1.3 s."""
    run = Run([], [], [], started=0.3, finished=1.3, task=task)
    for seq in range(1, 18):
        sent = 0.2 + 0.25 * (seq - 1)
        if seq == 1:
            run.polls.append(_poll(seq, sent, 0.04, "PENDING", sent + 0.02, task, server_seq=1))
            run.origin.append(_origin(sent + 0.02, "PENDING", 1, task))
            run.proxy.append(_proxy(sent + 0.03, "STORE", task=task))
        else:
            age = str(int(sent))
            run.polls.append(_poll(seq, sent, 0.01, "PENDING", 0.22, task, server_seq=1, age=age))
            run.proxy.append(_proxy(sent + 0.005, "HIT", int(age), task))
    return run


def completed_story(task: str = TASK) -> Run:
    """The fix: every poll reaches the origin; the one after 1.3 s says SUCCESS."""
    run = Run([], [], [], started=0.3, finished=1.3, task=task)
    for seq in range(1, 7):
        sent = 0.2 + 0.25 * (seq - 1)
        state = "SUCCESS" if sent > 1.3 else "PENDING"
        run.polls.append(_poll(seq, sent, 0.03, state, sent + 0.015, task, server_seq=seq))
        run.origin.append(_origin(sent + 0.015, state, seq, task))
        run.proxy.append(_proxy(sent + 0.025, "MISS", task=task))
    return run


def verdict_for(run: Run, scenario_name: str, fix: str, observed: Outcome) -> Verdict:
    scenario = scenarios.load(scenario_name)
    verdict = judge(scenario, fix, observed, run.evidence(), seconds=5.0, final_states=FINAL)
    return verdict


# -- reading a page back -----------------------------------------------------------------------
class Page(HTMLParser):
    def __init__(self, html: str) -> None:
        super().__init__()
        self.html = html
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def having(self, attr: str, value: str | None = None) -> list[dict[str, str]]:
        return [a for _, a in self.elements if attr in a and (value is None or a[attr] == value)]

    def with_class(self, name: str) -> list[dict[str, str]]:
        return [a for _, a in self.elements if name in a.get("class", "").split()]

    def after(self, name: str) -> dict[str, str]:
        """The element right after the first one with this class (a group's first child)."""
        at = next(i for i, (_, a) in enumerate(self.elements) if name in a.get("class", "").split())
        return self.elements[at + 1][1]

    def tags(self, name: str) -> list[dict[str, str]]:
        return [a for tag, a in self.elements if tag == name]

    def text_of(self, element_id: str) -> str:
        """The text inside the element with this id (up to its tag's first closing tag), one
        space between pieces."""
        match = re.search(rf'<(\w+)[^>]*\bid="{element_id}"[^>]*>', self.html)
        assert match is not None, f"no element with id {element_id!r}"
        inner = self.html[match.end() : self.html.index(f"</{match.group(1)}>", match.end())]
        return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", inner)).split())


def read_page(path: Path) -> Page:
    return Page(path.read_text("utf-8"))


def assert_self_contained(page: Page, folder: Path) -> None:
    lowered = page.html.lower()
    assert "http://" not in lowered and "https://" not in lowered
    assert "<script" not in lowered and "<link" not in lowered
    assert "@import" not in lowered and "url(http" not in lowered
    for attrs in page.having("src"):
        assert attrs["src"].startswith("data:"), attrs["src"]
    for attrs in page.having("href"):
        href = attrs["href"]
        assert "://" not in href and not href.startswith("/"), href
        if not href.startswith("#"):
            assert (folder / href).exists(), f"{href} does not resolve from {folder}"


def assert_links(page: Page, present: list[str], absent: str) -> None:
    links = {a["href"] for a in page.having("href")}
    assert set(present) <= links, sorted(set(present) - links)
    assert absent not in links


def tiny_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixel = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixel) + chunk(b"IEND", b"")
    )


# -- a run's page -----------------------------------------------------------------------------
def test_one_client_mark_per_poll_joined_to_the_hops_it_reached(tmp_path):
    run = hung_story()
    verdict = verdict_for(run, "proxy-cache", "none", Outcome.hung)
    path = run_page.write_run_report(run.write(tmp_path), verdict)

    page = read_page(path)
    marks = page.with_class("poll")
    assert len(marks) == len(run.polls) == verdict.polls["total"]
    assert [m["data-poll"] for m in marks] == [str(p.seq) for p in run.polls]
    # Every poll passed the proxy; only the first went on to the origin.
    assert len(page.with_class("poll-proxy")) == len(run.polls)
    assert [m["data-for-poll"] for m in page.with_class("poll-origin")] == ["1"]


def test_marks_are_coloured_by_what_answered(tmp_path):
    run = hung_story()
    verdict = verdict_for(run, "proxy-cache", "none", Outcome.hung)
    page = read_page(run_page.write_run_report(run.write(tmp_path), verdict))

    marks = page.with_class("poll")
    assert Counter(m["data-source"] for m in marks) == {"origin": 1, "cache": 16}
    assert Counter(m["data-source"] for m in marks)["cache"] == verdict.polls["from_cache"]
    for mark in marks:
        assert mark["fill"] == look.SOURCES[mark["data-source"]][1]
    assert look.SOURCES["origin"][1] != look.SOURCES["cache"][1]


def test_hung_run_shows_the_finish_the_hang_window_and_where_the_status_stopped(tmp_path):
    run = hung_story()
    verdict = verdict_for(run, "proxy-cache", "none", Outcome.hung)
    page = read_page(run_page.write_run_report(run.write(tmp_path), verdict))

    assert verdict.sentence in page.html
    assert len(page.with_class("finish-line")) == 1
    assert len(page.with_class("hang-window")) == 1
    finish_line = page.after("finish-line")
    assert page.with_class("hang")[0]["x"] == finish_line["x1"]  # the window starts there
    assert len(page.with_class("first-stale")) == 1
    assert [a["data-lane"] for a in page.with_class("stopped") if "data-lane" in a] == ["proxy"]
    assert page.having("data-hop", "proxy")[0]["class"] == "hop stopped"
    # The first stale answer's headers, and the lesson.
    assert verdict.first_stale_answer is not None
    assert "Cache-Control" in page.html and "(none)" in page.html
    assert verdict.first_stale_answer["date"] in page.html
    assert verdict.lesson and verdict.lesson in page.html


def test_completed_run_has_a_finish_line_and_no_hang_window(tmp_path):
    run = completed_story()
    verdict = verdict_for(run, "proxy-cache", "nonce", Outcome.completed)
    page = read_page(run_page.write_run_report(run.write(tmp_path), verdict))

    assert len(page.with_class("poll")) == 6
    assert {m["data-source"] for m in page.with_class("poll")} == {"origin"}
    assert len(page.with_class("finish-line")) == 1
    assert page.with_class("hang-window") == [] and page.with_class("first-stale") == []
    assert page.with_class("stopped") == []


def test_a_cell_run_again_says_why_its_run_before_tested_nothing(tmp_path):
    run = completed_story()
    verdict = verdict_for(run, "proxy-cache", "nonce", Outcome.completed)
    verdict.attempts, verdict.retried_because = 2, "the first poll was sent at 1.40 s, after"
    page = read_page(run_page.write_run_report(run.write(tmp_path), verdict))

    assert (
        "This cell was run 2 times: the run before this one tested nothing "
        "(the first poll was sent at 1.40 s, after)." in html.unescape(page.html)
    )


def test_a_task_that_never_finished_has_no_finish_line(tmp_path):
    run = Run([], [], [], started=None, finished=None, uses_proxy=False)
    for seq in range(1, 9):
        sent = 0.1 + 0.5 * (seq - 1)
        run.polls.append(_poll(seq, sent, 0.02, "PENDING", sent + 0.01, server_seq=seq))
        run.origin.append(_origin(sent + 0.01, "PENDING", seq))
    verdict = verdict_for(run, "no-worker", "none", Outcome.hung)
    page = read_page(run_page.write_run_report(run.write(tmp_path), verdict))

    assert len(page.with_class("poll")) == 8
    assert page.with_class("finish-line") == [] and page.with_class("hang-window") == []
    assert len(page.with_class("verdict-line")) == 1
    assert [a["data-lane"] for a in page.with_class("stopped") if "data-lane" in a] == ["worker"]
    assert "never finished the task" in page.html


@pytest.mark.parametrize(
    ("poll", "proxy", "origin", "source"),
    [
        ({}, {"cache": "STORE"}, {"status": 200}, "origin"),
        ({}, {"cache": "MISS"}, {"status": 200}, "origin"),
        ({}, None, {"status": 200}, "origin"),
        ({}, {"cache": "HIT"}, None, "cache"),
        ({}, {"cache": "REVALIDATED"}, {"status": 304}, "revalidated"),
        ({"browser_cache": True, "status": 304}, None, {"status": 304}, "revalidated"),
        ({"error": "HTTP 502", "status": 502}, {"cache": "MISS"}, None, "error"),
        ({"error": "ReadTimeout: timed out", "status": None}, None, None, "error"),
        ({}, None, None, "other"),
    ],
)
def test_what_answered_a_poll(poll, proxy, origin, source):
    fields = {"status": 200} | poll
    subject = Poll(1, T0, T0 + 0.1, "/x", fields.pop("status"), "PENDING", **fields)
    assert timeline.classify(subject, proxy, origin) == source


def test_a_poll_is_joined_to_its_own_request_not_the_tasks_post_beside_it():
    """On a slow machine the task's POST was logged 20 ms before poll 1 was sent, within the
    slack, and was taken for it (a cache BYPASS instead of the poll's own record)."""
    cell = "http://127.0.0.1:8080/_lab/r1a1-proxy-cache--none"
    poll = Poll(1, T0 + 0.02, T0 + 1.0, f"{cell}/tasks/t1/status?nonce=n1", 200, "PENDING")
    post = {"time": T0, "method": "POST", "url": f"{cell}/tasks", "cache": "BYPASS"}
    own = {"time": T0 + 0.5, "method": "GET", "url": poll.url, "cache": "HIT"}
    origin_post = {"time": T0 + 0.01, "method": "POST", "path": "/tasks", "status": 202}
    data = timeline.RunData(T0, [poll], [origin_post], [post, own], T0, None, True)
    [joined] = timeline.join_hops(data)
    assert (joined.proxy, joined.origin, joined.source) == (own, None, "cache")
    # Without its own record, the poll is joined to none: never to the POST's.
    data = timeline.RunData(T0, [poll], [origin_post], [post], T0, None, True)
    [joined] = timeline.join_hops(data)
    assert (joined.proxy, joined.origin, joined.source) == (None, None, "other")


def test_report_from_an_evidence_object_draws_what_the_files_draw(tmp_path):
    run = hung_story()
    verdict = verdict_for(run, "proxy-cache", "none", Outcome.hung)
    from_files = read_page(run_page.write_run_report(run.write(tmp_path / "a"), verdict))
    (tmp_path / "b").mkdir()
    html = run_page.render_run_report(tmp_path / "b", verdict, evidence=run.evidence())
    from_evidence = Page(html)

    def marks(page: Page) -> list[tuple[str, str, str]]:
        return [(m["data-poll"], m["data-source"], m["cx"]) for m in page.with_class("poll")]

    assert marks(from_evidence) == marks(from_files)


def test_event_stream_answers_join_the_origin_by_seq(tmp_path):
    url = f"http://127.0.0.1:41234/tasks/{TASK}/events"
    run = Run([], [], [], started=0.3, finished=1.3)
    for seq, (at, state) in enumerate([(0.1, "PENDING"), (0.35, "STARTED"), (1.32, "SUCCESS")], 1):
        run.origin.append(
            {
                "time": T0 + at,
                "event": "sse_event",
                "path": f"/tasks/{TASK}/events",
                "task_id": TASK,
                "state": state,
                "seq": 40 + seq,
            }
        )
        run.polls.append(
            Poll(
                seq,
                T0 + at + 0.01,
                T0 + at + 0.01,
                url,
                200,
                state,
                served_at=T0 + at,
                server_seq=40 + seq,
                task_id=TASK,
                stream=1,
            )
        )
    run.proxy.append(
        {"time": T0 + 1.4, "method": "GET", "url": url, "cache": "BYPASS", "status": 200}
    )
    verdict = verdict_for(run, "proxy-cache", "sse", Outcome.completed)
    page = read_page(run_page.write_run_report(run.write(tmp_path), verdict))

    assert len(page.with_class("poll")) == 3
    assert {m["data-source"] for m in page.with_class("poll")} == {"origin"}
    assert len(page.with_class("poll-origin")) == 3
    assert len(page.with_class("poll-proxy")) == 3  # all three came on the one stream


def test_page_is_self_contained_with_the_screenshot_inline(tmp_path):
    run = hung_story()
    verdict = verdict_for(run, "proxy-cache", "none", Outcome.hung)
    folder = run.write(tmp_path)
    png = tiny_png()
    (folder / look.SCREENSHOT_FILE).write_bytes(png)
    page = read_page(run_page.write_run_report(folder, verdict))

    assert_self_contained(page, folder)
    images = page.tags("img")
    assert len(images) == 1
    assert base64.b64decode(images[0]["src"].split(",", 1)[1]) == png
    # The evidence list links each file in the folder, relatively.
    evidence = ["client.jsonl", "proxy-events.jsonl", "origin-events.jsonl", "task-events.jsonl"]
    assert_links(page, evidence + [look.SCREENSHOT_FILE], absent=look.REPORT_FILE)


def test_warnings_are_shown(tmp_path):
    run = completed_story()
    verdict = verdict_for(run, "proxy-cache", "detect-stale", Outcome.completed)
    verdict.warnings = ["stale answers detected: switched to a path nonce"]
    page = read_page(run_page.write_run_report(run.write(tmp_path), verdict))
    assert page.having("id", "warnings")
    assert "stale answers detected: switched to a path nonce" in page.html


def test_a_report_that_cannot_be_drawn_does_not_fail_the_run(tmp_path, capsys):
    verdict = verdict_for(hung_story(), "proxy-cache", "none", Outcome.hung)
    assert run_page.write_run_report(tmp_path / "gone", verdict) is None
    assert "report: no report.html" in capsys.readouterr().err


# -- the Redis part of a run's page ------------------------------------------------------------
MIB = 1024 * 1024
REDIS_URL = "redis://127.0.0.1:45735/0"


def redis_summary(**changes: Any) -> dict[str, Any]:
    """MemorySummary.to_json of a 5 MiB Redis that filled up with task results."""
    summary = {
        "url": REDIS_URL,
        "maxmemory": 5 * MIB,
        "policy": "noeviction",
        "baseline": 1_400_000,
        "peak": 5_200_000,
        "final": 5_100_000,
        "dataset_baseline": 470_000,
        "dataset_final": 4_050_000,
        "samples": 40,
        "refused_writes": 36,
        "keys_before": [
            {"pattern": "_kombu.binding.proxy-cache-lab", "count": 1, "bytes": 312},
            {"pattern": "_kombu.binding_deadlines", "count": 1, "bytes": 120},
        ],
        "keys_after": [
            {"pattern": "celery-task-meta-*", "count": 45, "bytes": 3_230_280},
            {"pattern": "lab.*.path-expires-0", "count": 1, "bytes": 62_723},
            {"pattern": "_kombu.binding.proxy-cache-lab", "count": 1, "bytes": 312},
            {"pattern": "_kombu.binding_deadlines", "count": 1, "bytes": 120},
        ],
        "headroom": 5 * MIB - 1_400_000,
        "dataset_growth": 3_580_000,
        "key_bytes_growth": 3_293_003,
        "flat": False,
    }
    return summary | changes


def redis_run(folder: Path, samples: int = 40, refused: tuple[int, ...] = (31, 33, 35)) -> Verdict:
    """A run on Redis: memory sampled every 0.1 s from 2 s before the client's start, a load
    stream of 36 tasks of which `refused` were answered 500, then the UI's task."""
    run = completed_story()
    run.write(folder)
    _jsonl(
        folder / "redis-memory.jsonl",
        [
            {
                "time": T0 - 2 + 0.1 * i,
                "used_memory": min(1_400_000 + 110_000 * i, 5_200_000),
                "used_memory_dataset": min(470_000 + 100_000 * i, 4_050_000),
                "maxmemory": 5 * MIB,
                "keys": 2 + i,
                "rejected_calls": 0,
            }
            for i in range(samples)
        ],
    )
    error = "HTTP 500: OOM command not allowed when used memory > 'maxmemory'."
    _jsonl(
        folder / "load.jsonl",
        [
            {
                "time": T0 - 1.9 + 0.05 * n,
                "n": n,
                "task_id": None if n in refused else str(uuid.uuid4()),
                "error": error if n in refused else None,
            }
            for n in range(1, 37)
        ],
    )
    verdict = verdict_for(run, "redis-oom", "result-expires", Outcome.completed)
    verdict.broker = "redis"
    verdict.redis = redis_summary()
    verdict.load = {
        "sent": 36,
        "accepted": 36 - len(refused),
        "refused": len(refused),
        "finished": 30,
        "failed": 0,
        "first_error": error,
        "first_error_at": 1.55,
        "seconds": 1.8,
        "completed": False,
    }
    (folder / "redis.log").write_text("the lab's own redis-server\n")
    (folder / "result.json").write_text(json.dumps(verdict.to_json()))
    return verdict


def _points(attrs: dict[str, str]) -> list[tuple[float, float]]:
    return [tuple(map(float, p.split(","))) for p in attrs["points"].split()]  # type: ignore[misc]


def test_redis_run_shows_memory_over_time_the_cap_and_each_refused_request(tmp_path):
    verdict = redis_run(tmp_path, samples=40, refused=(31, 33, 35))
    page = read_page(run_page.write_run_report(tmp_path, verdict))

    assert page.having("id", "redis") and page.having("id", "redis-memory")
    used = page.with_class("used-memory")
    assert len(used) == 1 and used[0]["data-samples"] == "40"
    points = _points(used[0])
    assert len(points) == 40 and len(page.with_class("sample")) == 40
    assert [x for x, _ in points] == sorted(x for x, _ in points)  # in time order
    assert len(_points(page.with_class("dataset")[0])) == 40
    # The cap: a horizontal line above every point (SVG y grows downwards), labelled.
    cap = page.after("cap-line")
    assert cap["y1"] == cap["y2"] and all(y >= float(cap["y1"]) - 0.5 for _, y in points)
    assert "maxmemory 5.00 MiB (noeviction)" in page.html
    # One mark per refused request, at the request's time, titled with the app's error.
    refusals = page.with_class("refusal")
    assert len(refusals) == verdict.load["refused"] == 3
    assert "task 31 of the stream refused" in page.html
    assert len(page.with_class("client-start")) == len(page.with_class("load-stream")) == 1
    assert {"0 MiB", "2 MiB", "4 MiB"} <= set(_svg_texts(page.html))
    assert "0 s" in _svg_texts(page.html)
    # The figures, in plain words.
    assert page.having("id", "broker") and "broker <strong>redis</strong>" in page.html
    assert "Memory did not stay flat: Redis refused 36 writes" in page.html
    assert "1.34 MiB (used_memory when the run began)" in page.html
    assert "4.96 MiB (99% of the cap)" in page.html


def _svg_texts(html: str) -> list[str]:
    import re

    return re.findall(r"<text[^>]*>([^<]*)</text>", html)


def test_redis_key_patterns_before_and_after_largest_first(tmp_path):
    verdict = redis_run(tmp_path)
    page = read_page(run_page.write_run_report(tmp_path, verdict))

    rows = [r["data-pattern"] for r in page.with_class("key-row")]
    assert rows == [
        "celery-task-meta-*",
        "lab.*.path-expires-0",
        "_kombu.binding.proxy-cache-lab",
        "_kombu.binding_deadlines",
    ]
    assert [r["class"] for r in page.with_class("key-row")][:2] == ["key-row grew"] * 2
    assert "+3.08 MiB" in page.html and "+61.3 KiB" in page.html


def test_redis_cli_commands_and_the_load_stream_are_shown(tmp_path):
    verdict = redis_run(tmp_path)
    page = read_page(run_page.write_run_report(tmp_path, verdict))

    block = page.html.split('id="redis-commands">', 1)[1].split("</pre>", 1)[0]
    assert html.unescape(block).splitlines() == redis_cli_commands(REDIS_URL)
    assert "port 45735) was stopped when the repro ended" in page.html
    assert "<code>lab up redis-oom</code>" in page.html  # its default broker is redis
    assert page.having("id", "load-figures")
    assert "the app refused 3 of 36 tasks" in page.html
    assert "first error, at 1.55 s" in page.html
    assert_self_contained(page, tmp_path)


def test_a_flat_run_says_so(tmp_path):
    verdict = redis_run(tmp_path, refused=())
    verdict.redis = redis_summary(refused_writes=0, key_bytes_growth=296, flat=True)
    page = read_page(run_page.write_run_report(tmp_path, verdict))

    assert "Memory stayed flat: Redis refused no write" in page.html
    assert page.with_class("refusal") == []


def test_a_run_without_redis_has_no_redis_section(tmp_path):
    run = hung_story()
    verdict = verdict_for(run, "proxy-cache", "none", Outcome.hung)
    page = read_page(run_page.write_run_report(run.write(tmp_path), verdict))

    assert "broker <strong>sqlite</strong>" in page.html
    for id_ in ("redis", "redis-memory", "redis-commands", "load"):
        assert page.having("id", id_) == [], id_
    assert "redis-cli" not in page.html


def test_missing_or_garbled_redis_evidence_is_a_note_not_a_failure(tmp_path):
    verdict = redis_run(tmp_path)
    (tmp_path / "redis-memory.jsonl").write_text('not json\n{"time": "soon"}\n')
    verdict.redis = redis_summary(keys_after=[{"pattern": "x"}])  # no count, no bytes
    page = read_page(run_page.write_run_report(tmp_path, verdict))

    assert page.having("id", "redis") and page.having("id", "redis-memory") == []
    assert "redis-memory.jsonl is missing or holds no samples: no chart." in page.html
    assert "key patterns are unreadable" in page.html
    assert page.having("id", "redis-figures") and page.having("id", "redis-commands")

    (tmp_path / "redis-memory.jsonl").unlink()
    verdict.redis = "garbled"  # type: ignore[assignment]
    page = read_page(run_page.write_run_report(tmp_path, verdict))
    assert "Redis figures are unreadable" in page.html
    assert page.with_class("poll")  # the rest of the page is still drawn


# -- the matrix page ---------------------------------------------------------------------------
def matrix_on_disk(root: Path) -> MatrixResult:
    """proxy-cache and direct against none and nonce, with shared evidence at the top like the
    real matrix; one mismatch (direct/nonce observed hung), one fix left out for direct."""
    fixes = ["none", "nonce", "no-store"]
    result = MatrixResult(root, ["proxy-cache", "direct"], fixes, seconds=12.3)
    cells: dict[tuple[str, str], Verdict] = {}
    shared = {"proxy-cache": hung_story, "direct": completed_story}
    for name in result.scenarios:
        for fix in fixes:
            if (name, fix) == ("direct", "no-store"):
                continue  # as if the scenario did not apply it
            task = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{name}/{fix}"))
            run = shared[name](task) if fix == "none" else completed_story(task)
            if name == "direct":
                run.uses_proxy = False
            observed = Outcome.hung if run.polls[-1].state == "PENDING" else Outcome.completed
            if (name, fix) == ("direct", "nonce"):
                observed = Outcome.hung  # a mismatch
            cell_dir = root / "round-1" / f"{name}--{fix}"
            run.write(cell_dir, with_client=True)
            # The real matrix keeps origin/proxy/worker evidence at its top, one file per stack.
            for kind in ("origin-events", "proxy-events", "task-events"):
                moved = cell_dir / f"{kind}.jsonl"
                if moved.exists():
                    target = root / f"{kind}-{'path' if kind != 'proxy-events' else 'rfc'}.jsonl"
                    _jsonl(target, [json.loads(x) for x in moved.read_text().splitlines()])
                    moved.unlink()
            verdict = verdict_for(run, name, fix, observed)
            verdict.run_dir = str(cell_dir)
            (cell_dir / "result.json").write_text(json.dumps(verdict.to_json()))
            cells[(name, fix)] = verdict
    for log in ("app-path.log", "worker-path.log", "proxy-rfc.log", "proxy-other.log"):
        (root / log).write_text("log\n")
    (root / "matrix.json").write_text("{}")
    result.rounds.append(cells)
    return result


def test_matrix_page_has_one_linked_cell_per_run_cell(tmp_path):
    result = matrix_on_disk(tmp_path)
    path = publish.publish_matrix(result, [scenarios.load(n) for n in result.scenarios])

    assert path == tmp_path / look.MATRIX_FILE
    page = read_page(path)
    cells = page.having("data-cell")
    assert sorted(c["data-cell"] for c in cells) == sorted(f"{s}/{f}" for s, f in result.last)
    assert len(page.with_class("na")) == 1
    mismatched = [c["data-cell"] for c in cells if "mismatch" in c["class"].split()]
    assert mismatched == ["direct/nonce"]
    # Each cell links to its own report, relatively, and that report was written.
    links = [a["href"] for a in page.tags("a") if a["href"].endswith(look.REPORT_FILE)]
    assert sorted(links) == sorted(f"round-1/{s}--{f}/report.html" for s, f in result.last)
    assert_self_contained(page, tmp_path)
    assert "corporate-cache" in page.html  # the row's proxy profile
    assert "survives every proxy profile" in page.html  # nonce and no-store
    assert "defeated by proxy-cache" in page.html  # none


def summary_of(page: Page) -> tuple[str, str]:
    """The banner's text and its colour (the green or the red one)."""
    banner = page.having("id", "summary")[0]
    return page.text_of("summary"), ("green" if "#e7f3ea" in banner["style"] else "red")


def with_a_second_round(result: MatrixResult, changed: dict[tuple[str, str], str]) -> None:
    """Round 2: the same verdicts, but `changed` cells observed as given (matched or not)."""
    second = {}
    for key, verdict in result.last.items():
        copy = dataclasses.replace(verdict)
        if key in changed:
            copy.observed = changed[key]
            copy.matched = copy.observed == copy.expected
        second[key] = copy
    result.rounds.append(second)


def test_all_matched_is_said_only_when_every_round_matched(tmp_path):
    result = matrix_on_disk(tmp_path)
    direct_nonce = result.last[("direct", "nonce")]
    direct_nonce.observed, direct_nonce.matched = "completed", True
    with_a_second_round(result, {})
    assert result.ok
    text, colour = summary_of(read_page(publish.publish_matrix(result)))
    assert colour == "green"
    assert text.startswith("All 5 cells matched their expected outcome in every one of 2 rounds")


def test_a_mismatch_in_an_earlier_round_is_never_hidden_by_the_last(tmp_path):
    result = matrix_on_disk(tmp_path)  # round 1: direct/nonce observed hung, expected completed
    with_a_second_round(result, {("direct", "nonce"): "completed"})  # round 2: it matched
    assert not result.ok
    assert result.flips == {("direct", "nonce"): ["hung", "completed"]}
    page = read_page(publish.publish_matrix(result))
    text, colour = summary_of(page)
    assert colour == "red"
    assert "all" not in text.lower().split()
    assert "Round 1: 1 of 5 cells did not match; round 2: 0 of 5 cells did not match" in text
    assert "1 cell changed between rounds" in text
    rounds = page.text_of("rounds")
    assert "1 5 1 0 0 2 5 0 0 0" in rounds  # round, cells, mismatches, not judged, run again
    assert "direct / nonce: hung → completed" in page.text_of("flips")
    assert "round 1: direct fix=nonce" in page.text_of("mismatches")


def test_a_flip_between_matching_outcomes_is_shown(tmp_path):
    """A cell that matched in both rounds cannot flip; one whose expectation is met only once
    can: its flip and its mismatch both show."""
    result = matrix_on_disk(tmp_path)
    direct_nonce = result.last[("direct", "nonce")]
    direct_nonce.observed, direct_nonce.matched = "completed", True
    with_a_second_round(result, {("proxy-cache", "none"): "completed"})
    assert result.flips == {("proxy-cache", "none"): ["hung", "completed"]}
    page = read_page(publish.publish_matrix(result))
    text, colour = summary_of(page)
    assert colour == "red" and "did not match" in text and "1 cell changed" in text
    cell = page.html[page.html.index('data-cell="proxy-cache/none"') :]
    assert 'class="flag"' in cell[: cell.index("</td>")]


def test_a_cell_the_machine_was_too_slow_for_is_not_judged_and_not_green(tmp_path):
    result = matrix_on_disk(tmp_path)
    direct_nonce = result.last[("direct", "nonce")]
    direct_nonce.untested = "the first poll was sent after the task had finished"
    direct_nonce.attempts = 3
    assert direct_nonce.inconclusive and not result.mismatches and not result.ok
    page = read_page(publish.publish_matrix(result))
    text, colour = summary_of(page)
    assert colour == "red"
    assert "0 of 5 cells did not match, 1 could not be judged (machine too slow)" in text
    assert "after 3 runs" in page.text_of("unjudged")
    unjudged = [c for c in page.having("data-cell") if "unjudged" in c["class"].split()]
    assert [c["data-cell"] for c in unjudged] == ["direct/nonce"]


def test_matrix_cell_report_links_the_shared_evidence(tmp_path):
    result = matrix_on_disk(tmp_path)
    publish.publish_matrix(result)
    cell = tmp_path / "round-1" / "proxy-cache--none"
    page = read_page(cell / look.REPORT_FILE)

    assert len(page.with_class("poll")) == len(hung_story().polls)
    assert Counter(m["data-source"] for m in page.with_class("poll")) == {"origin": 1, "cache": 16}
    assert len(page.with_class("hang-window")) == 1
    shared = ["origin-events-path.jsonl", "proxy-events-rfc.jsonl", "task-events-path.jsonl"]
    logs = ["app-path.log", "proxy-rfc.log"]  # of the components that wrote them; no other
    assert_links(page, [f"../../{name}" for name in shared + logs], absent="../../proxy-other.log")
    assert_self_contained(page, cell)


def test_a_matrix_cell_on_a_stack_of_its_own_is_drawn_from_its_own_evidence(tmp_path):
    """A cell that ran a whole `lab repro` (redis-oom) keeps its evidence in its folder, not in
    the matrix's shared files: its page still shows where each poll went and the finish."""
    result = matrix_on_disk(tmp_path)
    cell = tmp_path / "round-1" / "direct--none"
    for stale in cell.iterdir():
        stale.unlink()
    run = completed_story(str(uuid.uuid4()))
    run.uses_proxy = False
    run.write(cell)
    verdict = verdict_for(run, "direct", "none", Outcome.completed)
    verdict.run_dir = str(cell)
    result.last[("direct", "none")] = verdict
    publish.publish_matrix(result)

    page = read_page(cell / look.REPORT_FILE)
    assert Counter(m["data-source"] for m in page.with_class("poll")) == {"origin": 6}
    assert len(page.with_class("finish-line")) == 1
    assert_links(page, ["origin-events.jsonl", "task-events.jsonl"], absent="../../app-path.log")


def test_a_broker_comparison_publishes_each_brokers_matrix(tmp_path):
    results = {broker: matrix_on_disk(tmp_path / broker) for broker in ("sqlite", "redis")}
    publish.publish_comparison(BrokerComparison(tmp_path, results))
    for broker, result in results.items():
        assert (tmp_path / broker / look.MATRIX_FILE).is_file(), broker
        assert (tmp_path / broker / look.MATRIX_MARKDOWN).is_file(), broker
        for verdict in result.last.values():
            assert (Path(verdict.run_dir) / look.REPORT_FILE).is_file(), verdict.run_dir


# -- in a real browser -------------------------------------------------------------------------
@dataclass
class Rendered:
    polls: int
    cells: int
    requests: list[str]  # every URL the page asked for (Playwright only)


class Chromium:
    """Headless Chromium: driven by Playwright when it is installed (one browser for all pages;
    it also sees every request a page makes), else Chromium's own --dump-dom, once per page."""

    def __init__(self, executable: str, playwright: bool = True) -> None:
        self.executable = executable
        self._stack = contextlib.ExitStack()
        self._browser: Any = None
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            return
        if not playwright:
            return
        pw = self._stack.enter_context(sync_playwright())
        self._browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS[1:])
        self._stack.callback(self._browser.close)

    def close(self) -> None:
        self._stack.close()

    def render(self, path: Path) -> Rendered:
        if self._browser is None:
            return self._dump_dom(path)
        page = self._browser.new_page()
        try:
            requests: list[str] = []
            page.on("request", lambda request: requests.append(request.url))
            page.goto(path.resolve().as_uri())
            polls = page.locator(".poll")
            for i in range(polls.count()):
                box = polls.nth(i).bounding_box()
                assert box and box["width"] > 0, f"poll mark {i} is not drawn"
            return Rendered(polls.count(), page.locator("[data-cell]").count(), requests)
        finally:
            page.close()

    def boxes(self, path: Path, selector: str) -> list[dict[str, float]] | None:
        """The bounding boxes of the selector's elements on the page; None without Playwright."""
        if self._browser is None:
            return None
        page = self._browser.new_page()
        try:
            page.goto(path.resolve().as_uri())
            found = page.locator(selector)
            return [found.nth(i).bounding_box() or {} for i in range(found.count())]
        finally:
            page.close()

    def _dump_dom(self, path: Path) -> Rendered:
        with tempfile.TemporaryDirectory() as profile:
            done = subprocess.run(
                [
                    self.executable,
                    *CHROMIUM_FLAGS,
                    f"--user-data-dir={profile}",
                    "--dump-dom",
                    path.resolve().as_uri(),
                ],
                capture_output=True,
                text=True,
                timeout=90,
                check=True,
            )
        dom = Page(done.stdout)
        assert dom.tags("svg") or dom.having("data-cell"), done.stderr[-2000:]
        return Rendered(len(dom.with_class("poll")), len(dom.having("data-cell")), [])


@pytest.fixture
def chromium(request: pytest.FixtureRequest) -> Iterator[Chromium]:
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is missing on CI (apt-get install chromium)")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    browser = Chromium(CHROMIUM, playwright=getattr(request, "param", "playwright") != "cli")
    try:
        yield browser
    finally:
        browser.close()


def _no_network(rendered: Rendered) -> None:
    assert all(u.startswith(("file:", "data:")) for u in rendered.requests), rendered.requests


@pytest.mark.stack
@pytest.mark.parametrize("chromium", ["playwright", "cli"], indirect=True)
def test_pages_render_in_chromium(tmp_path, chromium):
    result = matrix_on_disk(tmp_path)
    publish.publish_matrix(result)
    (tmp_path / "round-1" / "proxy-cache--none" / look.SCREENSHOT_FILE).write_bytes(tiny_png())

    rendered = chromium.render(tmp_path / look.MATRIX_FILE)
    assert rendered.cells == len(result.last)
    _no_network(rendered)
    for (name, fix), verdict in result.last.items():
        rendered = chromium.render(tmp_path / "round-1" / f"{name}--{fix}" / look.REPORT_FILE)
        assert rendered.polls == verdict.polls["total"], (name, fix)
        _no_network(rendered)


@pytest.mark.stack
@pytest.mark.timeout(900)  # the first test to read the whole matrix waits for it
def test_repro_and_matrix_write_reports(story_repro, whole_matrix, chromium):
    verdict = story_repro.verdict
    run_dir = Path(verdict.run_dir)
    page = read_page(run_dir / look.REPORT_FILE)
    assert len(page.with_class("poll")) == verdict.polls["total"]
    sources = Counter(m["data-source"] for m in page.with_class("poll"))
    assert sources["cache"] == verdict.polls["from_cache"] >= 1
    assert len(page.with_class("hang-window")) == 1
    assert_self_contained(page, run_dir)
    assert chromium.render(run_dir / look.REPORT_FILE).polls == verdict.polls["total"]

    result = whole_matrix.result
    assert chromium.render(result.run_dir / look.MATRIX_FILE).cells == len(result.last)
    for cell in result.last.values():
        cell_page = read_page(Path(cell.run_dir) / look.REPORT_FILE)
        assert len(cell_page.with_class("poll")) == cell.polls["total"], cell.sentence
        assert_self_contained(cell_page, Path(cell.run_dir))


@pytest.fixture
def redis_server() -> None:
    if shutil.which("redis-server") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is missing on CI (apt-get install redis-server)")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")


@pytest.mark.stack
@pytest.mark.usefixtures("redis_server")
@pytest.mark.timeout(900)  # the first test to read the whole matrix waits for it
def test_a_real_redis_oom_report_draws_its_memory_in_chromium(whole_matrix, chromium):
    # redis-oom ran on a stack of its own in the matrix: a whole `lab repro` run.
    verdict = whole_matrix.result.last[("redis-oom", "none")]
    run_dir = Path(verdict.run_dir)
    assert verdict.broker == "redis" and verdict.redis and verdict.load, verdict.sentence
    samples = (run_dir / "redis-memory.jsonl").read_text("utf-8").splitlines()
    refused = [e for e in map(json.loads, (run_dir / "load.jsonl").open()) if e["error"]]
    page = read_page(run_dir / look.REPORT_FILE)
    assert page.with_class("used-memory")[0]["data-samples"] == str(len(samples))
    assert len(page.with_class("cap-line")) == 1
    assert len(page.with_class("refusal")) == len(refused) == verdict.load["refused"] >= 1
    assert page.having("id", "redis-commands") and page.with_class("key-row")
    assert_self_contained(page, run_dir)

    rendered = chromium.render(run_dir / look.REPORT_FILE)
    _no_network(rendered)
    boxes = chromium.boxes(run_dir / look.REPORT_FILE, "#redis-memory .used-memory")
    if boxes is not None:  # Playwright: the line is really drawn, wide and tall
        assert len(boxes) == 1 and boxes[0]["width"] > 300 and boxes[0]["height"] > 50, boxes
