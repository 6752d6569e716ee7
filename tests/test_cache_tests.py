"""The HTTP caching test suite (lab/verify/cache_tests.py): counted with the suite's own
determineTestResult, and the rfc profile's figure against the best published one (issue 13
item 4). Needs Node and the suite installed (bench/cache_tests.py installs it on first use)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lab.data import profiles
from lab.runs.lifecycle import RunResources, new_run_dir
from lab.stacks.stack import launch_proxy
from lab.verify import cache_tests

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (cache_tests.package_dir() / "cli.mjs").exists(),
    reason=f"needs node and {cache_tests.SUITE_PACKAGE} {cache_tests.SUITE_VERSION} in "
    f"{cache_tests.suite_dir()} (run bench/cache_tests.py once)",
)
# Caddy's share of required tests passed on the suite's site, the best published shared cache.
PUBLISHED_BEST = 0.924


def test_counting_honours_the_suites_dependencies():
    failed = ["Assertion", "Response 2 comes from cache"]
    by_id = {
        t.id: t
        for t in cache_tests.count(
            {"freshness-max-age-age": failed, "age-parse-nonnumeric": True, "freshness-none": True}
        )
    }
    # age-parse-nonnumeric passed, but it depends on freshness-max-age-age, which failed.
    assert by_id["age-parse-nonnumeric"].result == "dependency_fail"
    assert by_id["freshness-max-age-age"].result in {"fail", "dependency_fail"}
    assert by_id["freshness-none"].result == "yes"  # a check, not a required test
    assert by_id["freshness-max-age"].result == "untested"


@pytest.mark.stack
def test_the_rfc_profile_passes_more_required_tests_than_any_published_cache(tmp_path: Path):
    profile = profiles.load("rfc").model_copy(update={"mode": "reverse"})
    with RunResources(new_run_dir(tmp_path, "cache-tests")) as resources:
        origin = cache_tests.start_origin(resources.sup)
        proxy = launch_proxy(resources.sup, "proxy", profile, origin, single=True)()
        results = cache_tests.run_suite(proxy.address, resources.sup)
    passed, evaluated = len(results.required_passed), len(results.required_evaluated)
    assert evaluated >= 148, results.counts("required")
    failing = [f"{t.id}: {t.reason}" for t in results.required_failed]
    assert passed / evaluated > PUBLISHED_BEST, failing
    assert not [c.name for c in resources.sup.components if c.alive()]
