"""`--proxy-url` for real use (issue 13 item 3): the URL checked before anything starts (exit 2,
one line), a proxy that cannot be reached and an app port already taken are exit 3 naming
them, `--app-port` puts the app where a real reverse proxy forwards, and a proxy that is not
one of the lab's is named by its URL in the verdict, its sentence, the JSON and the report."""

from __future__ import annotations

import json
import socket

import pytest

from lab.data.errors import BadInput, ComponentError
from lab.stacks.proxy_url import check_proxy_url, proxy_label
from tests.lab_helpers import free_loopback_port
from tests.test_cli_input import assert_bad_input, lab, lab_process


def assert_cannot_reach(tmp_path, result, *named: str) -> None:
    assert result.returncode == 3, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for text in named:
        assert text in lines[0]
    assert not (tmp_path / "runs").exists()  # checked before anything started


@pytest.mark.parametrize(
    "command", [["repro", "squid-default"], ["matrix", "--scenarios", "squid-default"]]
)
@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("ftp://x", "http:// or https:// (found ftp://)"),
        ("127.0.0.1:3128", "http:// or https://"),
        ("http://:3128", "no host"),
        ("http://127.0.0.1:99999", "out of range"),
        ("http://127.0.0.1:3128/?a=1", "no query"),
    ],
)
def test_a_url_that_is_no_proxy_is_bad_input_before_anything_starts(tmp_path, command, url, named):
    result = lab(tmp_path, *command, "--proxy-url", url)
    assert_bad_input(tmp_path, result, "--proxy-url", named)


def test_the_password_of_a_bad_url_is_not_printed():
    with pytest.raises(BadInput) as caught:
        check_proxy_url("ftp://me:secret@proxy:21")
    assert "secret" not in str(caught.value) and "me:***@" in str(caught.value)
    assert proxy_label("http://me:secret@127.0.0.1:3128/") == (
        "external proxy http://me:***@127.0.0.1:3128"
    )


def test_a_reverse_proxy_url_needs_the_app_port(tmp_path):
    result = lab(
        tmp_path, "repro", "nginx-default", "--proxy-url", "http://127.0.0.1:1",
        "--proxy-mode", "reverse",
    )  # fmt: skip
    assert_bad_input(tmp_path, result, "--proxy-mode reverse needs --app-port")


def test_one_app_port_cannot_serve_two_app_stacks(tmp_path):
    result = lab(
        tmp_path, "matrix", "--scenarios", "squid-default,no-worker", "--app-port", "20000",
    )  # fmt: skip
    assert_bad_input(tmp_path, result, "--app-port 20000", "2 app stacks", "path-no-worker")


@pytest.mark.parametrize(
    "command", [["repro", "squid-default"], ["matrix", "--scenarios", "squid-default"]]
)
def test_a_proxy_nobody_listens_on_is_exit_3_naming_it(tmp_path, command):
    port = free_loopback_port()
    result = lab(tmp_path, *command, "--proxy-url", f"http://127.0.0.1:{port}")
    assert_cannot_reach(tmp_path, result, "cannot reach the proxy", f"http://127.0.0.1:{port}")


def test_an_app_port_already_taken_is_exit_3_naming_it(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = lab(tmp_path, "repro", "squid-default", "--app-port", str(port))
        assert_cannot_reach(tmp_path, result, f"--app-port {port}", f"127.0.0.1:{port}")


def test_the_checks_raise_the_lab_errors():
    with pytest.raises(ComponentError, match="cannot reach the proxy"):
        from lab.stacks.proxy_url import check_proxy_reachable

        check_proxy_reachable(f"http://127.0.0.1:{free_loopback_port()}")


@pytest.mark.stack
def test_a_forward_proxy_is_named_by_its_url_everywhere(tmp_path, mitmdump):
    # A proxy the lab does not start: a mitmdump with the scenario's own profile, so the
    # outcome must be the expected one too.
    proxy = mitmdump(["proxies/lab_addons.py"], {"profile": "squid-default"})
    result = lab_process(
        tmp_path, "repro", "squid-default", "--fix", "none", "--proxy-url", proxy.url, "--json"
    )
    verdict = json.loads(result.stdout)
    assert result.returncode == 0, result.stderr
    assert verdict["proxy"] == f"external proxy {proxy.url}"
    assert f"(answered by external proxy {proxy.url})" in verdict["sentence"]
    report = (tmp_path / verdict["run_dir"] / "report.html").read_text("utf-8")
    assert f"external proxy {proxy.url}" in report and "squid-default:" not in report
    text = lab_process(
        tmp_path, "repro", "squid-default", "--fix", "none", "--proxy-url", proxy.url
    )
    assert f"external proxy {proxy.url}: answered" in text.stdout


@pytest.mark.stack
def test_a_reverse_proxy_forwards_to_the_app_port(tmp_path, mitmdump):
    app_port = free_loopback_port()
    proxy = mitmdump(
        ["proxies/lab_addons.py"],
        {"profile": "nginx-cache-valid"},
        modes=[f"reverse:http://127.0.0.1:{app_port}"],
    )
    result = lab_process(
        tmp_path, "repro", "nginx-cache-valid", "--fix", "none", "--proxy-url", proxy.url,
        "--proxy-mode", "reverse", "--app-port", str(app_port), "--json",
    )  # fmt: skip
    verdict = json.loads(result.stdout)
    assert result.returncode == 0, result.stderr
    assert verdict["observed"] == "hung" and verdict["proxy"] == f"external proxy {proxy.url}"
    # Every poll went through the reverse proxy, which answered most from its cache.
    assert verdict["polls"]["from_cache"] > verdict["polls"]["reached_origin"]
    assert f"app at http://127.0.0.1:{app_port}" in result.stderr


@pytest.mark.parametrize(
    "command", [["repro", "https-cdn"], ["matrix", "--scenarios", "https-cdn"]]
)
def test_a_reverse_proxy_url_for_an_https_scenario_is_bad_input(tmp_path, command):
    # The client trusts only the run's CAs, made per run: no reverse proxy can have its cert.
    result = lab(
        tmp_path, *command, "--proxy-url", "http://127.0.0.1:1", "--proxy-mode", "reverse",
        "--app-port", "20000",
    )  # fmt: skip
    assert_bad_input(tmp_path, result, "--proxy-mode reverse: https-cdn is HTTPS")
