"""`lab verify` before anything starts: what it runs (the cells, the templates, the products)
and its bad input (exit 2) and missing product (exit 3, the install command), each one line."""

from __future__ import annotations

import dataclasses
import re
import shutil

import pytest
from click.testing import CliRunner

from lab.cli import main
from lab.data import fixes, profiles
from lab.verify import products
from lab.verify.real import RealSetup, fill, placeholders, real_profiles, templates_dir
from lab.verify.run import NOT_JUDGED, CellComparison, plan
from tests.lab_helpers import PROJECT_ROOT
from tests.test_cli_input import assert_bad_input, lab

IMITATED = [
    "nginx-cache-valid",
    "nginx-default",
    "nginx-ignore-headers",
    "nginx-ignore-query",
    "nginx-post-cache",
    "squid-default",
    "squid-override",
]


def test_every_profile_that_names_squid_or_nginx_has_a_real_table():
    assert set(IMITATED) <= set(real_profiles())


@pytest.mark.parametrize("name", real_profiles())
def test_a_real_table_names_a_product_and_a_template_that_fills(name):
    setup = RealSetup.of(name)
    assert setup.product.name in products.names()
    assert setup.placement == profiles.load(name).mode
    text = fill(setup.template, placeholders(setup.product, 3128, 5000, PROJECT_ROOT))
    # On loopback, its files in the run folder.
    assert "127.0.0.1:3128" in text and f"{PROJECT_ROOT}/" in text


DIRECTIVE = re.compile(r"^\s*(refresh_pattern\s.*|[a-z_]+(\s+[^{}]*)?;)\s*$")
# The other products' configuration lines, in their own syntax: Apache's Proxy*/Cache*
# directives, HAProxy's section and proxy keywords, varnishd's options one per line, Traffic
# Server's remap rules and records.config lines.
PRODUCT_DIRECTIVES = {
    "apache": re.compile(r"^\s*(Proxy\w*|Cache\w*)\s.*$"),
    "haproxy": re.compile(
        r"^\s*(cache|frontend|backend|bind|server|default_backend|total-max-size|max-age"
        r"|http-request|http-response)\s.*$"
    ),
    "varnish": re.compile(r"^\s*-[a-zA-Z]\s+\S+\s*$"),
    "trafficserver": re.compile(r"^\s*(map|CONFIG)\s.*$"),
}
# Lines real_config writes for a machine of its own, that the template must move to loopback.
ADDRESSES = ("listen ", "proxy_pass ", "proxy_cache_path ", "http_port ")
ADDRESSES += ("CacheRoot ", "bind ", "-a ", "-n ")


@pytest.mark.parametrize("name", real_profiles())
def test_the_template_says_what_real_config_says(name):
    """real_config stays the documentation: each of its directives is in the template as is."""
    setup = RealSetup.of(name)
    filled = fill(setup.template, placeholders(setup.product, 3128, 5000, PROJECT_ROOT))
    lines = {" ".join(line.split()) for line in filled.splitlines()}
    said = [
        " ".join(line.split()).replace("\\\\", "\\")
        for line in profiles.load(name).real_config.splitlines()
        if PRODUCT_DIRECTIVES.get(setup.product.name, DIRECTIVE).match(line)
        and not line.strip().startswith(ADDRESSES)
    ]
    assert said, f"{name}: real_config names no directive"
    missing = [line for line in said if line not in lines]
    assert not missing, f"{setup.template.name} lacks what real_config says: {missing}"


@pytest.mark.parametrize("name", IMITATED)
def test_the_cells_are_every_scenario_of_the_profile_with_every_fix(name):
    (group,) = plan([RealSetup.of(name)])
    assert [sc.name for sc in group.scenarios] == [name]  # each has its scenario of that name
    applying = [fix for fix in fixes.names() if group.scenarios[0].applies(fix)]
    assert group.fixes == applying and len(applying) >= 15


def test_a_cell_agrees_only_when_both_sides_were_judged_the_same():
    cell = CellComparison("p", "s", "none", "hung", "hung", "hung")
    assert cell.agree and cell.status == "agree"
    assert dataclasses.replace(cell, real="completed").status == "differs"
    both = dataclasses.replace(cell, real=NOT_JUDGED, simulated=NOT_JUDGED)
    assert not both.agree and both.status == NOT_JUDGED


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["verify"], "give one PROFILE or --all"),
        (["verify", "squid-default", "--all"], "give one PROFILE or --all"),
        (["verify", "nosuch"], "unknown proxy profile 'nosuch'"),
        (["verify", "rfc"], "profile 'rfc' has no [real] table"),
    ],
)
def test_bad_input_is_one_line_before_anything_starts(tmp_path, args, named):
    assert_bad_input(tmp_path, lab(tmp_path, *args), named)


def test_a_template_with_an_unknown_placeholder_is_bad_input_naming_it(tmp_path):
    shutil.copytree(PROJECT_ROOT / "proxies" / "profiles", tmp_path / "profiles")
    shutil.copytree(templates_dir(), tmp_path / "real")
    template = tmp_path / "real" / "squid-default.conf"
    template.write_text(template.read_text() + "visible_hostname $hostname\n")
    result = lab(tmp_path, "verify", "squid-default", LAB_PROFILES_DIR=str(tmp_path / "profiles"))
    assert_bad_input(tmp_path, result, "squid-default.conf", "$hostname", "$$")


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        ('product = "squid"', 'product = "sqiud"', "field 'real.product': unknown real product"),
        ('config = "squid-default.conf"', 'config = "nope.conf"', "no template"),
    ],
)
def test_a_real_table_naming_what_does_not_exist_is_bad_input(tmp_path, old, new, named):
    shutil.copytree(PROJECT_ROOT / "proxies" / "profiles", tmp_path / "profiles")
    shutil.copytree(templates_dir(), tmp_path / "real")
    profile = tmp_path / "profiles" / "squid-default.toml"
    assert old in profile.read_text()
    profile.write_text(profile.read_text().replace(old, new))
    result = lab(tmp_path, "verify", "squid-default", LAB_PROFILES_DIR=str(tmp_path / "profiles"))
    assert_bad_input(tmp_path, result, "squid-default.toml", named)


def test_a_missing_product_is_exit_3_with_its_install_command(tmp_path, monkeypatch):
    real_get = products.get

    def not_installed(name: str) -> products.Product:
        return dataclasses.replace(real_get(name), binary=str(tmp_path / "no" / name))

    monkeypatch.setattr("lab.verify.real.products.get", not_installed)
    monkeypatch.setenv("LAB_RUNS_DIR", str(tmp_path / "runs"))
    result = CliRunner().invoke(main, ["verify", "squid-default"])
    assert result.exit_code == 3, result.output
    (line,) = result.output.splitlines()
    assert "is not installed" in line and line.endswith("apt-get install -y squid")
    assert not (tmp_path / "runs").exists()
