"""Ports the lab picks for servers that cannot report a port 0 bind."""

import socket

import pytest

from lab.data.errors import ComponentError
from lab.stacks import ports


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


class FakeServer:
    """A launched server that exited: its log says why."""

    def __init__(self, log_path, log: str) -> None:
        self.log_path = log_path
        log_path.write_text(log)

    def alive(self) -> bool:
        return False


class FakeSupervisor:
    def __init__(self) -> None:
        self.components: list[FakeServer] = []


def launcher(tmp_path, sup: FakeSupervisor, logs: list[str]):
    """Launches a server per call, on port 1000 + n; the n-th one exits with logs[n]."""

    launched: list[FakeServer] = []

    def start() -> tuple[FakeServer, int]:
        n = len(launched)
        server = FakeServer(tmp_path / f"server-{n}.log", logs[n])
        launched.append(server)
        sup.components.append(server)
        return server, 1000 + n

    def wait(server: FakeServer, port: int) -> None:
        if server.log_path.read_text():
            raise ComponentError("server", "exited")

    return start, wait


def test_a_server_whose_port_was_taken_is_launched_again_on_new_ports(tmp_path):
    sup = FakeSupervisor()
    start, wait = launcher(tmp_path, sup, ["bind: Address already in use", ""])
    server, port = ports.start_retrying_taken_ports(sup, start(), start, wait)
    assert port == 1001
    assert sup.components == [server]  # the failed launch is no component of the run any more


def test_a_server_that_failed_for_another_reason_or_too_often_is_an_error(tmp_path):
    sup = FakeSupervisor()
    start, wait = launcher(tmp_path, sup, ["bad option"])
    with pytest.raises(ComponentError):
        ports.start_retrying_taken_ports(sup, start(), start, wait)
    sup = FakeSupervisor()
    start, wait = launcher(tmp_path, sup, ["Address already in use"] * 3)
    with pytest.raises(ComponentError):
        ports.start_retrying_taken_ports(sup, start(), start, wait, attempts=3)
    assert len(sup.components) == 1  # the last launch, kept for the error's log
