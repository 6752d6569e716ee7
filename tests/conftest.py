import json
import os
import shutil
import signal
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.data import settings
from lab.stacks import fork_sharing
from lab.stacks.processes import Supervisor
from tests.lab_helpers import TOKEN_VAR, VERIFY_TIMEOUT, LabProcess, Mitmdump, running_mitmdump

pytest_plugins = ["pytester"]  # tests/test_plugin.py runs a user's test files


@pytest.fixture(autouse=True)
def settings_read_afresh() -> Iterator[None]:
    """The lab reads its LAB_* variables once per process: each test starts from the
    environment as it is, and a variable a test set does not outlive it."""
    settings.current.cache_clear()
    yield
    settings.current.cache_clear()


def pytest_sessionstart(session: pytest.Session) -> None:
    """The lab's fork servers (lab.stacks.forkserver) stay up from one test's runs to the next
    in this pytest process, as they do for the runs of one `lab matrix`: started for each test
    that runs a stack in this process, they cost about a CPU-second each (their imports). The
    tests' leftover checks find the children of a kept server by the environment each was
    forked with (lab_helpers.processes_with_token). Session hooks, not a session fixture: every
    test would use that fixture and join one xdist group."""
    fork_sharing.shared.keep_idle = True


_HANDED_DOWN: list[Supervisor] = []  # the session's servers, once a test runs a stack


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """The first test that runs a stack starts the fork servers and hands them down to every
    `python -m lab` the session starts (Supervisor.hand_down_forkservers): a lab would
    otherwise start its own two, and the suite runs about a hundred. The fast tier starts
    none, nor does a session with LAB_TEST_HAND_DOWN=0 (to measure what it saves)."""
    if _HANDED_DOWN or item.get_closest_marker("stack") is None:
        return
    if os.environ.get("LAB_TEST_HAND_DOWN") == "0":
        return
    settings.current.cache_clear()
    if settings.current().forkserver:
        folder = Path(tempfile.mkdtemp(prefix="lab-forkservers-"))
        sup = Supervisor(f"pytest-forkservers-{os.getpid()}", folder)
        _HANDED_DOWN.append(sup)
        sup.hand_down_forkservers()


def pytest_sessionfinish(session: pytest.Session) -> None:
    os.environ.pop(fork_sharing.HANDED_DOWN, None)
    for sup in _HANDED_DOWN:
        sup.stop_all()
    fork_sharing.shared.keep_idle = False
    fork_sharing.shared.stop_idle()
    for sup in _HANDED_DOWN:
        shutil.rmtree(sup.run_dir, ignore_errors=True)  # the servers' sockets and logs


@pytest.fixture
def lab_env(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], None]:
    """Sets a LAB_* variable for this test only; the lab's settings see it at once."""

    def set_variable(name: str, value: str) -> None:
        monkeypatch.setenv(name, value)
        settings.current.cache_clear()

    return set_variable


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    """For in-process runs: every child (Playwright's driver and Chromium too) inherits the
    token, so `assert_nothing_left(token)` finds any of them left alive."""
    value = uuid.uuid4().hex
    monkeypatch.setenv(TOKEN_VAR, value)
    return value


@pytest.fixture
def mitmdump(tmp_path: Path) -> Iterator[Callable[..., Mitmdump]]:
    """Starts real mitmdumps for a test: `mitmdump(scripts, options, modes=...)` gives a ready
    one (see running_mitmdump); every one is stopped when the test ends, pass or fail."""
    with ExitStack() as started:

        def start(
            scripts: Sequence[str],
            options: Mapping[str, object] | None = None,
            *,
            modes: Sequence[str] = (),
        ) -> Mitmdump:
            return started.enter_context(running_mitmdump(tmp_path, scripts, options, modes=modes))

        yield start


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

    from lab.clients.browser import BrowserHost
    from lab.stacks.processes import Supervisor

    monkeypatch.setattr(Supervisor, "add", refuse)
    monkeypatch.setattr(BrowserHost, "launch", refuse)


@dataclass
class WholeMatrix:
    result: object  # lab.runs.matrix.MatrixResult
    token: str  # every process of the matrix carried it


@pytest.fixture(scope="session")
def whole_matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WholeMatrix]:
    """The whole Python matrix, run once for every test that reads it: every fix (the page's
    poll fixes and the result backend fixes, redis-oom on Redis) against every scenario it
    applies to. A matrix cell that ran on a stack of its own (redis-oom) is a whole `lab repro`
    run, with all its evidence in its folder."""
    from lab.data import fixes, scenarios
    from lab.reports import publish
    from lab.runs import matrix

    value = uuid.uuid4().hex
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(TOKEN_VAR, value)
        loaded = scenarios.load_all()
        result = matrix.run_matrix(
            loaded, fixes.names(), tmp_path_factory.mktemp("matrix"), progress=lambda _: None
        )
    publish.publish_matrix(result, loaded)  # as `lab matrix` does once the run returns
    yield WholeMatrix(result, value)


@dataclass
class StoryRepro:
    verdict: object  # lab.judging.evidence.Verdict
    token: str


@pytest.fixture(scope="session")
def story_repro(tmp_path_factory: pytest.TempPathFactory) -> StoryRepro:
    """`lab repro proxy-cache --fix none`, in process, once for the tests that read it."""
    from lab.data import scenarios
    from lab.reports import publish
    from lab.runs import repro

    value = uuid.uuid4().hex
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(TOKEN_VAR, value)
        scenario = scenarios.load("proxy-cache")
        verdict = repro.run(
            scenario, "none", tmp_path_factory.mktemp("story"), progress=lambda _: None
        )
    publish.publish_run(verdict, scenario)  # as `lab repro` does once the run returns
    return StoryRepro(verdict, value)


@pytest.fixture(scope="session")
def verified(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`lab verify --all --json`, run once: every real product against its profile, for
    tests/test_verify_real.py and as the local side of the dispatched verification
    (tests/test_dispatch_verify_audit.py). Its "exit_code" is the lab's."""
    # pytest's own temp folders are 0700: the products' users (proxy, www-data) cannot reach
    # them, which is what ProductFolder is for.
    cwd = tmp_path_factory.mktemp("verify")
    with LabProcess(["verify", "--all", "--json"], cwd) as lab:
        code, stdout = lab.finish(timeout=VERIFY_TIMEOUT)
    result = json.loads(stdout)
    # 2 or 3 (a bad [real] table, a product not installed) fail every test, with the reason.
    assert code in (0, 1), f"lab verify --all: exit {code}: {result.get('error')}"
    result["exit_code"] = code
    return result


def pytest_configure(config: pytest.Config) -> None:
    """`pytest -n auto` (pytest-xdist): tests that share a costly fixture are sent to one
    worker (below), not spread over workers that would each build it again."""
    # Started in the background by a shell without job control (`make test &` in a script),
    # the suite inherits SIGINT ignored, and so would every lab it starts (an ignored signal
    # stays ignored across exec): each Ctrl-C test failed. A test sends its own SIGINT.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if config.pluginmanager.hasplugin("xdist") and getattr(config.option, "dist", "no") == "load":
        config.option.dist = "loadgroup"
    # A worker parses the command line again, where `-n 2` says nothing of loadgroup: told by
    # the controller (pytest_configure_node), it names each test by its group as loadgroup
    # scheduling needs. Without this, every worker that got one of a module fixture's tests
    # built the fixture again: three whole browser matrices at once on 2 cores.
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and workerinput.get("lab_dist") == "loadgroup":
        config.option.loadgroup = True


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # noqa: ANN001 - xdist's WorkerController
    node.workerinput["lab_dist"] = node.config.option.dist


# A wrapper: its first half runs before every plain implementation, xdist's worker's among
# them, which names each test by its group (tryfirst did not put it first there).
@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> Iterator[None]:
    """Tests that share a session- or module-scoped fixture of this suite (a whole matrix, two
    agents, a real product) join one xdist group, so that fixture is built once. Groups are
    joined through every such fixture a test uses (a test reading two of them joins both
    groups into one): a fixture reached through a second group would be built again on another
    worker, and two whole matrices at once on 2 cores make a busy machine busier. Every worker
    has its own ports, temporary folders and the pytest plugin's proxies anyway: only the cost
    is shared."""
    parent: dict[str, str] = {}

    def root(group: str) -> str:
        while parent.setdefault(group, group) != group:
            group = parent[group]
        return group

    costly: list[tuple[pytest.Item, list[str]]] = []
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        groups = []
        for name in sorted(item.fixturenames):
            defs = info.name2fixturedefs.get(name)
            if not defs or defs[-1].scope not in ("session", "module"):
                continue
            if not defs[-1].baseid.startswith(("tests", "examples")):
                continue  # pytest's and the plugin's own: one per worker is what they are for
            groups.append(name if defs[-1].scope == "session" else f"{defs[-1].baseid}::{name}")
        if groups:
            costly.append((item, groups))
            for other in groups[1:]:
                parent[root(other)] = root(groups[0])
    for item, groups in costly:
        item.add_marker(pytest.mark.xdist_group(root(groups[0])))
    result = yield
    if getattr(config.option, "loadgroup", False):
        # xdist's worker renames a grouped test `nodeid@group`; where pytest no longer lets it
        # (pytest 9.2, pytest-dev/pytest-xdist#1386) the groups are ignored without a word.
        kept = set(items)  # -k and -m deselect in the same hook
        ungrouped = [item.nodeid for item, _ in costly if item in kept and "@" not in item.nodeid]
        if ungrouped:
            # A worker's exception reaches the controller as an unreadable internal error: the
            # reason goes to the terminal first.
            reason = (
                f"pytest-xdist's loadgroup ignored the xdist_group of {len(ungrouped)} tests "
                f"({ungrouped[0]}...): this pytest and pytest-xdist do not work together "
                "(pytest-dev/pytest-xdist#1386); install the versions pyproject.toml asks for"
            )
            print(f"\nERROR: {reason}", file=sys.__stderr__, flush=True)
            raise pytest.UsageError(reason)
    return result
