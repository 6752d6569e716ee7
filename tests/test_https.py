"""HTTPS on the poll's path (issue #14): the run's certificates, the three TLS modes, and that
no trust store is touched."""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import stat
import subprocess
import threading
from pathlib import Path

import psutil
import pytest

from lab.clients import browser
from lab.data import scenarios
from lab.data.errors import BadInput
from lab.stacks import tls
from lab.stacks.stack import tls_args
from tests.lab_helpers import assert_nothing_left, processes_with_token

TRUST_STORES = [Path("/etc/ssl/certs"), Path.home() / ".pki" / "nssdb"]


def store_snapshot() -> dict[str, str]:
    """Every file of the system store and the user's NSS database, by content (and a store
    that does not exist as such): a run must leave them exactly as they were."""
    seen: dict[str, str] = {}
    for store in TRUST_STORES:
        if not store.exists():
            seen[str(store)] = "absent"
            continue
        for path in sorted(store.rglob("*")):
            target = os.readlink(path) if path.is_symlink() else None
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
            seen[str(path)] = f"{target}:{digest}"
    return seen


def handshake(certs: tls.RunTls, client_context: ssl.SSLContext) -> dict:
    """A TLS handshake over a socket pair: the app's certificate, checked for 127.0.0.1."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(certs.app_cert, certs.app_key)
    left, right = socket.socketpair()
    with left, right:

        def serve() -> None:
            try:
                with server_context.wrap_socket(left, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass  # the client's refusal ends the server's side too

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            with client_context.wrap_socket(right, server_hostname=tls.LOOPBACK) as wrapped:
                return wrapped.getpeercert()
        finally:
            thread.join(timeout=5)


def test_certificates_stay_in_the_run_folder_with_private_keys(tmp_path):
    certs = tls.make(tmp_path)
    made = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert made and all(path.is_relative_to(tmp_path / tls.TLS_FOLDER) for path in made)
    for key in (certs.app_key, certs.edge_pem, certs.gateway_confdir / "mitmproxy-ca.pem"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert certs.trust_file.read_text().count("BEGIN CERTIFICATE") == 2


def test_the_python_client_trusts_the_run_ca_and_the_system_does_not(tmp_path):
    certs = tls.make(tmp_path)
    seen = handshake(certs, certs.client_context())
    issuer = dict(item[0] for item in seen["issuer"])
    assert issuer["commonName"] == tls.ORIGIN_CA_NAME
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(certs, ssl.create_default_context())


def test_chromium_spki_hashes_are_openssls(tmp_path):
    """The hash Chromium's --ignore-certificate-errors-spki-list takes, as its docs make it:
    openssl x509 -pubkey | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary |
    base64."""
    certs = tls.make(tmp_path)
    pem = certs.gateway_ca.read_bytes()
    pubkey = subprocess.run(
        ["openssl", "x509", "-pubkey", "-noout"], input=pem, capture_output=True, check=True
    ).stdout
    der = subprocess.run(
        ["openssl", "pkey", "-pubin", "-outform", "der"],
        input=pubkey,
        capture_output=True,
        check=True,
    ).stdout
    import base64

    expected = base64.b64encode(hashlib.sha256(der).digest()).decode()
    assert certs.spki_hashes[0] == expected
    assert certs.chromium_args() == [
        f"--ignore-certificate-errors-spki-list={','.join(certs.spki_hashes)}"
    ]
    assert len(set(certs.spki_hashes)) == 4


def test_tls_modes_set_mitmproxys_own_options(tmp_path):
    certs = tls.make(tmp_path)
    tunnel = tls_args("tunnel", certs, "proxy")
    assert "ignore_hosts=.*" in tunnel and "ssl_verify_upstream_trusted_ca" not in str(tunnel)
    inspect = tls_args("inspect", certs, "proxy")
    assert f"confdir={certs.gateway_confdir}" in inspect
    assert f"ssl_verify_upstream_trusted_ca={certs.origin_ca}" in inspect
    edge = tls_args("edge", certs, "proxy")
    assert f"certs=*={certs.edge_pem}" in edge
    # Every confdir is in the run folder: mitmproxy would otherwise use ~/.mitmproxy.
    confdirs = [arg.split("=", 1)[1] for arg in tunnel + inspect + edge if "confdir=" in arg]
    assert all(Path(d).is_relative_to(certs.folder) for d in confdirs)


@pytest.mark.parametrize(
    ("proxy", "mode", "problem"),
    [
        ("corporate-cache", "edge", "'edge' needs a reverse proxy profile"),
        ("cdn-ignore-query", "inspect", "'inspect' needs a forward proxy profile"),
        ("none", "tunnel", "needs a proxy profile"),
    ],
)
def test_a_tls_mode_must_fit_the_profile(tmp_path, proxy, mode, problem):
    path = tmp_path / "bad-tls.toml"
    path.write_text(
        f'name = "bad-tls"\nsummary = "x"\nsituation = "x"\nproxy = "{proxy}"\n'
        f'tls = "{mode}"\n[expected]\nothers = "completed"\n'
    )
    with pytest.raises(BadInput) as caught:
        scenarios.load(str(path))
    message = str(caught.value)
    assert "bad-tls.toml" in message and "tls" in message and problem in message


def test_https_scenarios_say_their_tls_mode():
    assert scenarios.load("https-tunnel").tls == "tunnel"
    assert scenarios.load("https-inspecting-gateway").tls == "inspect"
    assert scenarios.load("https-cdn").tls == "edge"


HTTPS_CELLS = {
    ("https-tunnel", "none"): ("completed", "proxy-cache-lab origin CA (a public CA)"),
    ("https-inspecting-gateway", "none"): ("hung", tls.GATEWAY_CA_NAME),
    ("https-inspecting-gateway", "nonce"): ("completed", tls.GATEWAY_CA_NAME),
    ("https-cdn", "none"): ("hung", tls.ORIGIN_CA_NAME),
}


def listening_addresses(token: str) -> set[str]:
    """Where the lab's processes (mitmdumps, app servers, workers; Chromium) listen."""
    found = set()
    for proc in processes_with_token(token):
        try:
            connections = proc.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        found |= {c.laddr.ip for c in connections if c.status == psutil.CONN_LISTEN}
    return found


def run_https_matrix(tmp_path: Path, client: str, token: str):
    """The three HTTPS scenarios with none and nonce; once every stack is up, every listener
    of the lab's processes is on 127.0.0.1."""
    from lab.runs import matrix

    listening: list[set[str]] = []

    def progress(message: str) -> None:
        if "up after" in message:
            listening.append(listening_addresses(token))

    loaded = [scenarios.load(name) for name in ("https-tunnel", "https-inspecting-gateway")]
    loaded.append(scenarios.load("https-cdn"))
    result = matrix.run_matrix(loaded, ["none", "nonce"], tmp_path, progress, client=client)
    assert listening and listening[0] == {tls.LOOPBACK}, listening
    return result


def assert_https_cells(result) -> None:
    for (name, fix), (outcome, issuer) in HTTPS_CELLS.items():
        verdict = result.last[(name, fix)]
        assert verdict.observed == outcome, verdict.sentence
        assert verdict.tls is not None and verdict.tls["certificate"]["issuer"] == issuer, name
        assert verdict.tls["certificate"]["subject"] == tls.LOOPBACK
        if outcome == "hung":
            assert verdict.first_stale_answer["tls_certificate"].endswith(issuer)
    # The tunnel's proxy saw nothing of the polls; the inspecting one answered them.
    assert result.last[("https-tunnel", "none")].polls["from_cache"] == 0
    assert result.last[("https-inspecting-gateway", "none")].polls["from_cache"] > 0
    assert result.ok


@pytest.mark.stack
def test_https_cells_with_the_python_client(tmp_path, token):
    before = store_snapshot()
    result = run_https_matrix(tmp_path, "python", token)
    assert_https_cells(result)
    assert_nothing_left(token)
    assert store_snapshot() == before
    assert not (Path.home() / ".mitmproxy").exists() or _untouched_by(result.run_dir)


def _untouched_by(run_dir: Path) -> bool:
    """mitmproxy's default confdir, if a user has one, is older than the run."""
    made = (Path.home() / ".mitmproxy" / "mitmproxy-ca.pem").stat().st_mtime
    return made < run_dir.stat().st_mtime


@pytest.mark.stack
def test_https_cells_in_the_browser(tmp_path, token):
    missing = browser.unavailable()
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the browser client cannot run on CI: {missing}")
        pytest.skip(f"the browser client cannot run here: {missing}")
    before = store_snapshot()
    result = run_https_matrix(tmp_path, "browser", token)
    assert_https_cells(result)
    assert_nothing_left(token)
    assert store_snapshot() == before


def test_lab_up_refuses_an_https_scenario_before_starting_anything(tmp_path):
    from rich.console import Console

    from lab.runs import workshop

    with pytest.raises(BadInput, match=r"field 'tls' \(tunnel\): lab up serves plain HTTP only"):
        workshop.up(
            scenarios.load("https-tunnel"),
            "none",
            tmp_path,
            lambda _: None,
            console=Console(file=open(os.devnull, "w")),  # noqa: SIM115 - closed with the test
        )
    assert list(tmp_path.iterdir()) == []


# -- lab probe --cacert: was TLS intercepted on the path? ----------------------------------------
def test_cacert_that_is_not_a_ca_file_is_bad_input(tmp_path):
    from click.testing import CliRunner

    from lab.cli import main

    missing = tmp_path / "nope.pem"
    result = CliRunner().invoke(main, ["probe", "https://127.0.0.1:9/", "--cacert", str(missing)])
    assert result.exit_code == 2
    assert f"--cacert '{missing}': not a readable PEM CA file" in result.output


@pytest.mark.stack
def test_the_probe_tells_an_intercepted_path_with_the_servers_own_ca(tmp_path, token):
    """The sample app on HTTPS (a thread of this process); the probe with --cacert (the
    origin CA) straight, through a tunnelling proxy and through an inspecting one."""
    from werkzeug.serving import make_server

    from lab.cli.probe import run_probe
    from lab.data import profiles
    from lab.runs.lifecycle import RunResources, new_run_dir
    from lab.stacks.stack import launch_proxy
    from sample_app.config import AppConfig
    from sample_app.web import create_app

    folder = new_run_dir(tmp_path, "probe-tls")
    with RunResources(folder) as resources:
        certs = resources.tls()
        app = create_app(AppConfig.standalone(tmp_path / "app"))
        server = make_server(
            tls.LOOPBACK, 0, app, threaded=True, ssl_context=(certs.app_cert, certs.app_key)
        )
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        try:
            url = f"https://{tls.LOOPBACK}:{server.server_port}/_cache-probe"
            corporate = profiles.load("corporate-cache")
            waits = {
                mode: launch_proxy(
                    resources.sup,
                    f"p-{mode}",
                    corporate,
                    None,
                    single=False,
                    tls_mode=mode,
                    tls=certs,
                )
                for mode in ("tunnel", "inspect")
            }
            proxies = {mode: wait().address for mode, wait in waits.items()}
            stop = threading.Event()
            seen = {
                way: run_probe(url, proxy, 2, 0.05, stop, True, str(certs.origin_ca)).tls
                for way, proxy in [("straight", None), *proxies.items()]
            }
        finally:
            server.shutdown()
            server.server_close()
    assert seen["straight"].verified and seen["tunnel"].verified
    assert seen["tunnel"].issuer.endswith(tls.ORIGIN_CA_NAME)
    inspected = seen["inspect"]
    assert not inspected.verified and inspected.to_json()["intercepted"] is True
    assert tls.GATEWAY_CA_NAME in inspected.issuer
    assert "INTERCEPTED TLS" in inspected.lines()[1]
    assert_nothing_left(token)


def test_the_tls_evidence_does_not_guess_about_a_proxy_the_lab_did_not_start():
    from lab.judging.tls_path import certificate_line, path_facts

    seen = {"subject": "127.0.0.1", "issuer": tls.GATEWAY_CA_NAME}
    own = path_facts("inspect", "corporate-cache", "python", seen)
    assert own["terminated_at"].startswith("the proxy (corporate-cache), an inspecting gateway")
    outside = path_facts("inspect", "127.0.0.1:3128", "python", seen, external=True)
    assert outside["terminated_at"].startswith("not known: 127.0.0.1:3128")
    assert certificate_line(outside) == f"certificate 127.0.0.1 issued by {tls.GATEWAY_CA_NAME}"
    assert certificate_line(path_facts("tunnel", "x", "browser", None)).startswith("no certif")
