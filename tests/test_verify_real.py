"""`lab verify` with the real products (issue 13 item 1): every profile with a `[real]` table
agrees with its product on every cell, so a change to a misbehaviour that breaks fidelity fails
here. One `lab verify --all` serves every profile's test (products added later are covered:
the tests are parametrized over the profiles that have a [real] table)."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import pytest

from lab.verify.real import real_profiles
from tests.lab_helpers import LabProcess, component

# Every product at once, then the simulation: about 30 s for the first seven profiles here.
VERIFY_TIMEOUT = 600


@pytest.fixture(scope="module")
def verified(tmp_path_factory: pytest.TempPathFactory) -> dict:
    # pytest's own temp folders are 0700: the products' users (proxy, www-data) cannot reach
    # them, which is what ProductFolder is for.
    cwd = tmp_path_factory.mktemp("verify")
    with LabProcess(["verify", "--all", "--json"], cwd) as lab:
        code, stdout = lab.finish(timeout=VERIFY_TIMEOUT)
    result = json.loads(stdout)
    result["exit_code"] = code
    return result


@pytest.mark.stack
@pytest.mark.timeout(VERIFY_TIMEOUT + 60)
@pytest.mark.parametrize("profile", real_profiles())
def test_the_real_product_agrees_with_its_profile_on_every_cell(verified, profile):
    (found,) = [p for p in verified["profiles"] if p["profile"] == profile]
    differing = [
        f"{c['scenario']} fix={c['fix']}: real {c['real']}, simulated {c['simulated']}"
        for c in found["comparisons"]
        if not c["agree"]
    ]
    assert not differing, f"{profile} ({found['version']}): {differing}"
    assert found["agreeing"] == found["cells"] >= 15


@pytest.mark.stack
@pytest.mark.timeout(VERIFY_TIMEOUT + 60)
def test_the_run_keeps_each_products_files_and_leaves_no_temp_folder(verified):
    assert verified["exit_code"] == 0 and verified["ok"]
    run_dir = Path(verified["run_dir"])
    for profile in real_profiles():
        config = next((run_dir / profile).glob("*.conf"))
        # The product ran in a temp folder its own user could reach; moved here once stopped.
        (temp,) = set(
            re.findall(r"/\S*lab-verify-" + re.escape(profile) + r"-[^/\s;]+", config.read_text())
        )
        assert not Path(temp).exists()
        assert (run_dir / f"{profile}.log").exists()


@pytest.mark.stack
def test_ctrl_c_stops_the_products(tmp_path):
    with LabProcess(["verify", "squid-default"], tmp_path) as lab:
        lab.wait_for_stderr("cells through the real products")
        squid = component(lab.token, "squid-default")
        assert squid is not None and squid.is_running()
        lab.proc.send_signal(signal.SIGINT)
        code, _ = lab.finish()
    assert code == 130
    assert "every process of the verification was stopped" in lab.stderr
    # LabProcess checked on the way out that no process of the run is left.
