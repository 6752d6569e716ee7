"""`lab probe` (lab/cli/probe.py) against the lab's own proxies as "the unknown network": the
sample app (its create_app mounts the probe endpoint; no worker is needed) behind every proxy
profile, in forward and in reverse mode, on loopback. The matrix is the oracle: the probe's
verdict for each strategy must be the scenario files' expected outcome read as a verdict
(lab/judging/probe_match.py MATRIX_TO_PROBE), and the profile it names as the closest must
give the same outcomes. Then the command's edges: exit 2 and 3, --json, a plain URL, the
environment's proxy, HTTPS through a reverse listener.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from click.testing import CliRunner
from werkzeug.serving import WSGIRequestHandler, make_server

from lab.cli import main
from lab.cli.probe import run_probe
from lab.clients.probe import Answer, StrategyRun
from lab.clients.probe_route import resolve
from lab.data import profiles, scenarios
from lab.judging.probe import CACHED, ERROR, FRESH, judge_strategy
from lab.judging.probe_match import expected_verdicts, match_profiles, proxy_scenarios
from lab.judging.probe_result import ProbeResult
from lab.runs.lifecycle import RunResources, new_run_dir
from lab.stacks.proxy_hosts import launch_proxy_group
from lab.stacks.stack import ProxyEndpoint
from sample_app import strategies
from sample_app.config import AppConfig
from sample_app.web import create_app
from tests.lab_helpers import LabProcess, free_loopback_port

PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                   "ALL_PROXY", "no_proxy", "NO_PROXY")  # fmt: skip
MODES = ("forward", "reverse")
PROFILE_MODES = [(name, mode) for name in profiles.names() for mode in MODES]
LISTENERS_PER_MITMDUMP = 9  # 34 listeners in 4 mitmdumps: a mitmdump's start is the slow part
# Each probe polls 16 strategies at once, every 0.25 s. The machine is the limit, not the
# waiting: on a slow 2-core machine beside another test worker, 6 at once took as long as 3 and
# their slowest poll took 8.5 s (a poll over 10 s is an error: the 'none' strategy then fails),
# against 4.3 s with 3.
PROBES_AT_ONCE = 3
# The matrix cells a probe cannot see, and what it sees instead, with the reason. The one place
# where the probe's verdict is not the matrix's expected outcome.
UNSEEN_BY_A_PROBE: dict[tuple[str, str], tuple[str, str]] = {
    ("shared-cache-leak", "detect-stale"): (
        FRESH,
        "the matrix's page leaks because a neighbour's answer is the first it is given: it "
        "takes two users. The probe is one user; its detect-stale page heals from its own "
        "frozen answers by switching to a path nonce, which this cache lets through.",
    ),
}


class QuietHandler(WSGIRequestHandler):
    def log(self, *_args: object) -> None:  # one line per poll is noise in a test's output
        pass


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The sample app in this process (a thread, not a process): the probe needs no worker."""
    app = create_app(AppConfig.standalone(tmp_path_factory.mktemp("app")))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def no_proxy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's own proxy settings must not route the tests' loopback traffic."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@dataclass
class ProbedProfiles:
    endpoints: dict[tuple[str, str], ProxyEndpoint]
    results: dict[tuple[str, str], ProbeResult]

    def forward(self, profile: str) -> str:
        return self.endpoints[(profile, "forward")].address

    def reverse(self, profile: str) -> str:
        return self.endpoints[(profile, "reverse")].address


@pytest.fixture(scope="module")
def probed(app_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProbedProfiles]:
    """Every profile in both modes, a listener each, few mitmdumps; each probed once, a few
    probes at a time. The mitmdumps stay up for the module's other tests."""
    folder = new_run_dir(tmp_path_factory.mktemp("probe"), "probe")
    with pytest.MonkeyPatch.context() as patch, RunResources(folder) as resources:
        for name in PROXY_VARIABLES:
            patch.delenv(name, raising=False)
        wanted = [
            (
                (name, mode),
                profiles.described(name).model_copy(update={"mode": mode}),
                app_url if mode == "reverse" else None,
            )
            for name, mode in PROFILE_MODES
        ]
        endpoints = launch_proxy_group(
            resources.sup, "probe", wanted, per_process=LISTENERS_PER_MITMDUMP
        )()

        def probe(key: tuple[str, str]) -> ProbeResult:
            endpoint = endpoints[key]
            if key[1] == "reverse":
                return run_probe(f"{endpoint.address}/_cache-probe", None, 9, 0.25, stop, True)
            return run_probe(f"{app_url}/_cache-probe", endpoint.address, 9, 0.25, stop, True)

        stop = threading.Event()
        # Listeners in the order of their mitmdumps' turns (the first of each, then the
        # second...): the probes at once load different mitmdumps, not one process on one core.
        listed = list(endpoints)
        spread = sorted(listed, key=lambda key: (listed.index(key) % LISTENERS_PER_MITMDUMP,
                                                 listed.index(key)))  # fmt: skip
        with ThreadPoolExecutor(PROBES_AT_ONCE) as pool:
            results = dict(zip(spread, pool.map(probe, spread), strict=True))
        yield ProbedProfiles(endpoints, results)


def scenario_of(profile: str) -> scenarios.Scenario:
    return next(s for s in proxy_scenarios() if s.proxy == profile)


# -- every profile, forward and reverse: the probe against the matrix --------------------------
@pytest.mark.stack
@pytest.mark.timeout(600)  # the first one starts the proxies and probes them all: 163 s seen in CI
@pytest.mark.parametrize(("profile", "mode"), PROFILE_MODES)
def test_the_probe_sees_what_the_matrix_expects(probed, profile, mode):
    result = probed.results[(profile, mode)]
    observed = {name: v.verdict for name, v in result.verdicts.items()}
    expected = expected_verdicts(scenario_of(profile), list(observed))
    unseen = {s: seen for (p, s), (seen, _why) in UNSEEN_BY_A_PROBE.items() if p == profile}
    wanted = expected | unseen
    details = {s: (observed[s], v.counts, v.error) for s, v in result.verdicts.items()}
    assert observed == wanted, f"{profile} [{mode}]: {details}"
    assert len(observed) == 16  # every poll strategy of the catalogue was probed
    names = [m.profile for m in result.best]
    assert profile in names, f"{profile} [{mode}]: named {names}"
    for match in result.best:  # each one named gives the same outcomes
        assert set(match.differ) <= set(unseen), (match.profile, match.differ)
    assert result.exit_code == (1 if CACHED in observed.values() else 0)


@pytest.mark.stack
def test_detect_stale_heals_where_another_users_answer_would_leak(probed):
    verdict = probed.results[("shared-cache-leak", "reverse")].verdicts["detect-stale"]
    assert verdict.switched_after == 3
    assert verdict.counts[:3] == [1, 1, 1]


# -- the command as a user runs it ------------------------------------------------------------
@pytest.mark.stack
def test_the_environments_proxy_is_used_and_named(probed, app_url, tmp_path):
    proxy = probed.forward("squid-override")
    with LabProcess(
        ["probe", f"{app_url}/_cache-probe/", "--json"], tmp_path, {"HTTP_PROXY": proxy}
    ) as lab:
        code, stdout = lab.finish()
    doc = json.loads(stdout)
    assert (code, doc["exit_code"], doc["proxy"], doc["proxy_source"]) == (
        1,
        1,
        proxy,
        "HTTP_PROXY",
    )
    verdicts = {name: s["verdict"] for name, s in doc["strategies"].items()}
    assert {verdicts[s] for s in ("none", "no-store", "cc-max-age-0")} == {CACHED}
    assert {verdicts[s] for s in ("cc-no-cache", "path-nonce")} == {FRESH}
    assert doc["best_match"]["profiles"] == ["squid-override"]
    none = doc["strategies"]["none"]
    assert none["counts"] == [1] * 9 and none["evidence"]["frozen_s"] >= 1.5
    assert "HIT" in none["evidence"]["x_cache"] and none["evidence"]["via"]


@pytest.mark.stack
def test_no_proxy_leaves_the_environments_proxy_out(probed, app_url, tmp_path):
    env = {"HTTP_PROXY": probed.forward("squid-override"), "NO_PROXY": "127.0.0.1"}
    with LabProcess(["probe", f"{app_url}/_cache-probe", "--json"], tmp_path, env) as lab:
        code, stdout = lab.finish()
    doc = json.loads(stdout)
    assert (code, doc["proxy"], doc["cached"]) == (0, None, [])
    assert "NO_PROXY matches 127.0.0.1" in doc["proxy_source"]


@pytest.mark.stack
def test_a_proxy_that_cannot_reach_the_server_is_named(probed):
    proxy = probed.forward("nginx-default")
    url = f"http://127.0.0.1:{free_loopback_port()}/_cache-probe"
    result = CliRunner().invoke(main, ["probe", url, "--proxy", proxy])
    assert result.exit_code == 3, result.output
    assert f"error: unreachable: the proxy {proxy} answered 502 Bad Gateway" in result.stderr


@pytest.mark.stack
def test_a_plain_url_behind_a_cache(probed, app_url):
    proxy = probed.forward("squid-override")
    result = CliRunner().invoke(main, ["probe", f"{app_url}/", "--proxy", proxy, "--json"])
    doc = json.loads(result.stdout)
    assert (result.exit_code, doc["mode"], doc["plain"]["verdict"]) == (1, "plain", CACHED)
    assert any(reason.startswith("Age: ") for reason in doc["plain"]["reasons"])
    assert "no fix was tested" in doc["plain"]["limits"]


@pytest.mark.stack
def test_https_through_a_reverse_listener_names_the_intercepting_certificate(probed):
    address = probed.reverse("squid-override").replace("http://", "https://")
    result = run_probe(f"{address}/_cache-probe", None, 9, 0.25, threading.Event(), True)
    assert result.tls is not None and not result.tls.verified
    assert "mitmproxy" in (result.tls.issuer or "")
    observed = {name: v.verdict for name, v in result.verdicts.items()}
    assert observed == expected_verdicts(scenario_of("squid-override"), list(observed))


# -- no process: bad input, an endpoint that cannot be reached, the shape of the answer -------
def probe_cli(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, ["probe", *args], env=env)


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["ftp://127.0.0.1/_cache-probe"], {}, "URL 'ftp://127.0.0.1/_cache-probe'"),
        (["http://127.0.0.1:99999/x"], {}, "the port is not a number"),
        (["http://127.0.0.1/", "--proxy", "ftp://127.0.0.1:21"], {}, "--proxy 'ftp://"),
        (["http://127.0.0.1/"], {"HTTP_PROXY": "ftp://127.0.0.1:21"}, "HTTP_PROXY 'ftp://"),
        (["http://127.0.0.1/", "--proxy", "http://u:secret@:1"], {}, "'http://u:***@:1'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, env, named):
    result = probe_cli(*args, env=env)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], lines
    assert "secret" not in result.stderr


def test_bad_input_with_json_is_one_object():
    result = probe_cli("ftp://127.0.0.1/", "--json")
    assert (result.exit_code, json.loads(result.stdout)["exit_code"]) == (2, 2)


def test_a_proxy_that_refuses_is_named_and_exit_3():
    port = free_loopback_port()
    result = probe_cli("http://127.0.0.1:8000/_cache-probe", "--proxy", f"127.0.0.1:{port}")
    assert result.exit_code == 3
    said = f"error: unreachable: the proxy http://127.0.0.1:{port} (--proxy) refused"
    assert said in result.stderr


def test_a_server_that_refuses_is_named_and_exit_3():
    port = free_loopback_port()
    result = probe_cli(f"http://127.0.0.1:{port}/_cache-probe")
    assert result.exit_code == 3
    assert f"error: unreachable: the server 127.0.0.1:{port} refused" in result.stderr


def test_straight_to_the_app_every_strategy_is_fresh_and_the_json_has_its_shape(app_url):
    result = probe_cli(f"{app_url}/_cache-probe", "--json", "--polls", "4", "--interval", "0")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert {
        "url", "mode", "proxy", "proxy_source", "tls", "seconds", "summary", "exit_code",
        "signs", "polls", "interval_s", "strategies", "cached", "best_match", "profiles",
        "skipped",
    } <= set(doc)  # fmt: skip
    assert (doc["mode"], doc["proxy"], doc["cached"], doc["polls"]) == ("endpoint", None, [], 4)
    for name, strategy in doc["strategies"].items():
        assert strategy["verdict"] == FRESH, name
        assert strategy["counts"] == [1, 2, 3, 4], name
        assert set(strategy["evidence"]) >= {"frozen_s", "age", "via", "x_cache", "date_lag_s"}
    assert doc["summary"].startswith("no cache on this path")
    assert doc["best_match"]["agree"] == doc["best_match"]["of"] == 16


def test_the_text_output_ends_with_the_report_and_the_summary(app_url):
    result = probe_cli(f"{app_url}/_cache-probe", "--polls", "2", "--interval", "0")
    lines = result.stdout.splitlines()
    assert "proxy used: none (no --proxy, no HTTP_PROXY in the environment)" in lines
    start = lines.index("--- lab probe report (proxy-cache-lab) ---")
    end = lines.index("--- end of lab probe report ---")
    assert any(line.startswith("fresh:   none, nonce,") for line in lines[start:end])
    assert lines[-1].startswith("probe: no cache on this path")


def test_a_plain_url_is_two_requests_and_says_how_little_that_tells(app_url):
    result = probe_cli(f"{app_url}/", "--json")
    doc = json.loads(result.stdout)
    assert (result.exit_code, doc["mode"], doc["plain"]["verdict"]) == (0, "plain", FRESH)
    assert doc["plain"]["gap_s"] >= 1.0
    assert "strategies" not in doc and "plain-URL check only" in doc["summary"]


# -- the pieces -------------------------------------------------------------------------------
def answers(*counts: int | None, probe: str = "p") -> list[Answer]:
    made = []
    for n, count in enumerate(counts, 1):
        answer = Answer(n, "u", "GET", n * 0.25, n * 0.25 + 0.01, 200 if count else None, {})
        answer.count, answer.probe = count, probe
        if count is None:
            answer.error = "HTTP 502"
        made.append(answer)
    return made


def indexed(name: str = "none"):
    from lab.clients.probe import IndexedStrategy

    return IndexedStrategy(name, {}, False, None)


@pytest.mark.parametrize(
    ("counts", "gave_up", "verdict", "frozen"),
    [
        ((1, 2, 3, 4), None, FRESH, 0.0),
        ((1, 1, 1, 2), None, CACHED, 0.5),
        ((1, 2, 2, 3), None, CACHED, 0.25),  # one old answer is already not from the app
        ((1, None, 2, 3), None, FRESH, 0.0),  # a failed poll retried
        ((1, None), "HTTP 502", ERROR, 0.0),
        ((1, 1, None), "HTTP 502", CACHED, 0.25),  # frozen first: the cache is the finding
    ],
)
def test_a_verdict_from_the_counts(counts, gave_up, verdict, frozen):
    run = StrategyRun("none", "p", answers(*counts), gave_up=gave_up)
    judged = judge_strategy(run, indexed())
    assert (judged.verdict, judged.evidence.frozen_s) == (verdict, pytest.approx(frozen))


def test_detect_stale_is_judged_after_its_switch():
    run = StrategyRun("detect-stale", "p", answers(1, 1, 1, 2, 3), switched_after=3)
    judged = judge_strategy(run, indexed("detect-stale"))
    assert (judged.verdict, judged.evidence.frozen_before_switch_s) == (FRESH, pytest.approx(0.5))


def test_an_answer_about_another_probe_is_a_cached_one():
    run = StrategyRun("none", "p", answers(1, 2))
    run.answers[1].probe = "q"  # its count went up, but it is another probe's
    judged = judge_strategy(run, indexed())
    assert (judged.verdict, judged.evidence.other_probe) == (CACHED, True)


def test_missing_and_changed_origin_headers_are_evidence():
    from lab.clients.probe import IndexedStrategy

    run = StrategyRun("no-store", "p", answers(1, 2))
    run.answers[0].headers = {"cache-control": "no-store", "pragma": "no-cache", "expires": "0"}
    run.answers[1].headers = {"cache-control": "max-age=60"}
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache", "Expires": "0"}
    judged = judge_strategy(run, IndexedStrategy("no-store", headers, False, None))
    assert judged.evidence.missing == ["pragma", "expires"]
    assert judged.evidence.changed == {"cache-control": ["max-age=60"]}


def test_every_profile_is_the_best_match_for_its_own_expected_outcomes():
    tested = [s.name for s in strategies.load().strategies.values() if s.transport == "poll"]
    for scenario in proxy_scenarios():
        pattern = expected_verdicts(scenario, [s for s in tested if scenario.applies(s)])
        best = match_profiles(pattern)
        assert best[0].agree == best[0].of and scenario.proxy in [
            m.profile for m in best if m.agree == m.of
        ]


@pytest.mark.parametrize(
    ("env", "proxy", "source"),
    [
        ({}, None, "no --proxy, no HTTP_PROXY in the environment"),
        ({"HTTP_PROXY": "127.0.0.1:3128"}, "http://127.0.0.1:3128", "HTTP_PROXY"),
        ({"HTTP_PROXY": "http://a:1", "http_proxy": "http://b:2"}, "http://b:2", "http_proxy"),
        ({"ALL_PROXY": "http://a:1"}, "http://a:1", "ALL_PROXY"),
        ({"HTTP_PROXY": "http://a:1", "NO_PROXY": "example.org,127.0.0.1"}, None, "NO_PROXY"),
        ({"HTTPS_PROXY": "http://a:1"}, None, "no --proxy"),  # the URL is http://
    ],
)
def test_the_proxy_is_chosen_as_requests_chooses_it(env, proxy, source):
    route = resolve("http://127.0.0.1:8000/_cache-probe", None, env)
    assert route.proxy == proxy and route.source.startswith(source)
