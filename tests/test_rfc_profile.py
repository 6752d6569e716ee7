"""The `rfc` profile, rule by rule against RFC 9111, with the addons built from the profile file
itself: proxies/profiles/rfc.toml loaded by lab.data.profiles, its options and misbehaviours set on
the lab's own addon chain (lab_addons.make_addons), as mitmdump gets them."""

import json
from collections.abc import Iterator

import pytest
from mitmproxy.test import taddons
from werkzeug.http import http_date

from lab.data import profiles
from proxies import lab_addons
from proxies.misbehaving import Misbehaving
from proxies.shared_cache import SharedCache
from tests.test_shared_cache import START, URL, FakeClock, Lab, outcome

MAX_AGE_60 = {"Cache-Control": "max-age=60"}


@pytest.fixture
def lab() -> Iterator[Lab]:
    profile = profiles.load("rfc")
    addons = lab_addons.make_addons()
    misbehaving = next(a for a in addons if isinstance(a, Misbehaving))
    cache = next(a for a in addons if isinstance(a, SharedCache))
    clock = FakeClock()
    cache.clock = clock
    with taddons.context(*addons) as tctx:
        tctx.configure(misbehaving, misbehaviours=json.dumps(profile.misbehaviours))
        tctx.configure(cache, **profile.options)
        lab = Lab(cache, tctx, clock)
        cache.refresh_in_background = lab.refreshes.append
        yield lab


def test_the_profile_is_plain_rfc(lab: Lab):
    assert profiles.load("rfc").misbehaviours == []
    assert lab.addon.misbehaviours() == []
    assert lab.addon.settings.heuristic_ttl == 0
    assert lab.addon.settings.lm_fraction == pytest.approx(0.1)


# -- 3. Storing responses -------------------------------------------------------------------


def test_3_no_freshness_and_no_validator_is_not_stored(lab: Lab):
    """Our status answer: nothing to go on, so every poll reaches the origin."""
    assert outcome(lab.fetch()) == "MISS"
    assert outcome(lab.fetch(response_headers={"Pragma": "no-cache"})) == "MISS"
    assert len(lab.origin_hits) == 2


@pytest.mark.parametrize("status", [200, 203, 302, 404, 500])
def test_3_explicit_freshness_makes_any_final_status_storable(lab: Lab, status: int):
    assert outcome(lab.fetch(status=status, response_headers=MAX_AGE_60)) == "STORE"


@pytest.mark.parametrize("status", [206, 304])
def test_3_partial_and_not_modified_are_never_stored(lab: Lab, status: int):
    assert outcome(lab.fetch(status=status, response_headers=MAX_AGE_60)) == "MISS"


def test_3_only_get_and_head(lab: Lab):
    assert outcome(lab.fetch(method="POST", response_headers=MAX_AGE_60)) == "BYPASS"
    assert outcome(lab.fetch(method="HEAD", response_headers=MAX_AGE_60)) == "STORE"


def test_3_5_authorization_needs_permission(lab: Lab):
    auth = {"Authorization": "Bearer x"}
    lab.fetch(request_headers=auth, response_headers=MAX_AGE_60)
    assert outcome(lab.fetch(request_headers=auth, response_headers=MAX_AGE_60)) == "MISS"
    lab.fetch(request_headers=auth, response_headers={"Cache-Control": "s-maxage=60"})
    assert outcome(lab.fetch(request_headers=auth)) == "HIT"


def test_5_2_2_5_no_store_is_never_stored(lab: Lab):
    assert outcome(lab.fetch(response_headers={"Cache-Control": "no-store, max-age=60"})) == "MISS"
    lab.fetch(response_headers=MAX_AGE_60)
    assert outcome(lab.fetch(request_headers={"Cache-Control": "no-store"})) == "BYPASS"


def test_5_2_2_7_private_is_never_stored_by_a_shared_cache(lab: Lab):
    assert outcome(lab.fetch(response_headers={"Cache-Control": "private, max-age=60"})) == "MISS"
    assert outcome(lab.fetch(response_headers={"Cache-Control": "private"})) == "MISS"


# -- 4.2 Freshness --------------------------------------------------------------------------


def test_4_2_1_s_maxage_beats_max_age_beats_expires(lab: Lab):
    expires = {"Expires": http_date(START + 1000), "Date": http_date(START)}
    lab.fetch(f"{URL}/1", response_headers={**expires, "Cache-Control": "max-age=100, s-maxage=5"})
    lab.fetch(f"{URL}/2", response_headers={**expires, "Cache-Control": "max-age=100"})
    lab.fetch(f"{URL}/3", response_headers=expires)
    lifetimes = [lab.addon.entries[("GET", f"{URL}/{n}")].lifetime for n in (1, 2, 3)]
    assert lifetimes == [5, 100, 1000]


def test_4_2_1_expires_is_relative_to_date(lab: Lab):
    lab.fetch(response_headers={"Expires": http_date(START + 60), "Date": http_date(START - 30)})
    assert lab.addon.entries[("GET", URL)].lifetime == 90


@pytest.mark.parametrize("expires", ["0", "-1", "tomorrow", http_date(START - 60)])
def test_5_3_invalid_or_past_expires_is_already_expired(lab: Lab, expires: str):
    assert outcome(lab.fetch(response_headers={"Expires": expires})) == "MISS"


def test_4_2_2_heuristic_is_a_tenth_of_the_last_modified_age(lab: Lab):
    headers = {"Last-Modified": http_date(START - 86400), "Date": http_date(START)}
    assert outcome(lab.fetch(response_headers=headers)) == "STORE"
    assert lab.addon.entries[("GET", URL)].lifetime == pytest.approx(8640)  # 2.4 h
    lab.advance(8639)
    assert outcome(lab.fetch()) == "HIT"


def test_4_2_3_age_counts_upstream_age_and_time_in_cache(lab: Lab):
    lab.fetch(response_headers={"Cache-Control": "max-age=100", "Age": "20"})
    lab.advance(5)
    hit = lab.fetch()
    assert hit.response.headers["Age"] == "25"
    lab.advance(75)  # age 100: stale
    assert outcome(lab.fetch()) == "MISS"


# -- 4.1 Vary -------------------------------------------------------------------------------


def test_4_1_vary(lab: Lab):
    headers = {**MAX_AGE_60, "Vary": "Accept-Language"}
    lab.fetch(request_headers={"Accept-Language": "de"}, response_headers=headers)
    assert outcome(lab.fetch(request_headers={"Accept-Language": "de"})) == "HIT"
    assert outcome(lab.fetch(request_headers={"Accept-Language": "fr"})) == "MISS"
    assert outcome(lab.fetch(f"{URL}/s", response_headers={**MAX_AGE_60, "Vary": "*"})) == "MISS"


# -- 4.3 Validation -------------------------------------------------------------------------


def test_4_3_stale_entry_revalidated_with_if_none_match(lab: Lab):
    headers = {"Cache-Control": "max-age=10", "ETag": '"a"'}
    lab.fetch(response_headers=headers)
    lab.advance(20)
    revalidated = lab.fetch(response_headers=headers)
    assert outcome(revalidated) == "REVALIDATED"
    assert lab.origin_requests[-1].headers["If-None-Match"] == '"a"'
    assert revalidated.response.status_code == 200
    assert revalidated.response.headers["Age"] == "0"
    assert revalidated.response.headers["X-Cache"] == "REVALIDATED"


def test_4_3_stale_entry_revalidated_with_if_modified_since(lab: Lab):
    headers = {"Cache-Control": "max-age=10", "Last-Modified": http_date(START - 5)}
    lab.fetch(response_headers=headers)
    lab.advance(20)
    assert outcome(lab.fetch(response_headers=headers)) == "REVALIDATED"
    assert lab.origin_requests[-1].headers["If-Modified-Since"] == http_date(START - 5)


def test_4_3_2_the_clients_own_validation_is_passed_through(lab: Lab):
    headers = {"Cache-Control": "no-cache", "ETag": '"a"'}
    lab.fetch(response_headers=headers)
    own = lab.fetch(request_headers={"If-None-Match": '"a"'}, response_headers=headers)
    assert own.response.status_code == 304


def test_5_2_2_4_no_cache_is_revalidated_on_every_use(lab: Lab):
    """The no-cache-etag fix: every poll is revalidated, and a new state is a new ETag."""
    pending = {"Cache-Control": "no-cache", "ETag": 'W/"pending"'}
    assert outcome(lab.fetch(response_headers=pending)) == "STORE"
    for _ in range(3):
        lab.advance(0.25)
        assert outcome(lab.fetch(response_headers=pending)) == "REVALIDATED"
    done = lab.fetch(response_headers={"Cache-Control": "no-cache", "ETag": 'W/"done"'},
                     content=b"SUCCESS")  # fmt: skip
    assert (outcome(done), done.response.content) == ("STORE", b"SUCCESS")
    assert len(lab.origin_hits) == 5


def test_5_2_1_4_request_no_cache_goes_to_the_origin(lab: Lab):
    headers = {**MAX_AGE_60, "ETag": '"a"'}
    lab.fetch(response_headers=headers)
    reload = lab.fetch(request_headers={"Cache-Control": "no-cache"}, response_headers=headers)
    assert outcome(reload) == "REVALIDATED"  # validated with the origin, as 5.2.1.4 allows
    lab.fetch(f"{URL}/plain", response_headers=MAX_AGE_60)
    assert outcome(lab.fetch(f"{URL}/plain", request_headers={"Pragma": "no-cache"})) == "MISS"


# -- 4.2.4 Serving stale --------------------------------------------------------------------


@pytest.mark.parametrize(
    "cache_control",
    ["max-age=1, must-revalidate, stale-if-error=60",
     "max-age=1, proxy-revalidate, stale-if-error=60", "s-maxage=1, stale-if-error=60"],
)  # fmt: skip
def test_5_2_2_must_revalidate_never_serves_stale(lab: Lab, cache_control: str):
    lab.fetch(response_headers={"Cache-Control": cache_control})
    lab.advance(5)
    assert lab.fetch(status=503).response.status_code == 503


def test_rfc5861_stale_if_error_and_stale_while_revalidate(lab: Lab):
    lab.fetch(response_headers={"Cache-Control": "max-age=1, stale-if-error=60"})
    lab.advance(5)
    assert lab.fetch(status=503).response.status_code == 200
    lab.fetch(
        f"{URL}/swr", response_headers={"Cache-Control": "max-age=1, stale-while-revalidate=5"}
    )
    lab.advance(3)
    assert lab.fetch(f"{URL}/swr").metadata.get("cache_stale") is True
    assert len(lab.refreshes) == 1


def test_no_stale_without_permission(lab: Lab):
    lab.fetch(response_headers={"Cache-Control": "max-age=1"})
    lab.advance(5)
    assert lab.fetch(status=503).response.status_code == 503
    assert not lab.refreshes


# -- 4.4 Invalidation, and the proxy's own fields --------------------------------------------


def test_4_4_unsafe_methods_invalidate(lab: Lab):
    lab.fetch(response_headers=MAX_AGE_60)
    lab.fetch(method="POST")
    assert outcome(lab.fetch()) == "MISS"


def test_via_and_x_cache_announce_the_cache(lab: Lab):
    miss = lab.fetch(response_headers=MAX_AGE_60)
    hit = lab.fetch()
    assert (miss.response.headers["X-Cache"], hit.response.headers["X-Cache"]) == ("MISS", "HIT")
    assert hit.response.headers["Via"] == "1.1 proxy-cache-lab"
