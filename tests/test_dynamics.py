"""derain_utils.dynamics: schedules, identity, scoring, the cached dynamics runs and reading the curves."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from derain_utils import dynamics, experiments, metrics, training
from derain_utils.experiments import ExperimentConfig

# A deliberately tiny experiment (as in test_experiments): 2-layer x 4-channel ResNet, 6 steps on 16 px crops.
TINY = dict(arch="resnet", model_size="tiny", model_kwargs={"depth": 2, "width": 4}, background="gradient",
            n_train=2, tile=24, patch=16, steps=6, batch_size=2, eval_presets=("small", "dense"), n_test=2,
            test_size=32, ckpt_every=3)
POINTS = 3


def tiny(**kw) -> ExperimentConfig:
    return ExperimentConfig(**{**TINY, **kw})


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


# --------------------------------------------------------------------------- schedule and identity


def test_eval_steps_known_answers_and_bad_input():
    assert dynamics.eval_steps(500, 5) == [100, 200, 300, 400, 500]
    assert dynamics.eval_steps(7, 3) == [2, 5, 7]
    assert dynamics.eval_steps(4, 4) == [1, 2, 3, 4]
    for steps in (10, 33, 1000):
        for points in (1, 3, 10):
            s = dynamics.eval_steps(steps, points)
            assert len(s) == points and s[-1] == steps and all(np.diff([0, *s]) > 0)
    with pytest.raises(ValueError, match="points"):
        dynamics.eval_steps(5, 6)
    with pytest.raises(ValueError, match="points"):
        dynamics.eval_steps(5, 0)
    with pytest.raises(ValueError, match="steps"):
        dynamics.eval_steps(True, 1)


def test_key_depends_on_config_points_and_version(monkeypatch):
    k = dynamics.dynamics_key(tiny(), POINTS)
    assert len(k) == 16 and int(k, 16) >= 0
    assert k == dynamics.dynamics_key(tiny(), POINTS)
    assert k != dynamics.dynamics_key(tiny(), POINTS + 1)
    assert k != dynamics.dynamics_key(tiny(seed=1), POINTS)
    assert k != tiny().key()
    monkeypatch.setattr(dynamics, "DYNAMICS_VERSION", dynamics.DYNAMICS_VERSION + 1)
    assert k != dynamics.dynamics_key(tiny(), POINTS)
    with pytest.raises(ValueError, match="config"):
        dynamics.dynamics_key({"arch": "resnet"}, POINTS)


# --------------------------------------------------------------------------- scoring


def _eval_set(n: int = 3, size: int = 32):
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.uniform(0.1, 0.5, (n, 3, size, size)).astype(np.float32))
    return images, training.make_eval_set(images, ["small", "dense"], seed=7)


def test_score_of_the_identity_is_known():
    images, es = _eval_set()
    df = dynamics.score(Identity(), es, train_spec="small")
    assert list(df.columns) == list(dynamics.CURVE_COLUMNS[1:])
    assert len(df) == 3 * 3 and list(df["preset"].unique()) == ["small", "dense", "clean"]
    rainy = df[df["preset"] != "clean"]
    assert np.allclose(rainy["removal"], 0.0)  # doing nothing removes nothing
    clean = df[df["preset"] == "clean"]
    assert np.all(clean["psnr"] == metrics.PSNR_CAP) and clean["removal"].isna().all()
    for p, e in es.items():  # the identity scores the rainy input's PSNR
        expect = [metrics.psnr(e.background[i], e.rainy[i]) for i in range(3)]
        np.testing.assert_allclose(df.loc[df["preset"] == p, "psnr"], expect, rtol=0, atol=1e-6)
    assert df.loc[df["preset"] == "small", "in_distribution"].all()
    assert not df.loc[df["preset"] == "dense", "in_distribution"].any()
    assert df.loc[df["preset"] == "clean", "in_distribution"].isna().all()


def test_score_matches_training_evaluate():
    images, es = _eval_set()
    torch.manual_seed(0)
    from derain_utils import models

    model = models.build_model("resnet", in_channels=3, size="tiny", tail_scale=1.0)
    ours = dynamics.score(model, es, train_spec="small", names=["a", "b", "c"])
    ref = training.evaluate(model, images, ["small", "dense"], seed=7, train_spec="small", names=["a", "b", "c"])
    assert list(ours["image"]) == list(ref["image"]) and list(ours["preset"]) == list(ref["preset"])
    for col in ("psnr", "rain_psnr", "bg_psnr", "removal", "mask_fraction"):
        np.testing.assert_allclose(ours[col].to_numpy(float), ref[col].to_numpy(float), rtol=0, atol=1e-6,
                                   equal_nan=True, err_msg=col)


def test_score_bad_input():
    _, es = _eval_set()
    with pytest.raises(ValueError, match="eval_set"):
        dynamics.score(Identity(), {})
    with pytest.raises(ValueError, match="names"):
        dynamics.score(Identity(), es, names=["only one"])


# --------------------------------------------------------------------------- runs and cache


def test_run_dynamics_trains_the_experiments_model_and_caches(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    cfg = tiny()
    res = dynamics.run_dynamics(cfg, POINTS, cache_root=root)
    assert not res.cached and res.dir == root / dynamics.DYNAMICS_DIR / res.key
    assert sorted(res.curve["step"].unique()) == [0, *dynamics.eval_steps(cfg.steps, POINTS)]
    assert len(res.curve) == (POINTS + 1) * cfg.n_test * (len(cfg.eval_presets) + 1)
    assert list(res.curve.columns) == list(dynamics.CURVE_COLUMNS)
    assert list(res.history["step"])[-1] == cfg.steps
    stored = json.loads((res.dir / "config.json").read_text())
    assert stored["eval_steps"] == [0, 2, 4, 6] and stored["experiment_key"] == cfg.key()

    # scoring during training does not change training: the final model is the experiment's, bitwise
    exp = experiments.run(cfg, cache_root=root, progress=False)
    a, b = res.load_model().state_dict(), exp.load_model().state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    last = res.curve[res.curve["step"] == cfg.steps].reset_index(drop=True)
    for col in ("psnr", "removal", "bg_psnr", "rain_psnr"):
        np.testing.assert_allclose(last[col].to_numpy(float), exp.eval[col].to_numpy(float), rtol=0, atol=1e-9,
                                   equal_nan=True, err_msg=col)

    # a second call reads the cache and trains nothing
    monkeypatch.setattr(training, "train", lambda *a, **k: pytest.fail("trained again"))
    again = dynamics.run_dynamics(cfg, POINTS, cache_root=root)
    assert again.cached
    pd.testing.assert_frame_equal(again.curve, res.curve)
    assert dynamics.load_dynamics(cfg, POINTS + 1, cache_root=root) is None  # other points: another entry
    assert dynamics.load_dynamics(cfg.replace(seed=5), POINTS, cache_root=root) is None


def test_a_damaged_entry_is_recomputed(tmp_path):
    root = tmp_path / "cache"
    cfg = tiny()
    res = dynamics.run_dynamics(cfg, POINTS, cache_root=root)
    curve = res.dir / "curve.csv"
    curve.write_text(curve.read_text().replace("small", "smell", 1))
    assert dynamics.load_dynamics(cfg, POINTS, cache_root=root) is None
    redo = dynamics.run_dynamics(cfg, POINTS, cache_root=root)
    assert not redo.cached
    pd.testing.assert_frame_equal(redo.curve, res.curve)
    (redo.dir / "manifest.json").unlink()
    assert dynamics.load_dynamics(cfg, POINTS, cache_root=root) is None
    assert not list((root / dynamics.DYNAMICS_DIR).glob(".*.tmp"))  # no temporary folder left behind


def test_run_dynamics_bad_input(tmp_path):
    with pytest.raises(ValueError, match="points"):
        dynamics.run_dynamics(tiny(), 7, cache_root=tmp_path)  # more points than steps
    with pytest.raises(ValueError, match="config"):
        dynamics.run_dynamics("resnet", POINTS, cache_root=tmp_path)


def test_sweep_dynamics_returns_one_table_and_dedupes(tmp_path):
    root = tmp_path / "cache"
    configs = [tiny(seed=0), tiny(seed=1), tiny(seed=0)]
    df = dynamics.sweep_dynamics(configs, POINTS, cache_root=root, progress=False)
    assert set(df["seed"]) == {0, 1} and df["key"].nunique() == 2
    assert list(df.columns[:4]) == ["key", "experiment_key", "name", "arch"]
    assert set(df["experiment_key"]) == {tiny(seed=0).key(), tiny(seed=1).key()}
    assert len(df) == 2 * (POINTS + 1) * TINY["n_test"] * 3
    with pytest.raises(ValueError, match="configs"):
        dynamics.sweep_dynamics([], POINTS, cache_root=root)
    with pytest.raises(ValueError, match="workers"):
        dynamics.sweep_dynamics(configs, POINTS, cache_root=root, workers=0)
    with pytest.raises(ValueError, match=r"configs\[0\]"):
        dynamics.sweep_dynamics(["x"], POINTS, cache_root=root)


def test_process_pool_matches_inline(tmp_path):
    configs = [tiny(seed=2), tiny(seed=3)]
    a = dynamics.sweep_dynamics(configs, POINTS, cache_root=tmp_path / "a", progress=False)
    b = dynamics.sweep_dynamics(configs, POINTS, cache_root=tmp_path / "b", workers=2, progress=False)
    pd.testing.assert_frame_equal(a, b)


# --------------------------------------------------------------------------- reading the curves


def _curve_table() -> pd.DataFrame:
    """Two models (seeds) of one background; removal rises to 0.8 (ID) and 0.4 (OOD), seed 1 lower by 0.1."""
    rows = []
    for seed in (0, 1):
        for step in (0, 10, 20, 30):
            frac = step / 30
            for img in ("a", "b"):
                for preset, in_dist, final in (("small", True, 0.8), ("slanted", False, 0.4), ("dense", False, 0.4)):
                    rows.append({"key": f"k{seed}", "background": "noise", "n_train": 4, "seed": seed, "step": step,
                                 "image": img, "preset": preset, "in_distribution": in_dist,
                                 "removal": final * frac - 0.1 * seed, "bg_psnr": 40.0 - 10 * frac,
                                 "rain_psnr": 20.0, "psnr": 30.0})
                rows.append({"key": f"k{seed}", "background": "noise", "n_train": 4, "seed": seed, "step": step,
                             "image": img, "preset": "clean", "in_distribution": pd.NA, "removal": np.nan,
                             "bg_psnr": np.nan, "rain_psnr": np.nan, "psnr": 50.0})
    df = pd.DataFrame(rows)
    df["in_distribution"] = df["in_distribution"].astype("boolean")
    return df


def test_model_curves_known_answer():
    mc = dynamics.model_curves(_curve_table())
    assert list(mc.columns) == ["key", "background", "n_train", "seed", "step", *dynamics.MODEL_CURVE_METRICS]
    assert len(mc) == 2 * 4
    row = mc[(mc["seed"] == 1) & (mc["step"] == 30)].iloc[0]
    assert row["removal_id"] == pytest.approx(0.7) and row["removal_ood"] == pytest.approx(0.3)
    assert row["bg_psnr"] == pytest.approx(30.0) and row["clean_psnr"] == pytest.approx(50.0)
    with pytest.raises(ValueError, match="removal"):
        dynamics.model_curves(_curve_table().drop(columns=["removal"]))
    with pytest.raises(ValueError, match="nope"):
        dynamics.model_curves(_curve_table(), by=["nope"])


def test_crossing_and_half_rise_known_answers():
    steps = [0, 10, 20, 30]
    assert dynamics.crossing_step(steps, [0.0, 0.2, 0.6, 0.8], 0.4) == pytest.approx(15.0)
    assert dynamics.crossing_step(steps, [0.5, 0.2, 0.6, 0.8], 0.4) == 0.0  # starts above
    assert math.isnan(dynamics.crossing_step(steps, [0.0, 0.1, 0.1, 0.2], 0.5))  # never reached
    assert dynamics.half_rise_step(steps, [0.0, 0.2, 0.6, 0.8]) == pytest.approx(15.0)  # level 0.4
    assert dynamics.half_rise_step(steps, [10.0, 30.0, 30.0, 30.0]) == pytest.approx(5.0)  # level 20
    assert math.isnan(dynamics.half_rise_step(steps, [40.0, 38.0, 35.0, 30.0]))  # falls: not learned
    assert math.isnan(dynamics.half_rise_step(steps, [0.0, 0.02, 0.04, 0.05], min_rise=0.1))
    with pytest.raises(ValueError, match="increasing"):
        dynamics.crossing_step([0, 10, 5], [0, 1, 2], 0.5)
    with pytest.raises(ValueError, match="same length"):
        dynamics.half_rise_step([0, 1], [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        dynamics.half_rise_step([0, 1, 2], [0.0, np.nan, 1.0])


def test_learning_summary_and_gap_known_answers():
    mc = dynamics.model_curves(_curve_table())
    s = dynamics.learning_summary(mc)
    assert len(s) == 1
    r = s.iloc[0]
    assert r["n_seeds"] == 2
    # seed-mean ID removal: 0.8 * step / 30 - 0.05, linear: half of its change is covered at step 15
    assert r["removal_id_start"] == pytest.approx(-0.05) and r["removal_id_final"] == pytest.approx(0.75)
    assert r["removal_id_t_half"] == pytest.approx(15.0) and r["removal_ood_t_half"] == pytest.approx(15.0)
    assert math.isnan(r["bg_psnr_t_half"]) and r["bg_psnr_change"] == pytest.approx(-10.0)  # falls
    assert r["first"] in ("removal_id", "removal_ood")
    flat = dynamics.learning_summary(mc, ("bg_psnr",))
    assert flat.iloc[0]["first"] == "none"
    gap = dynamics.removal_gap(mc)
    assert list(gap["gap"]) == pytest.approx([0.4, 0.4]) and set(gap["step"]) == {30}
    mid = dynamics.removal_gap(mc, step=10)
    assert list(mid["removal_id"]) == pytest.approx([0.8 / 3, 0.8 / 3 - 0.1])
    with pytest.raises(ValueError, match="step=15"):
        dynamics.removal_gap(mc, step=15)
    with pytest.raises(ValueError, match="removal_ood"):
        dynamics.removal_gap(mc.drop(columns=["removal_ood"]))
    with pytest.raises(ValueError, match="nope"):
        dynamics.learning_summary(mc, ("nope",))
