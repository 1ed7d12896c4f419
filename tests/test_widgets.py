"""The model explorer: examples (known answers), lazy loading, the headless widget, and a real cached sweep."""
from __future__ import annotations

import ipywidgets
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from derain_utils.book import widgets
from derain_utils.lab import experiments, sweeps
from derain_utils.measure import metrics, scoring

PRESETS = ["small", "long_wide"]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()


class Darken(nn.Module):
    """Subtracts a constant: removes some rain and damages the background."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - 0.1).clamp(0, 1)


def _explorer(**kw) -> widgets.DerainExplorer:
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 0.6
    eval_set = scoring.make_eval_set(images, PRESETS, seed=5)
    models = {(4, 0): Identity(), (16, 0): Darken(), (4, 1): Identity(), (16, 1): lambda: Darken()}
    return widgets.DerainExplorer(models, eval_set, image_names=["x", "y", "z"], **kw)


def test_example_known_answers():
    ex = _explorer()
    assert (ex.ns, ex.seeds, ex.presets) == ([4, 16], [0, 1], PRESETS)
    assert ex.is_in_distribution("small") and not ex.is_in_distribution("long_wide")
    e = ex.example(4, 0, "long_wide", "y")
    assert e["rainy"].shape == e["derained"].shape == e["background"].shape == (32, 32, 3)
    assert e["rain"].shape == (32, 32, 1)
    np.testing.assert_array_equal(e["derained"], e["rainy"])  # identity model
    assert np.abs(e["removed"]).max() == 0.0
    assert e["removal"] == pytest.approx(0.0, abs=1e-12)
    assert e["psnr"] == pytest.approx(metrics.psnr(e["background"], e["rainy"]))
    assert (e["n_train"], e["seed"], e["preset"], e["image"], e["in_distribution"]) == (4, 0, "long_wide", "y", False)
    d = ex.example(16, 0, "long_wide", 1)
    np.testing.assert_allclose(d["removed"], e["rainy"] - np.clip(e["rainy"] - 0.1, 0, 1), atol=1e-6)
    assert 0 < d["removal"] < 1 and d["bg_psnr"] < 25  # removes some rain, damages the background
    assert "N = 16" in ex.label(d)


def test_lazy_loader_called_once():
    calls = []

    def load():
        calls.append(1)
        return Identity()

    images = torch.rand(1, 1, 24, 24)
    ex = widgets.DerainExplorer({(2, 0): load}, scoring.make_eval_set(images, ["small"], seed=0))
    assert calls == []
    ex.example(2, 0, "small", 0)
    ex.example(2, 0, "small", "img000")
    assert calls == [1]


def test_bad_input_is_named():
    ex = _explorer()
    with pytest.raises(ValueError, match="n_train=8, seed=0"):
        ex.example(8, 0, "small", 0)
    with pytest.raises(ValueError, match="preset='dense'"):
        ex.example(4, 0, "dense", 0)
    with pytest.raises(ValueError, match="image=3"):
        ex.example(4, 0, "small", 3)
    with pytest.raises(ValueError, match="image='w'"):
        ex.example(4, 0, "small", "w")
    es = scoring.make_eval_set(torch.rand(2, 3, 24, 24), ["small"], seed=0)
    with pytest.raises(ValueError, match="models is empty"):
        widgets.DerainExplorer({}, es)
    with pytest.raises(ValueError, match="integer pairs"):
        widgets.DerainExplorer({"n4": Identity()}, es)
    with pytest.raises(ValueError, match="image_names has 1"):
        widgets.DerainExplorer({(4, 0): Identity()}, es, image_names=["a"])
    # was: accepted, then "'str' object is not callable" on first use
    with pytest.raises(ValueError, match=r"models\[\(4, 0\)\] must be a torch.nn.Module or a zero-argument callable"):
        widgets.DerainExplorer({(4, 0): "model.pt"}, es)
    lazy = widgets.DerainExplorer({(4, 0): lambda: "not a model"}, es)
    with pytest.raises(ValueError, match="returned str, not a torch.nn.Module"):
        lazy.model(4, 0)
    with pytest.raises(RuntimeError, match="widget"):
        ex.update()


def test_widget_builds_and_updates_headless():
    ex = _explorer()
    box = ex.widget()
    assert isinstance(box, ipywidgets.VBox)
    controls = ex._ui["controls"]
    assert set(controls) == {"n_train", "seed", "preset", "image"}
    assert controls["preset"].value == "long_wide"  # starts on an unseen rain
    assert [label for label, _ in controls["preset"].options] == ["small (in-distribution)", "long_wide (OOD)"]
    first = ex._ui["figure"]
    assert isinstance(first, Figure) and len([a for a in first.axes if a.images]) == 5
    controls["n_train"].value = 16  # the observer re-renders
    second = ex._ui["figure"]
    assert second is not first
    assert "N = 16" in second.axes[0].get_ylabel()
    controls["image"].value = 2
    assert "z under long_wide" in ex._ui["figure"]._suptitle.get_text()
    assert isinstance(ex.update(), Figure)


def test_representative_image_is_the_median_change():
    rows = []
    drops = {"a": 0.5, "b": 0.1, "c": 0.3, "d": -0.2, "e": 0.2}  # sorted: d, b, e, c, a -> median e
    for img, drop in drops.items():
        for s in (0, 1):
            rows += [{"image": img, "preset": "dense", "seed": s, "n_train": 4, "removal": 0.6},
                     {"image": img, "preset": "dense", "seed": s, "n_train": 64, "removal": 0.6 - drop},
                     {"image": img, "preset": "small", "seed": s, "n_train": 4, "removal": 0.0}]
    df = pd.DataFrame(rows)
    assert widgets.representative_image(df, "dense", 4, 64) == "e"
    assert widgets.representative_image(df[df["image"] != "e"], "dense", 4, 64) == "b"  # lower median
    with pytest.raises(ValueError, match="n_train=64"):
        widgets.representative_image(df, "small", 4, 64)
    with pytest.raises(ValueError, match="lacks"):
        widgets.representative_image(df.drop(columns="seed"), "dense", 4, 64)


def test_from_configs_reproduces_the_sweep_scores():
    base = experiments.ExperimentConfig(
        arch="resnet", model_size="tiny", background="blobs", n_train=2, tile=32, patch=24, steps=3, batch_size=2,
        lr=1e-3, warmup_steps=0, eval_presets=tuple(PRESETS), n_test=2, test_size=32, ckpt_every=3)
    configs = [base.replace(n_train=n, seed=s) for n in (2, 4) for s in (0, 1)]
    df = sweeps.sweep(configs, progress=False)
    ex = widgets.DerainExplorer.from_configs(configs)
    assert (ex.ns, ex.seeds, ex.presets) == ([2, 4], [0, 1], PRESETS)
    assert ex.image_names == sorted(set(df["image"]), key=list(df["image"]).index)
    for n, s, p, img in [(2, 0, "small", 0), (4, 1, "long_wide", 1)]:
        e = ex.example(n, s, p, img)
        row = df[(df["n_train"] == n) & (df["seed"] == s) & (df["preset"] == p) & (df["image"] == e["image"])]
        assert len(row) == 1
        for m in ("removal", "bg_psnr", "rain_psnr", "psnr"):  # the sweep's scorer and inputs: the same numbers
            assert e[m] == pytest.approx(float(row[m].iloc[0]), rel=1e-6, abs=1e-9), m
    with pytest.raises(ValueError, match="'test_size'"):
        widgets.DerainExplorer.from_configs([configs[0], configs[1].replace(test_size=24)])
    with pytest.raises(ValueError, match="two configs with n_train=2, seed=0"):
        widgets.DerainExplorer.from_configs([configs[0], configs[0].replace(steps=4)])
