"""The sample app through Flask's test client: no worker; the SQLite broker is in tmp_path."""

import json
import re
import time
from datetime import datetime, timedelta

import pytest
from werkzeug.http import parse_date

from lab.data.events import is_status_request
from sample_app import strategies, web
from sample_app.config import AppConfig, sqlite_celery_config
from sample_app.web import create_app

CACHE_HEADERS = ("Cache-Control", "Pragma", "Expires", "ETag", "Last-Modified")
BOOK = strategies.load()


@pytest.fixture
def make_app(tmp_path):
    def make(**overrides):
        config = AppConfig(
            celery=sqlite_celery_config(tmp_path),
            origin_events=str(tmp_path / "origin.jsonl"),
            **overrides,
        )
        return create_app(config)

    return make


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


def start(client, fix: str, duration: float = 0) -> dict:
    response = client.post("/tasks", json={"fix": fix, "duration": duration})
    assert response.status_code == 202, response.data
    return response.get_json()


def embedded_json(html: str, script_id: str) -> object:
    match = re.search(rf'<script id="{script_id}" type="application/json">(.*?)</script>', html)
    assert match, f"no <script id={script_id!r}> in the page"
    return json.loads(match.group(1))


def read_origin_events(tmp_path) -> list[dict]:
    lines = (tmp_path / "origin.jsonl").read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines]


def test_index_embeds_strategies_and_page_config(client):
    html = client.get("/").get_data(as_text=True)
    assert embedded_json(html, "strategies") == strategies.raw_definitions()
    page_config = embedded_json(html, "page-config")
    assert page_config["pollIntervalMs"] == 250
    assert page_config["defaultFix"] == "none"
    assert page_config["statusUrlStyle"] == "path"


def test_index_select_lists_every_strategy(client):
    html = client.get("/").get_data(as_text=True)
    options = re.findall(r'<option value="([^"]+)"', html)
    assert options == strategies.names()


def test_index_preselects_the_fix_from_the_query(client):
    html = client.get("/?fix=nonce").get_data(as_text=True)
    assert re.search(r'<option value="nonce"\s+selected>', html)
    assert embedded_json(html, "page-config")["defaultFix"] == "nonce"


def test_start_task_with_known_fix(client):
    body = start(client, "nonce")
    assert body["fix"] == "nonce"
    assert body["status_url"] == f"/tasks/{body['task_id']}/status"
    assert body["events_url"] == f"/tasks/{body['task_id']}/events"


def test_start_task_with_unknown_fix_is_400(client):
    response = client.post("/tasks", json={"fix": "nosuch", "duration": 0})
    assert response.status_code == 400
    assert b"nosuch" in response.data


@pytest.mark.parametrize("duration", ["soon", None, -1, 601, "nan"])
def test_start_task_with_bad_duration_is_400(client, duration):
    response = client.post("/tasks", json={"fix": "none", "duration": duration})
    assert response.status_code == 400
    assert b"duration" in response.data


def test_start_task_with_non_object_body_is_400(client):
    assert client.post("/tasks", json=[1]).status_code == 400


def test_no_store_status_forbids_caching(client):
    body = start(client, "no-store")
    response = client.get(body["status_url"])
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    assert response.headers["Expires"] == "0"


@pytest.mark.parametrize("fix", ["none", "nonce"])
def test_other_fixes_send_no_cache_headers(client, fix):
    body = start(client, fix)
    response = client.get(body["status_url"])
    assert response.status_code == 200
    for name in CACHE_HEADERS:
        assert name not in response.headers


def test_status_without_worker_is_pending_with_served_at(client):
    body = start(client, "none")
    status = client.get(body["status_url"]).get_json()
    assert status["task_id"] == body["task_id"]
    assert status["state"] == "PENDING"
    assert isinstance(status["served_at"], float)
    assert "result" not in status


def test_status_after_success_carries_the_result(app, client):
    body = start(client, "none")
    app.extensions["celery"].backend.store_result(body["task_id"], {"slept": 0}, "SUCCESS")
    status = client.get(body["status_url"]).get_json()
    assert status["state"] == "SUCCESS"
    assert status["result"] == {"slept": 0}


def test_origin_events_has_one_line_per_request(client, tmp_path):
    body = start(client, "no-store")
    client.get(body["status_url"])
    client.post("/tasks", json={"fix": "nosuch"})
    events = read_origin_events(tmp_path)
    assert [(e["method"], e["path"], e["status"]) for e in events] == [
        ("POST", "/tasks", 202),
        ("GET", body["status_url"], 200),
        ("POST", "/tasks", 400),
    ]
    assert [e["task_id"] for e in events] == [body["task_id"], body["task_id"], None]
    assert [e["state"] for e in events] == [None, "PENDING", None]
    assert events[1]["cache_control"] == "no-store"
    assert [e["endpoint"] for e in events] == ["start_task", "status_path", "start_task"]
    assert events[1]["seq"] >= 1


# -- every strategy's answer


def expected_cache_headers(name: str) -> set[str]:
    strategy = BOOK.get(name)
    names = set(strategy.response_headers)
    if strategy.etag:
        names.add("ETag")
    if strategy.last_modified_age_s is not None:
        names.add("Last-Modified")
    return names


@pytest.mark.parametrize("name", strategies.names())
def test_status_answer_carries_exactly_the_strategys_headers(client, name):
    body = start(client, name)
    response = client.get(body["status_url"])
    assert response.status_code == 200
    for header, value in BOOK.get(name).response_headers.items():
        assert response.headers[header] == value
    present = {h for h in CACHE_HEADERS if h in response.headers}
    assert present == expected_cache_headers(name) & set(CACHE_HEADERS)


def test_last_modified_is_a_day_old(client):
    body = start(client, "last-modified")
    response = client.get(body["status_url"])
    assert {h for h in CACHE_HEADERS if h in response.headers} == {"Last-Modified"}
    age = time.time() - parse_date(response.headers["Last-Modified"]).timestamp()
    assert 86400 - 2 <= age <= 86400 + 2


def test_seq_increases_with_every_answer(client):
    body = start(client, "none")
    answers = [client.get(body["status_url"]).get_json() for _ in range(3)]
    seqs = [a["seq"] for a in answers]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    served = [a["served_at"] for a in answers]
    assert served == sorted(served)


# -- ETag and 304


def test_etag_round_trip(app, client, tmp_path):
    body = start(client, "no-cache-etag")
    url = body["status_url"]
    first = client.get(url)
    etag = first.headers["ETag"]
    assert etag.startswith('W/"')
    assert first.headers["Cache-Control"] == "no-cache"
    second = client.get(url)
    assert second.headers["ETag"] == etag, "the ETag is the status, not served_at or seq"
    assert second.get_json()["seq"] != first.get_json()["seq"]

    not_modified = client.get(url, headers={"If-None-Match": etag})
    assert not_modified.status_code == 304
    assert not_modified.data == b""
    assert not_modified.headers["ETag"] == etag
    assert not_modified.headers["Cache-Control"] == "no-cache"

    assert client.get(url, headers={"If-None-Match": 'W/"other"'}).status_code == 200
    assert client.post(url, json={}, headers={"If-None-Match": etag}).status_code == 200

    app.extensions["celery"].backend.store_result(body["task_id"], {"slept": 0}, "SUCCESS")
    changed = client.get(url, headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.get_json()["state"] == "SUCCESS"
    assert changed.headers["ETag"] != etag
    logged = [e for e in read_origin_events(tmp_path) if e["status"] == 304]
    assert [e["state"] for e in logged] == ["PENDING"], "a 304 still logs what it confirmed"


def test_strategies_without_etag_never_answer_304(client):
    body = start(client, "none")
    response = client.get(body["status_url"], headers={"If-None-Match": "*"})
    assert response.status_code == 200
    assert "ETag" not in response.headers


# -- every status URL: both styles, with and without a path nonce, GET and POST


def status_urls(task_id: str) -> list[str]:
    return [
        f"/tasks/{task_id}/status",
        f"/tasks/{task_id}/status/abc123",
        f"/status?task_id={task_id}",
        f"/status/abc123?task_id={task_id}",
        f"/tasks/{task_id}/status?nonce=abc123",
    ]


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("index", range(5))
def test_every_status_url_answers_with_the_strategys_headers(client, method, index):
    body = start(client, "no-store")
    url = status_urls(body["task_id"])[index]
    response = client.open(url, method=method, json={} if method == "POST" else None)
    assert response.status_code == 200, url
    assert response.get_json()["task_id"] == body["task_id"]
    assert response.get_json()["state"] == "PENDING"
    assert response.headers["Cache-Control"] == "no-store"


def test_query_style_without_task_id_is_400(client):
    assert client.get("/status").status_code == 400
    assert client.post("/status/abc", json={}).status_code == 400


def test_query_style_app_hands_out_query_urls(make_app):
    app = make_app(status_url_style="query")
    client = app.test_client()
    body = start(client, "none")
    assert body["status_url"] == f"/status?task_id={body['task_id']}"
    html = client.get("/").get_data(as_text=True)
    assert embedded_json(html, "page-config")["statusUrlStyle"] == "query"
    assert client.get(body["status_url"]).get_json()["task_id"] == body["task_id"]


def test_unknown_status_url_style_is_refused(make_app):
    with pytest.raises(ValueError, match="path, query"):
        make_app(status_url_style="cookie")


# -- the event stream


def chunks(response):
    for chunk in response.response:
        yield chunk.decode() if isinstance(chunk, bytes) else chunk


def data_of(chunk: str) -> dict:
    assert chunk.startswith("data: ") and chunk.endswith("\n\n"), chunk
    return json.loads(chunk[len("data: ") : -2])


def test_event_stream_sends_changes_and_heartbeats(make_app):
    app = make_app(poll_interval_ms=10, sse_heartbeat_ms=10, sse_max_seconds=30)
    client = app.test_client()
    body = start(client, "sse")
    response = client.get(body["events_url"], buffered=False)
    try:
        assert response.status_code == 200
        assert response.mimetype == "text/event-stream"
        for header, value in BOOK.events_response_headers.items():
            assert response.headers[header] == value
        stream = chunks(response)
        first = data_of(next(stream))
        assert (first["task_id"], first["state"]) == (body["task_id"], "PENDING")
        app.extensions["celery"].backend.store_result(body["task_id"], {"slept": 0}, "SUCCESS")
        seen = []
        for chunk in stream:
            seen.append(chunk)
            if chunk.startswith("data: "):
                break
        # No event while nothing changed: only heartbeats between the two states.
        assert all(c == ": heartbeat\n\n" for c in seen[:-1])
        final = data_of(seen[-1])
        assert final["state"] == "SUCCESS" and final["result"] == {"slept": 0}
        assert final["seq"] > first["seq"]
        # The stream stays open after the final state: heartbeats go on.
        assert next(stream) == ": heartbeat\n\n"
        assert next(stream) == ": heartbeat\n\n"
    finally:
        response.close()


class StreamClock:
    """The event stream's clock, where each sleep takes exactly as long as asked: how many
    heartbeats fit in the stream's time is then the stream's rule, not the machine's speed
    (seen on a busy machine: one heartbeat in a stream of 0.2 s, and the test failed)."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)  # time.time() and the rest, as they are


def test_event_stream_ends_after_its_time_with_one_event_per_state(make_app, monkeypatch):
    monkeypatch.setattr(web, "time", StreamClock())
    app = make_app(poll_interval_ms=10, sse_heartbeat_ms=20, sse_max_seconds=0.25)
    client = app.test_client()
    body = start(client, "sse")
    app.extensions["celery"].backend.store_result(body["task_id"], {"slept": 0}, "SUCCESS")
    response = client.get(body["events_url"], buffered=False)
    began = time.monotonic()
    received = list(chunks(response))
    assert time.monotonic() - began < 5
    data = [data_of(c) for c in received if c.startswith("data: ")]
    assert [d["state"] for d in data] == ["SUCCESS"]
    assert received[0].startswith("data: ")
    assert received.count(": heartbeat\n\n") == 12  # at 0.02, 0.04 ... 0.24 s of its 0.25


# -- the app's own status headers (a scenario's set-up), under the fix's


def header_age(response, name: str = "Last-Modified") -> float:
    return time.time() - parse_date(response.headers[name]).timestamp()


def test_app_status_headers_are_sent_with_every_fix(make_app):
    client = make_app(
        status_cache_control="max-age=30", status_last_modified_age_s=3600
    ).test_client()
    response = client.get(start(client, "none")["status_url"])
    assert response.headers["Cache-Control"] == "max-age=30"
    assert 3600 - 2 <= header_age(response) <= 3600 + 2
    # A header the fix does not send stays; one it sends replaces the app's.
    response = client.get(start(client, "expires-0")["status_url"])
    assert response.headers["Cache-Control"] == "max-age=30"
    assert response.headers["Expires"] == "0"
    response = client.get(start(client, "no-store")["status_url"])
    assert response.headers["Cache-Control"] == "no-store"
    assert "Last-Modified" in response.headers
    response = client.get(start(client, "last-modified")["status_url"])
    assert 86400 - 2 <= header_age(response) <= 86400 + 2


def test_a_fixs_header_wins_on_a_304_too(make_app):
    client = make_app(status_cache_control="max-age=30").test_client()
    body = start(client, "no-cache-etag")
    first = client.get(body["status_url"])
    assert first.headers["Cache-Control"] == "no-cache"
    again = client.get(body["status_url"], headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    assert again.headers["Cache-Control"] == "no-cache"


# -- the page's debug panel and the truth it asks for


def test_page_has_a_debug_panel_for_the_configured_headers(client):
    html = client.get("/").get_data(as_text=True)
    config = embedded_json(html, "page-config")
    assert config["debugPath"] == "/debug/tasks/{task_id}"
    assert [name for name, _ in config["debugHeaders"]] == ["Age", "Date", "Cache-Control", "Via"]
    assert 'id="debug"' in html
    for element in ("debug-status", "debug-truth", "debug-age", "debug-cache-control"):
        assert f'id="{element}"' in html
    # Rows for headers shown only when present start hidden.
    assert re.search(r'<div id="debug-via-row"\s+hidden>', html)
    assert not re.search(r'<div id="debug-age-row"\s+hidden>', html)


def test_debug_endpoint_reports_the_result_backends_truth(app, client, tmp_path):
    body = start(client, "none")
    url = f"/debug/tasks/{body['task_id']}"
    response = client.post(url)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    truth = response.get_json()
    assert truth["task_id"] == body["task_id"]
    assert truth["state"] == "PENDING"
    assert truth["date_done"] is None and truth["finished_ago_s"] is None

    app.extensions["celery"].backend.store_result(body["task_id"], {"slept": 0}, "SUCCESS")
    time.sleep(0.2)  # the scenario, not a wait: the task finished at least 0.2 s before the ask
    truth = client.post(url).get_json()
    assert truth["state"] == "SUCCESS"
    assert 0.2 <= truth["finished_ago_s"] < 30
    done = datetime.fromisoformat(truth["date_done"])
    assert done.utcoffset() == timedelta(0)  # UTC, said so
    assert truth["checked_at"] - done.timestamp() == pytest.approx(
        truth["finished_ago_s"], abs=0.01
    )
    # Asked with POST only, so that no cache keeps an answer: a GET is not served.
    assert client.get(url).status_code == 405


def test_debug_requests_are_not_status_polls_in_the_evidence(client, tmp_path):
    body = start(client, "none")
    client.get(body["status_url"])
    client.post(f"/debug/tasks/{body['task_id']}")
    events = read_origin_events(tmp_path)
    assert [e["endpoint"] for e in events] == ["start_task", "status_path", "debug_task"]
    assert [is_status_request(e) for e in events] == [False, True, False]
    # The proxy's events carry only the URL, with the matrix's cell prefix.
    task = body["task_id"]
    proxy_url = f"http://127.0.0.1:1/_lab/1-x--none/debug/tasks/{task}"
    assert not is_status_request({"url": proxy_url, "method": "POST"})
    assert is_status_request({"url": f"http://127.0.0.1:1/_lab/1-x--none/tasks/{task}/status"})


def test_the_celery_app_keeps_its_task_to_itself(tmp_path, recwarn):
    """Each Celery app the sample app makes has its own task, under its one name, and lends it
    to no other app in the process (say, the default app of a user's Flask + Celery project)."""
    from celery import Celery

    from sample_app.celery_app import TASK_NAME, create_celery

    conf = sqlite_celery_config(tmp_path)
    first, second = create_celery(conf), create_celery(conf)
    other = Celery("users-app", set_as_current=False)
    for app in (first, second, other):
        app.finalize()
    assert TASK_NAME in first.tasks and TASK_NAME in second.tasks
    assert first.tasks[TASK_NAME] is not second.tasks[TASK_NAME]
    assert TASK_NAME not in other.tasks
    assert not [w for w in recwarn if "DuplicateTaskName" in type(w.message).__name__]
