"""The real products `lab verify` can run, one module each: adding a product is adding a file
lab/verify/products/<name>.py that defines PRODUCT (a base.Product named <name>)."""

from __future__ import annotations

import importlib
import pkgutil

from lab.data.errors import BadInput
from lab.verify.products.base import Product

__all__ = ["Product", "get", "names"]

_NOT_PRODUCTS = {"base"}


def names() -> list[str]:
    """Every product module's name, sorted."""
    return sorted(
        info.name
        for info in pkgutil.iter_modules(__path__)
        if not info.name.startswith("_") and info.name not in _NOT_PRODUCTS
    )


def get(name: str) -> Product:
    """The product named `name`; BadInput naming it when there is no such module."""
    if name not in names():
        raise BadInput(f"unknown real product {name!r} (known: {', '.join(names())})")
    product = getattr(importlib.import_module(f"{__name__}.{name}"), "PRODUCT", None)
    if not isinstance(product, Product) or product.name != name:
        raise BadInput(f"lab/verify/products/{name}.py: PRODUCT must be a Product named {name!r}")
    return product
