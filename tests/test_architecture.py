"""The shape of the code (issue 10): layers whose imports point one way, no import cycles, small
modules, and an architecture page that names only what exists."""

from __future__ import annotations

import ast
import re
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# lab/'s layers, from the bottom: a module imports from its own layer or the ones before it.
LAYERS = ["data", "stacks", "clients", "judging", "runs", "reports", "verify", "cli", "plugin"]
PACKAGES = ("lab", "proxies", "sample_app", "cache_probe")
ARCHITECTURE = PROJECT_ROOT / "docs" / "architecture.md"


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """Every project module `path` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from lab.runs import cell` imports lab.runs.cell; `from lab.x import name` lab.x.
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name.split(".")[0] in PACKAGES:
                found.add(name)
    return found


def layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "lab" or len(parts) < 2:
        return None
    return LAYERS.index(parts[1]) if parts[1] in LAYERS else None


GRAPH = {name: imports(path, modules()) - {name} for name, path in modules().items()}


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.startswith("lab.")))
def test_lab_imports_point_down_the_layers(module):
    mine = layer(module)
    if module != "lab" and module != "lab.__main__":
        assert mine is not None, f"{module} is in no layer: put it in one of lab/{LAYERS}"
    upward = sorted(
        other
        for other in GRAPH[module]
        if (theirs := layer(other)) is not None and mine is not None and theirs > mine
    )
    assert not upward, f"{module} (layer {LAYERS[mine]}) imports a higher layer: {upward}"


def test_the_addons_and_the_app_stand_on_their_own():
    for module, imported in GRAPH.items():
        if module.startswith(("proxies", "sample_app")):
            assert not {m for m in imported if m.startswith("lab")}, f"{module} imports lab"
        if module.startswith(("sample_app", "cache_probe")):
            assert not {m for m in imported if m.startswith("proxies")}, f"{module} imports proxies"
        if module.startswith("cache_probe"):
            assert not {m for m in imported if m.startswith("lab")}, f"{module} imports lab"


def test_no_import_cycles():
    graph = {
        module: {m for m in imported if not module.startswith(m + ".")}
        for module, imported in GRAPH.items()
    }
    try:
        list(TopologicalSorter(graph).static_order())
    except CycleError as cycle:
        pytest.fail(f"import cycle: {' -> '.join(cycle.args[1])}")


def test_the_architecture_page_names_only_what_exists():
    text = ARCHITECTURE.read_text("utf-8")
    named = set(
        re.findall(r"`((?:lab|proxies|sample_app|tests|bench|scenarios|docs)/[\w./-]*)`", text)
    )
    assert named, "docs/architecture.md names no file"
    missing = sorted(path for path in named if not (PROJECT_ROOT / path).exists())
    assert not missing, f"docs/architecture.md names files that do not exist: {missing}"
    # Every layer folder has its row.
    for name in LAYERS:
        assert f"`lab/{name}/`" in text, f"docs/architecture.md has no row for lab/{name}/"


MODULE_LINES = 400
CLASS_LINES = 250


@pytest.mark.parametrize("module", sorted(modules()))
def test_modules_and_classes_stay_small(module):
    path = modules()[module]
    text = path.read_text("utf-8")
    assert len(text.splitlines()) <= MODULE_LINES, f"{path}: over {MODULE_LINES} lines"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ClassDef):
            size = node.end_lineno - node.lineno + 1
            assert size <= CLASS_LINES, f"{path}: class {node.name} is {size} lines"
