import json
import os
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from mitmproxy.test import taddons, tflow, tutils

from proxies.observer import Observer, write_ready_file
from proxies.shared_cache import SharedCache
from tests.lab_helpers import Mitmdump, wait_for


class FakeProxyServer:
    name = "proxyserver"

    def listen_addrs(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", 38339)]


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_write_ready_file_is_atomic_and_leaves_no_temp_files(tmp_path: Path):
    target = tmp_path / "ready.json"
    write_ready_file(target, {"host": "127.0.0.1", "port": 1})
    write_ready_file(target, {"host": "127.0.0.1", "port": 2})
    assert json.loads(target.read_text()) == {"host": "127.0.0.1", "port": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["ready.json"]


def test_running_writes_real_listen_address(tmp_path: Path):
    observer = Observer()
    ready = tmp_path / "ready.json"
    with taddons.context(FakeProxyServer(), observer) as tctx:
        tctx.configure(observer, observer_ready=str(ready))
        observer.running()
    assert json.loads(ready.read_text()) == {
        "host": "127.0.0.1",
        "port": 38339,
        "pid": os.getpid(),
    }


def test_running_without_ready_option_does_not_look_up_the_server():
    observer = Observer()
    with taddons.context(observer):  # no proxyserver addon: a lookup would fail
        observer.running()


def test_events_for_store_hit_and_error(tmp_path: Path):
    cache, observer = SharedCache(), Observer()
    events = tmp_path / "events.jsonl"
    cache.clock = lambda: 1_700_000_001.0  # one second after the Date below
    with taddons.context(cache, observer) as tctx:
        tctx.configure(cache, cache_heuristic_ttl=300, cache_add_headers=True)
        tctx.configure(observer, observer_events=str(events))
        for _ in range(2):
            f = tflow.tflow()
            f.request.url = "http://app.test/status?id=1"
            cache.request(f)
            if f.response is None:
                f.response = tutils.tresp()
                f.response.headers["Date"] = "Tue, 14 Nov 2023 22:13:20 GMT"
                cache.response(f)
            observer.response(f)
        failed = tflow.tflow(err=True)
        observer.error(failed)
        observer.done()

    store, hit, error = read_lines(events)
    assert store["cache"] == "STORE"
    assert store["status"] == 200
    assert store["x_cache"] == "MISS"
    assert store["age"] is None
    assert hit["cache"] == "HIT"
    assert hit["url"] == "http://app.test/status?id=1"
    assert hit["method"] == "GET"
    assert hit["age"] == 1
    assert hit["date"] == "Tue, 14 Nov 2023 22:13:20 GMT"
    assert hit["via"] == "1.1 proxy-cache-lab"
    assert hit["x_cache"] == "HIT"
    assert hit["cache_control"] is None
    assert isinstance(hit["time"], float)
    assert error["status"] is None
    assert error["error"] == str(failed.error)
    assert error["cache"] == "BYPASS"
    # The fields about the stored answer are added to the lines they apply to only.
    about_the_entry = {"cache_rule", "cache_rule_kind", "cache_lifetime", "cache_stored_at"}
    assert set(store) == set(error) - {"error"} | about_the_entry
    assert set(hit) == set(store) | {"cache_hits"}


def test_no_events_option_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    observer = Observer()
    with taddons.context(observer):
        observer.response(tflow.tflow(resp=True))
        observer.error(tflow.tflow(err=True))
    assert list(tmp_path.iterdir()) == []


# --- the real mitmdump in front of a real origin --------------------------------


class CountingHandler(BaseHTTPRequestHandler):
    hits: list[str]  # set per server in the fixture

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        self.hits.append(self.path)
        body = b'{"state": "PENDING"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest output clean


@pytest.fixture
def origin() -> Iterator[tuple[str, list[str]]]:
    hits: list[str] = []
    handler = type("Handler", (CountingHandler,), {"hits": hits})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.stack
def test_mitmdump_serves_second_poll_from_cache(
    tmp_path: Path, origin: tuple[str, list[str]], mitmdump: Callable[..., Mitmdump]
):
    origin_url, hits = origin
    ready, events = tmp_path / "ready.json", tmp_path / "events.jsonl"
    options = {"observer_ready": ready, "observer_events": events, "cache_heuristic_ttl": 300}
    proxy = mitmdump(["proxies/lab_addons.py"], options)
    info = wait_for(lambda: ready.exists() and json.loads(ready.read_text()), 10, "the ready file")
    assert info == {"host": "127.0.0.1", "port": proxy.port, "pid": proxy.proc.pid}
    with httpx.Client(proxy=proxy.url, trust_env=False, timeout=10) as client:
        first = client.get(f"{origin_url}/api/tasks/1")
        second = client.get(f"{origin_url}/api/tasks/1")
    assert first.status_code == second.status_code == 200
    assert second.json() == {"state": "PENDING"}
    lines = wait_for(lambda: read_lines(events)[1:] and read_lines(events), 10, "events")
    assert [line["cache"] for line in lines] == ["STORE", "HIT"]
    assert lines[1]["url"] == f"{origin_url}/api/tasks/1"
    assert hits == ["/api/tasks/1"]
