"""derain_utils.book.notebook: the start and the end every notebook shares (known answers, files, the one record)."""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import pandas as pd
import pytest

from derain_utils.book import notebook, runs
from derain_utils.lab import profiles
from derain_utils.stats import inference, questions, verdict


def test_profile_knobs_rain_roles_and_background(monkeypatch):
    assert notebook.profile("smoke", steps=0, seeds=[], gray=False) is profiles.resolve("smoke")
    p = notebook.profile("smoke", steps=12, seeds="[0, 1]", gray=True)
    assert (p.steps, p.seeds, p.gray) == (12, (0, 1), True)
    train, presets, in_dist, ood = notebook.rain_roles(profiles.resolve("quick"))
    assert (train, in_dist, ood) == ("small", ["small"], ["slanted", "long_wide", "dense"]) and len(presets) == 4
    with pytest.raises(ValueError, match="at least one OOD rain"):
        notebook.rain_roles(profiles.resolve("smoke", eval_presets=["small"]))
    monkeypatch.delenv("DERAIN_DATA", raising=False)
    assert notebook.training_background("auto", None) == "deadleaves"
    assert notebook.training_background("blobs", None) == "blobs"


def test_start_and_finish_write_the_three_files_and_one_record(tmp_path, capsys):
    t0 = time.perf_counter()
    nb = notebook.start("01_set_size", "A finding.", "smoke", str(tmp_path / "run"), t0=t0,
                        params={"PROFILE": "smoke"}, profile={"steps": 3}, models={"m": "k"})
    assert nb.dir == tmp_path / "run" and (nb.dir / runs.PROVENANCE_FILE).is_file()
    (nb.dir / "fig_b.png").write_bytes(b"png")
    (nb.dir / "fig_a.png").write_bytes(b"png")
    results = pd.DataFrame({"seed": [0, 1], "y": [0.5, float("nan")]})
    rec = _record("quick", 0.05)
    with pytest.raises(ValueError, match=r"\['n_train'\]"):
        notebook.finish(nb, results, ["seed", "n_train"], record=rec, summary="S.")
    v = notebook.finish(nb, results, ["seed", "y"], tables={"extra.csv": results}, record=rec, summary="It fell.",
                        effect_of="rho of y", n_list=[2, 8])
    saved = json.loads((nb.dir / verdict.VERDICT_FILE).read_text())
    assert list(saved)[:len(verdict.VERDICT_FIELDS)] == list(verdict.VERDICT_FIELDS)
    assert list(saved)[-3:] == ["effect_of", "n_list", "figures"]  # the record's fields, extra in order, figures last
    assert saved["effect"] == pytest.approx(rec.effect) and saved["ci95"] == pytest.approx(list(rec.ci95))
    assert saved["notebook"] == "01_set_size"
    assert saved["figures"] == ["fig_a.png", "fig_b.png"] and saved["wall_s"] >= 0
    assert verdict.read_verdict(nb.dir) == v
    pd.testing.assert_frame_equal(pd.read_csv(nb.dir / runs.RESULTS_FILE), results)
    assert (nb.dir / "extra.csv").is_file()
    prov = json.loads((nb.dir / runs.PROVENANCE_FILE).read_text())
    assert prov["params"] == {"PROFILE": "smoke"} and prov["models"] == {"m": "k"} and prov["profile"] == {"steps": 3}
    assert "verdict.json" in prov["outputs"] and prov["wall_s"] == pytest.approx(v.wall_s)
    out = capsys.readouterr().out
    assert out.startswith("01_set_size [smoke]: REPRODUCED as the paper measured it: ")
    assert "(32 models, 8 seeds)" in out
    assert not [p for p in os.listdir(nb.dir) if p.endswith(".tmp")]


def _record(profile: str, shift: float) -> inference.VerdictRecord:
    """The three-way verdict of a within-seed trend on made-up model means (8 seeds x 4 set sizes)."""
    rows = [{"seed": s, "n_train": n, "excess_removal": 0.3 - shift * i + 0.01 * ((s * 7 + i * 3) % 5)}
            for s in range(8) for i, n in enumerate((4, 16, 64, 256))]
    decl = inference.Declaration("01_set_size", "within_seed_trend", "negative", presets=("slanted", "dense"))
    res = inference.within_seed_trend(pd.DataFrame(rows), "n_train", "excess_removal", seed=0)
    return inference.decide(res, decl, profile=profile)


@pytest.mark.parametrize("profile, shift, expected", [("quick", 0.05, "reproduced"), ("quick", -0.05, "contradicted"),
                                                      ("quick", 0.0, "inconclusive"), ("smoke", 0.05, "inconclusive")])
def test_finish_writes_the_three_way_verdict_of_a_record(tmp_path, capsys, profile, shift, expected):
    nb = notebook.start("01_set_size", "A finding.", profile, str(tmp_path / "run"), params={"PROFILE": profile})
    rec = _record(profile, shift)
    v = notebook.finish(nb, pd.DataFrame({"seed": [0]}), ["seed"], record=rec, summary="S.", note="kept")
    saved = json.loads((nb.dir / verdict.VERDICT_FILE).read_text())
    assert saved["verdict"] == expected and saved["reproduced"] is (expected == "reproduced")
    assert saved["n_models"] == 32 and saved["n_seeds"] == 8 and saved["primary_outcome"] == "excess_removal"
    assert saved["primary_preset"] == "pooled: slanted, dense" and saved["test"] == "within_seed_trend"
    assert saved["headline"] == rec.headline and saved["reason"] == rec.reason and saved["note"] == "kept"
    assert (saved["p_value"] is None) == (not math.isfinite(rec.p_value))
    assert v.label == expected.upper() and capsys.readouterr().out.startswith(f"01_set_size [{profile}]: {v.label}")


def test_a_record_is_built_in_one_place_from_a_verdict_record_only(tmp_path):
    nb = notebook.NotebookRun("01_x", "F.", "quick", Path(tmp_path), t0=time.perf_counter())
    v = notebook.verdict_record(nb, record=_record("quick", 0.05), summary="S.")
    assert (v.notebook, v.profile, v.verdict, v.n_models) == ("01_x", "quick", "reproduced", 32)
    assert v.extra["figures"] == [] and v.extra["test"] == "within_seed_trend"
    with pytest.raises(ValueError, match="VerdictRecord"):
        notebook.verdict_record(nb, record={"verdict": "reproduced"}, summary="S.")
    with pytest.raises(TypeError, match="record"):
        notebook.verdict_record(nb, summary="S.")


def test_training_background_prefers_natural_photos(tmp_path, monkeypatch):
    """With bg_natural in the data folder, notebooks 01, 03 and 04 train on it; without, on dead leaves."""
    from PIL import Image

    monkeypatch.delenv("DERAIN_DATA", raising=False)
    folder = tmp_path / "bg_natural"
    folder.mkdir()
    Image.new("RGB", (64, 64), (90, 120, 30)).save(folder / "a.png")
    assert notebook.training_background("auto", tmp_path) == "natural"
    (tmp_path / "empty").mkdir()
    assert notebook.training_background("auto", tmp_path / "empty") == "deadleaves"
    assert notebook.training_background("skimage", tmp_path) == "skimage"


def _two_records(paper_shift: float, beyond_shift: float) -> tuple[inference.VerdictRecord, inference.VerdictRecord]:
    rows = [{"seed": s, "n_train": n, "removal": 0.3 - paper_shift * i + 0.01 * ((s * 7 + i * 3) % 5),
             "excess_removal": 0.1 - beyond_shift * i + 0.01 * i * (1 if s % 2 else -1)}
            for s in range(8) for i, n in enumerate((4, 16, 64, 256))]
    decl = questions.declare_questions("01_set_size", "within_seed_trend", "negative", ("slanted", "dense"))
    return tuple(inference.decide(inference.within_seed_trend(pd.DataFrame(rows), "n_train", decl[q].outcome),
                                  decl[q], profile="quick") for q in ("paper", "beyond_fidelity"))


@pytest.mark.parametrize("paper_shift, beyond_shift, words", [
    (0.05, 0.05, "Reproduced as the paper measured it (raw removal of unseen rain), and reproduced beyond"),
    (0.05, 0.0, "Reproduced as the paper measured it (raw removal of unseen rain); not shown beyond a fixed filter"),
    (0.05, -0.05, "Reproduced as the paper measured it (raw removal of unseen rain); beyond a fixed filter of equal "
                  "background fidelity (excess removal), the effect goes against the paper (contradicted"),
    (-0.05, 0.0, "Contradicted as the paper measured it"),
])
def test_finish_writes_both_declared_questions(tmp_path, paper_shift, beyond_shift, words):
    paper, beyond = _two_records(paper_shift, beyond_shift)
    assert (paper.primary_outcome, beyond.primary_outcome) == ("removal", "excess_removal")
    nb = notebook.start("01_set_size", "A finding.", "quick", str(tmp_path / "run"), params={"PROFILE": "quick"})
    v = notebook.finish(nb, pd.DataFrame({"seed": [0]}), ["seed"], record=paper, beyond=beyond, summary="S.")
    saved = json.loads((nb.dir / verdict.VERDICT_FILE).read_text())
    assert saved["verdict"] == paper.verdict and saved["verdict_beyond_fidelity"] == beyond.verdict
    assert saved["primary_outcome"] == "removal" and saved["beyond_fidelity"]["primary_outcome"] == "excess_removal"
    assert saved["beyond_fidelity"]["p_value"] == pytest.approx(beyond.p_value)
    assert saved["headline"].startswith(words) and saved["headline_paper"] == paper.headline
    assert verdict.read_verdict(nb.dir).verdict_beyond_fidelity == beyond.verdict == v.verdict_beyond_fidelity
    with pytest.raises(ValueError, match="beyond must be"):
        notebook.verdict_record(nb, record=paper, beyond="reproduced", summary="S.")


def test_the_verdict_box_says_both_verdicts_in_plain_words_and_smoke_is_plumbing(tmp_path):
    paper, beyond = _two_records(0.05, -0.05)
    nb = notebook.NotebookRun("01_x", "More backgrounds, less removal.", "quick", Path(tmp_path), t0=time.perf_counter())
    box = notebook.verdict_box(notebook.verdict_record(nb, record=paper, beyond=beyond, summary="S."))
    first, as_measured, beyond_line = box.splitlines()
    assert first == "**Verdict** (quick profile, 32 models, 8 seeds). *Finding:* More backgrounds, less removal."
    assert as_measured.startswith("- **As the paper measured it** (removal): 🟢 reproduced: mean within-seed")
    assert beyond_line.startswith("- **Beyond fidelity** (excess_removal): 🔴 contradicted: ")
    assert beyond_line.endswith(f"one-sided p = {beyond.p_opposite:.2g} against the paper's direction")
    smoke = notebook.verdict_box(notebook.verdict_record(nb.__class__("01_x", "F.", "smoke", Path(tmp_path),
                                                                     t0=time.perf_counter()),
                                                         record=_record("smoke", 0.05), summary="S."))
    assert smoke.startswith("**Verdict: none (smoke run, plumbing only).**") and "nan" not in smoke


def test_pages_show_the_run_folder_relative_to_the_runs_root(tmp_path, monkeypatch, capsys):
    """was: every page carried the absolute path of the machine that ran it"""
    monkeypatch.setenv("DERAIN_RUNS", str(tmp_path / "runs"))
    nb = notebook.start("01_set_size", "A finding.", "quick", "", params={"PROFILE": "quick"})
    assert nb.shown_dir == f"<runs>/quick/01_set_size/{nb.dir.name}" and str(tmp_path) not in nb.shown_dir
    notebook.finish(nb, pd.DataFrame({"seed": [0]}), ["seed"], record=_record("quick", 0.05), summary="S.")
    out = capsys.readouterr().out
    assert nb.shown_dir in out and str(tmp_path) not in out
    elsewhere = notebook.NotebookRun("01_x", "F.", "quick", tmp_path / "mine" / "run7", t0=time.perf_counter())
    assert elsewhere.shown_dir == ".../run7"
