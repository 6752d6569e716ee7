"""The proxy's event lines say which rule or misbehaviour stored an answer (proxies/cache_rule.py):
each profile's real SharedCache (taddons/tflow, a fake clock, the stand-in origin of
test_shared_cache), built from the profile file as mitmdump builds it, and one real mitmdump."""

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mitmproxy.test import taddons, tflow
from werkzeug.http import http_date

from proxies import profile
from proxies.cache_settings import Settings
from proxies.listeners import ProfileListeners
from proxies.misbehaviours import build
from proxies.observer import Observer, event_record
from tests.lab_helpers import LoopbackOrigin, Mitmdump, wait_for
from tests.test_listeners import flow_on, through
from tests.test_shared_cache import START, URL, Lab, make_lab

CORPORATE_RULE = (
    "heuristic freshness 300 s for an answer without explicit freshness (cache_heuristic_ttl)"
)
ENTRY_FIELDS = {"cache_rule", "cache_rule_kind", "cache_lifetime", "cache_stored_at"}


def lab_for(name: str) -> Iterator[Lab]:
    """A SharedCache with the profile's misbehaviours and cache options."""
    spec = profile.read(profile.profile_path(name))
    misbehaviours = build(spec.misbehaviours)
    for lab in make_lab(lambda: misbehaviours):
        lab.addon.apply(Settings.from_options(spec.options))
        yield lab


@pytest.fixture
def profile_lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    yield from lab_for(request.param)


def line(lab: Lab, url: str = URL, **fetch: Any) -> dict[str, Any]:
    """The observer's event line for one fetch through the lab's cache."""
    return event_record(lab.fetch(url, **fetch), lab.clock.now)


def by_profile(name: str) -> Any:
    return pytest.mark.parametrize("profile_lab", [name], indirect=True)


@by_profile("corporate-cache")
def test_corporate_cache_says_its_heuristic_ttl_stored_the_status(profile_lab: Lab):
    stored = line(profile_lab)
    assert stored["cache"] == "STORE"
    assert stored["cache_rule_kind"] == "heuristic"
    assert stored["cache_rule"] == CORPORATE_RULE
    assert stored["cache_lifetime"] == 300
    assert stored["cache_stored_at"] == START
    assert "cache_key_note" not in stored and "misbehaviour" not in stored


@by_profile("corporate-cache")
def test_a_hit_despite_the_requests_no_cache_names_the_misbehaviour(profile_lab: Lab):
    line(profile_lab)
    profile_lab.advance(5)
    hit = line(profile_lab, request_headers={"Cache-Control": "no-cache"})
    assert hit["cache"] == "HIT"
    assert hit["cache_rule"] == CORPORATE_RULE
    assert hit["cache_serve_note"] == "the request's no-cache ignored (ignore-request-no-cache)"


@by_profile("nginx-ignore-headers")
def test_nginx_ignore_headers_names_force_ttl_and_what_it_ignored(profile_lab: Lab):
    stored = line(profile_lab, response_headers={"Cache-Control": "no-store"})
    assert stored["cache"] == "STORE"
    assert stored["cache_rule_kind"] == "misbehaviour"
    assert stored["cache_rule"] == (
        "misbehaviour force-ttl: 60 s, the response's Cache-Control: no-store ignored. "
        "Ignores the origin's Cache-Control and Expires; listed statuses are cached for ttl."
    )
    assert stored["cache_lifetime"] == 60


@by_profile("shared-cache-leak")
def test_every_misbehaviour_that_changed_the_decision_is_named(profile_lab: Lab):
    headers = {"Cache-Control": "private, max-age=30", "Vary": "Cookie"}
    stored = line(profile_lab, f"{URL}?task_id=1", response_headers=headers)
    assert stored["cache_key_note"] == "query string dropped from the key (ignore-query-in-key)"
    # The lifetime is the origin's; the last misbehaviour that changed anything is named.
    assert stored["cache_rule"].startswith(
        "misbehaviour ignore-private: 30 s, the response's Vary: Cookie ignored (ignore-vary), "
        "the response's private ignored; freshness from the RFC rules: max-age=30 from the "
        "response. "
    )
    profile_lab.advance(35)  # 5 s past its lifetime: stale-while-updating serves it
    stale = line(profile_lab, f"{URL}?task_id=2")
    assert stale["cache"] == "HIT" and stale["x_cache"] is None
    assert stale["cache_serve_note"] == "served 5 s past its lifetime (stale-while-updating)"
    assert stale["cache_rule"] == stored["cache_rule"]


@by_profile("rfc")
@pytest.mark.parametrize(
    ("headers", "rule"),
    [
        ({"Cache-Control": "max-age=30"}, "max-age=30 from the response"),
        ({"Cache-Control": "max-age=5, s-maxage=30"}, "s-maxage=30 from the response"),
        (
            {"Expires": http_date(START + 30), "Date": http_date(START)},
            f"Expires: {http_date(START + 30)} from the response (30 s after Date)",
        ),
    ],
)
def test_explicit_freshness_names_the_field(profile_lab: Lab, headers: dict[str, str], rule: str):
    stored = line(profile_lab, response_headers=headers)
    assert (stored["cache"], stored["cache_rule_kind"]) == ("STORE", "explicit")
    assert stored["cache_rule"] == rule
    assert stored["cache_lifetime"] == 30


@by_profile("rfc")
def test_a_no_cache_answer_is_stored_to_be_revalidated(profile_lab: Lab):
    headers = {"Cache-Control": "no-cache", "ETag": '"v1"'}
    stored = line(profile_lab, response_headers=headers)
    assert (stored["cache"], stored["cache_rule_kind"]) == ("STORE", "revalidate")
    assert stored["cache_rule"] == (
        "stored, but revalidated before every use: the response's Cache-Control: no-cache"
    )
    assert stored["cache_lifetime"] == 0
    profile_lab.advance(2)
    revalidated = line(profile_lab, response_headers=headers)  # the origin answers 304
    assert revalidated["cache"] == "REVALIDATED"
    assert revalidated["cache_rule_kind"] == "revalidate"
    assert revalidated["cache_stored_at"] == START + 2  # the refreshed entry's


@by_profile("rfc")
def test_an_answer_not_stored_has_no_rule(profile_lab: Lab):
    missed = line(profile_lab)
    assert missed["cache"] == "MISS"
    assert not ENTRY_FIELDS & set(missed)


@by_profile("squid-default")
def test_squid_default_names_the_refresh_pattern_line_that_matched(profile_lab: Lab):
    headers = {"Last-Modified": http_date(START - 86400), "Date": http_date(START)}
    stored = line(profile_lab, response_headers=headers)
    assert (stored["cache"], stored["cache_rule_kind"]) == ("STORE", "misbehaviour")
    assert stored["cache_rule"].startswith(
        "misbehaviour squid-refresh-pattern: 17280 s, refresh_pattern `. 0 20% 4320`: "
        "20% of its Last-Modified age, at most max 4320 min. "
    )
    assert stored["cache_lifetime"] == 17280


@by_profile("nginx-post-cache")
def test_a_key_without_the_method_is_noted(profile_lab: Lab):
    stored = line(profile_lab, method="POST")
    assert stored["cache"] == "STORE"
    assert stored["cache_key_note"] == "method POST keyed as GET (cache-post)"
    assert stored["cache_rule"].startswith("misbehaviour heuristic-ttl: 60 s. ")


def test_hit_lines_carry_the_stores_rule_and_time(tmp_path: Path):
    events = tmp_path / "events.jsonl"
    for lab in lab_for("corporate-cache"):
        observer = Observer(events_path=str(events))
        for _ in range(3):
            observer.response(lab.fetch())
            lab.advance(10)
        observer.done()
    store, first, second = (json.loads(text) for text in events.read_text().splitlines())
    assert [store["cache"], first["cache"], second["cache"]] == ["STORE", "HIT", "HIT"]
    for hit in (first, second):
        assert {name: hit[name] for name in ENTRY_FIELDS} == {
            name: store[name] for name in ENTRY_FIELDS
        }
    assert store["cache_stored_at"] == START
    assert "cache_hits" not in store
    assert (first["cache_hits"], second["cache_hits"]) == (1, 2)
    assert (first["age"], second["age"]) == (10, 20)


def test_a_flow_misbehaviour_is_logged_by_its_listener(tmp_path: Path):
    events = tmp_path / "flaky.jsonl"
    flaky = profile.read(profile.profile_path("flaky-network"))
    spec = profile.listener_spec(flaky) | {"events": str(events)}
    addon = ProfileListeners()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, listeners=json.dumps({"8081": spec}))
        for _ in range(2):
            through(addon, flow_on(8081))
        addon.done()
    passed, failed = (json.loads(text) for text in events.read_text().splitlines())
    assert "misbehaviour" not in passed
    assert failed["status"] == 502
    assert failed["misbehaviour"] == "flaky-upstream: 502 (#2 of /tasks/1/status)"


def test_an_error_line_keeps_the_misbehaviour():
    killed = tflow.tflow(err=True)
    killed.metadata["misbehaviour"] = "close-idle-connections: idle 0.300 s"
    assert event_record(killed, START)["misbehaviour"] == "close-idle-connections: idle 0.300 s"


# --- the real mitmdump in front of a loopback origin ---------------------------------------


@pytest.mark.stack
def test_mitmdump_logs_the_rule_on_the_hit(tmp_path: Path, mitmdump: Callable[..., Mitmdump]):
    events = tmp_path / "events.jsonl"
    with LoopbackOrigin(
        lambda method, path: (200, "application/json", b'{"state": "PENDING"}')
    ) as origin:
        proxy = mitmdump(
            ["proxies/lab_addons.py"], {"profile": "corporate-cache", "observer_events": events}
        )
        with httpx.Client(proxy=proxy.url, trust_env=False, timeout=10) as client:
            for _ in range(2):
                assert client.get(f"{origin.url}/api/tasks/1/status").status_code == 200

        def two_lines() -> list[dict[str, Any]] | None:
            lines = events.read_text().splitlines() if events.exists() else []
            return [json.loads(text) for text in lines] if len(lines) >= 2 else None

        store, hit = wait_for(two_lines, 10, "two event lines")  # type: ignore[misc]
    assert (store["cache"], hit["cache"]) == ("STORE", "HIT")
    assert hit["cache_rule"] == CORPORATE_RULE
    assert hit["cache_rule_kind"] == "heuristic"
    assert hit["cache_lifetime"] == 300
    assert hit["cache_stored_at"] == store["cache_stored_at"]
    assert store["cache_stored_at"] <= hit["time"]
    assert hit["cache_hits"] == 1
