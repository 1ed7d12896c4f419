"""derain_utils.lab.profiles: the smoke/quick/paper sizes, overrides from papermill/CLI, configs."""
from __future__ import annotations

import dataclasses
import time

import pytest

from derain_utils.lab import experiments, profiles
from derain_utils.lab.experiments import ExperimentConfig
from derain_utils.lab.profiles import PROFILES, Profile
from derain_utils.nets import models
from derain_utils.synth import rain


def test_the_four_profiles_exist_and_are_valid():
    assert list(PROFILES) == ["smoke", "quick", "long", "paper"]
    for name, prof in PROFILES.items():
        assert prof.name == name and profiles.resolve(name) is prof
        assert prof.arch in models.MODEL_SIZES and prof.model_size in models.MODEL_SIZES[prof.arch]
        assert prof.train_rain == rain.TRAIN_PRESET
        assert prof.eval_presets == (rain.TRAIN_PRESET, *rain.OOD_PRESETS)
        assert prof.patch <= prof.tile and prof.dynamics_points <= prof.steps
        hash(prof)  # frozen and hashable


def test_profiles_grow_from_smoke_to_paper():
    smoke, quick, paper = (PROFILES[n] for n in ("smoke", "quick", "paper"))
    for field in ("steps", "patch", "n_test", "test_size", "category_n", "dynamics_points"):
        assert getattr(smoke, field) < getattr(quick, field) < getattr(paper, field), field
    assert max(smoke.n_list) < max(quick.n_list) < max(paper.n_list)
    assert quick.n_list == (4, 16, 64, 256) and max(paper.n_list) >= 1024
    assert len(smoke.seeds) >= 2 and len(quick.seeds) >= 3 and len(paper.seeds) >= 3
    cost = {
        n: profiles.experiment(n, n_train=4)
        for n in ("smoke", "quick", "paper")
    }
    params = {
        n: models.count_params(models.build_model(c.arch, **c.resolved_model_kwargs())) for n, c in cost.items()
    }
    assert params["smoke"] < params["quick"] < params["paper"]


def test_every_profile_field_is_documented():
    doc = Profile.__doc__
    for f in dataclasses.fields(Profile):
        if f.name != "name":
            assert f"{f.name}:" in doc, f"Profile docstring does not document {f.name}"


def test_unknown_profile_lists_the_valid_names():
    with pytest.raises(ValueError, match="smoke, quick, long, paper"):
        profiles.resolve("fast")


def test_unknown_override_is_named():
    with pytest.raises(ValueError, match="stepz"):
        profiles.resolve("smoke", stepz=3)


def test_overrides_from_papermill_or_the_command_line_are_coerced():
    p = profiles.resolve(
        "smoke",
        steps="20",
        lr="1e-3",
        n_list="[4, 16]",
        seeds="0, 1, 2",
        gray="true",
        eval_presets="small,dense",
        model_kwargs="{'depth': 2, 'width': 4}",
        workers=2.0,
    )
    assert p.steps == 20 and isinstance(p.steps, int)
    assert p.lr == 1e-3 and p.n_list == (4, 16) and p.seeds == (0, 1, 2)
    assert p.gray is True and p.eval_presets == ("small", "dense") and p.workers == 2
    assert p.model_kwargs == (("depth", 2), ("width", 4))
    assert profiles.resolve("smoke", n_list=[2, 4]).n_list == (2, 4)  # list -> tuple
    assert profiles.resolve("smoke", seeds=7).seeds == (7,)  # a scalar is a 1-tuple
    assert profiles.resolve("smoke", gray="0").gray is False
    # the base profile is untouched (frozen)
    assert PROFILES["smoke"].steps == 150 and PROFILES["smoke"].model_kwargs == ()


@pytest.mark.parametrize(
    "field, value",
    [
        ("steps", "abc"),
        ("steps", 2.5),
        ("steps", 0),
        ("lr", "fast"),
        ("gray", "maybe"),
        ("n_list", "[4, 4]"),
        ("n_list", "[16, 4]"),
        ("n_list", "[0, 4]"),
        ("n_list", []),
        ("seeds", "[-1]"),
        ("seeds", ()),
        ("workers", 0),
        ("category_n", 0),
        ("patch", 64),  # > smoke tile (32)
        ("dynamics_points", 1000),
        ("train_rain", "drizzle"),
        ("eval_presets", "small,drizzle"),
        ("model_size", "huge"),
        ("predict", "noise"),
    ],
)
def test_bad_override_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        profiles.resolve("smoke", **{field: value})


def test_experiment_builds_the_base_config_with_overrides():
    p = PROFILES["quick"]
    c = profiles.experiment("quick")
    assert isinstance(c, ExperimentConfig)
    assert (c.arch, c.model_size, c.steps, c.batch_size, c.patch, c.tile, c.lr) == (
        p.arch, p.model_size, p.steps, p.batch_size, p.patch, p.tile, p.lr)
    assert (c.n_train, c.seed, c.n_test, c.test_size) == (p.category_n, p.seeds[0], p.n_test, p.test_size)
    assert c.eval_presets == p.eval_presets and c.ckpt_every == p.ckpt_every
    d = profiles.experiment(p, background="natural", n_train=256, seed=2)
    assert (d.background, d.n_train, d.seed) == ("natural", 256, 2)
    assert d.name() == "resnet_bg-natural_n256_rain-small_s2"
    # a profile override reaches the config
    assert profiles.experiment(profiles.resolve("quick", steps=123)).steps == 123
    with pytest.raises(ValueError, match="n_trains"):
        profiles.experiment("quick", n_trains=4)
    with pytest.raises(ValueError, match="unknown profile"):
        profiles.experiment("huge")


def test_predict_is_a_profile_field_and_a_grid_axis():
    assert PROFILES["quick"].predict == "rain" and profiles.experiment("quick").predict == "rain"
    p = profiles.resolve("smoke", predict=" background ")
    assert p.predict == "background" and profiles.experiment(p).predict == "background"
    both = profiles.grid("smoke", predict=["rain", "background"], seed=0)
    assert [c.predict for c in both] == ["rain", "background"] and both[0].key() != both[1].key()
    assert both[1].name().endswith("_pred-bg_s0")


def test_grid_is_the_product_of_its_axes():
    p = PROFILES["smoke"]
    configs = profiles.grid(p, background="flat", n_train=p.n_list, seed=p.seeds, eval_presets=("small", "dense"))
    assert [(c.n_train, c.seed) for c in configs] == [(n, s) for n in p.n_list for s in p.seeds]
    assert all(c.background == "flat" and c.eval_presets == ("small", "dense") for c in configs)
    assert len({c.key() for c in configs}) == len(configs)
    with pytest.raises(ValueError, match="seed"):
        profiles.grid(p, seed=[])


def test_smoke_profile_trains_in_seconds(tmp_path):
    """The smoke profile's promise: one training run takes a few seconds on a CPU."""
    c = profiles.experiment("smoke", background="gradient", n_train=2)
    t0 = time.perf_counter()
    r = experiments.run(c, cache_root=tmp_path, progress=False, threads=1)  # 1 thread: robust on a busy CI box
    wall = time.perf_counter() - t0
    assert not r.cached and len(r.history) == 15  # 150 steps, logged every 10
    assert wall < 20.0, f"a smoke run took {wall:.1f} s"  # ~1-2 s on an idle CPU core


def test_the_module_docstring_table_is_current():
    table = profiles.sizes_markdown()
    assert table in profiles.__doc__, "profiles docstring table is stale: paste profiles.sizes_markdown()"
    assert len(table.splitlines()) == 2 + len(PROFILES)
    assert "calibrat" not in profiles.__doc__.lower()  # no promise of a later calibration: the sizes are the code's


def test_profile_design_defaults_are_the_configs():
    config_defaults = {f.name: f.default for f in dataclasses.fields(ExperimentConfig)
                       if f.default is not dataclasses.MISSING}
    for f in dataclasses.fields(Profile):
        if f.name in config_defaults and f.default is not dataclasses.MISSING and f.name != "model_kwargs":
            assert f.default == config_defaults[f.name], f.name


def test_archs_of_notebook_01():
    assert PROFILES["quick"].archs == (PROFILES["quick"].arch,) == ("resnet",) and not PROFILES["quick"].ablation
    assert PROFILES["long"].archs == PROFILES["paper"].archs == ("resnet", "unet")
    assert PROFILES["long"].ablation and PROFILES["paper"].ablation
    p = profiles.resolve("smoke", archs="unet, resnet")  # from papermill or the command line
    assert p.archs == ("unet", "resnet")
    assert profiles.resolve("smoke", archs=[]).archs == ("resnet",)  # empty: the profile's arch
    with pytest.raises(ValueError, match="archs"):
        profiles.resolve("smoke", archs=["vgg"])
    with pytest.raises(ValueError, match="archs has repeated"):
        profiles.resolve("smoke", archs=["unet", "unet"])
    assert profiles.resolve("smoke").to_dict()["archs"] == list(PROFILES["smoke"].archs)


def test_rungs_of_the_budget_ladder():
    q = profiles.resolve("quick")
    r = profiles.rung(q, "2000x64")  # no b: the profile's pixels per step (16 x 32^2 = 4 x 64^2)
    assert (r.steps, r.patch, r.batch_size, r.model_size, r.name) == (2000, 64, 4, "quick", "2000x64")
    assert r.fields() == {"steps": 2000, "patch": 64, "batch_size": 4, "model_size": "quick"}
    assert profiles.rung(q, " 500x32 ").name == "500x32" and profiles.rung(q, "500x32").batch_size == 16
    g = profiles.rung(q, "4000x64b32:paper")
    assert (g.batch_size, g.model_size, g.name) == (32, "paper", "4000x64b32:paper") and "paper network" in g.label
    assert profiles.rung(q, "500x32b16").name == "500x32"  # a b equal to the default is the same rung
    for bad, msg in [("2000", "STEPSxPATCH"), ("0x32", ">= 1"), ("500x128", "larger than the profile's tile"),
                     ("500x32:huge", "no size 'huge'"), ("500x32b0", ">= 1"), (500, "string")]:
        with pytest.raises(ValueError, match=msg):
            profiles.rung(q, bad)


def test_ladder_field_is_validated_and_coerced():
    assert PROFILES["quick"].ladder == ("500x32", "500x64")
    long = PROFILES["long"]
    assert {profiles.rung(long, s).steps for s in long.ladder} == {500, 2000, 8000}
    assert {profiles.rung(long, s).patch for s in long.ladder} == {32, 64}
    assert all(getattr(long, f) == getattr(PROFILES["quick"], f) for f in
               ("steps", "batch_size", "patch", "tile", "n_test", "test_size", "seeds", "n_list", "category_n"))
    assert profiles.resolve("quick", ladder="500x32, 2000x32").ladder == ("500x32", "2000x32")  # papermill string
    assert profiles.resolve("quick", ablation="yes").ablation is True
    with pytest.raises(ValueError, match="ladder has repeated"):
        profiles.resolve("quick", ladder=["500x32", "500x32"])
    with pytest.raises(ValueError, match="same budget"):
        profiles.resolve("quick", ladder=["500x32", "500x32b16"])
    with pytest.raises(ValueError, match="ladder rung 'fast'"):
        profiles.resolve("quick", ladder=["fast"])
    with pytest.raises(ValueError, match="ablation must be a bool"):
        profiles.resolve("quick", ablation="maybe")
