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
    "cache_control", ["no-store", "private", "private, max-age=9", "NO-STORE", 'private="x"']
)
def test_response_directives_that_forbid_storing(cache_control: str):
    assert not cp.is_storable("GET", 200, Headers(), Headers(cache_control=cache_control))


@pytest.mark.parametrize(
    "cache_control", ["no-cache", 'no-cache="set-cookie"', "no-cache, max-age=60"]
)
def test_no_cache_is_storable_but_stale_at_once(cache_control: str):
    """5.2.2.4: no-cache allows storing; the stored response must be revalidated every time."""
    headers = Headers(cache_control=cache_control)
    assert cp.is_storable("GET", 200, Headers(), headers)
    assert cp.freshness_lifetime(200, headers, NOW, heuristic_ttl=300) == 0
    assert cp.requires_validation(headers)
    assert not cp.requires_validation(Headers(cache_control="max-age=60"))


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


def test_directive_names_are_case_insensitive():
    assert lifetime(cache_control="Max-Age=30") == 30
    assert cp.requires_validation(Headers(cache_control="No-Cache"))


def test_negative_or_bogus_max_age_is_stale():
    assert lifetime(cache_control="max-age=-5") == 0
    # An unparsable max-age is no max-age (werkzeug drops it): no explicit freshness.
    assert lifetime(cache_control="max-age=soon") == 0


def test_response_is_storable_ignores_the_method():
    response = Headers(cache_control="max-age=60")
    assert cp.response_is_storable(200, Headers(), response)
    assert not cp.response_is_storable(200, Headers(cache_control="no-store"), response)


def test_without_directives():
    value = 'no-store, no-cache="Set-Cookie, X", Private, max-age=0'
    assert cp.without_directives(value, ["no-store", "private"]) == (
        'no-cache="Set-Cookie, X", max-age=0'
    )
    assert cp.without_directives("no-store", ["no-store"]) == ""


@pytest.mark.parametrize(
    ("cache_control", "never_stale"),
    [("max-age=5", False), ("max-age=5, must-revalidate", True), ("proxy-revalidate", True),
     ("s-maxage=5", True)],
)  # fmt: skip
def test_never_serve_stale(cache_control: str, never_stale: bool):
    assert cp.never_serve_stale(Headers(cache_control=cache_control)) is never_stale


def test_rfc5861_extensions():
    headers = Headers(cache_control="max-age=1, stale-while-revalidate=30, stale-if-error=600")
    assert cp.stale_while_revalidate(headers) == 30
    assert cp.stale_if_error(headers) == 600
    assert cp.stale_while_revalidate(Headers()) is None
    assert cp.stale_if_error(Headers(cache_control="stale-if-error=x")) is None


def test_validators():
    assert not cp.has_validator(Headers())
    assert cp.has_validator(Headers(etag='"a"'))
    assert cp.has_validator(Headers(last_modified=http_date(NOW)))
    headers = Headers(etag='W/"a"', last_modified=http_date(NOW))
    assert cp.conditional_headers(headers) == {
        "If-None-Match": 'W/"a"',
        "If-Modified-Since": http_date(NOW),
    }
    assert cp.conditional_headers(Headers()) == {}


def test_weak_comparison():
    assert cp.weak_match('W/"a"', '"a"')
    assert cp.weak_match('"a"', 'W/"b", W/"a"')
    assert cp.weak_match('"a"', "*")
    assert not cp.weak_match('"a"', '"b"')
    assert not cp.weak_match(None, '"a"')


def test_weak_match_reads_quoted_tags_that_hold_commas():
    assert cp.weak_match('"a,b"', 'W/"x", "a,b"')
    assert cp.weak_match('W/"v1, rev 2"', '"v1, rev 2"')
    assert not cp.weak_match('"a"', '"a,b"')  # one tag "a,b", not "a" and "b"
    assert not cp.weak_match('"b"', '"a,b", "c"')


def test_not_modified_since():
    headers = Headers(last_modified=http_date(NOW - 10))
    assert cp.not_modified_since(headers, http_date(NOW))
    assert cp.not_modified_since(headers, http_date(NOW - 10))
    assert not cp.not_modified_since(headers, http_date(NOW - 20))
    assert not cp.not_modified_since(headers, "yesterday")
    assert not cp.not_modified_since(Headers(), http_date(NOW))


def test_a_304_validates_the_stored_response_it_names():
    stored = Headers(etag='W/"a"')
    assert cp.validates_stored(stored, Headers(etag='"a"'))
    assert not cp.validates_stored(stored, Headers(etag='"b"'))
    assert cp.validates_stored(stored, Headers())  # no ETag: about what we asked


def test_is_conditional_and_pragma():
    assert cp.is_conditional(Headers(if_none_match='"a"'))
    assert cp.is_conditional(Headers(if_modified_since=http_date(NOW)))
    assert not cp.is_conditional(Headers())
    assert cp.pragma_no_cache(Headers(pragma="foo, No-Cache"))
    assert not cp.pragma_no_cache(Headers(pragma="foo"))


def test_field_view_is_a_case_insensitive_folded_snapshot():
    headers = Headers([(b"Cache-Control", b"max-age=5"), (b"cache-control", b"no-cache")])
    view = cp.FieldView.of(headers)
    assert view["CACHE-CONTROL"] == view.get("cache-control") == "max-age=5, no-cache"
    assert "Cache-Control" in view and "ETag" not in view and len(view) == 1
    headers["ETag"] = '"a"'
    assert "ETag" not in view  # a snapshot
    assert cp.freshness_lifetime(200, view, NOW) == 0
    assert cp.FieldView.of({"Vary": "X"})["vary"] == "X"


# -- found by the HTTP caching test suite (bench/cache_tests.py) -----------------------------


@pytest.mark.parametrize(
    "expires",
    [
        "Thu, 18 Aug 2050 02:01:18 UTC",
        "Thu 18 Aug 2050 02:01:18 GMT",
        "Thu, 18 Aug 50 02:01:18 GMT",
    ],
)
def test_an_expires_werkzeug_would_read_is_invalid_so_expired(expires: str):
    # RFC 9111 5.3 with RFC 9110 5.6.7's grammar: werkzeug reads each as a date in 2050.
    assert lifetime(expires=expires, date=http_date(NOW)) == 0


@pytest.mark.parametrize(
    ("age", "read"),
    [("7200", 7200), ("7200,0", 7200), ("7200, 0", 7200), ("0,7200", 0), ("3600, 3600", 3600),
     ("abc", None), ("-7200", None), ("7200.0", None), ("7200;foo=bar", None), ("", None)],
)  # fmt: skip
def test_age_counts_by_its_first_member_and_an_invalid_one_is_ignored(age: str, read: int | None):
    # RFC 9111 5.1: several Age lines fold into a list; its first member counts.
    assert cp.age_header(Headers(age=age)) == read


def test_age_over_two_lines_counts_by_the_first():
    assert cp.age_header(Headers([(b"Age", b"7200"), (b"Age", b"0")])) == 7200


def test_must_understand_stores_only_statuses_the_cache_knows():
    cc = Headers(cache_control="max-age=3600, must-understand, no-store")
    assert not cp.response_is_storable(599, Headers(), cc)
    # 5.2.2.3: a cache that understands the status ignores the no-store sent along.
    assert cp.response_is_storable(200, Headers(), cc)
    assert not cp.response_is_storable(200, Headers(), Headers(cache_control="no-store"))


def test_fields_named_in_connection_are_not_stored():
    headers = Headers(connection="A, b", a="1", b="2", c="3")
    assert {"a", "b", "connection", "transfer-encoding"} <= cp.not_stored_fields(headers)
    assert "c" not in cp.not_stored_fields(headers)
