"""lab/judging/advice.py: httplint's reading of the status answer, and the fix the scenario
files recommend for a set of proxy profiles. Fast tier: the answers come from the sample app
through Flask's test client (no worker), the knowledge from scenarios/ as shipped."""

from __future__ import annotations

import json

import pytest

from lab.data import profiles, scenarios
from lab.data.errors import BadInput
from lab.data.scenarios import Scenario
from lab.judging.advice import (
    Failure,
    counts,
    freshness_summary,
    kind_of,
    lint_response,
    recommend,
)
from sample_app import strategies
from sample_app.config import AppConfig, sqlite_celery_config
from sample_app.web import create_app

BOOK = strategies.load()
SERVER_SIDE = {
    "no-store",
    "no-cache-etag",
    "private",
    "cc-no-store",
    "cc-no-cache",
    "cc-max-age-0",
    "expires-0",
    "pragma-no-cache",
}
# Read off scenarios/*.toml by hand: the server-side fixes each profile's counted scenario
# expects not to complete (the python client). Profiles not named here expect them all to.
SERVER_SIDE_FAILING = {
    "cdn-ignore-query": {"pragma-no-cache": "hung"},
    "corporate-cache": {"pragma-no-cache": "hung"},
    "legacy-http10": {
        fix: "hung"
        for fix in ("no-cache-etag", "private", "cc-no-store", "cc-no-cache", "cc-max-age-0")
    },
    "nginx-cache-valid": {"pragma-no-cache": "hung"},
    "nginx-ignore-headers": dict.fromkeys(SERVER_SIDE, "hung"),
    "nginx-ignore-query": {"pragma-no-cache": "hung"},
    "nginx-post-cache": {"pragma-no-cache": "hung"},
    "squid-override": dict.fromkeys(
        ("no-store", "cc-no-store", "cc-max-age-0", "expires-0"), "hung"
    ),
    "varnish-builtin": {"expires-0": "hung", "pragma-no-cache": "hung"},
}
# Their one scenario each has a neighbour and query URLs.
UNCHECKED_PROFILES = {"shared-cache-leak", "apache-ignore-query"}


@pytest.fixture
def status_answer(tmp_path):
    """The sample app's real status answer to a plain GET, for a task started with `fix`."""
    config = AppConfig(
        celery=sqlite_celery_config(tmp_path), origin_events=str(tmp_path / "origin.jsonl")
    )
    client = create_app(config).test_client()

    def answer(fix: str) -> tuple[int, list[tuple[str, str]], bytes]:
        started = client.post("/tasks", json={"fix": fix, "duration": 0})
        assert started.status_code == 202, started.data
        response = client.get(BOOK.status_path_for(started.get_json()["task_id"]))
        return response.status_code, response.headers.to_wsgi_list(), response.get_data()

    return answer


def codes(notes) -> list[str]:
    return [note.code for note in notes]


def test_the_storys_answer_invites_heuristic_caching(status_answer):
    status, headers, body = status_answer("none")
    notes = lint_response(status, headers, body)

    heuristic = next(note for note in notes if note.code == "FRESHNESS_HEURISTIC")
    assert (heuristic.level, heuristic.category) == ("warning", "Caching")
    assert "STORE_STORABLE" in codes(notes)
    assert "CL_CORRECT" not in codes(notes)  # noise for a status answer
    categories = [note.category for note in notes]
    assert categories == sorted(categories, key=lambda category: category != "Caching")
    assert "Caching" in categories and categories[-1] != "Caching"  # "no Date" comes after
    for note in notes:
        assert note.level in ("good", "info", "warning", "bad")
        assert note.summary and note.detail
        assert "<" not in note.detail and "&amp;" not in note.detail, note.detail
    assert freshness_summary(headers) == (
        "no explicit freshness and no validator: a shared cache may apply heuristic freshness "
        "and serve it unchanged"
    )


def test_a_no_store_answer_may_not_be_kept(status_answer):
    status, headers, body = status_answer("cc-no-store")
    assert ("Cache-Control", "no-store") in headers
    notes = lint_response(status, headers, body)
    assert notes[0].code == "STORE_NO_STORE" and notes[0].level == "info"
    assert "FRESHNESS_HEURISTIC" not in codes(notes)
    assert freshness_summary(headers) == "Cache-Control: no-store: no cache may keep it"


def test_a_no_cache_answer_with_an_etag_must_be_revalidated(status_answer):
    status, headers, body = status_answer("no-cache-etag")
    assert any(name == "ETag" for name, _ in headers)
    notes = lint_response(status, headers, body)
    assert "FRESHNESS_NO_CACHE" in codes(notes)
    assert "FRESHNESS_NO_CACHE_NO_VALIDATOR" not in codes(notes)
    assert freshness_summary(headers) == (
        "Cache-Control: no-cache with a validator: a shared cache may keep it but must "
        "revalidate it (a 304 when unchanged) before every reuse"
    )
    without_etag = [(name, value) for name, value in headers if name != "ETag"]
    assert "FRESHNESS_NO_CACHE_NO_VALIDATOR" in codes(lint_response(status, without_etag, body))


def test_what_the_catalogue_sends_for_old_caches_is_flagged():
    headers = [("Cache-Control", "no-store"), ("Pragma", "no-cache"), ("Expires", "0")]
    flagged = {note.code: note.level for note in lint_response(200, headers, b"{}")}
    assert flagged["REQUEST_HDR_IN_RESPONSE"] == "bad"  # Pragma means nothing in an answer
    assert flagged["BAD_DATE_SYNTAX"] == "bad"  # Expires: 0 is not a date (RFC 9111: expired)


def test_an_answer_to_a_post_is_not_stored_and_the_stand_in_request_is_not_linted():
    notes = lint_response(200, [("Content-Type", "application/json")], b"{}", method="POST")
    assert "STORE_METHOD_UNCACHEABLE" in codes(notes)
    assert "FRESHNESS_HEURISTIC" not in codes(notes)
    assert "MISSING_USER_AGENT" not in codes(notes)


@pytest.mark.parametrize(
    ("headers", "line"),
    [
        ([("Cache-Control", "max-age=30")], "explicitly fresh for 30 s: a shared cache may"),
        ([("Cache-Control", "private")], "Cache-Control: private: no shared cache may keep it"),
        ([("Cache-Control", "max-age=0")], "stale at once, with no validator"),
        ([("Vary", "*")], "Vary: *: no cache can reuse it"),
    ],
)
def test_freshness_summary_says_what_a_shared_cache_may_do(headers, line):
    assert freshness_summary(headers).startswith(line)


def test_fixes_are_classified_by_what_changes():
    assert {fix: kind_of(BOOK.get(fix)) for fix in BOOK.strategies} == {
        **dict.fromkeys([*SERVER_SIDE, "none", "last-modified"], "server"),
        **dict.fromkeys(["nonce", "post", "path-nonce", "request-no-cache"], "client"),
        "detect-stale": "client",
        "sse": "both",  # an event stream endpoint and EventSource
        "belt-and-braces": "both",  # a query nonce and no-store headers
    }


def test_only_plain_apps_behind_a_proxy_count():
    counted = {scenario.name for scenario in scenarios.load_all() if counts(scenario)}
    assert counted == {
        "antivirus-buffering",
        "apache-mod-cache",
        "haproxy-cache",
        "trafficserver-default",
        "varnish-builtin",
        "cdn-ignore-query",
        "flaky-network",
        "header-stripping",
        "idle-timeout",
        "legacy-http10",
        "nginx-cache-valid",
        "nginx-default",
        "nginx-ignore-headers",
        "nginx-ignore-query",
        "nginx-post-cache",
        "proxy-cache",
        "rfc-cache",
        "slow-network",
        "squid-default",
        "squid-override",
    }


def test_behind_the_corporate_cache_no_store_survives_with_exactly_its_headers():
    advice = recommend(["corporate-cache"])
    survivors = {fix.fix: fix for fix in advice.survivors}
    assert set(survivors) == SERVER_SIDE - {"pragma-no-cache"}
    assert survivors["no-store"].headers == (
        ("Cache-Control", "no-store"),
        ("Pragma", "no-cache"),
        ("Expires", "0"),
    )
    assert survivors["no-store"].server_also == ()
    etag = survivors["no-cache-etag"]
    assert etag.headers == (
        ("Cache-Control", "no-cache"),
        ("ETag", '"<a hash of the status body>"'),
    )
    assert "If-None-Match" in etag.server_also[0] and "304" in etag.server_also[0]
    # The smallest header set first: one header, and httplint has nothing against it.
    assert advice.first.fix == "cc-no-store"
    assert advice.first.headers == (("Cache-Control", "no-store"),)
    pragma = next(fix for fix in advice.server_fixes if fix.fix == "pragma-no-cache")
    assert pragma.failures == (Failure("corporate-cache", "proxy-cache", "hung"),)
    assert advice.plain_app == {"corporate-cache": "hung"}
    lines = advice.lines()
    assert any("Cache-Control: no-store" in line and "Recommended" in line for line in lines)
    assert any("pragma-no-cache (hung behind corporate-cache)" in line for line in lines)


def expected_survivors(audited: list[str]) -> set[str]:
    failing = {fix for profile in audited for fix in SERVER_SIDE_FAILING.get(profile, {})}
    return SERVER_SIDE - failing


def test_two_profiles_leave_the_fixes_both_scenario_files_expect_to_complete():
    audited = ["corporate-cache", "squid-override"]
    assert expected_survivors(audited) == {"no-cache-etag", "private", "cc-no-cache"}
    advice = recommend(audited)
    assert {fix.fix for fix in advice.survivors} == expected_survivors(audited)
    failures = {
        (failure.profile, fix.fix): failure.expected
        for fix in advice.server_fixes
        for failure in fix.failures
    }
    assert failures == {
        (profile, fix): outcome
        for profile in audited
        for fix, outcome in SERVER_SIDE_FAILING[profile].items()
    }


@pytest.mark.parametrize("profile", sorted(set(profiles.names()) - UNCHECKED_PROFILES))
def test_each_profile_alone_matches_the_scenario_files(profile):
    advice = recommend([profile])
    assert {fix.fix for fix in advice.survivors} == expected_survivors([profile])
    assert advice.unknown_profiles == ()


def test_every_profile_at_once():
    every = profiles.names()
    advice = recommend(every)
    # nginx-ignore-headers caches every 200 whatever the app says: no header fix survives it.
    assert {fix.fix for fix in advice.survivors} == expected_survivors(every) == set()
    assert advice.first is None
    assert {fix.fix for fix in advice.client_survivors} == {
        "path-nonce",
        "belt-and-braces",
        "detect-stale",
    }
    assert set(advice.unknown_profiles) == UNCHECKED_PROFILES
    assert set(advice.retry_needed_on) == {"flaky-network", "idle-timeout"}
    recommended = {fix.fix for fix in (*advice.server_fixes, *advice.client_fixes)}
    assert not recommended & {"none", "last-modified"}
    json.dumps(advice.to_json())  # one JSON object, as `lab audit --json` prints


def test_a_profile_without_a_counted_scenario_is_unknown():
    advice = recommend(["corporate-cache", "shared-cache-leak"])
    assert advice.unknown_profiles == ("shared-cache-leak",)
    assert "shared-cache-leak" not in advice.checked
    assert {fix.fix for fix in advice.survivors} == expected_survivors(["corporate-cache"])
    assert (
        "shared-cache-leak: no checked knowledge: audit it with the client fixes." in advice.lines()
    )
    assert advice.to_json()["unknown_profiles"] == ["shared-cache-leak"]


def test_a_scenario_with_neighbours_is_no_knowledge_of_its_profile():
    busy = Scenario.model_validate(
        {
            "name": "busy",
            "summary": "Two users behind the corporate cache.",
            "situation": "Two users.",
            "proxy": "corporate-cache",
            "neighbours": 1,
            "expected": {"others": "completed"},
        }
    )
    advice = recommend(["corporate-cache"], scenarios=[busy])
    assert advice.unknown_profiles == ("corporate-cache",)
    assert advice.survivors == () and advice.client_survivors == ()
    assert advice.lines() == [
        "corporate-cache: no checked knowledge: audit it with the client fixes."
    ]


def test_an_unknown_profile_is_bad_input():
    with pytest.raises(BadInput) as raised:
        recommend(["corporate-cache", "no-such-proxy"])
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("unknown proxy profile 'no-such-proxy' (known: ")
    assert "corporate-cache" in message
