"""`lab verify` with the real products (issue 13 item 1): every profile with a `[real]` table
agrees with its product on every cell, so a change to a misbehaviour that breaks fidelity fails
here. One `lab verify --all` (the session's `verified`, tests/conftest.py) serves every profile's
test (products added later are covered: the tests are parametrized over the profiles that have
a [real] table)."""

from __future__ import annotations

import re
import shutil
import signal
import socket
from pathlib import Path

import pytest

from lab.runs.lifecycle import new_supervisor
from lab.stacks.ports import free_port
from lab.verify import real
from lab.verify.real import RealSetup, real_profiles
from tests.lab_helpers import PROJECT_ROOT, VERIFY_TIMEOUT, LabProcess, component


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
        # The filled template, named as the template is (squid.conf, haproxy.cfg, ...), in the
        # run folder or, when the profiles need apps of more than one kind, in its group's.
        (config,) = run_dir.rglob(f"{profile}/{RealSetup.of(profile).template.name}")
        # The product ran in a temp folder its own user could reach; moved here once stopped.
        (temp,) = set(
            re.findall(
                r"/[^\s\"]*lab-verify-" + re.escape(profile) + r"-[^/\s;\"]+", config.read_text()
            )
        )
        assert not Path(temp).exists()
        assert (config.parent.parent / f"{profile}.log").exists()


@pytest.mark.stack
def test_ctrl_c_stops_the_products(tmp_path):
    with LabProcess(["verify", "squid-default"], tmp_path) as lab:
        lab.wait_for_stderr("cells through the real products")
        squid = component(lab.token, "squid-default")
        assert squid is not None and squid.is_running()
        lab.proc.send_signal(signal.SIGINT)
        code, _ = lab.finish()
    assert code == 130, lab.stderr
    assert "every process of the verification was stopped" in lab.stderr
    # LabProcess checked on the way out that no process of the run is left.


@pytest.mark.stack
def test_a_profile_that_no_longer_imitates_its_product_fails_naming_the_cells(tmp_path):
    """A change that breaks fidelity: nginx-cache-valid without its proxy_cache_valid rule
    (the heuristic-ttl misbehaviour) no longer caches the header-less status answer."""
    shutil.copytree(PROJECT_ROOT / "proxies" / "profiles", tmp_path / "profiles")
    shutil.copytree(PROJECT_ROOT / "proxies" / "real", tmp_path / "real")
    profile = tmp_path / "profiles" / "nginx-cache-valid.toml"
    text = profile.read_text("utf-8")
    rule = '[[misbehaviours]]\nname = "heuristic-ttl"\nttl = 60\nstatuses = [200]\n'
    assert rule in text
    profile.write_text(text.replace(rule, ""), "utf-8")
    env = {"LAB_PROFILES_DIR": str(tmp_path / "profiles")}
    with LabProcess(["verify", "nginx-cache-valid"], tmp_path, env) as lab:
        code, stdout = lab.finish(timeout=VERIFY_TIMEOUT)
    assert code == 1, lab.output
    assert (
        "mismatch: nginx-cache-valid fix=none (profile nginx-cache-valid): real hung, "
        "simulated completed"
    ) in stdout
    assert re.search(
        r"nginx-cache-valid \(nginx version: nginx/[\d.]+, reverse\): \d+ of 17", stdout
    )
    assert "cells differ" in stdout.splitlines()[-1]


@pytest.mark.stack
def test_a_lab_killed_with_sigkill_takes_its_squid_along(tmp_path):
    """Squid drops to the user proxy, which clears the kernel's parent-death signal: the
    leash (lab/stacks/leash.py) keeps it."""
    with LabProcess(["verify", "squid-default"], tmp_path) as lab:
        lab.wait_for_stderr("cells through the real products")
        squid = component(lab.token, "squid-default")
        assert squid is not None
        assert any(child.username() == "proxy" for child in squid.children()) or (
            squid.username() != "root"
        )
        temp = Path(next(arg for arg in squid.cmdline() if arg.endswith(".conf"))).parent
        assert temp.is_dir()
        # Leaving the block kills the lab with SIGKILL, then checks that no process of its
        # run is left within 15 s (Squid takes about 3 s to stop).
    # The leash moved Squid's files into the run folder as it stopped.
    assert not temp.exists()
    (kept,) = (tmp_path / "runs").glob("*-verify/squid-default/cache.log")
    assert "Squid Cache" in kept.read_text()


@pytest.mark.stack
@pytest.mark.parametrize("listening", [False, True], ids=["bound", "listening"])
def test_a_product_whose_port_another_program_took_is_started_again_on_another(
    tmp_path, monkeypatch, listening
):
    """Seen in full runs: `lab verify --all` failed with "nginx-ignore-query: exited with code 1"
    (bind(): Address already in use): another lab on the machine took the port the product had
    been given before it bound it. And where that lab listened there, nginx, retrying its bind
    for 2.5 s, was taken for ready, and every cell of nginx-default errored."""
    setup = real.RealSetup.of("nginx-default")
    setup.check_installed()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        if listening:
            taken.listen()
        given = iter([taken.getsockname()[1]])
        monkeypatch.setattr(real, "free_port", lambda: next(given, None) or free_port())
        sup = new_supervisor(tmp_path)
        folder = real.ProductFolder(tmp_path, "nginx-default")
        try:
            running = real.launch(sup, setup, free_port(), folder)()
            assert running.url != f"http://127.0.0.1:{taken.getsockname()[1]}"
            assert running.component.alive()
            assert "Address already in use" in running.component.log_path.read_text()
        finally:
            sup.stop_all()
            folder.keep()
    assert [c.name for c in sup.components] == ["nginx-default"]  # the first one removed
    assert (tmp_path / "nginx-default" / "nginx-default.conf").is_file()
