"""The pytest plugin as a user meets it: a test file of their own, run by pytest in a
subprocess with the plugin loaded from its entry point."""

from __future__ import annotations

import uuid

import pytest

from tests.lab_helpers import TOKEN_VAR, assert_nothing_left, tiny_flow


@pytest.fixture
def user_project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A user's project: the tiny app's flow files, buggy and fixed; every process the user's
    pytest starts carries a token, so the test can see that none is left."""
    tiny_flow(pytester.path, file="buggy.toml")
    tiny_flow(pytester.path, "--cache-control no-store", file="fixed.toml")
    monkeypatch.setenv(TOKEN_VAR, uuid.uuid4().hex)
    return pytester


def test_profiles_from_the_option_or_the_marker(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import pytest

        def test_default(lab_profile):
            pass

        @pytest.mark.lab_profiles("nginx-default", "squid-default")
        def test_marked(lab_profile):
            pass
        """
    )
    result = pytester.runpytest("--collect-only", "-q", "--lab-profiles", "rfc")
    result.stdout.fnmatch_lines(
        [
            "*test_default[[]rfc[]]*",
            "*test_marked[[]nginx-default[]]*",
            "*test_marked[[]squid-default[]]*",
        ]
    )
    every = pytester.runpytest("--collect-only", "-q")
    every.stdout.fnmatch_lines(["*test_default[[]corporate-cache[]]*"])
    assert "test_default[rfc]" not in every.stdout.str()  # not a real deployment


def test_an_unknown_profile_is_named(pytester: pytest.Pytester):
    pytester.makepyfile("def test_x(lab_profile):\n    pass\n")
    result = pytester.runpytest("--collect-only", "--lab-profiles", "nosuch")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*unknown proxy profile 'nosuch'*"])


@pytest.mark.stack
def test_a_users_tests_with_the_proxy_the_audit_and_one_result_per_profile(user_project):
    user_project.makepyfile(
        test_mine="""
        import pytest

        def test_the_proxy_keeps_the_first_answer(lab_app, lab_proxy):
            url = lab_app("fixed.toml")  # any app; the status's headers do not matter here
            proxy = lab_proxy("corporate-cache", target=url)
            session = proxy.session
            job = session.post("/jobs", json={"seconds": 30}).json()["id"]
            session.get(f"/jobs/{job}")
            session.get("/")  # no Cache-Control: stored ...
            session.get("/")  # ... and served from the cache
            assert proxy.served_from_cache(url + "/")
            assert proxy.stored(job) == []  # no-store: never stored

        @pytest.mark.xfail(strict=True, reason="the story's bug")
        def test_buggy_app_behind_the_corporate_cache(lab_audit):
            lab_audit("buggy.toml", profiles=["corporate-cache"]).assert_completed()

        @pytest.mark.lab_profiles("corporate-cache", "nginx-default")
        def test_fixed_app(lab_audit, lab_profile):
            lab_audit("fixed.toml", profiles=[lab_profile]).assert_completed()

        def test_the_failure_reads_well(lab_audit):
            audit = lab_audit("buggy.toml", profiles=["corporate-cache"])
            assert audit.outcome("corporate-cache") == "hung"
            with pytest.raises(AssertionError) as caught:
                audit.assert_completed()
            message = str(caught.value)
            assert "corporate-cache" in message and "hung" in message
            assert "stored the answer" in message and "report: " in message
        """
    )
    result = user_project.runpytest_subprocess("-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4, xfailed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_fixed_app[[]corporate-cache[]] PASSED*",
            "*test_fixed_app[[]nginx-default[]] PASSED*",
        ]
    )
    import os

    assert_nothing_left(os.environ[TOKEN_VAR], within=15.0)


@pytest.mark.stack  # the user's pytest, a process of its own, starts the apps and proxies
def test_the_warm_spare_becomes_the_first_proxy_asked_for(user_project):
    """The plugin starts a spare proxy as it collects a test using `lab_proxy`; the first
    profile asked for (here a reverse one) takes it, the next one starts as usual; a session
    whose only such test is skipped stops its spare unused."""
    import os

    user_project.makepyfile(
        test_spare="""
        def test_two_profiles(lab_app, lab_proxy):
            url = lab_app("fixed.toml")
            cdn = lab_proxy("cdn-ignore-query", target=url)
            assert cdn.mode == "reverse" and cdn.url != url
            cdn.session.get("/?v=1")
            cdn.session.get("/?v=2")  # the query is not in this CDN's key
            assert cdn.served_from_cache("/?v=2")
            corporate = lab_proxy("corporate-cache")
            assert corporate.mode == "forward" and corporate.url != cdn.url
            corporate.session.get(url + "/")
            corporate.session.get(url + "/")
            assert corporate.served_from_cache(url + "/")
        """
    )
    result = user_project.runpytest_subprocess("-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    spares = list(user_project.path.glob("**/proxies/*/spare-spare.json"))
    assert spares, "the first proxy was not the spare"
    assert_nothing_left(os.environ[TOKEN_VAR], within=15.0)

    user_project.makepyfile(
        test_spare="""
        import pytest

        @pytest.mark.skip(reason="the proxy is never asked for")
        def test_never(lab_proxy):
            pass
        """
    )
    result = user_project.runpytest_subprocess("-v", "-p", "no:cacheprovider")
    result.assert_outcomes(skipped=1)
    assert_nothing_left(os.environ[TOKEN_VAR], within=15.0)


@pytest.mark.stack  # the user's pytest, a process of its own, starts the apps and proxies
def test_a_users_tests_under_pytest_xdist(user_project):
    """`pytest -n 2` (issue 15): each worker starts its own proxies and apps in its own
    folders, on ports of its own; the results are the serial run's, and nothing is left."""
    import os

    user_project.makepyfile(
        test_mine="""
        import pytest

        @pytest.mark.lab_profiles("corporate-cache", "nginx-default", "squid-default", "rfc")
        def test_fixed_app(lab_audit, lab_profile):
            lab_audit("fixed.toml", profiles=[lab_profile]).assert_completed()

        @pytest.mark.parametrize("n", [1, 2])
        def test_the_proxy_keeps_the_first_answer(lab_app, lab_proxy, n):
            url = lab_app("fixed.toml")
            proxy = lab_proxy("corporate-cache")
            proxy.session.get(url + f"/?n={n}")
            proxy.session.get(url + f"/?n={n}")
            assert proxy.served_from_cache(url + f"/?n={n}")
        """
    )
    result = user_project.runpytest_subprocess("-n", "2", "-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=6)
    output = result.stdout.str()
    assert "[gw0]" in output and "[gw1]" in output, "both workers ran tests"
    # Only the parts under the user's project: this suite's own worker has a popen-gw folder
    # above it (popen-gw2 when the suite itself runs with -n 3).
    workers = {
        part
        for p in user_project.path.glob("**/*.ready.json")
        for part in p.relative_to(user_project.path).parts
        if part.startswith("popen-gw")
    }
    assert workers == {"popen-gw0", "popen-gw1"}, workers
    assert_nothing_left(os.environ[TOKEN_VAR], within=15.0)
