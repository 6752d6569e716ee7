"""The audit's flow (lab/data/flows.py) and its client's reading of the user's answers
(lab/clients/flow.py): no process started."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from lab.clients.flow import build_client, state_text, task_id_from
from lab.data import flows
from lab.data.errors import BadInput
from lab.data.flows import APP_POLLING
from sample_app import strategies

GOOD = """\
[app]
url = "http://127.0.0.1:8000"
[start]
path = "/jobs"
task_id = "header:Location"
[status]
shape = "status-done"
path = "/jobs/{id}"
task_id = "id"
"""


def write(tmp_path: Path, text: str, name: str = "my-app.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, "utf-8")
    return path


def test_a_flow_file_with_presets(tmp_path):
    flow = flows.load(write(tmp_path, GOOD))
    assert flow.name == "my-app"
    assert flow.status.state_at == "status"
    assert flow.status.is_final("done") and flow.status.is_failure("failed")
    assert not flow.status.is_final("running")
    assert flow.start.id_header == "Location"
    assert flow.two_users
    assert flow.status_path("abc") == "/jobs/abc"


def test_the_celery_shape_is_the_default():
    flow = flows.Flow.model_validate({"app": {"url": "http://127.0.0.1:1"}})
    assert flow.status.state_at == "state"
    assert flow.status.is_final("SUCCESS") and flow.status.is_failure("FAILURE")
    assert flow.start.task_id == "task_id"
    assert not flow.two_users


def test_json_true_is_a_state_and_1_is_not():
    flow = flows.Flow.model_validate(
        {"app": {"url": "http://127.0.0.1:1"}, "status": {"state": "ready", "final_states": [True]}}
    )
    assert flow.status.is_final(True)
    assert not flow.status.is_final(1)
    assert not flow.status.is_final("true")
    assert flow.status.failures == []


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        (('path = "/jobs/{id}"', 'path = "/jobs/status"'), "status.path", "{id}"),
        (('task_id = "id"', 'task_id = "id..x"'), "status.task_id", "dotted path"),
        (('url = "http://127.0.0.1:8000"', 'url = "ftp://x"'), "app.url", "http://"),
        (('url = "http://127.0.0.1:8000"', 'commands = ["gunicorn app:app"]'), "app", "{port}"),
        (('shape = "status-done"', 'shape = "rq"'), "status.shape", "celery"),
        (('shape = "status-done"', "failure_states = ['x']"), "status", "not among final_states"),
        (("[start]", "[start]\nmethod = 'FETCH'"), "start.method", "GET"),
    ],
)
def test_a_bad_flow_file_names_file_field_and_problem(tmp_path, change, field, problem):
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(BadInput) as caught:
        flows.load(path)
    message = str(caught.value)
    assert "\n" not in message
    assert "my-app.toml" in message and f"'{field}'" in message and problem in message


def test_an_app_needs_exactly_one_way_in(tmp_path):
    both = GOOD.replace("[app]\n", '[app]\ncommands = ["x {port}"]\n')
    with pytest.raises(BadInput, match="exactly one of url, commands or procfile"):
        flows.load(write(tmp_path, both))


def test_a_procfile_needs_a_web_line(tmp_path):
    write(tmp_path, "worker: celery -A app worker\n", "Procfile")
    flow_text = GOOD.replace('url = "http://127.0.0.1:8000"', 'procfile = "Procfile"')
    with pytest.raises(BadInput, match="no 'web:' line"):
        flows.load(write(tmp_path, flow_text))
    write(tmp_path, "worker: celery -A app worker\nweb: gunicorn app:app -b :$PORT\n", "Procfile")
    flow = flows.load(write(tmp_path, flow_text))
    assert flows.procfile_commands(tmp_path / "Procfile")[0] == (
        "web",
        "gunicorn app:app -b :$PORT",
    )
    assert flow.app.procfile == "Procfile"


def test_command_line_values_override_a_file(tmp_path):
    base = flows.load(write(tmp_path, GOOD))
    flow = flows.from_options(
        base, **{"app.commands": ("python app.py --port {port}",), "polling.interval_s": 0.5}
    )
    assert flow.app.url is None and flow.app.commands == ["python app.py --port {port}"]
    assert flow.polling.interval_s == 0.5
    assert flow.status.state_at == "status"  # the file's
    assert flow.source == base.source


def test_no_app_anywhere_is_one_line():
    with pytest.raises(BadInput, match="no app: give --app-url, --app-cmd or a flow file"):
        flows.from_options(None, **{"status.path": "/t/{id}"})


def test_dig():
    doc = {"data": {"items": [{"id": "x"}]}}
    assert flows.dig(doc, "data.items.0.id") == "x"
    with pytest.raises(KeyError):
        flows.dig(doc, "data.nope")


def answer(status: int, *, json_body=None, text=None, headers=None) -> httpx.Response:
    if json_body is not None:
        return httpx.Response(status, json=json_body, headers=headers)
    return httpx.Response(status, text=text or "", headers=headers)


def test_the_task_id_from_the_answer_or_its_location():
    celery = flows.Flow.model_validate({"app": {"url": "http://127.0.0.1:1"}})
    assert task_id_from(celery, answer(202, json_body={"task_id": "abc"})) == "abc"
    flow = flows.Flow.model_validate(
        {"app": {"url": "http://127.0.0.1:1"}, "start": {"task_id": "header:Location"}}
    )
    assert task_id_from(flow, answer(202, headers={"Location": "/jobs/42/"})) == "42"
    assert task_id_from(flow, answer(202, headers={"Location": "http://h/jobs/7?x=1"})) == "7"
    with pytest.raises(ValueError, match="no Location header"):
        task_id_from(flow, answer(202, json_body={}))


@pytest.mark.parametrize(
    ("response", "problem"),
    [
        (answer(200, json_body={"id": 1}), "no task id at 'task_id'"),
        (answer(200, text="<html>ok</html>", headers={"content-type": "text/html"}), "not JSON"),
        (answer(200, json_body={"task_id": None}), "not a string"),
    ],
)
def test_a_start_answer_without_an_id_says_where(response, problem):
    flow = flows.Flow.model_validate({"app": {"url": "http://127.0.0.1:1"}})
    with pytest.raises(ValueError, match=problem):
        task_id_from(flow, response)


def test_states_are_shown_as_the_page_would():
    assert state_text("SUCCESS") == "SUCCESS"
    assert state_text(True) == "true"
    assert state_text(3) == "3"


def test_client_strategies_lay_the_fix_over_the_users_status_request(tmp_path):
    flow = flows.Flow.model_validate(
        {"app": {"url": "http://127.0.0.1:1"}, "status": {"path": "/r/{id}?verbose=1"}}
    )
    book = strategies.load()

    def url(strategy: str) -> str:
        client = build_client(
            flow, book, strategy, base_url="http://app", proxy_url=None,
            log_path=tmp_path / "c.jsonl", given_task_id="t1",
        )  # fmt: skip
        client.task_id = "t1"
        try:
            return client._status_url()
        finally:
            client.close()

    assert url(APP_POLLING) == "http://app/r/t1?verbose=1"
    assert url("nonce").startswith("http://app/r/t1?verbose=1&nonce=")
    path_nonce = url("path-nonce")
    assert path_nonce.startswith("http://app/r/t1/") and path_nonce.endswith("?verbose=1")
    assert url("post") == "http://app/r/t1?verbose=1"


def test_a_bad_command_line_value_is_named_by_its_option():
    with pytest.raises(BadInput, match=r"^--status: must contain \{id\}"):
        flows.from_options(None, **{"app.url": "http://127.0.0.1:1", "status.path": "/x"})
    with pytest.raises(BadInput, match=r"^--app-cmd: the first command is the web server"):
        flows.from_options(None, **{"app.commands": ("python3 app.py",)})


def test_a_nonce_in_the_status_path_is_new_on_every_poll():
    flow = flows.from_options(
        None, **{"app.url": "http://127.0.0.1:1", "status.path": "/jobs/{id}/{nonce}"}
    )
    first, second = flow.status_path("abc"), flow.status_path("abc")
    assert first.startswith("/jobs/abc/") and second.startswith("/jobs/abc/")
    assert first != second and "{nonce}" not in first
