"""The four real products' own cache rules (Varnish's built-in VCL, HAProxy's cache, Apache
mod_cache, Traffic Server's required_headers), each against the RFC 9111 rule it departs from.

Every test drives a real SharedCache (mitmproxy's taddons/tflow, a fake clock, a stand-in
origin that answers conditional requests) with the misbehaviours built from their registry
names, as the product's profile lists them. `lab verify` checks the same profiles against the
products themselves.
"""

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from mitmproxy import http
from mitmproxy.test import tflow, tutils
from werkzeug.http import http_date

from proxies import profile as profiles
from proxies.misbehaviours import MisbehaviourError, build, build_one
from proxies.misbehaviours._cache_rules import REFRESH_FLOW
from tests.test_shared_cache import START, URL, Lab, make_lab, outcome

# Registered and documented: checked with the other cache misbehaviours in test_cache_misbehaviours.
PRODUCT_MISBEHAVIOURS = [
    "apache-mod-cache",
    "haproxy-cache",
    "trafficserver-required-headers",
    "trafficserver-invalidation",
    "trafficserver-304-update",
    "trafficserver-field-parsing",
    "varnish-builtin-vcl",
    "varnish-range-check",
]
DAY_OLD = {"Last-Modified": http_date(START - 86400), "Date": http_date(START)}


@pytest.fixture
def lab() -> Iterator[Lab]:
    yield from make_lab()


def as_profile(lab: Lab, name: str) -> Lab:
    """The lab's cache with the misbehaviours of the profile `name`, in its order."""
    return lab.with_misbehaviours(*build(profiles.read(profiles.profile_path(name)).misbehaviours))


def use(lab: Lab, *specs: dict[str, Any]) -> Lab:
    return lab.with_misbehaviours(*build(list(specs)))


def twice(lab: Lab, url: str = URL, **kwargs: Any) -> tuple[str, str]:
    """What the cache did with the first and the second of two identical requests."""
    return outcome(lab.fetch(url, **kwargs)), outcome(lab.fetch(url, **kwargs))


def fresh_for(lab: Lab, seconds: float, **kwargs: Any) -> bool:
    """Stored now, a hit `seconds` - 1 later and a miss at `seconds`."""
    assert outcome(lab.fetch(**kwargs)) == "STORE"
    lab.advance(seconds - 1)
    hit = outcome(lab.fetch(**kwargs)) == "HIT"
    lab.advance(1)
    return hit and outcome(lab.fetch(**kwargs)) != "HIT"


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "varnish-builtin-vcl", "ttl": 120},
        {"name": "haproxy-cache", "max_age": 0},
        {"name": "apache-mod-cache", "default_expire": -1},
        {"name": "apache-mod-cache", "CacheIgnoreQueryString": True},
        {"name": "trafficserver-required-headers", "required_headers": 3},
        {"name": "trafficserver-required-headers", "heuristic_lm_factor": 2},
    ],
)  # fmt: skip
def test_bad_parameters_are_refused(spec: dict[str, Any]):
    with pytest.raises(MisbehaviourError, match=spec["name"]):
        build_one(spec)


# -- Varnish: the built-in VCL --------------------------------------------------------------


def varnish_ttl_then_grace(lab: Lab, **kwargs: Any) -> bool:
    """Fresh for default_ttl (120 s), then delivered stale in default_grace (10 s) while a
    background fetch refreshes it, then fetched."""
    as_profile(lab, "varnish-builtin")
    assert outcome(lab.fetch(**kwargs)) == "STORE"
    lab.advance(119)
    fresh = lab.fetch(**kwargs)
    lab.advance(1)
    graced = lab.fetch(**kwargs)
    lab.advance(10.5)
    gone = lab.fetch(**kwargs)
    return (
        outcome(fresh) == "HIT"
        and not fresh.metadata.get("cache_stale")
        and graced.metadata.get("cache_stale") is True
        and len(lab.refreshes) == 1
        and outcome(gone) != "HIT"
    )


def test_varnish_keeps_a_header_less_answer_default_ttl_then_grace(lab: Lab):
    assert varnish_ttl_then_grace(lab)


@pytest.mark.parametrize(
    "headers",
    [
        {"Pragma": "no-cache"},  # not read at all
        {"Expires": "0"},  # unparsable: no Expires, default_ttl
        DAY_OLD,  # no Last-Modified heuristic: the same flat TTL
    ],
)
def test_varnish_does_not_read_pragma_invalid_expires_or_last_modified(lab: Lab, headers: dict):
    assert varnish_ttl_then_grace(lab, response_headers=headers)


@pytest.mark.parametrize(
    "headers",
    [
        {"Cache-Control": "no-cache"},  # RFC 9111 would store it and revalidate
        {"Cache-Control": 'no-cache="Set-Cookie", max-age=60'},  # a substring match
        {"Cache-Control": "max-age=60, private"},
        {"Cache-Control": "no-store"},
        {"Cache-Control": "max-age=0"},  # ttl <= 0: hit-for-miss
        {"Expires": http_date(START - 10), "Date": http_date(START)},
        {"Set-Cookie": "session=1", "Cache-Control": "max-age=60"},
        {"Vary": "*"},
        {"Surrogate-Control": "no-store", "Cache-Control": "max-age=60"},
    ],
)
def test_varnish_makes_these_hit_for_miss(lab: Lab, headers: dict):
    as_profile(lab, "varnish-builtin")
    assert twice(lab, response_headers=headers) == ("MISS", "MISS")


@pytest.mark.parametrize("header", [{"Cookie": "session=1"}, {"Authorization": "Bearer x"}])
def test_varnish_passes_requests_with_cookie_or_authorization(lab: Lab, header: dict):
    as_profile(lab, "varnish-builtin")
    headers = {"Cache-Control": "public, s-maxage=60"}  # RFC 9111 3.5 would store this
    assert twice(lab, request_headers=header, response_headers=headers) == ("BYPASS", "BYPASS")
    assert len(lab.origin_hits) == 2


def test_varnish_ignores_the_clients_no_cache(lab: Lab):
    as_profile(lab, "varnish-builtin")
    lab.fetch()
    reload = lab.fetch(request_headers={"Cache-Control": "no-cache", "Pragma": "no-cache"})
    assert outcome(reload) == "HIT"


@pytest.mark.parametrize("status", [201, 303, 308, 403, 500, 503, 599])
def test_varnish_never_stores_a_status_outside_rfc2616_ttl(lab: Lab, status: int):
    # RFC 9111 would store each with its own max-age; RFC2616_Ttl's default case gives -1.
    as_profile(lab, "varnish-builtin")
    headers = {"Cache-Control": "max-age=60"}
    assert twice(lab, status=status, response_headers=headers) == ("MISS", "MISS")


@pytest.mark.parametrize("status", [302, 307])
def test_varnish_stores_a_302_or_307_only_with_its_own_lifetime(lab: Lab, status: int):
    as_profile(lab, "varnish-builtin")
    assert twice(lab, status=status) == ("MISS", "MISS")  # no default_ttl for them
    own = {"Cache-Control": "max-age=60"}
    assert twice(lab, f"{URL}/own", status=status, response_headers=own) == ("STORE", "HIT")


def test_varnish_reads_no_cache_control_refusal_beside_surrogate_control(lab: Lab):
    as_profile(lab, "varnish-builtin")
    headers = {"Cache-Control": "no-store, private", "Surrogate-Control": "max-age=60"}
    assert twice(lab, response_headers=headers) == ("STORE", "HIT")
    lab.advance(119)  # default_ttl
    assert lab.fetch().metadata.get("cache_stale") is None


@pytest.mark.parametrize("vary", ["*, *", ", *", "*, Foo"])
def test_varnish_takes_a_star_inside_a_vary_list_for_a_header_name(lab: Lab, vary: str):
    as_profile(lab, "varnish-builtin")
    headers = {"Vary": vary, "Cache-Control": "max-age=60"}
    foo = {"Foo": "1"}
    assert twice(lab, request_headers=foo, response_headers=headers) == ("STORE", "HIT")
    other = lab.fetch(request_headers={"Foo": "2"}, response_headers=headers)
    assert outcome(other) == ("HIT" if "Foo" not in vary else "STORE")


def test_varnish_takes_a_304_with_another_etag_and_its_content_md5(lab: Lab):
    as_profile(lab, "varnish-builtin")
    first = {"Cache-Control": "max-age=10", "ETag": '"v1"', "Content-MD5": "old"}
    lab.fetch(response_headers=first)
    lab.advance(30)  # past ttl and grace: fetched, conditionally
    other = {"Cache-Control": "max-age=10", "ETag": '"v2"', "Content-MD5": "new"}
    merged = lab.fetch(response_headers=other, status=304, content=b"")
    assert outcome(merged) == "REVALIDATED"  # RFC 9111 4.3.4: not ours, passed on
    assert (merged.response.headers["ETag"], merged.response.headers["Content-MD5"]) == (
        '"v2"',
        "new",
    )
    assert outcome(lab.fetch()) == "HIT"


def test_varnish_stale_answer_waits_for_its_background_fetch(lab: Lab):
    as_profile(lab, "varnish-builtin")
    swu = next(m for m in lab.addon.misbehaviours() if m.name == "stale-while-updating")
    lab.fetch(response_headers={"Cache-Control": "max-age=1", "ETag": '"a"'})
    lab.advance(2)  # in grace
    stale = lab.fetch()
    (refresh,) = lab.refreshes
    assert stale.metadata[REFRESH_FLOW] is refresh
    assert swu.response(lab.fetch()) is None  # the second stale hit started no refresh

    async def held_until_the_refresh_is_back() -> None:
        held = asyncio.ensure_future(swu.response(stale))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not held.done()
        refresh.response = tutils.tresp(status_code=304)
        await asyncio.wait_for(held, timeout=5)

    asyncio.run(held_until_the_refresh_is_back())


def range_checked(request_headers: dict[str, str], response_headers: dict[str, str]) -> int:
    (check,) = build([{"name": "varnish-range-check"}])
    flow = tflow.tflow(resp=True)
    flow.request.headers.update(request_headers)
    flow.response.headers.update(response_headers)
    check.response(flow)
    return flow.response.status_code


def test_varnish_fails_a_fetch_with_a_content_range_it_did_not_ask_for():
    assert range_checked({}, {"Content-Range": "bytes 0-3/4"}) == 503
    assert range_checked({"Range": "bytes=0-3"}, {"Content-Range": "bytes 0-3/4"}) == 200
    assert range_checked({}, {}) == 200


# -- HAProxy: the cache section ----------------------------------------------------------------


def test_haproxy_never_stores_an_answer_without_expiry_or_validator(lab: Lab):
    as_profile(lab, "haproxy-cache")
    assert twice(lab) == ("MISS", "MISS")


@pytest.mark.parametrize("validator", [{"ETag": '"v1"'}, DAY_OLD])
def test_haproxy_keeps_a_validator_only_answer_its_max_age(lab: Lab, validator: dict):
    # No heuristic fraction: a day-old Last-Modified gets max-age (60), not 10% of a day.
    assert fresh_for(as_profile(lab, "haproxy-cache"), 60, response_headers=validator)


@pytest.mark.parametrize(("cache_control", "seconds"), [("max-age=30", 30), ("max-age=600", 60)])
def test_haproxy_caps_explicit_expiry_at_max_age(lab: Lab, cache_control: str, seconds: int):
    headers = {"Cache-Control": cache_control}
    assert fresh_for(as_profile(lab, "haproxy-cache"), seconds, response_headers=headers)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Cache-Control": "no-cache", "ETag": '"v1"'}, 200),
        ({"Cache-Control": "max-age=0", "ETag": '"v1"'}, 200),
        ({"Pragma": "no-cache", "Cache-Control": "max-age=60"}, 200),
        ({"Cache-Control": "max-age=60", "Vary": "Accept-Encoding"}, 200),  # process-vary off
        ({"Expires": "0"}, 200),  # invalid: expired
        ({"Cache-Control": "max-age=60"}, 404),  # only 200
    ],
)
def test_haproxy_refuses(lab: Lab, headers: dict, status: int):
    as_profile(lab, "haproxy-cache")
    assert outcome(lab.fetch(response_headers=headers, status=status)) == "MISS"
    assert outcome(lab.fetch(response_headers=headers, status=status)) == "MISS"


def test_haproxy_caches_only_get(lab: Lab):
    as_profile(lab, "haproxy-cache")
    headers = {"Cache-Control": "max-age=60"}
    assert twice(lab, method="HEAD", response_headers=headers) == ("BYPASS", "BYPASS")


@pytest.mark.parametrize(
    "request_headers",
    [{"Cache-Control": "no-cache"}, {"Cache-Control": "max-age=0"}, {"Pragma": "no-cache"}],
)
def test_haproxy_a_request_that_ignores_the_cache_still_feeds_it(lab: Lab, request_headers: dict):
    # Checked on HAProxy 2.6.12: TX_CACHE_IGNORE keeps the request from the stored copy only.
    as_profile(lab, "haproxy-cache")
    headers = {"Cache-Control": "max-age=60"}
    assert outcome(lab.fetch(response_headers=headers)) == "STORE"
    assert outcome(lab.fetch(request_headers=request_headers, response_headers=headers)) == "STORE"
    assert outcome(lab.fetch()) == "HIT"


@pytest.mark.parametrize(
    ("cache_control", "stored"), [("max-age=60", False), ("public, max-age=60", True)]
)
def test_haproxy_authorization_is_never_served_and_stored_only_if_public(
    lab: Lab, cache_control: str, stored: bool
):
    as_profile(lab, "haproxy-cache")
    auth = {"Authorization": "Basic eDp5"}
    headers = {"Cache-Control": cache_control}
    lab.fetch(request_headers=auth, response_headers=headers)
    assert (outcome(lab.fetch(response_headers=headers)) == "HIT") is stored
    assert outcome(lab.fetch(request_headers=auth, response_headers=headers)) != "HIT"


def test_haproxy_no_cache_set_cookie_keeps_it_out(lab: Lab):
    as_profile(lab, "haproxy-cache")
    headers = {"Cache-Control": 'no-cache="Set-Cookie", max-age=60'}  # TX_CACHE_COOK cleared
    assert twice(lab, response_headers=headers) == ("MISS", "MISS")


# -- Apache httpd: mod_cache -------------------------------------------------------------------


def test_apache_never_stores_a_200_without_any_validator_or_expiry(lab: Lab):
    as_profile(lab, "apache-mod-cache")
    assert twice(lab) == ("MISS", "MISS")


@pytest.mark.parametrize(
    ("last_modified_age", "lifetime"),
    [(86400, 8640), (100 * 86400, 86400)],  # 10% of the age, at most CacheMaxExpire (a day)
)
def test_apache_last_modified_factor_within_max_expire(lab: Lab, last_modified_age, lifetime):
    headers = {"Last-Modified": http_date(START - last_modified_age), "Date": http_date(START)}
    assert fresh_for(as_profile(lab, "apache-mod-cache"), lifetime, response_headers=headers)


def test_apache_an_etag_alone_gets_default_expire(lab: Lab):
    assert fresh_for(as_profile(lab, "apache-mod-cache"), 3600, response_headers={"ETag": '"v"'})


@pytest.mark.parametrize("headers", [{"Expires": "0"}, {"Expires": "0"} | DAY_OLD])
def test_apache_does_not_store_a_broken_expires(lab: Lab, headers: dict):
    as_profile(lab, "apache-mod-cache")
    assert twice(lab, response_headers=headers) == ("MISS", "MISS")


def test_apache_refuses_a_query_url_without_explicit_expiry(lab: Lab):
    as_profile(lab, "apache-mod-cache")
    assert twice(lab, f"{URL}?task_id=1", response_headers=DAY_OLD) == ("MISS", "MISS")
    explicit = {"Cache-Control": "max-age=60"}
    assert twice(lab, f"{URL}?task_id=1", response_headers=explicit) == ("STORE", "HIT")


@pytest.mark.parametrize(
    "request_headers", [{"Authorization": "Basic eDp5"}, {"Authorization": "Bearer x"}]
)
def test_apache_leaves_requests_with_authorization_alone(lab: Lab, request_headers: dict):
    # The quick handler runs before authentication: no lookup, no store, even for public.
    as_profile(lab, "apache-mod-cache")
    headers = {"Cache-Control": "public, max-age=60"}
    assert twice(lab, request_headers=request_headers, response_headers=headers) == (
        "BYPASS",
        "BYPASS",
    )
    assert outcome(lab.fetch(response_headers=headers)) == "STORE"  # nothing was stored


@pytest.mark.parametrize(
    ("headers", "second"),
    [
        ({"Pragma": "no-cache", "Cache-Control": "max-age=60"}, "MISS"),  # no-cache, no validator
        ({"Pragma": "no-cache"} | DAY_OLD, "REVALIDATED"),
        ({"Cache-Control": 'no-cache="Set-Cookie", max-age=60'}, "HIT"),  # fields only
        ({"Cache-Control": "must-revalidate, max-age=60"}, "HIT"),
        ({"Cache-Control": "must-revalidate, max-age=0"}, "MISS"),
    ],
)
def test_apache_pragma_and_no_cache_forms(lab: Lab, headers: dict, second: str):
    as_profile(lab, "apache-mod-cache")
    lab.fetch(response_headers=headers)
    assert outcome(lab.fetch(response_headers=headers)) == second


def test_apache_no_cache_is_stored_and_revalidated(lab: Lab):
    as_profile(lab, "apache-mod-cache")
    headers = {"Cache-Control": "no-cache", "ETag": '"v1"'}
    assert outcome(lab.fetch(response_headers=headers)) == "STORE"
    assert outcome(lab.fetch(response_headers=headers)) == "REVALIDATED"


def test_apache_ignore_query_string_shares_one_entry_between_queries(lab: Lab):
    as_profile(lab, "apache-ignore-query")
    first = lab.fetch(f"{URL}?task_id=1", response_headers=DAY_OLD, content=b"task 1")
    assert outcome(first) == "STORE"
    other = lab.fetch(f"{URL}?task_id=2", response_headers=DAY_OLD, content=b"task 2")
    assert outcome(other) == "HIT" and other.response.content == b"task 1"


@pytest.mark.parametrize(
    ("method", "status", "dropped"),
    [
        ("POST", 201, True),
        ("PUT", 200, True),
        ("DELETE", 204, True),
        ("POST", 302, False),  # only a 2xx answer invalidates
        ("M-SEARCH", 200, False),  # only PUT, POST and DELETE
    ],
)
def test_apache_invalidates_on_2xx_to_put_post_delete(lab, method, status, dropped):
    as_profile(lab, "apache-mod-cache")
    lab.fetch(response_headers={"Cache-Control": "max-age=60"})
    lab.fetch(method=method, status=status)
    assert outcome(lab.fetch()) == ("MISS" if dropped else "HIT")


@pytest.mark.parametrize("field", ["Location", "Content-Location"])
def test_apache_invalidates_only_the_request_url(lab: Lab, field: str):
    # RFC 9111 4.4 lets a cache drop the same-origin Location too; mod_cache never does.
    as_profile(lab, "apache-mod-cache")
    other = "http://app.test:8080/api/tasks/43/status"
    lab.fetch(other, response_headers={"Cache-Control": "max-age=60"})
    lab.fetch(method="POST", response_headers={field: "/api/tasks/43/status"}, status=201)
    assert outcome(lab.fetch(other)) == "HIT"


def test_apache_a_stored_answer_is_dated_when_served(lab: Lab):
    as_profile(lab, "apache-mod-cache")
    headers = {"Cache-Control": "max-age=60", "Date": http_date(START)}
    lab.fetch(response_headers=headers)
    lab.advance(10)
    hit = lab.fetch(response_headers=headers)
    assert outcome(hit) == "HIT"
    assert hit.response.headers["Date"] == http_date(START + 10)
    assert hit.response.headers["Age"] == "10"


# -- Traffic Server: required_headers ----------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, DAY_OLD, {"Pragma": "no-cache"}, {"ETag": '"v"'}])
def test_trafficserver_default_stores_only_an_explicit_lifetime(lab: Lab, headers: dict):
    as_profile(lab, "trafficserver-default")
    assert twice(lab, response_headers=headers) == ("MISS", "MISS")
    lab.origin_hits.clear()
    assert fresh_for(lab, 60, url=URL + "/x", response_headers={"Cache-Control": "max-age=60"})


def test_trafficserver_a_responses_pragma_no_cache_is_not_stored(lab: Lab):
    as_profile(lab, "trafficserver-default")
    headers = {"Pragma": "no-cache", "Cache-Control": "max-age=60"}
    assert twice(lab, response_headers=headers) == ("MISS", "MISS")


@pytest.mark.parametrize(("cache_control", "stored"), [("max-age=60", True), ("", False)])
def test_trafficserver_stores_an_authorized_answer_with_max_age(lab: Lab, cache_control, stored):
    as_profile(lab, "trafficserver-default")
    headers = {"Cache-Control": cache_control, "ETag": '"v"'} if cache_control else {}
    lab.fetch(request_headers={"Authorization": "Basic eDp5"}, response_headers=headers)
    assert (outcome(lab.fetch(response_headers=headers)) == "HIT") is stored


def test_trafficserver_default_ignores_the_clients_no_cache(lab: Lab):
    as_profile(lab, "trafficserver-default")
    lab.fetch(response_headers={"Cache-Control": "max-age=60"})
    assert outcome(lab.fetch(request_headers={"Cache-Control": "no-cache"})) == "HIT"


@pytest.mark.parametrize(
    ("level", "headers", "lifetime"),
    [
        (1, DAY_OLD, 8640),  # 10% of a day, within [1 h, 1 day]
        (1, {"Last-Modified": http_date(START - 600), "Date": http_date(START)}, 3600),  # min
        (0, {}, 3600),  # nothing at all: heuristic_min_lifetime
    ],
)
def test_trafficserver_heuristic_below_level_two(lab: Lab, level: int, headers: dict, lifetime):
    use(lab, {"name": "trafficserver-required-headers", "required_headers": level})
    assert fresh_for(lab, lifetime, response_headers=headers)


def test_trafficserver_level_one_still_refuses_a_header_less_answer(lab: Lab):
    use(lab, {"name": "trafficserver-required-headers", "required_headers": 1})
    assert twice(lab) == ("MISS", "MISS")


# -- HAProxy 2.6.12's src/cache.c: Age, max-age parsing, revalidation, invalidation ----------


@pytest.mark.parametrize(
    ("age", "stored"),
    [
        ("30", True),
        ("0", False),  # strl2llrc gives 0: not > 0
        ("abc", False),
        ("-7200", False),
        ("7200;foo=bar", False),
        ("0, 7200", False),  # only the first value is read
        ("3600", False),  # more than the answer's own max-age
    ],
)
def test_haproxy_stores_only_a_positive_age_within_the_answers_lifetime(
    lab: Lab, age: str, stored: bool
):
    as_profile(lab, "haproxy-cache")
    headers = {"Cache-Control": "max-age=600", "Age": age}
    assert (outcome(lab.fetch(response_headers=headers)) == "STORE") is stored


def test_haproxy_age_adds_to_the_served_age_but_not_to_the_lifetime(lab: Lab):
    as_profile(lab, "haproxy-cache")
    headers = {"Cache-Control": "max-age=600", "Age": "500", "Date": http_date(START - 900)}
    lab.fetch(response_headers=headers)
    lab.advance(10)
    hit = lab.fetch()
    assert outcome(hit) == "HIT" and hit.response.headers["Age"] == "510"  # Date not read
    lab.advance(49)
    assert outcome(lab.fetch()) == "HIT"  # capped at 60 s in the cache, whatever Age said
    lab.advance(1)
    assert outcome(lab.fetch(response_headers=headers)) == "STORE"


@pytest.mark.parametrize("cache_control", ["max-age='3600'", "max-age=-1", "s-maxage=x"])
def test_haproxy_an_unreadable_max_age_is_never_served(lab: Lab, cache_control: str):
    as_profile(lab, "haproxy-cache")
    headers = {"Cache-Control": cache_control, "ETag": '"v1"'}
    assert twice(lab, response_headers=headers) == ("MISS", "MISS")


def test_haproxy_fetches_a_stale_entry_again_without_validators(lab: Lab):
    as_profile(lab, "haproxy-cache")
    headers = {"Cache-Control": "max-age=10", "ETag": '"v1"'}
    lab.fetch(response_headers=headers)
    lab.advance(11)
    assert outcome(lab.fetch(response_headers=headers)) == "STORE"
    assert "If-None-Match" not in lab.origin_requests[-1].headers


def test_haproxy_invalidates_the_requests_own_url_only(lab: Lab):
    as_profile(lab, "haproxy-cache")
    fresh = {"Cache-Control": "max-age=60"}
    other = f"{URL}/other"
    lab.fetch(response_headers=fresh)
    lab.fetch(other, response_headers=fresh)
    lab.fetch(method="POST", response_headers={"Location": other, "Content-Location": other})
    assert outcome(lab.fetch(other)) == "HIT"  # RFC 9111 4.4 lets a cache drop it too
    assert outcome(lab.fetch(response_headers=fresh)) == "STORE"


def test_haproxy_stores_the_fields_connection_names(lab: Lab):
    as_profile(lab, "haproxy-cache")
    headers = {"Cache-Control": "max-age=60", "Connection": "a", "A": "1"}
    lab.fetch(response_headers=headers)
    hit = lab.fetch()
    assert outcome(hit) == "HIT" and hit.response.headers["A"] == "1"


# -- Traffic Server 9.2: invalidation, stored fields, 304 merge, field parsing ------------------


def test_trafficserver_invalidates_after_its_methods_and_only_the_own_url(lab: Lab):
    as_profile(lab, "trafficserver-default")
    fresh = {"Cache-Control": "max-age=60"}
    other = f"{URL}/other"
    lab.fetch(response_headers=fresh)
    lab.fetch(other, response_headers=fresh)
    lab.fetch(method="M-SEARCH")
    assert outcome(lab.fetch()) == "HIT"  # an unknown method deletes nothing
    lab.fetch(method="PUT", status=201, response_headers={"Content-Location": other})
    assert outcome(lab.fetch(other)) == "HIT"
    assert outcome(lab.fetch(response_headers=fresh)) == "STORE"


def test_trafficserver_stores_no_set_cookie_but_the_fields_connection_names(lab: Lab):
    as_profile(lab, "trafficserver-default")
    headers = {"Cache-Control": "max-age=60", "Set-Cookie": "a=b", "Connection": "a", "A": "1"}
    assert lab.fetch(response_headers=headers).response.headers["Set-Cookie"] == "a=b"
    hit = lab.fetch()
    assert outcome(hit) == "HIT" and "Set-Cookie" not in hit.response.headers
    assert hit.response.headers["A"] == "1"


def test_trafficserver_merges_a_304_by_its_own_list(lab: Lab):
    as_profile(lab, "trafficserver-default")
    first = {
        "Cache-Control": "max-age=10",
        "ETag": '"v1"',
        "Content-MD5": "old",
        "Content-Type": "text/plain",
    }
    lab.fetch(response_headers=first)
    lab.advance(11)
    second = {**first, "Content-MD5": "new", "Content-Type": "text/html"}
    again = lab.fetch(response_headers=second)
    assert outcome(again) == "REVALIDATED"
    assert again.response.headers["Content-MD5"] == "new"  # RFC 9111 3.2 keeps "old"
    assert again.response.headers["Content-Type"] == "text/plain"  # RFC 9111 takes the 304's
    lab.advance(11)
    other = {"Cache-Control": "max-age=10", "ETag": '"v2"'}
    relabelled = lab.fetch(response_headers=other, status=304, content=b"")
    assert outcome(relabelled) == "REVALIDATED" and relabelled.response.status_code == 200
    assert relabelled.response.headers["ETag"] == '"v2"'


@pytest.mark.parametrize(
    ("headers", "cached"),
    [
        ({"Cache-Control": "max-age='3600'"}, True),  # mime_parse_integer skips the quote
        ({"Cache-Control": "max-age=3600", "Age": "7200.0"}, False),  # Age 7200
        ({"Cache-Control": "max-age=3600", "Age": "7200;foo=bar"}, False),
        ({"Cache-Control": "max-age=3600", "Age": "abc"}, True),  # Age 0
    ],
)
def test_trafficserver_reads_numbers_by_their_digits(lab: Lab, headers: dict, cached: bool):
    as_profile(lab, "trafficserver-default")
    lab.fetch(response_headers=headers)
    assert (outcome(lab.fetch(response_headers=headers)) == "HIT") is cached


def test_trafficserver_reads_the_first_vary_line_only(lab: Lab):
    as_profile(lab, "trafficserver-default")
    fields = http.Headers([(b"Cache-Control", b"max-age=60"), (b"Vary", b""), (b"Vary", b"*")])
    first = tflow.tflow()
    first.request.url = URL
    lab.addon.request(first)
    first.response = tutils.tresp(headers=fields, content=b"body")
    lab.addon.response(first)
    assert outcome(first) == "STORE"  # RFC 9110 5.3: one list, "*": never reused
    assert outcome(lab.fetch()) == "HIT"


def test_trafficserver_stores_an_answer_to_authorization_with_expires(lab: Lab):
    as_profile(lab, "trafficserver-default")
    headers = {"Expires": http_date(START + 3600), "Date": http_date(START)}
    assert outcome(lab.fetch(request_headers={"Authorization": "x"}, response_headers=headers))
    assert outcome(lab.fetch()) == "HIT"


@pytest.mark.parametrize(("status", "served"), [(599, 500), (499, 500), (299, 500), (404, 404)])
def test_apache_serves_a_stored_status_it_has_no_line_for_as_500(lab, status, served):
    # http_protocol.c status_lines: no line for 299, 499, 599; ap_get_status_line gives 500's.
    as_profile(lab, "apache-mod-cache")
    headers = {"Cache-Control": "max-age=60"}
    first = lab.fetch(status=status, response_headers=headers)
    assert outcome(first) == "STORE" and first.response.status_code == status
    second = lab.fetch(status=status, response_headers=headers)
    assert outcome(second) == "HIT" and second.response.status_code == served


def test_apache_does_not_serve_a_204_from_the_store(lab: Lab):
    as_profile(lab, "apache-mod-cache")
    headers = {"Cache-Control": "max-age=60"}
    assert twice(lab, status=204, response_headers=headers, content=b"") == ("MISS", "MISS")
