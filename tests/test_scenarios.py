"""Shipped scenarios and profiles load; bad ones fail with one line naming the file and field."""

import re

import pytest

from lab.data import fixes, profiles, scenarios
from lab.data.errors import BadInput
from lab.stacks import stack
from sample_app import strategies

GOOD_SCENARIO = """\
name = "{name}"
summary = "A test scenario."
situation = "Nothing in between."
proxy = "none"
poll_interval = 0.25
hang_window = 3.0

[expected]
none = "completed"
nonce = "completed"
"""
# Every other fix with a quoted key, so the replacements below touch only none and nonce.
GOOD_SCENARIO += "".join(
    f'"{fix}" = "completed"\n' for fix in strategies.names() if fix not in ("none", "nonce")
)

GOOD_PROFILE = """\
name = "{name}"
summary = "A test profile."
real_world = "Nowhere."

[options]
"""


def write_scenario(tmp_path, name: str, text: str):
    path = tmp_path / f"{name}.toml"
    path.write_text(text.replace("{name}", name), "utf-8")
    return path


def bad_input(load, *args) -> str:
    with pytest.raises(BadInput) as info:
        load(*args)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_every_shipped_scenario_loads():
    loaded = scenarios.load_all()
    assert [sc.name for sc in loaded] == scenarios.names()
    assert {"direct", "proxy-cache", "rfc-cache"} <= set(scenarios.names())


@pytest.mark.parametrize("name", scenarios.names())
def test_shipped_scenarios_cover_every_fix(name):
    scenario = scenarios.load(name)
    assert "none" in scenario.fixes  # the story's app is always a cell
    for fix in fixes.names():
        if scenario.applies(fix):
            assert scenario.expected_for(fix) in set(scenarios.Outcome)
        else:
            assert fix not in scenario.fixes
            assert "does not apply" in bad_input(scenario.expected_for, fix)


def test_result_backend_fixes_apply_only_where_named():
    # `others` covers the page's poll fixes: a scenario about a caching proxy is not a cell
    # for result_expires unless it says what happens there.
    assert not scenarios.load("proxy-cache").applies("result-expires")
    oom = scenarios.load("redis-oom")
    assert {"result-expires", "ignore-unwatched-results", "forget-after-read"} <= set(oom.fixes)
    assert oom.brokers == ["redis"] and oom.default_broker == "redis"


@pytest.mark.parametrize("name", profiles.names())
def test_every_shipped_profile_loads(name):
    assert profiles.load(name).name == name


def test_shipped_profiles_exist():
    assert {"corporate-cache", "rfc"} <= set(profiles.names())


def test_a_good_scenario_file_loads_by_path(tmp_path):
    path = write_scenario(tmp_path, "good", GOOD_SCENARIO)
    assert scenarios.load(str(path)).name == "good"


def test_unknown_scenario_name():
    message = bad_input(scenarios.load, "nosuch")
    assert "nosuch" in message
    assert "proxy-cache" in message  # names the known ones


def test_missing_scenario_file(tmp_path):
    message = bad_input(scenarios.load, str(tmp_path / "gone.toml"))
    assert "gone.toml" in message


@pytest.mark.parametrize(
    ("case", "old", "new", "field"),
    [
        ("missing-proxy", 'proxy = "none"\n', "", "'proxy'"),
        ("bad-outcome", 'none = "completed"', 'none = "hang"', "'expected.none'"),
        ("unknown-fix", 'nonce = "completed"', 'nonce = "completed"\nbogus = "hung"', "bogus"),
        ("missing-fix", 'nonce = "completed"\n', "", "others"),
        ("unknown-profile", 'proxy = "none"', 'proxy = "squid"', "'proxy'"),
        ("short-window", "hang_window = 3.0", "hang_window = 0.25", "hang_window"),
        ("extra-field", 'proxy = "none"', 'proxy = "none"\ncolour = "red"', "'colour'"),
    ],
)
def test_bad_scenario_names_file_and_field(tmp_path, case, old, new, field):
    assert old in GOOD_SCENARIO
    path = write_scenario(tmp_path, case, GOOD_SCENARIO.replace(old, new))
    message = bad_input(scenarios.load, str(path))
    assert f"{case}.toml" in message
    assert field in message


def test_missing_fix_names_the_fix(tmp_path):
    path = write_scenario(tmp_path, "no-nonce", GOOD_SCENARIO.replace('nonce = "completed"\n', ""))
    assert "for nonce" in bad_input(scenarios.load, str(path))


def test_others_covers_missing_fixes(tmp_path):
    text = GOOD_SCENARIO.replace('nonce = "completed"\n', 'others = "hung"\n')
    scenario = scenarios.load(str(write_scenario(tmp_path, "with-others", text)))
    assert scenario.expected_for("nonce") == scenarios.Outcome.hung


def test_scenario_syntax_error(tmp_path):
    path = write_scenario(tmp_path, "broken", GOOD_SCENARIO.replace('proxy = "none"', "proxy = "))
    message = bad_input(scenarios.load, str(path))
    assert "broken.toml" in message
    assert "syntax" in message


def test_scenario_name_must_match_file_name(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(GOOD_SCENARIO.replace("{name}", "theirs"), "utf-8")
    message = bad_input(scenarios.load, str(path))
    assert "mine.toml" in message
    assert "'name'" in message


@pytest.fixture
def profiles_dir(tmp_path, lab_env):
    folder = tmp_path / "profiles"
    folder.mkdir()
    lab_env("LAB_PROFILES_DIR", str(folder))
    return folder


def write_profile(folder, name: str, options: str) -> None:
    text = GOOD_PROFILE.replace("{name}", name) + options
    (folder / f"{name}.toml").write_text(text, "utf-8")


def test_profiles_dir_override_loads_a_good_profile(profiles_dir):
    write_profile(profiles_dir, "fine", "cache_heuristic_ttl = 60\n")
    assert profiles.names() == ["fine"]
    assert profiles.load("fine").options == {"cache_heuristic_ttl": 60}


def test_unknown_profile_name(profiles_dir):
    write_profile(profiles_dir, "fine", "")
    message = bad_input(profiles.load, "nosuch")
    assert "nosuch" in message
    assert "fine" in message


@pytest.mark.parametrize(
    ("option", "line"),
    [
        ("cache_colour", "cache_colour = 1\n"),  # unknown option
        ("cache_max_entries", "cache_max_entries = -1\n"),  # value check
        ("cache_heuristic_ttl", "cache_heuristic_ttl = -5\n"),  # value check
    ],
)
def test_bad_profile_option_names_file_and_field(profiles_dir, option, line):
    write_profile(profiles_dir, "bad", line)
    message = bad_input(profiles.load, "bad")
    assert "bad.toml" in message
    assert f"'options.{option}'" in message


def test_wrong_option_type_is_bad_input(profiles_dir):
    write_profile(profiles_dir, "bad", 'cache_heuristic_ttl = "abc"\n')
    message = bad_input(profiles.load, "bad")
    assert "'options.cache_heuristic_ttl'" in message


def test_profile_name_must_match_file_name(profiles_dir):
    (profiles_dir / "mine.toml").write_text(GOOD_PROFILE.replace("{name}", "theirs"), "utf-8")
    message = bad_input(profiles.load, "mine")
    assert "mine.toml" in message
    assert "'name'" in message


def test_scenario_with_profile_from_override_dir(tmp_path, profiles_dir):
    write_profile(profiles_dir, "local", "")
    text = GOOD_SCENARIO.replace('proxy = "none"', 'proxy = "local"')
    assert scenarios.load(str(write_scenario(tmp_path, "uses-local", text))).proxy == "local"


# -- the browser's own HTTP cache: scenarios only the browser client reproduces

BROWSER_CACHE_SCENARIOS = ["browser-heuristic-cache", "browser-max-age", "browser-header-stripping"]


@pytest.mark.parametrize("name", BROWSER_CACHE_SCENARIOS)
def test_browser_cache_scenarios_are_for_the_browser_only(name):
    scenario = scenarios.load(name)
    assert scenario.clients == ["browser"]
    assert scenario.client_notes  # says why the Python client is left out
    # The app itself sends what invites the browser's cache.
    assert scenario.app.status_cache_control or scenario.app.status_last_modified_age_s
    assert scenario.expected_for("none", "browser") is scenarios.Outcome.hung
    assert scenario.expected_for("nonce", "browser") is scenarios.Outcome.completed


def test_every_other_scenario_keeps_the_storys_app_headers():
    for scenario in scenarios.load_all():
        if scenario.name in BROWSER_CACHE_SCENARIOS:
            continue
        assert scenario.app.status_cache_control is None, scenario.name
        assert scenario.app.status_last_modified_age_s is None, scenario.name


def test_app_headers_get_an_app_stack_of_their_own():
    worker = scenarios.WorkerSetup()
    setups = [
        scenarios.AppSetup(),
        scenarios.AppSetup(status_cache_control="max-age=30"),
        scenarios.AppSetup(status_cache_control="max-age=60"),
        scenarios.AppSetup(status_last_modified_age_s=3600),
        scenarios.AppSetup(status_last_modified_age_s=1.5),
        scenarios.AppSetup(status_cache_control="max-age=30", status_last_modified_age_s=3600),
    ]
    keys = [stack.app_key(setup, worker) for setup in setups]
    assert len(set(keys)) == len(keys)
    assert keys[0] == "path"  # the story's app: the key it always had
    assert all(re.fullmatch(r"[a-z0-9-]+", key) for key in keys)  # it names files


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("status_last_modified_age_s = -1", "'app.status_last_modified_age_s'"),
        ('status_cache_control = ""', "'app.status_cache_control'"),
    ],
)
def test_bad_app_headers_name_file_and_field(tmp_path, line, field):
    text = GOOD_SCENARIO.replace("[expected]", f"[app]\n{line}\n\n[expected]")
    message = bad_input(scenarios.load, str(write_scenario(tmp_path, "bad-app", text)))
    assert "bad-app.toml" in message
    assert field in message
