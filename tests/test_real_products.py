"""The product modules of Varnish, Apache httpd, HAProxy and Traffic Server: how each turns its
filled template into a foreground command and a run folder (lab verify runs them for real, in
tests/test_verify_real.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.data.errors import BadInput
from lab.verify import products
from lab.verify.products import trafficserver, varnish
from lab.verify.real import RealSetup, fill, placeholders

NEW_PRODUCTS = {"varnish": "varnish", "apache": "Apache", "haproxy": "HAProxy"}
NEW_PRODUCTS |= {"trafficserver": "Traffic Server"}


def filled(profile: str, folder: Path) -> Path:
    """The profile's template filled as lab verify fills it, written into `folder`."""
    setup = RealSetup.of(profile)
    path = folder / setup.template.name
    path.write_text(fill(setup.template, placeholders(setup.product, 3128, 5000, folder)))
    return path


@pytest.mark.parametrize("name", NEW_PRODUCTS)
def test_each_is_in_the_registry_with_its_package(name: str):
    product = products.get(name)
    assert product.name == name and product.binary.startswith("/usr/")
    assert product.install_command == f"apt-get install -y {product.package}"


def test_varnish_runs_in_the_foreground_with_the_templates_options(tmp_path: Path):
    config = filled("varnish-builtin", tmp_path)
    argv = varnish.PRODUCT.command(config, tmp_path)
    assert argv[:2] == [varnish.BINARY, "-F"]
    # The comment lines are skipped; no -f: the built-in VCL is the whole policy.
    assert argv[2:] == ["-a", "127.0.0.1:3128", "-b", "127.0.0.1:5000", "-n", f"{tmp_path}/varnish"]


@pytest.mark.parametrize(
    ("profile", "flags"),
    [("apache-mod-cache", ["-DFOREGROUND", "-f"]), ("haproxy-cache", ["-db", "-f"])],
)
def test_apache_and_haproxy_run_in_the_foreground_on_the_filled_config(
    profile: str, flags: list[str], tmp_path: Path
):
    setup = RealSetup.of(profile)
    config = filled(profile, tmp_path)
    assert setup.product.command(config, tmp_path) == [setup.product.binary, *flags, str(config)]


def test_apache_prepares_its_disk_cache_in_the_folder(tmp_path: Path):
    config = filled("apache-mod-cache", tmp_path)
    products.get("apache").prepare(config, tmp_path)
    assert (tmp_path / "cache").is_dir()
    assert f'CacheRoot "{tmp_path}/cache"' in config.read_text()


def test_trafficserver_writes_its_files_and_a_runroot_in_the_folder(tmp_path: Path):
    config = filled("trafficserver-default", tmp_path)
    trafficserver.PRODUCT.prepare(config, tmp_path)
    etc = tmp_path / "etc"
    records = (etc / "records.config").read_text()
    assert "CONFIG proxy.config.http.server_ports STRING 127.0.0.1:3128" in records
    assert "CONFIG proxy.config.http.cache.required_headers INT 2" in records
    assert "# file:" not in records
    assert (etc / "remap.config").read_text() == "map / http://127.0.0.1:5000/\n"
    assert (etc / "storage.config").read_text() == f"{tmp_path}/cache 64M\n"
    assert "ip_allow:" in (etc / "ip_allow.yaml").read_text()
    assert all((etc / name).exists() for name in trafficserver.EMPTY_FILES)
    runroot = (tmp_path / "runroot.yaml").read_text()
    for key in ("sysconfdir", "runtimedir", "logdir", "cachedir", "localstatedir"):
        assert f"{key}: {tmp_path}/" in runroot  # nothing of Debian's /etc, /run, /var
    argv = trafficserver.PRODUCT.command(config, tmp_path)
    assert argv == [trafficserver.BINARY, f"--run-root={tmp_path}/runroot.yaml"]


def test_a_trafficserver_template_without_records_config_is_bad_input(tmp_path: Path):
    config = tmp_path / "bad.config"
    config.write_text("# file: remap.config\nmap / http://127.0.0.1:5000/\n")
    with pytest.raises(BadInput, match=r"bad.config: no '# file: records.config' part"):
        trafficserver.PRODUCT.prepare(config, tmp_path)


@pytest.mark.stack
@pytest.mark.parametrize(("name", "word"), NEW_PRODUCTS.items())
def test_the_installed_products_name_their_version(name: str, word: str):
    assert word in products.get(name).version()
