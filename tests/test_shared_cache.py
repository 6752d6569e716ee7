from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from mitmproxy import exceptions, http
from mitmproxy.test import taddons, tflow, tutils
from werkzeug.http import http_date

from proxies.shared_cache import SharedCache

START = 1_700_000_000.0
URL = "http://app.test:8080/api/tasks/42/status"


@dataclass
class FakeClock:
    now: float = START

    def __call__(self) -> float:
        return self.now


@dataclass
class Lab:
    """A SharedCache in a test context, plus a counter standing in for the origin."""

    addon: SharedCache
    tctx: taddons.context
    clock: FakeClock
    origin_hits: list[str] = field(default_factory=list)

    def fetch(
        self,
        url: str = URL,
        *,
        method: str = "GET",
        request_headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
        status: int = 200,
    ) -> http.HTTPFlow:
        """One pass through the proxy, as mitmproxy would drive the hooks."""
        f = tflow.tflow()
        f.request.url = url
        f.request.method = method
        f.request.headers.update(request_headers or {})
        self.addon.request(f)
        if f.response is None:  # not answered by the cache: ask the "origin"
            self.origin_hits.append(url)
            f.response = tutils.tresp(status_code=status, content=b"body")
            f.response.headers.update(response_headers or {})
            self.addon.response(f)
        return f

    def advance(self, seconds: float) -> None:
        self.clock.now += seconds


@pytest.fixture
def lab() -> Iterator[Lab]:
    addon = SharedCache()
    clock = FakeClock()
    addon.clock = clock
    with taddons.context(addon) as tctx:
        yield Lab(addon, tctx, clock)


def outcome(f: http.HTTPFlow) -> str:
    return f.metadata["cache"]


def test_rfc_defaults_do_not_store_response_without_freshness(lab: Lab):
    assert outcome(lab.fetch()) == "MISS"
    assert outcome(lab.fetch()) == "MISS"
    assert len(lab.origin_hits) == 2


def test_max_age_hit_while_fresh_then_expire(lab: Lab):
    assert outcome(lab.fetch(response_headers={"Cache-Control": "max-age=10"})) == "STORE"
    lab.advance(3)
    hit = lab.fetch()
    assert outcome(hit) == "HIT"
    assert hit.response.headers["Age"] == "3"
    assert hit.metadata["cache_age"] == 3
    assert hit.response.content == b"body"
    lab.advance(4)
    assert lab.fetch().response.headers["Age"] == "7"
    lab.advance(3)  # age 10 == lifetime: stale
    assert outcome(lab.fetch(response_headers={"Cache-Control": "max-age=10"})) == "STORE"
    assert len(lab.origin_hits) == 2
    assert lab.fetch().response.headers["Age"] == "0"


def test_age_includes_upstream_age_and_date(lab: Lab):
    headers = {"Cache-Control": "max-age=100", "Age": "20", "Date": http_date(START - 30)}
    lab.fetch(response_headers=headers)
    lab.advance(5)
    assert lab.fetch().response.headers["Age"] == "35"


def test_s_maxage_beats_max_age(lab: Lab):
    lab.fetch(response_headers={"Cache-Control": "max-age=100, s-maxage=2"})
    lab.advance(1)
    assert outcome(lab.fetch()) == "HIT"
    lab.advance(1)
    assert outcome(lab.fetch()) == "MISS"


def test_expires_zero_is_not_stored(lab: Lab):
    lab.tctx.configure(lab.addon, cache_heuristic_ttl=300)
    assert outcome(lab.fetch(response_headers={"Expires": "0"})) == "MISS"
    assert outcome(lab.fetch()) == "STORE"  # the heuristic still applies without Expires


def test_expires_in_future_is_stored(lab: Lab):
    headers = {"Expires": http_date(START + 60), "Date": http_date(START)}
    assert outcome(lab.fetch(response_headers=headers)) == "STORE"
    lab.advance(59)
    assert outcome(lab.fetch()) == "HIT"
    lab.advance(1)
    assert outcome(lab.fetch()) == "MISS"


@pytest.mark.parametrize("cache_control", ["no-store, max-age=60", "private, max-age=60"])
def test_no_store_and_private_are_never_stored(lab: Lab, cache_control: str):
    lab.tctx.configure(lab.addon, cache_heuristic_ttl=300)
    assert outcome(lab.fetch(response_headers={"Cache-Control": cache_control})) == "MISS"
    assert outcome(lab.fetch()) == "STORE"
    assert lab.addon.entries  # sanity: the later plain response was stored


def test_response_no_cache_is_not_served(lab: Lab):
    lab.fetch(response_headers={"Cache-Control": "no-cache, max-age=60"})
    assert outcome(lab.fetch()) == "MISS"
    assert len(lab.origin_hits) == 2


def test_heuristic_ttl_caches_plain_200_but_honours_no_store(lab: Lab):
    lab.tctx.configure(lab.addon, cache_heuristic_ttl=300)
    assert outcome(lab.fetch()) == "STORE"
    lab.advance(299)
    hit = lab.fetch()
    assert outcome(hit) == "HIT"
    assert hit.response.headers["Age"] == "299"
    lab.advance(1)
    assert outcome(lab.fetch()) == "STORE"
    other = URL + "/no-store"
    assert outcome(lab.fetch(other, response_headers={"Cache-Control": "no-store"})) == "MISS"
    assert outcome(lab.fetch(other, response_headers={"Cache-Control": "no-store"})) == "MISS"


def test_heuristic_ttl_skips_non_heuristic_status(lab: Lab):
    lab.tctx.configure(lab.addon, cache_heuristic_ttl=300)
    assert outcome(lab.fetch(status=302)) == "MISS"
    assert outcome(lab.fetch(status=404)) == "STORE"


def test_last_modified_heuristic(lab: Lab):
    headers = {"Date": http_date(START), "Last-Modified": http_date(START - 1000)}
    lab.tctx.configure(lab.addon, cache_heuristic_lm_percent=5)  # 50 s
    assert outcome(lab.fetch(response_headers=headers)) == "STORE"
    lab.advance(49)
    assert outcome(lab.fetch()) == "HIT"
    lab.advance(1)
    assert outcome(lab.fetch()) == "MISS"


def test_last_modified_heuristic_disabled_by_zero_percent(lab: Lab):
    lab.tctx.configure(lab.addon, cache_heuristic_lm_percent=0)
    headers = {"Last-Modified": http_date(START - 1000)}
    assert outcome(lab.fetch(response_headers=headers)) == "MISS"


def test_query_string_is_part_of_the_key(lab: Lab):
    lab.tctx.configure(lab.addon, cache_heuristic_ttl=300)
    lab.fetch(URL + "?t=1")
    assert outcome(lab.fetch(URL + "?t=2")) == "STORE"
    assert outcome(lab.fetch(URL + "?t=1")) == "HIT"


def test_vary(lab: Lab):
    lab.tctx.configure(lab.addon, cache_heuristic_ttl=300)
    vary = {"Vary": "X-User"}
    alice, bob = {"X-User": "alice"}, {"X-User": "bob"}
    lab.fetch(request_headers=alice, response_headers=vary)
    assert outcome(lab.fetch(request_headers=alice)) == "HIT"
    assert outcome(lab.fetch(request_headers=bob, response_headers=vary)) == "STORE"
    assert outcome(lab.fetch(request_headers=bob)) == "HIT"
    # We keep one variant per URL: bob's replaced alice's.
    assert outcome(lab.fetch(request_headers=alice, response_headers=vary)) == "STORE"
    assert outcome(lab.fetch(response_headers=vary)) == "STORE"  # absent header: own variant


def test_vary_star_is_not_stored(lab: Lab):
    lab.tctx.configure(lab.addon, cache_heuristic_ttl=300)
    assert outcome(lab.fetch(response_headers={"Vary": "*"})) == "MISS"


@pytest.mark.parametrize("request_headers", [{"Cache-Control": "no-cache"}, {"Pragma": "no-cache"}])
def test_request_no_cache_is_forwarded_and_refreshes(lab: Lab, request_headers: dict[str, str]):
    lab.tctx.configure(lab.addon, cache_heuristic_ttl=300)
    lab.fetch()
    lab.advance(10)
    assert outcome(lab.fetch(request_headers=request_headers)) == "STORE"
    assert lab.fetch().response.headers["Age"] == "0"  # the fresh copy replaced the old one
    assert len(lab.origin_hits) == 2


def test_request_no_store_bypasses_and_does_not_store(lab: Lab):
    lab.tctx.configure(lab.addon, cache_heuristic_ttl=300)
    assert outcome(lab.fetch(request_headers={"Cache-Control": "no-store"})) == "BYPASS"
    assert not lab.addon.entries


def test_post_is_bypass(lab: Lab):
    lab.tctx.configure(lab.addon, cache_heuristic_ttl=300)
    assert outcome(lab.fetch(method="POST")) == "BYPASS"
    assert outcome(lab.fetch(method="POST")) == "BYPASS"
    assert not lab.addon.entries


def test_disabled_cache_is_bypass(lab: Lab):
    lab.tctx.configure(lab.addon, cache_heuristic_ttl=300)
    lab.fetch()
    lab.tctx.configure(lab.addon, cache_enabled=False)
    assert outcome(lab.fetch()) == "BYPASS"
    lab.tctx.configure(lab.addon, cache_enabled=True)
    assert outcome(lab.fetch()) == "STORE"  # nothing survives a disable


def test_authorization_not_stored_without_permission(lab: Lab):
    auth = {"Authorization": "Bearer secret"}
    lab.fetch(request_headers=auth, response_headers={"Cache-Control": "max-age=60"})
    assert outcome(lab.fetch(request_headers=auth)) == "MISS"
    lab.fetch(request_headers=auth, response_headers={"Cache-Control": "public, max-age=60"})
    assert outcome(lab.fetch(request_headers=auth)) == "HIT"


def test_lru_eviction(lab: Lab):
    lab.tctx.configure(lab.addon, cache_heuristic_ttl=300, cache_max_entries=2)
    a, b, c = (f"{URL}?n={n}" for n in "abc")
    lab.fetch(a)
    lab.fetch(b)
    assert outcome(lab.fetch(a)) == "HIT"  # a is now more recently used than b
    lab.fetch(c)  # evicts b
    assert outcome(lab.fetch(a)) == "HIT"
    assert outcome(lab.fetch(c)) == "HIT"
    assert outcome(lab.fetch(b)) == "STORE"
    assert len(lab.addon.entries) == 2


def test_lowering_max_entries_trims(lab: Lab):
    lab.tctx.configure(lab.addon, cache_heuristic_ttl=300)
    for n in range(5):
        lab.fetch(f"{URL}?n={n}")
    lab.tctx.configure(lab.addon, cache_max_entries=2)
    assert [url for _, url in lab.addon.entries] == [f"{URL}?n=3", f"{URL}?n=4"]


def test_no_headers_added_by_default(lab: Lab):
    lab.tctx.configure(lab.addon, cache_heuristic_ttl=300)
    for f in (lab.fetch(), lab.fetch()):
        assert "Via" not in f.response.headers
        assert "X-Cache" not in f.response.headers


def test_add_headers(lab: Lab):
    lab.tctx.configure(lab.addon, cache_heuristic_ttl=300, cache_add_headers=True)
    miss = lab.fetch(response_headers={"Via": "1.1 origin-lb"})
    hit = lab.fetch()
    assert miss.response.headers["X-Cache"] == "MISS"
    assert hit.response.headers["X-Cache"] == "HIT"
    assert hit.response.headers["Via"] == "1.1 origin-lb, 1.1 proxy-cache-lab"
    assert lab.addon.entries[("GET", URL)].response.headers.get("X-Cache") is None


def test_hook_order_as_in_mitmproxy(lab: Lab):
    """mitmproxy also runs the response hook for flows answered in the request hook."""
    lab.tctx.configure(lab.addon, cache_heuristic_ttl=300, cache_add_headers=True)
    lab.fetch()
    hit = lab.fetch()
    lab.addon.response(hit)
    assert outcome(hit) == "HIT"
    assert hit.response.headers.get_all("X-Cache") == ["HIT"]


@pytest.mark.parametrize(
    "options",
    [
        {"cache_max_entries": 0},
        {"cache_heuristic_ttl": -1},
        {"cache_heuristic_lm_percent": 150},
        {"cache_heuristic_lm_percent": -1},
    ],
)
def test_bad_options(lab: Lab, options: dict):
    with pytest.raises(exceptions.OptionsError):
        lab.tctx.configure(lab.addon, **options)
