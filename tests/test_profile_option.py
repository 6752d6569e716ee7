"""proxies/ on its own: profiles handed to plain mitmdump (`--set profile=NAME` or a TOML path),
and every addon file loaded alone, against a loopback origin."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons

from lab.data import profiles as lab_profiles
from lab.data.errors import BadInput
from proxies import lab_addons, profile
from tests.lab_helpers import LoopbackOrigin, Mitmdump, wait_for

STATUS_PATH = "/tasks/1/status"
FLAKY_PROFILE = """
name = "my-proxy"
summary = "A proxy of one's own: every status poll gets a 503."
real_world = "A test."
misbehaviours = [{ name = "flaky-upstream", every = 1, status = 503, url_pattern = "/status$" }]

[options]
cache_enabled = false
"""


class CountingOrigin(LoopbackOrigin):
    """Answers every request 200 with a body that counts them, and no cache header at all."""

    def __init__(self) -> None:
        self.paths: list[str] = []

        def answer(_method: str, path: str) -> tuple[int, str, bytes]:
            self.paths.append(path)
            return 200, "text/plain", str(len(self.paths)).encode()

        super().__init__(answer)


@pytest.fixture
def origin() -> Iterator[CountingOrigin]:
    with CountingOrigin() as running:
        yield running


def get_twice(proxy: str, url: str) -> list[httpx.Response]:
    with httpx.Client(proxy=proxy, trust_env=False, timeout=10) as client:
        return [client.get(url), client.get(url)]


# -- in process: the option and the translation ------------------------------------------------


def test_a_profile_by_name_sets_its_options_and_misbehaviours():
    addons = lab_addons.make_addons()
    with taddons.context(*addons) as tctx:
        tctx.options.update(profile="squid-override")
        assert tctx.options.cache_add_headers is True
        assert tctx.options.cache_heuristic_lm_percent == 0
        refresh_patterns, *others = json.loads(tctx.options.misbehaviours)
        assert refresh_patterns["name"] == "squid-refresh-pattern"
        assert len(refresh_patterns["lines"]) == 4
        assert [m["name"] for m in others] == [
            "squid-negative-status",
            "squid-304-update",
            "squid-hit-fields",
        ]


def test_the_translation_is_the_labs():
    loaded = lab_profiles.load("squid-override")
    assert loaded == profile.read(profile.profile_path("squid-override"))
    args = lab_profiles.mitmdump_args(loaded)
    assert args[:2] == ["--set", f"misbehaviours={json.dumps(loaded.misbehaviours)}"]
    assert "cache_add_headers=true" in args
    assert lab_profiles.can_share_a_process(loaded)
    own_options = loaded.model_copy(update={"options": {"modify_headers": ["/~s/Via/x"]}})
    assert not lab_profiles.can_share_a_process(own_options)  # mitmproxy's are process-wide


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (FLAKY_PROFILE.replace('"my-proxy"', '"other"'), "field 'name': must match"),
        (FLAKY_PROFILE.replace("every = 1", "every = 0"), "field 'every'"),
        (FLAKY_PROFILE.replace('"/status$"', '"("'), "field 'url_pattern'"),
        (FLAKY_PROFILE.replace("every = 1", "every = 1, probability = 2"), "'probability'"),
        (FLAKY_PROFILE + "colour = 1\n", "field 'options.colour'"),
        ("name = [", "cannot be read"),
    ],
)
def test_a_bad_profile_file_is_an_option_error_naming_file_field_and_problem(
    tmp_path: Path, text: str, message: str
):
    path = tmp_path / "my-proxy.toml"
    path.write_text(text, "utf-8")
    with (
        taddons.context(*lab_addons.make_addons()) as tctx,
        pytest.raises(exceptions.OptionsError) as info,
    ):
        tctx.options.update(profile=str(path))
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_an_unknown_profile_name_lists_the_known_ones():
    with (
        taddons.context(*lab_addons.make_addons()) as tctx,
        pytest.raises(exceptions.OptionsError, match="unknown proxy profile 'nope'.*squid-default"),
    ):
        tctx.options.update(profile="nope")


def test_the_lab_names_file_field_and_problem_of_a_scoped_misbehaviour(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("LAB_PROFILES_DIR", str(tmp_path))
    (tmp_path / "my-proxy.toml").write_text(FLAKY_PROFILE.replace("/status$", "["), "utf-8")
    with pytest.raises(BadInput) as info:
        lab_profiles.load("my-proxy")
    assert "my-proxy.toml" in str(info.value)
    assert "misbehaviours[0] (flaky-upstream): field 'url_pattern'" in str(info.value)


# -- plain mitmdump ------------------------------------------------------------------------------


@pytest.mark.stack
def test_plain_mitmdump_imitates_a_profile_by_name(
    mitmdump: Callable[..., Mitmdump], origin: CountingOrigin
):
    """squid-override's `. 5 20% 4320` line keeps an answer without any cache header 5 min."""
    proxy = mitmdump(["proxies/lab_addons.py"], {"profile": "squid-override"})
    first, second = get_twice(proxy.url, f"{origin.url}{STATUS_PATH}")
    assert (first.text, second.text) == ("1", "1")
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "HIT")
    assert origin.paths == [STATUS_PATH]


@pytest.mark.stack
def test_plain_mitmdump_imitates_a_profile_file(
    tmp_path: Path, mitmdump: Callable[..., Mitmdump], origin: CountingOrigin
):
    path = tmp_path / "my-proxy.toml"
    path.write_text(FLAKY_PROFILE, "utf-8")
    proxy = mitmdump(["proxies/lab_addons.py"], {"profile": path})
    with httpx.Client(proxy=proxy.url, trust_env=False, timeout=10) as client:
        failed = client.get(f"{origin.url}{STATUS_PATH}")
        passed = client.get(f"{origin.url}/tasks")
    assert failed.status_code == 503
    assert "<center>nginx</center>" in failed.text
    assert (passed.status_code, passed.text) == (200, "1")
    assert origin.paths == ["/tasks"]


def cached_twice(proxy: Mitmdump, origin: CountingOrigin, _events: Path) -> None:
    first, second = get_twice(proxy.url, f"{origin.url}{STATUS_PATH}")
    assert (first.text, second.text) == ("1", "1")
    assert origin.paths == [STATUS_PATH]


def failed(proxy: Mitmdump, origin: CountingOrigin, _events: Path) -> None:
    assert [r.status_code for r in get_twice(proxy.url, f"{origin.url}/")] == [503, 503]
    assert origin.paths == []


def logged(proxy: Mitmdump, origin: CountingOrigin, events: Path) -> None:
    get_twice(proxy.url, f"{origin.url}{STATUS_PATH}")
    lines = wait_for(lambda: events.exists() and events.read_text().splitlines()[1:], 10, "log")
    assert [json.loads(line)["status"] for line in lines] == [200]


def passed_through(proxy: Mitmdump, origin: CountingOrigin, _events: Path) -> None:
    assert [r.text for r in get_twice(proxy.url, f"{origin.url}/")] == ["1", "2"]


CACHE_FOR_300_S = {"cache_heuristic_ttl": 300}
ALONE: dict[str, tuple[dict[str, Any], list[str], Callable[..., None]]] = {
    "shared_cache.py": (CACHE_FOR_300_S, [], cached_twice),
    "misbehaving.py": (
        {"misbehaviours": json.dumps([{"name": "flaky-upstream", "every": 1, "status": 503}])},
        [],
        failed,
    ),
    "observer.py": ({"observer_events": "{events}"}, [], logged),
    "stream_passthrough.py": ({}, [], passed_through),
    "listeners.py": (
        {"listeners": json.dumps({"{port}": {"options": CACHE_FOR_300_S}})},
        ["regular@{port}"],
        cached_twice,
    ),
}


@pytest.mark.stack
@pytest.mark.parametrize("script", sorted(ALONE))
def test_each_addon_file_loads_alone_in_mitmdump(
    tmp_path: Path, mitmdump: Callable[..., Mitmdump], origin: CountingOrigin, script: str
):
    options, modes, check = ALONE[script]
    events = tmp_path / "events.jsonl"
    options = {name: str(v).replace("{events}", str(events)) for name, v in options.items()}
    proxy = mitmdump([f"proxies/{script}"], options, modes=modes)
    check(proxy, origin, events)
    assert "Traceback" not in proxy.log()
