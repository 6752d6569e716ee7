"""Brokers: the same bug on SQLite, Redis and RabbitMQ, and the story's second bug (redis-oom).

The real-stack tests need `redis-server` on PATH and a RabbitMQ at the default URL
(amqp://guest:guest@127.0.0.1:5672//, or $LAB_RABBITMQ_URL). Without them they are skipped with
how to get them, except on CI (CI=true), where a missing server is a failure: `.ci/run` starts
both.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time

import psutil
import pytest

from lab.data import fixes, scenarios, settings
from lab.data.errors import EXIT_COMPONENT, EXIT_MATCHED, BadInput, ComponentError
from lab.stacks import brokers
from lab.stacks.brokers import BrokerChoice, celery_config, check_reachable
from lab.stacks.ports import free_port
from lab.stacks.redis_memory import KeyGroup, MemorySummary, key_pattern, redis_cli_commands
from sample_app.config import REUSING_DATABASE_BACKEND
from tests.lab_helpers import LabProcess, wait_for
from tests.test_cli_input import assert_bad_input, lab

RABBITMQ_URL = settings.current().rabbitmq_url


def _missing(what: str, how: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is missing on CI: {how}")
    pytest.skip(f"{what} is not available here: {how}")


@pytest.fixture
def redis_server() -> None:
    if shutil.which("redis-server") is None:
        _missing("redis-server", "apt-get install -y redis-server")


@pytest.fixture
def rabbitmq() -> None:
    try:
        check_reachable("rabbitmq", RABBITMQ_URL)
    except ComponentError:
        _missing(
            f"RabbitMQ at {RABBITMQ_URL}",
            "apt-get install -y rabbitmq-server && rabbitmq-server -detached",
        )


def child_named(pid: int, name: str) -> psutil.Process | None:
    # Not by the env marker: redis-server rewrites its process title over its environment.
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if child.name() == name:
                return child
        except psutil.NoSuchProcess:
            continue
    return None


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    return free_port()


# -- choices and configuration ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "url", "says"),
    [
        ("mongodb", None, "not one of sqlite, redis, rabbitmq"),
        ("sqlite", "redis://127.0.0.1:6379/0", "sqlite broker is a file"),
        ("redis", "amqp://guest:guest@127.0.0.1:5672//", "a redis URL starts with redis://"),
        ("rabbitmq", "redis://127.0.0.1:6379/0", "amqp://"),
    ],
)
def test_bad_broker_choices_are_one_line_errors(kind, url, says):
    with pytest.raises(BadInput) as info:
        BrokerChoice(kind, url)
    assert says in str(info.value)
    assert "\n" not in str(info.value)


def test_passwords_stay_out_of_messages():
    assert (
        brokers.redact("amqp://guest:secret@127.0.0.1:5672//")
        == "amqp://guest:***@127.0.0.1:5672//"
    )
    with pytest.raises(BadInput) as info:
        BrokerChoice("rabbitmq", "http://user:secret@127.0.0.1/")
    assert "secret" not in str(info.value)


def test_each_broker_gets_its_result_backend_and_a_queue_of_its_own(tmp_path):
    sqlite = celery_config("sqlite", tmp_path, "lab.run.key")
    assert sqlite["broker_url"].startswith("sqlite:///")
    assert sqlite["result_backend"].startswith(f"{REUSING_DATABASE_BACKEND}+sqlite:///")

    redis = celery_config("redis", tmp_path, "lab.run.key", "redis://127.0.0.1:7000/0")
    assert redis["broker_url"] == redis["result_backend"] == "redis://127.0.0.1:7000/0"
    assert "broker_transport" not in redis  # the SQLite transport stays with SQLite

    amqp = celery_config("rabbitmq", tmp_path, "lab.run.key", RABBITMQ_URL)
    assert amqp["broker_url"] == RABBITMQ_URL
    # rpc:// would send results to the task's sender only: the lab reads the backend itself.
    assert amqp["result_backend"].startswith(f"{REUSING_DATABASE_BACKEND}+sqlite:///")
    for conf in (redis, amqp):
        assert conf["task_default_queue"] == "lab.run.key"
        assert list(conf["task_queues"]) == ["lab.run.key"]
        assert conf["worker_enable_remote_control"] is False


def test_result_fixes_are_fixes_the_page_polls_like_the_story():
    assert fixes.is_result_fix("result-expires")
    assert fixes.poll_strategy("forget-after-read") == "none"
    assert fixes.poll_strategy("nonce") == "nonce"
    with pytest.raises(BadInput) as info:
        fixes.check("expire-everything")
    assert "result-expires" in str(info.value)


# -- reading Redis -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "pattern"),
    [
        ("celery-task-meta-3f2b1c4d-1111-2222-3333-444455556666", "celery-task-meta-*"),
        ("_kombu.binding.proxy-cache-lab", "_kombu.binding.proxy-cache-lab"),
        ("lab.20261128-020216-redis-oom-none-e0dbb3.path-expires-0", "lab.*.path-expires-0"),
        ("unacked_index", "unacked_index"),
    ],
)
def test_keys_are_grouped_by_what_they_are(key, pattern):
    assert key_pattern(key) == pattern


def summary(**changes) -> MemorySummary:
    values = {
        "url": "redis://127.0.0.1:7000/0",
        "maxmemory": 5 * 1024 * 1024,
        "policy": "noeviction",
        "baseline": 1_400_000,
        "peak": 2_000_000,
        "final": 1_500_000,
        "dataset_baseline": 10_000,
        "dataset_final": 12_000,
        "samples": 50,
        "refused_writes": 0,
        "keys_before": [KeyGroup("a", 1, 100)],
        "keys_after": [KeyGroup("a", 1, 100), KeyGroup("celery-task-meta-*", 1, 300)],
    }
    return MemorySummary(**(values | changes))


def test_memory_is_flat_when_the_keys_did_not_grow_and_nothing_was_refused():
    assert summary().flat
    assert not summary(refused_writes=3).flat
    grown = [KeyGroup("celery-task-meta-*", 53, 3_272_072)]
    assert not summary(keys_after=grown).flat
    assert summary(keys_after=grown).to_json()["key_bytes_growth"] == 3_272_072 - 100


def test_redis_cli_commands_name_the_runs_own_server():
    commands = redis_cli_commands("redis://127.0.0.1:7000/0")
    assert "redis-cli -h 127.0.0.1 -p 7000 INFO memory" in commands
    assert any("--scan --pattern 'celery-task-meta-*'" in c for c in commands)


# -- unreachable brokers: exit 3 within seconds, never a hang ------------------------------------


@pytest.mark.parametrize("kind", ["redis", "rabbitmq"])
def test_an_unreachable_broker_fails_within_seconds(kind):
    port = closed_port()
    url = (
        f"redis://127.0.0.1:{port}/0"
        if kind == "redis"
        else f"amqp://guest:guest@127.0.0.1:{port}//"
    )
    began = time.monotonic()
    with pytest.raises(ComponentError) as info:
        check_reachable(kind, url)
    assert time.monotonic() - began < 3 * brokers.REACH_TIMEOUT
    message = str(info.value)
    assert f"cannot reach {kind} at" in message and "\n" not in message


@pytest.mark.stack
def test_repro_on_an_unreachable_rabbitmq_is_exit_3_and_starts_nothing(tmp_path):
    url = f"amqp://guest:guest@127.0.0.1:{closed_port()}//"
    args = ["repro", "proxy-cache", "--broker", "rabbitmq", "--broker-url", url]
    with LabProcess(args, tmp_path) as lab:
        code, _ = lab.finish(timeout=30)
    assert code == EXIT_COMPONENT, lab.stderr
    assert "error: broker: cannot reach rabbitmq at" in lab.stderr
    assert "rabbitmq-server -detached" in lab.stderr  # how to start it
    assert not any(
        line.startswith("lab") and "starting worker" in line for line in lab.stderr_lines
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["repro", "redis-oom", "--broker", "sqlite"], "runs on --broker redis only"),
        (
            ["repro", "proxy-cache", "--broker-url", "redis://127.0.0.1:1/0"],
            "sqlite broker is a file",
        ),
        (["repro", "proxy-cache", "--fix", "result-expires"], "does not apply"),
        (["matrix", "--brokers", "sqlite,mongodb"], "'mongodb' is not one of"),
        (["matrix", "--broker", "redis", "--brokers", "sqlite,redis"], "give one of them"),
    ],
)
def test_bad_broker_input_is_exit_2(tmp_path, args, says):
    assert_bad_input(tmp_path, lab(tmp_path, *args), says)


# -- the real servers ------------------------------------------------------------------------------


@pytest.mark.stack
def test_stopping_redis_mid_run_is_exit_3_and_leaves_nothing(tmp_path, redis_server):
    with LabProcess(["repro", "proxy-cache", "--broker", "redis"], tmp_path) as lab:
        lab.wait_for_stderr("all up after")
        redis = wait_for(lambda: child_named(lab.proc.pid, "redis-server"), 10, "its redis-server")
        redis.terminate()  # as `redis-cli shutdown` or a crash would
        code, _ = lab.finish(timeout=30)
    assert code == EXIT_COMPONENT, lab.stderr
    assert "error: redis: exited with code" in lab.stderr and "during the run" in lab.stderr


@pytest.mark.stack
def test_redis_oom_errors_with_the_redis_error_in_the_evidence(tmp_path, redis_server):
    with LabProcess(["repro", "redis-oom", "--json"], tmp_path) as lab:
        code, stdout = lab.finish(timeout=120)
    assert code == EXIT_MATCHED, lab.stderr
    verdict = json.loads(stdout)
    assert verdict["observed"] == "errored" and verdict["broker"] == "redis"
    # The page shows the app's 500 with why: the broker refused the task.
    assert "HTTP 500: could not queue the task" in verdict["sentence"]
    assert verdict["load"]["refused"] > 0
    full = "command not allowed when used memory > 'maxmemory'"
    assert any(full in error for error in verdict["load"]["errors"]), verdict["load"]
    memory = verdict["redis"]
    assert memory["refused_writes"] > 0 and not memory["flat"]
    grown = {g["pattern"]: g for g in memory["keys_after"]}
    assert grown["celery-task-meta-*"]["count"] > 10  # the results nobody cleaned
    # Sampled every 0.1 s, so the very top may fall between two samples.
    assert memory["peak"] > 0.9 * memory["maxmemory"] > 0


@pytest.mark.stack
def test_the_cached_poll_hangs_alike_on_every_broker(tmp_path, redis_server, rabbitmq):
    """Issue #5's proof: the broker was the wrong suspect. One matrix per broker. (That each
    result backend fix keeps Redis flat is asserted on the whole matrix, in test_stack.py.)"""
    args = ["matrix", "--scenarios", "proxy-cache", "--brokers", "sqlite,redis,rabbitmq"]
    env = {"LAB_RABBITMQ_URL": RABBITMQ_URL}
    with LabProcess([*args, "--json"], tmp_path, extra_env=env) as lab:
        code, stdout = lab.finish(timeout=600)
    comparison = json.loads(stdout)
    assert code == EXIT_MATCHED, lab.stderr
    assert comparison["ok"] and not comparison["differences"]
    proxy_cache = scenarios.load("proxy-cache")
    assert comparison["common_cells"] == len(proxy_cache.fixes)  # every fix, on every broker
    assert comparison["cached_poll_cells"] >= 1
    for broker, result in comparison["matrices"].items():
        cells = {(v["scenario"], v["fix"]): v for v in result["rounds"][-1]}
        assert all(v["broker"] == broker for v in cells.values())
        assert cells[("proxy-cache", "none")]["observed"] == "hung"
        assert cells[("proxy-cache", "nonce")]["observed"] == "completed"


def test_rabbitmq_url_can_come_from_the_environment(lab_env):
    lab_env("LAB_RABBITMQ_URL", "amqp://lab:pw@127.0.0.1:5673//")
    assert BrokerChoice("rabbitmq").external_url == "amqp://lab:pw@127.0.0.1:5673//"
    assert BrokerChoice("rabbitmq", RABBITMQ_URL).external_url == RABBITMQ_URL


def test_free_port_is_loopback_and_free():
    port = closed_port()
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def test_a_broker_that_stops_answering_during_a_run_is_reported():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        url = f"amqp://guest:secret@127.0.0.1:{port}//"
        watch = brokers.BrokerWatch("rabbitmq", url, every=0)
        watch.check()  # it answers: nothing to say
    with pytest.raises(ComponentError) as info:
        watch.check()
    message = str(info.value)
    assert "stopped answering during the run" in message and "secret" not in message
