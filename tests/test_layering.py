"""The map cannot go stale: ``ARCHITECTURE.md`` names every module of the package, and imports flow one way.

The layers are read from the map itself (its ``## The package`` section: ``store.py``, then one
``### `name/``` heading per subpackage, in the order of the data flow), not from a list kept here. A
module may import the store, its own subpackage and the subpackages above it in the map; a module
that the map does not name, or a row of the map with no module behind it, fails a test.
"""
from __future__ import annotations

import ast
import re
import statistics
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "derain_utils"
MAX_LINES = 1000

_HEADING = re.compile(r"^### `(?P<name>[a-z_]+)(?P<kind>/|\.py)`", re.M)
_ROW = re.compile(r"^\| `(?P<module>[a-z_]+)` \|", re.M)


def read_map(guide: str) -> list[tuple[str, list[str]]]:
    """``[(layer, [modules])]`` from the map's ``## The package`` section, lowest layer first.

    A ``### `store.py``` heading is a top-level module (its layer is its own name); a
    ``### `synth/``` heading a subpackage whose modules are the backticked first cells of the
    table rows under it.
    """
    start = guide.find("\n## The package")
    if start < 0:
        raise ValueError("ARCHITECTURE.md has no '## The package' section")
    end = guide.find("\n## ", start + 1)
    section = guide[start:end if end > 0 else None]
    headings = list(_HEADING.finditer(section))
    if not headings:
        raise ValueError("'## The package' holds no ### `name/` or ### `name.py` headings")
    layers = []
    for i, h in enumerate(headings):
        body = section[h.end():headings[i + 1].start() if i + 1 < len(headings) else None]
        layers.append((h["name"], [m["module"] for m in _ROW.finditer(body)]))
    return layers


def package_modules(package: Path) -> set[tuple[str, str]]:
    """``{(layer, module)}`` on disk: top-level modules are their own layer, subpackage modules their folder's."""
    found = {(p.stem, p.stem) for p in package.glob("*.py") if p.stem != "__init__"}
    for folder in sorted(p for p in package.iterdir() if p.is_dir() and p.name != "__pycache__"):
        found |= {(folder.name, p.stem) for p in folder.glob("*.py") if p.stem != "__init__"}
    return found


def map_problems(layers: list[tuple[str, list[str]]], package: Path) -> list[str]:
    """What the map and the tree disagree on, one line each (empty when they agree)."""
    named = {(layer, m) for layer, mods in layers for m in mods}
    on_disk = package_modules(package)
    problems = [f"{_path(layer, m)} exists but ARCHITECTURE.md does not name it"
                for layer, m in sorted(on_disk - named)]
    problems += [f"ARCHITECTURE.md names {_path(layer, m)}, which does not exist"
                 for layer, m in sorted(named - on_disk)]
    for layer, mods in layers:
        folder = package / layer
        if folder.is_dir() and not (folder / "__init__.py").is_file():
            problems.append(f"{layer}/ has no __init__.py (the map names it as a subpackage)")
        dup = sorted({m for m in mods if mods.count(m) > 1})
        if dup:
            problems.append(f"ARCHITECTURE.md names {dup} twice under {layer}")
    return problems


def _path(layer: str, module: str) -> str:
    return f"derain_utils/{module}.py" if layer == module else f"derain_utils/{layer}/{module}.py"


def imported_layers(path: Path, layer_names: set[str]) -> set[str]:
    """The layers (``store`` or a subpackage) a module imports from, lazy imports included."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.level:
            raise ValueError(f"{path}: relative import (write `from derain_utils.<layer> import ...`)")
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "derain_utils":
                targets = [a.name for a in node.names]
            elif node.module.startswith("derain_utils."):
                targets = [node.module.split(".")[1]]
        elif isinstance(node, ast.Import):
            targets = [a.name.split(".")[1] for a in node.names if a.name.startswith("derain_utils.")]
        out |= {t for t in targets if t in layer_names}
    return out


def upward_imports(layers: list[tuple[str, list[str]]], package: Path) -> list[str]:
    """Every import of a module from a layer below it in the map (empty when imports flow one way)."""
    level = {name: i for i, (name, _) in enumerate(layers)}
    problems = []
    for layer, mods in layers:
        for m in mods:
            path = package / f"{m}.py" if layer == m and not (package / layer).is_dir() else package / layer / f"{m}.py"
            if not path.is_file():
                continue
            up = sorted(t for t in imported_layers(path, set(level)) if level[t] > level[layer])
            if up:
                problems.append(f"{layer}/{m} imports from {up}, which the map puts below {layer}")
    return problems


def stated_median(guide: str) -> int:
    m = re.search(r"median module size is\s+(\d+)\s+lines", guide)
    if not m:
        raise ValueError("ARCHITECTURE.md does not state 'median module size is N lines'")
    return int(m.group(1))


@pytest.fixture(scope="module")
def guide(repo_root) -> str:
    return (repo_root / "ARCHITECTURE.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def layers(guide):
    return read_map(guide)


# ------------------------------------------------------------------------------------------------ the real tree


def test_the_map_names_every_module_and_nothing_else(layers):
    assert not map_problems(layers, PACKAGE), "\n".join(map_problems(layers, PACKAGE))


def test_the_store_is_the_bottom_layer_and_every_other_layer_a_subpackage(layers):
    assert layers[0] == ("store", ["store"])
    assert all((PACKAGE / name / "__init__.py").is_file() for name, _ in layers[1:])


def test_imports_flow_down_the_layers(layers):
    assert not upward_imports(layers, PACKAGE), "\n".join(upward_imports(layers, PACKAGE))


def test_the_store_imports_nothing_and_every_writer_uses_it(layers):
    """Every module that writes files reaches the disk through the store, which imports no other module."""
    assert imported_layers(PACKAGE / "store.py", {name for name, _ in layers}) == set()
    for rel in ("lab/experiments.py", "book/runs.py", "stats/verdict.py", "book/report.py", "book/monograph.py",
                "book/notebook.py"):
        src = (PACKAGE / rel).read_text(encoding="utf-8")
        assert re.search(r"^from derain_utils import .*\bstore\b", src, re.M), rel


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_longer_than_a_sitting(path):
    n = len(path.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(PACKAGE.parent)} has {n} lines (> {MAX_LINES}): split its ideas"


def test_the_stated_median_module_size_is_current(guide):
    sizes = [len(p.read_text(encoding="utf-8").splitlines()) for p in PACKAGE.rglob("*.py") if p.stem != "__init__"]
    actual = statistics.median(sizes)
    stated = stated_median(guide)
    assert abs(stated - actual) <= 0.1 * actual, (f"ARCHITECTURE.md says the median module size is {stated} lines; "
                                                   f"it is {actual:.0f} over {len(sizes)} modules: update the map")


# ------------------------------------------------------------------------------------------------ the checks bite

_TOY_MAP = """# Architecture

## The package

### `store.py`: the bottom
| module | what |
|---|---|
| `store` | files |

### `synth/`: inputs
| module | what |
|---|---|
| `rain` | rain |

### `book/`: readers
| module | what |
|---|---|
| `notebook` | notebooks |

## House rules
"""


def _toy_tree(root: Path) -> Path:
    pkg = root / "derain_utils"
    for rel, text in {"__init__.py": "", "store.py": "import os\n", "synth/__init__.py": "",
                      "synth/rain.py": "from derain_utils import store\n", "book/__init__.py": "",
                      "book/notebook.py": "from derain_utils.synth import rain\nfrom derain_utils import store\n",
                      }.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    return pkg


def test_the_toy_tree_agrees_with_its_map(tmp_path):
    pkg, layers = _toy_tree(tmp_path), read_map(_TOY_MAP)
    assert layers == [("store", ["store"]), ("synth", ["rain"]), ("book", ["notebook"])]
    assert map_problems(layers, pkg) == [] and upward_imports(layers, pkg) == []


def test_a_stray_module_fails_the_map(tmp_path):
    pkg = _toy_tree(tmp_path)
    (pkg / "synth" / "clouds.py").write_text("")
    (pkg / "helpers.py").write_text("")
    problems = map_problems(read_map(_TOY_MAP), pkg)
    assert any("synth/clouds.py exists but ARCHITECTURE.md does not name it" in p for p in problems)
    assert any("helpers.py exists but ARCHITECTURE.md does not name it" in p for p in problems)


def test_a_row_without_a_module_fails_the_map(tmp_path):
    pkg = _toy_tree(tmp_path)
    (pkg / "synth" / "rain.py").unlink()
    assert map_problems(read_map(_TOY_MAP), pkg) == [
        "ARCHITECTURE.md names derain_utils/synth/rain.py, which does not exist"]


def test_an_upward_import_fails_the_layering(tmp_path):
    pkg = _toy_tree(tmp_path)
    (pkg / "synth" / "rain.py").write_text("def f():\n    from derain_utils.book import notebook  # lazy counts too\n")
    assert upward_imports(read_map(_TOY_MAP), pkg) == [
        "synth/rain imports from ['book'], which the map puts below synth"]


def test_a_map_without_its_section_or_median_is_refused():
    with pytest.raises(ValueError, match="The package"):
        read_map("# Architecture\n\n## Layout\n")
    with pytest.raises(ValueError, match="median module size"):
        stated_median(_TOY_MAP)
