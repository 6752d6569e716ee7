"""The browser client's NetworkRecorder, fed with DevTools Network events recorded from real
browser cells (tests/fixtures/cdp-events.json): no browser, no event loop.

Each recorded cell holds the CDP events the recorder was given in a real run (trimmed to the
fields the Network domain sends that matter here), each answer's body where it was handed in,
and the polls that run logged in client.jsonl. The hung cells are cut after a few polls.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from lab.clients.base import Client, ClientBase
from lab.clients.browser import BrowserClient, BrowserHost
from lab.clients.browser.recorder import NetworkRecorder, RequestKinds
from lab.clients.polling import PollingClient
from sample_app import strategies

CELLS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "fixtures" / "cdp-events.json").read_text("utf-8")
)


def cell(scenario: str, fix: str) -> dict[str, Any]:
    return next(c for c in CELLS if (c["scenario"], c["fix"]) == (scenario, fix))


class Page(ClientBase):
    """What the recorder writes to: the browser client's state and log, without a browser."""

    kind = "browser"


class Replay:
    """A recorder and the client state it fills; the bodies it asks for, in order."""

    def __init__(self, recorded: dict[str, Any], tmp_path: Path) -> None:
        book = strategies.load()
        self.client = Page(
            base_url=recorded["base_url"],
            proxy_url=None,
            book=book,
            strategy=book.get(recorded["fix"]),
            poll_interval=0.25,
            task_duration=1.5,
            log_path=tmp_path / "client.jsonl",
        )
        self.client.log_label = {"client": "browser"}
        self.asked: list[str] = []
        self.recorder = NetworkRecorder(self.client, self.asked.append)
        self.events = recorded["events"]

    def run(self, *, hold_bodies: bool = False) -> dict[str, str | None]:
        """Every event, and each body as the real run handed it in (or, held, none of them:
        returned by request id)."""
        held: dict[str, str | None] = {}
        for item in self.events:
            if "method" in item:
                self.recorder.handle(item["method"], item["params"])
            elif hold_bodies:
                held[item["body"]] = item["text"]
            else:
                self.recorder.body(item["body"], item["text"])
        return held

    def polls(self) -> list[dict[str, Any]]:
        return [asdict(poll) for poll in self.client.polls]

    def logged(self, event: str) -> list[dict[str, Any]]:
        lines = self.client.log_path.read_text("utf-8").splitlines()
        return [line for line in map(json.loads, lines) if line["event"] == event]


@pytest.mark.parametrize("recorded", CELLS, ids=lambda c: f"{c['scenario']}--{c['fix']}")
def test_recorded_events_give_the_polls_the_run_logged(recorded, tmp_path):
    replay = Replay(recorded, tmp_path)
    replay.run()
    assert replay.polls() == recorded["polls"]
    # The bodies asked for are the start's and each answered poll's, those the run read.
    assert replay.asked == [item["body"] for item in replay.events if "body" in item]
    logged = replay.logged("poll")
    assert all(p.pop("client") == "browser" and p.pop("time") and p.pop("event") for p in logged)
    assert logged == recorded["polls"]
    assert [line["status"] for line in replay.logged("start")] == [202]
    assert not replay.logged("client_bug")


def test_a_shared_cache_answers_with_its_own_headers(tmp_path):
    replay = Replay(cell("proxy-cache", "none"), tmp_path)
    replay.run()
    polls = replay.client.polls
    assert polls[0].age is None and polls[0].state == "PENDING"
    cached = [p for p in polls if p.age is not None]
    assert cached and all(p.state == "PENDING" and p.status == 200 for p in cached)
    assert not any(p.browser_cache for p in polls)  # the proxy's copy, not the browser's
    assert [p.seq for p in polls] == list(range(1, len(polls) + 1))


def test_a_revalidated_copy_is_a_304_from_the_browser_cache(tmp_path):
    replay = Replay(cell("direct", "no-cache-etag"), tmp_path)
    replay.run()
    polls = replay.client.polls
    revalidated = [p for p in polls if p.browser_cache_kind == "revalidated"]
    assert revalidated
    assert all(p.status == 304 and p.browser_cache and p.state == "PENDING" for p in revalidated)
    assert polls[-1].state == "SUCCESS" and polls[-1].status == 200


def test_heuristic_freshness_answers_from_the_browser_cache_without_a_request(tmp_path):
    replay = Replay(cell("direct", "last-modified"), tmp_path)
    replay.run()
    kinds = [p.browser_cache_kind for p in replay.client.polls]
    assert kinds[0] is None and kinds[1:] == ["fresh"] * (len(kinds) - 1)


def test_an_event_stream_gives_one_poll_per_message(tmp_path):
    replay = Replay(cell("direct", "sse"), tmp_path)
    replay.run()
    polls = replay.client.polls
    assert [p.stream for p in polls] == [1] * len(polls)
    assert all(p.sent_at == p.received_at for p in polls)  # an event is sent as it arrives
    assert polls[-1].state == "SUCCESS"
    # The page closed the stream itself at the final answer: not a failure.
    assert not any(p.error for p in polls)
    assert replay.recorder.settled("completed")


def test_answers_are_recorded_in_the_order_their_requests_finished(tmp_path):
    recorded = cell("direct", "no-cache-etag")
    replay = Replay(recorded, tmp_path)
    held = replay.run(hold_bodies=True)
    # Every answer waits for its body (the first for the start's): nothing recorded yet.
    assert replay.client.polls == [] and replay.recorder.pending
    assert not replay.recorder.settled("completed")
    for request_id in reversed(replay.asked):
        replay.recorder.body(request_id, held[request_id])
    assert replay.polls() == recorded["polls"]
    assert not replay.recorder.pending and replay.recorder.settled("completed")


def test_a_body_the_browser_no_longer_has_is_an_error_poll(tmp_path):
    replay = Replay(cell("direct", "no-cache-etag"), tmp_path)
    held = replay.run(hold_bodies=True)
    start, first, *rest = replay.asked
    replay.recorder.body(start, held[start])
    replay.recorder.body(first, None)
    assert [p.error for p in replay.client.polls] == [
        "the answer's body could not be read from the browser"
    ]
    for request_id in rest:
        replay.recorder.body(request_id, held[request_id])
    # A failed request counts as a retry for the next poll's record.
    assert replay.client.polls[1].retry == 1 and replay.client.polls[2].retry == 0


def test_nothing_is_recorded_once_the_client_stops(tmp_path):
    replay = Replay(cell("proxy-cache", "none"), tmp_path)
    replay.recorder.stopping = True
    replay.run()
    assert replay.client.polls == [] and replay.asked == []


def test_a_handler_bug_is_logged_not_raised(tmp_path):
    replay = Replay(cell("proxy-cache", "none"), tmp_path)
    replay.recorder.handle("Network.requestWillBeSent", {"requestId": "1"})
    replay.recorder.handle("Network.webSocketCreated", {"requestId": "2"})  # not read: ignored
    (bug,) = replay.logged("client_bug")
    assert bug["handler"] == "_on_request" and bug["error"].startswith("KeyError")


@pytest.mark.parametrize(
    ("method", "url", "kind"),
    [
        ("POST", "http://127.0.0.1:5000/_lab/c1/tasks", "start"),
        ("GET", "http://127.0.0.1:5000/_lab/c1/tasks/ab12/status", "poll"),
        ("GET", "http://127.0.0.1:5000/_lab/c1/tasks/ab12/status/n0nce", "poll"),  # path nonce
        ("GET", "http://127.0.0.1:5000/_lab/c1/status?task_id=ab12&n=1", "poll"),
        ("GET", "http://127.0.0.1:5000/_lab/c1/status?n=1", None),  # no task: not a poll
        ("GET", "http://127.0.0.1:5000/_lab/c1/tasks/ab12/events", "events"),
        ("POST", "http://127.0.0.1:5000/_lab/c1/debug/tasks/ab12", None),  # the debug panel
        ("GET", "http://127.0.0.1:5000/_lab/c2/tasks/ab12/status", None),  # another cell
        ("GET", "http://127.0.0.1:5001/_lab/c1/tasks/ab12/status", None),  # another origin
        ("GET", "http://127.0.0.1:5000/_lab/c1/static/poller.js", None),
    ],
)
def test_which_requests_are_the_pages_own(method, url, kind):
    kinds = RequestKinds("http://127.0.0.1:5000/_lab/c1", strategies.load())
    assert kinds(method, url) == kind


def test_both_clients_are_clients(tmp_path):
    """What the runner and the verdict read, both clients have (lab.clients.base.Client)."""
    book = strategies.load()
    settings = {
        "base_url": "http://127.0.0.1:5000/",
        "proxy_url": None,
        "book": book,
        "strategy": book.get("none"),
        "poll_interval": 0.25,
        "task_duration": 1.5,
        "log_path": tmp_path / "client.jsonl",
    }
    host = BrowserHost("run", tmp_path / "browser.log")  # not launched: nothing starts
    try:
        clients = [PollingClient(**settings), BrowserClient(host=host, **settings)]
    finally:
        host.close()
    assert [client.kind for client in clients] == ["python", "browser"]
    for client in clients:
        assert isinstance(client, Client)
        assert client.base_url == "http://127.0.0.1:5000"
        assert (client.ui_state, client.done, client.last_state) == ("idle", False, None)
    clients[0].stop()  # never started: returns at once
    clients[0].open()  # nothing to open, nothing to check, nothing to show
    clients[0].check_alive()
    assert not clients[0].screenshot(tmp_path / "shot.png")
    assert not (tmp_path / "shot.png").exists()
