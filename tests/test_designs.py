"""derain_utils.lab.designs: each notebook's grid of models (the same wherever it is built), the models 02 and 03
share, reading them back, results tables."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from derain_utils.lab import designs, experiments, profiles
from derain_utils.measure import baselines, outcome
from derain_utils.synth import backgrounds

QUICK = profiles.resolve("quick")



def test_set_size_is_every_architecture_at_every_n_plus_the_ablation():
    p = profiles.resolve("long")
    configs = designs.set_size(p, "deadleaves")
    s, n = len(p.seeds), len(p.n_list)
    assert len(configs) == len(p.archs) * n * s + 2 * s == 80
    assert len({c.key() for c in configs}) == len(configs)
    main = [c for c in configs if c.predict == "rain"]
    assert [(c.arch, c.n_train, c.seed) for c in main] == [(a, m, k) for a in p.archs for m in p.n_list
                                                          for k in p.seeds]
    abl = [c for c in configs if c.predict == "background"]
    assert {c.arch for c in abl} == {p.archs[0]} and {c.n_train for c in abl} == {4, 256}
    assert designs.ablation_sizes(p) == (4, 256)
    assert all(c.background == "deadleaves" and c.model_size == p.model_size and c.steps == p.steps
               for c in configs)
    assert {designs.set_size_arm(c) for c in configs} == {"resnet", "unet", "resnet, predicts background"}


def test_the_quick_profile_trains_the_resnet_only():
    p = profiles.resolve("quick")
    assert len(designs.set_size(p, "natural")) == len(p.n_list) * len(p.seeds) == 32
    assert len(designs.set_size(p, "natural", ablation=True)) == 32 + 16


def test_budget_ladder_retrains_the_ends_at_each_rung():
    p = profiles.resolve("long")
    lad = designs.budget_ladder(p, "natural")
    assert len(lad) == len(p.ladder) * 2 * len(p.seeds) == 80 and len({c.key() for c in lad}) == 80
    assert {c.n_train for c in lad} == {4, 256} and {(c.arch, c.predict) for c in lad} == {("resnet", "rain")}
    own = {c.key() for c in designs.set_size(p, "natural")}
    base = [c for c in lad if designs.ladder_rung(c, p) == "500x32"]
    assert {c.key() for c in base} <= own and not {c.key() for c in lad if c not in base} & own
    big = [c for c in lad if designs.ladder_rung(c, p) == "2000x64"]
    assert {(c.steps, c.patch, c.batch_size, c.warmup_steps) for c in big} == {(2000, 64, 4, 100)}
    assert len(designs.NOTEBOOK_DESIGNS["01_set_size"](p, "natural")) == 80 + 64
    assert len(designs.budget_ladder(p, "natural", rungs=["4000x64b32:paper"])) == 16
    with pytest.raises(ValueError, match="no rung of the ladder"):
        designs.ladder_rung(big[0], p, rungs=["500x32"])


def test_set_size_options_and_bad_input():
    p = profiles.resolve("smoke")
    assert len(designs.set_size(p, "flat", archs=["unet"], ablation=False)) == len(p.n_list) * len(p.seeds)
    assert designs.ablation_sizes(profiles.resolve("smoke", n_list=[8])) == (8,)
    with pytest.raises(ValueError, match="architecture"):
        designs.set_size(p, "flat", archs=["vgg"])
    with pytest.raises(ValueError, match="at least one"):
        designs.set_size(p, "flat", archs=[])
    with pytest.raises(ValueError, match="background"):
        designs.set_size(p, "")


def test_real_rain_reuses_notebook_01s_models():
    """Notebook 04's networks are notebook 01's configs (same keys): nothing new is trained after 01."""
    p = profiles.resolve("quick")
    keys01 = {c.key() for c in designs.set_size(p, "natural")}
    configs = designs.real_rain(p, "natural")
    assert {c.key() for c in configs} <= keys01
    assert {(c.arch, c.predict) for c in configs} == {(p.archs[0], "rain")}
    assert sorted({c.n_train for c in configs}) == [min(p.n_list), max(p.n_list)]
    assert len(configs) == 2 * len(p.seeds)
    assert {c.arch for c in designs.real_rain(p, "natural", arch="unet")} == {"unet"}


def test_every_design_takes_a_profile_and_a_background():
    p = profiles.resolve("smoke")
    for name in ("01_set_size", "04_real_rain"):
        design = designs.NOTEBOOK_DESIGNS[name]
        configs = design(p, "flat")
        assert configs and all(c.background == "flat" for c in configs), name
        assert design("smoke", "flat") == configs  # a profile name works too
    # 02 and 03 train the real categories when 01 trains on a real one, the ladder only otherwise
    for name in ("02_category_complexity", "03_decoupled_metrics"):
        design = designs.NOTEBOOK_DESIGNS[name]
        offline = {c.background for c in design(p, "deadleaves")}
        online = {c.background for c in design(p, "natural")}
        assert offline and not offline & set(designs.REAL), name
        assert online & set(designs.REAL), name
    # 03's models are all 02's: the monograph trains them once
    for bg in ("deadleaves", "natural"):
        k02 = {c.key() for c in designs.NOTEBOOK_DESIGNS["02_category_complexity"](p, bg)}
        k03 = {c.key() for c in designs.NOTEBOOK_DESIGNS["03_decoupled_metrics"](p, bg)}
        assert k03 <= k02



def _keys(configs):
    return {c.key() for c in configs}


# --------------------------------------------------------------------------- the grids
def test_category_design_counts_and_roles():
    d = designs.category_complexity(QUICK, real=designs.REAL)
    seeds = len(QUICK.seeds)
    assert d.verdict_group == "real" and d.real == designs.REAL and d.ladder == designs.LADDER_RUNGS
    n_mixed = len(designs.REAL_MIXES) * (len(designs.MIX_PROPORTIONS) - 2) * seeds  # the dose-response's new sets
    assert d.n_models == (len(designs.REAL) + len(designs.LADDER_RUNGS)) * seeds + seeds + n_mixed  # + the control
    assert d.control_category == "manga"  # True: the last category of the verdict group as listed
    assert {c.train_rain for c in d.control_configs} == {designs.CONTROL_RAIN}
    assert {c.background for c in d.control_configs} == {"manga"}
    assert {c.n_train for c in d.configs} == {QUICK.category_n}
    assert d.mixes == designs.REAL_MIXES and not _keys(d.mix_configs) & _keys(d.main_configs)
    assert d.kind == {**{c: "real" for c in designs.REAL}, **{c: "procedural" for c in designs.LADDER_RUNGS}}
    # the curve runs are exactly the models notebook 03 reads; everything else is a plain run
    assert {c.background for c in d.curve_configs} == {"faces", "urban", "manga", "blobs", "noise"}
    assert {c.background for c in d.plain_configs} == {"natural", "shapes", "texture"}
    assert not _keys(d.curve_configs) & _keys(d.plain_configs)
    assert [c.background for c in d.main_configs][:len(QUICK.seeds)] == ["faces"] * seeds  # category order


def test_notebooks_02_and_03_share_models_and_02_shares_natural_with_01():
    d02 = designs.category_complexity(QUICK, real=designs.REAL)
    d03 = designs.decoupled_metrics(QUICK, real=designs.REAL)
    assert d03.source == "real" and d03.groups == designs.REAL_CONTRAST
    assert d03.illustration == designs.PROCEDURAL_CONTRAST
    assert _keys(d03.configs) == _keys(d02.curve_configs)  # 03 trains nothing 02 did not
    assert d03.curve_points == d02.curve_points == QUICK.dynamics_points
    # notebook 01's natural models at the category size are the same configs (same cache keys)
    nb01 = profiles.grid(QUICK, background="natural", n_train=list(QUICK.n_list), seed=list(QUICK.seeds))
    natural = [c for c in d02.plain_configs if c.background == "natural"]
    assert natural and _keys(natural) <= _keys(nb01)


def test_designs_without_real_data_are_procedural():
    d02 = designs.category_complexity(QUICK, real=())
    d03 = designs.decoupled_metrics(QUICK, real=())
    assert d02.verdict_group == "procedural" and d02.control_category == designs.LADDER_RUNGS[-1]
    assert d02.mixes == designs.PROCEDURAL_MIXES
    assert d02.n_models == (len(designs.LADDER_RUNGS) + 1 + len(designs.MIX_PROPORTIONS) - 2) * len(QUICK.seeds)
    assert d03.source == "procedural" and d03.illustration is None and d03.groups == designs.PROCEDURAL_CONTRAST
    assert _keys(d03.configs) == _keys(d02.curve_configs)
    # faces without a complex real category cannot carry 03's real contrast
    assert designs.decoupled_metrics(QUICK, real=("faces", "natural")).source == "procedural"
    assert designs.decoupled_metrics(QUICK, real=("faces", "manga")).groups["complex"] == ("manga",)


def test_control_choices():
    assert designs.category_complexity(QUICK, real=(), control=False).control_configs == ()
    d = designs.category_complexity(QUICK, real=(), control="blobs")
    assert {c.background for c in d.control_configs} == {"blobs"}


def test_dose_response_design():
    d = designs.category_complexity(QUICK, real=designs.REAL)
    cells = d.dose_cells
    assert list(cells["mix"].unique()) == ["faces->urban", "faces->manga"]
    assert list(cells["proportion"][:5]) == list(designs.MIX_PROPORTIONS)
    # the ends are the pure categories' models, shared: proportion 0 is faces for both mixes
    ends = cells[cells["proportion"].isin([0.0, 1.0])]
    assert list(ends["background"]) == ["faces", "urban", "faces", "manga"]
    inner = cells[~cells["proportion"].isin([0.0, 1.0])]
    assert {c.background for c in d.mix_configs} == set(inner["background"])
    assert inner["background"].map(backgrounds.parse_mix).tolist()[0] == ("faces", "urban", 0.25)
    assert len(d.mix_configs) == len(inner) * len(QUICK.seeds)
    assert {(c.n_train, c.train_rain) for c in d.mix_configs} == {(QUICK.category_n, QUICK.train_rain)}
    models = pd.DataFrame({"background": ["faces", "urban", "faces+urban@0.5", "natural"], "seed": 0, "y": [1, 2, 3, 4]})
    rows = d.dose_rows(models)
    assert sorted(zip(rows["mix"], rows["proportion"], rows["y"])) == [
        ("faces->manga", 0.0, 1), ("faces->urban", 0.0, 1), ("faces->urban", 0.5, 3), ("faces->urban", 1.0, 2)]
    table = pd.DataFrame({"background": ["faces", "urban", "manga", "faces+urban@0.5", "faces+manga@0.5"] * 2,
                          "seed": [0] * 5 + [1] * 5, "y": [1.0, 2, 4, 3, 5, 10, 20, 40, 30, 50],
                          "stalled": [False] * 9 + [True]})
    by_seed = d.dose_by_seed(table, ["y"]).set_index(["seed", "proportion"])
    assert by_seed.loc[(0, 0.0), "y"] == 1 and by_seed.loc[(0, 0.0), "n_models"] == 2  # faces, once per mix
    assert by_seed.loc[(0, 0.5), "y"] == 4 and by_seed.loc[(0, 1.0), "y"] == 3  # the mean over the two mixes
    assert by_seed.loc[(1, 0.5), "y"] == 30 and by_seed.loc[(1, 0.5), "n_models"] == 1  # the stalled one is out
    with pytest.raises(ValueError, match="lacks the column"):
        d.dose_by_seed(table.drop(columns="stalled"), ["y"])
    # only pairs of trained categories; none on request; the choice of pairs and levels
    assert designs.category_complexity(QUICK, real=("faces", "natural", "manga")).mixes == (("faces", "manga"),)
    assert designs.category_complexity(QUICK, real=designs.REAL, dose=False).mix_configs == ()
    own = designs.category_complexity(QUICK, real=(), dose=[("shapes", "texture")], proportions=(0, 0.5, 1))
    assert [c.background for c in own.mix_configs][:1] == ["shapes+texture@0.5"]
    assert len(own.mix_configs) == len(QUICK.seeds)


@pytest.mark.parametrize("kwargs, match", [
    ({"dose": [("faces", "sky")]}, "must pair two different trained"),
    ({"dose": [("blobs", "blobs")]}, "must pair two different trained"),
    ({"proportions": (0.0, 1.0)}, "at least one level between"),
    ({"proportions": (0.0, 0.5, 0.4, 1.0)}, "ascend strictly"),
    ({"proportions": (0.1, 0.5, 1.0)}, "from 0 to 1"),
])
def test_dose_response_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        designs.category_complexity(QUICK, real=(), **kwargs)
    with pytest.raises(ValueError, match="no 'background' column"):
        designs.category_complexity(QUICK, real=()).dose_rows(pd.DataFrame({"x": [1]}))


def test_real_none_reads_the_data_folder(tmp_path):
    (tmp_path / "bg_faces_celebahq").mkdir()
    assert designs.decoupled_metrics(QUICK, data_dir=tmp_path).source == "procedural"  # an empty folder is absent
    assert designs.category_complexity(QUICK, data_dir=tmp_path).real == ()


@pytest.mark.parametrize("kwargs, match", [
    ({"real": ("faces", "sky")}, "unknown background"),
    ({"real": ("faces", "faces", "urban")}, "repeats"),
    ({"real": (), "ladder": ("blobs", "cubes")}, "unknown background"),
    ({"real": (), "ladder": ("blobs", "noise")}, "at least 3 categories"),
    ({"real": ("faces", "urban"), "ladder": ()}, "at least 3 categories"),
    ({"real": (), "control": "faces"}, "not one of the trained"),
    ({"real": (), "points": QUICK.steps + 1}, "points"),
])
def test_category_design_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        designs.category_complexity(QUICK, **kwargs)


# --------------------------------------------------------------------------- tiles, training, scoring
def test_training_tiles_union_over_seeds():
    smoke = profiles.resolve("smoke")
    configs = profiles.grid(smoke, background=["blobs", "noise"], n_train=4, seed=[0, 1])
    tiles = designs.training_tiles(configs)
    assert list(tiles) == ["blobs", "noise"]
    for bg, (ids, arr) in tiles.items():
        assert len(ids) == len(set(ids)) == 8  # procedural: new images per seed, 4 each
        assert arr.shape == (8, smoke.tile, smoke.tile, 3) and arr.dtype == np.float32
    one = designs.training_tiles(configs[:1])["blobs"]
    assert one[0] == tiles["blobs"][0][:4] and np.array_equal(one[1], tiles["blobs"][1][:4])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two tiny smoke models, one a curve run and one plain, in a cache of their own."""
    smoke = profiles.resolve("smoke", seeds=[0])
    curve = profiles.grid(smoke, background="blobs", n_train=4, seed=[0], steps=10)
    plain = profiles.grid(smoke, background="noise", n_train=4, seed=[0], steps=10)
    return smoke, curve, plain, designs.train(curve, plain, points=2, progress=False,
                                             cache_root=tmp_path_factory.mktemp("designs_cache"))


def test_train_reads_every_model_back(trained):
    _, curve, plain, t = trained
    assert set(t.results) == _keys(curve) | _keys(plain)
    assert set(t.eval["key"]) == set(t.results) and set(t.eval["background"]) == {"blobs", "noise"}
    assert t.curves is not None and set(t.curves["experiment_key"]) == _keys(curve)
    assert set(t.curves["step"]) == {0, *experiments.curve_steps(10, 2)}
    assert t.results[curve[0].key()].curve_points == 2 and t.results[plain[0].key()].curve_points is None
    # the curve's last step is the final model: its scores equal the final evaluation (without SSIM)
    last = t.curves[t.curves["step"] == 10].set_index(["image", "preset"])["removal"]
    final = t.eval[t.eval["key"] == curve[0].key()].set_index(["image", "preset"])["removal"]
    assert np.allclose(last.loc[final.index], final, equal_nan=True)
    with pytest.raises(ValueError, match="no configs"):
        designs.train([], points=2)


def test_score_on_own_source_equals_own_evaluation(trained):
    smoke, curve, _, t = trained
    test = designs.common_test(smoke, "blobs")  # the blobs model's own test inputs
    rows = designs.score_on(t.results, test)
    assert list(rows.columns[:len(experiments.CONFIG_COLUMNS)]) == list(experiments.CONFIG_COLUMNS)
    assert set(rows["eval_background"]) == {"blobs"} and set(rows["key"]) == set(t.results)
    mine = rows[rows["key"] == curve[0].key()].set_index(["image", "preset"])[["removal", "bg_psnr", "psnr"]]
    own = t.eval[t.eval["key"] == curve[0].key()].set_index(["image", "preset"])[["removal", "bg_psnr", "psnr"]]
    assert np.allclose(mine.loc[own.index], own, equal_nan=True)
    with pytest.raises(ValueError, match="no models"):
        designs.score_on({}, test)


def test_frontiers_and_results_table(trained):
    smoke, curve, plain, t = trained
    front, base = designs.own_test_frontier([*curve, *plain])
    assert front.by == ("background", "preset") and {g[0] for g in front.groups()} == {"blobs", "noise"}
    assert set(base["baseline"]) == {b.name for b in baselines.TABLE_BASELINES}
    assert set(base["eval_background"]) == {"blobs", "noise"}
    # the identity sits on every frontier: its excess removal is 0
    ident = base[base["baseline"] == "identity"].assign(key="identity")
    ex = outcome.model_table(ident, front, model_cols="key")
    assert np.allclose(ex["excess_removal"], 0.0, atol=1e-12)
    # per background the frontier is that background's own
    blobs = designs.test_frontier(designs.common_test(smoke, "blobs"), train_rain="small")[0]
    assert np.allclose(front.curve(("blobs", "dense"))[1], blobs.curve("dense")[1])

    out = outcome.outcome_table(t.eval, front, presets=["slanted", "long_wide", "dense"], train_presets=["small"])
    stalled = out.set_index("key")["stalled"].to_dict()
    cx = pd.DataFrame({"png_bpp": [1.0, 2.0]}, index=["blobs", "noise"])
    res = designs.results_table({"own": t.eval}, {"own": base}, kind={"blobs": "simple", "noise": "complex"},
                                stalled=stalled, train_rain="small", per_background=cx)
    assert list(res.columns) == [*designs.RESULT_COLUMNS, "png_bpp"]
    assert set(res["role"]) == {"main", "baseline"} and set(res["kind"]) == {"simple", "complex", "baseline"}
    models = res[res["role"] == "main"]
    assert models.groupby("background")["png_bpp"].first().to_dict() == {"blobs": 1.0, "noise": 2.0}
    assert set(res["rain_kind"]) == {"in_distribution", "ood", "none"}
    assert (res.loc[res["preset"] == "clean", "rain_kind"] == "none").all()
    with pytest.raises(ValueError, match="no stall flag"):
        designs.results_table({"own": t.eval}, {}, kind={}, stalled={}, train_rain="small")
    with pytest.raises(ValueError, match="eval_background"):
        designs.results_table({}, {"own": base.drop(columns="eval_background")}, kind={}, stalled={},
                              train_rain="small")


def test_torch_threads_restores():
    import torch

    before = torch.get_num_threads()
    with designs.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


@pytest.mark.shared_data
def test_real_design_from_the_shared_data(shared_data):
    assert designs.category_complexity(QUICK, data_dir=shared_data).real == designs.REAL
    assert designs.decoupled_metrics(QUICK, data_dir=shared_data).source == "real"
    assert backgrounds.available_categories(shared_data) == list(designs.REAL)
