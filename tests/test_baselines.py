"""Fixed-filter baselines and their frontier: known answers, invariants, determinism, bad input."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage

from derain_utils.measure import baselines, metrics, scoring
from derain_utils.nets import training
from derain_utils.synth import backgrounds

PRESETS = ["small", "slanted", "long_wide"]


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return backgrounds.draw_split("blobs", 0, 4, test_size=48, seed=0).test_tensor()


@pytest.fixture(scope="module")
def eval_set(images):
    return scoring.make_eval_set(images, PRESETS, seed=3)


@pytest.fixture(scope="module")
def front(eval_set):
    return baselines.frontier_of(eval_set)


def _score(eval_set, fn):
    """Mean (removal, bg_psnr) per preset of a derainer fn(rainy, background, rain) -> derained."""
    out = {}
    for p, e in eval_set.items():
        d = fn(e.rainy, e.background, e.rain).clamp(0, 1)
        r = metrics.decoupled_batch(e.background, e.rainy, d, e.mask)
        out[p] = (float(r["removal"].mean()), float(r["bg_psnr"].mean()))
    return out


# --------------------------------------------------------------------------- the filters
def test_default_sets():
    names = [b.name for b in baselines.DEFAULT_BASELINES]
    assert len(names) == len(set(names)) == 1 + 9 * len(baselines.BLENDS)
    assert baselines.TABLE_BASELINES[0] is baselines.IDENTITY
    assert all(b.blend == 1.0 for b in baselines.TABLE_BASELINES)
    assert {b.name for b in baselines.TABLE_BASELINES} <= set(names)
    assert baselines.Baseline("median", 5, 0.25).name == "median_5_t0.25"
    assert baselines.Baseline("gaussian", 0.75).name == "gaussian_s0.75"


def test_apply_known_answers(images):
    x = images
    assert torch.equal(baselines.apply(baselines.IDENTITY, x), x)
    g = baselines.apply(baselines.Baseline("gaussian", 1.5), x)
    ref = ndimage.gaussian_filter(x.double().numpy(), sigma=(0, 0, 1.5, 1.5), mode="reflect")
    assert torch.allclose(g, torch.from_numpy(ref).float(), atol=1e-6)
    m = baselines.apply(baselines.Baseline("median", 3), x)
    ref = ndimage.median_filter(x.double().numpy(), size=(1, 1, 3, 3), mode="reflect")
    assert torch.allclose(m, torch.from_numpy(ref).float(), atol=1e-6)
    half = baselines.apply(baselines.Baseline("median", 3, 0.5), x)
    assert torch.allclose(half, 0.5 * x + 0.5 * m, atol=1e-6)
    # a constant image is left alone by every filter
    flat = torch.full((1, 3, 16, 16), 0.4)
    for b in baselines.TABLE_BASELINES:
        assert torch.allclose(baselines.apply(b, flat), flat, atol=1e-6), b.name


def test_as_module_matches_apply(images):
    b = baselines.Baseline("gaussian", 0.75, 0.5)
    mod = baselines.as_module(b)
    assert sum(p.numel() for p in mod.parameters()) == 0
    out = training.predict(mod, images)
    assert torch.allclose(out, baselines.apply(b, images), atol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    ({"family": "bilateral"}, "family"),
    ({"family": "gaussian", "param": 0}, "sigma"),
    ({"family": "gaussian", "param": float("nan")}, "sigma"),
    ({"family": "median", "param": 4}, "odd integer"),
    ({"family": "median", "param": 1}, "odd integer"),
    ({"family": "median", "param": 3, "blend": 0}, "blend"),
    ({"family": "median", "param": 3, "blend": 1.5}, "blend"),
    ({"family": "identity", "param": 1}, "identity"),
    ({"family": "gaussian", "param": "1"}, "param"),
])
def test_bad_baselines(kwargs, match):
    with pytest.raises(ValueError, match=match):
        baselines.Baseline(**kwargs)


def test_apply_bad_input():
    with pytest.raises(ValueError, match="images"):
        baselines.apply(baselines.IDENTITY, torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="floats"):
        baselines.apply(baselines.IDENTITY, torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="NaN"):
        baselines.apply(baselines.IDENTITY, torch.full((1, 1, 8, 8), float("nan")))
    with pytest.raises(ValueError, match="Baseline"):
        baselines.apply("identity", torch.zeros(1, 1, 8, 8))


# --------------------------------------------------------------------------- rows
def test_rows_have_evaluate_columns_and_match_evaluate(images, eval_set):
    chosen = [baselines.IDENTITY, baselines.Baseline("median", 5), baselines.Baseline("gaussian", 1.0, 0.25)]
    rows = baselines.baseline_rows(eval_set, chosen, names=[f"im{i}" for i in range(4)])
    assert list(rows.columns) == [*baselines.BASELINE_COLUMNS, *scoring.EVAL_COLUMNS]
    assert len(rows) == len(chosen) * 4 * (len(PRESETS) + 1)
    assert rows["in_distribution"].dtype == "boolean"
    for b in chosen:  # the baseline scored as a model by scoring.evaluate gives the same table
        ev = scoring.evaluate(baselines.as_module(b), images, PRESETS, seed=3, names=[f"im{i}" for i in range(4)])
        mine = rows[rows["baseline"] == b.name][list(scoring.EVAL_COLUMNS)].reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, ev, check_exact=False, atol=1e-5, rtol=1e-6)


def test_identity_rows(eval_set):
    rows = baselines.baseline_rows(eval_set, [baselines.IDENTITY], whole_image=False, clean=False)
    assert np.allclose(rows["removal"], 0.0)
    assert rows["psnr"].isna().all()
    assert (rows["bg_psnr"] > 50).all()  # only faint streak edges reach the background region


def test_rows_are_deterministic(eval_set):
    a = baselines.baseline_rows(eval_set, baselines.TABLE_BASELINES[:3], whole_image=False)
    b = baselines.baseline_rows(eval_set, baselines.TABLE_BASELINES[:3], whole_image=False)
    pd.testing.assert_frame_equal(a, b)


def test_rows_bad_input(eval_set, images):
    with pytest.raises(ValueError, match="EvalInputs"):
        baselines.baseline_rows({"small": "x"}, [baselines.IDENTITY])
    with pytest.raises(ValueError, match="make_eval_set"):
        baselines.baseline_rows({}, [baselines.IDENTITY])
    with pytest.raises(ValueError, match="empty"):
        baselines.baseline_rows(eval_set, [])
    with pytest.raises(ValueError, match="duplicate"):
        baselines.baseline_rows(eval_set, [baselines.IDENTITY, baselines.Baseline("identity")])
    with pytest.raises(ValueError, match="names"):
        baselines.baseline_rows(eval_set, [baselines.IDENTITY], names=["a"])
    other = scoring.make_eval_set(images.flip(-1), ["dense"], seed=3)
    with pytest.raises(ValueError, match="other background"):
        baselines.baseline_rows({**eval_set, **other}, [baselines.IDENTITY])


# --------------------------------------------------------------------------- the frontier
def test_frontier_is_a_monotone_envelope(front):
    assert front.by == ("preset",)
    assert [k[0] for k in front.groups()] == PRESETS
    for p in PRESETS:
        bg, rm = front.curve(p)
        assert np.all(np.diff(bg) > 0) and np.all(np.diff(rm) <= 1e-12)
        pts = front.points[front.points["preset"] == p]
        assert pts.loc[pts["baseline"] == "identity", "pareto"].item()
        # every baseline lies on or under the envelope; the Pareto points lie on it
        assert np.all(front.excess(p, pts["removal"], pts["bg_psnr"]) <= 1e-9)
        on = pts[pts["pareto"]]
        assert np.allclose(front.excess(p, on["removal"], on["bg_psnr"]), 0.0, atol=1e-12)
        # flat beyond both ends: the identity's removal above, the strongest filter's below
        assert front.removal_at(p, 200.0) == pytest.approx(0.0)
        assert front.removal_at(p, 0.0) == pytest.approx(pts["removal"].max())
        assert list(front.range_of(p, [200.0, float(np.mean(bg)), 0.0])) == ["above", "inside", "below"]
        assert np.isnan(front.removal_at(p, float("nan")))
    table = front.table()
    assert table["pareto"].all() and set(table["preset"]) == set(PRESETS)


def _random_points(rng, n):
    bg = rng.uniform(20, 60, size=n)
    rm = np.clip(1.2 - bg / 50 + rng.normal(0, 0.15, size=n), 0, 1)  # less faithful filters remove more, noisily
    fam = rng.choice(["gaussian", "median"], size=n)
    names = [f"{f}_{i}" for i, f in enumerate(fam)]
    return pd.DataFrame({"baseline": ["identity", *names], "preset": "p", "bg_psnr": [75.0, *bg],
                         "removal": [0.0, *rm]})


@pytest.mark.parametrize("seed", range(20))
def test_adding_a_filter_never_lowers_the_frontier(seed):
    rng = np.random.default_rng(seed)
    rows = _random_points(rng, 12)
    grid = np.linspace(10, 90, 801)
    small = baselines.frontier(rows.iloc[:7])
    big = baselines.frontier(rows)
    assert np.all(big.removal_at("p", grid) >= small.removal_at("p", grid) - 1e-12)
    # every value is the removal of a filter that exists and is at least as faithful (inside the range)
    inside = grid[grid <= 75.0]
    vals = big.removal_at("p", inside)
    for b, v in zip(inside, vals):
        ok = rows[(rows["bg_psnr"] >= b - 1e-9)]
        assert v == pytest.approx(ok["removal"].max())


def test_the_frontier_credits_no_point_between_two_filters():
    # two filters: (30 dB, 0.6) and (40 dB, 0.2). At 35 dB only the 40 dB filter is at least as faithful.
    rows = pd.DataFrame({"baseline": ["identity", "gaussian_s1", "median_3"], "preset": "p",
                         "bg_psnr": [80.0, 40.0, 30.0], "removal": [0.0, 0.2, 0.6]})
    f = baselines.frontier(rows)
    assert f.removal_at("p", 35.0) == pytest.approx(0.2)  # a straight line would give 0.4
    assert f.removal_at("p", 30.0) == pytest.approx(0.6) and f.removal_at("p", 20.0) == pytest.approx(0.6)
    assert f.removal_at("p", 40.0) == pytest.approx(0.2) and f.removal_at("p", 60.0) == pytest.approx(0.0)
    assert f.removal_at("p", 90.0) == pytest.approx(0.0)
    # the linear join of the earlier version fell when a filter was added; the staircase cannot
    more = baselines.frontier(pd.concat([rows, pd.DataFrame({"baseline": ["median_5"], "preset": "p",
                                                            "bg_psnr": [36.0], "removal": [0.45]})]))
    assert more.removal_at("p", 35.0) == pytest.approx(0.45)
    assert np.all(more.removal_at("p", np.linspace(20, 90, 300)) >= f.removal_at("p", np.linspace(20, 90, 300)))


def test_frontier_of_one_family(front):
    assert front.families() == ["identity", "gaussian", "median"]
    g, m = front.only("gaussian"), front.only(["median"])
    assert set(g.points["family"]) == {"identity", "gaussian"} and set(m.points["family"]) == {"identity", "median"}
    grid = np.linspace(15, 60, 91)
    for p in PRESETS:
        full = front.removal_at(p, grid)
        assert np.all(full >= g.removal_at(p, grid) - 1e-12) and np.all(full >= m.removal_at(p, grid) - 1e-12)
        assert np.allclose(full, np.maximum(g.removal_at(p, grid), m.removal_at(p, grid)))
    with pytest.raises(ValueError, match="families"):
        front.only("box")


def test_perfect_and_identity_derainers(eval_set, front):
    perfect = _score(eval_set, lambda o, b, r: b)
    identity = _score(eval_set, lambda o, b, r: o)
    for p in PRESETS:
        rm, bg = perfect[p]
        assert rm == pytest.approx(1.0) and bg == pytest.approx(metrics.PSNR_CAP)
        assert front.excess(p, rm, bg) == pytest.approx(1.0)
        rm, bg = identity[p]
        assert front.excess(p, rm, bg) == pytest.approx(0.0, abs=1e-12)


def test_fixed_filters_off_the_grid_get_no_credit(eval_set, front):
    """Filters that are not in the sweep land on or under the frontier (up to one step of the staircase)."""
    filters = {
        "gaussian 0.6": lambda o, b, r: baselines.apply(baselines.Baseline("gaussian", 0.6), o),
        "gaussian 2.5 blended 0.4": lambda o, b, r: baselines.apply(baselines.Baseline("gaussian", 2.5, 0.4), o),
        "median 5 blended 0.6": lambda o, b, r: baselines.apply(baselines.Baseline("median", 5, 0.6), o),
        "3x3 mean": lambda o, b, r: torch.from_numpy(ndimage.uniform_filter(o.numpy(), size=(1, 1, 3, 3))),
    }
    for name, fn in filters.items():
        for p, (rm, bg) in _score(eval_set, fn).items():
            assert front.excess(p, rm, bg) < 0.04, (name, p)  # largest seen: 0.027 (gaussian 0.6)


def test_a_rain_aware_derainer_is_above_the_frontier(eval_set, front):
    """Subtracting 80% of the true rain layer removes 0.96 of it at near-identity fidelity."""
    for p, (rm, bg) in _score(eval_set, lambda o, b, r: o - 0.8 * (o - b)).items():
        assert rm == pytest.approx(0.96, abs=1e-3)
        assert front.excess(p, rm, bg) > 0.9


def test_frontier_groups_and_bad_input(eval_set):
    rows = baselines.baseline_rows(eval_set, baselines.TABLE_BASELINES, whole_image=False)
    two = pd.concat([rows.assign(test_set="own"), rows.assign(test_set="common")])
    f = baselines.frontier(two, by=("test_set", "preset"))
    assert len(f.groups()) == 2 * len(PRESETS)
    assert f.removal_at(("own", "small"), 30.0) == pytest.approx(f.removal_at(("common", "small"), 30.0))
    with pytest.raises(ValueError, match="one value per group column"):
        f.curve("small")
    with pytest.raises(ValueError, match="no frontier"):
        baselines.frontier(rows).curve("dense")
    with pytest.raises(ValueError, match="lack column"):
        baselines.frontier(rows.drop(columns="bg_psnr"))
    with pytest.raises(ValueError, match="no rainy rows"):
        baselines.frontier(rows[rows["preset"] == "clean"])
    with pytest.raises(ValueError, match="DataFrame"):
        baselines.frontier(rows.to_dict())
    with pytest.raises(ValueError, match="at least one column"):
        baselines.frontier(rows, by=())
    nan_rows = rows.assign(removal=np.nan)
    with pytest.raises(ValueError, match="NaN"):
        baselines.frontier(nan_rows)


# --------------------------------------------------------------------------- paired sets


def _pairs(images, eval_set, preset="slanted"):
    from derain_utils.synth import realsets

    e = eval_set[preset]
    hwc = lambda t: t.permute(0, 2, 3, 1).numpy().astype(np.float64)  # noqa: E731
    return [realsets.Pair("bench", f"p{i}", o, b) for i, (o, b) in enumerate(zip(hwc(e.rainy), hwc(e.background)))], \
        [m[0].numpy() for m in e.mask]


def test_pair_rows_score_as_the_models_are_scored(images, eval_set):
    """On pairs with their true masks, the pair rows equal the eval-set rows of the same filters, and a
    model's output scored by realscores.score_pairs sits exactly where the filter's row does."""
    from derain_utils.measure import realscores

    pairs, masks = _pairs(images, eval_set)
    rows = baselines.baseline_pair_rows(pairs, masks=masks)
    assert len(rows) == len(pairs) * len(baselines.DEFAULT_BASELINES) and set(rows["preset"]) == {"bench"}
    ref = baselines.baseline_rows(eval_set, whole_image=False, clean=False, train_spec=None)
    ref = ref[ref["preset"] == "slanted"]
    a = rows.groupby("baseline")[["removal", "bg_psnr"]].mean()
    b = ref.groupby("baseline")[["removal", "bg_psnr"]].mean().loc[a.index]
    assert np.allclose(a.to_numpy(), b.to_numpy(), atol=1e-5, equal_nan=True)
    assert np.allclose(rows.loc[rows["baseline"] == "identity", "removal"], 0.0)
    med = baselines.Baseline("median", 5)
    out = [baselines.apply(med, p.rainy.transpose(2, 0, 1)[None])[0].numpy().transpose(1, 2, 0) for p in pairs]
    scored = realscores.score_pairs(pairs, out, masks=masks)
    mine = rows[rows["baseline"] == "median_5"].reset_index(drop=True)
    assert np.allclose(scored[["removal", "bg_psnr", "psnr_y"]], mine[["removal", "bg_psnr", "psnr_y"]], atol=1e-5)
    # whole-image columns only for the table baselines by default; the frontier groups by set
    assert rows.loc[rows["blend"] < 1, "psnr_y"].isna().all() and rows.loc[rows["blend"] == 1, "psnr_y"].notna().all()
    front = baselines.frontier(rows)
    assert front.groups() == [("bench",)] and front.removal_at("bench", 200.0) == pytest.approx(0.0)


def test_pair_rows_estimate_the_mask_and_refuse_bad_input(images, eval_set):
    pairs, _ = _pairs(images, eval_set)
    rows = baselines.baseline_pair_rows(pairs[:2], baselines.TABLE_BASELINES, preset="x", whole_image=False)
    assert (rows["mask_source"] == "estimated").all() and set(rows["preset"]) == {"x"} and rows["psnr"].isna().all()
    with pytest.raises(ValueError, match="empty"):
        baselines.baseline_pair_rows([])
    with pytest.raises(ValueError, match="masks has 1"):
        baselines.baseline_pair_rows(pairs[:2], masks=[np.zeros((48, 48), bool)])
    bad = [type(pairs[0])("bench", "odd", pairs[0].rainy, pairs[0].target[:40])]
    with pytest.raises(ValueError, match="differ in shape"):
        baselines.baseline_pair_rows(bad)
