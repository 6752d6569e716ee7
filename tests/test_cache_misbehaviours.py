"""Each cache misbehaviour against the RFC 9111 rule it breaks, and the rules it keeps.

Every test drives a real SharedCache (mitmproxy's taddons/tflow, a fake clock, a stand-in
origin that answers conditional requests) with the misbehaviour built from its registry name,
exactly as a profile builds it.
"""

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel
from werkzeug.http import http_date

from proxies.misbehaviours import MisbehaviourError, build, build_one, registry
from proxies.misbehaviours.squid_refresh_pattern import squid_lifetime
from tests.test_product_misbehaviours import PRODUCT_MISBEHAVIOURS
from tests.test_shared_cache import START, URL, Lab, make_lab, outcome

# The cache misbehaviours written with this test (ignore-query-in-key predates it).
CACHE_MISBEHAVIOURS = [
    "cache-post",
    "expires-own-clock",
    "force-ttl",
    "heuristic-ttl",
    "http10-cache",
    "ignore-no-store",
    "ignore-private",
    "ignore-request-no-cache",
    "ignore-must-understand",
    "ignore-vary",
    "negative-cache",
    "no-age",
    "no-invalidation",
    "no-revalidation",
    "no-store-set-cookie",
    "squid-304-update",
    "squid-hit-fields",
    "squid-negative-status",
    "squid-refresh-pattern",
    "stale-on-error",
    "stale-while-updating",
]


@pytest.fixture
def lab() -> Iterator[Lab]:
    yield from make_lab()


def served(lab: Lab, cache_control: str, path: str = "") -> str:
    """What the cache did with an answer carrying `cache_control`, at URL + path."""
    return outcome(lab.fetch(f"{URL}{path}", response_headers={"Cache-Control": cache_control}))


def use(lab: Lab, *specs: dict[str, Any]) -> Lab:
    return lab.with_misbehaviours(*build(list(specs)))


# -- the registry ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*CACHE_MISBEHAVIOURS, *PRODUCT_MISBEHAVIOURS])
def test_each_is_registered_and_documented(name: str):
    cls = registry()[name]
    assert cls.name == name
    assert cls.summary and len(cls.summary) <= 100
    assert cls.imitates and cls.__doc__
    assert cls.Params.model_config.get("extra") == "forbid"


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "force-ttl"},  # ttl is required
        {"name": "force-ttl", "ttl": 0},
        {"name": "force-ttl", "ttl": 60, "statuses": [99]},
        {"name": "heuristic-ttl", "ttl": 60, "typo": 1},
        {"name": "http10-cache", "default_ttl": -1},
        {"name": "ignore-vary", "anything": True},
        {"name": "negative-cache", "ttl": 60, "statuses": [700]},
        {"name": "stale-on-error", "max_stale": 0},
        {"name": "squid-refresh-pattern", "lines": ["( 0 20% 1"]},
        {"name": "squid-refresh-pattern", "lines": [". 0 20% 1 ignore-everything"]},
        {"name": "squid-refresh-pattern", "lines": [". 0 20%"]},
        {"name": "squid-refresh-pattern", "lines": [". 0 -20% 1"]},
        {"name": "squid-refresh-pattern", "lines": []},
    ],
)  # fmt: skip
def test_bad_parameters_are_refused(spec: dict[str, Any]):
    with pytest.raises(MisbehaviourError):
        build_one(spec)


def test_statuses_may_come_as_strings_from_a_profile():
    params = build_one({"name": "heuristic-ttl", "ttl": 60, "statuses": ["200"]}).params
    assert isinstance(params, BaseModel)
    assert params.statuses == [200]  # type: ignore[attr-defined]


# -- force-ttl ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{"Cache-Control": "no-store"}, {"Cache-Control": "private"},
     {"Cache-Control": "no-cache"}, {"Cache-Control": "max-age=0, must-revalidate"},
     {"Cache-Control": "max-age=3600"}, {"Cache-Control": "s-maxage=1"}, {"Expires": "0"},
     {"Cache-Control": "no-store", "Pragma": "no-cache", "Expires": "0"}, {}],
)  # fmt: skip
def test_force_ttl_gives_exactly_ttl_whatever_the_origin_says(lab: Lab, headers: dict):
    """Breaks 3 (no-store/private stored), 4.2.1 (origin freshness), 5.2.2.4 (no-cache)."""
    use(lab, {"name": "force-ttl", "ttl": 60})
    assert outcome(lab.fetch(response_headers=headers)) == "STORE"
    lab.advance(59)
    hit = lab.fetch()
    assert outcome(hit) == "HIT"
    assert hit.response.headers.get("Cache-Control") == headers.get("Cache-Control")
    lab.advance(1)
    assert outcome(lab.fetch(response_headers=headers)) == "STORE"


def test_force_ttl_answers_the_etag_fix_from_its_copy(lab: Lab):
    use(lab, {"name": "force-ttl", "ttl": 60})
    pending = {"Cache-Control": "no-cache", "ETag": 'W/"pending"'}
    lab.fetch(response_headers=pending)
    again = lab.fetch(request_headers={"If-None-Match": 'W/"pending"'})
    assert (outcome(again), again.response.status_code) == ("HIT", 304)
    assert len(lab.origin_hits) == 1


def test_force_ttl_keeps_method_vary_and_unlisted_statuses(lab: Lab):
    use(lab, {"name": "force-ttl", "ttl": 60, "statuses": [200]})
    assert outcome(lab.fetch(status=404, response_headers={"Cache-Control": "max-age=60"})) == (
        "MISS"  # its Cache-Control is not read either: no freshness at all
    )
    assert outcome(lab.fetch(method="POST")) == "BYPASS"
    assert outcome(lab.fetch(f"{URL}/star", response_headers={"Vary": "*"})) == "MISS"
    vary = {"Vary": "X-User"}
    lab.fetch(f"{URL}/v", request_headers={"X-User": "a"}, response_headers=vary)
    assert outcome(lab.fetch(f"{URL}/v", request_headers={"X-User": "b"})) == "STORE"


# -- ignore-no-store / ignore-private / ignore-vary ------------------------------------------


def test_ignore_no_store_stores_what_no_store_forbids(lab: Lab):
    use(lab, {"name": "ignore-no-store"})
    assert served(lab, "no-store, max-age=60") == ("STORE")
    hit = lab.fetch()
    assert hit.response.headers["Cache-Control"] == "no-store, max-age=60"  # served as stored


def test_ignore_no_store_keeps_every_other_rule(lab: Lab):
    use(lab, {"name": "ignore-no-store"})
    # no-store alone: no freshness and no validator for an RFC cache, so not kept...
    assert served(lab, "no-store") == "MISS"
    assert served(lab, "no-store, max-age=0", "/0") == "MISS"
    assert served(lab, "no-store, private, max-age=60", "/p") == "MISS"
    assert outcome(lab.fetch(f"{URL}/r", request_headers={"Cache-Control": "no-store"})) == "BYPASS"
    # ...until a heuristic gives it freshness.
    lab.tctx.configure(lab.addon, cache_heuristic_ttl=300)
    assert served(lab, "no-store") == "STORE"


def test_ignore_private_serves_one_users_answer_to_another(lab: Lab):
    use(lab, {"name": "ignore-private"})
    alice = {"Cookie": "user=alice"}
    lab.fetch(request_headers=alice, response_headers={"Cache-Control": "private, max-age=60"})
    bob = lab.fetch(request_headers={"Cookie": "user=bob"})
    assert outcome(bob) == "HIT"
    assert served(lab, 'private="x", max-age=60', "/q") == "STORE"
    # Kept: no-store, and Authorization without public/s-maxage/must-revalidate.
    assert served(lab, "private, no-store, max-age=60", "/n") == "MISS"
    auth = {"Authorization": "Bearer x"}
    lab.fetch(
        f"{URL}/a", request_headers=auth, response_headers={"Cache-Control": "private, max-age=60"}
    )
    assert outcome(lab.fetch(f"{URL}/a", request_headers=auth)) == "MISS"


def test_ignore_vary_serves_every_variant_the_same(lab: Lab):
    use(lab, {"name": "ignore-vary"})
    vary = {"Cache-Control": "max-age=60", "Vary": "Cookie"}
    lab.fetch(request_headers={"Cookie": "user=alice"}, response_headers=vary)
    bob = lab.fetch(request_headers={"Cookie": "user=bob"})
    assert outcome(bob) == "HIT"
    assert bob.response.headers["Vary"] == "Cookie"  # the field is still sent on
    assert (
        outcome(
            lab.fetch(f"{URL}/s", response_headers={"Cache-Control": "max-age=60", "Vary": "*"})
        )
        == "STORE"
    )
    assert (
        outcome(
            lab.fetch(f"{URL}/n", response_headers={"Cache-Control": "no-store", "Vary": "Cookie"})
        )
        == "MISS"
    )


# -- ignore-request-no-cache ----------------------------------------------------------------


@pytest.mark.parametrize("request_headers", [{"Cache-Control": "no-cache"}, {"Pragma": "no-cache"}])
def test_ignore_request_no_cache_answers_reloads_from_the_cache(lab: Lab, request_headers: dict):
    """Breaks 5.2.1.4 (a no-cache request must not be answered without validation)."""
    use(lab, {"name": "ignore-request-no-cache"})
    lab.fetch(response_headers={"Cache-Control": "max-age=60"})
    assert outcome(lab.fetch(request_headers=request_headers)) == "HIT"


def test_ignore_request_no_cache_keeps_freshness_and_request_no_store(lab: Lab):
    use(lab, {"name": "ignore-request-no-cache"})
    lab.fetch(response_headers={"Cache-Control": "max-age=10"})
    assert outcome(lab.fetch(request_headers={"Cache-Control": "no-store"})) == "BYPASS"
    lab.advance(10)
    assert outcome(lab.fetch(request_headers={"Pragma": "no-cache"})) == "MISS"


# -- heuristic-ttl / negative-cache ---------------------------------------------------------


def test_heuristic_ttl_caches_answers_without_freshness(lab: Lab):
    """4.2.2 allows heuristics, as a fraction of the Last-Modified age: not a flat TTL."""
    use(lab, {"name": "heuristic-ttl", "ttl": 120})
    assert outcome(lab.fetch()) == "STORE"
    lab.advance(119)
    assert outcome(lab.fetch()) == "HIT"
    # A Last-Modified a day old: 120 s, not 10% of a day.
    last_modified = {"Last-Modified": http_date(START + 119 - 86400)}
    lab.fetch(f"{URL}/lm", response_headers=last_modified)
    lab.advance(120)
    assert outcome(lab.fetch(f"{URL}/lm", response_headers=last_modified)) == "REVALIDATED"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({"Cache-Control": "max-age=5"}, 5.0), ({"Cache-Control": "no-cache", "ETag": '"a"'}, 0.0),
     ({"Pragma": "no-cache"}, 120.0),
     ({"Expires": http_date(START + 30), "Date": http_date(START)}, 30.0)],
)  # fmt: skip
def test_heuristic_ttl_lets_explicit_freshness_win(lab: Lab, headers: dict, expected: float):
    use(lab, {"name": "heuristic-ttl", "ttl": 120})
    lab.fetch(response_headers=headers)
    assert lab.addon.entries[("GET", URL)].lifetime == expected


def test_heuristic_ttl_and_invalid_expires(lab: Lab):
    use(lab, {"name": "heuristic-ttl", "ttl": 120})
    assert outcome(lab.fetch(response_headers={"Expires": "0"})) == "MISS"  # RFC: expired
    use(lab, {"name": "heuristic-ttl", "ttl": 120, "ignore_invalid_expires": True})
    assert outcome(lab.fetch(response_headers={"Expires": "0"})) == "STORE"  # Varnish: absent


def test_heuristic_ttl_statuses_and_storability(lab: Lab):
    use(lab, {"name": "heuristic-ttl", "ttl": 60, "statuses": [200]})
    assert outcome(lab.fetch(status=404)) == "MISS"
    use(lab, {"name": "heuristic-ttl", "ttl": 60})  # RFC 9110's heuristically cacheable set
    assert outcome(lab.fetch(status=404)) == "STORE"
    assert outcome(lab.fetch(f"{URL}/5", status=500)) == "MISS"
    assert served(lab, "no-store", "/n") == "MISS"
    assert served(lab, "private", "/p") == "MISS"


def test_negative_cache_replays_an_error(lab: Lab):
    use(lab, {"name": "negative-cache", "ttl": 60})
    failed = lab.fetch(status=502, content=b"Bad Gateway")
    assert outcome(failed) == "STORE"
    lab.advance(59)
    replay = lab.fetch()  # the origin has recovered; the cache does not know
    assert (outcome(replay), replay.response.status_code) == ("HIT", 502)
    lab.advance(1)
    assert lab.fetch().response.status_code == 200


def test_negative_cache_keeps_explicit_headers_and_successes(lab: Lab):
    use(lab, {"name": "negative-cache", "ttl": 60})
    assert outcome(lab.fetch(status=500, response_headers={"Cache-Control": "no-store"})) == "MISS"
    lab.fetch(f"{URL}/5", status=503, response_headers={"Cache-Control": "max-age=5"})
    assert lab.addon.entries[("GET", f"{URL}/5")].lifetime == 5
    assert outcome(lab.fetch(f"{URL}/ok")) == "MISS"  # a 200 without freshness: RFC rules
    assert outcome(lab.fetch(f"{URL}/401", status=401)) == "MISS"  # not listed


# -- http10-cache ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cache_control",
    ["no-store", "no-cache", "private", "max-age=0", "no-store, no-cache, must-revalidate"],
)
def test_http10_cache_does_not_know_cache_control(lab: Lab, cache_control: str):
    use(lab, {"name": "http10-cache", "default_ttl": 300})
    assert outcome(lab.fetch(response_headers={"Cache-Control": cache_control})) == "STORE"
    lab.advance(299)
    assert outcome(lab.fetch()) == "HIT"


@pytest.mark.parametrize(
    "headers",
    [{"Pragma": "no-cache"}, {"Expires": "0"}, {"Expires": "garbage"},
     {"Expires": http_date(START - 10), "Date": http_date(START)},
     {"Cache-Control": "max-age=600", "Pragma": "no-cache"}],
)  # fmt: skip
def test_http10_cache_honours_pragma_and_expires(lab: Lab, headers: dict):
    use(lab, {"name": "http10-cache", "default_ttl": 300})
    assert outcome(lab.fetch(response_headers=headers)) == "MISS"


def test_http10_cache_lifetime_from_expires(lab: Lab):
    use(lab, {"name": "http10-cache", "default_ttl": 300})
    lab.fetch(response_headers={"Expires": http_date(START + 40), "Date": http_date(START - 20)})
    assert lab.addon.entries[("GET", URL)].lifetime == 60
    lab.fetch(f"{URL}/nodate", response_headers={"Expires": http_date(START + 40)})
    assert lab.addon.entries[("GET", f"{URL}/nodate")].lifetime == 40  # from the clock


def test_http10_cache_requests(lab: Lab):
    use(lab, {"name": "http10-cache", "default_ttl": 300})
    lab.fetch()
    assert outcome(lab.fetch(request_headers={"Cache-Control": "no-cache"})) == "HIT"
    assert outcome(lab.fetch(request_headers={"Pragma": "no-cache"})) == "STORE"  # a Reload
    auth = {"Authorization": "Basic x"}
    assert (
        outcome(
            lab.fetch(
                f"{URL}/a", request_headers=auth, response_headers={"Cache-Control": "public"}
            )
        )
        == "MISS"
    )
    assert outcome(lab.fetch(f"{URL}/404", status=404)) == "MISS"
    star = {"Vary": "*"}
    lab.fetch(f"{URL}/v", request_headers={"Cookie": "a"}, response_headers=star)
    assert outcome(lab.fetch(f"{URL}/v", request_headers={"Cookie": "b"})) == "HIT"


# -- cache-post -----------------------------------------------------------------------------


def test_cache_post_serves_the_first_answer_to_every_post_and_get(lab: Lab):
    """RFC 9110 9.3.3 / 9111 4: a POST is never answered from the cache."""
    use(lab, {"name": "cache-post"}, {"name": "heuristic-ttl", "ttl": 60, "statuses": [200]})
    first = lab.fetch(method="POST", content=b"PENDING")
    assert outcome(first) == "STORE"
    second = lab.fetch(method="POST", content=b"SUCCESS")  # the origin would say SUCCESS now
    assert (outcome(second), second.response.content) == ("HIT", b"PENDING")
    assert outcome(lab.fetch(method="GET")) == "HIT"  # the key has no method either
    assert len(lab.origin_hits) == 1


def test_cache_post_keeps_other_methods_and_rules(lab: Lab):
    use(lab, {"name": "cache-post"})
    assert outcome(lab.fetch(method="POST")) == "MISS"  # no freshness: not kept (RFC rules)
    lab.fetch(response_headers={"Cache-Control": "max-age=60"})
    assert (
        outcome(lab.fetch(method="POST", response_headers={"Cache-Control": "max-age=60"})) == "HIT"
    )
    assert outcome(lab.fetch(method="PUT")) == "BYPASS"
    assert not lab.addon.entries  # PUT still invalidates


# -- stale-on-error / stale-while-updating --------------------------------------------------


def test_stale_on_error_hides_5xx_behind_a_stale_copy(lab: Lab):
    use(lab, {"name": "stale-on-error", "max_stale": 60})
    lab.fetch(response_headers={"Cache-Control": "max-age=1, must-revalidate"}, content=b"PENDING")
    lab.advance(30)
    rescued = lab.fetch(status=502)
    assert (outcome(rescued), rescued.response.status_code) == ("HIT", 200)
    assert rescued.response.content == b"PENDING"
    lab.advance(100)  # past max_stale
    assert lab.fetch(status=502).response.status_code == 502


def test_stale_on_error_only_on_errors_and_never_for_no_cache(lab: Lab):
    use(lab, {"name": "stale-on-error", "max_stale": 60})
    lab.fetch(response_headers={"Cache-Control": "max-age=1"})
    lab.advance(5)
    assert served(lab, "max-age=1") == "STORE"
    lab.fetch(f"{URL}/nc", response_headers={"Cache-Control": "no-cache", "ETag": '"a"'})
    assert lab.fetch(f"{URL}/nc", status=503).response.status_code == 503


def test_stale_while_updating_serves_stale_and_refreshes(lab: Lab):
    use(lab, {"name": "stale-while-updating", "max_stale": 10})
    lab.fetch(response_headers={"Cache-Control": "max-age=1, proxy-revalidate"})
    lab.advance(5)
    stale = lab.fetch()
    assert (outcome(stale), stale.metadata["cache_stale"]) == ("HIT", True)
    assert len(lab.refreshes) == 1
    assert lab.fetch(status=503).response.status_code == 200  # still updating: stale again
    lab.advance(10)  # 14 s stale: too old
    assert served(lab, "max-age=1") == "STORE"


def test_stale_while_updating_does_not_rescue_errors(lab: Lab):
    use(lab, {"name": "stale-while-updating", "max_stale": 10})
    lab.fetch(response_headers={"Cache-Control": "max-age=1"})
    lab.advance(5)
    lab.fetch()
    refresh = lab.refreshes[0]
    failed = lab.fetch(flow=refresh, status=503)  # the refresh itself fails
    assert failed.response.status_code == 503


# -- ignore-query-in-key --------------------------------------------------------------------


def test_ignore_query_in_key_makes_nonces_collide(lab: Lab):
    use(lab, {"name": "ignore-query-in-key"})
    lab.fetch(f"{URL}?nonce=a", response_headers={"Cache-Control": "max-age=60"})
    assert outcome(lab.fetch(f"{URL}?nonce=b")) == "HIT"
    assert outcome(lab.fetch(f"{URL}/b?nonce=b")) == "MISS"  # a path nonce is a new key


# -- squid-refresh-pattern ------------------------------------------------------------------

NOW = START
DAY = 86400.0


def squid(headers: dict[str, str], *, min_s=0.0, fraction=0.2, max_s=4320 * 60.0, **options):
    return squid_lifetime(
        {"Date": http_date(NOW), **headers}, NOW, min_s=min_s, fraction=fraction, max_s=max_s,
        **options,
    )  # fmt: skip


def test_squid_without_any_cache_header_is_fresh_for_min_only():
    assert squid({}) == 0  # stock `. 0 20% 4320`: stale at once
    assert squid({}, min_s=300) == 300  # a min above 0 caches dynamic answers
    assert squid({}, min_s=300, max_s=120) == 120  # max wins over min


def test_squid_last_modified_factor():
    last_modified = {"Last-Modified": http_date(NOW - DAY)}
    assert squid(last_modified) == pytest.approx(0.2 * DAY)  # 4.8 h, twice RFC 9111's 10%
    assert squid(last_modified, max_s=3600) == 3600
    recent = {"Last-Modified": http_date(NOW - 100)}
    assert squid(recent, min_s=300) == pytest.approx(20)  # the factor wins over min...
    assert squid(recent, min_s=300, override_lastmod=True) == 300  # ...unless override-lastmod


@pytest.mark.parametrize(
    ("headers", "plain", "overridden"),
    [({"Cache-Control": "max-age=60"}, 60, 300), ({"Cache-Control": "max-age=600"}, 600, 600),
     ({"Cache-Control": "max-age=60, s-maxage=10"}, 10, 300),
     ({"Cache-Control": "max-age=0"}, 0, 300),
     ({"Expires": "0"}, 0, 300), ({"Expires": http_date(NOW + 30)}, 30, 300),
     ({"Cache-Control": "no-store", "Expires": "0"}, 0, 300)],
)  # fmt: skip
def test_squid_explicit_expiry_and_override_expire(headers: dict, plain: float, overridden: float):
    """Explicit expiry ignores min/max; override-expire extends it to min, never shortens."""
    assert squid(headers, min_s=300, max_s=120) == plain
    assert squid(headers, min_s=300, max_s=120, override_expire=True) == overridden


@pytest.mark.parametrize(
    "headers",
    [{"Cache-Control": "no-cache"}, {"Cache-Control": "private"},
     {"Cache-Control": "private, max-age=600"}, {"Pragma": "no-cache"}],
)  # fmt: skip
def test_squid_revalidate_always_beats_every_override(headers: dict):
    assert squid(headers, min_s=300, override_expire=True, override_lastmod=True) == 0


def test_squid_reply_pragma_counts_only_without_cache_control():
    assert squid({"Pragma": "no-cache", "Cache-Control": "no-store"}, min_s=300) == 300


STOCK = ["refresh_pattern ^ftp: 1440 20% 10080", r"-i (/cgi-bin/|\?) 0 0% 0"]
OVERRIDE = (
    ". 5 20% 4320 override-expire override-lastmod ignore-reload ignore-no-store ignore-private"
)


def refresh_patterns(*lines: str) -> dict[str, Any]:
    return {"name": "squid-refresh-pattern", "lines": list(lines)}


def test_squid_first_matching_line_wins(lab: Lab):
    use(lab, refresh_patterns(*STOCK, OVERRIDE))
    lab.fetch(f"{URL}?nonce=a")  # the cgi-bin/? line: no freshness at all
    assert not lab.addon.entries
    lab.fetch(URL)  # the catch-all line: min 5 minutes
    assert lab.addon.entries[("GET", URL)].lifetime == 300


def test_squid_override_caches_the_classic_do_not_cache_set(lab: Lab):
    use(lab, refresh_patterns(*STOCK, OVERRIDE))
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache", "Expires": "0"}
    assert outcome(lab.fetch(response_headers=headers)) == "STORE"
    lab.advance(299)
    assert (
        outcome(lab.fetch(request_headers={"Cache-Control": "no-cache"})) == "HIT"
    )  # ignore-reload


def test_squid_ignore_private_still_revalidates_every_hit(lab: Lab):
    use(lab, refresh_patterns(*STOCK, OVERRIDE))
    headers = {"Cache-Control": "private", "ETag": '"mine"'}
    assert outcome(lab.fetch(response_headers=headers)) == "STORE"
    assert outcome(lab.fetch(response_headers=headers)) == "REVALIDATED"
    assert lab.origin_requests[-1].headers["If-None-Match"] == '"mine"'


def test_squid_without_options_honours_no_store_private_and_reload(lab: Lab):
    use(lab, refresh_patterns(". 5 20% 4320"))
    assert served(lab, "no-store") == "MISS"
    assert served(lab, "private", "/p") == "MISS"
    lab.fetch(f"{URL}/r")
    assert outcome(lab.fetch(f"{URL}/r", request_headers={"Pragma": "no-cache"})) == "STORE"


def test_squid_url_no_line_matches_keeps_rfc_rules(lab: Lab):
    use(lab, refresh_patterns("^https://elsewhere/ 5 20% 4320 ignore-no-store"))
    assert outcome(lab.fetch()) == "MISS"
    headers = {"Last-Modified": http_date(START - 1000)}
    lab.fetch(f"{URL}/lm", response_headers=headers)
    assert lab.addon.entries[("GET", f"{URL}/lm")].lifetime == pytest.approx(100)  # RFC's 10%


def test_squid_lines_read_as_squid_conf_writes_them():
    (misbehaviour,) = build([refresh_patterns(r"refresh_pattern -i \.PNG$ 1 20% 2 ignore-reload")])
    (line,) = misbehaviour.lines
    assert line.pattern.search("http://app.test/logo.png")  # -i: case-insensitive
    assert (line.min_s, line.fraction, line.max_s) == (60.0, 0.2, 120.0)
    assert line.options == {"ignore-reload"}
    (case_sensitive,) = build([refresh_patterns(r"\.PNG$ 1 20 2")])[0].lines  # % may be left out
    assert not case_sensitive.pattern.search("http://app.test/logo.png")


def test_a_bad_squid_line_is_named_with_its_place():
    with pytest.raises(MisbehaviourError, match=r"field 'lines\.1'.*'\. 0 20%'"):
        build_one(refresh_patterns(". 0 20% 4320", ". 0 20%"))


def test_no_invalidation_keeps_the_stored_answer_after_unsafe_methods(lab: Lab):
    use(lab, {"name": "no-invalidation"})
    fresh = {"Cache-Control": "max-age=60"}
    lab.fetch(response_headers=fresh)
    assert outcome(lab.fetch(method="DELETE", status=204)) == "BYPASS"
    assert outcome(lab.fetch(method="POST", response_headers={"Location": URL}, status=201))
    assert outcome(lab.fetch()) == "HIT"  # RFC 9111 4.4 would have dropped it twice over


def test_no_revalidation_fetches_a_stale_entry_again_in_full(lab: Lab):
    use(lab, {"name": "no-revalidation"})
    fields = {"Cache-Control": "max-age=10", "ETag": '"v1"'}
    lab.fetch(response_headers=fields)
    lab.advance(15)
    again = lab.fetch(response_headers=fields)
    assert "If-None-Match" not in lab.origin_requests[-1].headers  # RFC 9111 4.3.1 would add it
    assert outcome(again) == "STORE" and again.response.status_code == 200


@pytest.mark.parametrize("status", [201, 403, 503, 599])
def test_squid_gives_no_heuristic_freshness_to_statuses_it_never_caches(lab: Lab, status: int):
    # The HTTP caching test suite's heuristic-*-not_cached: Squid 5.7 passes them all.
    use(lab, refresh_patterns(*STOCK, ". 0 20% 4320"))
    last_modified = {"Last-Modified": http_date(START - 86400), "Date": http_date(START)}
    lab.fetch(response_headers=last_modified, status=status)
    assert outcome(lab.fetch(response_headers=last_modified, status=status)) != "HIT"
    lab.addon.store.clear()
    lab.fetch(response_headers=last_modified)  # a 200 gets 20% of a day
    assert outcome(lab.fetch()) == "HIT"


@pytest.mark.parametrize("status", [204, 303, 404, 503, 599])
def test_squid_negative_status_reuses_no_error_even_with_max_age(lab: Lab, status: int):
    # Squid 5.7 fails the HTTP caching test suite's status-*-fresh for these statuses.
    use(lab, {"name": "squid-negative-status"})
    fresh = {"Cache-Control": "max-age=3600"}
    assert outcome(lab.fetch(response_headers=fresh, status=status)) == "MISS"
    assert outcome(lab.fetch(response_headers=fresh, status=status)) == "MISS"
    assert outcome(lab.fetch(f"{URL}/ok", response_headers=fresh)) == "STORE"
    assert outcome(lab.fetch(f"{URL}/ok", response_headers=fresh)) == "HIT"  # a 200 is kept


def test_no_age_counts_life_from_storing_and_sends_no_age_of_its_own(lab: Lab):
    use(lab, {"name": "no-age"})
    old = {"Cache-Control": "max-age=60", "Age": "100", "Date": http_date(START - 100)}
    assert outcome(lab.fetch(response_headers=old)) == "STORE"  # RFC 9111: stale on arrival
    lab.advance(30)
    hit = lab.fetch()
    assert outcome(hit) == "HIT" and hit.metadata["cache_age"] == 30  # the lab's own event
    assert hit.response.headers.get_all("Age") == ["100"]  # the origin's, not updated
    lab.advance(31)
    assert outcome(lab.fetch(response_headers=old)) == "STORE"  # 61 s after storing: stale
    lab.fetch(f"{URL}/plain", response_headers={"Cache-Control": "max-age=60"})
    lab.advance(5)
    plain = lab.fetch(f"{URL}/plain")
    assert outcome(plain) == "HIT" and "Age" not in plain.response.headers


def test_expires_own_clock_keeps_an_answer_until_its_expires_whatever_its_date(lab: Lab):
    use(lab, {"name": "expires-own-clock"})
    # Date 400 s ahead, Expires 300 s ahead: RFC 9111 4.2.1 says stale at once.
    skewed = {"Date": http_date(START + 400), "Expires": http_date(START + 300)}
    assert outcome(lab.fetch(response_headers=skewed)) == "STORE"
    lab.advance(299)
    assert outcome(lab.fetch()) == "HIT"
    lab.advance(2)
    assert outcome(lab.fetch(response_headers=skewed)) == "MISS"  # its Expires has passed
    both = {"Expires": http_date(START + 9999), "Cache-Control": "max-age=10"}
    lab.fetch(f"{URL}/cc", response_headers=both)
    lab.advance(11)
    assert outcome(lab.fetch(f"{URL}/cc", response_headers=both)) == "STORE"  # max-age wins


def test_squid_304_update_takes_every_field_of_the_304(lab: Lab):
    use(lab, {"name": "squid-304-update"})
    first = {"Cache-Control": "max-age=10", "ETag": '"v1"', "Content-MD5": "old"}
    lab.fetch(response_headers=first)
    lab.advance(11)
    second = {**first, "Content-MD5": "new", "Vary": "X-Other"}
    again = lab.fetch(response_headers=second)  # the origin answers 304 to our If-None-Match
    assert outcome(again) == "REVALIDATED"
    assert again.response.headers["Content-MD5"] == "new"  # RFC 9111 3.2 keeps the old one
    assert "Vary" not in again.response.headers  # Squid leaves Vary alone
    lab.advance(11)
    other = {"Cache-Control": "max-age=10", "ETag": '"v2"'}
    relabelled = lab.fetch(response_headers=other, status=304, content=b"")
    assert outcome(relabelled) == "REVALIDATED"  # RFC 9111 4.3.4: not ours, passed on
    assert relabelled.response.headers["ETag"] == '"v2"'
    assert relabelled.response.content == b"body"


def test_squid_hit_fields_drop_set_cookie_and_trim_its_own_304s(lab: Lab):
    use(lab, {"name": "squid-hit-fields"})
    fields = {"Cache-Control": "max-age=60", "ETag": '"v1"', "Set-Cookie": "a=b"}
    stored = lab.fetch(response_headers=fields)
    assert stored.response.headers["Set-Cookie"] == "a=b"  # forwarded answers keep it
    hit = lab.fetch()
    assert outcome(hit) == "HIT" and "Set-Cookie" not in hit.response.headers
    not_modified = lab.fetch(request_headers={"If-None-Match": '"v1"'})
    assert outcome(not_modified) == "HIT" and not_modified.response.status_code == 304
    assert "ETag" not in not_modified.response.headers  # RFC 9110 15.4.5 wants it
    assert "Cache-Control" not in not_modified.response.headers
    assert "Age" in not_modified.response.headers


def test_ignore_must_understand_stores_an_unknown_status_with_max_age(lab: Lab):
    fields = {"Cache-Control": "max-age=3600, must-understand"}
    assert outcome(lab.fetch(response_headers=fields, status=599)) == "MISS"  # RFC 9111 5.2.2.3
    use(lab, {"name": "ignore-must-understand"})
    assert outcome(lab.fetch(f"{URL}/n", response_headers=fields, status=599)) == "STORE"
    assert outcome(lab.fetch(f"{URL}/n", status=599)) == "HIT"


def test_no_store_set_cookie_keeps_no_answer_with_set_cookie(lab: Lab):
    use(lab, {"name": "no-store-set-cookie"})
    fields = {"Cache-Control": "max-age=60, public", "Set-Cookie": "a=b"}
    assert outcome(lab.fetch(response_headers=fields)) == "MISS"  # RFC 9111 3 would store it
    assert outcome(lab.fetch(response_headers=fields)) == "MISS"
    assert outcome(lab.fetch(f"{URL}/plain", response_headers={"Cache-Control": "max-age=60"}))
    assert outcome(lab.fetch(f"{URL}/plain")) == "HIT"
