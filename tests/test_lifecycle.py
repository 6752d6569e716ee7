"""RunResources: what a run started is stopped in reverse order, every clean-up running even
when the run, or an earlier clean-up, raised."""

from __future__ import annotations

import sys

import pytest

from lab.runs import lifecycle
from lab.runs.lifecycle import RunResources
from lab.stacks.brokers import BrokerChoice


class FakeBroker:
    kind, url, label = "rabbitmq", "amqp://127.0.0.1:1//", "fake"

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def check(self) -> None:
        self.calls.append("broker checked")

    def cleanup(self) -> None:
        self.calls.append("broker queues deleted")


@pytest.fixture
def calls(monkeypatch) -> list[str]:
    calls: list[str] = []
    monkeypatch.setattr(lifecycle, "start_broker", lambda *_args: FakeBroker(calls))
    return calls


@pytest.mark.stack
def test_processes_stop_before_the_broker_queues_go_and_after_a_run_that_raised(
    tmp_path, calls, monkeypatch
):
    resources = RunResources(tmp_path)

    def stop_all() -> None:
        calls.append("processes stopped")
        raise RuntimeError("stop_all failed")

    monkeypatch.setattr(resources.sup, "stop_all", stop_all)
    with pytest.raises(RuntimeError, match="stop_all failed") as raised, resources:
        resources.broker(BrokerChoice("rabbitmq"))
        resources.sup.add("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
        raise KeyboardInterrupt  # Ctrl-C (and SIGTERM, which the CLI turns into one)
    assert calls == ["processes stopped", "broker queues deleted"]
    assert isinstance(raised.value.__context__, KeyboardInterrupt)
    sleeper = resources.sup.components[0]
    sleeper.signal_group(9)  # stop_all was replaced: stop the child here
    sleeper.proc.wait(timeout=10)


@pytest.mark.stack
def test_a_real_supervisor_stops_its_children_when_the_run_fails(tmp_path, calls):
    with pytest.raises(ValueError, match="the run failed"), RunResources(tmp_path) as resources:
        resources.broker(BrokerChoice("rabbitmq"))
        child = resources.sup.add("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
        raise ValueError("the run failed")
    assert not child.alive()
    assert calls == ["broker queues deleted"]


def test_check_alive_asks_every_broker(tmp_path, calls):
    with RunResources(tmp_path) as resources:
        resources.broker(BrokerChoice("rabbitmq"))
        resources.check_alive("during the test")
    assert calls == ["broker checked", "broker queues deleted"]


def test_the_python_client_starts_no_browser_and_an_unknown_client_is_refused(tmp_path):
    with RunResources(tmp_path) as resources:
        assert resources.browser("python") == (None, None)
        with pytest.raises(ValueError, match="not one of python, browser"):
            resources.browser("lynx")
