"""The fork server (lab.stacks.forkserver): a forked child is what `python -m` would have been,
and the Supervisor watches and stops it as it does a child of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lab.data import settings
from lab.data.errors import ComponentError
from lab.stacks import fork_jobs, fork_sharing, forkserver, processes
from lab.stacks.forkserver import ForkedProcess, ForkServer
from lab.stacks.processes import Supervisor
from tests.lab_helpers import TOKEN_VAR, processes_with_token, wait_for

CHILD = "tests.forked_child"
BESIDE_PYTHON = Path(sys.executable).parent


@pytest.mark.parametrize(
    ("argv", "runs"),
    [
        (
            [sys.executable, "-m", "sample_app.worker", "--config", "c.json"],
            ("app", "sample_app.worker", ["--config", "c.json"]),
        ),
        (
            [str(BESIDE_PYTHON / "lab-mitmdump"), "-p", "0"],
            ("proxy", "proxies.lab_mitmdump", ["-p", "0"]),
        ),
        (["/usr/local/bin/lab-mitmdump", "-p", "0"], None),  # not this package's
        ([str(BESIDE_PYTHON / "mitmdump"), "-p", "0"], None),  # mitmproxy's own: LAB_MITMDUMP
        ([sys.executable, "-m", "lab", "repro"], None),
        (["/usr/sbin/squid", "-N"], None),
    ],
)
def test_what_a_fork_server_runs(argv, runs):
    found = fork_jobs.forkable(argv)
    assert (found and (found.family.name, found.module, found.argv[1:])) == runs


@pytest.fixture
def sup(tmp_path, monkeypatch):
    # The test child is forked like the sample app's modules.
    family = fork_jobs.Family("test", modules=(CHILD,), preload=(CHILD,))
    monkeypatch.setattr(fork_jobs, "FAMILIES", (family,))
    # Each test here sees its server start and stop, whatever the session keeps or hands down
    # (conftest).
    monkeypatch.setattr(fork_sharing.shared, "keep_idle", False)
    monkeypatch.delenv(fork_sharing.HANDED_DOWN, raising=False)
    supervisor = Supervisor("test-forkserver", tmp_path)
    yield supervisor
    supervisor.stop_all()


def child(sup: Supervisor, name: str, *args: str) -> processes.Component:
    argv = [sys.executable, "-m", CHILD, *args]
    return sup.add(name, argv, extra_env={"FORKED_CHILD_VALUE": "42"})


def staying(component: processes.Component) -> bool:
    log = component.log_path
    return log.exists() and "staying" in log.read_text()


@pytest.mark.stack
def test_a_forked_child_runs_its_module_as_python_m_would(sup, tmp_path):
    here = tmp_path / "here"
    here.mkdir()

    def server_process(argv: list[str], pass_fds: tuple[int, ...]) -> processes.Component:
        log = tmp_path / "forkserver.log"
        return processes.Component("forkserver", argv, log, dict(os.environ), pass_fds=pass_fds)

    stop = lambda c: Supervisor.stop_components([c])  # noqa: E731
    server = ForkServer.start("test", server_process, stop, (CHILD,))
    try:
        env = {**os.environ, "FORKED_CHILD_VALUE": "42"}
        log = tmp_path / "child.log"
        job = fork_jobs.forkable([sys.executable, "-m", CHILD, "exit", "3"])
        forked = server.spawn("app-query", job, env, here, log, signal.SIGTERM, timeout=30)
        assert forked.wait(timeout=30) == 3
        # Every poller sees the exit, a thread that looks after another as well (a run's
        # liveness check and its stop look at one child at once).
        assert server.exit_code(forked) == server.exit_code(forked) == 3
        said = log.read_text()
        assert f"name=__main__ args=['exit', '3'] cwd={here} value=42 comm=app-query" in said
        assert forked.poll() == 3
    finally:
        server.stop()
    assert server.component.proc.poll() is not None


@pytest.mark.stack
@pytest.mark.parametrize(
    ("mode", "code", "in_log"),
    [
        ("raise", 1, "RuntimeError: raised in the child"),
        ("message", 1, "a message for stderr"),
        ("exit", 0, "args=['exit', '0']"),
    ],
)
def test_a_forked_childs_exit_is_reported_as_an_interpreters_would_be(sup, mode, code, in_log):
    component = child(sup, "app", mode, "0")
    assert isinstance(component.proc, ForkedProcess)
    assert component.proc.wait(timeout=30) == code
    assert in_log in component.log_path.read_text()
    if code:
        with pytest.raises(ComponentError, match=f"app: exited with code {code} during the test"):
            sup.check_all_alive("during the test")


@pytest.mark.stack
def test_a_forked_child_is_signalled_and_stopped_as_the_supervisors_own(sup):
    stays = child(sup, "child", "stay")  # the default grace: SIGTERM ends it
    wait_for(lambda: staying(stays), 30, "the child to start")
    assert stays.alive() and os.getpgid(stays.pid) == stays.pid  # a session of its own
    server = stays.proc.server.component
    assert server.alive() and server.name == "forkserver-test"
    sup.stop_all()
    assert stays.proc.poll() == -signal.SIGTERM  # stopped first, while the server reported it
    assert server.proc.poll() is not None  # then the server: no other run used it


@pytest.mark.stack
def test_the_children_of_a_fork_server_that_died_die_too_and_are_seen_gone(sup):
    stays = child(sup, "worker", "stay")  # a worker's death signal: SIGKILL
    wait_for(lambda: staying(stays), 30, "the child to start")
    stays.proc.server.component.signal_group(signal.SIGKILL)
    assert stays.proc.wait(timeout=30) == -signal.SIGKILL
    with pytest.raises(
        ComponentError, match="worker: exited with code -9 during the test .its fork server exited"
    ):
        sup.check_all_alive("during the test")


@pytest.mark.stack
def test_without_the_fork_server_each_child_is_a_new_interpreter(sup, monkeypatch):
    monkeypatch.setenv("LAB_FORKSERVER", "0")
    settings.current.cache_clear()
    component = child(sup, "app", "exit", "0")
    assert not isinstance(component.proc, ForkedProcess)
    assert component.proc.wait(timeout=30) == 0
    assert "comm=python" in component.log_path.read_text()
    assert [c.name for c in sup.components] == ["app"]


@pytest.mark.stack
def test_the_fork_server_outlives_the_thread_that_needed_it_first(sup):
    """A child's death signal comes when the *thread* that started it ends: a server started
    by a cell's thread must not die with that thread, nor its children with it."""
    import threading

    started: list[processes.Component] = []
    thread = threading.Thread(target=lambda: started.append(child(sup, "child", "stay")))
    thread.start()
    thread.join()
    wait_for(lambda: staying(started[0]), 30, "the child to start")
    later = child(sup, "child-2", "exit", "0")  # the server still forks, after that thread
    assert later.proc.wait(timeout=30) == 0
    assert started[0].alive() and started[0].proc.server.component.alive()


@pytest.mark.stack
def test_the_runs_of_one_lab_share_its_fork_server_and_the_last_one_stops_it(sup, tmp_path):
    """A matrix's cells with stacks of their own each have a Supervisor: one server for all."""
    (tmp_path / "cell").mkdir()
    cell = Supervisor("test-forkserver-cell", tmp_path / "cell")
    try:
        first = child(sup, "child", "stay")
        second = child(cell, "child", "stay")
        server = first.proc.server
        assert second.proc.server is server and server.users == 2
        wait_for(lambda: staying(first) and staying(second), 30, "both children to start")
    finally:
        cell.stop_all()
    assert second.proc.poll() == -signal.SIGTERM
    assert first.alive() and server.component.alive()  # the other run still uses it
    sup.stop_all()
    assert server.component.proc.poll() is not None


@pytest.mark.stack
def test_a_child_asked_for_during_the_servers_imports_is_forked_after_them(
    sup, tmp_path, monkeypatch
):
    """Asking does not wait for the server's imports: a run asks for its worker, app and proxy
    at once, and the two servers import side by side."""
    gate = tmp_path / "the-imports-may-finish"
    monkeypatch.setenv("FORKSERVER_TEST_GATE", str(gate))
    family = fork_jobs.Family("test", modules=(CHILD,), preload=("tests.slow_import", CHILD))
    monkeypatch.setattr(fork_jobs, "FAMILIES", (family,))
    asked = child(sup, "child", "exit", "0")  # returns while the server is importing
    assert asked.alive() and asked.proc.server.forked_now(asked.proc.request_id) is None
    gate.touch()
    assert asked.proc.wait(timeout=30) == 0
    assert asked.proc.pid > 0


@pytest.mark.stack
def test_a_child_whose_server_died_before_forking_it_is_reported_with_the_servers_log(
    sup, monkeypatch
):
    family = fork_jobs.Family("test", modules=(CHILD,), preload=("tests.no_such_module",))
    monkeypatch.setattr(fork_jobs, "FAMILIES", (family,))
    asked = child(sup, "child", "exit", "0")
    assert asked.proc.wait(timeout=30) == forkserver.NEVER_FORKED
    with pytest.raises(ComponentError, match="its fork server exited before it") as raised:
        sup.check_all_alive("during the test")
    assert "forkserver-test.log" in str(raised.value)
    server_log = asked.proc.server.component.log_path.read_text()
    assert "No module named 'tests.no_such_module'" in server_log
    sup.stop_all()  # nothing to stop, nothing raised


@pytest.mark.stack
def test_a_forked_childs_pid_is_given_only_once_it_leads_a_session_of_its_own(sup):
    """The lab stops a child by signalling its process group, by the child's pid: a group
    signalled before the child had made it missed the child, and the run's stop then waited
    for ever (a warm spare proxy stopped as soon as it was asked for)."""
    children = [child(sup, f"child-{n}", "stay") for n in range(10)]
    for forked in children:
        assert os.getpgid(forked.pid) == forked.pid


@pytest.mark.stack
def test_a_kept_server_outlives_its_runs_and_knows_each_childs_own_environment(
    sup, tmp_path, monkeypatch
):
    """A test session keeps its servers from test to test (keep_idle, tests/conftest.py): a
    later run forks from the same server, and the leftover checks find a child by the
    environment it was forked with, since /proc shows the server's."""
    monkeypatch.setattr(fork_sharing.shared, "keep_idle", True)
    (tmp_path / "later").mkdir()
    later = Supervisor("test-forkserver-later", tmp_path / "later")
    try:
        monkeypatch.setenv(TOKEN_VAR, "the-first-test")  # the server's environment has it
        first = child(sup, "child", "stay")
        server = first.proc.server
        wait_for(lambda: staying(first), 30, "the child to start")
        sup.stop_all()
        assert server.users == 0 and server.component.alive()  # kept, though idle
        monkeypatch.setenv(TOKEN_VAR, "the-second-test")
        argv = [sys.executable, "-m", CHILD, "stay"]
        second = later.add("child", argv, extra_env={"FORKED_CHILD_VALUE": "43"})
        assert second.proc.server is server
        wait_for(lambda: staying(second), 30, "the second child to start")
        known = dict(server.children())
        assert list(known) == [second.pid]  # the first one's exit was reported
        assert known[second.pid]["FORKED_CHILD_VALUE"] == "43"
        assert known[second.pid][processes.RUN_MARKER] == "test-forkserver-later"
        assert [p.pid for p in processes_with_token("the-second-test")] == [second.pid]
        assert processes_with_token("the-first-test") == []  # nor the server, kept on purpose
        later.stop_all()
        assert server.component.alive() and server.children() == []
    finally:
        later.stop_all()
        fork_sharing.shared.stop_idle()
    assert server.component.proc.poll() is not None
    assert server not in fork_sharing.shared.servers()


# Another lab, started by this one: forks a child (`CHILD stay`) from a fork server of the test
# family, says its pid and whether that server was handed down, and holds it until stdin closes.
OTHER_LAB = """
import sys
from pathlib import Path
from lab.stacks import fork_jobs
from lab.stacks.processes import Supervisor
child_module = sys.argv[2]
family = fork_jobs.Family("test", modules=(child_module,), preload=(child_module,))
fork_jobs.FAMILIES = (family,)
sup = Supervisor("other-lab", Path(sys.argv[1]))
argv = [sys.executable, "-m", child_module, "stay"]
child = sup.add("child", argv, extra_env={"FORKED_CHILD_VALUE": "44"})
print(child.pid, child.proc.server.component is None, flush=True)
sys.stdin.read()
sup.stop_all()
"""


@pytest.mark.stack
def test_a_server_handed_down_serves_another_lab_and_outlives_it_not_its_children(
    sup, tmp_path, monkeypatch
):
    """A test session hands its servers down to its `python -m lab` runs (conftest), which
    would each start their own. A lab that dies without stopping its children (SIGKILL) leaves
    them to the server, which sends them the death signal the kernel would have."""
    import psutil

    monkeypatch.setenv(fork_sharing.HANDED_DOWN, "")  # restored after the test
    sup.hand_down_forkservers()
    (server,) = sup._forkservers.values()
    assert os.environ[fork_sharing.HANDED_DOWN] == str(tmp_path)
    (tmp_path / "other").mkdir()
    args = [sys.executable, "-c", OTHER_LAB, str(tmp_path / "other"), CHILD]
    other = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        pid, handed_down = other.stdout.readline().split()
        pid = int(pid)
        assert handed_down == "True"
        assert psutil.Process(pid).ppid() == server.component.pid
        known = dict(server.children())  # every lab's children, each with its own environment
        assert known[pid]["FORKED_CHILD_VALUE"] == "44"
        assert not list((tmp_path / "other").glob("forkserver*"))  # it started none of its own
        other.kill()
        other.wait(timeout=30)
        wait_for(lambda: not psutil.pid_exists(pid), 15, "the other lab's child to die with it")
        wait_for(lambda: server.children() == [], 15, "its exit to be reaped")
        assert server.alive()
        # and serves on: this lab's own child
        assert child(sup, "app", "exit", "5").proc.wait(timeout=30) == 5
    finally:
        if other.poll() is None:
            other.kill()


@pytest.mark.stack
def test_a_lab_whose_handed_down_server_is_gone_starts_its_own(sup, tmp_path, monkeypatch):
    monkeypatch.setenv(fork_sharing.HANDED_DOWN, str(tmp_path / "gone"))
    component = child(sup, "app", "exit", "6")
    assert component.proc.wait(timeout=30) == 6
    assert component.proc.server.component is not None  # started here
