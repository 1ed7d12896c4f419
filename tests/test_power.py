"""Calibration of the verdict rule by simulation, power, and the sample sizes it implies.

The default suite checks, for every notebook's design with 3 and 8 seeds, that the rule
says "reproduced" at most 5% of the time under the null (within Monte-Carlo error),
and that the check can fail: the old rule (interval only) fails it. Larger
simulations (more data sets, several noise levels, unequal variances) are marked slow.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from derain_utils.stats import inference, power

ALPHA = inference.ALPHA


def _limit(n_sims: int) -> float:
    """Largest false-positive rate consistent with a true rate of 5% (3 Monte-Carlo standard errors)."""
    return ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / n_sims)


@pytest.mark.parametrize("design", list(power.SIM_DESIGNS))
@pytest.mark.parametrize("n_seeds, sd", [(3, 0.05), (8, 0.10)])
def test_false_positive_rate_at_most_5_percent(design, n_seeds, sd):
    r = power.rates(design, n_seeds, effect=0.0, n_sims=800, sd_model=sd, seed=100 + n_seeds)
    assert r["reproduced"] <= _limit(800), r
    assert r["contradicted"] <= _limit(800), r


def test_the_calibration_check_can_fail():
    """The interval-only rule that this module replaces says 'reproduced' about 10% of the time under the null."""
    data = power.simulate("set_size", 800, 3, effect=0.0, sd_model=0.07, seed=5)
    hits = 0
    for i, y in enumerate(data):
        r = inference.trend_arrays([np.asarray(power.SET_SIZES, float)] * 3, list(y), n_boot=500, seed=i)
        hits += r.ci95[1] < 0
    assert hits / 800 > _limit(800)


def test_simulate_shapes_and_effects():
    y = power.simulate("set_size", 4000, 3, effect=0.13, sd_model=0.07, seed=1)
    assert y.shape == (4000, 3, 4)
    drop = (y[..., 0] - y[..., -1]).mean()
    assert drop == pytest.approx(0.13, abs=0.01)
    assert power.simulate("category", 10, 3, n_categories=7).shape == (10, 3, 7)
    assert power.simulate("paired", 10, 5).shape == (10, 5, 2)
    a = power.simulate("two_group", 50, 4, effect=0.2, seed=3)
    assert np.array_equal(a, power.simulate("two_group", 50, 4, effect=0.2, seed=3))
    # model-to-model sd of the model means: sd_model and the residual mean over images x presets
    y0 = power.simulate("two_group", 20000, 1, sd_model=0.07, sd_image=0.0, sd_resid=0.1, seed=2)
    assert y0[:, 0, 1].std() == pytest.approx(math.sqrt(0.07 ** 2 + 0.1 ** 2 / 24), rel=0.03)


@pytest.mark.parametrize("kw, match", [
    ({"design": "anova"}, "design"), ({"n_sims": 0}, "n_sims"), ({"sd_model": -1.0}, "sd_model"),
    ({"sd_model": [0.1, 0.1]}, "sd_model"), ({"sizes": (16, 4)}, "sizes"), ({"effect": float("nan")}, "effect"),
    ({"n_categories": 2, "design": "category"}, "n_categories"),
])
def test_simulate_bad_input(kw, match):
    args = {"design": "set_size", "n_sims": 10, "n_seeds": 3, **kw}
    with pytest.raises(ValueError, match=match):
        power.simulate(args.pop("design"), args.pop("n_sims"), args.pop("n_seeds"), **args)


def test_power_rises_with_effect_and_seeds():
    null = power.power("set_size", 3, 0.0, n_sims=400, seed=1)
    three = power.power("set_size", 3, 0.13, n_sims=400, seed=1)
    six = power.power("set_size", 6, 0.13, n_sims=400, seed=1)
    assert null < 0.1 < three < six


def test_seeds_for_power_scans_upward():
    res = power.seeds_for_power("paired", 1.0, sd_model=0.05, n_sims=200, max_seeds=8)
    # a huge effect: the smallest seed count whose sign-flip test can reach p < 0.05 (5 seeds: 1/32)
    assert res["seeds_needed"] == 5
    assert res["curve"][3] == 0.0 and res["curve"][4] == 0.0 and res["curve"][5] >= 0.8
    none = power.seeds_for_power("set_size", 0.0, n_sims=100, max_seeds=4)
    assert none["seeds_needed"] is None and list(none["curve"]) == [3, 4]
    with pytest.raises(ValueError, match="target"):
        power.seeds_for_power("set_size", 0.1, target=1.2)


def test_pairs_for_power():
    few = power.pairs_for_power(0.13, 0.0, 0.2, 6, n_sims=300, max_pairs=2000, seed=1)
    assert few["pairs_needed"] is not None and few["power"] >= 0.8 and few["power_limit"] == 1.0
    noisy = power.pairs_for_power(0.13, 0.0, 0.4, 6, n_sims=300, max_pairs=2000, seed=1)
    assert noisy["pairs_needed"] > few["pairs_needed"]  # a noisier image level needs more pairs
    hopeless = power.pairs_for_power(0.13, 0.3, 0.2, 6, n_sims=300, seed=1)
    assert hopeless["pairs_needed"] is None and "model-to-model spread" in hopeless["reason"]
    assert hopeless["power_limit"] < 0.8
    three = power.pairs_for_power(0.13, 0.0, 0.2, 3, n_sims=300, seed=1)
    assert three["pairs_needed"] is None and "cannot reach" in three["reason"] and "1/8" in three["reason"]
    with pytest.raises(ValueError, match="sd_model"):
        power.pairs_for_power(0.13, -0.1, 0.2, 6)
    with pytest.raises(ValueError, match="effect"):
        power.pairs_for_power(float("inf"), 0.1, 0.2, 6)


def test_variance_components_recover_known_values():
    rng = np.random.default_rng(0)
    n_models, n_images = 60, 40
    rows = []
    for g, shift in (("few", 0.3), ("many", 0.1)):  # a large group difference must not count as model spread
        u = rng.normal(0, 0.07, n_models)
        v = rng.normal(0, 0.1, n_images)
        for m in range(n_models):
            for i in range(n_images):
                rows.append({"group": g, "key": f"{g}{m}", "image": f"i{i}",
                             "removal": shift + u[m] + v[i] + rng.normal(0, 0.1)})
    df = pd.DataFrame(rows)
    vc = power.variance_components(df, "removal", group="group")
    assert vc["sd_model"] == pytest.approx(0.07, rel=0.2)
    assert vc["sd_resid"] == pytest.approx(0.1, rel=0.05)
    assert vc["sd_image"] == pytest.approx(0.1, rel=0.35)
    assert (vc["n_models"], vc["n_images"], vc["n_groups"]) == (120, 40, 2)
    with pytest.raises(ValueError, match="unbalanced"):
        power.variance_components(df.iloc[1:], "removal", group="group")
    with pytest.raises(ValueError, match="more than one value"):
        power.variance_components(pd.concat([df, df.iloc[[0]]]), "removal", group="group")
    with pytest.raises(ValueError, match="lack column"):
        power.variance_components(df, "excess_removal")


def test_a_clipped_variance_component_is_reported_as_clipped():
    # no model effect at all and few models: the model mean square falls below the residual's for this seed
    rng = np.random.default_rng(3)
    rows = [{"key": f"m{m}", "image": f"i{i}", "y": rng.normal(0, 0.1)} for m in range(3) for i in range(4)]
    vc = power.variance_components(pd.DataFrame(rows), "y")
    assert vc["ms_model"] < vc["ms_resid"]
    assert vc["sd_model_clipped"] and vc["sd_model"] == 0.0
    big = power.variance_components(pd.DataFrame([{**r, "y": r["y"] + 0.5 * int(r["key"][1:])} for r in rows]), "y")
    assert not big["sd_model_clipped"] and big["sd_model"] > 0


def test_paired_power_from_the_measured_seed_to_seed_sd():
    assert power.paired_power(0.3, 0.05, 8, n_sims=200, n_boot=200) == pytest.approx(1.0)
    null = power.paired_power(0.0, 0.07, 8, n_sims=400, n_boot=200, seed=1)
    assert null <= 0.08  # the rule's false-positive rate
    mid = power.paired_power(0.05, 0.07, 8, n_sims=400, n_boot=200, seed=1)
    assert null < mid < 1.0
    assert power.paired_power(0.1, 0.0, 8) == 1.0 and power.paired_power(0.1, 0.0, 3) == 0.0  # 1/8 > 0.05
    with pytest.raises(ValueError, match="sd_diff"):
        power.paired_power(0.1, -1.0, 8)


# --------------------------------------------------------------------------- bigger simulations
@pytest.mark.slow
@pytest.mark.parametrize("design", list(power.SIM_DESIGNS))
@pytest.mark.parametrize("n_seeds", [3, 5, 8, 10])
@pytest.mark.parametrize("sd", [0.05, 0.10])
def test_false_positive_rate_large(design, n_seeds, sd):
    r = power.rates(design, n_seeds, effect=0.0, n_sims=4000, sd_model=sd, sd_seed=0.05, seed=7 + n_seeds)
    assert r["reproduced"] <= _limit(4000), r
    assert r["contradicted"] <= _limit(4000), r


@pytest.mark.slow
@pytest.mark.parametrize("n_seeds", [3, 8])
def test_false_positive_rate_unequal_variances(n_seeds):
    """Models trained on few backgrounds vary more from seed to seed (sd 0.10 at N = 4, 0.05 at N = 256)."""
    r = power.rates("set_size", n_seeds, effect=0.0, n_sims=4000, sd_model=[0.10, 0.083, 0.067, 0.05], seed=3)
    assert r["reproduced"] <= _limit(4000), r
