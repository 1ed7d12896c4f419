"""derain_utils.measure.dynamics: reading learning curves (the runs that make them are tested in test_experiments)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from derain_utils.measure import dynamics, metric_table


def test_the_curve_metrics_are_in_the_metric_table():
    assert set(dynamics.MODEL_CURVE_METRICS) <= set(metric_table.METRICS)


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
