"""derain_utils.designs: each notebook's grid of models, the same wherever it is built."""
from __future__ import annotations

import pytest

from derain_utils import designs, profiles


def test_set_size_is_every_architecture_at_every_n_plus_the_ablation():
    p = profiles.resolve("quick")
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
    for name, design in designs.NOTEBOOK_DESIGNS.items():
        configs = design(p, "flat")
        assert configs and all(c.background == "flat" for c in configs), name
        assert design("smoke", "flat") == configs  # a profile name works too
