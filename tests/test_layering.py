"""Imports flow one way (CONVENTIONS.md): nothing below imports anything above it."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "derain_utils"

# lowest layer first; a module may import modules of its own layer or of lower ones
LAYERS = [
    {"store", "metric_table"},
    {"rain", "data", "runs"},
    {"backgrounds", "metrics"},
    {"complexity", "realdata"},
    {"models"},
    {"training"},
    {"baselines"},
    {"outcome"},
    {"inference", "power"},
    {"experiments"},
    {"profiles", "sweeps", "dynamics", "bench", "designs"},
    {"probes"},
    {"verdict", "plotting"},
    {"widgets", "report", "notebook", "monograph"},
]
LEVEL = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _package_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "derain_utils":
                names.update(a.name for a in node.names)
            elif node.module.startswith("derain_utils."):
                names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names.update(a.name.split(".")[1] for a in node.names if a.name.startswith("derain_utils."))
    return names - {"__version__"}


MODULES = sorted(p for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def test_every_module_has_a_layer():
    missing = sorted(p.stem for p in MODULES if p.stem not in LEVEL)
    assert not missing, f"add these modules to LAYERS in {__file__}: {missing}"


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_imports_flow_downwards(path: Path):
    if path.stem not in LEVEL:
        pytest.skip("no layer assigned (reported by test_every_module_has_a_layer)")
    upward = sorted(m for m in _package_imports(path) if LEVEL.get(m, -1) > LEVEL[path.stem])
    assert not upward, f"{path.stem} imports modules above it: {upward}"


def test_the_checker_sees_imports():
    assert {"experiments", "store"} <= _package_imports(PACKAGE / "sweeps.py")


def test_the_store_is_the_bottom_layer():
    """Every module that writes files reaches the disk through the store, which imports no other module."""
    assert _package_imports(PACKAGE / "store.py") == set()
    for name in ("experiments", "runs", "verdict", "report", "monograph", "notebook"):
        assert "store" in _package_imports(PACKAGE / f"{name}.py"), name


def test_architecture_guide_lists_every_layer(repo_root):
    guide = (repo_root / "ARCHITECTURE.md").read_text(encoding="utf-8")
    missing = sorted(m for layer in LAYERS for m in layer if f"`{m}`" not in guide)
    assert not missing, f"ARCHITECTURE.md does not mention {missing}"
