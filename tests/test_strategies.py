"""strategies.json is the single definition the page's JavaScript and the Python side both read."""

import re
from importlib import resources
from urllib.parse import parse_qs, urlsplit

import pytest

from sample_app import strategies

RAW = strategies.raw_definitions()
BOOK = strategies.load()
STRATEGY_KEYS = {"summary", "nonce_param", "request_headers", "response_headers"}
POLLER_JS = resources.files("sample_app").joinpath("static/poller.js").read_text("utf-8")
STATUS_PATH = BOOK.status_path_for("abc")


def test_top_level_keys():
    assert "{task_id}" in RAW["status_path"]
    assert set(RAW["final_states"]) >= {"SUCCESS"}
    assert RAW["strategies"]


@pytest.mark.parametrize("name", list(RAW["strategies"]))
def test_every_strategy_has_the_keys_js_and_python_read(name):
    spec = RAW["strategies"][name]
    assert set(spec) >= STRATEGY_KEYS
    assert spec["nonce_param"] is None or isinstance(spec["nonce_param"], str)
    for key in ("request_headers", "response_headers"):
        headers = spec[key]
        assert isinstance(headers, dict)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())


@pytest.mark.parametrize("name", list(RAW["strategies"]))
def test_python_strategy_mirrors_the_json(name):
    spec, strategy = RAW["strategies"][name], BOOK.get(name)
    assert strategy.nonce_param == spec["nonce_param"]
    assert strategy.request_headers == spec["request_headers"]
    assert strategy.response_headers == spec["response_headers"]
    assert BOOK.final_states == frozenset(RAW["final_states"])


def test_unknown_strategy_names_the_known_ones():
    with pytest.raises(KeyError, match="nonce"):
        BOOK.get("nosuch")


@pytest.mark.parametrize("name", [n for n, s in RAW["strategies"].items() if s["nonce_param"]])
def test_poll_target_adds_a_fresh_nonce(name):
    strategy = BOOK.get(name)
    first, second = strategy.poll_target(STATUS_PATH), strategy.poll_target(STATUS_PATH)
    assert first != second
    for target in (first, second):
        url = urlsplit(target)
        assert url.path == STATUS_PATH
        query = parse_qs(url.query)
        assert list(query) == [strategy.nonce_param]
        assert re.fullmatch(r"[0-9a-f]{16}", query[strategy.nonce_param][0])


@pytest.mark.parametrize("name", [n for n, s in RAW["strategies"].items() if not s["nonce_param"]])
def test_poll_target_without_nonce_param_is_the_plain_path(name):
    assert BOOK.get(name).poll_target(STATUS_PATH) == STATUS_PATH


def test_at_least_one_strategy_of_each_kind():
    # Otherwise the two parametrized tests above would silently run zero cases.
    kinds = {bool(spec["nonce_param"]) for spec in RAW["strategies"].values()}
    assert kinds == {True, False}


@pytest.mark.parametrize(
    "reads", ["book.status_path", "book.final_states", ".nonce_param", ".request_headers"]
)
def test_poller_js_reads_the_shared_definitions(reads):
    assert reads in POLLER_JS


def test_poller_js_parses_the_embedded_json():
    assert 'JSON.parse(document.getElementById("strategies").textContent)' in POLLER_JS


@pytest.mark.parametrize("name", list(RAW["strategies"]))
def test_poller_js_does_not_hard_code_strategy_names(name):
    for quote in "\"'`":
        assert f"{quote}{name}{quote}" not in POLLER_JS


def all_header_names() -> set[str]:
    names = {"Cache-Control", "Pragma", "Expires"}
    for spec in RAW["strategies"].values():
        names |= set(spec["request_headers"]) | set(spec["response_headers"])
    return names


@pytest.mark.parametrize("header", sorted(all_header_names()))
def test_poller_js_does_not_hard_code_cache_headers(header):
    assert header.lower() not in POLLER_JS.lower()
