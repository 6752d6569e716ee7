"""proxy-cache-lab's pytest plugin (entry point `pytest11`, installed with the package): put a
misbehaving proxy in front of your own app in your own tests.

Fixtures:
- `lab_proxy(profile, target=URL)`: a profile's proxy (a real mitmdump), started once per profile
  and target per test session; its `.url`, `.base_url`, a `requests.Session` routed through it
  (`.session`) and what it did (`.events()`, `.served_from_cache()`...).
- `lab_audit(flow, profiles=[...], client_fixes=[...])`: `lab audit` from a test; returns its
  result, whose `.assert_completed()` fails with the table and the reasons.
- `lab_app(flow)`: the flow's app started from its commands, once per test session; its URL.
- `lab_profile`: the profile a test runs behind, when the test asks for it: the test runs once
  per profile, from `@pytest.mark.lab_profiles("a", "b")` (or "all", or "deployment"), else
  `--lab-profiles a,b|all|deployment`, else every profile that stands for a real deployment.

This module imports nothing of the lab's until a fixture is used: pytest loads it in every
session of an environment the package is installed in.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from lab.plugin.audits import AppPool
    from lab.plugin.proxies import ProxyPool

PROFILES_OPTION = "--lab-profiles"
MARKER = "lab_profiles"
# The session's proxy pool, started as soon as a collected test uses `lab_proxy`.
EARLY_POOL = pytest.StashKey["ProxyPool"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("proxy-cache-lab")
    group.addoption(
        PROFILES_OPTION,
        default=None,
        metavar="A,B|all|deployment",
        help="Proxy profiles for tests that take `lab_profile` (default: every profile that "
        "stands for a real deployment).",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(*names): run this test once per proxy profile named (or 'all', "
        "'deployment'); the test takes the `lab_profile` fixture",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "lab_profile" not in metafunc.fixturenames:
        return
    from lab.plugin.proxies import profiles_for

    marker = metafunc.definition.get_closest_marker(MARKER)
    wanted = profiles_for(
        list(marker.args) if marker else None, metafunc.config.getoption(PROFILES_OPTION)
    )
    metafunc.parametrize("lab_profile", wanted, ids=wanted)


@pytest.fixture(scope="session")
def _lab_session_dir(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return tmp_path_factory.mktemp("proxy-cache-lab")


def pytest_collection_finish(session: pytest.Session) -> None:
    """A test will ask for a proxy: start a warm spare now (lab/stacks/spare.py), so that
    mitmproxy's imports, most of a proxy's start-up, overlap the session's own start. In the
    main thread: a child's parent-death signal follows the thread that started it."""
    config = session.config
    factory = getattr(config, "_tmp_path_factory", None)
    if config.option.collectonly or factory is None:
        return
    if not any("lab_proxy" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    from lab.plugin.proxies import ProxyPool

    pool = ProxyPool(factory.mktemp("proxy-cache-lab") / "proxies").__enter__()
    config.stash[EARLY_POOL] = pool
    pool.start_spare()


def pytest_sessionfinish(session: pytest.Session) -> None:
    pool = session.config.stash.get(EARLY_POOL, None)
    if pool is not None:  # no test took it (all skipped or deselected later): stop its spare
        del session.config.stash[EARLY_POOL]
        pool.__exit__(None, None, None)


@pytest.fixture(scope="session")
def _lab_proxy_pool(request: pytest.FixtureRequest, _lab_session_dir: Any) -> Iterator[ProxyPool]:
    from lab.plugin.proxies import ProxyPool

    early = request.config.stash.get(EARLY_POOL, None)
    if early is not None:
        del request.config.stash[EARLY_POOL]
    with early or ProxyPool(_lab_session_dir / "proxies") as pool:
        yield pool


@pytest.fixture(scope="session")
def _lab_app_pool(_lab_session_dir: Any) -> Iterator[AppPool]:
    from lab.plugin.audits import AppPool

    with AppPool(_lab_session_dir / "apps") as pool:
        yield pool


@pytest.fixture(scope="session")
def lab_proxy(_lab_proxy_pool: ProxyPool) -> Any:
    """`lab_proxy("corporate-cache", target="http://127.0.0.1:8000")`: the profile's proxy in
    front of `target` (a reverse profile needs it; a forward proxy reaches any loopback URL)."""
    return _lab_proxy_pool.get


@pytest.fixture(scope="session")
def lab_app(_lab_app_pool: AppPool) -> Any:
    """`lab_app("examples/x/audit.toml")`: the flow's app, started once per session; its URL."""
    return _lab_app_pool.url_of


@pytest.fixture
def lab_audit(_lab_app_pool: AppPool, _lab_session_dir: Any) -> Any:
    """`lab_audit(flow, profiles=[...], client_fixes=[...])`: an AuditResult. The flow's app is
    started once per session (lab_app) unless the flow gives its URL."""
    from lab.plugin.audits import make_auditor

    return make_auditor(_lab_app_pool, _lab_session_dir / "audits")
