"""`lab verify --suite` and bench/cache_tests.py --real without running the suite: the counting
of same results (lab/verify/suite.py), the figures its JSON carries, and the Squid template
turned into a reverse (accelerator) set-up."""

from __future__ import annotations

import shutil

import pytest

from lab.data.errors import BadInput
from lab.verify import cache_tests
from lab.verify.real import RealSetup
from lab.verify.suite import SuiteAgreement, reverse_setup


def results(*rows: tuple[str, str, str]) -> cache_tests.SuiteResults:
    """(id, kind, result) rows."""
    tests = tuple(cache_tests.TestResult(i, "s", i, kind, result, None) for i, kind, result in rows)
    return cache_tests.SuiteResults("http://127.0.0.1:1", "0.4.5", tests, 1.0)


def test_agreement_counts_the_required_tests_the_real_product_ran():
    real = results(
        ("a", "required", "pass"),
        ("b", "required", "fail"),
        ("c", "required", "dependency_fail"),
        ("d", "optimal", "pass"),  # optional tests are not counted
    )
    simulated = results(
        ("a", "required", "pass"),
        ("b", "required", "pass"),
        ("c", "required", "dependency_fail"),
        ("d", "optimal", "optional_fail"),
    )
    agreement = SuiteAgreement("squid-default", "Squid 5.7", real, simulated)
    assert agreement.same == ["a", "c"]
    assert [(a.id, a.result, b.result) for a, b in agreement.differ] == [("b", "fail", "pass")]
    assert agreement.percent == pytest.approx(200 / 3)
    doc = agreement.to_json(tests=False)
    assert (doc["same"], doc["required"], doc["percent"]) == (2, 3, 66.7)
    assert doc["different"] == [{"id": "b", "real": "fail", "simulated": "pass"}]
    assert "real" not in doc and "real" in agreement.to_json()
    text = agreement.summary()
    assert "same result on 2 of 3 required tests (66.7%; goal 90%)" in text
    assert "  b: fail / pass" in text


@pytest.mark.skipif(shutil.which("squid") is None, reason="needs squid (apt-get install squid)")
def test_a_forward_squid_template_becomes_an_accelerator(tmp_path):
    setup = reverse_setup("squid-default", tmp_path)
    assert setup.placement == "reverse" and setup.template.parent == tmp_path
    text = setup.template.read_text("utf-8")
    assert "accel" in text and "originserver" in text
    original = RealSetup.of("squid-default").template.read_text("utf-8")
    for line in original.splitlines():
        if line.startswith("refresh_pattern"):
            assert line in text  # the caching lines stay the profile's


@pytest.mark.skipif(shutil.which("nginx") is None, reason="needs nginx (apt-get install nginx)")
def test_a_reverse_template_is_used_as_it_is(tmp_path):
    setup = reverse_setup("nginx-default", tmp_path)
    assert setup == RealSetup.of("nginx-default")


def test_an_unknown_profile_is_bad_input(tmp_path):
    with pytest.raises(BadInput):
        reverse_setup("no-such-profile", tmp_path)
