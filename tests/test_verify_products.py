"""The real products' registry (lab/verify/products/): adding a product is adding a file, an
unknown one is bad input, and a product module says how to run it in the foreground."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.data.errors import BadInput
from lab.verify import products
from lab.verify.products.base import Product
from proxies.profile import Profile


def test_the_registry_lists_every_product_module_and_nothing_else():
    assert {"squid", "nginx"} <= set(products.names())
    assert "base" not in products.names()
    for name in products.names():
        product = products.get(name)
        assert isinstance(product, Product) and product.name == name


def test_an_unknown_product_is_bad_input_naming_it_and_the_known_ones():
    with pytest.raises(BadInput, match=r"unknown real product 'sqiud' \(known: .*squid"):
        products.get("sqiud")


@pytest.mark.parametrize("name", ["squid", "nginx"])
def test_a_product_runs_its_own_binary_on_the_filled_config(name, tmp_path: Path):
    product = products.get(name)
    config = tmp_path / "filled.conf"
    argv = product.command(config, tmp_path)
    assert argv[0] == product.binary and str(config) in argv
    assert product.install_command == f"apt-get install -y {product.package}"


def test_the_default_version_runs_the_binary_with_v(tmp_path: Path):
    script = tmp_path / "fake"
    script.write_text("#!/bin/sh\necho\necho 'Fake 1.2' >&2\n")
    script.chmod(0o755)
    product = Product("fake", "fake", str(script), command=lambda c, f: [str(script)])
    assert product.installed
    assert product.version() == "Fake 1.2"
    missing = Product("gone", "gone", str(tmp_path / "gone"), command=lambda c, f: [])
    assert not missing.installed
    assert missing.version().startswith("unknown (")


@pytest.mark.stack
@pytest.mark.parametrize(("name", "word"), [("squid", "Squid"), ("nginx", "nginx")])
def test_the_installed_products_name_their_version(name, word):
    assert word in products.get(name).version()


def test_a_profile_real_table_is_checked():
    base = {"name": "x", "summary": "s", "real_world": "w"}
    real = {"product": "nginx", "config": "x.conf", "placement": "reverse"}
    assert Profile.model_validate(base | {"real": real}).real.placement == "reverse"
    with pytest.raises(ValueError, match="placement"):
        Profile.model_validate(base | {"real": real | {"placement": "sideways"}})
    with pytest.raises(ValueError, match="extra"):
        Profile.model_validate(base | {"real": real | {"port": 80}})
