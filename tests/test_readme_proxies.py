"""The README's real-proxy examples, run as pasted (issue 13 item 3): nginx as a reverse proxy
with the nginx-cache-valid configuration and Squid as a forward proxy with its stock
refresh_pattern lines each give, for every fix, the outcome the scenario file expects, which
is the simulated profile's table (the matrix tests hold the profile to it, and lab verify the
profile to the product). Only the ports and the folder are changed, so that the test cannot
collide with anything on the machine."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from lab.data import fixes, scenarios
from tests.lab_helpers import PROJECT_ROOT, free_loopback_port

README = PROJECT_ROOT / "README.md"
EXAMPLE_TIMEOUT = 300


def example(name: str) -> str:
    """The shell block after `<!-- example: NAME -->` in the README."""
    found = re.search(
        rf"<!-- example: {re.escape(name)} -->\n```sh\n(.*?)\n```", README.read_text("utf-8"), re.S
    )
    assert found, f"README.md has no example {name!r}"
    return found.group(1)


@pytest.mark.stack
@pytest.mark.timeout(EXAMPLE_TIMEOUT + 30)
@pytest.mark.parametrize(
    ("name", "scenario", "folder", "ports"),
    [
        ("nginx-reverse", "nginx-cache-valid", "/tmp/lab-nginx", ["8080", "5000"]),
        ("squid-forward", "squid-default", "/tmp/lab-squid", ["3128"]),
    ],
)
def test_the_readme_example_gives_the_profiles_table(tmp_path, name, scenario, folder, ports):
    script = example(name)
    for port in ports:
        assert port in script
        script = re.sub(rf"\b{port}\b", str(free_loopback_port()), script)
    # The products drop to their own users: the folder must be reachable by them (not 0700).
    here = tempfile.mkdtemp(prefix="lab-readme-")
    os.chmod(here, 0o755)
    script = script.replace(folder, f"{here}/proxy")
    lab_lines = [line for line in script.splitlines() if line.startswith("lab matrix ")]
    assert len(lab_lines) == 1
    script = script.replace(lab_lines[0], lab_lines[0] + " --json")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:/usr/sbin:/usr/bin:/sbin:/bin",
        "LAB_RUNS_DIR": str(tmp_path / "runs"),
    }
    shell = subprocess.Popen(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the proxy started with & is in it: stopped with it
    )
    try:
        stdout, stderr = shell.communicate(timeout=EXAMPLE_TIMEOUT)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGKILL)
        shell.wait()
        shutil.rmtree(here, ignore_errors=True)
    results = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    assert len(results) == 1, f"no matrix JSON; stderr:\n{stderr}"
    verdicts = results[0]["rounds"][-1]
    loaded = scenarios.load(scenario)
    assert sorted(v["fix"] for v in verdicts) == sorted(
        f for f in fixes.names() if loaded.applies(f)
    )
    assert all(v["proxy"].startswith("external proxy http://127.0.0.1:") for v in verdicts)
    table = {v["fix"]: v["observed"] for v in verdicts}
    expected = {v["fix"]: loaded.expected_for(v["fix"]).value for v in verdicts}
    assert table == expected
