"""Bad input to the CLI: exit 2, one `error:` line, nothing started. Runs `python -m lab`."""

import json
import os
import subprocess
import sys

from lab.data import scenarios

MISSING_PROXY = """\
name = "no-proxy"
summary = "Forgot the proxy."
situation = "x"

[expected]
others = "completed"
"""


def lab(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAB_")}
    env["LAB_RUNS_DIR"] = str(tmp_path / "runs")
    return subprocess.run(
        [sys.executable, "-m", "lab", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_bad_input(tmp_path, result, *named: str) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for text in named:
        assert text in lines[0]
    assert not (tmp_path / "runs").exists()


def test_unknown_scenario(tmp_path):
    result = lab(tmp_path, "repro", "nosuch")
    assert_bad_input(tmp_path, result, "unknown scenario", "'nosuch'")


def test_unknown_fix(tmp_path):
    result = lab(tmp_path, "repro", "proxy-cache", "--fix", "nosuch")
    assert_bad_input(tmp_path, result, "unknown fix", "'nosuch'")


def test_scenario_file_with_syntax_error(tmp_path):
    (tmp_path / "broken.toml").write_text('name = "broken"\nsummary =\n', "utf-8")
    result = lab(tmp_path, "repro", "broken.toml")
    assert_bad_input(tmp_path, result, "broken.toml", "syntax")


def test_scenario_file_missing_a_field(tmp_path):
    (tmp_path / "no-proxy.toml").write_text(MISSING_PROXY, "utf-8")
    result = lab(tmp_path, "repro", "no-proxy.toml")
    assert_bad_input(tmp_path, result, "no-proxy.toml", "field 'proxy'")


def test_json_error_is_one_object_on_stdout(tmp_path):
    result = lab(tmp_path, "repro", "nosuch", "--json")
    assert result.returncode == 2
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    body = json.loads(lines[0])
    assert "nosuch" in body["error"]
    assert body["exit_code"] == 2
    assert not (tmp_path / "runs").exists()


def test_error_text_is_printed_verbatim(tmp_path):
    result = lab(tmp_path, "repro", "[red]nosuch")
    assert_bad_input(tmp_path, result, "'[red]nosuch'")


def test_list_prints_one_line_per_scenario(tmp_path):
    result = lab(tmp_path, "list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == scenarios.names()
