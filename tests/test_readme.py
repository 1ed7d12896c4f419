"""The README stays true: a front page under 12 KB, its quickstart targets exist, CI runs its test command, the
tables of docs/method.md are current, and every link of the README and the docs resolves."""
from __future__ import annotations

import re

import pytest

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
    assert re.search(r"^html: install\n\t.*monograph html \$\(if .*--profile \$\(PROFILE\)", makefile, re.M)
    # a different torch build reinstalls: the install stamp depends on the remembered TORCH_SPEC
    assert re.search(r"^\$\(VENV\)/\.installed: pyproject\.toml \$\(VENV\)/\.torch-spec", makefile, re.M)


def test_ci_runs_the_readme_test_command_and_the_linter(repo_root):
    ci = (repo_root / ".ci" / "run").read_text()
    assert re.search(r"^make test\b", ci, re.M) and re.search(r"^make lint\b", ci, re.M)
    makefile = (repo_root / "Makefile").read_text()
    assert re.search(r"^lint: install\n\t\$\(PY\) -m ruff check derain_utils tests notebooks$", makefile, re.M)
    assert re.search(r"^smoke: install\n\t.*monograph run --profile smoke", makefile, re.M)


def test_the_tree_passes_the_linter(repo_root):
    """What CI's `make lint` checks, in the test run too (ruff's rules are in pyproject.toml)."""
    import subprocess
    import sys

    if subprocess.run([sys.executable, "-m", "ruff", "--version"], capture_output=True).returncode != 0:
        pytest.skip("ruff is not installed (pip install -e '.[dev]' installs it)")
    res = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "derain_utils", "tests", "notebooks"],
                         cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:]


def test_method_rain_table_matches_the_presets(repo_root):
    method = (repo_root / "docs" / "method.md").read_text()
    assert rain.presets_markdown().strip() in method, "docs/method.md rain table is stale: paste rain.presets_markdown()"


def test_method_metric_table_matches_the_metric_table(repo_root):
    from derain_utils.measure import metric_table

    method = (repo_root / "docs" / "method.md").read_text()
    keys = [*metric_table.GROUPS["evaluation"], *metric_table.GROUPS["learning curve"], *metric_table.GROUPS["outcome"]]
    assert metric_table.markdown(keys) in method, "docs/method.md metric table is stale: paste metric_table.markdown()"


def test_readme_is_a_front_page(repo_root):
    """Under 12 KB, the quickstart near the top, one bottom line per notebook, and every docs page linked."""
    readme = (repo_root / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode("utf-8")) <= 12_000, f"README.md is {len(readme.encode())} bytes: move detail to docs/"
    assert readme.index("## Quickstart") < len(readme) // 2
    bottom = readme[readme.index("## Bottom line"):]
    assert all(f"**0{k}," in bottom for k in range(1, 5))
    pages = sorted(p.relative_to(repo_root).as_posix() for p in (repo_root / "docs").glob("*.md"))
    assert [p for p in pages if f"]({p})" not in readme] == [], "a docs page the README does not link"


def _slug(heading: str) -> str:
    """GitHub's anchor of a markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())  # underscores stay: `## 01_set_size` is #01_set_size
    return re.sub(r"[^\w\- ]", "", text, flags=re.U).replace(" ", "-")


def _links(md: str) -> list[str]:
    body = re.sub(r"```.*?```", "", md, flags=re.S)  # code blocks hold no links
    return re.findall(r"\]\(([^)\s]+)\)", body)


def test_every_link_of_the_readme_and_the_docs_resolves(repo_root):
    docs = [repo_root / "README.md", repo_root / "ARCHITECTURE.md", repo_root / "data" / "README.md",
            *sorted((repo_root / "docs").glob("*.md"))]
    broken = []
    for doc in docs:
        for target in _links(doc.read_text(encoding="utf-8")):
            if re.match(r"^[a-z]+:", target):
                continue  # a web address: not checked offline
            path, _, anchor = target.partition("#")
            dest = (doc.parent / path).resolve() if path else doc
            if not dest.exists():
                broken.append(f"{doc.relative_to(repo_root)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md":
                slugs = {_slug(h) for h in re.findall(r"^#+ (.*)$", dest.read_text(encoding="utf-8"), re.M)}
                if anchor not in slugs:
                    broken.append(f"{doc.relative_to(repo_root)}: {target} (no heading #{anchor})")
    assert not broken, "\n".join(broken)


def test_the_link_checker_finds_broken_links(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A page\n\n## Two words\n")
    (tmp_path / "README.md").write_text("[ok](docs/a.md#two-words) [gone](docs/b.md) [bad](docs/a.md#nope)\n")
    (tmp_path / "ARCHITECTURE.md").write_text("")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "README.md").write_text("```\n[not a link](x.md)\n```\n")
    with pytest.raises(AssertionError, match=r"docs/b\.md \(no such file\)[\s\S]*#nope \(no heading"):
        test_every_link_of_the_readme_and_the_docs_resolves(tmp_path)


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
