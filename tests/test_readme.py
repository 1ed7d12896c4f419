"""The README stays true: its quickstart targets exist, CI runs its test command, its tables are current."""
from __future__ import annotations

import re

from derain_utils.synth import rain


def test_quickstart_is_two_make_targets_that_exist(repo_root):
    readme = (repo_root / "README.md").read_text()
    block = re.search(r"## Quickstart\s+```bash\n(.*?)```", readme, re.S)
    assert block, "README has no Quickstart code block"
    commands = [ln.split("#")[0].strip() for ln in block.group(1).splitlines() if ln.strip()]
    assert commands == ["make monograph", "make test"]
    makefile = (repo_root / "Makefile").read_text()
    for target in ("monograph", "test"):
        assert re.search(rf"^{target}:", makefile, re.M), f"Makefile has no {target!r} target"


def test_every_declared_make_target_has_a_rule(repo_root):
    # was: `html` declared .PHONY with no rule ("make html" failed)
    makefile = (repo_root / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*)$", makefile, re.M).group(1).split()
    missing = [t for t in phony if not re.search(rf"^{re.escape(t)}:", makefile, re.M)]
    assert not missing, f"Makefile declares {missing} .PHONY but has no rule for them"
    assert re.search(r"^html: install\n\t.*monograph html --profile \$\(PROFILE\)", makefile, re.M)
    # a different torch build reinstalls: the install stamp depends on the remembered TORCH_SPEC
    assert re.search(r"^\$\(VENV\)/\.installed: pyproject\.toml \$\(VENV\)/\.torch-spec", makefile, re.M)


def test_ci_runs_the_readme_test_command(repo_root):
    ci = (repo_root / ".ci" / "run").read_text()
    assert re.search(r"^make test\b", ci, re.M)


def test_readme_rain_table_matches_the_presets(repo_root):
    readme = (repo_root / "README.md").read_text()
    assert rain.presets_markdown().strip() in readme, "README rain-preset table is stale: paste rain.presets_markdown()"


def test_readme_metric_table_matches_the_metric_table(repo_root):
    from derain_utils.measure import metric_table

    readme = (repo_root / "README.md").read_text()
    keys = [*metric_table.GROUPS["evaluation"], *metric_table.GROUPS["learning curve"], *metric_table.GROUPS["outcome"]]
    assert metric_table.markdown(keys) in readme, "README metric table is stale: paste metric_table.markdown(...)"


def test_readme_lists_every_subpackage_and_points_to_the_architecture(repo_root):
    """The README names the subpackages; ARCHITECTURE.md (checked by test_layering) names every module."""
    readme = (repo_root / "README.md").read_text()
    package = repo_root / "derain_utils"
    subpackages = sorted(p.name for p in package.iterdir() if (p / "__init__.py").is_file())
    missing = [f"{s}/" for s in subpackages if f"| `{s}/` |" not in readme]
    missing += [p.name for p in package.glob("*.py") if p.stem != "__init__" and f"| `{p.name}` |" not in readme]
    assert not missing, f"README's package table lacks {missing}"
    import derain_utils

    assert "ARCHITECTURE.md" in readme and "ARCHITECTURE.md" in derain_utils.__doc__
    assert (repo_root / "ARCHITECTURE.md").is_file()
