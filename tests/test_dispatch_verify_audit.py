"""`lab verify --dispatch` and `lab audit --dispatch` (issue 15): a profile's verification and a
profile's audit of a flow file the agent has are run by a `lab agent` and merged into a local
run's result; a message an agent cannot run is rejected with a one-line reason. Also an
own-stack matrix cell (redis-oom) and --evidence-dir through the dispatch."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.data.errors import EXIT_BAD_INPUT, EXIT_COMPONENT
from lab.runs.agent import Agent
from lab.runs.agent_protocol import (
    TASK_NAME,
    AuditMessage,
    Rejected,
    VerifyMessage,
    celery_app,
    parse,
)
from lab.runs.dispatch_audit import check_audit, load_flow, sha256_of
from lab.verify.dispatch import check_verify
from lab.verify.products import Product
from tests.lab_helpers import VERIFY_TIMEOUT, LabProcess, running_redis, wait_for

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FLOW = PROJECT_ROOT / "examples" / "flask_celery" / "audit.toml"
AUDIT_PROFILES = "corporate-cache,rfc"  # one that hangs the example, one it survives


def verify_body(**changes: object) -> dict:
    return {"kind": "verify", "run": "t1", "profile": "squid-default"} | changes


def audit_body(**changes: object) -> dict:
    body = {
        "kind": "audit",
        "run": "t1",
        "flow": FLOW.name,
        "sha256": sha256_of(FLOW),
        "profiles": ["rfc"],
        "strategies": ["app"],
    }
    return body | changes


# --- the messages and the agent's checks (no process) ---------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"kind": "shell", "run": "t1"}, "field kind='shell': not a message kind"),
        (verify_body(command="squid -z"), "field command='squid -z': Extra inputs"),
        (verify_body(profile="../etc"), "field profile='../etc'"),
        (audit_body(sha256="abc"), "field sha256='abc'"),
        (audit_body(app_cmd=["rm -rf /"]), "Extra inputs are not permitted"),
        (audit_body(profiles=[]), "field profiles=[]"),
    ],
)
def test_a_malformed_verify_or_audit_message_is_rejected_in_one_line(body, reason):
    with pytest.raises(Rejected) as caught:
        parse(body)
    assert reason in str(caught.value)
    assert "\n" not in str(caught.value)


def test_messages_of_each_kind_parse_and_a_message_without_kind_is_a_cell():
    assert isinstance(parse(verify_body(suite=True)), VerifyMessage)
    assert isinstance(parse(audit_body()), AuditMessage)
    cell = parse({"run": "t1", "scenario": "direct", "fix": "none", "round": 1, "attempt": 1})
    assert cell.kind == "cell"
    assert parse(verify_body()).cell_id == "t1/verify/squid-default"


@pytest.mark.parametrize(
    ("profile", "reason"),
    [
        ("no-such-profile", "profile 'no-such-profile': this agent does not have it"),
        ("rfc", "profile 'rfc': profile 'rfc' has no [real] table"),
    ],
)
def test_an_agent_rejects_a_verification_of_a_profile_it_cannot_run(profile, reason):
    with pytest.raises(Rejected, match=re.escape(reason)):
        check_verify(parse(verify_body(profile=profile)))


def test_an_agent_rejects_a_verification_whose_product_is_not_installed_here(monkeypatch):
    check_verify(parse(verify_body()))  # squid is installed on this machine
    monkeypatch.setattr(Product, "installed", property(lambda _self: False))
    with pytest.raises(Rejected) as caught:
        check_verify(parse(verify_body()))
    assert "profile 'squid-default': squid: /usr/sbin/squid is not installed" in str(caught.value)
    assert "apt-get install -y squid" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_agent_audits_only_the_exact_flow_files_it_has(tmp_path):
    have = [load_flow(FLOW)]
    assert check_audit(parse(audit_body()), have).name == "flask-celery"
    for body, reason in [
        (audit_body(sha256="0" * 64), "sha256 000000000000... is not this agent's"),
        (audit_body(flow="other.toml"), "flow 'other.toml': this agent does not have it"),
        (audit_body(profiles=["rfc", "nope"]), "profile 'nope': this agent does not have it"),
        (audit_body(strategies=["app", "telepathy"]), "client strategy 'telepathy'"),
    ]:
        with pytest.raises(Rejected, match=re.escape(reason)):
            check_audit(parse(body), have)
    with pytest.raises(Rejected, match=re.escape("it has none (lab agent --flow)")):
        check_audit(parse(audit_body()), [])


def test_an_agent_rejects_a_kind_it_does_not_serve(tmp_path):
    agent = Agent([], [], tmp_path, serves=frozenset({"verify"}))
    cell = {"run": "t1", "scenario": "direct", "fix": "none", "round": 1, "attempt": 1}
    for body, kind in [(cell, "cell"), (audit_body(), "audit")]:
        with pytest.raises(Rejected, match=f"kind '{kind}': this agent does not serve it"):
            agent.handle(body)


@pytest.mark.parametrize(
    ("args", "error", "code"),
    [
        (
            ["audit", "--dispatch", "redis://127.0.0.1:1/0", "--app-url", "http://127.0.0.1:1"],
            "--dispatch needs a FLOW_FILE",
            EXIT_BAD_INPUT,
        ),
        (
            ["audit", str(FLOW), "--dispatch", "redis://127.0.0.1:1/0", "--hang-window", "2"],
            "--dispatch and --hang-window",
            EXIT_BAD_INPUT,
        ),
        (["verify", "squid-default", "--cell-deadline", "9"], "go with --dispatch", EXIT_BAD_INPUT),
        (["agent", "redis://127.0.0.1:1/0", "--serve", "audit"], "--flow", EXIT_BAD_INPUT),
        (
            ["verify", "squid-default", "--dispatch", "redis://127.0.0.1:1/0"],
            "dispatch broker: redis://127.0.0.1:1/0",
            EXIT_COMPONENT,
        ),
        (
            ["audit", str(FLOW), "--profiles", "rfc", "--dispatch", "redis://127.0.0.1:1/0"],
            "dispatch broker: redis://127.0.0.1:1/0",
            EXIT_COMPONENT,
        ),
    ],
)
def test_bad_dispatch_options_and_an_unreachable_broker(tmp_path, args, error, code):
    with LabProcess(args, tmp_path) as lab:
        exit_code, _ = lab.finish()
    assert exit_code == code, lab.output
    errors = [line for line in lab.stderr_lines if line.startswith("error:")]
    assert len(errors) == 1 and error in errors[0], lab.stderr


# --- one agent on a Redis of the test's own -------------------------------------------------


@dataclass
class OneAgent:
    url: str
    agent: LabProcess


@pytest.fixture(scope="module")
def one_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OneAgent]:
    folder = tmp_path_factory.mktemp("agent")
    with running_redis() as base:
        url = f"{base}/4"
        agent = LabProcess(
            ["agent", url, "--scenarios", "redis-oom", "--fixes", "none", "--flow", str(FLOW)]
            + ["--concurrency", "4"],
            folder,
        )
        with agent:
            agent.wait_for_stderr("agent ready", timeout=120)
            yield OneAgent(url, agent)


def run_lab(folder: Path, *args: str, timeout: float = 300) -> tuple[int, dict, LabProcess]:
    folder.mkdir(parents=True)
    with LabProcess([*args, "--json"], folder) as lab:
        code, stdout = lab.finish(timeout=timeout)
    return code, json.loads(stdout.splitlines()[-1]), lab


def comparisons(verify_json: dict) -> dict[tuple[str, str, str], tuple[str, str]]:
    return {
        (p["profile"], c["scenario"], c["fix"]): (c["real"], c["simulated"])
        for p in verify_json["profiles"]
        for c in p["comparisons"]
    }


@pytest.mark.stack
# The session's `lab verify --all` (its set-up counts here when this test is the first to need
# it), then a real Squid's verification through the agent, on a shared machine.
@pytest.mark.timeout(VERIFY_TIMEOUT + 600)
def test_verify_through_an_agent_gives_the_local_comparisons(verified, one_agent, tmp_path):
    # The local side: squid-default's part of the session's `lab verify --all`, which runs
    # every product as `lab verify squid-default` runs that one.
    (local_profile,) = [p for p in verified["profiles"] if p["profile"] == "squid-default"]
    local = {"profiles": [local_profile]}
    agreed = 0 < local_profile["agreeing"] == local_profile["cells"]
    code = 0 if agreed else 1  # as lab verify's exit code says (VerifyResult.ok)
    code_d, sent, lab_d = run_lab(
        tmp_path / "dispatched", "verify", "squid-default", "--dispatch", one_agent.url
    )
    assert code_d == code, lab_d.output
    ours, theirs = comparisons(local), comparisons(sent)
    assert list(theirs) == list(ours)  # the same cells, in the local order
    judged = [cell for cell, pair in ours.items() if "not judged" not in (*pair, *theirs[cell])]
    assert len(judged) >= len(ours) - 2, (ours, theirs)  # a loaded machine may skip a cell
    assert {cell: theirs[cell] for cell in judged} == {cell: ours[cell] for cell in judged}
    assert sent["profiles"][0]["version"] == local["profiles"][0]["version"]
    run_dir = Path(sent["run_dir"])
    assert json.loads((run_dir / "verify.json").read_text("utf-8"))["ok"] == sent["ok"]
    for side in ("real", "simulated"):  # each side's matrix where a local run has it
        matrix = json.loads((run_dir / side / "matrix.json").read_text("utf-8"))
        for cell in matrix["rounds"][0]:
            assert Path(cell["run_dir"]).is_relative_to(run_dir / side)
            assert (Path(cell["run_dir"]) / "result.json").is_file()
    assert "verify squid-default: running" not in lab_d.stderr  # the agent ran it, not we
    one_agent.agent.wait_for_stderr("squid-default: running", timeout=30)


def verdict_table(audit_json: dict) -> dict[tuple[str, str], str]:
    return {(c["profile"], c["strategy"]): c["outcome"] for c in audit_json["cells"]}


@pytest.mark.stack
@pytest.mark.timeout(600)
def test_audit_through_an_agent_with_the_flow_gives_the_local_verdicts(one_agent, tmp_path):
    args = ["audit", str(FLOW), "--profiles", AUDIT_PROFILES]
    code, local, lab = run_lab(tmp_path / "local", *args)
    code_d, sent, lab_d = run_lab(tmp_path / "dispatched", *args, "--dispatch", one_agent.url)
    assert code_d == code == 1, lab_d.output  # the example as it ships hangs behind one
    assert verdict_table(sent) == verdict_table(local)
    assert list(verdict_table(sent)) == [("corporate-cache", "app"), ("rfc", "app")]
    assert sent["headline"] == local["headline"]
    assert sent["recommendation"] == local["recommendation"]
    assert sent["status_answer"]["freshness"] == local["status_answer"]["freshness"]
    run_dir = Path(sent["run_dir"])
    page = (run_dir / "audit.html").read_text("utf-8")
    for cell in sent["cells"]:
        folder = Path(cell["verdict"]["run_dir"])
        assert folder == run_dir / "cells" / f"{cell['profile']}--{cell['strategy']}"
        assert (folder / "report.html").is_file() and (folder / "result.json").is_file()
        assert f"cells/{folder.name}/report.html" in page


@pytest.mark.stack
@pytest.mark.timeout(600)
def test_an_agent_rejects_an_audit_of_another_version_of_its_flow(one_agent, tmp_path):
    changed = tmp_path / "copy" / FLOW.name
    changed.parent.mkdir()
    shutil.copy(FLOW, changed)
    with changed.open("a", encoding="utf-8") as extra:
        extra.write("# changed\n")
    app = celery_app(one_agent.url)
    try:
        body = audit_body(run="t-changed", sha256=sha256_of(changed))
        sent = app.send_task(TASK_NAME, args=[body])
        wait_for(lambda: sent.state == "FAILURE", 60, "the audit message rejected")
        assert f"flow '{FLOW.name}': sha256 {sha256_of(changed)[:12]}..." in str(sent.result)
        assert "is not this agent's" in str(sent.result)
    finally:
        app.close()
    # The agent logs before Celery stores the failure, but its stderr is read by a thread of
    # ours: the line may come a moment after the state.
    one_agent.agent.wait_for_match(
        r"(rejected a cell message: .*is not this agent's)", timeout=30, stderr_only=True
    )
    assert one_agent.agent.proc.poll() is None  # it keeps serving


@pytest.mark.stack
@pytest.mark.timeout(600)
def test_an_own_stack_cell_and_evidence_dir_through_the_dispatch(one_agent, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    code, result, lab = run_lab(
        tmp_path / "run",
        "matrix",
        "--scenarios",
        "redis-oom",
        "--fixes",
        "none",
        "--dispatch",
        one_agent.url,
        "--evidence-dir",
        str(shared),
    )
    assert code == 0, lab.output
    (cell,) = result["rounds"][0]
    assert (cell["scenario"], cell["observed"]) == ("redis-oom", cell["expected"])
    run_dir = Path(result["run_dir"])
    folder = Path(cell["run_dir"])
    assert folder == run_dir / "round-1" / "redis-oom--none"
    assert (folder / "report.html").is_file() and (folder / "result.json").is_file()
    assert json.loads((folder / "result.json").read_text("utf-8"))["run_dir"] == str(folder)
    assert "redis-oom--none/report.html" in (run_dir / "matrix.html").read_text("utf-8")
    assert list(shared.iterdir()) == []  # moved into the run folder, nothing left behind


def test_a_suite_comparison_comes_back_whole_from_its_json():
    from lab.verify import cache_tests
    from lab.verify.dispatch import _suite
    from lab.verify.suite import SuiteAgreement

    def results(*outcomes: str) -> cache_tests.SuiteResults:
        tests = tuple(
            cache_tests.TestResult(f"t{n}", "s", f"test {n}", "required", outcome, None)
            for n, outcome in enumerate(outcomes)
        )
        return cache_tests.SuiteResults("http://127.0.0.1:1", "0.4.5", tests, 61.0)

    agreement = SuiteAgreement(
        "squid-default", "Squid 5.7", results("pass", "fail"), results("pass", "pass")
    )
    back = _suite(json.loads(json.dumps(agreement.to_json(tests=True))))
    assert back.summary() == agreement.summary()
    assert back.to_json(tests=True) == agreement.to_json(tests=True)
