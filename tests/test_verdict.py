"""Bootstrap statistics and verdict records."""
from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from derain_utils import verdict
from derain_utils.verdict import DegenerateBootstrapWarning


def _table(n_seeds=5, n_images=8, sizes=(1, 2, 4, 8, 16, 32), slope=-1.0, noise=0.3, seed_sd=0.0,
           slope_sd=0.0, rng_seed=0) -> pd.DataFrame:
    """Tidy (seed, image, n, y) rows: y = slope_s * log2(n) + seed offset + image offset + noise."""
    rng = np.random.default_rng(rng_seed)
    image_fx = rng.normal(size=n_images)
    rows = []
    for s in range(n_seeds):
        off, b = seed_sd * rng.normal(), slope + slope_sd * rng.normal()
        for i in range(n_images):
            for n in sizes:
                rows.append({"seed": s, "image": f"img{i}", "n": n,
                             "y": b * np.log2(n) + off + image_fx[i] + noise * rng.normal()})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------
# Spearman
# --------------------------------------------------------------------------------------
def test_strong_negative_relation_is_found():
    df = _table(noise=0.05)
    r = verdict.spearman_bootstrap(df, "n", "y", within_cols="image")
    assert r["rho"] == pytest.approx(scipy.stats.spearmanr(df["n"], df["y"]).statistic)
    assert r["rho"] < -0.85
    lo, hi = r["ci95"]
    assert lo <= r["rho"] <= hi < 0
    assert (r["n"], r["n_clusters"], r["n_resamples"], r["n_dropped"]) == (len(df), 5, 2000, 0)
    assert verdict.reproduced_from_ci(r["ci95"], "negative")
    assert not verdict.reproduced_from_ci(r["ci95"], "positive")


def test_aggregated_means_give_rho_minus_one():
    df = _table(noise=0.05)
    r = verdict.spearman_bootstrap(df, "n", "y", aggregate="mean")
    means = df.groupby(["n", "seed"], as_index=False)["y"].mean()
    assert r["n"] == len(means) == 30
    assert r["rho"] == pytest.approx(scipy.stats.spearmanr(means["n"], means["y"]).statistic)
    assert r["rho"] < -0.95 and r["ci95"][1] < 0
    with pytest.raises(ValueError, match="within_cols cannot be combined"):
        verdict.spearman_bootstrap(df, "n", "y", aggregate="mean", within_cols="image")


def test_independent_noise_interval_contains_zero():
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"seed": np.repeat(np.arange(6), 40), "x": rng.normal(size=240), "y": rng.normal(size=240)})
    r = verdict.spearman_bootstrap(df, "x", "y")
    lo, hi = r["ci95"]
    assert lo < 0 < hi and abs(r["rho"]) < 0.2
    assert not verdict.reproduced_from_ci(r["ci95"], "negative")


def test_deterministic_for_a_seed():
    df = _table()
    a = verdict.spearman_bootstrap(df, "n", "y", within_cols="image", seed=7, n_resamples=500)
    b = verdict.spearman_bootstrap(df, "n", "y", within_cols="image", seed=7, n_resamples=500)
    c = verdict.spearman_bootstrap(df, "n", "y", within_cols="image", seed=8, n_resamples=500)
    assert a == b
    assert a["ci95"] != c["ci95"] and a["rho"] == c["rho"]


def test_identical_clusters_give_a_zero_width_interval():
    """Resampling whole clusters of identical copies always pools the same data: the interval collapses.

    Resampling rows (or images within clusters) does not, which shows that the clusters, not rows, are drawn.
    """
    one = _table(n_seeds=1, noise=0.5)
    df = pd.concat([one.assign(seed=s) for s in range(4)], ignore_index=True)
    r = verdict.spearman_bootstrap(df, "n", "y")
    assert r["ci95"][0] == pytest.approx(r["rho"]) and r["ci95"][1] == pytest.approx(r["rho"])
    rows = verdict.spearman_bootstrap(df, "n", "y", cluster_cols=())
    images = verdict.spearman_bootstrap(df, "n", "y", within_cols="image")
    for res in (rows, images):
        assert res["ci95"][1] - res["ci95"][0] > 0.01


def test_cluster_interval_is_wider_when_seeds_disagree():
    """Seeds with their own offset and slope make rows within a seed correlated; only a cluster bootstrap sees it."""
    df = _table(n_seeds=6, slope=-0.5, slope_sd=0.6, seed_sd=1.0, noise=0.2, rng_seed=0)
    cluster = verdict.spearman_bootstrap(df, "n", "y")
    iid = verdict.spearman_bootstrap(df, "n", "y", cluster_cols=())
    assert cluster["rho"] == iid["rho"]
    assert iid["n_clusters"] == len(df)
    width = lambda r: r["ci95"][1] - r["ci95"][0]  # noqa: E731
    assert width(cluster) > 2 * width(iid)


def test_one_cluster_warns_and_gives_nan_interval():
    df = _table(n_seeds=1)
    with pytest.warns(DegenerateBootstrapWarning, match="only 1 cluster"):
        r = verdict.spearman_bootstrap(df, "n", "y", within_cols="image", n_resamples=100)
    assert r["rho"] < -0.8 and r["n_clusters"] == 1
    assert all(math.isnan(b) for b in r["ci95"])
    assert not verdict.reproduced_from_ci(r["ci95"], "negative")


def test_constant_resamples_are_dropped_and_counted():
    """Clusters 1 and 2 have a constant x; a resample without cluster 0 has no defined rho."""
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"seed": np.repeat([0, 1, 2], 10),
                       "x": np.r_[np.arange(10.0), np.full(20, 4.0)], "y": rng.normal(size=30)})
    with pytest.warns(DegenerateBootstrapWarning, match="dropped"):
        r = verdict.spearman_bootstrap(df, "x", "y", return_distribution=True)
    dist = r["distribution"]
    assert r["n_dropped"] == int(np.isnan(dist).sum()) > 0
    # P(no cluster 0 among 3 draws) = (2/3)**3 = 0.296; 2000 draws put the count within +-0.06 of it
    assert abs(r["n_dropped"] / 2000 - (2 / 3) ** 3) < 0.06
    assert all(np.isfinite(r["ci95"]))
    lo, hi = r["ci95"]
    finite = dist[np.isfinite(dist)]
    assert lo == pytest.approx(np.quantile(finite, 0.025)) and hi == pytest.approx(np.quantile(finite, 0.975))


def test_unbalanced_design_works():
    df = _table().iloc[:-7]  # the last seed lost an image's rows: clusters and cells differ in size
    r = verdict.spearman_bootstrap(df, "n", "y", within_cols="image", n_resamples=300)
    assert r["n"] == len(df) and np.all(np.isfinite(r["ci95"])) and r["ci95"][1] < 0


def test_vectorised_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 4, size=(20, 30)).astype(float)
    y = rng.normal(size=(20, 30))
    expected = [scipy.stats.spearmanr(a, b).statistic for a, b in zip(x, y)]
    np.testing.assert_allclose(verdict._spearman_rows(x, y), expected, rtol=1e-12)
    assert np.isnan(verdict._spearman_rows(np.ones((1, 5)), y[:1, :5]))[0]


def _design(df, crossed):
    outer = verdict._codes(df, ["seed"])
    inner = verdict._codes(df, ["image"] if crossed else ["seed", "image"])
    return verdict._Design(outer, inner, crossed)


@pytest.mark.parametrize("crossed", [False, True])
def test_resamples_draw_whole_units_inside_drawn_clusters(crossed):
    df = _table(n_seeds=3, n_images=4, sizes=(1, 2))
    design = _design(df, crossed)
    assert design.balanced
    (chunk,) = list(design.draw(50, np.random.default_rng(0)))
    assert chunk.shape == (50, len(df))
    same_images = []
    for idx in chunk:
        block = df.iloc[idx]
        # every drawn cluster is a contiguous block of 4 images x 2 sizes; every unit keeps both sizes
        seeds = block["seed"].to_numpy().reshape(3, 8)
        assert (seeds == seeds[:, :1]).all()
        imgs = block["image"].to_numpy().reshape(3, 4, 2)
        assert (imgs == imgs[:, :, :1]).all() and (block["n"].to_numpy().reshape(3, 4, 2) == [1, 2]).all()
        same_images.append(all((imgs[k, :, 0] == imgs[0, :, 0]).all() for k in range(3)))
    # crossed: one image draw shared by all drawn seeds; nested: a fresh draw inside each seed
    assert all(same_images) if crossed else not any(same_images)


def test_bad_input_names_the_problem():
    df = _table()
    with pytest.raises(ValueError, match="'psnr'"):
        verdict.spearman_bootstrap(df, "n", "psnr")
    with pytest.raises(ValueError, match="'run'"):
        verdict.spearman_bootstrap(df, "n", "y", cluster_cols=("run",))
    bad = df.assign(y=df["y"].where(df.index != 3))
    with pytest.raises(ValueError, match="column 'y' has 1 NaN"):
        verdict.spearman_bootstrap(bad, "n", "y")
    with pytest.raises(ValueError, match="n_resamples"):
        verdict.spearman_bootstrap(df, "n", "y", n_resamples=0)
    with pytest.raises(ValueError, match="confidence"):
        verdict.spearman_bootstrap(df, "n", "y", confidence=95)
    with pytest.raises(ValueError, match="aggregate"):
        verdict.spearman_bootstrap(df, "n", "y", aggregate="max")
    with pytest.raises(ValueError, match="crossed=True needs within_cols"):
        verdict.spearman_bootstrap(df, "n", "y", crossed=True)


def test_other_confidence_levels_name_their_interval():
    r = verdict.spearman_bootstrap(_table(), "n", "y", confidence=0.8, n_resamples=400)
    r95 = verdict.spearman_bootstrap(_table(), "n", "y", n_resamples=400)
    assert "ci95" not in r and r["confidence"] == 0.8
    assert r95["ci95"][0] <= r["ci"][0] <= r["ci"][1] <= r95["ci95"][1]


# --------------------------------------------------------------------------------------
# mean differences and the generic bootstrap
# --------------------------------------------------------------------------------------
def test_mean_diff_exact_shift_has_zero_width_interval():
    df = _table()
    both = pd.concat([df.assign(model="a", y=df["y"] + 2.0), df.assign(model="b")], ignore_index=True)
    r = verdict.mean_diff_bootstrap(both, "y", "model", "a", "b", within_cols="image", n_resamples=300)
    assert r["effect"] == pytest.approx(2.0)
    assert r["ci95"] == pytest.approx([2.0, 2.0])
    assert (r["n_a"], r["n_b"], r["n_clusters"]) == (len(df), len(df), 5)


def test_mean_diff_with_noise_covers_the_truth_and_ignores_other_groups():
    rng = np.random.default_rng(2)
    rows = [{"seed": s, "model": m, "psnr": 30 + (1.0 if m == "a" else 0.0) + rng.normal()}
            for s in range(8) for m in ("a", "b", "c") for _ in range(10)]
    df = pd.DataFrame(rows)
    r = verdict.mean_diff_bootstrap(df, "psnr", "model", "a", "b")
    assert r["mean_a"] - r["mean_b"] == pytest.approx(r["effect"])
    assert r["ci95"][0] < 1.0 < r["ci95"][1] and r["ci95"][0] > 0
    assert r["n_a"] == r["n_b"] == 80
    with pytest.raises(ValueError, match="b='d' is not a value of column 'model'"):
        verdict.mean_diff_bootstrap(df, "psnr", "model", "a", "d")


def test_bootstrap_ci_iid_uses_scipy_and_is_deterministic():
    x = np.random.default_rng(0).normal(loc=3.0, size=200)
    r = verdict.bootstrap_ci(x, np.mean, seed=1)
    assert r["estimate"] == pytest.approx(x.mean())
    assert r["ci95"][0] < 3.0 < r["ci95"][1]
    ref = scipy.stats.bootstrap((x,), np.mean, n_resamples=2000, method="percentile",
                                rng=np.random.default_rng(1), vectorized=False)
    assert r["ci95"] == pytest.approx([ref.confidence_interval.low, ref.confidence_interval.high])
    assert verdict.bootstrap_ci(x, np.mean, seed=1) == r
    bca = verdict.bootstrap_ci(x, np.mean, method="BCa", n_resamples=500)
    assert bca["method"] == "BCa" and bca["ci95"][0] < 3.0 < bca["ci95"][1]


def test_bootstrap_ci_paired_and_grouped():
    rng = np.random.default_rng(4)
    x = rng.normal(size=60)
    y = x + 0.1 * rng.normal(size=60)
    corr = lambda a, b: scipy.stats.pearsonr(a, b).statistic  # noqa: E731
    r = verdict.bootstrap_ci((x, y), corr, n_resamples=300)
    assert r["ci95"][0] > 0.9 and r["n"] == 60
    groups = np.repeat(np.arange(6), 10)
    g = verdict.bootstrap_ci(x, np.mean, groups=groups, n_resamples=300)
    assert g["n_clusters"] == 6 and g["ci95"][0] < x.mean() < g["ci95"][1]
    # a cluster of identical copies: whole-cluster draws give a zero-width interval
    same = verdict.bootstrap_ci(np.tile(x[:10], 6), np.mean, groups=groups, n_resamples=200)
    assert same["ci95"] == pytest.approx([x[:10].mean()] * 2)
    with pytest.raises(ValueError, match="groups"):
        verdict.bootstrap_ci(x, np.mean, groups=groups[:5])
    with pytest.raises(ValueError, match="BCa"):
        verdict.bootstrap_ci(x, np.mean, groups=groups, method="BCa")
    with pytest.raises(ValueError, match="equal lengths"):
        verdict.bootstrap_ci((x, y[:5]), corr)


def test_bootstrap_ci_drops_undefined_resamples():
    x = np.r_[np.zeros(3), 1.0]

    def stat(a):  # undefined whenever the resample misses the single 1.0
        return 1.0 if a.max() > 0 else math.nan

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateBootstrapWarning)
        r = verdict.bootstrap_ci(x, stat, n_resamples=1000)
    # P(a resample of 4 misses the 1.0) = (3/4)**4 = 0.316
    assert abs(r["n_dropped"] / 1000 - 0.75 ** 4) < 0.06
    assert r["ci95"] == [1.0, 1.0] and r["method"] == "percentile"


# --------------------------------------------------------------------------------------
# decisions and formatting
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("ci, sign, expected", [
    ([-0.9, -0.2], "negative", True), ([-0.9, 0.1], "negative", False), ([0.1, 0.5], "positive", True),
    ([0.1, 0.5], -1, False), ([math.nan, -0.2], "negative", False), ([None, None], 1, False),
])
def test_reproduced_from_ci(ci, sign, expected):
    assert verdict.reproduced_from_ci(ci, sign) is expected


def test_reproduced_from_ci_bad_input():
    with pytest.raises(ValueError, match="expected_sign"):
        verdict.reproduced_from_ci([0.1, 0.2], "down")
    with pytest.raises(ValueError, match="low <= high"):
        verdict.reproduced_from_ci([0.3, 0.2], "positive")


def test_format_effect():
    assert verdict.format_effect("rho", -0.81234, [-0.95, -0.6]) == "rho = -0.812 [-0.950, -0.600]"
    assert verdict.format_effect("rho", math.nan, [None, None]) == "rho = nan [nan, nan]"


# --------------------------------------------------------------------------------------
# records
# --------------------------------------------------------------------------------------
def _fields(**over):
    f = dict(notebook="01_set_size", finding="Fewer backgrounds generalise better.", reproduced=np.bool_(True),
             statistic="spearman_rho", effect=np.float32(-0.75), ci95=np.array([-0.9, -0.5]), n_seeds=np.int64(3),
             profile="quick", summary="OOD PSNR falls as the training set grows.", wall_s=12.5,
             verdict="reproduced", p_value=np.float64(0.004), primary_outcome="excess_removal",
             primary_preset="pooled: slanted, long_wide, dense", n_models=np.int64(12))
    f.update(over)
    if "reproduced" in over and "verdict" not in over and over["reproduced"] is False:
        f["verdict"] = "inconclusive"
    return f


def test_verdict_round_trip(tmp_path):
    path = verdict.write_verdict(tmp_path / "run", **_fields(spearman_p=np.float64(0.01), sizes=(4, 16),
                                                              secondary={"gap": np.nan, "arr": np.arange(3)}))
    assert path == tmp_path / "run" / "verdict.json"
    raw = json.loads(path.read_text())
    assert raw["secondary"] == {"gap": None, "arr": [0, 1, 2]} and raw["sizes"] == [4, 16]
    assert list(raw)[:len(verdict.VERDICT_FIELDS)] == list(verdict.VERDICT_FIELDS)
    v = verdict.read_verdict(tmp_path / "run")
    assert v == verdict.read_verdict(path)
    assert v.reproduced is True and v.n_seeds == 3 and v.effect == pytest.approx(-0.75)
    assert v.ci95 == [-0.9, -0.5] and v.extra["spearman_p"] == 0.01
    assert v.label == "REPRODUCED" and v.result == "spearman_rho = -0.750 [-0.900, -0.500]"


def test_verdict_nan_is_stored_as_null_and_read_back(tmp_path):
    path = verdict.write_verdict(tmp_path, **_fields(effect=math.nan, ci95=[math.nan, math.nan], reproduced=False))
    text = path.read_text()
    assert "NaN" not in text and json.loads(text)["ci95"] == [None, None]
    v = verdict.read_verdict(path)
    assert math.isnan(v.effect) and all(math.isnan(b) for b in v.ci95)


@pytest.mark.parametrize("field", list(verdict.VERDICT_FIELDS))
def test_missing_field_is_named(tmp_path, field):
    f = _fields()
    del f[field]
    with pytest.raises(ValueError, match=f"missing required field.*'{field}'"):
        verdict.write_verdict(tmp_path, **f)
    assert not (tmp_path / "verdict.json").exists()


@pytest.mark.parametrize("field, value", [
    ("reproduced", "yes"), ("reproduced", 1), ("effect", "large"), ("effect", True), ("ci95", [0.1]),
    ("ci95", "[0, 1]"), ("ci95", [0.5, 0.1]), ("n_seeds", 2.5), ("n_seeds", -1), ("wall_s", -3.0),
    ("wall_s", None), ("finding", ""), ("summary", 3), ("notebook", None), ("profile", ["quick"]),
    ("verdict", "REPRODUCED"), ("verdict", "not reproduced"), ("verdict", "inconclusive"), ("p_value", 1.5),
    ("p_value", "0.01"), ("n_models", -1), ("n_models", 2.5), ("primary_outcome", ""), ("primary_preset", None),
])
def test_wrong_type_is_named(tmp_path, field, value):
    with pytest.raises(ValueError, match=field):
        verdict.write_verdict(tmp_path, **_fields(**{field: value}))


def test_unstorable_extra_field_is_named(tmp_path):
    with pytest.raises(ValueError, match="verdict.model"):
        verdict.write_verdict(tmp_path, **_fields(model=object()))


def test_read_verdict_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="verdict.json"):
        verdict.read_verdict(tmp_path)
    (tmp_path / "verdict.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        verdict.read_verdict(tmp_path)
    (tmp_path / "verdict.json").write_text(json.dumps({k: v for k, v in verdict.Verdict.from_dict(
        _fields()).to_dict().items() if k != "statistic"}))
    with pytest.raises(ValueError, match="'statistic'"):
        verdict.read_verdict(tmp_path)


def test_within_without_clusters_is_rejected():
    with pytest.raises(ValueError, match="within_cols needs cluster_cols"):
        verdict.spearman_bootstrap(_table(), "n", "y", cluster_cols=(), within_cols="image")
