"""Run folders: fresh folders that never collide, ``latest``, results tables and provenance files."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from derain_utils import store
from derain_utils.book import runs


def _table(n_seeds=2, n_images=2, sizes=(1, 2)) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [{"seed": s, "image": f"img{i}", "n": n, "y": float(rng.normal())}
            for s in range(n_seeds) for i in range(n_images) for n in sizes]
    return pd.DataFrame(rows)


def test_write_results(tmp_path):
    df = _table()
    path = runs.write_results(tmp_path, df, required_columns=["seed", "image", "n", "y"])
    back = pd.read_csv(path)
    pd.testing.assert_frame_equal(back, df)
    with pytest.raises(ValueError, match=r"\['psnr'\]"):
        runs.write_results(tmp_path, df, required_columns=["seed", "psnr"])
    with pytest.raises(ValueError, match="empty"):
        runs.write_results(tmp_path, df.iloc[:0])
    with pytest.raises(ValueError, match="DataFrame"):
        runs.write_results(tmp_path, df.to_dict())


# --------------------------------------------------------------------------------------
# run folders
# --------------------------------------------------------------------------------------
def test_run_folders_never_collide(tmp_path):
    a = runs.new_run_dir("01_set_size", "smoke", tmp_path, stamp="20260101T000000Z")
    b = runs.new_run_dir("01_set_size", "smoke", tmp_path, stamp="20260101T000000Z")
    assert a == tmp_path / "smoke" / "01_set_size" / "20260101T000000Z"
    assert b == a.parent / "20260101T000000Z-2" and b.is_dir()
    assert runs.latest_run("01_set_size", "smoke", tmp_path) is None
    link = runs.update_latest(a)
    assert link.is_symlink() and os.readlink(link) == a.name  # relative: the tree can move
    assert runs.latest_run("01_set_size", "smoke", tmp_path) == a
    runs.update_latest(b)
    assert runs.latest_run("01_set_size", "smoke", tmp_path) == b
    assert re.fullmatch(r"\d{8}T\d{6}Z", store.utc_stamp())


def test_latest_falls_back_to_a_text_file(tmp_path, monkeypatch):
    a = runs.new_run_dir("02_x", "quick", tmp_path)

    def no_symlinks(*args, **kwargs):
        raise OSError("symlinks not permitted")

    monkeypatch.setattr(os, "symlink", no_symlinks)
    pointer = runs.update_latest(a)
    assert pointer.name == "latest.txt" and pointer.read_text().strip() == a.name
    assert runs.latest_run("02_x", "quick", tmp_path) == a


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_a_real_file_or_folder_named_latest_is_an_error_not_a_silent_latest_txt(tmp_path, kind):
    # was: os.replace failed on the real folder and the pointer went to latest.txt without a word
    a = runs.new_run_dir("01_x", "smoke", tmp_path)
    real = a.parent / "latest"
    real.mkdir() if kind == "folder" else real.write_text("mine")
    with pytest.raises(store.StoreError, match=rf"'{re.escape(str(real))}' is a real {kind}, not the pointer"):
        runs.update_latest(a)
    assert not (a.parent / "latest.txt").exists() and not list(a.parent.glob(".latest.*"))


def test_resolve_run_dir(tmp_path):
    given = tmp_path / "from_runner"
    assert runs.resolve_run_dir(str(given), "01_set_size", "smoke") == given and given.is_dir()
    # outside the runner: a fresh folder under $DERAIN_RUNS (set per test by conftest), marked; latest stays put
    fresh = runs.resolve_run_dir("", "01_set_size", "smoke")
    root = Path(os.environ["DERAIN_RUNS"])
    assert fresh.parent == root / "smoke" / "01_set_size"
    assert runs.latest_run("01_set_size", "smoke") is None
    marker = json.loads((fresh / runs.OUTSIDE_FILE).read_text())
    assert marker["notebook"] == "01_set_size" and "latest was not moved" in marker["note"]
    done = runs.new_run_dir("01_set_size", "smoke")
    runs.update_latest(done)  # what the runner does with a completed run
    again = runs.resolve_run_dir(None, "01_set_size", "smoke")
    assert again != fresh and runs.latest_run("01_set_size", "smoke") == done
    assert store.runs_root() == root and store.runs_root(tmp_path) == tmp_path


@pytest.mark.parametrize("notebook, profile", [("../up", "smoke"), ("01", "a/b"), ("", "smoke"), ("latest", "q")])
def test_bad_run_names(tmp_path, notebook, profile):
    with pytest.raises(ValueError, match="notebook|profile"):
        runs.new_run_dir(notebook, profile, tmp_path)


# --------------------------------------------------------------------------------------
# provenance
# --------------------------------------------------------------------------------------
def test_provenance_keys_and_json(tmp_path):
    p = store.provenance({"sizes": np.array([4, 16]), "root": Path("/data"), "spec": object()})
    assert {"timestamp_utc", "git", "python", "platform", "packages", "device", "params"} <= set(p)
    assert {"torch", "numpy", "scipy", "pandas", "scikit-image", "papermill", "derain_utils"} <= set(p["packages"])
    assert p["packages"]["numpy"] == np.__version__ and p["packages"]["derain_utils"]
    assert p["device"].startswith(("cpu (", "cuda:", "mps"))
    assert p["params"]["sizes"] == [4, 16] and p["params"]["root"] == "/data" and "object" in p["params"]["spec"]
    if p["git"] is not None:  # the package lives in a git work tree in development
        assert set(p["git"]) == {"commit", "dirty"}
        assert p["git"]["commit"] is None or len(p["git"]["commit"]) == 40
    assert store.provenance(device="cpu")["device"].startswith("cpu (")
    path = runs.write_provenance(tmp_path, {"seed": 0}, note="test")
    back = json.loads(path.read_text())
    assert back["params"] == {"seed": 0} and back["note"] == "test"
    with pytest.raises(ValueError, match="params"):
        store.provenance(params=[1, 2])
