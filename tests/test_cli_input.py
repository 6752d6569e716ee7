"""Bad input to the CLI: exit 2, one `error:` line, nothing started. Runs `python -m lab`."""

import contextlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest
from click.testing import CliRunner

from lab.cli import main
from lab.data import fixes, scenarios, settings

MISSING_PROXY = """\
name = "no-proxy"
summary = "Forgot the proxy."
situation = "x"

[expected]
others = "completed"
"""


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def lab(tmp_path, *args: str, **lab_env: str) -> Ran:
    """`lab ARGS` run in this process by click's test runner, from `tmp_path`, with only the
    LAB_* variables given: what a user sees on stdout and stderr and the exit code, without a
    Python start-up (about 0.7 s) per call. Tests that start real processes use
    `lab_process`, and test_the_lab_command_as_a_process checks the real entry point."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("LAB_")}
    env["LAB_RUNS_DIR"] = str(tmp_path / "runs")
    env.update(lab_env)
    settings.current.cache_clear()  # the variables are read once per process: read these
    try:
        with contextlib.chdir(tmp_path):
            result = CliRunner().invoke(main, list(args), env=env, prog_name="lab")
    finally:
        settings.current.cache_clear()
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback is a bug of the lab: show it as one
    return Ran(result.exit_code, result.stdout, result.stderr)


def lab_process(tmp_path, *args: str, **lab_env: str) -> subprocess.CompletedProcess:
    """`python -m lab ARGS` as a user runs it, in its own process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAB_")}
    env["LAB_RUNS_DIR"] = str(tmp_path / "runs")
    env.update(lab_env)
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


def test_the_lab_command_as_a_process(tmp_path):
    """The real entry point, `python -m lab`: bad input is exit 2 and one line, in both forms."""
    assert_bad_input(tmp_path, lab_process(tmp_path, "repro", "nosuch"), "unknown scenario")
    result = lab_process(tmp_path, "repro", "nosuch", "--json")
    assert result.returncode == 2 and json.loads(result.stdout)["exit_code"] == 2


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


def test_list_with_no_scenario_files_is_bad_input(tmp_path):
    result = lab(tmp_path, "list", LAB_SCENARIOS_DIR=str(tmp_path / "nowhere"))
    assert_bad_input(tmp_path, result, "no scenario files in", "nowhere")


# -- LAB_* variables: checked before anything starts ------------------------------------------
@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("LAB_START_TIMEOUT=abc", "valid number"),
        ("LAB_START_TIMEOUT=0", "greater than 0"),
        ("LAB_BROWSER_OPENING=0", "greater than 0"),
        ("LAB_BROWSER_OPENING=two", "valid integer"),
        ("LAB_RABBITMQ_URL=http://127.0.0.1:5672/", "starts with amqp://"),
    ],
)
def test_a_bad_variable_is_named_and_nothing_starts(tmp_path, setting, says):
    variable, value = setting.split("=", 1)
    result = lab(tmp_path, "repro", "proxy-cache", **{variable: value})
    assert_bad_input(tmp_path, result, f"{variable}={value!r}", says)


def test_help_reads_neither_variables_nor_data_folders(tmp_path):
    bad = {"LAB_START_TIMEOUT": "abc", "LAB_SCENARIOS_DIR": str(tmp_path / "nowhere")}
    for args in (["--help"], ["repro", "--help"], ["matrix", "--help"]):
        result = lab(tmp_path, *args, **bad)
        assert result.returncode == 0, result.stderr
        assert "Usage: " in result.stdout


def test_a_bad_variable_with_json_is_one_object_on_stdout(tmp_path):
    result = lab(tmp_path, "matrix", "--json", LAB_START_TIMEOUT="soon")
    assert result.returncode == 2
    body = json.loads(result.stdout)
    assert body["exit_code"] == 2 and "LAB_START_TIMEOUT='soon'" in body["error"]
    assert not (tmp_path / "runs").exists()


def test_a_password_in_a_bad_url_is_not_printed(tmp_path):
    result = lab(tmp_path, "list", LAB_RABBITMQ_URL="http://lab:secret@127.0.0.1/")
    assert_bad_input(tmp_path, result, "LAB_RABBITMQ_URL='http://lab:***@127.0.0.1/'")
    assert "secret" not in result.stderr


# -- shell completion: what click answers the shell's completion script -----------------------
def complete(*words: str) -> list[str]:
    """The values `lab` offers for the last of `words`, as bash's completion asks for them."""
    env = {
        "_LAB_COMPLETE": "bash_complete",
        "COMP_WORDS": " ".join(["lab", *words]),
        "COMP_CWORD": str(len(words)),
    }
    result = CliRunner().invoke(main, [], prog_name="lab", env=env)
    assert result.exit_code == 0, result.output
    return [line.split(",", 1)[1] for line in result.output.splitlines() if line]


def test_completes_scenario_names():
    assert complete("repro", "") == scenarios.names()
    assert complete("repro", "proxy-c") == ["proxy-cache"]
    assert complete("up", "proxy-c") == ["proxy-cache"]


def test_completes_a_scenario_file_when_no_name_matches():
    assert complete("repro", "cases/my-") == ["cases/my-"]  # type "file": the shell lists files


def test_completes_fix_names():
    assert complete("repro", "proxy-cache", "--fix", "") == fixes.names()
    assert set(complete("repro", "proxy-cache", "--fix", "no")) == {
        name for name in fixes.names() if name.startswith("no")
    }
    assert "nonce" in complete("up", "proxy-cache", "--fix", "no")


def test_completes_the_next_name_of_a_list():
    assert complete("matrix", "--scenarios", "proxy-cache,proxy-c") == []  # given already
    offered = complete("matrix", "--fixes", "none,")
    assert offered == [f"none,{name}" for name in fixes.names() if name != "none"]
    assert complete("matrix", "--brokers", "sqlite,r") == ["sqlite,redis", "sqlite,rabbitmq"]


def test_completion_with_a_bad_data_folder_offers_no_name(lab_env, tmp_path):
    lab_env("LAB_SCENARIOS_DIR", str(tmp_path / "nowhere"))
    assert complete("matrix", "--scenarios", "proxy") == []


def test_an_ipv6_host_for_up_is_bad_input_and_nothing_starts(tmp_path):
    result = lab(tmp_path, "up", "proxy-cache", "--host", "::")
    assert_bad_input(tmp_path, result, "--host '::' is an IPv6 address", "IPv4 only")
