"""Ports the lab picks for servers that cannot report a port 0 bind."""

import socket
import sys

import pytest

from lab.data.errors import ComponentError
from lab.stacks import ports
from lab.stacks.processes import Component, Supervisor


def test_free_ports_are_distinct_bindable_and_below_the_ephemeral_range():
    picked = ports.free_ports(20)
    assert len(set(picked)) == 20
    assert all(ports.LOWEST <= port < ports.ephemeral_start() for port in picked)
    for port in picked:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # free: an outgoing connection never takes these


def test_a_port_in_use_is_never_picked(monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        monkeypatch.setattr(ports, "LOWEST", port)
        monkeypatch.setattr(ports, "ephemeral_start", lambda: port + 1001)
        assert port not in ports.free_ports(5)


# A server that listens on the port given as its argument until its stdin-less life ends; a
# port someone holds makes it exit as a real server does ("Address already in use").
SERVER = """
import socket, sys, time
sock = socket.socket()
try:
    sock.bind(("127.0.0.1", int(sys.argv[1])))
except OSError as exc:
    sys.exit(f"failed to listen: {exc}")
sock.listen()
while True:
    time.sleep(60)
"""


@pytest.fixture
def sup(tmp_path):
    supervisor = Supervisor("test-ports", tmp_path)
    yield supervisor
    supervisor.stop_all()


@pytest.fixture
def held_port():
    """A port another program took between the lab's pick and its server's bind."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))  # bound, not listening: nothing answers on it
        yield holder.getsockname()[1]


def server_launcher(sup: Supervisor, name: str, ports_to_try: list[int]):
    """start, wait for launch_retrying_taken_ports: launch n listens on ports_to_try[n], or a
    free port when the list runs out; a server is up when its port answers."""
    tried: list[int] = []

    def start() -> tuple[Component, int]:
        port = ports_to_try[len(tried)] if len(tried) < len(ports_to_try) else ports.free_port()
        tried.append(port)
        name_n = f"{name}-{len(tried)}"
        return sup.add(name_n, [sys.executable, "-c", SERVER, str(port)]), port

    def wait(server: Component, port: int) -> None:
        sup.wait_until(server, lambda: answers(port), f"port {port}", timeout=20)

    return start, wait


def answers(port: int) -> bool:
    if not 0 < port < 65536:
        return False
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.stack
def test_a_server_whose_port_was_taken_is_launched_again_on_new_ports(sup, held_port):
    start, wait = server_launcher(sup, "redis", [held_port])
    first, ready = ports.launch_retrying_taken_ports(sup, start, wait)
    server, port = ready()
    assert first[1] == held_port and port != held_port and answers(port)
    assert first[0] not in sup.components  # the failed launch is no component of the run any more
    assert server in sup.components and server.alive()


@pytest.mark.stack
def test_a_sibling_that_lost_its_port_is_left_to_its_own_retry(sup, held_port):
    """Two servers launched together and waited for in turn (a matrix's proxy hosts): the second
    loses its port while the lab waits for the first. That wait goes on, and the second one's
    own wait launches it again. (It used to fail the first one's wait, and the whole run.)"""
    first_start, _ = server_launcher(sup, "proxies-1", [])
    checks_after_the_exit = 0

    def first_wait(server: Component, port: int) -> None:
        # Up only after one more look once the sibling has exited: the wait sees that exit.
        def up() -> bool:
            nonlocal checks_after_the_exit
            if lost.proc.poll() is None:
                return False
            checks_after_the_exit += 1
            return checks_after_the_exit > 1 and answers(port)

        sup.wait_until(server, up, "the sibling's exit, then its port", timeout=20)

    second_start, second_wait = server_launcher(sup, "proxies-2", [held_port])
    _, first_ready = ports.launch_retrying_taken_ports(sup, first_start, first_wait)
    (lost, _), second_ready = ports.launch_retrying_taken_ports(sup, second_start, second_wait)
    first, _ = first_ready()
    assert lost.lost_its_port() and checks_after_the_exit > 1
    second, second_port = second_ready()
    assert first.alive() and second.alive() and second_port != held_port
    sup.check_all_alive("after both came up")  # the lost launch is gone from the run


@pytest.mark.stack
def test_a_component_that_lost_its_port_fails_the_wait_for_itself(sup, held_port):
    """Passing over a lost port is for the waits for others: the wait for that very server
    sees its exit at once."""
    start, _ = server_launcher(sup, "redis", [held_port])
    (server, _), _ = ports.launch_retrying_taken_ports(sup, start, lambda c, p: None)
    server.proc.wait(timeout=20)
    with pytest.raises(ComponentError, match="exited with code 1"):
        sup.wait_until(server, lambda: False, "its port", timeout=20)


@pytest.mark.stack
def test_a_server_that_failed_for_another_reason_is_an_error(sup):
    start, wait = server_launcher(sup, "redis", [-1])  # no such port: not a taken one
    _, ready = ports.launch_retrying_taken_ports(sup, start, wait)
    with pytest.raises(ComponentError, match="exited with code 1"):
        ready()
    assert [c.name for c in sup.components] == ["redis-1"]


@pytest.mark.stack
def test_a_server_whose_ports_were_taken_too_often_is_an_error(sup, held_port):
    start, wait = server_launcher(sup, "nginx", [held_port] * 3)
    _, ready = ports.launch_retrying_taken_ports(sup, start, wait, attempts=3)
    with pytest.raises(ComponentError, match="exited with code 1"):
        ready()
    # the last launch is kept for the error's log; the two before it are gone
    assert [c.name for c in sup.components] == ["nginx-3"]


@pytest.mark.stack
def test_a_server_taken_for_ready_must_be_the_one_listening(sup):
    """Seen in a full run: another lab listened on the port nginx had been given, the connect
    that was the readiness check reached that lab's server, and nginx, failing to bind for 2.5 s
    before it exited, was taken for ready: every cell of its profile errored."""
    with socket.socket() as other_lab:
        other_lab.bind(("127.0.0.1", 0))
        other_lab.listen()
        taken = other_lab.getsockname()[1]
        start, _ = server_launcher(sup, "nginx", [taken])

        def wait(server: Component, port: int) -> None:
            ready = lambda: answers(port) and ports.listens_itself(server, port)  # noqa: E731
            sup.wait_until(server, ready, f"port {port}", timeout=20)

        first, ready = ports.launch_retrying_taken_ports(sup, start, wait)
        server, port = ready()
    assert first[1] == taken and port != taken
    assert ports.listens_itself(server, port) and not ports.listens_itself(server, taken)


# Claims ports for another lab (the file is argv[1], the ports the rest), says which it got,
# and holds them until its stdin closes.
OTHER_LAB = """
import sys
from pathlib import Path
from lab.stacks.ports import Claims
claims = Claims(Path(sys.argv[1]), most=int(sys.argv[2]))
print(" ".join(str(claims.claim(int(port))) for port in sys.argv[3:]), flush=True)
sys.stdin.read()
"""


def other_lab(path, most: int, *claimed: int):
    """Another lab's process that claimed `claimed`, and what each claim gave it."""
    import subprocess

    args = [sys.executable, "-c", OTHER_LAB, str(path), str(most), *map(str, claimed)]
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().split()


def test_a_port_another_lab_was_given_is_not_given_again_until_that_lab_exits(tmp_path):
    claims = ports.Claims(tmp_path / "claims.lock")
    proc, got = other_lab(claims.path, 10, 24_001, 24_002)
    try:
        assert got == ["True", "True"]
        assert not claims.claim(24_001) and not claims.claim(24_002)
        assert claims.claim(24_003)
        assert not claims.claim(24_003)  # this process's own, given once
    finally:
        proc.communicate("")
    assert claims.claim(24_001)  # the kernel dropped the exited lab's claims


def test_free_ports_pass_over_a_port_another_lab_was_given(tmp_path, monkeypatch):
    path = tmp_path / "claims.lock"
    monkeypatch.setattr(ports, "claims", ports.Claims(path))
    monkeypatch.setattr(ports, "LOWEST", 25_000)
    monkeypatch.setattr(ports, "ephemeral_start", lambda: 26_000)
    proc, got = other_lab(path, 2000, *range(25_000, 25_980))
    try:
        assert set(got) == {"True"}
        # 20 ports asked for: all 1000 of the range are candidates, and 20 are left
        assert sorted(ports.free_ports(20)) == list(range(25_980, 26_000))
    finally:
        proc.communicate("")


def test_a_process_keeps_only_its_latest_claims(tmp_path):
    claims = ports.Claims(tmp_path / "claims.lock")
    proc, got = other_lab(claims.path, 2, 24_001, 24_002, 24_003)
    try:
        assert got == ["True"] * 3
        assert claims.claim(24_001)  # let go: the oldest beyond the most kept
        assert not claims.claim(24_002) and not claims.claim(24_003)
    finally:
        proc.communicate("")


def test_where_the_claims_file_cannot_be_opened_every_claim_is_granted(tmp_path):
    claims = ports.Claims(tmp_path / "no-such-folder" / "claims.lock")
    assert claims.claim(24_001) and claims.claim(24_002)
