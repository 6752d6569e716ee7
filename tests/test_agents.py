"""`lab agent` and `lab matrix --dispatch` (issue 15): the same table as a local matrix, cell for
cell; an agent killed in the middle costs nothing but time; a message an agent cannot run is
rejected with a one-line reason while it keeps serving."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.data.errors import EXIT_BAD_INPUT
from lab.runs.agent_protocol import (
    TASK_NAME,
    CellMessage,
    Rejected,
    celery_app,
    check_against_own_data,
    check_dispatch_url,
    parse,
)
from tests.lab_helpers import LabProcess, running_redis, wait_for

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = "proxy-cache,squid-override,nginx-default,direct"
FIXES = "none,nonce,no-store,cc-max-age-0,detect-stale,sse"
# Cells here last under 10 s; a lost agent's cells go to the other after this many seconds.
REDELIVER_AFTER = "15"


def message(**changes: object) -> dict:
    body = {"run": "t1", "scenario": "proxy-cache", "fix": "none", "round": 1, "attempt": 1}
    return body | changes


# --- the message and the checks made before anything starts (no process) -----------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("proxy-cache", "a cell message is a JSON object, got str"),
        (message(round="one"), "field round='one'"),
        (message(scenario="../etc/passwd"), "field scenario='../etc/passwd'"),
        (message(code="import os"), "field code='import os': Extra inputs are not permitted"),
        ({"run": "t1"}, "field scenario: Field required"),
    ],
)
def test_a_malformed_message_is_rejected_with_a_one_line_reason(body, reason):
    with pytest.raises(Rejected) as caught:
        parse(body)
    assert reason in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_agent_runs_only_what_it_has():
    have = {"proxy-cache", "direct"}
    scenario = check_against_own_data(parse(message()), have, "python", None)
    assert scenario.name == "proxy-cache"
    for body, reason in [
        (message(scenario="squid-override"), "'squid-override': this agent does not have it"),
        (message(fix="no-such-fix"), "unknown fix 'no-such-fix'"),
        (message(client="browser"), "this agent serves client python"),
        (message(broker="redis"), "this agent serves client python, broker default"),
    ]:
        with pytest.raises(Rejected, match=re.escape(reason)):
            check_against_own_data(parse(body), have, "python", None)


def test_a_cell_id_names_its_run_round_attempt_and_cell():
    cell = CellMessage(**message(round=2, attempt=3))
    assert cell.cell_id == "t1/r2a3/proxy-cache--none"


def test_the_lab_queue_is_json_only_late_acknowledged_and_not_the_sample_apps():
    conf = celery_app("redis://127.0.0.1:1/0", redeliver_after=30).conf
    assert conf.accept_content == ["json"] and conf.task_serializer == "json"
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.task_default_queue == "lab.cells" != "celery"
    assert conf.broker_transport_options["visibility_timeout"] == 30


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379/0", "amqp://guest@127.0.0.1//", ""])
def test_dispatch_takes_a_redis_url_only(url):
    from lab.data.errors import BadInput

    with pytest.raises(BadInput, match="a Redis URL"):
        check_dispatch_url(url)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--dispatch", "http://127.0.0.1:1/0"], "--dispatch 'http://127.0.0.1:1/0': a Redis URL"),
        (["--evidence-dir", "x"], "--evidence-dir and --cell-deadline go with --dispatch"),
        (
            ["--dispatch", "redis://127.0.0.1:1/0", "--proxy-url", "http://127.0.0.1:1"],
            "--dispatch and --proxy-url",
        ),
    ],
)
def test_bad_dispatch_options_are_bad_input(tmp_path, args, error):
    with LabProcess(["matrix", "--scenarios", "direct", *args], tmp_path) as lab:
        code, _ = lab.finish()
    assert code == EXIT_BAD_INPUT
    assert error in lab.stderr


# --- two agents on a Redis of the test's own ---------------------------------------------


@dataclass
class Agents:
    url: str
    agents: list[LabProcess]
    folder: Path


@pytest.fixture(scope="module")
def agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agents]:
    folder = tmp_path_factory.mktemp("agents")
    with running_redis() as base:
        url = f"{base}/3"
        started: list[LabProcess] = []
        try:
            for n in (1, 2):
                (folder / f"agent-{n}").mkdir()
                started.append(
                    LabProcess(
                        ["agent", url, "--scenarios", SCENARIOS, "--fixes", FIXES]
                        + ["--concurrency", "8", "--redeliver-after", REDELIVER_AFTER],
                        folder / f"agent-{n}",
                    ).__enter__()
                )
            for agent in started:
                agent.wait_for_stderr("agent ready", timeout=300)
            yield Agents(url, started, folder)
        finally:
            for agent in started:
                agent.__exit__(None)  # killed if still running; nothing of it may be left


def outcomes(matrix_json: dict) -> dict[str, tuple[str, str, bool]]:
    cells = [cell for round_cells in matrix_json["rounds"] for cell in round_cells]
    found = {
        f"{c['scenario']}/{c['fix']}": (c["observed"], c["expected"], c["matched"]) for c in cells
    }
    assert len(found) == len(cells), "a cell counted twice"
    return found


def run_matrix(folder: Path, *extra: str) -> tuple[int, dict, LabProcess]:
    folder.mkdir()
    with LabProcess(
        ["matrix", "--scenarios", SCENARIOS, "--fixes", FIXES, "--json", *extra], folder
    ) as lab:
        code, stdout = lab.finish(timeout=240)
    return code, json.loads(stdout.splitlines()[-1]), lab


@pytest.fixture(scope="module")
def local_matrix(tmp_path_factory: pytest.TempPathFactory) -> dict:
    code, result, lab = run_matrix(tmp_path_factory.mktemp("local") / "run")
    assert code == 0, lab.output
    return result


@pytest.mark.stack
@pytest.mark.timeout(600)  # two agents and a local matrix start first, on a shared machine
def test_two_agents_give_the_local_matrix_cell_for_cell(agents, local_matrix, tmp_path):
    code, result, lab = run_matrix(tmp_path / "dispatched", "--dispatch", agents.url)
    assert code == 0, lab.output
    assert outcomes(result) == outcomes(local_matrix)
    assert len(outcomes(result)) >= 20
    run_dir = Path(result["run_dir"])
    page = (run_dir / "matrix.html").read_text("utf-8")
    assert (run_dir / "matrix.md").is_file()
    for cell in result["rounds"][0]:
        folder = Path(cell["run_dir"])
        assert folder.is_relative_to(run_dir)
        assert (folder / "report.html").is_file() and (folder / "result.json").is_file()
        assert str(folder.relative_to(run_dir) / "report.html") in page
        # The report drew the origin's side of the cell, from the agent's slice of its files.
        if cell["polls"]["reached_origin"]:
            assert (folder / "origin-events.jsonl").stat().st_size > 0
    by = {re.search(r"by (lab-agent-\d+)", line) for line in lab.stderr_lines}
    assert len({m.group(1) for m in by if m}) == 2, "both agents ran cells"


@pytest.mark.stack
@pytest.mark.timeout(600)  # two agents and a local matrix start first, on a shared machine
def test_a_bad_message_is_rejected_and_the_agent_keeps_serving(agents):
    app = celery_app(agents.url)
    try:
        sent = {
            "malformed": app.send_task(TASK_NAME, args=[message(round="one")]),
            "unknown": app.send_task(TASK_NAME, args=[message(scenario="rfc-cache")]),
            "too many": app.send_task(TASK_NAME, args=[message(), message()]),
        }
        for name, result in sent.items():
            wait_for(lambda result=result: result.state == "FAILURE", 30, f"{name} rejected")
        assert "field round='one'" in str(sent["malformed"].result)
        assert "'rfc-cache': this agent does not have it" in str(sent["unknown"].result)
        good = app.send_task(TASK_NAME, args=[message(run=f"t{time.time_ns()}", fix="nonce")])
        wait_for(lambda: good.state == "SUCCESS", 60, "a good cell after the bad ones")
        assert good.result["verdict"]["observed"] == "completed"
    finally:
        app.close()

    def rejections() -> list[str]:  # read from the agents' stderr by threads of ours: may lag
        return [
            line
            for agent in agents.agents
            for line in agent.stderr_lines
            if "rejected a cell" in line
        ]

    wait_for(lambda: len(rejections()) >= 3, 30, "three rejections in the agents' logs")
    logged = rejections()
    assert len(logged) == 3, logged
    assert any("field round='one'" in line for line in logged)
    assert any("'rfc-cache': this agent does not have it" in line for line in logged)
    assert all(agent.proc.poll() is None for agent in agents.agents)


@pytest.mark.stack
@pytest.mark.timeout(600)  # two agents and a local matrix start first, on a shared machine
def test_killing_an_agent_mid_matrix_still_judges_every_cell_once(agents, local_matrix, tmp_path):
    victim, survivor = agents.agents
    (tmp_path / "run").mkdir()
    with LabProcess(
        ["matrix", "--scenarios", SCENARIOS, "--fixes", FIXES, "--json"]
        + ["--dispatch", agents.url, "--cell-deadline", "120"],
        tmp_path / "run",
    ) as lab:
        # Killed while it holds cells (taken, not finished): the broker must hand them over.
        victim.wait_for_stderr(": running (", timeout=60)
        victim.kill()
        code, stdout = lab.finish(timeout=240)
    assert code == 0, lab.output
    result = json.loads(stdout.splitlines()[-1])
    assert outcomes(result) == outcomes(local_matrix)
    judged = [line for line in lab.stderr_lines if " cells judged: " in line]
    assert len(judged) == len(outcomes(result))  # each cell once, no run counted twice
    assert victim.proc.returncode is not None
    victim.__exit__(None)  # every process of the killed agent is gone (else it fails here)
    assert survivor.proc.poll() is None


@pytest.mark.stack
@pytest.mark.timeout(180)
def test_a_cell_whose_message_was_lost_is_sent_again(agents, tmp_path):
    """kombu takes a message off the queue before it records it as held: an agent killed in
    between loses it. Here the queue is emptied with no agent on its database; the coordinator
    finds the cell in no queue and with no agent twice in a row, and sends it again."""
    import redis

    url = agents.url.rsplit("/", 1)[0] + "/6"  # a database no agent serves
    client = redis.Redis.from_url(url)
    with LabProcess(
        ["matrix", "--scenarios", "direct", "--fixes", "none", "--dispatch", url],
        tmp_path,
        {"LAB_LOST_CELL_CHECK": "1"},  # two looks a second apart, not ten
    ) as lab:
        wait_for(lambda: client.llen("lab.cells") == 1, timeout=60, what="the cell queued")
        assert b"direct--none" in client.lindex("lab.cells", 0)
        client.delete("lab.cells")  # lost, as by an agent killed as it took it
        lab.wait_for_stderr("sent again", timeout=60)
        assert "its message is in no queue and with no agent" in lab.stderr
        wait_for(lambda: client.llen("lab.cells") == 1, timeout=10, what="the cell queued again")
        assert b"direct--none" in client.lindex("lab.cells", 0)
    client.flushdb()
