"""The sample app through Flask's test client: no worker; the SQLite broker is in tmp_path."""

import json
import re

import pytest

from sample_app import strategies
from sample_app.config import AppConfig, sqlite_celery_config
from sample_app.web import create_app

CACHE_HEADERS = ("Cache-Control", "Pragma", "Expires")


@pytest.fixture
def app(tmp_path):
    config = AppConfig(
        celery=sqlite_celery_config(tmp_path), origin_events=str(tmp_path / "origin.jsonl")
    )
    return create_app(config)


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
