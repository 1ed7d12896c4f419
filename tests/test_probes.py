"""derain_utils.measure.probes: equal-PSNR outputs, probes, the decomposition of whole-image PSNR, cached models."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from derain_utils.lab import experiments, profiles, sweeps
from derain_utils.measure import metrics, probes, scoring
from derain_utils.synth import rain


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Flat(nn.Module):
    """Outputs a flat image of one value: a perfect derainer of rain on that grey."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, self.value)


def _textured(size: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 0.4, (size, size, 3))


def _rain(size: int = 48, seed: int = 3, preset: str = "small") -> torch.Tensor:
    r, _ = rain.synthesize(preset, size, 1, seed)
    return r[0]  # (1, H, W)


# --------------------------------------------------------------------------- equal-PSNR outputs


def test_equal_psnr_outputs_match_and_fail_oppositely():
    b, r = _textured(), _rain()
    out = probes.equal_psnr_outputs(b, r, leave=0.5, blur_sigma=2.0)
    assert metrics.psnr(out["background"], out["leaves_rain"]) == pytest.approx(
        metrics.psnr(out["background"], out["blurs_background"]), abs=1e-4)
    assert out["psnr"] == pytest.approx(metrics.psnr(out["background"], out["leaves_rain"]))
    assert out["input_psnr"] < out["psnr"] < metrics.PSNR_CAP and 0 < out["blend"] <= 1
    mask = (r[0] > rain.MASK_THRESHOLD).numpy()
    d1 = metrics.decoupled(out["background"], out["rainy"], out["leaves_rain"], mask)
    d2 = metrics.decoupled(out["background"], out["rainy"], out["blurs_background"], mask)
    # b + r <= 0.4 + 1 may clip, so removal of "leaves half" is about 1 - 0.5**2 = 0.75
    assert d1["removal"] == pytest.approx(0.75, abs=0.05)
    assert d2["removal"] > 0.9 > d1["removal"]
    assert d1["bg_psnr"] > d2["bg_psnr"] + 10  # leaving rain spares the background; blurring does not
    # torch (C, H, W) input gives the same result as numpy (H, W, C)
    again = probes.equal_psnr_outputs(torch.from_numpy(b).permute(2, 0, 1), r[0].numpy())
    np.testing.assert_allclose(again["blurs_background"], out["blurs_background"], atol=1e-6)


def test_equal_psnr_outputs_without_clipping_is_exact():
    b = _textured() * 0.5  # <= 0.2, and rain <= 0.6: no clipping, so removal = 1 - leave**2 exactly
    r = _rain() * 0.6 / float(_rain().max())
    out = probes.equal_psnr_outputs(b, r, leave=0.3, blur_sigma=1.5)
    mask = (r[0] > rain.MASK_THRESHOLD).numpy()
    d1 = metrics.decoupled(out["background"], out["rainy"], out["leaves_rain"], mask)
    assert d1["removal"] == pytest.approx(1 - 0.3 ** 2, abs=1e-5)


def test_equal_psnr_outputs_bad_input():
    b, r = _textured(), _rain()
    with pytest.raises(ValueError, match="blur_sigma"):
        probes.equal_psnr_outputs(np.full((48, 48, 3), 0.3), r)  # a flat image does not blur
    with pytest.raises(ValueError, match="blur_sigma"):
        probes.equal_psnr_outputs(b, r, blur_sigma=0)
    with pytest.raises(ValueError, match="leave"):
        probes.equal_psnr_outputs(b, r, leave=1.0)
    with pytest.raises(ValueError, match="rain_layer"):
        probes.equal_psnr_outputs(b, r[:, :10])
    with pytest.raises(ValueError, match="rain_layer adds nothing"):
        probes.equal_psnr_outputs(b, torch.zeros(1, 48, 48))
    with pytest.raises(ValueError, match="background"):
        probes.equal_psnr_outputs(b * 3, r)


# --------------------------------------------------------------------------- probes


def _probe_set(n: int = 2, size: int = 32) -> probes.ProbeSet:
    rng = np.random.default_rng(1)
    own = torch.from_numpy(rng.uniform(0.2, 0.6, (n, 3, size, size)).astype(np.float32))
    unseen = rng.uniform(0.0, 1.0, (n + 1, size, size, 3)).astype(np.float32)  # numpy NHWC works too
    return probes.make_probes(own, unseen, ["small", "long_wide"], seed=3, unseen_source="noise")


def test_probes_of_the_identity_and_of_a_perfect_grey_model():
    ps = _probe_set()
    assert ps.unseen.shape == (3, 3, 32, 32) and set(ps.grey) == {"small", "long_wide"}
    assert torch.all(ps.grey["small"].background == probes.GREY_LEVEL)
    ident = probes.run_probes(Identity(), ps, train_spec="small")
    assert list(ident.columns) == ["probe", "preset", "image", "in_distribution", "psnr", "removal", "bg_psnr",
                                   "rain_psnr"]
    assert len(ident) == 2 + 3 + 2 * 2
    free = ident[ident["probe"].isin(["clean", "unseen"])]
    assert np.all(free["psnr"] == metrics.PSNR_CAP)  # leaves a clean image exactly alone
    assert free["removal"].isna().all() and free["in_distribution"].isna().all()
    grey = ident[ident["probe"] == "grey_rain"]
    assert np.allclose(grey["removal"], 0.0)  # removes nothing
    assert grey.set_index("image").groupby("preset")["in_distribution"].first().to_dict() == {
        "long_wide": False, "small": True}

    perfect = probes.run_probes(Flat(probes.GREY_LEVEL), ps, train_spec="small")
    grey = perfect[perfect["probe"] == "grey_rain"]
    assert np.allclose(grey["removal"], 1.0) and np.all(grey["psnr"] == metrics.PSNR_CAP)
    assert np.all(perfect.loc[perfect["probe"] == "clean", "psnr"] < 40)  # but it wipes real images


def test_grey_outcomes_pool_presets_with_equal_weight():
    ps = _probe_set()
    rows = pd.concat([probes.run_probes(Identity(), ps, train_spec="small").assign(key="identity"),
                      probes.run_probes(Flat(probes.GREY_LEVEL), ps, train_spec="small").assign(key="perfect")])
    g = probes.grey_outcomes(rows).set_index("key")
    assert list(g.columns) == ["removal", "removal_train", "removal_ratio", "gap"]
    assert np.allclose(g.loc["identity", ["removal", "removal_train", "gap"]], 0.0)
    assert np.isnan(g.loc["identity", "removal_ratio"])  # nothing removed of the training rain: no ratio
    assert np.allclose(g.loc["perfect", ["removal", "removal_train", "removal_ratio"]], 1.0)
    # known answer with unequal counts: each preset's mean counts once
    fake = pd.DataFrame({"key": "m", "probe": "grey_rain", "in_distribution": [True, False, False, False],
                         "preset": ["small", "a", "a", "b"], "removal": [0.8, 0.2, 0.4, 0.9]})
    out = probes.grey_outcomes(fake).iloc[0]
    assert out["removal"] == pytest.approx((0.3 + 0.9) / 2) and out["removal_train"] == pytest.approx(0.8)
    assert out["gap"] == pytest.approx(0.8 - 0.6) and out["removal_ratio"] == pytest.approx(0.6 / 0.8)
    with pytest.raises(ValueError, match="lack"):
        probes.grey_outcomes(fake.drop(columns="key"))
    with pytest.raises(ValueError, match="no grey_rain"):
        probes.grey_outcomes(fake.assign(probe="clean"))
    with pytest.raises(ValueError, match="unseen"):
        probes.grey_outcomes(fake.assign(in_distribution=True))
    with pytest.raises(ValueError, match="in_distribution"):
        probes.grey_outcomes(fake.assign(in_distribution=pd.NA))


def test_probe_outputs_and_bad_input():
    ps = _probe_set()
    outs = probes.probe_outputs(Identity(), ps, index=1)
    assert set(outs) == {"clean", "unseen", "grey_small", "grey_long_wide"}
    x, y = outs["grey_small"]
    assert x.shape == (3, 32, 32) and torch.equal(x, y)
    with pytest.raises(ValueError, match="index=5"):
        probes.probe_outputs(Identity(), ps, index=5)
    with pytest.raises(ValueError, match="ProbeSet"):
        probes.run_probes(Identity(), {"own": None})
    own = torch.rand(2, 3, 16, 16)
    with pytest.raises(ValueError, match="channels"):
        probes.make_probes(own, torch.rand(2, 1, 16, 16), ["small"])
    with pytest.raises(ValueError, match="grey_level"):
        probes.make_probes(own, own, ["small"], grey_level=1.0)
    with pytest.raises(ValueError, match="own_names"):
        probes.make_probes(own, own, ["small"], own_names=["a"])
    with pytest.raises(ValueError, match="unseen"):
        probes.make_probes(own, own * 2, ["small"])
    with pytest.raises(ValueError, match="presets"):
        probes.make_probes(own, own, ["drizzle"])


# --------------------------------------------------------------------------- decomposing whole-image PSNR


def test_error_share_is_the_exact_split_of_the_squared_error():
    b = _textured(32)
    r = _rain(32)
    o = np.clip(b + r.permute(1, 2, 0).numpy(), 0, 1)
    rng = np.random.default_rng(2)
    d = np.clip(b + rng.normal(0, 0.02, b.shape) + 0.4 * (o - b), 0, 1)
    mask = (r[0] > rain.MASK_THRESHOLD).numpy()
    row = metrics.evaluate_pair(b, o, d, mask)
    share = probes.error_share(pd.DataFrame([row])).iloc[0]
    err = ((d - b) ** 2).sum(-1)
    assert share == pytest.approx(err[mask].sum() / err.sum(), rel=1e-6)
    nan_rows = pd.DataFrame({"psnr": [metrics.PSNR_CAP, 30.0], "rain_mse": [0.0, np.nan],
                             "mask_fraction": [0.1, np.nan]})
    assert probes.error_share(nan_rows).isna().all()
    with pytest.raises(ValueError, match="rain_mse"):
        probes.error_share(pd.DataFrame({"psnr": [1.0]}))


def test_r2_decomposition_known_answers():
    rng = np.random.default_rng(0)
    n = 40
    a = rng.normal(size=n)
    b = rng.normal(size=n)
    a -= a.mean()
    b -= b.mean()
    b -= a * (a @ b) / (a @ a)  # centred and exactly uncorrelated with a
    df = pd.DataFrame({"g": "x", "y": 2 * a + 1 * b + 5, "removal": a, "bg_psnr": b})
    out = probes.r2_decomposition(df, "y", ("removal", "bg_psnr"), by="g").iloc[0]
    va, vb = 4 * (a @ a), b @ b  # explained variance of each (orthogonal predictors)
    assert out["n"] == n and out["r2"] == pytest.approx(1.0)
    assert out["r2_alone_removal"] == pytest.approx(va / (va + vb))
    assert out["share_removal"] == pytest.approx(va / (va + vb))  # orthogonal: Shapley = R2 alone = unique
    assert out["unique_bg_psnr"] == pytest.approx(vb / (va + vb))
    assert out["share_removal"] + out["share_bg_psnr"] == pytest.approx(out["r2"])

    # correlated predictors: shares still sum to R2, and average "alone" and "unique"
    df2 = pd.DataFrame({"y": a + rng.normal(0, 0.5, n), "removal": a, "bg_psnr": a + rng.normal(0, 0.3, n)})
    o2 = probes.r2_decomposition(df2, "y", ("removal", "bg_psnr"), by=None).iloc[0]
    assert o2["share_removal"] + o2["share_bg_psnr"] == pytest.approx(o2["r2"])
    assert o2["share_removal"] == pytest.approx((o2["r2_alone_removal"] + o2["unique_removal"]) / 2)
    assert 0 <= o2["unique_bg_psnr"] <= o2["r2_alone_bg_psnr"] <= o2["r2"] <= 1

    few = probes.r2_decomposition(df.head(3), "y", ("removal", "bg_psnr"), by="g").iloc[0]
    assert few["n"] == 3 and math.isnan(few["r2"]) and math.isnan(few["share_removal"])
    const = probes.r2_decomposition(df.assign(y=1.0), "y", ("removal",), by=None).iloc[0]
    assert math.isnan(const["r2"])
    with pytest.raises(ValueError, match="distinct"):
        probes.r2_decomposition(df, "y", ("removal", "removal"))
    with pytest.raises(ValueError, match="nope"):
        probes.r2_decomposition(df, "nope")


# --------------------------------------------------------------------------- models from the cache


def test_matches_profile_and_cached_results(tmp_path):
    root = tmp_path / "cache"
    smoke = profiles.resolve("smoke")
    good = profiles.experiment(smoke, background="gradient", n_train=2, eval_presets=("small", "dense"))
    other_n = good.replace(n_train=3, seed=1)
    off = good.replace(steps=40)  # another training length: not this profile's model
    assert profiles.matches_profile(good, smoke) and profiles.matches_profile(other_n, "smoke")
    assert not profiles.matches_profile(off, smoke)
    assert not profiles.matches_profile(good, "quick")
    with pytest.raises(ValueError, match="config"):
        profiles.matches_profile("resnet", smoke)
    assert profiles.cached_results(smoke, cache_root=root) == []  # no cache yet

    sweeps.sweep([good, other_n, off], cache_root=root, progress=False)
    (root / experiments.CURVES_DIR).mkdir()
    (root / "garbage").mkdir()
    (root / "garbage" / "manifest.json").write_text("{}")
    incomplete = root / "0123456789abcdef"
    incomplete.mkdir()
    (incomplete / "config.json").write_text(json.dumps({"config": good.to_dict()}))  # no manifest: skipped
    found = profiles.cached_results(smoke, cache_root=root)
    assert {r.key for r in found} == {good.key(), other_n.key()}
    assert all(r.cached and not r.eval.empty for r in found)
    # an entry whose files no longer verify is left out (experiments.load warns about it)
    (root / good.key() / "eval.csv").write_text("broken")
    with pytest.warns(experiments.CacheWarning):
        found = profiles.cached_results(smoke, cache_root=root)
    assert [r.key for r in found] == [other_n.key()]


def test_probe_rows_use_the_evaluation_rain():
    """The grey probe's rain for (preset, image i) is make_eval_set's: identical for every model."""
    ps = _probe_set()
    es = scoring.make_eval_set(torch.full((2, 3, 32, 32), probes.GREY_LEVEL), ["small", "long_wide"], seed=3)
    for p in es:
        assert torch.equal(ps.grey[p].rain, es[p].rain)
