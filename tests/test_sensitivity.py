"""The sensitivity table: every variant of the declared tests, the same rule, per-preset results."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from derain_utils.measure import baselines
from derain_utils.stats import inference, questions, sensitivity

SIZES = (4, 16, 64, 256)
UNSEEN = ("a", "b", "c")


def _frontier() -> baselines.Frontier:
    pts = []
    for p in (*UNSEEN, "small"):
        pts += [{"baseline": "identity", "preset": p, "bg_psnr": 80.0, "removal": 0.0},
                {"baseline": "gaussian_s1", "preset": p, "bg_psnr": 30.0, "removal": 0.3},
                {"baseline": "median_3", "preset": p, "bg_psnr": 34.0, "removal": 0.25}]
    return baselines.frontier(pd.DataFrame(pts))


def _rows(seed: int = 0) -> pd.DataFrame:
    """8 seeds x 4 set sizes: removal falls with N on a and b and rises on c; one image per preset."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(8):
        for i, n in enumerate(SIZES):
            key = f"m{s}_{n}"
            slope = {"a": -0.05, "b": -0.04, "c": +0.03, "small": 0.0}
            for p, k in slope.items():
                rows.append({"key": key, "seed": s, "n_train": n, "preset": p, "in_distribution": p == "small",
                             "removal": 0.5 + k * i + rng.normal(0, 0.005), "bg_psnr": 36.0})
    return pd.DataFrame(rows)


def _table(profile="quick", fit=None):
    decl = questions.declare_questions("01_set_size", "within_seed_trend", "negative", UNSEEN)
    return sensitivity.sensitivity(
        _rows(), _frontier(), decl, lambda m, y: inference.within_seed_trend(m, "n_train", y),
        train_presets="small", model_cols=("key", "seed", "n_train"), fit=fit, profile=profile)


def test_every_variant_under_the_same_rule():
    t = _table()
    assert list(t.columns) == list(sensitivity.SENSITIVITY_COLUMNS)
    paper = t[t["question"] == "paper"].set_index("variant")
    beyond = t[t["question"] == "beyond_fidelity"].set_index("variant")
    assert list(paper.index) == ["declared", "a alone", "b alone", "c alone", "without a", "without b", "without c"]
    assert list(beyond.index) == [*paper.index, "Gaussian-only frontier", "median-only frontier"]
    assert paper.loc["a alone", "verdict"] == "reproduced" and paper.loc["c alone", "verdict"] == "contradicted"
    # the pool with c left out goes the paper's way; c alone goes against it: the table says which choice matters
    assert paper.loc["without c", "effect"] < 0 and paper.loc["c alone", "effect"] > 0
    # a flat frontier at 36 dB: excess removal is removal minus a constant, so both questions agree here
    assert np.allclose(beyond.loc[paper.index, "effect"], paper["effect"])
    # Holm over the per-preset rows of each question, nowhere else
    alone = paper.index.str.endswith(" alone")
    assert np.allclose(paper.loc[alone, "p_holm"], inference.holm(list(paper.loc[alone, "p_value"])))
    assert paper.loc[~alone, "p_holm"].isna().all()
    assert (t["n_models"] == 32).all() and (t["n_seeds"] == 8).all()


def test_the_stall_rule_and_smoke_apply_to_every_row():
    keys = _rows()["key"].unique()
    fit = pd.DataFrame({"key": keys, "removal_fit": [0.0 if k.startswith("m0_") else 0.9 for k in keys]})
    t = _table(fit=fit)
    assert (t["n_models"] == 28).all() and (t["n_seeds"] == 7).all()  # seed 0 stalled: out of every row
    assert (_table(profile="smoke")["verdict"] == "inconclusive").all()


def test_per_preset_is_wide_and_bad_input_is_named():
    wide = sensitivity.per_preset(_table())
    assert list(wide.iloc[:, 0]) == ["a, b, c", "a", "b", "c"]
    assert {"effect (paper)", "effect (beyond_fidelity)", "p_value (paper)"} <= set(wide.columns)
    with pytest.raises(ValueError, match="sensitivity"):
        sensitivity.per_preset(pd.DataFrame({"x": [1]}))
    decl = questions.declare_questions("01_set_size", "within_seed_trend", "negative", UNSEEN)
    with pytest.raises(ValueError, match="lack question"):
        sensitivity.sensitivity(_rows(), _frontier(), {"paper": decl["paper"]}, lambda m, y: None,
                                train_presets="small", profile="quick")
