"""The conda environment file and pyproject.toml must name the same packages (the runtime ones, the notebook
tools of the `notebooks` extra and the dev tools), each once; environment.yml is read as YAML."""
from __future__ import annotations

import re
import tomllib

# conda-forge names that differ from their PyPI names
CONDA_TO_PYPI = {"pytorch": "torch"}
NOT_PACKAGES = {"python", "pip"}


def _name(requirement: str) -> str:
    name = re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0]
    return name.lower().replace("_", "-")


def _pyproject_lists(repo_root):
    project = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return ([_name(r) for r in project["dependencies"]] + [_name(r) for r in extras["notebooks"]],
            [_name(r) for r in extras["dev"]])


def _pyproject(repo_root):
    runtime, dev = _pyproject_lists(repo_root)
    return set(runtime), set(dev)


def _environment_list(repo_root):
    """The conda packages of environment.yml, read as YAML (its `pip:` entry, the project itself, left out)."""
    import yaml

    env = yaml.safe_load((repo_root / "environment.yml").read_text())
    names = [CONDA_TO_PYPI.get(_name(d), _name(d)) for d in env["dependencies"] if isinstance(d, str)]
    return [n for n in names if n not in NOT_PACKAGES]


def _environment(repo_root):
    return set(_environment_list(repo_root))


def test_no_package_is_listed_twice(repo_root):
    # was: filelock twice in pyproject.toml and twice in environment.yml, unnoticed (the checks used sets)
    runtime, dev = _pyproject_lists(repo_root)
    for where, names in (("pyproject.toml dependencies", runtime), ("pyproject.toml [dev]", dev),
                         ("environment.yml", _environment_list(repo_root))):
        twice = sorted({n for n in names if names.count(n) > 1})
        assert not twice, f"{where} lists {twice} more than once"


def test_environment_lists_the_runtime_packages_of_pyproject(repo_root):
    runtime, dev = _pyproject(repo_root)
    env = _environment(repo_root)
    missing = runtime - env
    assert not missing, f"environment.yml lacks runtime packages named in pyproject.toml: {sorted(missing)}"
    extra = env - runtime - dev
    assert not extra, f"environment.yml names packages pyproject.toml does not: {sorted(extra)}"


def test_every_environment_line_says_what_needs_it(repo_root):
    for line in (repo_root / "environment.yml").read_text().splitlines():
        if re.match(r"^  - [A-Za-z]", line) and not line.strip().startswith("- pip"):
            assert "#" in line, f"environment.yml line has no comment on what needs it: {line.strip()!r}"


def test_parser_sees_the_packages(repo_root):
    # guards the test above against a parser that silently finds nothing
    env = _environment(repo_root)
    assert {"torch", "numpy", "papermill", "ruff"} <= env and "python" not in env


def test_the_library_imports_without_the_notebook_tools(repo_root):
    """The notebook tools are an extra: every module but the widgets imports without them."""
    import subprocess
    import sys

    code = """
import importlib, pkgutil, sys
TOOLS = {"papermill", "nbformat", "nbconvert", "nbclient", "jupytext", "ipywidgets", "jupyterlab", "ipykernel",
         "IPython", "jupyter_client"}
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in TOOLS:
            raise ImportError(f"blocked: {name}")
sys.meta_path.insert(0, Block())
import derain_utils
done = [importlib.import_module(m.name).__name__ for m in pkgutil.walk_packages(derain_utils.__path__, "derain_utils.")
        if m.name != "derain_utils.book.widgets"]
assert not [t for t in TOOLS if t in sys.modules], [t for t in TOOLS if t in sys.modules]
print(len(done))
"""
    res = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert int(res.stdout.strip()) > 40


def test_makefile_installs_torch_from_the_cpu_index_only_when_asked(repo_root):
    """The default installs torch from the configured index (this machine, CI); CPU_ONLY=1 or
    TORCH_INDEX=... selects PyTorch's CPU wheels for CPU-only machines on the public PyPI."""
    import shutil
    import subprocess

    import pytest

    if shutil.which("make") is None:
        pytest.skip("make is not installed")

    def torch_line(*args):
        res = subprocess.run(["make", "-n", "-B", ".venv/.installed", *args], cwd=repo_root, capture_output=True,
                             text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        return next(line for line in res.stdout.splitlines() if "pip install" in line and "torch" in line)

    assert "--index-url" not in torch_line() and "download.pytorch.org" not in torch_line()
    assert "--index-url https://download.pytorch.org/whl/cpu" in torch_line("CPU_ONLY=1")
    assert "--index-url https://example.org/simple" in torch_line("TORCH_INDEX=https://example.org/simple")
    assert '"torch==2.13.0"' in torch_line("CPU_ONLY=1")  # the same pinned version


def test_every_command_line_tool_has_a_console_script(repo_root):
    # was: five `python -m` tools but three console scripts
    import importlib

    scripts = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]["scripts"]
    targets = {}
    for name, target in scripts.items():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), f"{name}: {target} is not callable"
        targets[module] = name
    tools = {".".join(p.relative_to(repo_root).with_suffix("").parts)
             for p in (repo_root / "derain_utils").rglob("*.py") if 'if __name__ == "__main__"' in p.read_text()}
    assert tools and tools <= set(targets), f"python -m tools without a console script: {sorted(tools - set(targets))}"


def test_license_and_citation_exist_and_agree(repo_root):
    """LICENSE, CITATION.cff (this project and the study it reproduces) and the package metadata say the same."""
    import tomllib

    import yaml

    assert (repo_root / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")
    cff = yaml.safe_load((repo_root / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "MIT" and cff["type"] == "software"
    paper = cff["preferred-citation"]
    assert paper["title"].startswith("Networks are Slacking Off") and paper["year"] == 2023
    assert [a["family-names"] for a in paper["authors"]] == ["Gu", "Ma", "Kong", "Qiao", "Dong"]
    assert "2305.15134" in paper["url"]
    meta = tomllib.loads((repo_root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert meta["license"] == cff["license"] and meta["license-files"] == ["LICENSE"]
    assert meta["version"] == cff["version"]
