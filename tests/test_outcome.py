"""The primary outcome per model and the stall rule: known answers, invariants, bad input."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from derain_utils.measure import baselines, metrics, outcome, scoring
from derain_utils.synth import backgrounds

PRESETS = ["small", "slanted", "long_wide"]
UNSEEN = ["slanted", "long_wide"]


@pytest.fixture(scope="module")
def eval_set():
    images = backgrounds.draw_split("blobs", 0, 4, test_size=48, seed=0).test_tensor()
    return scoring.make_eval_set(images, PRESETS, seed=3)


@pytest.fixture(scope="module")
def front(eval_set):
    return baselines.frontier_of(eval_set)


@pytest.fixture(scope="module")
def model_rows(eval_set):
    """Evaluation rows of four 'models': the identity, two fixed filters and a perfect derainer."""
    chosen = [baselines.IDENTITY, baselines.Baseline("median", 5), baselines.Baseline("gaussian", 0.6)]
    rows = baselines.baseline_rows(eval_set, chosen, whole_image=False).drop(
        columns=["family", "param", "blend"]).rename(columns={"baseline": "key"})
    perfect = rows[rows["key"] == "identity"].assign(key="perfect")
    rainy = perfect["preset"] != "clean"
    perfect.loc[rainy, "removal"] = 1.0
    perfect.loc[rainy, "bg_psnr"] = metrics.PSNR_CAP
    out = pd.concat([rows, perfect], ignore_index=True)
    out["seed"] = 0
    return out


def test_model_table_known_answers(model_rows, front):
    t = outcome.model_table(model_rows, front, model_cols="key")
    assert set(t["preset"]) == set(PRESETS)  # the clean rows are ignored
    assert (t["n_images"] == 4).all()
    ident = t[t["key"] == "identity"]
    assert np.allclose(ident["excess_removal"], 0.0, atol=1e-12)
    assert (ident["frontier_range"] == "inside").all()
    perfect = t[t["key"] == "perfect"]
    assert np.allclose(perfect["excess_removal"], 1.0)
    assert (perfect["frontier_range"] == "above").all()
    median = t[t["key"] == "median_5"]  # a baseline of the sweep: on or under the frontier
    assert (median["excess_removal"] <= 1e-12).all()
    assert np.allclose(t["excess_removal"], t["removal"] - t["frontier_removal"])


def test_primary_outcome_is_the_equal_weight_mean_over_presets(model_rows, front):
    t = outcome.model_table(model_rows, front, model_cols="key").set_index(["key", "preset"])
    p = outcome.primary_outcome(model_rows, front, UNSEEN, model_cols="key")
    assert p.name == outcome.PRIMARY_OUTCOME
    for key in ["identity", "perfect", "median_5", "gaussian_s0.6"]:
        expect = np.mean([t.loc[(key, q), "excess_removal"] for q in UNSEEN])
        assert p[key] == pytest.approx(expect)
    one = outcome.primary_outcome(model_rows, front, "long_wide", model_cols="key")
    assert one["median_5"] == pytest.approx(t.loc[("median_5", "long_wide"), "excess_removal"])
    # order of the presets and of the rows does not matter
    shuffled = model_rows.sample(frac=1.0, random_state=0)
    pd.testing.assert_series_equal(
        outcome.primary_outcome(shuffled, front, UNSEEN[::-1], model_cols="key").sort_index(), p.sort_index())


def test_outcome_table(model_rows, front):
    o = outcome.outcome_table(model_rows, front, model_cols=("key", "seed")).set_index("key")
    assert set(outcome.OUTCOME_COLUMNS) <= set(o.columns)
    p = outcome.primary_outcome(model_rows, front, UNSEEN, model_cols=("key", "seed"))
    assert np.allclose(o.loc[p.index.get_level_values("key"), "excess_removal"], p.to_numpy())
    assert o.loc["perfect", "removal"] == pytest.approx(1.0)
    assert o.loc["perfect", "removal_ratio"] == pytest.approx(1.0)
    assert o.loc["perfect", "excess_removal_train"] == pytest.approx(1.0)
    assert np.isnan(o.loc["identity", "removal_ratio"])  # no training-rain removal: ratio undefined
    assert not o["stalled"].any() and o["removal_fit"].isna().all()  # no training fit: no stall rule
    keys = list(o.index.unique())
    fit = pd.DataFrame({"key": keys, "removal_fit": [0.0 if k == "identity" else 0.9 for k in keys]})
    with_fit = outcome.outcome_table(model_rows, front, model_cols=("key", "seed"), fit=fit).set_index("key")
    assert bool(with_fit.loc["identity", "stalled"]) and not bool(with_fit.loc["perfect", "stalled"])
    assert with_fit.loc["perfect", "removal_fit"] == pytest.approx(0.9)
    # the rule reads only the training fit: the outcome columns are the same with and without it
    pd.testing.assert_frame_equal(with_fit.drop(columns=["removal_fit", "stalled"]),
                                  o.drop(columns=["removal_fit", "stalled"]))
    with pytest.raises(ValueError, match="no row for 1 model"):
        outcome.outcome_table(model_rows, front, model_cols=("key", "seed"), fit=fit.iloc[1:])
    with pytest.raises(ValueError, match="must include it"):
        outcome.outcome_table(model_rows.rename(columns={"key": "k"}), front, model_cols=("k", "seed"), fit=fit)
    med = o.loc["median_5"]
    assert med["removal_ratio"] == pytest.approx(med["removal"] / med["removal_train"])
    explicit = outcome.outcome_table(model_rows, front, presets=UNSEEN, train_presets="small",
                                     model_cols=("key", "seed")).set_index("key")
    pd.testing.assert_frame_equal(explicit, o)


def test_frontier_per_test_set(model_rows, eval_set):
    rows = baselines.baseline_rows(eval_set, baselines.TABLE_BASELINES, whole_image=False)
    two = baselines.frontier(pd.concat([rows.assign(test_set="own"), rows.assign(test_set="common")]),
                             by=("test_set", "preset"))
    models = pd.concat([model_rows.assign(test_set="own"), model_rows.assign(test_set="common")])
    o = outcome.outcome_table(models, two, model_cols="key")
    assert len(o) == 2 * model_rows["key"].nunique() and set(o["test_set"]) == {"own", "common"}
    own = o[o["test_set"] == "own"].set_index("key")["excess_removal"]
    common = o[o["test_set"] == "common"].set_index("key")["excess_removal"]
    pd.testing.assert_series_equal(own, common)


def test_stall_rule():
    assert outcome.STALL_MIN_FIT == 0.25
    assert outcome.is_stalled(0.05) and outcome.is_stalled(float("nan")) and not outcome.is_stalled(0.5)
    assert not outcome.is_stalled(0.25)
    s = outcome.is_stalled(pd.Series([0.0, 0.3, np.nan], index=["a", "b", "c"]))
    assert list(s) == [True, False, True] and list(s.index) == ["a", "b", "c"]
    assert list(outcome.is_stalled(np.array([0.24, 0.26]))) == [True, False]


def test_stall_report():
    o = pd.DataFrame({"n_train": [4, 4, 4, 256, 256, 256], "name": list("abcdef"),
                      "removal_fit": [0.8, 0.02, 0.7, 0.9, 0.85, np.nan]})
    o["stalled"] = outcome.is_stalled(o["removal_fit"])
    rep = outcome.stall_report(o, "n_train", name_col="name").set_index("n_train")
    assert list(rep["n_models"]) == [3, 3]
    assert list(rep["n_stalled"]) == [1, 1]
    assert rep.loc[4, "stall_rate"] == pytest.approx(1 / 3)
    assert rep.loc[4, "stalled_models"] == ["b"] and rep.loc[256, "stalled_models"] == ["f"]
    # the rule is applied from removal_fit when there is no stalled column
    pd.testing.assert_frame_equal(outcome.stall_report(o.drop(columns="stalled"), ["n_train"]),
                                  outcome.stall_report(o, ["n_train"]))


def test_bad_input(model_rows, front):
    with pytest.raises(ValueError, match="DataFrame"):
        outcome.model_table(model_rows.to_dict(), front)
    with pytest.raises(ValueError, match="lacks column"):
        outcome.model_table(model_rows.drop(columns="bg_psnr"), front, model_cols="key")
    with pytest.raises(ValueError, match="Frontier"):
        outcome.model_table(model_rows, "frontier", model_cols="key")
    with pytest.raises(ValueError, match="share"):
        outcome.model_table(model_rows, front, model_cols=("key", "preset"))
    with pytest.raises(ValueError, match="no group"):
        outcome.model_table(model_rows.assign(preset=model_rows["preset"].replace("small", "dense")), front,
                            model_cols="key")
    with pytest.raises(ValueError, match="not in the rows"):
        outcome.primary_outcome(model_rows, front, "dense", model_cols="key")
    with pytest.raises(ValueError, match="clean"):
        outcome.primary_outcome(model_rows, front, ["clean"], model_cols="key")
    with pytest.raises(ValueError, match="repeats"):
        outcome.primary_outcome(model_rows, front, ["slanted", "slanted"], model_cols="key")
    partial = model_rows[~((model_rows["key"] == "perfect") & (model_rows["preset"] == "long_wide"))]
    with pytest.raises(ValueError, match="lack some of the presets"):
        outcome.primary_outcome(partial, front, UNSEEN, model_cols="key")
    with pytest.raises(ValueError, match="in_distribution"):
        outcome.outcome_table(model_rows.drop(columns="in_distribution"), front, model_cols="key")
    with pytest.raises(ValueError, match="stalled"):
        outcome.stall_report(pd.DataFrame({"n": [1]}), "n")
    control = model_rows.copy()
    control.loc[(control["key"] == "perfect") & (control["preset"] == "slanted"), "in_distribution"] = True
    with pytest.raises(ValueError, match="differs between models"):
        outcome.outcome_table(control, front, model_cols="key")
    fewer = model_rows[model_rows["image"] != model_rows["image"].iloc[0]]
    with pytest.raises(ValueError, match="same test images"):
        outcome.model_table(fewer, front, model_cols="key")


def test_pooled_weights_presets_or_images(model_rows, front):
    eq = outcome.pooled(model_rows, front, UNSEEN, model_cols="key")
    assert np.allclose(eq["excess_removal"], outcome.primary_outcome(model_rows, front, UNSEEN, model_cols="key"))
    # drop images of one preset for every model and frontier alike: image weights follow the counts
    t = outcome.model_table(model_rows, front, model_cols="key").set_index(["key", "preset"])
    by_img = outcome.pooled(model_rows, front, UNSEEN, model_cols="key", weights="images")
    n = t["n_images"]
    for key in by_img.index:
        w = np.array([n[(key, p)] for p in UNSEEN], float)
        v = np.array([t.loc[(key, p), "removal"] for p in UNSEEN])
        assert by_img.loc[key, "removal"] == pytest.approx((w * v).sum() / w.sum())
    with pytest.raises(ValueError, match="weights"):
        outcome.pooled(model_rows, front, UNSEEN, model_cols="key", weights="sets")


def test_pooled_by_images_weighs_a_small_set_less():
    # set "two" has 2 pairs, set "eight" 8: by images, "two" weighs 2/10; by sets, 1/2
    sizes = {"two": 2, "eight": 8}
    base = pd.DataFrame([{"baseline": b, "preset": p, "image": f"{p}{i}", "bg_psnr": bg, "removal": rm}
                         for p, n in sizes.items() for i in range(n)
                         for b, bg, rm in (("identity", 80.0, 0.0), ("gaussian_s1", 30.0, 0.2))])
    front = baselines.frontier(base)
    rows = pd.DataFrame([{"key": "m", "preset": p, "image": f"{p}{i}", "bg_psnr": 40.0,
                          "removal": 0.9 if p == "two" else 0.1} for p, n in sizes.items() for i in range(n)])
    by_set = outcome.pooled(rows, front, ["two", "eight"], model_cols="key")
    by_img = outcome.pooled(rows, front, ["two", "eight"], model_cols="key", weights="images")
    assert by_set.loc["m", "removal"] == pytest.approx(0.5)
    assert by_img.loc["m", "removal"] == pytest.approx((2 * 0.9 + 8 * 0.1) / 10)
    assert by_img.loc["m", "excess_removal"] == pytest.approx((2 * 0.9 + 8 * 0.1) / 10)  # frontier 0 at 40 dB
