from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import pytest
from mitmproxy import exceptions, http
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow, tutils
from werkzeug.http import http_date

from proxies import cache_policy
from proxies.misbehaviours.base import Misbehaviour
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
    """A SharedCache in a test context, plus a conditional-aware stand-in for the origin."""

    addon: SharedCache
    tctx: taddons.context
    clock: FakeClock
    origin_hits: list[str] = field(default_factory=list)
    # The requests that reached the origin, as the cache sent them.
    origin_requests: list[http.Request] = field(default_factory=list)
    # Flows the cache asked to refresh in the background (stale-while-revalidate).
    refreshes: list[http.HTTPFlow] = field(default_factory=list)

    def fetch(
        self,
        url: str = URL,
        *,
        method: str = "GET",
        request_headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
        status: int = 200,
        content: bytes = b"body",
        flow: http.HTTPFlow | None = None,
    ) -> http.HTTPFlow:
        """One pass through the proxy, as mitmproxy would drive the hooks. The origin answers
        304 (with the same headers) to a conditional request its answer would match, as the
        sample app does."""
        f = flow or tflow.tflow()
        f.request.url = url
        f.request.method = method
        f.request.headers.update(request_headers or {})
        self.addon.request(f)
        if f.response is None:  # not answered by the cache: ask the "origin"
            self.origin_hits.append(url)
            self.origin_requests.append(f.request.copy())
            f.response = origin_answer(f.request, status, response_headers or {}, content)
            self.addon.response(f)
        return f

    def advance(self, seconds: float) -> None:
        self.clock.now += seconds

    def with_misbehaviours(self, *chain: Misbehaviour) -> "Lab":
        self.addon.misbehaviours = lambda: chain
        return self


def origin_answer(
    request: http.Request, status: int, headers: dict[str, str], content: bytes
) -> http.Response:
    response = tutils.tresp(status_code=status)
    response.content = content  # also sets Content-Length
    response.headers.update(headers)
    if status == 200 and _not_modified(request.headers, response.headers):
        response.status_code, response.reason = 304, "Not Modified"
        response.content = b""
    return response


def _not_modified(request: http.Headers, response: http.Headers) -> bool:
    if "If-None-Match" in request:
        return cache_policy.weak_match(response.get("ETag"), request["If-None-Match"])
    return cache_policy.not_modified_since(response, request.get("If-Modified-Since"))


def make_lab(misbehaviours: Callable[[], Sequence[Misbehaviour]] = lambda: ()) -> Iterator[Lab]:
    addon = SharedCache(misbehaviours)
    clock = FakeClock()
    addon.clock = clock
    with taddons.context(addon) as tctx:
        lab = Lab(addon, tctx, clock)
        addon.refresh_in_background = lab.refreshes.append
        yield lab


@pytest.fixture
def lab() -> Iterator[Lab]:
    yield from make_lab()


def outcome(f: http.HTTPFlow) -> str:
    return f.metadata["cache"]


def assert_fresh_for(lab: Lab, lifetime: int) -> None:
    """Served from the cache until `lifetime` seconds after it was stored, not a second more."""
    lab.advance(lifetime - 1)
    assert outcome(lab.fetch()) == "HIT"
    lab.advance(1)
    assert outcome(lab.fetch()) == "MISS"


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
    assert_fresh_for(lab, 2)


def test_expires_zero_is_not_stored(lab: Lab):
    lab.tctx.configure(lab.addon, cache_heuristic_ttl=300)
    assert outcome(lab.fetch(response_headers={"Expires": "0"})) == "MISS"
    assert outcome(lab.fetch()) == "STORE"  # the heuristic still applies without Expires


def test_expires_in_future_is_stored(lab: Lab):
    headers = {"Expires": http_date(START + 60), "Date": http_date(START)}
    assert outcome(lab.fetch(response_headers=headers)) == "STORE"
    assert_fresh_for(lab, 60)


@pytest.mark.parametrize("cache_control", ["no-store, max-age=60", "private, max-age=60"])
def test_no_store_and_private_are_never_stored(lab: Lab, cache_control: str):
    lab.tctx.configure(lab.addon, cache_heuristic_ttl=300)
    assert outcome(lab.fetch(response_headers={"Cache-Control": cache_control})) == "MISS"
    assert outcome(lab.fetch()) == "STORE"
    assert lab.addon.entries  # sanity: the later plain response was stored


def test_response_no_cache_without_validator_is_not_kept(lab: Lab):
    """Stale on arrival (no-cache) and nothing to revalidate it with: useless, not stored."""
    lab.fetch(response_headers={"Cache-Control": "no-cache, max-age=60"})
    assert outcome(lab.fetch()) == "MISS"
    assert len(lab.origin_hits) == 2
    assert not lab.addon.entries


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
    assert_fresh_for(lab, 50)


def test_last_modified_heuristic_disabled_by_zero_percent(lab: Lab):
    """No freshness, but a validator: kept, and revalidated with If-Modified-Since."""
    lab.tctx.configure(lab.addon, cache_heuristic_lm_percent=0)
    headers = {"Last-Modified": http_date(START - 1000)}
    assert outcome(lab.fetch(response_headers=headers)) == "STORE"
    assert outcome(lab.fetch(response_headers=headers)) == "REVALIDATED"
    assert lab.origin_requests[1].headers["If-Modified-Since"] == headers["Last-Modified"]


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
        {"cache_max_bytes": 0},
        {"cache_heuristic_ttl": -1},
        {"cache_heuristic_lm_percent": 150},
        {"cache_heuristic_lm_percent": -1},
    ],
)
def test_bad_options(lab: Lab, options: dict):
    with pytest.raises(exceptions.OptionsError):
        lab.tctx.configure(lab.addon, **options)


# -- revalidation (RFC 9111 4.3) -------------------------------------------------------------


def test_no_cache_with_etag_is_stored_and_revalidated_every_time(lab: Lab):
    pending = {"Cache-Control": "no-cache", "ETag": 'W/"pending"'}
    assert outcome(lab.fetch(response_headers=pending, content=b"PENDING")) == "STORE"
    again = lab.fetch(response_headers=pending, content=b"PENDING")
    assert outcome(again) == "REVALIDATED"
    assert lab.origin_requests[-1].headers["If-None-Match"] == 'W/"pending"'
    assert again.response.status_code == 200
    assert again.response.content == b"PENDING"
    assert again.response.headers["Age"] == "0"
    # The state changed: a new ETag, so the origin answers 200 and the entry is replaced.
    success = {"Cache-Control": "no-cache", "ETag": 'W/"success"'}
    done = lab.fetch(response_headers=success, content=b"SUCCESS")
    assert outcome(done) == "STORE"
    assert done.response.content == b"SUCCESS"
    assert len(lab.origin_hits) == 3  # every poll went to the origin


def test_stale_entry_is_revalidated_and_freshened(lab: Lab):
    first = {"Cache-Control": "max-age=10", "ETag": '"v1"'}
    lab.fetch(response_headers=first)
    lab.advance(15)
    # 4.3.4: the 304's fields replace the stored ones; the age starts again from zero.
    refreshed = {"Cache-Control": "max-age=10", "ETag": '"v1"', "X-Refreshed": "yes"}
    revalidated = lab.fetch(response_headers=refreshed)
    assert outcome(revalidated) == "REVALIDATED"
    assert revalidated.response.headers["X-Refreshed"] == "yes"
    assert revalidated.response.headers["Content-Length"] == "4"  # 3.2: not taken from a 304
    assert revalidated.response.content == b"body"
    lab.advance(5)
    hit = lab.fetch()
    assert outcome(hit) == "HIT"
    assert hit.response.headers["Age"] == "5"
    assert hit.response.headers["X-Refreshed"] == "yes"


def test_stale_entry_replaced_when_the_origin_answers_200(lab: Lab):
    lab.fetch(response_headers={"Cache-Control": "max-age=10", "ETag": '"v1"'})
    lab.advance(15)
    changed = lab.fetch(response_headers={"Cache-Control": "max-age=10", "ETag": '"v2"'},
                        content=b"new")  # fmt: skip
    assert outcome(changed) == "STORE"
    assert lab.fetch().response.content == b"new"


def test_client_conditional_request_gets_the_origins_304(lab: Lab):
    headers = {"Cache-Control": "no-cache", "ETag": '"a"'}
    lab.fetch(response_headers=headers)
    lab.advance(7)
    own = lab.fetch(request_headers={"If-None-Match": '"a"'}, response_headers=headers)
    assert own.response.status_code == 304  # passed through, not turned into a 200
    assert outcome(own) == "MISS"
    assert lab.origin_requests[-1].headers["If-None-Match"] == '"a"'  # the client's, as sent
    entry = lab.addon.entries[("GET", URL)]
    assert entry.stored_at == lab.clock.now  # ours was freshened on the way


def test_fresh_entry_answers_the_clients_conditional_itself(lab: Lab):
    lab.fetch(response_headers={"Cache-Control": "max-age=60", "ETag": '"a"'})
    same = lab.fetch(request_headers={"If-None-Match": 'W/"a"'})
    assert outcome(same) == "HIT"
    assert same.response.status_code == 304
    assert same.response.content == b""
    other = lab.fetch(request_headers={"If-None-Match": '"b"'})
    assert (outcome(other), other.response.status_code) == ("HIT", 200)
    assert len(lab.origin_hits) == 1


def test_if_modified_since_answered_from_a_fresh_entry(lab: Lab):
    modified = http_date(START - 100)
    lab.fetch(response_headers={"Cache-Control": "max-age=60", "Last-Modified": modified})
    assert (
        lab.fetch(request_headers={"If-Modified-Since": http_date(START)}).response.status_code
        == 304
    )
    older = lab.fetch(request_headers={"If-Modified-Since": http_date(START - 200)})
    assert older.response.status_code == 200


def test_a_304_for_another_copy_drops_ours(lab: Lab):
    lab.fetch(response_headers={"Cache-Control": "max-age=1", "ETag": '"a"'})
    lab.advance(2)
    f = tflow.tflow()
    f.request.url = URL
    lab.addon.request(f)
    assert f.request.headers["If-None-Match"] == '"a"'
    f.response = tutils.tresp(status_code=304, content=b"")
    f.response.headers["ETag"] = '"b"'
    lab.addon.response(f)
    assert outcome(f) == "MISS"
    assert not lab.addon.entries


def test_a_304_that_forbids_storing_is_used_once_then_the_entry_goes(lab: Lab):
    lab.fetch(response_headers={"Cache-Control": "max-age=1", "ETag": '"a"'})
    lab.advance(2)
    last = lab.fetch(response_headers={"Cache-Control": "no-store", "ETag": '"a"'})
    assert (outcome(last), last.response.content) == ("REVALIDATED", b"body")
    assert last.response.headers["Cache-Control"] == "no-store"
    assert not lab.addon.entries


def test_the_clients_304_for_another_copy_leaves_ours_alone(lab: Lab):
    lab.fetch(response_headers={"Cache-Control": "no-cache", "ETag": '"ours"'})
    theirs = {"Cache-Control": "no-cache", "ETag": '"theirs"'}
    passed = lab.fetch(request_headers={"If-None-Match": '"theirs"'}, response_headers=theirs)
    assert passed.response.status_code == 304
    assert lab.addon.entries[("GET", URL)].response.headers["ETag"] == '"ours"'


def test_must_revalidate_is_never_served_stale(lab: Lab):
    cc = "max-age=1, must-revalidate, stale-while-revalidate=60, stale-if-error=60"
    lab.fetch(response_headers={"Cache-Control": cc})
    lab.advance(2)
    failed = lab.fetch(status=503)
    assert (outcome(failed), failed.response.status_code) == ("MISS", 503)
    assert not lab.refreshes


def test_stale_while_revalidate_serves_stale_and_refreshes_in_background(lab: Lab):
    headers = {"Cache-Control": "max-age=1, stale-while-revalidate=30", "ETag": '"a"'}
    lab.fetch(response_headers=headers)
    lab.advance(5)
    stale = lab.fetch(request_headers={"If-None-Match": '"old"'})
    assert outcome(stale) == "HIT"
    assert stale.metadata["cache_stale"] is True
    assert stale.response.headers["Age"] == "5"
    assert len(lab.refreshes) == 1
    refresh = lab.refreshes[0]
    assert refresh.metadata == {"cache_refresh": True}
    assert "If-None-Match" not in refresh.request.headers  # the client's validator stays out
    lab.advance(1)
    assert outcome(lab.fetch()) == "HIT"
    assert len(lab.refreshes) == 1  # one refresh at a time
    done = lab.fetch(flow=refresh, response_headers=headers)  # the refresh reaches the origin
    assert outcome(done) == "REVALIDATED"
    fresh = lab.fetch()
    assert (outcome(fresh), fresh.response.headers["Age"]) == ("HIT", "0")
    assert "cache_stale" not in fresh.metadata
    lab.advance(40)  # past the stale-while-revalidate window: revalidated before use
    assert outcome(lab.fetch(response_headers=headers)) == "REVALIDATED"


def test_a_failed_refresh_may_be_retried(lab: Lab):
    headers = {"Cache-Control": "max-age=1, stale-while-revalidate=30", "ETag": '"a"'}
    lab.fetch(response_headers=headers)
    lab.advance(5)
    lab.fetch()
    refresh = lab.refreshes[0]
    lab.addon.request(refresh)
    lab.addon.error(refresh)
    lab.fetch()
    assert len(lab.refreshes) == 2


def test_stale_if_error_serves_stale_on_5xx_within_its_window(lab: Lab):
    lab.fetch(response_headers={"Cache-Control": "max-age=1, stale-if-error=60"})
    lab.advance(5)
    rescued = lab.fetch(status=503)
    assert (outcome(rescued), rescued.response.status_code) == ("HIT", 200)
    assert rescued.response.content == b"body"
    lab.advance(100)
    failed = lab.fetch(status=503)
    assert (outcome(failed), failed.response.status_code) == ("MISS", 503)
    assert lab.addon.entries  # an error does not replace a stored answer


def test_a_stale_entry_without_permission_is_not_served(lab: Lab):
    lab.fetch(response_headers={"Cache-Control": "max-age=1"})
    lab.advance(2)
    assert lab.fetch(status=502).response.status_code == 502


def test_refresh_flows_always_reach_the_origin(lab: Lab):
    lab.fetch(response_headers={"Cache-Control": "max-age=60"})
    f = tflow.tflow()
    f.metadata["cache_refresh"] = True
    assert outcome(lab.fetch(flow=f, response_headers={"Cache-Control": "max-age=60"})) == "STORE"
    assert len(lab.origin_hits) == 2


# -- invalidation (RFC 9111 4.4) -------------------------------------------------------------


def test_unsafe_method_invalidates_the_stored_answer(lab: Lab):
    lab.fetch(response_headers={"Cache-Control": "max-age=60"})
    assert outcome(lab.fetch(method="POST", status=500)) == "BYPASS"  # an error: nothing changed
    assert outcome(lab.fetch()) == "HIT"
    assert outcome(lab.fetch(method="DELETE", status=204)) == "BYPASS"
    assert not lab.addon.entries
    assert outcome(lab.fetch(response_headers={"Cache-Control": "max-age=60"})) == "STORE"


# -- bounded memory --------------------------------------------------------------------------


def test_max_bytes_evicts_least_recently_used(lab: Lab):
    lab.tctx.configure(lab.addon, cache_heuristic_ttl=300, cache_max_bytes=10)
    a, b, c = (f"{URL}?n={n}" for n in "abc")
    lab.fetch(a, content=b"aaaa")
    lab.fetch(b, content=b"bbbb")
    assert outcome(lab.fetch(a)) == "HIT"
    lab.fetch(c, content=b"cccc")  # 12 bytes > 10: b, the least recently used, goes
    assert [url for _, url in lab.addon.entries] == [a, c]
    assert lab.addon.store.stored_bytes == 8
    assert outcome(lab.fetch(f"{URL}?big", content=b"x" * 11)) == "MISS"  # never fits
    lab.tctx.configure(lab.addon, cache_max_bytes=5)
    assert [url for _, url in lab.addon.entries] == [c]


def test_memory_stays_bounded_over_10000_distinct_urls(lab: Lab):
    # Twenty times what the byte limit lets in is enough to show it binds; bench/cache_memory.py
    # measures 100,000 URLs.
    lab.tctx.configure(
        lab.addon, cache_heuristic_ttl=300, cache_max_entries=1000, cache_max_bytes=50_000
    )
    body = tutils.tresp(content=b"x" * 100)
    f = tflow.tflow(resp=False)
    largest = 0
    for n in range(10_000):
        f.request.path = f"/status/{n}"
        f.response = None
        f.metadata.clear()
        lab.addon.request(f)
        f.response = body
        lab.addon.response(f)
        largest = max(largest, len(lab.addon.entries))
        assert lab.addon.store.stored_bytes <= 50_000
    assert outcome(f) == "STORE"
    assert len(lab.addon.entries) == 500  # the byte limit binds first: 500 bodies of 100 bytes
    assert largest == 500
    assert lab.addon.store.stored_bytes == sum(e.size for e in lab.addon.entries.values()) == 50_000
    lab.tctx.configure(lab.addon, cache_max_entries=10)
    assert len(lab.addon.entries) == 10
    assert lab.addon.store.stored_bytes == 1000


# -- the misbehaviour chain -----------------------------------------------------------------


class Recorder(Misbehaviour):
    """Records every cache-policy hook call and returns the decision unchanged."""

    name = "recorder"  # never registered: defined in a test module
    summary = imitates = "test"

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, object]] = []

    def cacheable_method(self, request, decision):
        self.calls.append(("cacheable_method", decision))
        return decision

    def cache_key(self, request, key):
        self.calls.append(("cache_key", key))
        return key

    def accepts_stored(self, request, decision):
        self.calls.append(("accepts_stored", decision))
        return decision

    def visible_headers(self, request, response, headers):
        self.calls.append(("visible_headers", headers.get("Cache-Control")))
        return headers

    def storable(self, request, response, decision):
        self.calls.append(("storable", decision))
        return decision

    def freshness_lifetime(self, request, response, lifetime, now):
        self.calls.append(("freshness_lifetime", lifetime))
        return lifetime

    def vary_fields(self, response, fields):
        self.calls.append(("vary_fields", fields))
        return fields

    def serve_stale(self, request, stale_for, upstream_failed, decision):
        self.calls.append(("serve_stale", (stale_for, upstream_failed, decision)))
        return decision


def test_every_decision_goes_through_the_chain(lab: Lab):
    first, second = Recorder(), Recorder()
    lab.with_misbehaviours(first, second)
    headers = {"Cache-Control": "max-age=10, stale-while-revalidate=5", "Vary": "X-User"}
    lab.fetch(request_headers={"X-User": "a"}, response_headers=headers)
    lab.advance(12)
    lab.fetch(request_headers={"X-User": "a"}, response_headers=headers)
    assert first.calls == second.calls
    assert first.calls == [
        ("cacheable_method", True),
        ("cache_key", ("GET", URL)),
        ("visible_headers", "max-age=10, stale-while-revalidate=5"),
        ("storable", True),
        ("freshness_lifetime", 10.0),
        ("vary_fields", ("x-user",)),
        ("cacheable_method", True),
        ("cache_key", ("GET", URL)),
        ("accepts_stored", True),
        ("serve_stale", (2.0, False, True)),
    ]


class Flip(Misbehaviour):
    name = "flip"
    summary = imitates = "test"

    def storable(self, request, response, decision):
        return not decision

    def cache_key(self, request, key):
        return ("ANY", request.path)


def test_misbehaviours_decide_and_do_not_change_what_is_served(lab: Lab):
    lab.with_misbehaviours(Flip())
    lab.tctx.configure(lab.addon, cache_heuristic_ttl=60)
    assert outcome(lab.fetch(response_headers={"Cache-Control": "no-store"})) == "STORE"
    assert ("ANY", "/api/tasks/42/status") in lab.addon.entries
    hit = lab.fetch()
    assert outcome(hit) == "HIT"
    assert hit.response.headers["Cache-Control"] == "no-store"  # stored as it came


def test_stale_and_revalidated_answers_are_labelled(lab: Lab):
    lab.tctx.configure(lab.addon, cache_add_headers=True)
    headers = {"Cache-Control": "max-age=1, stale-while-revalidate=30", "ETag": '"a"'}
    lab.fetch(response_headers=headers)
    lab.advance(2)
    assert lab.fetch().response.headers["X-Cache"] == "STALE"
    lab.advance(40)
    revalidated = lab.fetch(response_headers=headers)
    assert revalidated.response.headers["X-Cache"] == "REVALIDATED"
    assert revalidated.response.headers["Via"] == "1.1 proxy-cache-lab"


def test_age_is_added_even_when_the_cache_stays_invisible(lab: Lab):
    lab.fetch(response_headers={"Cache-Control": "max-age=60"})
    lab.advance(3)
    hit = lab.fetch()
    assert hit.response.headers["Age"] == "3"
    assert "Via" not in hit.response.headers and "X-Cache" not in hit.response.headers


# -- found by the HTTP caching test suite (bench/cache_tests.py) -----------------------------


@pytest.mark.parametrize("field", ["Location", "Content-Location"])
def test_an_unsafe_answer_invalidates_its_same_origin_location(lab: Lab, field: str):
    other = "http://app.test:8080/api/tasks/43/status"
    lab.fetch(other, response_headers={"Cache-Control": "max-age=60"})
    lab.fetch(method="POST", response_headers={field: "/api/tasks/43/status"}, status=201)
    assert outcome(lab.fetch(other)) == "MISS"


def test_a_location_of_another_origin_is_left_alone(lab: Lab):
    # RFC 9111 4.4: invalidating another origin's URL would let one site empty another's cache.
    other = "http://elsewhere.test/api/tasks/43/status"
    lab.fetch(other, response_headers={"Cache-Control": "max-age=60"})
    lab.fetch(method="POST", response_headers={"Location": other}, status=201)
    assert outcome(lab.fetch(other)) == "HIT"


def test_fields_named_in_connection_are_not_stored(lab: Lab):
    fields = {"Cache-Control": "max-age=60", "Connection": "a", "A": "1", "C": "3"}
    lab.fetch(response_headers=fields)
    hit = lab.fetch()
    assert outcome(hit) == "HIT"
    assert "A" not in hit.response.headers and "Connection" not in hit.response.headers
    assert hit.response.headers["C"] == "3"


def test_a_304_does_not_replace_what_describes_the_stored_content(lab: Lab):
    stored = {"Cache-Control": "max-age=10", "ETag": '"v1"', "Content-MD5": "old"}
    lab.fetch(response_headers=stored)
    lab.advance(15)
    # RFC 9111 3.2: the 304 carries no content; its digest cannot describe the stored body.
    revalidated = lab.fetch(response_headers={**stored, "Content-MD5": "new", "X-New": "1"})
    assert outcome(revalidated) == "REVALIDATED"
    assert revalidated.response.headers["Content-MD5"] == "old"
    assert revalidated.response.headers["X-New"] == "1"


def reverse_flow() -> http.HTTPFlow:
    f = tflow.tflow()
    f.client_conn.proxy_mode = ProxyMode.parse("reverse:http://app.test:8080")
    return f


@pytest.fixture
def cdn_lab(lab: Lab) -> Lab:
    lab.tctx.configure(lab.addon, cache_targeted_fields=["CDN-Cache-Control"])
    return lab


def test_a_reverse_proxy_obeys_cdn_cache_control_over_cache_control(cdn_lab: Lab):
    # RFC 9213 2.2: the targeted field wins; Cache-Control and Expires are ignored.
    lab = cdn_lab
    fields = {"Cache-Control": "no-store", "CDN-Cache-Control": "max-age=60"}
    assert outcome(lab.fetch(response_headers=fields, flow=reverse_flow())) == "STORE"
    assert outcome(lab.fetch(flow=reverse_flow())) == "HIT"
    lab.addon.store.clear()
    fields = {"Cache-Control": "max-age=60", "CDN-Cache-Control": "no-store"}
    assert outcome(lab.fetch(response_headers=fields, flow=reverse_flow())) == "MISS"


def test_an_invalid_cdn_cache_control_is_ignored(cdn_lab: Lab):
    lab = cdn_lab
    fields = {"Cache-Control": "max-age=60", "CDN-Cache-Control": "MAX-AGE=0"}  # keys: lower case
    assert outcome(lab.fetch(response_headers=fields, flow=reverse_flow())) == "STORE"


def test_a_forward_proxy_is_no_cdn(cdn_lab: Lab):
    fields = {"Cache-Control": "max-age=60", "CDN-Cache-Control": "no-store"}
    assert outcome(cdn_lab.fetch(response_headers=fields)) == "STORE"


def test_no_targeted_field_unless_configured(lab: Lab):
    fields = {"Cache-Control": "max-age=60", "CDN-Cache-Control": "no-store"}
    assert outcome(lab.fetch(response_headers=fields, flow=reverse_flow())) == "STORE"
