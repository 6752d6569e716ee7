import pytest
from mitmproxy.http import Headers
from werkzeug.http import http_date

from proxies import cache_policy as cp

NOW = 1_700_000_000.0


def lifetime(status: int = 200, **headers: str) -> float:
    return cp.freshness_lifetime(status, Headers(**headers), NOW)


def test_no_freshness_information_means_not_fresh():
    assert lifetime() == 0


def test_s_maxage_beats_max_age_beats_expires():
    expires = http_date(NOW + 1000)
    assert lifetime(cache_control="max-age=10, s-maxage=5", expires=expires) == 5
    assert lifetime(cache_control="max-age=10", expires=expires) == 10
    assert lifetime(expires=expires) == 1000


def test_expires_is_relative_to_date_header():
    assert lifetime(expires=http_date(NOW + 100), date=http_date(NOW - 50)) == 150


@pytest.mark.parametrize("expires", ["0", "-1", "garbage", http_date(NOW - 60)])
def test_invalid_or_past_expires_is_already_expired(expires: str):
    assert lifetime(expires=expires) == 0


def test_invalid_expires_disables_heuristics():
    headers = Headers(expires="0")
    assert cp.freshness_lifetime(200, headers, NOW, heuristic_ttl=300) == 0


def test_heuristic_ttl_only_for_heuristically_cacheable_statuses():
    assert cp.freshness_lifetime(200, Headers(), NOW, heuristic_ttl=300) == 300
    assert cp.freshness_lifetime(404, Headers(), NOW, heuristic_ttl=300) == 300
    assert cp.freshness_lifetime(302, Headers(), NOW, heuristic_ttl=300) == 0
    assert cp.freshness_lifetime(500, Headers(), NOW, heuristic_ttl=300) == 0


def test_public_makes_any_status_heuristically_cacheable():
    headers = Headers(cache_control="public")
    assert cp.freshness_lifetime(302, headers, NOW, heuristic_ttl=300) == 300


def test_explicit_freshness_beats_heuristic_ttl():
    headers = Headers(cache_control="max-age=2")
    assert cp.freshness_lifetime(200, headers, NOW, heuristic_ttl=300) == 2


def test_last_modified_fraction():
    headers = Headers(last_modified=http_date(NOW - 1000), date=http_date(NOW))
    assert cp.freshness_lifetime(200, headers, NOW, lm_fraction=0.1) == pytest.approx(100)
    assert cp.freshness_lifetime(200, headers, NOW, lm_fraction=0) == 0
    # heuristic_ttl wins over the Last-Modified rule
    assert cp.freshness_lifetime(200, headers, NOW, heuristic_ttl=7) == 7


def test_last_modified_without_date_uses_now():
    headers = Headers(last_modified=http_date(NOW - 500))
    assert cp.freshness_lifetime(200, headers, NOW, lm_fraction=0.5) == pytest.approx(250)


@pytest.mark.parametrize(
    "cache_control",
    ["no-store", "private", "no-cache", 'no-cache="set-cookie"', "private, max-age=9"],
)
def test_response_directives_that_forbid_storing(cache_control: str):
    assert not cp.is_storable("GET", 200, Headers(), Headers(cache_control=cache_control))


@pytest.mark.parametrize("status", [100, 101, 206, 304])
def test_non_final_partial_and_not_modified_are_not_stored(status: int):
    assert not cp.is_storable("GET", status, Headers(), Headers(cache_control="max-age=60"))


def test_explicit_freshness_allows_any_final_status():
    assert cp.is_storable("GET", 500, Headers(), Headers(cache_control="max-age=60"))


def test_only_get_and_head_are_stored():
    response = Headers(cache_control="max-age=60")
    assert cp.is_storable("GET", 200, Headers(), response)
    assert cp.is_storable("HEAD", 200, Headers(), response)
    assert not cp.is_storable("POST", 200, Headers(), response)


def test_request_no_store_prevents_storing():
    request = Headers(cache_control="no-store")
    assert not cp.is_storable("GET", 200, request, Headers(cache_control="max-age=60"))


def test_vary_star_is_not_stored():
    response = Headers(cache_control="max-age=60", vary="*")
    assert not cp.is_storable("GET", 200, Headers(), response)


@pytest.mark.parametrize(
    ("cache_control", "storable"),
    [("max-age=60", False), ("public, max-age=60", True), ("s-maxage=60", True),
     ("max-age=60, must-revalidate", True)],
)  # fmt: skip
def test_authorization_needs_explicit_permission(cache_control: str, storable: bool):
    request = Headers(authorization="Bearer x")
    response = Headers(cache_control=cache_control)
    assert cp.is_storable("GET", 200, request, response) is storable


def test_request_bypass():
    assert cp.request_bypasses_cache("POST", Headers())
    assert cp.request_bypasses_cache("GET", Headers(cache_control="no-store"))
    assert not cp.request_bypasses_cache("GET", Headers(cache_control="no-cache"))
    assert not cp.request_bypasses_cache("head", Headers())


def test_request_accepts_stored():
    assert cp.request_accepts_stored(Headers())
    assert not cp.request_accepts_stored(Headers(cache_control="no-cache"))
    assert not cp.request_accepts_stored(Headers(pragma="no-cache"))
    # Pragma is ignored once Cache-Control is present (RFC 9111 5.4).
    assert cp.request_accepts_stored(Headers(cache_control="max-stale", pragma="no-cache"))


def test_vary_fields():
    assert cp.vary_fields(Headers()) == ()
    assert cp.vary_fields(Headers(vary="Accept-Encoding, X-User")) == ("accept-encoding", "x-user")
    assert cp.vary_fields(Headers(vary="accept, *")) is None


def test_initial_age():
    assert cp.initial_age(Headers(), NOW) == 0
    assert cp.initial_age(Headers(age="30"), NOW) == 30
    assert cp.initial_age(Headers(age="nonsense"), NOW) == 0
    assert cp.initial_age(Headers(date=http_date(NOW - 40)), NOW) == 40
    assert cp.initial_age(Headers(age="30", date=http_date(NOW - 40)), NOW) == 40
    # A Date from the future (clock skew) must not make the age negative.
    assert cp.initial_age(Headers(date=http_date(NOW + 40)), NOW) == 0
