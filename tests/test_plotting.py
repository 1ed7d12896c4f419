"""Plotting helpers: seed summaries (known answers), curve figures (lines, bands, axes), image grids (shapes)."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from derain_utils import plotting, training

PRESETS = ("small", "slanted", "long_wide", "dense")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _table(seeds=(0, 1, 2), sizes=(4, 16, 64), images=("a", "b"), with_clean=True) -> pd.DataFrame:
    """Eval-like rows; removal = 1/log2(N) - 0.1*seed + 0.01*image, +0.5 on the in-distribution preset."""
    rows = []
    for s in seeds:
        for n in sizes:
            for i, img in enumerate(images):
                for p in PRESETS:
                    removal = 1.0 / math.log2(n) - 0.1 * s + 0.01 * i + (0.5 if p == "small" else 0.0)
                    rows.append({"seed": s, "n_train": n, "image": img, "preset": p, "in_distribution": p == "small",
                                 "removal": removal, "bg_psnr": 30.0 + math.log2(n), "psnr": 25.0})
                if with_clean:
                    rows.append({"seed": s, "n_train": n, "image": img, "preset": "clean", "in_distribution": pd.NA,
                                 "removal": np.nan, "bg_psnr": np.nan, "psnr": 40.0})
    df = pd.DataFrame(rows)
    df["in_distribution"] = df["in_distribution"].astype("boolean")
    return df


# ----------------------------------------------------------------------------- statistics


def test_t_interval_known_answer():
    lo, hi = plotting.t_interval([1.0, 2.0, 3.0])
    half = scipy.stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)  # sd = 1
    assert (lo, hi) == pytest.approx((2 - half, 2 + half))
    assert half == pytest.approx(2.484, abs=1e-3)
    assert plotting.t_interval([5.0, 5.0]) == (5.0, 5.0)
    assert all(math.isnan(v) for v in plotting.t_interval([1.0]))
    assert all(math.isnan(v) for v in plotting.t_interval([1.0, np.nan]))  # NaNs are dropped first
    with pytest.raises(ValueError, match="confidence"):
        plotting.t_interval([1.0, 2.0], confidence=1.5)


def test_seed_summary_averages_images_first_then_seeds():
    df = _table()
    s = plotting.seed_summary(df, "removal")
    assert "clean" not in set(s["preset"])
    assert len(s) == len(PRESETS) * 3
    row = s[(s["preset"] == "slanted") & (s["n_train"] == 16)].iloc[0]
    seed_means = [1 / 4 - 0.1 * k + 0.005 for k in range(3)]  # image offsets 0 and 0.01 average to 0.005
    assert row["mean"] == pytest.approx(np.mean(seed_means))
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(plotting.t_interval(seed_means))
    assert row["sd"] == pytest.approx(0.1)
    assert (row["n_seeds"], row["n_images"]) == (3, 2.0)
    with pytest.raises(ValueError, match="'nope'"):
        plotting.seed_summary(df, "nope")
    with pytest.raises(ValueError, match="no finite values"):
        plotting.seed_summary(df[df["preset"] == "clean"], "removal")


def test_reference_presets_and_palette():
    df = _table()
    assert plotting.reference_presets(df) == ["small"]
    pal = plotting.preset_palette(["small", "slanted", "dense"], ["small"])
    assert pal["small"] == "black" and pal["slanted"] != pal["dense"]
    assert plotting.preset_label("small", ["small"]) == "small (in-distribution)"
    assert plotting.preset_label("dense", ["small"]) == "dense (OOD)"


# ----------------------------------------------------------------------------- curves


def test_metric_vs_n_lines_bands_and_log_axis():
    ax = plotting.metric_vs_n(_table(), "removal")
    lines = ax.get_lines()
    assert [ln.get_label() for ln in lines] == [
        "small (in-distribution)", "slanted (OOD)", "long_wide (OOD)", "dense (OOD)"]
    ref = lines[0]
    assert ref.get_linestyle() == "--" and ref.get_color() == "black"
    assert all(ln.get_linestyle() == "-" for ln in lines[1:])
    np.testing.assert_array_equal(ref.get_xdata(), [4, 16, 64])
    # the plotted means are the seed summary
    expected = plotting.seed_summary(_table(), "removal").query("preset == 'small'")["mean"].to_numpy()
    np.testing.assert_allclose(ref.get_ydata(), expected)
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 4  # one band per preset
    assert ax.get_xscale() == "log"
    assert list(ax.get_xticks()) == [4, 16, 64]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["4", "16", "64"]
    assert "removal" in ax.get_ylabel()
    assert ax.get_legend() is not None and len(ax.get_legend().get_texts()) == 4


def test_metric_vs_n_one_seed_has_no_bands_and_explicit_choices():
    df = _table(seeds=(0,))
    ax = plotting.metric_vs_n(df, "bg_psnr", presets=["dense", "small"], reference=["small"], legend=False,
                              log_x=False)
    assert [ln.get_label() for ln in ax.get_lines()] == ["dense (OOD)", "small (in-distribution)"]
    assert not any(isinstance(c, PolyCollection) for c in ax.collections)
    assert ax.get_xscale() == "linear" and ax.get_legend() is None
    with pytest.raises(ValueError, match="presets \\['fog'\\]"):
        plotting.metric_vs_n(df, "removal", presets=["fog"])


def test_bands_are_clipped_to_what_the_metric_allows():
    df = _table(seeds=(0, 1))  # two seeds 0.1 apart: t_1 = 12.7 makes the interval reach past removal = 1
    assert plotting.seed_summary(df, "removal")["ci_high"].max() > 1.0
    ax = plotting.metric_vs_n(df, "removal")
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 4
    top = max(float(path.vertices[:, 1].max()) for b in bands for path in b.get_paths())
    assert top == pytest.approx(1.0)


def test_metrics_vs_n_panels_and_shared_legend():
    fig = plotting.metrics_vs_n(_table(), ("removal", "bg_psnr", "psnr"), suptitle="t")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3
    assert [ax.get_title() for ax in fig.axes] == [
        plotting.METRIC_TITLES["removal"], plotting.METRIC_TITLES["bg_psnr"], plotting.METRIC_TITLES["psnr"]]
    assert all(len(ax.get_lines()) == 4 for ax in fig.axes)
    assert len(fig.legends) == 1 and len(fig.legends[0].get_texts()) == 4
    with pytest.raises(ValueError, match="metrics"):
        plotting.metrics_vs_n(_table(), "removal")


# ----------------------------------------------------------------------------- images


def test_to_image_layouts():
    rgb = torch.rand(3, 5, 7)
    np.testing.assert_allclose(plotting.to_image(rgb), rgb.permute(1, 2, 0).numpy())
    assert plotting.to_image(torch.rand(1, 3, 5, 7)).shape == (5, 7, 3)
    assert plotting.to_image(torch.rand(1, 5, 7)).shape == (5, 7)
    assert plotting.to_image(np.zeros((5, 7, 1))).shape == (5, 7)
    assert plotting.to_image(np.full((2, 2), 1.7)).max() == 1.0  # clipped for display
    with pytest.raises(ValueError, match="C, H, W"):
        plotting.to_image(torch.rand(4, 5, 7))
    with pytest.raises(ValueError, match="shape"):
        plotting.to_image(np.zeros((5, 7, 2)))


def test_image_grid_flat_and_rows():
    imgs = np.random.default_rng(0).random((5, 8, 6, 3)).astype(np.float32)
    fig = plotting.image_grid(imgs, ncols=3, titles=[f"#{i}" for i in range(5)])
    assert len(fig.axes) == 6  # 2 rows x 3 columns, the last cell switched off
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 5 and not fig.axes[5].axison
    assert all(ax.images[0].get_array().shape == (8, 6, 3) for ax in shown)
    assert [ax.get_title() for ax in shown] == [f"#{i}" for i in range(5)]

    gray = np.zeros((8, 6), np.float32)
    fig = plotting.image_grid([[imgs[0], gray], [gray, None]], titles=["a", "b"], row_labels=["r0", "r1"])
    assert len(fig.axes) == 4
    assert fig.axes[1].images[0].get_array().shape == (8, 6)
    assert fig.axes[1].images[0].get_cmap().name == "gray"
    assert fig.axes[1].images[0].get_clim() == (0.0, 1.0)
    assert [fig.axes[0].get_ylabel(), fig.axes[2].get_ylabel()] == ["r0", "r1"]
    assert not fig.axes[3].axison
    with pytest.raises(ValueError, match="titles has 1"):
        plotting.image_grid([[gray, gray]], titles=["a"])
    with pytest.raises(ValueError, match="row_labels"):
        plotting.image_grid([[gray]], row_labels=["a", "b"])
    with pytest.raises(ValueError, match="non-empty"):
        plotting.image_grid([])


def test_rain_examples_grid():
    images = torch.rand(2, 3, 32, 32)
    eval_set = training.make_eval_set(images, list(PRESETS), seed=3)
    fig = plotting.rain_examples(eval_set, index=1)
    assert len(fig.axes) == 2 * len(PRESETS)
    titles = [ax.get_title() for ax in fig.axes[:4]]
    assert titles[0] == "small\n(in-distribution)"
    assert titles[1] == "slanted\n(OOD: angles)"
    assert fig.axes[0].images[0].get_array().shape == (32, 32, 3)  # rainy, RGB
    rain_shown = fig.axes[4].images[0].get_array()
    np.testing.assert_allclose(rain_shown, eval_set["small"].rain[1, 0].numpy())  # the rain layer of image 1
    with pytest.raises(ValueError, match="index=2"):
        plotting.rain_examples(eval_set, index=2)


def test_derain_grid_shapes_and_removed_layer():
    rng = np.random.default_rng(1)
    b = rng.random((16, 12, 3)).astype(np.float32) * 0.5
    r = np.zeros((16, 12, 1), np.float32)
    r[4:8, 3] = 0.4
    o = np.clip(b + r, 0, 1)
    ex_perfect = {"rainy": o, "derained": b, "removed": o - b, "rain": r, "background": b}
    ex_identity = {"rainy": o, "derained": o, "removed": o - o, "rain": r, "background": b}
    fig = plotting.derain_grid([ex_perfect, ex_identity], ["perfect", "identity"])
    assert len(fig.axes) == 2 * 5
    assert [ax.get_title() for ax in fig.axes[:5]] == list(plotting.EXAMPLE_COLUMNS.values())
    removed_perfect = fig.axes[2].images[0].get_array()
    assert removed_perfect.shape == (16, 12)
    np.testing.assert_allclose(removed_perfect, r[..., 0], atol=1e-6)  # a perfect model removes exactly R
    assert float(np.abs(fig.axes[7].images[0].get_array()).max()) == 0.0  # identity removes nothing
    fig = plotting.derain_grid([ex_perfect], ["x"], columns=("rainy", "removed"))
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="lacks \\['rain'\\]"):
        plotting.derain_grid([{"rainy": o}], ["x"], columns=("rainy", "rain"))
    with pytest.raises(ValueError, match="not example keys"):
        plotting.derain_grid([ex_perfect], ["x"], columns=("fog",))
    with pytest.raises(ValueError, match="row_labels"):
        plotting.derain_grid([ex_perfect], ["x", "y"])
