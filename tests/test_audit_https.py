"""`lab audit` of an HTTPS app (issue #14 item 4): the user's CA (`--cacert`, `[app] cacert`)
or a certificate the lab makes (`{certfile}`/`{keyfile}`), forward profiles tunnelling or
inspecting (`--tls`), reverse profiles as TLS edges; bad CA input is exit 2, an app its CA does
not verify exit 3, nothing left running, and no certificate or key outside the run folder."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import trustme

from tests.lab_helpers import TINY_APP, LabProcess, assert_nothing_left
from tests.test_cli_input import assert_bad_input, lab

EXAMPLE_HTTPS_FLOW = """\
name = "fastapi-https"
[app]
commands = [
  "{python} -m uvicorn examples.fastapi_jobs.app:create_app --factory --host 127.0.0.1 \
--port {port} --ssl-certfile {certfile} --ssl-keyfile {keyfile}",
]
cwd = "%(root)s"
env = { STATUS_CACHE_CONTROL = "" }
[start]
path = "/jobs"
json = { seconds = 1 }
task_id = "header:Location"
[status]
shape = "status-done"
path = "/jobs/{id}"
task_id = "id"
"""

TINY_HTTPS_FLOW = """\
[app]
commands = ["{python} %(app)s --port {port} --certfile %(cert)s --keyfile %(key)s"]
cacert = "%(cacert)s"
[start]
path = "/jobs"
json = { seconds = 1 }
task_id = "header:Location"
[status]
shape = "status-done"
path = "/jobs/{id}"
"""


def audit_json(tmp_path: Path, *args: str) -> tuple[int, dict | None, LabProcess]:
    with LabProcess(["audit", *args, "--json"], tmp_path) as run:
        code, _ = run.finish(180)
    doc = json.loads("\n".join(run.stdout_lines)) if run.stdout_lines else None
    return code, doc, run


def pem_files(folder: Path) -> set[Path]:
    """Every certificate or key file below `folder`, by its content's markers."""
    found = set()
    for path in folder.rglob("*"):
        small = path.is_file() and path.stat().st_size < 1_000_000
        if small and b"-----BEGIN " in path.read_bytes():
            found.add(path)
    return found


def tiny_https_flow(folder: Path, signer: trustme.CA, cacert: str) -> Path:
    """The tiny app serving HTTPS with a certificate of `signer`'s, its flow trusting the CA
    file `cacert` (relative to the flow file)."""
    certs = folder / "app-certs"
    certs.mkdir(exist_ok=True)
    leaf = signer.issue_cert("127.0.0.1")
    leaf.cert_chain_pems[0].write_to_path(str(certs / "cert.pem"))
    leaf.private_key_pem.write_to_path(str(certs / "key.pem"))
    flow = folder / "tiny-https.toml"
    flow.write_text(
        TINY_HTTPS_FLOW
        % {"app": TINY_APP, "cert": certs / "cert.pem", "key": certs / "key.pem", "cacert": cacert},
        "utf-8",
    )
    return flow


@pytest.mark.stack
@pytest.mark.parametrize(
    ("forward", "expected"), [("tunnel", "completed"), ("inspect", "hung")], ids=str
)
def test_the_https_example_behind_a_tunnel_and_an_inspecting_gateway(
    tmp_path, token, forward, expected
):
    root = Path(__file__).resolve().parent.parent
    flow = tmp_path / "https.toml"
    flow.write_text(EXAMPLE_HTTPS_FLOW % {"root": root}, "utf-8")
    home_mitmproxy = Path.home() / ".mitmproxy"
    before_home = pem_files(home_mitmproxy) if home_mitmproxy.exists() else set()
    before_root = pem_files(root / "examples")
    code, doc, run = audit_json(
        tmp_path, str(flow), "--profiles", "corporate-cache", "--tls", forward
    )
    assert doc is not None and code == (0 if expected == "completed" else 1), run.stderr
    (cell,) = doc["cells"]
    assert cell["outcome"] == expected, cell["verdict"]["sentence"]
    tls = cell["verdict"]["tls"]
    assert tls["mode"] == forward
    issuer = tls["certificate"]["issuer"]
    if forward == "tunnel":
        # The proxy only passed CONNECT through: the poller was shown the app's certificate.
        assert tls["terminated_at"].startswith("the app")
        assert issuer.startswith("proxy-cache-lab origin CA")
        assert cell["verdict"]["polls"]["from_cache"] == 0
    else:
        assert tls["terminated_at"].startswith("the proxy (corporate-cache), an inspecting")
        assert issuer.startswith("proxy-cache-lab gateway CA")
        assert cell["verdict"]["first_stale_answer"]["tls_certificate"].endswith(issuer)
    assert doc["tls"]["profiles"]["corporate-cache"]["mode"] == forward
    assert doc["app_url"].startswith("https://127.0.0.1:")
    # No certificate or key outside the run folder's tls/: not beside the flow, not in the
    # project, not in ~/.mitmproxy.
    (run_dir,) = (tmp_path / "runs").iterdir()
    made = pem_files(tmp_path)
    assert made and all(path.is_relative_to(run_dir / "tls") for path in made), made
    assert pem_files(root / "examples") == before_root
    assert (pem_files(home_mitmproxy) if home_mitmproxy.exists() else set()) == before_home
    assert_nothing_left(token)


@pytest.mark.stack
def test_the_users_own_ca_relative_to_the_flow_file_and_a_reverse_edge(tmp_path, token):
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "my-ca.pem"))
    flow = tiny_https_flow(tmp_path, ca, "my-ca.pem")
    code, doc, run = audit_json(tmp_path, str(flow), "--profiles", "squid-default,cdn-ignore-query")
    assert doc is not None and code == 1, run.stderr
    cells = {c["profile"]: c for c in doc["cells"]}
    assert cells["squid-default"]["outcome"] == "completed"  # tunnelled: nothing to cache
    edge = cells["cdn-ignore-query"]["verdict"]
    assert cells["cdn-ignore-query"]["outcome"] == "hung", edge["sentence"]
    assert edge["tls"]["mode"] == "edge"
    assert edge["tls"]["certificate"]["issuer"].startswith("proxy-cache-lab origin CA")
    assert "your CA (" in edge["tls"]["client_trusted"]
    assert "my-ca.pem" in doc["tls"]["direct_trusted"]
    assert_nothing_left(token)


@pytest.mark.stack
def test_an_app_its_ca_does_not_verify_is_exit_3_with_nothing_left(tmp_path, token):
    signer, other = trustme.CA(), trustme.CA()
    other.cert_pem.write_to_path(str(tmp_path / "other-ca.pem"))
    flow = tiny_https_flow(tmp_path, signer, "other-ca.pem")
    code, doc, run = audit_json(tmp_path, str(flow), "--profiles", "corporate-cache")
    assert code == 3 and doc is not None and doc["exit_code"] == 3, run.stderr
    assert "is not verified by your CA" in doc["error"]
    errors = [line for line in run.stderr_lines if line.startswith("error:")]
    assert len(errors) == 1, run.stderr
    assert "is not verified by your CA (" in errors[0] and "other-ca.pem" in errors[0]
    assert "certificate" in errors[0]
    assert_nothing_left(token)


def write_flow(folder: Path, app: str) -> Path:
    path = folder / "flow.toml"
    path.write_text(f"[app]\n{app}\n", "utf-8")
    return path


@pytest.mark.parametrize(
    ("app", "options", "named"),
    [
        ('url = "https://127.0.0.1:1"', [], "field 'app': an https:// app needs the CA file"),
        ('url = "http://127.0.0.1:1"\ncacert = "ca.pem"', [], "cacert is for an https:// app"),
        ('url = "https://127.0.0.1:1"\ncacert = "nowhere.pem"', [], "field 'app.cacert'"),
        ('url = "https://127.0.0.1:1"\ncacert = "flow.toml"', [], "no PEM certificate"),
        (
            'commands = ["serve --port {port} --cert {certfile}"]\ncacert = "ca.pem"',
            [],
            "not both",
        ),
        ('url = "http://127.0.0.1:1"', ["--tls", "inspect"], "--tls inspect: the app is plain"),
    ],
)
def test_bad_https_input_is_exit_2_naming_the_field(tmp_path, app, options, named):
    flow = write_flow(tmp_path, app)
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    result = lab(tmp_path, "audit", str(flow), *options)
    assert_bad_input(tmp_path, result, named)


def test_a_bad_cacert_option_is_exit_2_naming_the_option(tmp_path):
    (tmp_path / "key.pem").write_text(
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    )
    result = lab(tmp_path, "audit", "--app-url", "https://127.0.0.1:1", "--cacert", "key.pem")
    assert_bad_input(tmp_path, result, "--cacert key.pem", "no PEM certificate")
    result = lab(tmp_path, "audit", "--app-url", "https://127.0.0.1:1")
    assert_bad_input(tmp_path, result, "--app-url", "needs the CA file")
    assert sys.executable


def test_a_flow_names_its_cacert_relative_to_itself(tmp_path):
    from lab.data import flows

    (tmp_path / "sub").mkdir()
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "sub" / "ca.pem"))
    path = tmp_path / "sub" / "flow.toml"
    path.write_text('[app]\nurl = "https://127.0.0.1:9"\ncacert = "ca.pem"\n', "utf-8")
    flow = flows.load(path)
    assert flow.https and flow.cacert == (tmp_path / "sub" / "ca.pem").resolve()
    made = flows.Flow.model_validate({"app": {"commands": ["x {port} {certfile} {keyfile}"]}})
    assert made.https and made.makes_certificate and made.cacert is None


@pytest.mark.stack
def test_https_tunnel_through_a_real_squid_given_as_proxy_url(tmp_path, token):
    """`lab repro https-tunnel --proxy-url` with a real Squid as the forward proxy: the client
    sends CONNECT, Squid tunnels it (TCP_TUNNEL in its access log) and the poll completes; the
    verdict shows the app's own certificate and does not claim where TLS ended."""
    from lab.runs.lifecycle import RunResources
    from lab.verify.real import ProductFolder, RealSetup, launch

    setup = RealSetup.of("squid-default")
    if not setup.product.installed:
        pytest.skip("squid is not installed (apt-get install -y squid)")
    (tmp_path / "squid-run").mkdir()
    with RunResources(tmp_path / "squid-run") as resources:
        folder = ProductFolder(resources.sup.run_dir, "squid-default")
        squid = launch(resources.sup, setup, None, folder)()
        with LabProcess(
            ["repro", "https-tunnel", "--fix", "none", "--proxy-url", squid.url, "--json"],
            tmp_path,
        ) as run:
            code, _ = run.finish(180)
        access_log = (folder.path / "access.log").read_text("utf-8")
    assert code == 0, run.stderr
    verdict = json.loads("\n".join(run.stdout_lines))
    assert verdict["observed"] == "completed" and verdict["polls"]["from_cache"] == 0
    assert verdict["tls"]["terminated_at"].startswith("not known: external proxy")
    assert verdict["tls"]["certificate"]["issuer"].startswith("proxy-cache-lab origin CA")
    assert "TCP_TUNNEL/200" in access_log and "CONNECT 127.0.0.1:" in access_log
    assert_nothing_left(token)


@pytest.mark.stack
def test_the_plugins_audit_starts_an_https_app_with_a_certificate_of_the_run(tmp_path, token):
    from lab.plugin.audits import AppPool, make_auditor

    flow = tmp_path / "made.toml"
    made = TINY_HTTPS_FLOW.replace('cacert = "%(cacert)s"\n', "") % {
        "app": TINY_APP, "cert": "{certfile}", "key": "{keyfile}",
    }  # fmt: skip
    flow.write_text(made, "utf-8")
    with AppPool(tmp_path / "runs") as apps:
        audit = make_auditor(apps, tmp_path / "runs")
        inspected = audit(flow, profiles=["corporate-cache"], tls="inspect")
    assert inspected.outcome("corporate-cache") == "hung", str(inspected)
    assert inspected.result.tls["profiles"]["corporate-cache"]["mode"] == "inspect"
    assert_nothing_left(token)
