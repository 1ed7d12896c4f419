"""Model-level tests and the three-way verdict: known answers (brute force), invariants, determinism, bad input."""
from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from derain_utils.stats import inference

SIZES = [4, 16, 64, 256]


def _set_size_models(n_seeds=3, drop=0.13, sd=0.07, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_seeds):
        for j, n in enumerate(SIZES):
            rows.append({"seed": s, "n_train": n, "y": 0.33 - drop * j / 3 + rng.normal(0, sd)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- 01: within-seed trend
def test_trend_matches_brute_force_enumeration():
    df = _set_size_models(n_seeds=2, seed=4)
    df.loc[df.index[1], "y"] = df["y"].iloc[2]  # a tie inside seed 0
    r = inference.within_seed_trend(df, "n_train", "y")
    blocks = [g for _, g in df.groupby("seed")]
    obs = np.mean([scipy.stats.spearmanr(g["n_train"], g["y"]).statistic for g in blocks])
    null = []
    for p0 in itertools.permutations(range(4)):
        for p1 in itertools.permutations(range(4)):
            null.append(np.mean([scipy.stats.spearmanr(g["n_train"].to_numpy()[list(p)], g["y"]).statistic
                                 for g, p in zip(blocks, (p0, p1))]))
    null = np.array(null)
    assert r.exact and r.n_permutations == 24 ** 2
    assert r.effect == pytest.approx(obs)
    assert r.p_less == pytest.approx(np.mean(null <= obs + 1e-12))
    assert r.p_greater == pytest.approx(np.mean(null >= obs - 1e-12))


def _rank2(v):
    """2 x centred average ranks: exact integers."""
    r = scipy.stats.rankdata(v)
    return np.rint(2 * (r - r.mean())).astype(int)


@pytest.mark.parametrize("data_seed", range(6))
def test_trend_p_equals_full_enumeration_when_sums_tie_across_seeds(data_seed):
    # 5 seeds x 4 set sizes: 24^5 orderings. Many sums of per-seed rho tie in exact arithmetic (rho takes 10
    # values per seed); the enumeration here is in integers, so it is the truth to the last digit.
    rng = np.random.default_rng(data_seed)
    ys = [rng.normal(size=4) for _ in range(5)]
    x = np.array(SIZES, dtype=float)
    r = inference.trend_arrays([x] * 5, ys)
    per_seed = [[int(_rank2(x)[list(p)] @ _rank2(y)) for p in itertools.permutations(range(4))] for y in ys]
    obs = sum(int(_rank2(x) @ _rank2(y)) for y in ys)
    total = np.zeros(1, dtype=np.int64)
    for v in per_seed:
        total = (total[:, None] + np.array(v)[None, :]).ravel()
    assert r.exact and r.n_permutations == 24 ** 5
    assert r.p_less == pytest.approx(np.mean(total <= obs), abs=1e-12)
    assert r.p_greater == pytest.approx(np.mean(total >= obs), abs=1e-12)


def test_trend_p_equals_enumeration_with_unequal_seeds():
    # seeds of 3 and 4 models have different normalisers: rho itself is summed, ties kept by the tolerance
    rng = np.random.default_rng(11)
    xs = [np.array([4.0, 16, 64]), np.array([4.0, 16, 64, 256]), np.array([4.0, 16, 64, 256])]
    ys = [rng.normal(size=v.size) for v in xs]
    r = inference.trend_arrays(xs, ys)
    rhos = [[scipy.stats.spearmanr(x[list(p)], y).statistic for p in itertools.permutations(range(x.size))]
            for x, y in zip(xs, ys)]
    obs = sum(scipy.stats.spearmanr(x, y).statistic for x, y in zip(xs, ys))
    null = np.array([sum(c) for c in itertools.product(*rhos)])
    assert r.exact
    assert r.p_less == pytest.approx(np.mean(null <= obs + 1e-9), abs=1e-12)
    assert r.p_greater == pytest.approx(np.mean(null >= obs - 1e-9), abs=1e-12)


def test_trend_exact_p_agrees_with_a_large_monte_carlo_on_notebook_01s_design():
    # 8 seeds x 4 set sizes, as notebook 01: the exact p against 200,000 independent random orderings
    rng = np.random.default_rng(2)
    df = _set_size_models(n_seeds=8, drop=0.05, sd=0.07, seed=7)
    r = inference.within_seed_trend(df, "n_train", "y")
    blocks = [g.sort_values("n_train") for _, g in df.groupby("seed")]
    ry = np.array([scipy.stats.rankdata(g["y"]) for g in blocks])  # (8, 4)
    draws = 200_000
    perms = np.argsort(rng.random((draws, 8, 4)), axis=2) + 1.0  # random ranks of N within each seed
    rho = 1 - 6 * ((perms - ry[None]) ** 2).sum(axis=2) / (4 * 15)
    obs = np.mean([scipy.stats.spearmanr(g["n_train"], g["y"]).statistic for g in blocks])
    mc = np.mean(rho.mean(axis=1) <= obs + 1e-12)
    se = math.sqrt(r.p_less * (1 - r.p_less) / draws)
    assert r.exact and r.effect == pytest.approx(obs)
    assert abs(mc - r.p_less) < 4.5 * se


def test_paired_and_two_group_keep_exact_ties():
    # differences whose signed sums tie in exact arithmetic but not always in floating point (0.1 + 0.2 != 0.3)
    diffs = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    r = inference.paired_arrays(diffs)
    from fractions import Fraction
    exact = [Fraction(str(v)) for v in diffs]
    null = [sum(s * d for s, d in zip(signs, exact)) for signs in itertools.product([1, -1], repeat=6)]
    obs = sum(exact)
    assert r.p_greater == pytest.approx(np.mean([v >= obs for v in null]), abs=1e-12)
    mid = inference.paired_arrays(np.array([0.1, 0.2, -0.3, 0.4, -0.5, 0.6]))
    obs_mid = sum(Fraction(str(v)) for v in (0.1, 0.2, -0.3, 0.4, -0.5, 0.6))
    assert mid.p_greater == pytest.approx(np.mean([v >= obs_mid for v in null]), abs=1e-12)
    assert mid.p_less == pytest.approx(np.mean([v <= obs_mid for v in null]), abs=1e-12)
    y = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    g = inference.two_group_arrays(y, np.array([1, 0, 0, 1, 0, 1, 1, 0], bool))
    ys = [Fraction(str(v)) for v in y]
    sums = [sum(ys[i] for i in idx) for idx in itertools.combinations(range(8), 4)]
    obs_g = ys[0] + ys[3] + ys[5] + ys[6]
    assert g.p_greater == pytest.approx(np.mean([v >= obs_g for v in sums]), abs=1e-12)
    assert g.p_less == pytest.approx(np.mean([v <= obs_g for v in sums]), abs=1e-12)


def test_trend_known_extremes():
    df = _set_size_models()
    perfect = df.assign(y=-np.log(df["n_train"]))
    r = inference.within_seed_trend(perfect, "n_train", "y")
    assert r.effect == pytest.approx(-1.0)
    assert r.p_less == pytest.approx((1 / 24) ** 3) and r.min_p == pytest.approx((1 / 24) ** 3)
    assert r.p_greater == pytest.approx(1.0)
    assert r.ci95 == pytest.approx((-1.0, -1.0))
    assert (r.n_models, r.n_seeds, r.n_units) == (12, 3, 3)


def test_trend_invariances():
    df = _set_size_models(seed=1)
    r = inference.within_seed_trend(df, "n_train", "y", seed=5)
    shifted = df.assign(y=df["y"] + 10 * df["seed"])  # a seed effect cancels within seeds
    assert inference.within_seed_trend(shifted, "n_train", "y", seed=5) == r
    monotone = df.assign(y=np.exp(3 * df["y"]), n_train=np.log2(df["n_train"]))  # ranks only
    m = inference.within_seed_trend(monotone, "n_train", "y", seed=5)
    assert (m.effect, m.p_less, *m.ci95) == pytest.approx((r.effect, r.p_less, *r.ci95))
    assert inference.within_seed_trend(df.sample(frac=1, random_state=3), "n_train", "y", seed=5) == r
    # the interval resamples seeds: it lies within the range of the seeds' own rhos
    rhos = [scipy.stats.spearmanr(g["n_train"], g["y"]).statistic for _, g in df.groupby("seed")]
    assert min(rhos) - 1e-12 <= r.ci95[0] <= r.ci95[1] <= max(rhos) + 1e-12


def test_trend_drops_degenerate_seeds_and_nan():
    df = _set_size_models(n_seeds=3)
    df.loc[df["seed"] == 2, "y"] = 0.5  # constant outcome: no rho
    df.loc[0, "y"] = np.nan
    r = inference.within_seed_trend(df, "n_train", "y")
    assert r.n_seeds == 2 and r.n_models == 11
    assert any("NaN" in n for n in r.notes) and any("seed 2" in n for n in r.notes)
    empty = inference.within_seed_trend(df.assign(y=1.0), "n_train", "y")
    assert math.isnan(empty.effect) and math.isnan(empty.p_less) and empty.n_seeds == 0


def test_trend_monte_carlo_for_large_blocks_is_seeded():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"seed": np.repeat([0, 1], 10), "n": np.tile(np.arange(10), 2), "y": rng.normal(size=20)})
    a = inference.within_seed_trend(df, "n", "y", n_permutations=3000, seed=1)
    b = inference.within_seed_trend(df, "n", "y", n_permutations=3000, seed=1)
    assert a == b and not a.exact and a.n_permutations == 3000
    assert a.min_p == pytest.approx(1 / 3001) and 0 < a.p_less <= 1
    assert a.p_less + a.p_greater == pytest.approx(1 + 1 / 3001, abs=0.02)


# --------------------------------------------------------------------------- 02: categories
def _categories(means=(0.4, 0.3, 0.2, 0.1), per=3, sd=0.01, seed=0):
    rng = np.random.default_rng(seed)
    k = len(means)
    return pd.DataFrame({"background": np.repeat([f"c{i}" for i in range(k)], per),
                         "bpp": np.repeat(np.arange(k, dtype=float) + 10, per),
                         "y": np.repeat(means, per) + rng.normal(0, sd, k * per)})


def test_category_known_answers():
    r = inference.category_trend(_categories(), "bpp", "y")
    assert r.effect == pytest.approx(-1.0) and r.exact and r.n_permutations == 24
    assert r.p_less == pytest.approx(1 / 24) and r.min_p == pytest.approx(1 / 24)
    assert (r.n_units, r.n_seeds, r.n_models) == (4, 3, 12)
    up = inference.category_trend(_categories(means=(0.1, 0.2, 0.3, 0.4)), "bpp", "y")
    assert up.p_greater == pytest.approx(1 / 24)
    # brute force: all 24 assignments of the category means to the complexities
    df = _categories(means=(0.3, 0.35, 0.1, 0.2), sd=0.05, seed=2)
    r = inference.category_trend(df, "bpp", "y")
    means = df.groupby("background")["y"].mean().to_numpy()
    obs = scipy.stats.spearmanr(np.arange(4), means).statistic
    null = [scipy.stats.spearmanr(np.arange(4), means[list(p)]).statistic for p in itertools.permutations(range(4))]
    assert r.p_less == pytest.approx(np.mean(np.array(null) <= obs + 1e-12))


def test_category_says_when_its_bootstrap_interval_is_one_value():
    # models identical within each category: no resample can reorder the means, the interval is one value
    r = inference.category_arrays(np.array([1.0, 2, 3, 4]), [np.full(5, v) for v in (0.9, 0.7, 0.8, 0.1)])
    assert r.effect == pytest.approx(-0.8) and r.ci95 == pytest.approx((-0.8, -0.8))
    assert any("single value" in n and "11 values" in n for n in r.notes)
    noisy = inference.category_arrays(np.array([1.0, 2, 3, 4]),
                                      [v + np.random.default_rng(0).normal(0, 0.3, 8) for v in (0.9, 0.7, 0.8, 0.1)])
    assert noisy.ci95[0] < noisy.ci95[1] and not any("single value" in n for n in noisy.notes)


def test_category_bad_input_and_degenerate():
    df = _categories()
    bad = df.copy()
    bad.loc[0, "bpp"] = 99.0
    with pytest.raises(ValueError, match="one complexity value per category"):
        inference.category_trend(bad, "bpp", "y")
    two = inference.category_trend(df[df["background"].isin(["c0", "c1"])], "bpp", "y")
    assert math.isnan(two.effect) and "at least 3" in two.notes[-1]
    with pytest.raises(ValueError, match="lacks column"):
        inference.category_trend(df, "png_bpp", "y")
    with pytest.raises(ValueError, match="numeric"):
        inference.category_trend(df.assign(y="a"), "bpp", "y")


# --------------------------------------------------------------------------- 03: two groups
def test_two_group_matches_brute_force():
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"grp": ["simple"] * 4 + ["complex"] * 5, "y": rng.normal(size=9)})
    r = inference.two_group(df, "y", "grp", "simple", "complex")
    y = df["y"].to_numpy()
    null = []
    for idx in itertools.combinations(range(9), 4):
        m = np.zeros(9, bool)
        m[list(idx)] = True
        null.append(y[m].mean() - y[~m].mean())
    obs = y[:4].mean() - y[4:].mean()
    assert r.exact and r.n_permutations == math.comb(9, 4)
    assert r.effect == pytest.approx(obs)
    assert r.p_greater == pytest.approx(np.mean(np.array(null) >= obs - 1e-12))
    assert r.p_less == pytest.approx(np.mean(np.array(null) <= obs + 1e-12))
    assert r.n_seeds == 4


def test_two_group_three_per_group_cannot_reach_005():
    df = pd.DataFrame({"grp": ["a"] * 3 + ["b"] * 3, "y": [4.0, 5, 6, 1, 2, 3]})
    r = inference.two_group(df, "y", "grp", "a", "b")
    assert r.p_greater == pytest.approx(0.05) and r.min_p == pytest.approx(0.05)


def test_two_group_strata_permute_within_strata():
    df = pd.DataFrame({"grp": ["a", "b"] * 4, "n": [4, 4, 4, 4, 64, 64, 64, 64],
                       "y": [1.0, 0.0, 1.1, 0.1, 5.0, 4.0, 5.2, 4.1]})
    r = inference.two_group(df, "y", "grp", "a", "b", strata="n")
    assert r.exact and r.n_permutations == math.comb(4, 2) ** 2
    assert r.p_greater == pytest.approx(1 / 36)
    # without strata the large stratum effect swamps the group difference
    assert inference.two_group(df, "y", "grp", "a", "b").p_greater > r.p_greater


def test_two_group_bad_input():
    df = pd.DataFrame({"grp": ["a", "b"], "y": [1.0, 2.0]})
    with pytest.raises(ValueError, match="not a value"):
        inference.two_group(df, "y", "grp", "a", "c")
    with pytest.raises(ValueError, match="differ"):
        inference.two_group(df, "y", "grp", "a", "a")


# --------------------------------------------------------------------------- 04: paired
def test_paired_matches_brute_force():
    diffs = np.array([0.12, -0.03, 0.2, 0.05, 0.08])
    df = pd.DataFrame({"seed": np.repeat(range(5), 2), "n": [4, 256] * 5,
                       "y": np.ravel([[0.3 + d, 0.3] for d in diffs])})
    r = inference.paired(df, "y", "n", 4, 256)
    null = [np.mean(diffs * np.array(s)) for s in itertools.product([1, -1], repeat=5)]
    assert r.exact and r.n_permutations == 32
    assert r.effect == pytest.approx(diffs.mean())
    assert r.p_greater == pytest.approx(np.mean(np.array(null) >= diffs.mean() - 1e-12))
    all_up = inference.paired(df.assign(y=np.ravel([[1.0, 0.0]] * 5)), "y", "n", 4, 256)
    assert all_up.p_greater == pytest.approx(1 / 32) and all_up.min_p == pytest.approx(1 / 32)


def test_paired_incomplete_and_duplicate_pairs():
    df = pd.DataFrame({"seed": [0, 0, 1, 1, 2], "n": [4, 256, 4, 256, 4], "y": [1.0, 0, 1, 0, 1]})
    r = inference.paired(df, "y", "n", 4, 256)
    assert r.n_seeds == 2 and any("without both" in n for n in r.notes)
    dup = pd.concat([df, df.iloc[[0]]])
    with pytest.raises(ValueError, match="more than one model"):
        inference.paired(dup, "y", "n", 4, 256)


def test_array_functions_agree_with_frame_functions():
    df = _set_size_models(seed=9)
    blocks = [g for _, g in df.groupby("seed")]
    a = inference.trend_arrays([g["n_train"].to_numpy() for g in blocks], [g["y"].to_numpy() for g in blocks],
                               labels=[0, 1, 2], seed=2)
    assert a == inference.within_seed_trend(df, "n_train", "y", seed=2)
    with pytest.raises(ValueError, match="one entry per seed"):
        inference.trend_arrays([np.arange(4)], [np.arange(4), np.arange(4)])
    with pytest.raises(ValueError, match="one entry per model"):
        inference.two_group_arrays(np.arange(4.0), np.ones(3, bool))


@pytest.mark.parametrize("kw, match", [({"n_boot": 0}, "n_boot"), ({"seed": -1}, "seed"),
                                       ({"n_permutations": 1.5}, "n_permutations")])
def test_bad_counts(kw, match):
    with pytest.raises(ValueError, match=match):
        inference.within_seed_trend(_set_size_models(), "n_train", "y", **kw)


def test_models_must_be_a_frame():
    with pytest.raises(ValueError, match="DataFrame"):
        inference.within_seed_trend({"seed": [0]}, "n_train", "y")


# --------------------------------------------------------------------------- Holm
def test_holm_known_answers():
    assert inference.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert inference.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": float("nan")}) == pytest.approx(
        {"a": 0.04, "b": 0.09, "c": 0.09, "d": float("nan")}, nan_ok=True)
    assert inference.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert inference.holm([]) == []
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        inference.holm([1.5])
    with pytest.raises(ValueError, match="number"):
        inference.holm(["0.1"])


# --------------------------------------------------------------------------- declaration and verdict
def _decl(**kw):
    base = dict(notebook="01_set_size", design="within_seed_trend", direction="negative", presets=("long_wide",))
    return inference.Declaration(**{**base, **kw})


def _result(effect, ci, p_less, p_greater, n_seeds=3, min_p=1e-4, design="within_seed_trend"):
    return inference.TestResult(design=design, statistic=inference.STATISTICS[design], effect=effect, ci95=ci,
                                p_less=p_less, p_greater=p_greater, exact=True, n_permutations=13824, min_p=min_p,
                                n_models=4 * n_seeds, n_seeds=n_seeds, n_units=n_seeds, n_boot=4000)


def test_declaration():
    d = _decl(presets=["slanted", "long_wide", "dense"], exploratory="small")
    assert d.presets == ("slanted", "long_wide", "dense") and d.exploratory == ("small",)
    assert d.preset_label == "pooled: slanted, long_wide, dense"
    assert d.outcome == "excess_removal" and d.alpha == 0.05
    assert json.loads(json.dumps(d.to_dict()))["preset_label"] == d.preset_label
    for kw, match in [({"design": "anova"}, "design"), ({"direction": "down"}, "direction"),
                      ({"presets": ()}, "presets"), ({"presets": ("a", "a")}, "repeats"),
                      ({"exploratory": ("long_wide",)}, "both"), ({"outcome": "psnr"}, "outcome"),
                      ({"alpha": 0.7}, "alpha"), ({"notebook": ""}, "notebook")]:
        with pytest.raises(ValueError, match=match):
            _decl(**kw)


def test_verdict_rule():
    d = _decl()
    rep = inference.decide(_result(-0.6, (-0.9, -0.3), 0.003, 0.998), d, profile="quick")
    assert rep.verdict == "reproduced" and rep.reproduced is True and rep.p_value == 0.003
    assert rep.headline.startswith("Reproduced") and "long_wide" in rep.headline
    con = inference.decide(_result(0.6, (0.3, 0.9), 0.998, 0.003), d, profile="quick")
    assert con.verdict == "contradicted" and con.reproduced is False and con.p_opposite == 0.003
    assert con.headline.startswith("Contradicted")
    # significant p but an interval that includes 0: inconclusive
    mixed = inference.decide(_result(-0.3, (-0.6, 0.1), 0.02, 0.99), d, profile="quick")
    assert mixed.verdict == "inconclusive" and "includes 0" in mixed.reason
    # an interval that excludes 0 without a significant p: inconclusive
    assert inference.decide(_result(-0.3, (-0.6, -0.1), 0.2, 0.9), d, profile="quick").verdict == "inconclusive"
    # everything that cannot be a verdict
    assert inference.decide(_result(-0.6, (-0.9, -0.3), 0.003, 0.998, n_seeds=2), d,
                            profile="quick").reason.startswith("fewer than 3")
    smoke = inference.decide(_result(-0.6, (-0.9, -0.3), 0.003, 0.998), d, profile="smoke")
    assert smoke.verdict == "inconclusive" and "plumbing only" in smoke.headline
    nan = inference.decide(_result(float("nan"), (float("nan"), float("nan")), float("nan"), float("nan")), d,
                           profile="quick")
    assert nan.verdict == "inconclusive" and "could not be computed" in nan.reason
    assert inference.decide(None, d, profile="quick").verdict == "inconclusive"
    tight = inference.decide(_result(1.0, (0.5, 1.5), 1.0, 0.05, min_p=0.05, design="two_group"),
                             _decl(design="two_group", direction="positive"), profile="quick")
    assert tight.verdict == "inconclusive" and "cannot reach" in tight.reason


def test_verdict_record_is_json_ready():
    rec = inference.decide(_result(float("nan"), (float("nan"), 0.2), 0.5, 0.5), _decl(), profile="paper")
    d = rec.to_dict()
    text = json.dumps(d, allow_nan=False)
    for key in ("verdict", "reproduced", "p_value", "effect", "ci95", "primary_outcome", "primary_preset",
                "n_models", "n_seeds", "headline"):
        assert key in d
    assert json.loads(text)["ci95"] == [None, 0.2]


def test_verdict_bad_input():
    with pytest.raises(ValueError, match="Declaration"):
        inference.decide(None, {"design": "paired"}, profile="quick")
    with pytest.raises(ValueError, match="declared design"):
        inference.decide(_result(1.0, (0.5, 1.5), 1.0, 0.01), _decl(design="paired", direction="positive"),
                         profile="quick")
    with pytest.raises(ValueError, match="profile"):
        inference.decide(None, _decl(), profile="")


def test_decide_jointly_is_an_intersection_union_rule():
    d = _decl(design="two_group", direction="positive")
    rep = lambda p: inference.decide(_result(0.6, (0.3, 0.9), 1 - p, p, design="two_group"), d, profile="quick")  # noqa: E731
    con = lambda p: inference.decide(_result(-0.6, (-0.9, -0.3), p, 1 - p, design="two_group"), d, profile="quick")  # noqa: E731
    weak = inference.decide(_result(0.2, (-0.1, 0.5), 0.8, 0.2, design="two_group"), d, profile="quick")
    both = inference.decide_jointly({"main": rep(0.01), "probe": rep(0.03)}, primary="main")
    assert both.verdict == "reproduced" and both.reproduced and both.p_value == 0.03  # the larger p
    assert both.effect == 0.6 and both.ci95 == (0.3, 0.9) and both.test == "two_group"
    assert both.headline.startswith("Reproduced") and "intersection-union p = 0.03" in both.headline
    one = inference.decide_jointly({"main": rep(0.01), "probe": weak}, primary="main")
    assert one.verdict == "inconclusive" and not one.reproduced and "differ" in one.reason and one.p_value == 0.2
    assert "probe inconclusive" in one.headline
    none = inference.decide_jointly({"main": weak, "probe": weak}, primary="probe")
    assert none.verdict == "inconclusive" and "no co-primary test is conclusive" in none.reason
    assert inference.decide_jointly({"main": con(0.01), "probe": con(0.02)}, primary="main").verdict == "contradicted"
    assert inference.decide_jointly({"main": con(0.01), "probe": rep(0.02)}, primary="main").verdict == "inconclusive"
    # the primary's numbers are reported; the order of the others does not matter
    a = inference.decide_jointly({"main": rep(0.01), "probe": rep(0.04)}, primary="probe")
    b = inference.decide_jointly({"probe": rep(0.04), "main": rep(0.01)}, primary="probe")
    assert a.verdict == b.verdict and a.p_value == b.p_value == 0.04
    nan = inference.decide_jointly({"main": rep(0.01), "probe": inference.decide(None, d, profile="quick")},
                                   primary="main")
    assert nan.verdict == "inconclusive" and math.isnan(nan.p_value)
    smoke = {n: inference.decide(_result(0.6, (0.3, 0.9), 0.99, 0.01, design="two_group"), d, profile="smoke")
             for n in ("main", "probe")}
    s = inference.decide_jointly(smoke, primary="main")
    assert s.verdict == "inconclusive" and s.headline.startswith("Inconclusive (plumbing only)")
    json.dumps(both.to_dict(), allow_nan=False)


def test_decide_jointly_bad_input():
    d = _decl(design="two_group", direction="positive")
    r = inference.decide(None, d, profile="quick")
    with pytest.raises(ValueError, match="non-empty"):
        inference.decide_jointly({}, primary="main")
    with pytest.raises(ValueError, match="primary"):
        inference.decide_jointly({"a": r}, primary="main")
    with pytest.raises(ValueError, match="VerdictRecord"):
        inference.decide_jointly({"a": r, "b": 0.05}, primary="a")
    with pytest.raises(ValueError, match="profiles"):
        inference.decide_jointly({"a": r, "b": inference.decide(None, d, profile="paper")}, primary="a")


def test_end_to_end_on_a_real_shaped_table():
    """A set-size sweep with a clear drop in 5 seeds is reproduced; the same data with N shuffled is not."""
    df = _set_size_models(n_seeds=5, drop=0.3, sd=0.03, seed=11)
    r = inference.within_seed_trend(df, "n_train", "y")
    assert inference.decide(r, _decl(), profile="quick").verdict == "reproduced"
    rng = np.random.default_rng(0)
    shuffled = df.assign(n_train=df.groupby("seed")["n_train"].transform(lambda v: rng.permutation(v.to_numpy())))
    flat = df.assign(y=rng.normal(0, 0.05, len(df)))
    assert inference.decide(inference.within_seed_trend(flat, "n_train", "y"), _decl(),
                            profile="quick").verdict != "reproduced"
    assert inference.within_seed_trend(shuffled, "n_train", "y").effect > r.effect
