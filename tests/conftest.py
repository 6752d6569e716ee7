import pytest

from tests.lab_helpers import processes_with_token


@pytest.fixture
def no_leftovers():
    """Yields a checker: after the run, no process carrying the token may be alive."""

    def check(token: str) -> None:
        left = processes_with_token(token)
        assert not left, f"processes left behind: {[p.cmdline() for p in left]}"

    return check


@pytest.fixture(autouse=True)
def fast_tier_starts_no_stack(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """`make test-fast` runs the tests not marked `stack`: they must not start a worker, an
    app server, a proxy, a Redis or a browser. One that does fails here, saying so."""
    if request.node.get_closest_marker("stack") is not None:
        return

    def refuse(*_args, **_kwargs):
        raise AssertionError(
            f"{request.node.nodeid} starts a real process: mark it @pytest.mark.stack"
        )

    from lab.browser import BrowserHost
    from lab.processes import Supervisor

    monkeypatch.setattr(Supervisor, "add", refuse)
    monkeypatch.setattr(BrowserHost, "launch", refuse)
