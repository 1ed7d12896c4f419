"""The papermill runner, exercised on tiny notebooks generated here (independent of the monograph's own).

Executing a notebook starts a real kernel (a few seconds each); the executing tests share
module-scoped runs, so the file executes five notebooks in all.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import jupytext
import nbformat
import pandas as pd
import pytest

from derain_utils.book import monograph, runner
from derain_utils.book.runs import latest_run
from derain_utils.stats import verdict

# --------------------------------------------------------------------------------------
# tiny notebooks (jupytext percent format -> .ipynb)
# --------------------------------------------------------------------------------------
HEADER = """\
# %% [markdown]
# # {num} · {title}
#
# **Finding.** {finding}
# It continues on a second line.
#
# Some other paragraph.

# %%
import time

import numpy as np
import pandas as pd

from derain_utils.book import notebook, runs
from derain_utils.stats import inference, verdict

T0 = time.perf_counter()
"""

ALPHA = HEADER + """
# %% tags=["parameters"]
PROFILE: str = "quick"  # smoke, quick or paper
RUN_DIR: str = ""  # output folder; empty: a fresh one under runs/
SEED: int = 0  # random seed of the fake experiment
SIZES: list = [1, 2, 3]  # training-set sizes

# %%
NB = notebook.start("{stem}", "{finding}", PROFILE, RUN_DIR, t0=T0, params={{"SEED": SEED, "SIZES": SIZES}})
rng = np.random.default_rng(SEED)
df = pd.DataFrame([{{"seed": s, "n": n, "y": -float(n) + 0.01 * rng.normal()}} for s in range(8) for n in SIZES])
decl = inference.Declaration("{stem}", "within_seed_trend", "negative", presets=("small",))
res = inference.within_seed_trend(df.rename(columns={{"y": "excess_removal"}}), "n", "excess_removal",
                                  n_permutations=2000, n_boot=500)
record = inference.decide(res, decl, profile="fixture")  # not "smoke": a smoke run is never more than plumbing
_ = notebook.finish(NB, df, ["seed", "n", "y"], record=record, summary="y falls with n.", sizes=SIZES, seed=SEED)
"""

BETA = HEADER + """
# %% tags=["parameters"]
PROFILE: str = "quick"  # smoke, quick or paper
RUN_DIR: str = ""  # output folder
MODE: str = "slow"  # how to do it

# %%
folder = runs.resolve_run_dir(RUN_DIR, "{stem}", PROFILE)
runs.write_results(folder, pd.DataFrame({{"mode": [MODE], "value": [0.5]}}))
verdict.Verdict.from_dict(dict(
    notebook="{stem}", finding="{finding}", reproduced=False, verdict="inconclusive", p_value=0.4,
    primary_outcome="psnr_gain_db", primary_preset="small", n_models=2, statistic="psnr_gain_db",
    effect=0.25, ci95=[-0.5, 1.0], n_seeds=2, profile=PROFILE, summary="No clear gain.",
    wall_s=time.perf_counter() - T0, mode=MODE,
)).write(folder)
"""

BOOM = HEADER + """
# %% tags=["parameters"]
PROFILE: str = "quick"  # smoke, quick or paper
RUN_DIR: str = ""  # output folder

# %%
raise ValueError("boom: the fake experiment diverged")
"""


def _write_notebook(folder: Path, stem: str, template: str, title: str, finding: str) -> Path:
    text = template.format(num=stem[:2], title=title, finding=finding, stem=stem)
    nb = jupytext.reads(text, fmt="py:percent")
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / f"{stem}.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def good_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("notebooks_good")
    _write_notebook(d, "01_alpha", ALPHA, "Alpha", "Bigger sets push y down.")
    _write_notebook(d, "02_beta", BETA, "Beta", "Beta mode gains PSNR.")
    (d / "README.ipynb").write_text("not a monograph notebook")  # must be ignored by discovery
    return d


@pytest.fixture(scope="module")
def failing_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("notebooks_failing")
    _write_notebook(d, "01_alpha", ALPHA, "Alpha", "Bigger sets push y down.")
    _write_notebook(d, "02_boom", BOOM, "Boom", "This one crashes.")
    _write_notebook(d, "03_after", BETA, "After", "Never reached.")
    return d


def _run(argv: list[str]) -> tuple[int, str, str]:
    """main(argv) with stdout/stderr captured (works in module-scoped fixtures too)."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = monograph.main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def good_run(good_dir, tmp_path_factory) -> SimpleNamespace:
    runs = tmp_path_factory.mktemp("runs_good")
    code, out, err = _run(["run", "--notebooks-dir", str(good_dir), "--runs-dir", str(runs), "--profile", "smoke",
                           "--param", "SIZES=[2, 4, 8, 16]", "--param", "MODE=fast", "--html", "--no-progress"])
    return SimpleNamespace(code=code, out=out, err=err, runs=runs)


def _folders(runs: Path, profile: str, stem: str) -> list[Path]:
    parent = runs / profile / stem
    return sorted(p for p in parent.iterdir() if p.is_dir() and not p.is_symlink()) if parent.is_dir() else []


# --------------------------------------------------------------------------------------
# full runs (real kernels)
# --------------------------------------------------------------------------------------
@pytest.mark.notebook
def test_run_writes_fresh_folders_with_outputs(good_run):
    assert good_run.code == 0, good_run.err
    for stem in ("01_alpha", "02_beta"):
        (folder,) = _folders(good_run.runs, "smoke", stem)
        assert latest_run(stem, "smoke", good_run.runs) == folder
        for name in (f"{stem}.ipynb", "verdict.json", "results.csv", "runner.json", f"{stem}.html"):
            assert (folder / name).is_file(), name
        runner = json.loads((folder / "runner.json").read_text())
        assert runner["status"] == "completed" and runner["parameters"]["RUN_DIR"] == str(folder)
        assert runner["parameters"]["PROFILE"] == "smoke"
        v = verdict.read_verdict(folder)
        assert v.profile == "smoke" and v.notebook == stem
    assert not (good_run.runs / "smoke" / "README").exists()


@pytest.mark.notebook
def test_param_values_reach_only_the_notebooks_that_declare_them(good_run):
    (alpha,) = _folders(good_run.runs, "smoke", "01_alpha")
    (beta,) = _folders(good_run.runs, "smoke", "02_beta")
    # the list went through --param SIZES=[2, 4, 8, 16] as a real list
    assert sorted(pd.read_csv(alpha / "results.csv")["n"].unique()) == [2, 4, 8, 16]
    assert verdict.read_verdict(alpha).extra["sizes"] == [2, 4, 8, 16]
    assert verdict.read_verdict(beta).extra["mode"] == "fast"
    injected = [c for c in nbformat.read(beta / "02_beta.ipynb", as_version=4).cells
                if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "SIZES" not in injected[0].source and "MODE = \"fast\"" in injected[0].source


@pytest.mark.notebook
def test_summary_table_reports_each_verdict(good_run):
    out = good_run.out
    alpha = verdict.read_verdict(latest_run("01_alpha", "smoke", good_run.runs))
    beta = verdict.read_verdict(latest_run("02_beta", "smoke", good_run.runs))
    assert alpha.reproduced and alpha.effect < -0.9  # constructed: y = -n + tiny noise
    assert not beta.reproduced
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith(("01_alpha", "02_beta"))}
    assert "REPRODUCED" in lines["01_alpha"] and "NOT REPRODUCED" not in lines["01_alpha"]
    assert alpha.result in lines["01_alpha"]
    assert "INCONCLUSIVE" in lines["02_beta"] and "psnr_gain_db = 0.250 [-0.500, 1.000]" in lines["02_beta"]
    summary = pd.read_csv(good_run.runs / "smoke" / "summary.csv")
    assert list(summary["notebook"]) == ["01_alpha", "02_beta"]
    assert list(summary["verdict"]) == ["REPRODUCED", "INCONCLUSIVE"]
    assert summary.loc[1, "finding"] == "Beta mode gains PSNR."


@pytest.mark.notebook
def test_html_index_links_the_exported_notebooks(good_run):
    index = good_run.runs / "smoke" / "index.html"
    page = index.read_text()
    for stem in ("01_alpha", "02_beta"):
        folder = latest_run(stem, "smoke", good_run.runs)
        rel = os.path.relpath(folder / f"{stem}.html", index.parent)
        assert f'href="{rel}"' in page
        assert (index.parent / rel).read_text().lstrip().lower().startswith("<!doctype html")
    assert "INCONCLUSIVE" in page and "maybe" in page and "Bigger sets push y down." in page
    alpha = (latest_run("01_alpha", "smoke", good_run.runs) / "01_alpha.html").read_text()
    assert re.search(r"<title>01 · Alpha</title>", alpha)  # the notebook's title, not "Notebook"


def test_html_defaults_to_the_profile_with_the_newest_runs(good_run, good_dir, tmp_path):
    code, out, err = _run(["html", "--notebooks-dir", str(good_dir), "--runs-dir", str(good_run.runs), "--no-input"])
    assert code == 0, err
    assert out.startswith("profile smoke: the newest completed runs")
    assert monograph.newest_profile(good_run.runs) == "smoke" and monograph.newest_profile(tmp_path) is None
    code, _, err = _run(["html", "--notebooks-dir", str(good_dir), "--runs-dir", str(tmp_path)])
    assert code == 2 and "no completed runs" in err


@pytest.mark.notebook
def test_rerun_never_overwrites_and_moves_latest(good_run, good_dir, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(good_run.runs, runs, symlinks=True)
    (first,) = _folders(runs, "smoke", "01_alpha")
    before = (first / "verdict.json").read_text()
    code, out, err = _run(["run", "--notebooks-dir", str(good_dir), "--runs-dir", str(runs), "--profile", "smoke",
                           "--only", "1", "--no-progress"])
    assert code == 0, err
    folders = _folders(runs, "smoke", "01_alpha")
    assert len(folders) == 2 and first in folders
    newer = next(f for f in folders if f != first)
    assert latest_run("01_alpha", "smoke", runs) == newer
    assert (first / "verdict.json").read_text() == before  # the old run is untouched
    # defaults this time: SIZES from the parameters cell
    assert sorted(pd.read_csv(newer / "results.csv")["n"].unique()) == [1, 2, 3]
    assert len(_folders(runs, "smoke", "02_beta")) == 1  # --only kept 02 out
    assert "02_beta" not in out and "01_alpha" in out


@pytest.mark.notebook
def test_failing_notebook_stops_the_run_and_keeps_earlier_results(failing_dir, tmp_path):
    runs = tmp_path / "runs"
    code, out, err = _run(["run", "--notebooks-dir", str(failing_dir), "--runs-dir", str(runs),
                           "--profile", "smoke", "--no-progress"])
    assert code == 1
    assert "ValueError" in err and "boom: the fake experiment diverged" in err
    (boom,) = _folders(runs, "smoke", "02_boom")
    partial = boom / "02_boom.ipynb"
    assert f"partially executed notebook: {partial}" in err and partial.is_file()
    assert json.loads((boom / "runner.json").read_text())["status"] == "failed"
    assert latest_run("02_boom", "smoke", runs) is None  # latest only names completed runs
    (alpha,) = _folders(runs, "smoke", "01_alpha")
    assert verdict.read_verdict(alpha).reproduced
    assert _folders(runs, "smoke", "03_after") == []
    rows = {ln.split()[0]: ln for ln in out.splitlines() if ln[:3] in ("01_", "02_", "03_")}
    assert "REPRODUCED" in rows["01_alpha"] and "FAILED" in rows["02_boom"] and "not run" in rows["03_after"]


# --------------------------------------------------------------------------------------
# no kernel needed
# --------------------------------------------------------------------------------------
def test_unknown_parameter_fails_before_anything_runs(good_dir, tmp_path):
    runs = tmp_path / "runs"
    code, out, err = _run(["run", "--notebooks-dir", str(good_dir), "--runs-dir", str(runs), "--profile", "smoke",
                           "--param", "STEPS=10"])
    assert code == 2
    assert "unknown parameter STEPS" in err and "01_alpha" in err and "02_beta" in err
    assert "SEED, SIZES" in err and "MODE" in err  # the valid names are listed
    assert not runs.exists()
    # a parameter of a notebook that is not selected is unknown too
    code, _, err = _run(["run", "--notebooks-dir", str(good_dir), "--runs-dir", str(runs), "--only", "02",
                         "--param", "SIZES=[1, 2]"])
    assert code == 2 and "unknown parameter SIZES" in err and not runs.exists()


def test_a_model_cache_that_is_a_file_is_one_line_before_any_kernel(good_dir, tmp_path, monkeypatch):
    # was: every notebook started, and the first one failed with a 12-run RuntimeError traceback naming the file
    monkeypatch.setenv("DERAIN_RUNS", str(tmp_path))
    (tmp_path / "cache").write_text("not a folder")
    runs = tmp_path / "runs"
    code, out, err = _run(["run", "--notebooks-dir", str(good_dir), "--runs-dir", str(runs), "--profile", "smoke"])
    assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert f"model cache ($DERAIN_RUNS/cache or <repo>/runs/cache) {str(tmp_path / 'cache')!r} is a file" in err
    assert not runs.exists()


@pytest.mark.parametrize("only, param, message", [
    ("01", "STEPS=-5", r"01_set_size: STEPS=-5: steps must be an integer >= 1, got -5"),
    ("01", "N_LIST=[8, 2]", r"01_set_size: N_LIST=\[8, 2\]: n_list must be ascending"),
    ("01", "N_LIST=[0, 2]", r"01_set_size: N_LIST=\[0, 2\]: n_list entries must be >= 1"),
    # was: minutes and 1.2 GB in one cell with no word (issue 23)
    ("01", "N_LIST=[2, 100000]", r"01_set_size: N_LIST=\[2, 100000\]: n_list: N = 100000 training tiles of 32 px "
                                 r"would hold 1.14 GiB .* the largest N at this tile is 87381"),
    ("02", "N_TRAIN=200000", r"02_category_complexity: N_TRAIN=200000: category_n: N = 200000 .* GiB"),
    ("04", "SEEDS=[0, 0]", r"04_real_rain: SEEDS=\[0, 0\]: seeds has repeated values"),
    ("02", "N_TRAIN=-1", r"02_category_complexity: N_TRAIN=-1: category_n must be"),
    ("01", "BACKGROUND=x", r"01_set_size: source='x' is not a category"),
    ("01", "DATA_DIR=/no/such/folder", r"01_set_size: data_dir='/no/such/folder' is not an existing folder"),
])
def test_bad_notebook_parameters_fail_in_the_runner_before_any_kernel(tmp_path, only, param, message):
    # was: one clear line inside the kernel, then a 40-140-line traceback and a failed run folder
    runs = tmp_path / "runs"
    argv = ["run", "--runs-dir", str(runs), "--profile", "smoke", "--only", only, "--param", param]
    code, out, err = _run(argv)
    assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err, err
    assert re.search(message, err), err
    assert not runs.exists()


def test_the_runner_reads_each_notebooks_profile_knobs():
    knobs = {i.stem: i.profile_knobs for i in monograph._load_infos(None)}
    assert knobs["01_set_size"] == {"archs": "ARCHS", "n_list": "N_LIST", "seeds": "SEEDS", "steps": "STEPS",
                                    "workers": "WORKERS", "gray": "GRAY", "ablation": "ABLATION", "ladder": "LADDER"}
    assert knobs["02_category_complexity"]["category_n"] == "N_TRAIN"
    assert knobs["03_decoupled_metrics"] == {"workers": "WORKERS", "dynamics_points": "POINTS"}
    assert set(knobs["04_real_rain"]) == {"n_list", "seeds", "steps", "workers"}
    for info in monograph._load_infos(None):  # every notebook's defaults pass
        monograph.preflight(info, "smoke", {})


def test_bad_environment_fails_in_the_runner_before_any_kernel(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    monkeypatch.setenv("DERAIN_PRECISION", "fp8")
    code, _, err = _run(["run", "--runs-dir", str(runs), "--profile", "smoke", "--only", "01"])
    assert code == 2 and "$DERAIN_PRECISION must be 'auto', 'fp32' or 'bf16', got 'fp8'" in err
    monkeypatch.delenv("DERAIN_PRECISION")
    a_file = tmp_path / "data.txt"
    a_file.write_text("x")
    monkeypatch.setenv("DERAIN_DATA", str(a_file))
    code, _, err = _run(["run", "--runs-dir", str(runs), "--profile", "smoke", "--only", "02"])
    assert code == 2 and f"DERAIN_DATA={str(a_file)!r} is not an existing folder" in err and err.count("\n") == 1
    assert not runs.exists()


def test_bad_usage_is_reported_not_executed(good_dir, tmp_path):
    runs = tmp_path / "runs"
    base = ["run", "--notebooks-dir", str(good_dir), "--runs-dir", str(runs)]
    code, _, err = _run(base + ["--only", "07"])
    assert code == 2 and "--only '07' matches no notebook" in err
    code, _, err = _run(base + ["--param", "SEED=abc"])
    assert code == 2 and "SEED" in err and "int" in err
    code, _, err = _run(base + ["--param", "RUN_DIR=/tmp/x"])
    assert code == 2 and "RUN_DIR" in err and "set by the runner" in err
    code, _, err = _run(base + ["--param", "no_equals_sign"])
    assert code == 2 and "KEY=VALUE" in err
    code, _, err = _run(["run", "--notebooks-dir", str(tmp_path / "nowhere")])
    assert code == 2 and "nowhere" in err
    assert not runs.exists()


@pytest.mark.notebook
def test_a_papermill_params_file_with_profile_runs(good_dir, tmp_path):
    # was: `monograph run -f params.yaml` rejected a file that works with `papermill -f` because it sets PROFILE
    f = tmp_path / "params.yaml"
    f.write_text('PROFILE: smoke\nRUN_DIR: ""\nSIZES: [4, 16]\n')
    runs = tmp_path / "runs"
    code, out, err = _run(["run", "--notebooks-dir", str(good_dir), "--runs-dir", str(runs), "--only", "01",
                           "-f", str(f), "--no-progress"])
    assert code == 0, err
    folder = latest_run("01_alpha", "smoke", runs)  # the file's profile, not the default quick
    assert json.loads((folder / "runner.json").read_text())["parameters"]["PROFILE"] == "smoke"
    assert sorted(pd.read_csv(folder / "results.csv")["n"].unique()) == [4, 16]


def test_params_file_and_param_precedence(good_dir, tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("SIZES: [4, 16]\nSEED: 5\n")
    infos = [runner.notebook_info(p) for p in runner.discover_notebooks(good_dir)]
    params = [runner._Param(k, v, None, "file") for k, v in runner.load_params_file(f).items()]
    per = runner.resolve_parameters(infos, params)
    assert per == {"01_alpha": {"SIZES": [4, 16], "SEED": 5}, "02_beta": {}}
    bad = tmp_path / "bad.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="bad.yaml.*mapping"):
        runner.load_params_file(bad)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        runner.load_params_file(tmp_path / "missing.yaml")


@pytest.mark.parametrize("text, expected", [
    ("SIZES=[4, 16]", ("SIZES", [4, 16])),
    ("LR=1e-3", ("LR", 0.001)),
    ("STEPS=200", ("STEPS", 200)),
    ("FLAG=true", ("FLAG", True)),
    ("NAME=yes", ("NAME", "yes")),       # no YAML 1.1 surprise booleans
    ("PATH=/data/rain 100", ("PATH", "/data/rain 100")),
    ("X=null", ("X", None)),
    ("D={a: 1, b: [2]}", ("D", {"a": 1, "b": [2]})),
    ("S=a=b", ("S", "a=b")),
])
def test_parse_param(text, expected):
    assert runner.parse_param(text) == expected


def test_parse_param_rejects_bad_names():
    with pytest.raises(ValueError, match="identifier"):
        runner.parse_param("1X=3")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        runner.parse_param("X")


def test_type_hints_coerce_or_reject(good_dir):
    info = runner.notebook_info(good_dir / "02_beta.ipynb")
    P = runner._Param
    # a str parameter given something YAML reads as a number keeps the text as typed
    assert runner.resolve_parameters([info], [P("MODE", 2024, "2024", "--param")])["02_beta"]["MODE"] == "2024"
    alpha = runner.notebook_info(good_dir / "01_alpha.ipynb")
    with pytest.raises(ValueError, match="SIZES.*list"):
        runner.resolve_parameters([alpha], [P("SIZES", 4, "4", "--param")])
    with pytest.raises(ValueError, match="SEED.*integer"):
        runner.resolve_parameters([alpha], [P("SEED", 1.5, "1.5", "--param")])


def test_list_shows_findings_and_parameters(good_dir, capsys):
    assert monograph.main(["list", "--notebooks-dir", str(good_dir)]) == 0
    out = capsys.readouterr().out
    assert "01_alpha  --  01 · Alpha" in out
    assert "finding: Bigger sets push y down. It continues on a second line." in out
    assert "SIZES: list = [1, 2, 3]  # training-set sizes" in out
    assert "MODE: str = \"slow\"  # how to do it" in out
    assert "README" not in out


def test_parse_header_conventions_and_fallbacks():
    md = "# 03 · Decoupled metrics\n\nIntro.\n\n**Finding.** Rain is removed,\nbackground is not.\n\nMore."
    assert runner.parse_header(md) == ("03 · Decoupled metrics", "Rain is removed, background is not.")
    assert runner.parse_header("Just text, no heading.") == ("", "")
    assert runner.parse_header("## Sub\n**Finding** x") == ("", "x")


def test_select_notebooks(good_dir):
    infos = [runner.notebook_info(p) for p in runner.discover_notebooks(good_dir)]
    assert [i.stem for i in runner.select_notebooks(infos, ["02", "1"])] == ["01_alpha", "02_beta"]
    assert [i.stem for i in runner.select_notebooks(infos, ["02_beta.ipynb"])] == ["02_beta"]
    assert [i.stem for i in runner.select_notebooks(infos, None)] == ["01_alpha", "02_beta"]


# --------------------------------------------------------------------------------------
# kernel registration (mocked Jupyter)
# --------------------------------------------------------------------------------------
class _Spec(SimpleNamespace):
    pass


def _fake_jupyter(monkeypatch, specs: list):
    """_find_spec returns the items of ``specs`` in turn; installs are recorded."""
    seq = iter(specs)
    installs: list[str] = []
    monkeypatch.setattr(runner, "_find_spec", lambda name: next(seq))
    monkeypatch.setattr(runner, "_install_kernelspec",
                        lambda name: installs.append(name) or "/prefix/kernels/" + name)
    return installs


def test_kernel_running_this_interpreter_is_left_alone(monkeypatch):
    installs = _fake_jupyter(monkeypatch, [_Spec(argv=["python", "-m", "ipykernel_launcher"], resource_dir="/k")])
    assert runner.ensure_python3_kernel().startswith("kernel python3: /k")
    assert installs == []


def test_missing_kernel_is_installed(monkeypatch):
    ok = _Spec(argv=[sys.executable, "-m", "ipykernel_launcher"], resource_dir="/prefix/kernels/python3")
    installs = _fake_jupyter(monkeypatch, [None, ok])
    assert "missing; installed" in runner.ensure_python3_kernel()
    assert installs == ["python3"]


def test_kernel_of_another_interpreter_is_replaced(monkeypatch, tmp_path):
    other = _Spec(argv=[str(tmp_path / "elsewhere" / "python3"), "-m", "ipykernel_launcher"], resource_dir="/usr/k")
    ok = _Spec(argv=[sys.executable, "-m", "ipykernel_launcher"], resource_dir="/prefix/kernels/python3")
    installs = _fake_jupyter(monkeypatch, [other, ok])
    msg = runner.ensure_python3_kernel()
    assert installs == ["python3"] and "elsewhere" in msg and sys.executable in msg


def test_kernel_still_shadowed_after_install_is_an_error(monkeypatch, tmp_path):
    other = _Spec(argv=[str(tmp_path / "elsewhere" / "python3")], resource_dir="/home/u/.local/k")
    _fake_jupyter(monkeypatch, [other, other])
    with pytest.raises(RuntimeError, match="still resolves.*kernelspec remove"):
        runner.ensure_python3_kernel()


def test_interpreter_identity_check_runs_the_other_python():
    sibling = Path(sys.executable).parent / f"python{sys.version_info[0]}"
    if not sibling.exists() or os.path.abspath(sibling) == os.path.abspath(sys.executable):
        pytest.skip(f"no distinct sibling interpreter name beside {sys.executable}")
    assert runner._runs_this_interpreter([str(sibling), "-m", "ipykernel_launcher"])  # same env, other name
    assert not runner._runs_this_interpreter(["/definitely/not/a/python"])


def test_real_python3_kernel_runs_this_interpreter():
    """The environment the tests run in must execute notebooks with its own Python."""
    msg = runner.ensure_python3_kernel()
    assert msg.startswith("kernel python3") or "installed" in msg
    spec = runner._find_spec("python3")
    assert spec is not None and runner._runs_this_interpreter(spec.argv)


def test_unparseable_parameter_lines_are_flagged(tmp_path, capsys):
    text = ALPHA.replace('SEED: int = 0  # random seed of the fake experiment',
                         'SEED: int = 0  # random seed; 0 = the default')
    _write_notebook(tmp_path, "01_alpha", text, "Alpha", "Bigger sets push y down.")
    info = runner.notebook_info(tmp_path / "01_alpha.ipynb")
    assert "SEED" not in info.parameters
    assert len(info.problems) == 1 and "line 3" in info.problems[0] and "SEED" in info.problems[0]
    assert monograph.main(["list", "--notebooks-dir", str(tmp_path)]) == 0
    assert "invisible to papermill" in capsys.readouterr().out


# --------------------------------------------------------------------------------------
# publish: the results page to commit
# --------------------------------------------------------------------------------------
def test_publish_writes_the_results_page_with_figures_and_reader_pages(good_run, good_dir, tmp_path):
    import shutil

    from PIL import Image

    from derain_utils.book import publish

    runs = tmp_path / "runs"
    shutil.copytree(good_run.runs, runs, symlinks=True)
    alpha = latest_run("01_alpha", "smoke", runs)
    for name in ("fig_frontier.png", "fig_backgrounds.png"):
        Image.new("RGB", (2400, 600), "white").save(alpha / name)
    dest = tmp_path / "docs" / "results" / "smoke"
    code, out, err = _run(["publish", str(dest), "--notebooks-dir", str(good_dir), "--runs-dir", str(runs),
                           "--profile", "smoke"])
    assert code == 0, err
    page = (dest / "index.md").read_text()
    assert page.startswith("# Results of the `smoke` profile") and "## 01_alpha" in page and "## 02_beta" in page
    assert "🟡 inconclusive: psnr_gain_db = +0.25 [-0.50, +1.00], one-sided p = 0.4" in page
    assert (dest / "01_alpha" / "01_alpha.reader.html").is_file()  # no real data: the whole run is published
    with Image.open(dest / "01_alpha" / "fig_backgrounds.png") as im:
        assert im.width == publish.MAX_WIDTH and im.height == round(600 * publish.MAX_WIDTH / 2400)
    # a run on the real sets: its pictures stay out (the figure files, and the images of its reader page), and the
    # page says so
    prov = json.loads((alpha / "provenance.json").read_text())
    (alpha / "provenance.json").write_text(json.dumps({**prov, "background": "natural"}))
    assert _run(["publish", str(dest), "--notebooks-dir", str(good_dir), "--runs-dir", str(runs),
                 "--profile", "smoke"])[0] == 0
    page = (dest / "index.md").read_text()
    assert sorted(p.name for p in (dest / "01_alpha").iterdir()) == ["01_alpha.reader.html", "fig_frontier.png"]
    assert "Left out of the page and of this folder" in page and ": fig_backgrounds." in page
    assert "real development sets" in page
    assert not list(dest.parent.glob(".smoke.*"))  # nothing staged is left behind


def test_publish_strips_every_picture_of_a_real_data_reader_page():
    """Issue 22: the reader page of a run on the real sets is published, with each picture replaced by a line: a
    cell keeps its images only when the figures it saves are known data plots."""
    import nbformat

    from derain_utils.book import publish

    png = {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}
    cells = {
        "plot": 'layout.save(fig, RUN / "fig_frontier.png")',
        "picture": 'layout.save(fig, RUN / "fig_backgrounds.png")',
        "f-string picture": 'layout.save(fig, RUN / f"fig_real_{name}.png")',
        "f-string plots": 'layout.save(fig, RUN / f"fig_dynamics{suffix}.png")',
        "plot and picture": 'layout.save(a, RUN / "fig_frontier.png")\nlayout.save(b, RUN / "fig_examples.png")',
        "unnamed image": "plt.imshow(photo)",
        "unknown name": 'layout.save(fig, RUN / "fig_not_saved.png")',
    }
    nb = nbformat.v4.new_notebook()
    for source in cells.values():
        cell = nbformat.v4.new_code_cell(source)
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="a number: 0.42\n"),
                        nbformat.v4.new_output("display_data", data=png)]
        nb.cells.append(cell)
    html = nbformat.v4.new_code_cell("display(HTML(gallery))")
    html.outputs = [nbformat.v4.new_output("display_data", data={"text/html": '<img src="data:image/png;base64,AA">'})]
    nb.cells.append(html)
    saved = ["fig_frontier.png", "fig_backgrounds.png", "fig_real_spa.png", "fig_dynamics.png",
             "fig_dynamics_procedural.png", "fig_examples.png"]
    assert publish.strip_pictures(nb, saved) == 6
    kept = {name: any("image/png" in o.get("data", {}) for o in c.outputs) for name, c in zip(cells, nb.cells)}
    assert kept == {"plot": True, "picture": False, "f-string picture": False, "f-string plots": True,
                    "plot and picture": False, "unnamed image": False, "unknown name": False}
    assert all(c.outputs[0].text == "a number: 0.42\n" for c in nb.cells[:-1])  # text outputs stay
    assert [o.text for o in nb.cells[1].outputs] == ["a number: 0.42\n", publish.LEFT_OUT]
    assert [o.get("text") for o in nb.cells[-1].outputs] == [publish.LEFT_OUT]


def test_publish_bad_input_is_one_line(good_dir, tmp_path):
    code, _, err = _run(["publish", str(tmp_path / "out"), "--notebooks-dir", str(good_dir), "--runs-dir",
                         str(tmp_path / "empty"), "--profile", "quick"])
    assert code == 2 and "no completed run of profile 'quick'" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
    (tmp_path / "file").write_text("x")
    code, _, err = _run(["publish", str(tmp_path / "file"), "--notebooks-dir", str(good_dir), "--profile", "quick"])
    assert code == 2 and "is a file, not a folder" in err and (tmp_path / "file").read_text() == "x"


def test_uses_real_data_reads_the_provenance():
    from derain_utils.book import publish

    assert publish.uses_real_data({"background": "natural"}) and publish.uses_real_data({"paired_sets": {"a": "b"}})
    assert publish.uses_real_data({"design": {"groups": {"simple": ["faces"]}}})
    assert publish.uses_real_data({"params": {"DATA_DIR": "/data"}})
    assert not publish.uses_real_data({"background": "deadleaves", "categories": ["blobs", "noise"], "paired_sets": {}})


def test_a_run_outside_the_runner_keeps_latest_and_is_listed_with_a_warning(good_run, good_dir, tmp_path):
    """was: a notebook run in JupyterLab or with papermill moved `latest` to a folder with no executed notebook,
    and `monograph html` dropped that notebook's page without a word"""
    from derain_utils.book import runs as runs_mod

    runs = tmp_path / "runs"
    shutil.copytree(good_run.runs, runs, symlinks=True)
    before = latest_run("01_alpha", "smoke", runs)
    outside = runs_mod.resolve_run_dir("", "01_alpha", "smoke", runs)  # what a JupyterLab run does
    assert latest_run("01_alpha", "smoke", runs) == before
    code, out, err = _run(["html", "--notebooks-dir", str(good_dir), "--runs-dir", str(runs), "--profile", "smoke"])
    assert code == 0 and "warning: 01_alpha: 1 newer run(s) outside the runner" in err and outside.name in err
    page = (runs / "smoke" / "index.html").read_text()
    assert "outside the runner (JupyterLab or papermill), not shown: " + outside.name in page
    assert 'href="01_alpha/' in page  # the completed run's page is still linked


def test_progress_lines_say_models_done_and_the_eta(tmp_path):
    import io

    path = tmp_path / runner.PROGRESS_FILE
    out = io.StringIO()
    lines = runner._ProgressLines("01_set_size", path, stream=out)
    assert lines.poll() is None  # no file yet: nothing to say
    path.write_text(json.dumps({"what": "trained", "done": 37, "total": 72, "cached": 0, "eta_s": 240}))
    assert lines.poll() == "01_set_size: trained 37/72 models, ETA 4 min"
    assert lines.poll() is None  # nothing new
    path.write_text(json.dumps({"what": "trained", "done": 72, "total": 72, "cached": 8, "eta_s": 0}))
    assert lines.poll() == "01_set_size: trained 72/72 models (8 from the cache), all done"
    path.write_text("{broken")
    assert lines.poll() is None
    assert out.getvalue().splitlines() == ["01_set_size: trained 37/72 models, ETA 4 min",
                                           "01_set_size: trained 72/72 models (8 from the cache), all done"]


def test_without_the_notebook_tools_the_command_line_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "papermill" else real(name, *a))
    code, _, err = _run(["list"])
    assert code == 2 and "papermill missing" in err and "pip install -e '.[notebooks]'" in err


def test_a_verdict_without_an_effect_reads_as_such_in_the_summary(tmp_path):
    folder = tmp_path / "smoke" / "01_x" / "20260101T000000Z"
    folder.mkdir(parents=True)
    verdict.Verdict.from_dict(dict(
        notebook="01_x", finding="F.", reproduced=False, verdict="inconclusive", p_value=float("nan"),
        primary_outcome="removal", primary_preset="small", n_models=0, statistic="rho", effect=float("nan"),
        ci95=[float("nan"), float("nan")], n_seeds=0, profile="smoke", summary="S.", wall_s=1.0)).write(folder)
    info = runner.NotebookInfo(path=tmp_path / "01_x.ipynb", stem="01_x", number="01", title="X", finding="F.")
    row = monograph._row(runner.RunRecord(info=info, status="completed", folder=folder))
    assert row["result"] == "no effect computed (smoke run: plumbing only)" and "nan" not in row["result"]
