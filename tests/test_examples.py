"""The example apps (examples/): each with the story's bug by default and the fix behind
STATUS_CACHE_CONTROL. The apps in process (Flask's and Django's test clients, httpx's ASGI
transport), then each audit flow file's commands started as it says and polled directly."""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.lab_helpers import TOKEN_VAR, assert_nothing_left, wait_for

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
APP_SETTINGS = ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "EXAMPLE_DATA_DIR")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The apps read these from the environment: a developer's own exports must not leak in."""
    for name in (*APP_SETTINGS, "STATUS_CACHE_CONTROL"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# --- Flask + Celery, in process (no worker: the filesystem broker keeps what was sent) ---


def flask_client(data_dir: Path, **config: Any):
    from examples.flask_celery.app import create_app

    return create_app({"EXAMPLE_DATA_DIR": str(data_dir), **config}).test_client()


def test_flask_status_has_no_caching_headers_by_default(clean_env, tmp_path):
    answer = flask_client(tmp_path).get(f"/result/{uuid.uuid4()}")
    assert answer.status_code == 200
    assert answer.json == {"ready": False, "successful": False, "value": None}
    assert "Cache-Control" not in answer.headers


def test_flask_fix_sets_cache_control_on_the_status_only(clean_env, tmp_path):
    client = flask_client(tmp_path, STATUS_CACHE_CONTROL="no-store")
    assert client.get(f"/result/{uuid.uuid4()}").headers["Cache-Control"] == "no-store"
    assert "Cache-Control" not in client.post("/add", json={"a": 1, "b": 2}).headers


def test_flask_fix_read_from_the_environment(clean_env, tmp_path):
    clean_env.setenv("STATUS_CACHE_CONTROL", "no-store")
    answer = flask_client(tmp_path).get(f"/result/{uuid.uuid4()}")
    assert answer.headers["Cache-Control"] == "no-store"


def test_flask_add_queues_the_task_in_the_data_dir(clean_env, tmp_path):
    answer = flask_client(tmp_path).post("/add", json={"a": 1, "b": 2, "seconds": 0})
    assert answer.status_code == 200
    assert set(answer.json) == {"result_id"}
    (message,) = (tmp_path / "broker" / "queue").glob("*.msg")
    assert answer.json["result_id"] in message.read_text()


def test_flask_a_queued_message_appears_whole(clean_env, tmp_path, monkeypatch):
    """kombu's own filesystem transport creates the message file empty and then writes it: a
    worker reading in between died (celery/kombu#1551). The example's writes it beside the
    queue and renames it in, so the queue folder never holds a partial file."""
    import os

    seen_in_queue: list[int] = []
    real_replace = os.replace

    def replace(src: str, dst: str) -> None:
        seen_in_queue.append(len(list((tmp_path / "broker" / "queue").glob("*.msg"))))
        assert Path(src).stat().st_size > 0  # whole before it is moved in
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    answer = flask_client(tmp_path).post("/add", json={"a": 1, "b": 2, "seconds": 0})
    assert answer.status_code == 200
    assert seen_in_queue == [0]  # nothing in the queue folder until the rename
    (message,) = (tmp_path / "broker" / "queue").glob("*.msg")
    assert answer.json["result_id"] in message.read_text()
    assert not list((tmp_path / "broker" / "queue-staging").iterdir())


def test_flask_answers_a_nonce_segment_after_the_status_path(clean_env, tmp_path):
    client = flask_client(tmp_path)
    task = uuid.uuid4()
    assert client.get(f"/result/{task}/a1b2").json == client.get(f"/result/{task}").json


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"a": "x"}, "a: 'x' is not a number"),
        ({"a": 1.5}, "a: 1.5 is not a whole number"),
        ({"b": True}, "b: True is not a number"),
        ({"seconds": 61}, "seconds: 61.0 is not between 0 and 60"),
        ({"seconds": -1}, "seconds: -1.0 is not between 0 and 60"),
    ],
)
def test_flask_add_refuses_bad_input_naming_the_field(clean_env, tmp_path, body, error):
    answer = flask_client(tmp_path).post("/add", json=body)
    assert (answer.status_code, answer.json) == (400, {"error": error})


def test_flask_needs_a_data_dir_without_broker_urls(clean_env):
    from examples.flask_celery.app import ConfigError, create_app

    with pytest.raises(ConfigError, match="EXAMPLE_DATA_DIR is not set.*CELERY_BROKER_URL"):
        create_app()


def test_flask_broker_urls_from_the_environment(clean_env):
    from examples.flask_celery.app import create_app

    clean_env.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
    clean_env.setenv("CELERY_RESULT_BACKEND", "redis://127.0.0.1:6379/1")
    celery = create_app().extensions["celery"]  # no data dir needed, nothing connects yet
    assert celery.conf.broker_url == "redis://127.0.0.1:6379/0"
    assert celery.conf.result_backend == "redis://127.0.0.1:6379/1"


# --- FastAPI, in process (httpx's ASGI transport, the jobs in the same event loop) ---


def with_fastapi_client(
    check: Callable[[httpx.AsyncClient], Awaitable[None]], status_cache_control: str | None = None
) -> None:
    from examples.fastapi_jobs.app import Settings, create_app

    async def main() -> None:
        app = create_app(Settings(status_cache_control=status_cache_control))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            await check(client)

    asyncio.run(main())


async def status_becomes(client: httpx.AsyncClient, path: str, status: str) -> httpx.Response:
    deadline = time.monotonic() + 5
    while (answer := await client.get(path)).json()["status"] != status:
        assert time.monotonic() < deadline, f"{path} still {answer.json()} after 5 s"
        await asyncio.sleep(0.01)  # poll interval: the job runs in this loop meanwhile
    return answer


@pytest.mark.parametrize(("fail", "final"), [(False, "done"), (True, "failed")])
def test_fastapi_job_runs_to_its_final_status(fail, final):
    async def check(client: httpx.AsyncClient) -> None:
        started = await client.post("/jobs", json={"seconds": 0, "fail": fail})
        assert started.status_code == 202
        job_id = started.json()["id"]
        assert started.headers["Location"] == f"/jobs/{job_id}"
        status = await status_becomes(client, f"/jobs/{job_id}", final)
        assert status.json() == {"id": job_id, "status": final}
        assert "Cache-Control" not in status.headers

    with_fastapi_client(check)


def test_fastapi_fix_sets_cache_control_on_the_status_only():
    async def check(client: httpx.AsyncClient) -> None:
        started = await client.post("/jobs", json={"seconds": 30})
        assert "Cache-Control" not in started.headers
        status = await client.get(started.headers["Location"])
        assert status.json()["status"] == "running"
        assert status.headers["Cache-Control"] == "no-store"
        assert (await client.get("/jobs/unknown")).headers["Cache-Control"] == "no-store"

    with_fastapi_client(check, "no-store")


def test_fastapi_unknown_job_and_bad_input():
    async def check(client: httpx.AsyncClient) -> None:
        assert (await client.get("/jobs/unknown")).status_code == 404
        assert (await client.post("/jobs", json={"seconds": 61})).status_code == 422
        assert (await client.post("/jobs")).status_code == 202  # no body: the default length

    with_fastapi_client(check)


def test_job_table_forgets_finished_jobs_first_and_refuses_when_all_run():
    from examples.fastapi_jobs.jobs import JobTable

    now = [0.0]
    table = JobTable(max_jobs=2, finished_ttl_s=10, clock=lambda: now[0])
    first, second = table.add("first"), table.add("second")
    assert first is not None and second is not None
    assert table.add("third") is None  # both running: nothing may be dropped
    table.finish(second, "done")
    assert table.add("third") is not None  # the finished one made room
    assert table.get("second") is None and table.get("first") is first
    table.finish(first, "done")
    now[0] = 9.9
    assert table.get("first") is first
    now[0] = 10.0
    assert table.get("first") is None and len(table) == 1


# --- Django, in process (Django's test client; settings are per process, made once) ---


def django_client():
    from django.test import Client

    from examples.django_jobs.app import create_app

    create_app()
    return Client(HTTP_HOST="127.0.0.1")  # the app allows only loopback host names


def test_django_job_runs_to_done_and_its_status_has_no_caching_headers(clean_env):
    client = django_client()
    started = client.post("/jobs", {"seconds": 0}, content_type="application/json")
    assert started.status_code == 202
    job_id = started.json()["id"]
    assert started["Location"] == f"/jobs/{job_id}"
    wait_for(lambda: client.get(f"/jobs/{job_id}").json()["status"] == "done", 5, "done")
    assert not client.get(f"/jobs/{job_id}").has_header("Cache-Control")


def test_django_failed_job_unknown_job_and_bad_input(clean_env):
    client = django_client()
    started = client.post("/jobs", {"seconds": 0, "fail": True}, content_type="application/json")
    status_path = started["Location"]
    wait_for(lambda: client.get(status_path).json()["status"] == "failed", 5, "failed")
    assert client.get("/jobs/unknown").status_code == 404
    too_long = client.post("/jobs", {"seconds": 61}, content_type="application/json")
    assert (too_long.status_code, too_long.json()) == (
        400,
        {"detail": "seconds: 61.0 is not between 0 and 60"},
    )


def test_django_fix_sets_cache_control_on_the_status_only(clean_env):
    from django.test import override_settings

    client = django_client()
    with override_settings(STATUS_CACHE_CONTROL="no-store"):
        started = client.post("/jobs", {"seconds": 30}, content_type="application/json")
        assert not started.has_header("Cache-Control")
        status = client.get(started["Location"])
        assert status.json()["status"] == "running"
        assert status["Cache-Control"] == "no-store"


# --- Each audit flow file, started as it says, polled directly ---


@dataclass(frozen=True)
class FlowCase:
    flow: str  # relative to examples/: the start and status requests, and how to start the app
    cache_control: str | None  # the status answer's, as the app sends it
    # The app started from this Procfile instead, as honcho does (its commands found on PATH).
    procfile: str | None = None

    def __str__(self) -> str:
        return f"{self.flow} via {self.procfile}" if self.procfile else self.flow


FLOW_CASES = [
    FlowCase("flask_celery/audit.toml", None),
    FlowCase("flask_celery/audit-fixed.toml", "no-store"),
    FlowCase("flask_celery/audit.toml", None, procfile="flask_celery/Procfile"),
    FlowCase("fastapi_jobs/audit.toml", None),
    FlowCase("fastapi_jobs/audit-fixed.toml", "no-store"),
    FlowCase("django_jobs/audit.toml", None),
    FlowCase("django_jobs/audit-fixed.toml", "no-store"),
]


@dataclass(frozen=True)
class AppCommands:
    commands: list[str]  # the web server first; placeholders not yet filled
    cwd: Path
    env: dict[str, str]
    ready_path: str = "/"
    start_timeout_s: float = 30
    path_first: Path | None = None  # put first on PATH, as an activated venv does


def app_commands(case: FlowCase) -> AppCommands:
    flow_path = EXAMPLES / case.flow
    app = tomllib.loads(flow_path.read_text("utf-8"))["app"]
    given = AppCommands(
        commands=app.get("commands", []),
        cwd=(flow_path.parent / app.get("cwd", ".")).resolve(),
        env=app.get("env", {}),
        ready_path=app.get("ready_path", "/"),
        start_timeout_s=app.get("start_timeout_s", 30),
    )
    procfile = app.get("procfile") and flow_path.parent / app["procfile"]
    if case.procfile:
        procfile = EXAMPLES / case.procfile
        given = replace(given, path_first=Path(sys.executable).parent)
    if not procfile:
        return given
    lines = [line.strip() for line in procfile.read_text("utf-8").splitlines()]
    entries = [line.partition(":") for line in lines if line and line[0] != "#"]
    web_first = sorted(entries, key=lambda entry: entry[0] != "web")
    return replace(given, commands=[command.strip() for _, _, command in web_first])


def fill(text: str, port: int, data_dir: Path) -> str:
    """The flow format's placeholders, as the lab fills them (`$PORT` is the shell's)."""
    return (
        text.replace("{port}", str(port))
        .replace("{data_dir}", str(data_dir))
        .replace("{python}", shlex.quote(sys.executable))
    )


@contextmanager
def running(app: AppCommands, run_dir: Path) -> Iterator[str]:
    """The commands started as the lab starts them (each through /bin/sh -c in its own
    session, PORT in the environment, its log in `run_dir`); yields the base URL once
    `ready_path` answers below 500. Every process is stopped when the block ends, and none
    may be left."""
    from lab.stacks.ports import free_port

    port = free_port()
    data_dir = run_dir / "data"
    data_dir.mkdir()
    token = uuid.uuid4().hex
    env = {
        **os.environ,
        **{name: fill(value, port, data_dir) for name, value in app.env.items()},
        "PORT": str(port),
        TOKEN_VAR: token,
    }
    if app.path_first:
        env["PATH"] = f"{app.path_first}{os.pathsep}{env.get('PATH', '')}"
    processes: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    with ExitStack() as cleanup:
        cleanup.callback(assert_nothing_left, token, 10.0)
        cleanup.callback(stop_all, processes)
        for number, command in enumerate(app.commands):
            logs.append(run_dir / f"command-{number}.log")
            log = cleanup.enter_context(logs[-1].open("wb"))
            processes.append(
                subprocess.Popen(
                    ["/bin/sh", "-c", fill(command, port, data_dir)],
                    cwd=app.cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        base_url = f"http://127.0.0.1:{port}"

        def web_answers() -> bool:
            for proc, log_path in zip(processes, logs, strict=True):
                assert proc.poll() is None, f"{proc.args} exited:\n{log_path.read_text()[-2000:]}"
            try:
                return httpx.get(base_url + app.ready_path, timeout=2).status_code < 500
            except httpx.TransportError:
                return False

        wait_for(web_answers, app.start_timeout_s, f"{base_url} to answer")
        yield base_url


def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGKILL to each session, the leader's children (gunicorn's worker) too. Nothing of
    theirs is worth a graceful stop here, and Celery's warm shutdown on the filesystem
    transport takes 4 to 5 s (its loop waits out a 2 s drain before it looks again)."""
    for proc in processes:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def task_id_from(flow: dict[str, Any], answer: httpx.Response) -> str:
    where = flow["start"]["task_id"]
    if where == "header:Location":
        return answer.headers["Location"].rstrip("/").rpartition("/")[2]
    value: Any = answer.json()
    for key in where.split("."):
        value = value[key]
    return str(value)


@pytest.mark.stack
@pytest.mark.parametrize("case", FLOW_CASES, ids=str)
def test_example_started_from_its_flow_file_reaches_the_final_state(case, tmp_path, clean_env):
    flow = tomllib.loads((EXAMPLES / case.flow).read_text("utf-8"))
    start, status = flow["start"], flow["status"]
    with running(app_commands(case), tmp_path) as base_url, httpx.Client() as client:
        started = client.request(start["method"], base_url + start["path"], json=start["json"])
        assert started.status_code in (200, 202), started.text
        task_id = task_id_from(flow, started)
        if start["task_id"] == "header:Location":
            assert started.headers["Location"] == f"/jobs/{started.json()['id']}"
        status_url = base_url + status["path"].replace("{id}", task_id)
        answers: list[httpx.Response] = []

        def final() -> bool:
            answers.append(client.request(status["method"], status_url))
            return is_final(case, answers[-1].json())

        wait_for(final, flow["polling"]["task_timeout_s"], f"{status_url} to say it finished")
    first, last = answers[0], answers[-1]
    assert not is_final(case, first.json()), "the first poll already final: nothing to cache"
    for answer in (first, last):
        assert answer.status_code == 200
        assert answer.headers.get("Cache-Control") == case.cache_control
    if case.flow.startswith("flask_celery"):
        assert last.json() == {"ready": True, "successful": True, "value": 3}  # a=1 + b=2
    else:
        assert last.json() == {"id": task_id, "status": "done"}


def is_final(case: FlowCase, answer: dict[str, Any]) -> bool:
    if case.flow.startswith("flask_celery"):
        return answer["ready"] is True
    return answer["status"] in ("done", "failed")


def test_what_no_store_cannot_fix_is_what_the_lab_knows():
    """examples/known_limits.py, the examples' strict expected failures, against the lab's own
    scenario files: the profiles where `Cache-Control: no-store` alone fails, and those where a
    page that does not retry errors."""
    from examples.known_limits import NO_STORE_IS_NOT_ENOUGH
    from lab.judging.advice import recommend
    from lab.runs.audit import deployment_profiles

    known = set()
    for profile in deployment_profiles():
        advice = recommend([profile])
        no_store = next(fix for fix in advice.server_fixes if fix.fix == "cc-no-store")
        if profile in advice.unknown_profiles:
            continue  # no plain scenario: the lab has not checked it (the audit has)
        if not no_store.survives or profile in advice.retry_needed_on:
            known.add(profile)
    assert known == set(NO_STORE_IS_NOT_ENOUGH)
