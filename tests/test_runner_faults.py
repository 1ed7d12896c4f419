"""The monograph runner under faults: kills at any moment, overlapping runs, bad folders and files.

Issue 14 asks that "a kill (SIGTERM and SIGKILL) at any moment of ``monograph run`` leaves every run
folder either complete or marked incomplete, and the rerun finishes from the cache". The kill tests
drive a real runner in a subprocess through a tiny notebook that trains two tiny models (about a
second each) and waits between them for a signal file, so each kill lands at a known moment:

* while the kernel starts (``runner.json`` says ``running``, nothing else is written yet);
* between the two models (the first is in the model cache, the notebook has written a file).

Each is done with SIGTERM (the runner marks the folder ``interrupted`` and exits 143) and with
SIGKILL (nothing can run: ``runner.json`` keeps ``running`` with the dead pid, which
:func:`runner.run_status` reads as ``killed``; the kernel exits with its runner). The last
rerun must complete and reuse the model that finished before the kills.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jupytext
import nbformat
import pandas as pd
import pytest

from derain_utils.book import monograph, runner
from derain_utils.book import runs as run_folders
from derain_utils.stats import verdict

KILL_NB = '''# %% [markdown]
# # 01 · Kill me
#
# **Finding.** A run survives being killed.

# %%
import json
import os
import time
from pathlib import Path

import pandas as pd

from derain_utils.book import runs
from derain_utils.lab import experiments, profiles
from derain_utils.stats import verdict

# %% tags=["parameters"]
PROFILE: str = "quick"  # smoke, quick or paper
RUN_DIR: str = ""  # output folder
SIGNALS: str = ""  # folder of the test's signal files

# %%
folder = runs.resolve_run_dir(RUN_DIR, "01_kill", PROFILE)
sig = Path(SIGNALS)
(sig / "kernel_pid").write_text(str(os.getpid()))


def config(seed):
    return profiles.experiment(profiles.resolve("smoke"), steps=5, background="flat", eval_presets=("small",),
                               n_test=2, seed=seed)


first = experiments.run(config(0), progress=False)
(folder / "partial.txt").write_text("the first model is done")
(sig / "first_done").write_text(json.dumps(first.cached))
print(f"first model cached: {first.cached}", flush=True)

# %%
deadline = time.time() + 120
while not (sig / "go").exists() and time.time() < deadline:
    time.sleep(0.1)
second = experiments.run(config(1), progress=False)
runs.write_results(folder, pd.DataFrame({"model": ["first", "second"], "cached": [first.cached, second.cached]}))
verdict.Verdict.from_dict(dict(
    notebook="01_kill", finding="A run survives being killed.", reproduced=True, verdict="reproduced", p_value=0.01,
    primary_outcome="models", primary_preset="small", n_models=2, statistic="models", effect=2.0, ci95=[2.0, 2.0],
    n_seeds=2, profile=PROFILE, summary="Both models exist.", wall_s=1.0)).write(folder)
print("done", flush=True)
'''


def _notebook(folder: Path) -> Path:
    nb = jupytext.reads(KILL_NB, fmt="py:percent")
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / "01_kill.ipynb"
    nbformat.write(nb, path)
    return path


def _start(nbdir: Path, runs: Path, sig: Path, *extra: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "derain_utils.book.monograph", "run", "--notebooks-dir", str(nbdir), "--runs-dir",
            str(runs), "--profile", "smoke", "--no-progress", "--param", f"SIGNALS={sig}", *extra]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, what: str, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the runner exited ({proc.returncode}) before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def _folders(runs: Path) -> list[Path]:
    return runner.run_folders("01_kill", "smoke", runs)


def _gone(pid: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.notebook
def test_kills_at_any_moment_leave_marked_folders_and_the_rerun_uses_the_cache(tmp_path: Path) -> None:
    nbdir, runs, sig = tmp_path / "nb", tmp_path / "runs", tmp_path / "sig"
    for d in (nbdir, sig):
        d.mkdir()
    _notebook(nbdir)

    # 1. SIGKILL while the kernel starts: the folder exists and is marked running by a dead runner
    proc = _start(nbdir, runs, sig)
    _wait_for(lambda: any((f / runner.RUNNER_FILE).is_file() for f in _folders(runs)), "runner.json", proc)
    proc.kill()
    proc.wait()
    (killed_early,) = _folders(runs)
    assert json.loads((killed_early / runner.RUNNER_FILE).read_text())["status"] == "running"
    assert runner.run_status(killed_early) == "killed"
    if (sig / "kernel_pid").is_file():  # the kernel may have started: it must not outlive its runner
        assert _gone(int((sig / "kernel_pid").read_text())), "the kernel outlived its killed runner"

    # 2. SIGTERM between the two models: the runner marks the folder interrupted and exits 143
    for f in sig.iterdir():
        f.unlink()
    proc = _start(nbdir, runs, sig)
    _wait_for(lambda: (sig / "first_done").is_file(), "the first model", proc)
    assert json.loads((sig / "first_done").read_text()) is False  # trained here
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    terminated = _folders(runs)[-1]
    assert "INTERRUPTED by SIGTERM" in err and str(terminated) in err and "Traceback" not in err
    written = json.loads((terminated / runner.RUNNER_FILE).read_text())
    assert written["status"] == "interrupted" and written["error"] == "SIGTERM"
    assert (terminated / "partial.txt").is_file() and not (terminated / verdict.VERDICT_FILE).exists()
    assert _gone(int((sig / "kernel_pid").read_text()))
    # the kernel's own log is kept in the run folder; with CurveZMQ it has no plain-TCP warning any more
    assert "without encryption" not in err + (terminated / runner.KERNEL_LOG).read_text()

    # 3. SIGKILL between the two models: the first model now comes from the cache
    for f in sig.iterdir():
        f.unlink()
    proc = _start(nbdir, runs, sig)
    _wait_for(lambda: (sig / "first_done").is_file(), "the first model", proc)
    assert json.loads((sig / "first_done").read_text()) is True
    proc.kill()
    proc.wait()
    killed_late = _folders(runs)[-1]
    assert runner.run_status(killed_late) == "killed" and (killed_late / "partial.txt").is_file()
    assert _gone(int((sig / "kernel_pid").read_text())), "the kernel outlived its killed runner"

    # every folder so far is marked incomplete; none is latest
    assert [runner.run_status(f) for f in _folders(runs)] == ["killed", "interrupted", "killed"]
    assert run_folders.latest_run("01_kill", "smoke", runs) is None
    # was: runner.json kept saying "running" after the SIGKILLs; the next run marks the folders
    assert json.loads((killed_late / runner.RUNNER_FILE).read_text())["status"] == "running"

    # 4. the rerun completes, reusing the model that finished before the kills, and streams output
    (sig / "go").write_text("go")
    proc = _start(nbdir, runs, sig, "--log-output")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "first model cached: True" in err and "done" in err  # --log-output streamed the cells' prints
    final = _folders(runs)[-1]
    assert run_folders.latest_run("01_kill", "smoke", runs) == final and runner.run_status(final) == "completed"
    assert pd.read_csv(final / run_folders.RESULTS_FILE)["cached"].tolist() == [True, False]
    assert [runner.run_status(f) for f in _folders(runs)] == ["killed", "interrupted", "killed", "completed"]
    for f in (killed_early, killed_late):
        marked = json.loads((f / runner.RUNNER_FILE).read_text())
        assert marked["status"] == "killed" and marked["killed_found_utc"] and "gone" in marked["error"]
    summary = pd.read_csv(runs / "smoke" / "summary.csv", keep_default_na=False)
    assert summary.loc[0, "verdict"] == "REPRODUCED" and summary.loc[0, "incomplete"] == ""


# --------------------------------------------------------------------------------------------------
# run folders without a kernel: statuses, overlapping runs, summary and index


def _fake_run(runs: Path, stem: str, stamp: str, status: str | None, *, pid: int | None = None,
              host: str | None = None, verdict_label: bool = True) -> Path:
    folder = run_folders.new_run_dir(stem, "smoke", runs, stamp=stamp)
    if status is not None:
        import socket

        record = {"status": status, "pid": pid if pid is not None else os.getpid(),
                  "host": host or socket.gethostname(), "pid_start": None}
        (folder / runner.RUNNER_FILE).write_text(json.dumps(record))
    if verdict_label:
        verdict.Verdict.from_dict(dict(
            notebook=stem, finding="f", reproduced=True, verdict="reproduced", p_value=0.01, primary_outcome="s",
            primary_preset="small", n_models=2, statistic="s", effect=1.0, ci95=[0.5, 1.5], n_seeds=2,
            profile="smoke", summary="ok", wall_s=1.0)).write(folder)
    return folder


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_run_status_reads_the_marker_and_the_process(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    assert runner.run_status(_fake_run(runs, "01_a", "20260101T000000Z", "completed")) == "completed"
    assert runner.run_status(_fake_run(runs, "01_a", "20260101T000001Z", "interrupted")) == "interrupted"
    assert runner.run_status(_fake_run(runs, "01_a", "20260101T000002Z", "running")) == "running"  # this pid
    dead = _fake_run(runs, "01_a", "20260101T000003Z", "running", pid=_dead_pid())
    assert runner.run_status(dead) == "killed"
    elsewhere = _fake_run(runs, "01_a", "20260101T000004Z", "running", pid=1, host="another-host")
    assert runner.run_status(elsewhere) == "running"  # cannot be checked from here
    reused = _fake_run(runs, "01_a", "20260101T000005Z", "running")
    record = json.loads((reused / runner.RUNNER_FILE).read_text())
    record["pid_start"] = "1"  # this pid, but a process that started at another time: the pid was reused
    (reused / runner.RUNNER_FILE).write_text(json.dumps(record))
    assert runner.run_status(reused) == ("killed" if Path("/proc/self/stat").exists() else "running")
    empty = run_folders.new_run_dir("01_a", "smoke", runs, stamp="20260101T000006Z")
    assert runner.run_status(empty) == "killed"  # killed between creating the folder and marking it
    assert json.loads((dead / runner.RUNNER_FILE).read_text())["status"] == "running"  # reading alone writes nothing
    assert runner.run_status(dead, mark=True) == runner.run_status(empty, mark=True) == "killed"
    for f in (dead, empty):
        marked = json.loads((f / runner.RUNNER_FILE).read_text())
        assert marked["status"] == "killed" and marked["killed_found_utc"] and marked["error"]
        assert runner.run_status(f) == "killed" and not list(f.glob(".*.tmp"))
    garbled = _fake_run(runs, "01_a", "20260101T000007Z", None)
    (garbled / runner.RUNNER_FILE).write_text("{not json")
    assert runner.run_status(garbled) == "unmarked"


def test_latest_stays_at_the_newest_completed_run_when_runs_overlap(tmp_path: Path) -> None:
    # was: overlapping runs left `latest` at the run that finished last, not the newest
    runs = tmp_path / "runs"
    older = _fake_run(runs, "01_a", "20260101T000000Z", "completed")
    newer = _fake_run(runs, "01_a", "20260101T000500Z", "completed")
    assert runner._update_latest_if_newest(newer)
    assert not runner._update_latest_if_newest(older)  # the older run finished last
    assert run_folders.latest_run("01_a", "smoke", runs) == newer
    same_second = _fake_run(runs, "01_a", "20260101T000500Z", "completed")  # "-2": started after `newer`
    assert same_second.name == "20260101T000500Z-2" and runner._update_latest_if_newest(same_second)
    tenth = [_fake_run(runs, "01_a", "20260101T000500Z", "completed") for _ in range(8)][-1]
    assert tenth.name.endswith("-10") and runner._update_latest_if_newest(tenth)  # -10 sorts after -9
    assert run_folders.latest_run("01_a", "smoke", runs) == tenth


def test_summary_and_index_mark_incomplete_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    nbdir = tmp_path / "nb"
    nbdir.mkdir()
    for stem in ("01_a", "02_b", "03_c"):
        nb = jupytext.reads(f"# %% [markdown]\n# # {stem[:2]} · T\n#\n# **Finding.** f.\n\n# %%\nx = 1\n",
                            fmt="py:percent")
        nbformat.write(nb, nbdir / f"{stem}.ipynb")
    done = _fake_run(runs, "01_a", "20260101T000000Z", "completed")
    runner._update_latest_if_newest(done)
    _fake_run(runs, "01_a", "20260101T010000Z", "running", pid=_dead_pid(), verdict_label=False)
    _fake_run(runs, "01_a", "20260101T020000Z", "interrupted", verdict_label=False)
    _fake_run(runs, "02_b", "20260101T000000Z", "running", pid=_dead_pid())  # has a verdict, but was killed
    infos = [runner.notebook_info(p) for p in runner.discover_notebooks(nbdir)]
    state = monograph.latest_records(infos, "smoke", runs)
    assert [r.status for r in state] == ["completed", "killed", "not run"]
    assert [(f.name, s) for f, s in state[0].incomplete] == [("20260101T010000Z", "killed"),
                                                             ("20260101T020000Z", "interrupted")]
    table = monograph.summary_table(state)
    assert list(table["verdict"]) == ["REPRODUCED", "KILLED", "not run"]  # a killed run's verdict is not shown
    assert table.loc[0, "incomplete"] == "20260101T010000Z killed; 20260101T020000Z interrupted"
    page = monograph.write_index(state, "smoke", runs).read_text()
    assert "newer run(s) did not complete: 20260101T010000Z (killed), 20260101T020000Z (interrupted)" in page
    assert "KILLED" in page


# --------------------------------------------------------------------------------------------------
# command-line faults (no kernel)


def _main(argv: list[str]) -> tuple[int, str, str]:
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = monograph.main(argv)
    return code, out.getvalue(), err.getvalue()


NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.mark.parametrize("where", ["a file", "below a file"])
def test_runs_dir_that_is_a_file_is_one_line(tmp_path: Path, where: str) -> None:
    # was: a FileExistsError/NotADirectoryError traceback
    a_file = tmp_path / "runs.txt"
    a_file.write_text("x")
    runs = a_file if where == "a file" else a_file / "runs"
    code, out, err = _main(["run", "--runs-dir", str(runs), "--profile", "smoke", "--only", "01"])
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith("python -m derain_utils.book.monograph: error: --runs-dir " + repr(str(runs)))
    assert "a file" in err and "Traceback" not in err


def test_nan_parameters_are_refused(tmp_path: Path) -> None:
    # was: MIN_REMOVAL=NaN was accepted and every model of notebook 02 counted as stalled; MIN_REMOVAL is gone
    # (the stall rule is outcome.STALL_MIN_FIT) and a NaN is refused for any parameter, here an int one
    code, _, err = _main(["run", "--runs-dir", str(tmp_path / "runs"), "--only", "02", "--param", "N_TRAIN=NaN"])
    assert code == 2 and "parameter N_TRAIN" in err and "is NaN" in err
    params = tmp_path / "p.yaml"
    params.write_text("N_TRAIN: .nan\n")
    code, _, err = _main(["run", "--runs-dir", str(tmp_path / "runs"), "--only", "02", "-f", str(params)])
    assert code == 2 and "N_TRAIN" in err and "is NaN" in err
    assert not (tmp_path / "runs").exists()


def test_params_file_with_profile_is_accepted_or_conflicts_clearly(tmp_path: Path) -> None:
    # was: a params.yaml that works with `papermill -f` was rejected because it sets PROFILE
    args = SimpleArgs(profile=None)
    params = [runner._Param("PROFILE", "smoke", None, "from p.yaml"),
              runner._Param("RUN_DIR", "", None, "from p.yaml"), runner._Param("STEPS", 3, None, "from p.yaml")]
    profile, rest = monograph._profile_from(args, params)
    assert profile == "smoke" and [p.name for p in rest] == ["STEPS"]
    assert monograph._profile_from(SimpleArgs(profile="smoke"), params)[0] == "smoke"  # agreeing is fine
    assert monograph._profile_from(SimpleArgs(profile=None), [])[0] == "quick"
    f = tmp_path / "p.yaml"
    f.write_text("PROFILE: paper\nSTEPS: 3\n")
    code, _, err = _main(["run", "--runs-dir", str(tmp_path / "runs"), "--profile", "smoke", "--only", "01",
                          "-f", str(f)])
    assert code == 2 and "--profile smoke contradicts PROFILE='paper'" in err
    f.write_text("PROFILE: huge\n")
    code, _, err = _main(["run", "--runs-dir", str(tmp_path / "runs"), "--only", "01", "-f", str(f)])
    assert code == 2 and "PROFILE='huge'" in err and "smoke, quick, long, paper" in err
    f.write_text("RUN_DIR: /somewhere\n")
    code, _, err = _main(["run", "--runs-dir", str(tmp_path / "runs"), "--only", "01", "-f", str(f)])
    assert code == 2 and "RUN_DIR" in err and "set by the runner" in err
    assert not (tmp_path / "runs").exists()


class SimpleArgs:
    def __init__(self, profile: str | None):
        self.profile = profile


# --------------------------------------------------------------------------------------------------
# offline HTML and text progress (no kernel)


def _executed_notebook(tmp_path: Path) -> Path:
    """A notebook as a batch run leaves it: a figure, a progress-bar widget, printed text."""
    import base64
    import io

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1, 2], [2, 0, 1], color="tab:red")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    nb = nbformat.v4.new_notebook()
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2}}
    nb.cells = [
        nbformat.v4.new_markdown_cell("# 01 · Offline\n\n**Verdict: REPRODUCED** (rho = -0.42)."),
        nbformat.v4.new_code_cell("make_figure()", outputs=[
            nbformat.v4.new_output("display_data", data={"image/png": base64.b64encode(buf.getvalue()).decode(),
                                                         "text/plain": "<Figure>"}),
            nbformat.v4.new_output("display_data", data={
                "application/vnd.jupyter.widget-view+json": {"model_id": "abc", "version_major": 2},
                "text/plain": "HBox(children=(FloatProgress(value=0.0),))"}),
            nbformat.v4.new_output("stream", name="stdout", text="wrote verdict.json\n"),
        ]),
    ]
    path = tmp_path / "01_offline.ipynb"
    nbformat.write(nb, path)
    return path


def test_html_pages_are_self_contained(tmp_path: Path) -> None:
    # was: require.js, MathJax and the widget manager came from CDNs; offline the widgets were lost
    import re

    src = _executed_notebook(tmp_path)
    for no_input, name in ((False, "01_offline.html"), (True, "01_offline.reader.html")):
        page = monograph.export_html(src, no_input=no_input)
        assert page.name == name
        text = page.read_text()
        assert not re.findall(r"<script[^>]*\ssrc=", text), "a script is loaded from elsewhere"
        assert not re.findall(r"<link[^>]*href=\"https?:", text) and "cdnjs" not in text and "unpkg" not in text
        assert text.count('src="data:image/png;base64,') == 1  # the figure is embedded
        assert monograph.WIDGET_NOTE in text and "wrote verdict.json" in text and "REPRODUCED" in text
        assert ("make_figure" in text) is (not no_input)  # the reader page has no code


def test_text_progress_bars_when_asked() -> None:
    code = ("import derain_utils, tqdm.auto, tqdm.std\n"
            "print(tqdm.auto.tqdm is tqdm.std.tqdm)")
    env = {**os.environ, "DERAIN_PROGRESS": "text"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.stdout.strip() == "True", res.stderr
    env.pop("DERAIN_PROGRESS")  # unset: importing the package leaves tqdm alone (it is not even imported)
    res = subprocess.run([sys.executable, "-c", "import sys, derain_utils; print('tqdm.auto' in sys.modules)"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.stdout.strip() == "False", res.stderr


# --------------------------------------------------------------------------------------------------
# figures with MPLBACKEND=Agg


FIGURE_NB = '''# %%
import matplotlib.pyplot as plt
from derain_utils.book import plotting

plotting.use_style()
fig, ax = plt.subplots()
ax.plot([0, 1], [1, 0])
print(plt.get_backend())
'''


@pytest.mark.notebook
def test_a_kernel_that_inherits_mplbackend_agg_still_shows_figures(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # was: with MPLBACKEND=Agg (headless servers, .ci/run) executed notebooks held no figures. The runner
    # gives its kernels the inline backend; this is the other path, a kernel started by JupyterLab or
    # papermill itself, where plotting.use_style() switches a file-only backend to inline.
    import papermill

    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = jupytext.reads(FIGURE_NB, fmt="py:percent")
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src, out = tmp_path / "fig.ipynb", tmp_path / "fig_out.ipynb"
    nbformat.write(nb, src)
    done = papermill.execute_notebook(str(src), str(out), kernel_name="python3", progress_bar=False)
    outputs = [o for c in done.cells for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs), outputs
    assert any("inline" in o.get("text", "") for o in outputs)  # plotting.use_style() switched from Agg


def test_html_command_exports_the_latest_runs(tmp_path: Path) -> None:
    runs, nbdir = tmp_path / "runs", tmp_path / "nb"
    nbdir.mkdir()
    src = _executed_notebook(nbdir)
    folder = _fake_run(runs, "01_offline", "20260101T000000Z", "completed")
    (folder / "01_offline.ipynb").write_bytes(src.read_bytes())
    runner._update_latest_if_newest(folder)
    code, out, err = _main(["html", "--notebooks-dir", str(nbdir), "--runs-dir", str(runs), "--profile", "smoke",
                            "--no-input"])
    assert code == 0, err
    assert (folder / "01_offline.reader.html").is_file() and not (folder / "01_offline.html").exists()
    index = (runs / "smoke" / "index.html").read_text()
    assert 'href="01_offline/20260101T000000Z/01_offline.reader.html"' in index
    code, _, err = _main(["html", "--notebooks-dir", str(nbdir), "--runs-dir", str(tmp_path / "none")])
    assert code == 2 and "no completed runs in" in err  # no --profile: the newest profile with runs, and none has
    code, _, err = _main(["html", "--notebooks-dir", str(nbdir), "--runs-dir", str(tmp_path / "none"),
                          "--profile", "quick"])
    assert code == 2 and "no runs of profile quick" in err


def test_a_summary_that_is_a_folder_is_a_named_error_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    # was: an IsADirectoryError from a hand-rolled write, and .summary.csv.<pid>.tmp left behind
    from derain_utils import store

    runs = tmp_path / "runs"
    (runs / "smoke" / "summary.csv").mkdir(parents=True)
    with pytest.raises(store.StoreError, match=r"summary table .*summary\.csv"):
        monograph._write_state([], "smoke", runs, html=False)
    assert sorted(p.name for p in (runs / "smoke").iterdir()) == ["summary.csv"]


def test_relative_runs_and_data_folders_name_the_same_place_inside_the_kernel(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # was: a relative DERAIN_RUNS or --runs-dir failed every run (FileNotFoundError '.../kernel.log'): papermill
    # starts the kernel in notebooks/, where the relative folder names another place
    from derain_utils import store

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DERAIN_RUNS", "rel_runs")
    monkeypatch.setenv("DERAIN_DATA", "rel_data")
    assert store.runs_root() == tmp_path / "rel_runs" and store.runs_root("other") == tmp_path / "other"
    assert store.cache_root() == tmp_path / "rel_runs" / "cache"
    with runner._kernel_environment():
        assert os.environ["DERAIN_RUNS"] == str(tmp_path / "rel_runs")
        assert os.environ["DERAIN_DATA"] == str(tmp_path / "rel_data")
    assert os.environ["DERAIN_RUNS"] == "rel_runs" and os.environ["DERAIN_DATA"] == "rel_data"  # restored
