import pytest

from tests.lab_helpers import processes_with_token


@pytest.fixture
def no_leftovers():
    """Yields a checker: after the run, no process carrying the token may be alive."""

    def check(token: str) -> None:
        left = processes_with_token(token)
        assert not left, f"processes left behind: {[p.cmdline() for p in left]}"

    return check
