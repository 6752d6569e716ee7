"""strategies.json is the single definition the page's JavaScript and the Python side both read."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from importlib import resources
from urllib.parse import parse_qs, urlsplit

import pytest

from lab.clients.polling import Poll, StaleWatch
from sample_app import strategies
from sample_app.strategies import StrategyError

RAW = strategies.raw_definitions()
BOOK = strategies.load()
NAMES = list(RAW["strategies"])
STATIC = resources.files("sample_app").joinpath("static")
POLLER_JS_PATH = STATIC.joinpath("poller.js")
POLLER_JS = POLLER_JS_PATH.read_text("utf-8")
STYLES = list(RAW["status_paths"])
NONCE_KINDS = [None, *strategies.NONCE_KINDS]
NODE = shutil.which("node")


def test_top_level_keys():
    assert set(RAW["final_states"]) >= {"SUCCESS"}
    assert set(RAW["status_paths"]) == {"path", "query"}
    for template in (*RAW["status_paths"].values(), RAW["events_path"]):
        assert template.count("{task_id}") == 1
    assert RAW["nonce"]["query_param"] and RAW["nonce"]["bytes"] >= 8
    assert RAW["strategies"]
    assert isinstance(RAW["comment"], list)
    assert BOOK.status_path == RAW["status_paths"]["path"]


@pytest.mark.parametrize("name", NAMES)
def test_every_strategy_spells_out_every_key_of_the_schema(name):
    spec = RAW["strategies"][name]
    assert list(spec) == list(RAW["schema"])
    assert list(spec["poll"]) == list(strategies.POLL_KEYS)
    assert set(spec["retry"]) == {"attempts", "initial_ms", "factor"}
    assert spec["summary"].strip()
    for headers in (spec["poll"]["request_headers"], spec["response_headers"]):
        assert isinstance(headers, dict)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())


def test_the_schema_is_the_one_python_reads():
    assert tuple(RAW["schema"]) == strategies.STRATEGY_KEYS


@pytest.mark.parametrize("name", NAMES)
def test_python_strategy_mirrors_the_json(name):
    spec, strategy = RAW["strategies"][name], BOOK.get(name)
    poll = spec["poll"]
    assert strategy.transport == spec["transport"]
    assert strategy.poll.method == poll["method"]
    assert strategy.poll.nonce == poll["nonce"]
    assert strategy.poll.request_headers == poll["request_headers"] == strategy.request_headers
    assert strategy.poll.fetch_cache == poll["fetch_cache"]
    assert strategy.poll.body == poll["body"]
    assert strategy.response_headers == spec["response_headers"]
    assert strategy.etag is spec["etag"]
    assert strategy.last_modified_age_s == spec["last_modified_age_s"]
    if spec["detect_stale"] is None:
        assert strategy.detect_stale is None
    else:
        assert strategy.detect_stale.after_polls == spec["detect_stale"]["after_polls"]
        assert strategy.detect_stale.switch_to_nonce == spec["detect_stale"]["switch_to_nonce"]
    assert strategy.retry.attempts == spec["retry"]["attempts"]
    assert strategy.retry.initial_ms == spec["retry"]["initial_ms"]
    assert strategy.retry.factor == spec["retry"]["factor"]
    assert BOOK.final_states == frozenset(RAW["final_states"])


def test_only_the_storys_app_gives_up_on_the_first_failure():
    attempts = {name: BOOK.get(name).retry.attempts for name in NAMES}
    assert attempts.pop("none") == 0
    assert all(n > 0 for n in attempts.values()), attempts


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("none", {"transport": "poll", "nonce": None, "method": "GET"}),
        ("nonce", {"nonce": "query"}),
        ("path-nonce", {"nonce": "path"}),
        ("post", {"method": "POST", "body": {}}),
        ("sse", {"transport": "sse"}),
        ("belt-and-braces", {"nonce": "query"}),
        ("request-no-cache", {"fetch_cache": "no-store"}),
    ],
)
def test_the_requests_each_strategy_makes(name, expected):
    strategy = BOOK.get(name)
    actual = {"transport": strategy.transport, **vars(strategy.poll)}
    assert {key: actual[key] for key in expected} == expected


@pytest.mark.parametrize(
    ("name", "headers", "etag", "last_modified_age_s"),
    [
        ("none", {}, False, None),
        ("no-store", {"Cache-Control": "no-store", "Pragma": "no-cache", "Expires": "0"}, 0, None),
        ("no-cache-etag", {"Cache-Control": "no-cache"}, True, None),
        ("private", {"Cache-Control": "private"}, False, None),
        (
            "belt-and-braces",
            {
                "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
                "Pragma": "no-cache",
                "Expires": "0",
            },
            False,
            None,
        ),
        ("cc-no-store", {"Cache-Control": "no-store"}, False, None),
        ("cc-no-cache", {"Cache-Control": "no-cache"}, False, None),
        ("cc-max-age-0", {"Cache-Control": "max-age=0"}, False, None),
        ("expires-0", {"Expires": "0"}, False, None),
        ("pragma-no-cache", {"Pragma": "no-cache"}, False, None),
        ("last-modified", {}, False, 86400),
        ("request-no-cache", {}, False, None),
    ],
)
def test_the_answers_each_strategy_asks_of_the_server(name, headers, etag, last_modified_age_s):
    strategy = BOOK.get(name)
    assert strategy.response_headers == headers
    assert strategy.etag == bool(etag)
    assert strategy.last_modified_age_s == last_modified_age_s


def test_request_no_cache_sends_what_fetch_no_store_sends():
    assert BOOK.get("request-no-cache").request_headers == {
        "Cache-Control": "no-cache",
        "Pragma": "no-cache",
    }


def test_detect_stale_switches_to_the_path_nonce_after_three():
    spec = BOOK.get("detect-stale").detect_stale
    assert (spec.after_polls, spec.switch_to_nonce) == (3, "path")
    assert spec.warning == "stale answers detected after 3 polls; switched to path-nonce"


def test_unknown_strategy_names_the_known_ones():
    with pytest.raises(KeyError, match="nonce"):
        BOOK.get("nosuch")


# -- status targets: every URL style with every nonce kind

EXPECTED_TARGETS = {
    ("path", None): "/tasks/a%2Fb/status",
    ("path", "query"): "/tasks/a%2Fb/status?nonce=N",
    ("path", "path"): "/tasks/a%2Fb/status/N",
    ("query", None): "/status?task_id=a%2Fb",
    ("query", "query"): "/status?task_id=a%2Fb&nonce=N",
    ("query", "path"): "/status/N?task_id=a%2Fb",
}


@pytest.mark.parametrize(("style", "kind"), list(EXPECTED_TARGETS))
def test_status_target(style, kind):
    target = BOOK.status_target("a/b", style=style, nonce_kind=kind, nonce="N")
    assert target == EXPECTED_TARGETS[(style, kind)]


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("kind", strategies.NONCE_KINDS)
def test_status_target_draws_a_fresh_nonce_each_time(style, kind):
    first = BOOK.status_target("abc", style=style, nonce_kind=kind)
    second = BOOK.status_target("abc", style=style, nonce_kind=kind)
    assert first != second
    plain = urlsplit(BOOK.status_path_for("abc", style))
    hex_nonce = rf"[0-9a-f]{{{2 * BOOK.nonce_bytes}}}"
    for target in (first, second):
        url = urlsplit(target)
        query = parse_qs(url.query)
        if kind == "query":
            assert url.path == plain.path
            assert re.fullmatch(hex_nonce, query.pop(BOOK.nonce_query_param)[0])
        else:
            head, _, nonce = url.path.rpartition("/")
            assert head == plain.path
            assert re.fullmatch(hex_nonce, nonce)
        assert query == parse_qs(plain.query)


def test_status_path_for_knows_both_styles_and_refuses_others():
    assert BOOK.status_path_for("abc") == "/tasks/abc/status"
    assert BOOK.status_path_for("abc", "query") == "/status?task_id=abc"
    with pytest.raises(KeyError, match="path, query"):
        BOOK.status_path_for("abc", "cookie")


def test_add_nonce_refuses_an_unknown_kind():
    with pytest.raises(ValueError, match="header"):
        strategies.add_nonce("/x", "header", "N", "nonce")


def test_route_for_turns_templates_into_flask_rules():
    assert strategies.route_for("/tasks/{task_id}/status") == ("/tasks/<task_id>/status", None)
    assert strategies.route_for("/status?task_id={task_id}") == ("/status", "task_id")
    with pytest.raises(StrategyError):
        strategies.route_for("/status")


# -- retry


def test_retry_delays_grow_exponentially():
    retry = BOOK.get("nonce").retry
    assert [retry.delay_s(n) for n in range(1, 6)] == [0.25, 0.5, 1.0, 2.0, 4.0]


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(None, True), (500, True), (502, True), (503, True), (429, True)]
    + [(200, False), (304, False), (400, False), (403, False), (404, False)],
)
def test_what_is_worth_retrying(status, retryable):
    assert strategies.is_retryable(status) is retryable


# -- validation


def broken(change) -> dict:
    raw = copy.deepcopy(RAW)
    change(raw["strategies"]["nonce"])
    return raw


@pytest.mark.parametrize(
    ("change", "names"),
    [
        (lambda s: s.pop("retry"), "retry: missing"),
        (lambda s: s.update(transport="websocket"), "transport"),
        (lambda s: s["poll"].update(nonce="cookie"), "poll.nonce"),
        (lambda s: s["poll"].update(method="PUT"), "poll.method"),
        (lambda s: s["poll"].update(fetch_cache="reload"), "poll.fetch_cache"),
        (lambda s: s["poll"].pop("body"), "poll"),
        (lambda s: s.update(transport="sse"), "poll"),
        (lambda s: s.update(retry={"attempts": -1, "initial_ms": 1, "factor": 2}), "retry"),
        (lambda s: s.update(detect_stale={"after_polls": 1, "switch_to_nonce": "path"}), "after"),
        (lambda s: s.update(response_headers={"Expires": 0}), "response_headers"),
        (lambda s: s.update(etag="yes"), "etag"),
    ],
)
def test_a_broken_definition_names_the_strategy_and_the_key(change, names):
    with pytest.raises(StrategyError, match=rf"'nonce'.*{re.escape(names)}"):
        strategies.parse(broken(change))


# -- the page's JavaScript reads the same definitions


@pytest.mark.parametrize(
    "reads",
    [
        "book.status_paths",
        "book.final_states",
        "book.events_path",
        "book.nonce.query_param",
        "book.nonce.bytes",
        ".request_headers",
        ".fetch_cache",
        "strategy.transport",
        "strategy.retry",
        "strategy.detect_stale",
        "strategy.poll",
        "config.statusUrlStyle",
        "new EventSource(",
    ],
)
def test_poller_js_reads_the_shared_definitions(reads):
    assert reads in POLLER_JS


def test_poller_js_parses_the_embedded_json():
    assert 'JSON.parse(document.getElementById("strategies").textContent)' in POLLER_JS


@pytest.mark.parametrize("name", NAMES)
def test_poller_js_does_not_hard_code_strategy_names(name):
    for quote in "\"'`":
        assert f"{quote}{name}{quote}" not in POLLER_JS


def all_header_names() -> set[str]:
    names = {"Cache-Control", "Pragma", "Expires", "ETag", "Last-Modified", "If-None-Match"}
    names |= set(RAW["events_response_headers"])
    for spec in RAW["strategies"].values():
        names |= set(spec["poll"]["request_headers"]) | set(spec["response_headers"])
    return names


@pytest.mark.parametrize("header", sorted(all_header_names()))
def test_poller_js_does_not_hard_code_cache_headers(header):
    assert header.lower() not in POLLER_JS.lower()


# -- and computes exactly what the Python side computes (needs Node; skipped without it)

NODE_SCRIPT = """
const { makeLogic } = require(process.argv[2]);
const book = JSON.parse(require("fs").readFileSync(process.argv[3], "utf8"));
const logic = makeLogic(book);
const out = { targets: {}, delays: {}, retryable: {}, warnings: {}, stale: {} };
for (const style of Object.keys(book.status_paths)) {
  for (const kind of [null, "query", "path"]) {
    out.targets[style + "|" + kind] = logic.statusTarget(style, "a/b c", kind, "N");
  }
}
for (const [name, s] of Object.entries(book.strategies)) {
  out.delays[name] = Array.from({ length: s.retry.attempts }, (_, i) =>
    logic.retryDelayMs(s.retry, i + 1));
  if (s.detect_stale) {
    out.warnings[name] = logic.staleWarning(s.detect_stale);
    let t = 0;
    const watch = logic.staleWatch(s.detect_stale, () => t);
    out.stale[name] = JSON.parse(process.argv[4]).map(([body, at]) => {
      t = at;
      return watch.saw(body);
    });
  }
}
for (const status of [null, 200, 304, 400, 404, 429, 500, 503]) {
  out.retryable[String(status)] = logic.isRetryable(status);
}
process.stdout.write(JSON.stringify(out));
"""

STALE_SEQUENCE = [
    ({"served_at": 1.0, "seq": 1}, 0.0),
    ({"served_at": 1.0, "seq": 1}, 0.1),
    ({"served_at": 2.0, "seq": 2}, 0.2),  # a fresh answer restarts the count
    ({"served_at": 2.0, "seq": 2}, 0.3),
    ({"served_at": 2.0, "seq": 2}, 0.4),  # third in a row: stale
    ({"served_at": 2.0, "seq": 2}, 0.5),
    ({"state": "PENDING"}, 0.6),  # nothing to compare
    ({"served_at": 3.0, "seq": 3}, 0.7),
    ({"served_at": 3.0, "seq": 3}, 0.7),
    ({"served_at": 3.0, "seq": 3}, 0.7),  # the clock did not move: not stale
]


@pytest.fixture(scope="module")
def node_results(tmp_path_factory) -> dict:
    if NODE is None:
        pytest.skip("node is not installed")
    script = tmp_path_factory.mktemp("node") / "parity.js"
    script.write_text(NODE_SCRIPT, "utf-8")
    strategies_json = resources.files("sample_app").joinpath("strategies.json")
    done = subprocess.run(
        [
            NODE,
            str(script),
            str(POLLER_JS_PATH),
            str(strategies_json),
            json.dumps(STALE_SEQUENCE),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(done.stdout)


def python_stale(spec) -> list[bool]:
    clock = {"t": 0.0}
    watch = StaleWatch(spec, clock=lambda: clock["t"])
    seen = []
    for body, at in STALE_SEQUENCE:
        clock["t"] = at
        poll = Poll(1, 0, 0, "", 200, "PENDING", served_at=body.get("served_at"))
        poll.server_seq = body.get("seq")
        seen.append(watch.saw(poll))
    return seen


def test_js_builds_the_same_targets(node_results):
    expected = {
        f"{style}|{kind if kind else 'null'}": BOOK.status_target(
            "a/b c", style=style, nonce_kind=kind, nonce="N"
        )
        for style in STYLES
        for kind in NONCE_KINDS
    }
    assert node_results["targets"] == expected


def test_js_retries_on_the_same_schedule(node_results):
    expected = {
        name: [BOOK.get(name).retry.delay_s(n) * 1000 for n in range(1, s.retry.attempts + 1)]
        for name, s in BOOK.strategies.items()
    }
    assert node_results["delays"] == expected
    assert node_results["retryable"] == {
        str(status).replace("None", "null"): strategies.is_retryable(status)
        for status in (None, 200, 304, 400, 404, 429, 500, 503)
    }


def test_js_detects_stale_answers_like_the_client(node_results):
    with_detection = {n: s for n, s in BOOK.strategies.items() if s.detect_stale}
    assert with_detection
    assert node_results["warnings"] == {
        n: s.detect_stale.warning for n, s in with_detection.items()
    }
    assert node_results["stale"] == {
        n: python_stale(s.detect_stale) for n, s in with_detection.items()
    }
    assert python_stale(with_detection["detect-stale"].detect_stale) == [
        *(False, False, False, False, True, True),
        *(False, False, False, False),
    ]
