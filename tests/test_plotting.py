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

from derain_utils.book import category_plots, pictures, plotting
from derain_utils.measure import metric_table, scoring

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
        metric_table.title("removal"), metric_table.title("bg_psnr"), metric_table.title("psnr")]
    assert all(len(ax.get_lines()) == 4 for ax in fig.axes)
    assert len(fig.legends) == 1 and len(fig.legends[0].get_texts()) == 4
    with pytest.raises(ValueError, match="metrics"):
        plotting.metrics_vs_n(_table(), "removal")


# ----------------------------------------------------------------------------- images


def test_to_image_layouts():
    rgb = torch.rand(3, 5, 7)
    np.testing.assert_allclose(pictures.to_image(rgb), rgb.permute(1, 2, 0).numpy())
    assert pictures.to_image(torch.rand(1, 3, 5, 7)).shape == (5, 7, 3)
    assert pictures.to_image(torch.rand(1, 5, 7)).shape == (5, 7)
    assert pictures.to_image(np.zeros((5, 7, 1))).shape == (5, 7)
    assert pictures.to_image(np.full((2, 2), 1.7)).max() == 1.0  # clipped for display
    with pytest.raises(ValueError, match="C, H, W"):
        pictures.to_image(torch.rand(4, 5, 7))
    with pytest.raises(ValueError, match="shape"):
        pictures.to_image(np.zeros((5, 7, 2)))


def test_image_grid_flat_and_rows():
    imgs = np.random.default_rng(0).random((5, 8, 6, 3)).astype(np.float32)
    fig = pictures.image_grid(imgs, ncols=3, titles=[f"#{i}" for i in range(5)])
    assert len(fig.axes) == 6  # 2 rows x 3 columns, the last cell switched off
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 5 and not fig.axes[5].axison
    assert all(ax.images[0].get_array().shape == (8, 6, 3) for ax in shown)
    assert [ax.get_title() for ax in shown] == [f"#{i}" for i in range(5)]

    gray = np.zeros((8, 6), np.float32)
    fig = pictures.image_grid([[imgs[0], gray], [gray, None]], titles=["a", "b"], row_labels=["r0", "r1"])
    assert len(fig.axes) == 4
    assert fig.axes[1].images[0].get_array().shape == (8, 6)
    assert fig.axes[1].images[0].get_cmap().name == "gray"
    assert fig.axes[1].images[0].get_clim() == (0.0, 1.0)
    assert [fig.axes[0].get_ylabel(), fig.axes[2].get_ylabel()] == ["r0", "r1"]
    assert not fig.axes[3].axison
    with pytest.raises(ValueError, match="titles has 1"):
        pictures.image_grid([[gray, gray]], titles=["a"])
    with pytest.raises(ValueError, match="row_labels"):
        pictures.image_grid([[gray]], row_labels=["a", "b"])
    with pytest.raises(ValueError, match="non-empty"):
        pictures.image_grid([])


def test_rain_examples_grid():
    images = torch.rand(2, 3, 32, 32)
    eval_set = scoring.make_eval_set(images, list(PRESETS), seed=3)
    fig = pictures.rain_examples(eval_set, index=1)
    assert len(fig.axes) == 2 * len(PRESETS)
    titles = [ax.get_title() for ax in fig.axes[:4]]
    assert titles[0] == "small\n(in-distribution)"
    assert titles[1] == "slanted\n(OOD: angles)"
    assert fig.axes[0].images[0].get_array().shape == (32, 32, 3)  # rainy, RGB
    rain_shown = fig.axes[4].images[0].get_array()
    np.testing.assert_allclose(rain_shown, eval_set["small"].rain[1, 0].numpy())  # the rain layer of image 1
    with pytest.raises(ValueError, match="index=2"):
        pictures.rain_examples(eval_set, index=2)


def test_derain_grid_shapes_and_removed_layer():
    rng = np.random.default_rng(1)
    b = rng.random((16, 12, 3)).astype(np.float32) * 0.5
    r = np.zeros((16, 12, 1), np.float32)
    r[4:8, 3] = 0.4
    o = np.clip(b + r, 0, 1)
    ex_perfect = {"rainy": o, "derained": b, "removed": o - b, "rain": r, "background": b}
    ex_identity = {"rainy": o, "derained": o, "removed": o - o, "rain": r, "background": b}
    fig = pictures.derain_grid([ex_perfect, ex_identity], ["perfect", "identity"])
    assert len(fig.axes) == 2 * 5
    assert [ax.get_title() for ax in fig.axes[:5]] == list(pictures.EXAMPLE_COLUMNS.values())
    removed_perfect = fig.axes[2].images[0].get_array()
    assert removed_perfect.shape == (16, 12)
    np.testing.assert_allclose(removed_perfect, r[..., 0], atol=1e-6)  # a perfect model removes exactly R
    assert float(np.abs(fig.axes[7].images[0].get_array()).max()) == 0.0  # identity removes nothing
    fig = pictures.derain_grid([ex_perfect], ["x"], columns=("rainy", "removed"))
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="lacks \\['rain'\\]"):
        pictures.derain_grid([{"rainy": o}], ["x"], columns=("rainy", "rain"))
    with pytest.raises(ValueError, match="not example keys"):
        pictures.derain_grid([ex_perfect], ["x"], columns=("fog",))
    with pytest.raises(ValueError, match="row_labels"):
        pictures.derain_grid([ex_perfect], ["x", "y"])


# ----------------------------------------------------------------------------- notebook 03: decoupled metrics


def test_decoupled_regions_shows_each_region():
    rng = np.random.default_rng(0)
    b = rng.random((12, 10, 3)).astype(np.float32) * 0.5
    mask = np.zeros((12, 10), bool)
    mask[5, 4] = True
    o = b.copy()
    o[mask] += 0.4
    fig = category_plots.decoupled_regions(b, o, mask[None], margin=1, dim=0.25)
    assert len(fig.axes) == 5
    rain_panel = fig.axes[3].images[0].get_array()
    bg_panel = fig.axes[4].images[0].get_array()
    np.testing.assert_allclose(rain_panel[5, 4], o[5, 4], atol=1e-6)  # inside M: the rainy pixel
    np.testing.assert_allclose(rain_panel[0, 0], 0.25 * o[0, 0], atol=1e-6)  # outside M: dimmed
    np.testing.assert_allclose(bg_panel[4, 3], 0.25 * o[4, 3], atol=1e-6)  # in the 1 px margin: not background
    np.testing.assert_allclose(bg_panel[3, 4], o[3, 4], atol=1e-6)  # 2 px away: background
    assert "(1%)" in fig.axes[2].get_title()  # 1 of 120 pixels
    assert category_plots.decoupled_regions(b, o, mask, margin=0).axes[4].images[0].get_array()[4, 3].tolist() == \
        pytest.approx(o[4, 3].tolist())
    with pytest.raises(ValueError, match="bool"):
        category_plots.decoupled_regions(b, o, mask.astype(float))
    with pytest.raises(ValueError, match="mask has shape"):
        category_plots.decoupled_regions(b, o, mask[:5])
    with pytest.raises(ValueError, match="margin"):
        category_plots.decoupled_regions(b, o, mask, margin=-1)


def test_psnr_vs_metrics_one_scatter_per_preset():
    df = _table()
    models = df[df["preset"] != "clean"].groupby(["seed", "n_train", "preset"], as_index=False)[
        ["psnr", "removal", "bg_psnr"]].mean()
    models["psnr"] = 20 + 5 * models["removal"]
    fig = category_plots.psnr_vs_metrics(models, ("removal", "bg_psnr"), reference=["small"])
    assert len(fig.axes) == 2
    ax = fig.axes[0]
    assert len(ax.collections) == len(PRESETS)  # one scatter per preset
    assert [t.get_text() for t in fig.legends[0].get_texts()][0] == "small (in-distribution)"
    assert len(ax.lines) == len(PRESETS)  # one least-squares line per preset
    xy = ax.lines[0].get_xydata()
    np.testing.assert_allclose(xy[:, 1], 20 + 5 * xy[:, 0])  # exact linear relation recovered
    assert len(category_plots.psnr_vs_metrics(models, ("removal",), fit=False, reference=["small"]).axes[0].lines) == 0
    with pytest.raises(ValueError, match="metrics"):
        category_plots.psnr_vs_metrics(models, "removal")
    with pytest.raises(ValueError, match="nope"):
        category_plots.psnr_vs_metrics(models, ("nope",))


def test_curves_vs_step_lines_are_seed_means():
    rows = [{"background": bg, "n_train": n, "seed": s, "step": step,
             "removal_id": step / 10 + 0.1 * s + (0.5 if bg == "blobs" else 0.0)}
            for bg in ("blobs", "noise") for n in (4, 64) for s in (0, 1, 2) for step in (0, 5, 10)]
    df = pd.DataFrame(rows)
    fig = category_plots.curves_vs_step(df, ("removal_id",), hue_order=["blobs", "noise"])
    ax = fig.axes[0]
    assert len(ax.lines) == 4
    labels = [line.get_label() for line in ax.lines]
    assert labels == ["blobs, N = 4", "blobs, N = 64", "noise, N = 4", "noise, N = 64"]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0.6, 1.1, 1.6])  # mean over seeds 0, 1, 2 (+0.1)
    np.testing.assert_allclose(ax.lines[2].get_xdata(), [0, 5, 10])
    assert len(ax.collections) == 4  # one band per line
    assert ax.lines[0].get_linestyle() != ax.lines[1].get_linestyle()
    assert ax.get_title() == metric_table.title("removal_id") == "Removal of the training rain"
    two = category_plots.curves_vs_step(df.assign(removal_ood=df["removal_id"] / 10), ("removal_id", "removal_ood"))
    assert two.axes[0].get_ylim() == two.axes[1].get_ylim()  # removal panels share one scale
    one = category_plots.curves_vs_step(df[df["seed"] == 0], ("removal_id",), style=None)
    assert len(one.axes[0].lines) == 2 and len(one.axes[0].collections) == 0  # one seed: no band
    assert one.axes[0].get_ylabel().replace("\n", " ") == metric_table.label("removal_id")  # wrapped to fit
    named = category_plots.curves_vs_step(df, ("removal_id",), ylabels={"removal_id": "my label"},
                                          titles={"removal_id": "T"})
    assert named.axes[0].get_ylabel() == "my label" and named.axes[0].get_title() == "T"
    with pytest.raises(ValueError, match="hue_order"):
        category_plots.curves_vs_step(df, ("removal_id",), hue_order=["texture"])
    with pytest.raises(ValueError, match="nope"):
        category_plots.curves_vs_step(df, ("nope",))


# ----------------------------------------------------------------------------------------- real rain (notebook 04)


def test_stretch_removed_common_symmetric_scale():
    a = np.zeros((4, 4))
    a[0, 0] = 0.2
    b = np.zeros((4, 4))
    b[1, 1] = -0.1
    (sa, sb), s = pictures.stretch_removed([a, b], percentile=100)
    assert s == pytest.approx(0.2)
    assert sa[0, 0] == pytest.approx(1.0) and sa[2, 2] == pytest.approx(0.5)
    assert sb[1, 1] == pytest.approx(0.25)  # half the scale, darker than unchanged
    (z,), s0 = pictures.stretch_removed([np.zeros((3, 3))])
    assert s0 == 0 and np.all(z == 0.5)
    with pytest.raises(ValueError, match="percentile"):
        pictures.stretch_removed([a], percentile=0)
    with pytest.raises(ValueError, match=r"layers\[0\]"):
        pictures.stretch_removed([np.zeros(3)])


def test_removed_layer_grid_layout_and_errors():
    rng = np.random.default_rng(0)
    o = rng.random((12, 18, 3), dtype=np.float32)
    item = {"name": "p", "rainy": o, "target": o * 0.9, "outputs": {"A": o * 0.95, "B": o}}
    fig = pictures.removed_layer_grid([item, {**item, "target": None, "rainfree": o[..., 0] > 0.5}], ["A", "B"])
    assert isinstance(fig, Figure) and len(fig.axes) == 4 * 4  # 2 items x 2 rows, rainy + target + 2 nets
    assert fig.axes[1].get_title().startswith("target")
    with pytest.raises(ValueError, match="no output"):
        pictures.removed_layer_grid([item], ["C"])
    with pytest.raises(ValueError, match="lacks"):
        pictures.removed_layer_grid([{"name": "x"}], ["A"])
    with pytest.raises(ValueError, match="empty"):
        pictures.removed_layer_grid([], ["A"])


def test_interval_plot_points_and_errors():
    summary = pd.DataFrame({"group": ["few", "many", "few", "many"], "set": ["s1", "s1", "s2", "s2"],
                            "removal": [0.5, 0.2, 0.4, np.nan], "removal_lo": [0.4, 0.1, np.nan, np.nan],
                            "removal_hi": [0.6, 0.3, np.nan, np.nan]})
    fig = plotting.interval_plot(summary, ["removal"], xlabels={"few": "N = 4"})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["N = 4", "many"]
    assert len(ax.lines) >= 3 and len(fig.legends) == 1
    with pytest.raises(ValueError, match="removal_lo|bg_psnr"):
        plotting.interval_plot(summary, ["bg_psnr"])
    with pytest.raises(ValueError, match="metrics"):
        plotting.interval_plot(summary, "removal")


def test_report_card_figure():
    summary = pd.DataFrame({"set": ["small", "dense", "perspective", "clean"],
                            "kind": ["preset", "preset", "perspective", "clean"],
                            "relation": ["training", "OOD", "OOD", "no rain"],
                            "in_distribution": pd.array([True, False, False, None], dtype="boolean"),
                            "removal": [0.9, 0.3, 0.2, np.nan], "removal_lo": [0.8, 0.2, np.nan, np.nan],
                            "removal_hi": [1.0, 0.4, np.nan, np.nan], "bg_psnr": [30, 31, 25, np.nan],
                            "bg_psnr_lo": [29, 30, 24, np.nan], "bg_psnr_hi": [31, 32, 26, np.nan]})
    img = np.full((8, 8, 3), 0.5, np.float32)
    fig = plotting.report_card(summary, examples={"small": (img, img), "dense": (img, img)}, title="t")
    bars = [p for p in fig.axes[0].patches]
    assert len(bars) == 3  # the clean row is not drawn
    assert len(fig.axes) == 2 + 4  # two metric panels, 2 x 2 thumbnails
    with pytest.raises(ValueError, match="no preset"):
        plotting.report_card(summary[summary["kind"] == "clean"])


# ----------------------------------------------------------------------------- categories
def _category_table(categories=("faces", "urban", "blobs"), seeds=(0, 1, 2), images=("a", "b")) -> pd.DataFrame:
    """complexity = 10 * category index (constant within a category); removal = 0.5 - 0.1 * index + 0.01 * seed."""
    rows = []
    for k, c in enumerate(categories):
        for s in seeds:
            for i, img in enumerate(images):
                rows.append({"background": c, "seed": s, "image": img, "png_bpp": 10.0 * k,
                             "removal": 0.5 - 0.1 * k + 0.01 * s + 0.002 * i, "bg_psnr": 30.0 + k + 0.5 * s})
    return pd.DataFrame(rows)


def test_category_summary_known_answers():
    per_seed, summary = category_plots.category_summary(_category_table(), "png_bpp", "removal")
    assert len(per_seed) == 9 and list(summary["background"]) == ["faces", "urban", "blobs"]
    # seed means: 0.5 - 0.1k + 0.01s + 0.001 (mean over the two images)
    row = per_seed[(per_seed["background"] == "urban") & (per_seed["seed"] == 2)].iloc[0]
    assert row["removal"] == pytest.approx(0.5 - 0.1 + 0.02 + 0.001)
    urban = summary.set_index("background").loc["urban"]
    assert urban["removal"] == pytest.approx(0.4 + 0.01 + 0.001)
    half = scipy.stats.t.ppf(0.975, 2) * 0.01 / math.sqrt(3)  # sd of (0, .01, .02) is 0.01
    assert urban["removal_hi"] - urban["removal"] == pytest.approx(half)
    assert urban["png_bpp"] == 10.0 and urban["png_bpp_lo"] == urban["png_bpp_hi"] == 10.0  # constant x
    assert urban["n_seeds"] == 3
    _, ordered = category_plots.category_summary(_category_table(), "png_bpp", "removal", order=["blobs", "faces"])
    assert list(ordered["background"]) == ["blobs", "faces"]


def test_category_summary_bad_input():
    df = _category_table()
    with pytest.raises(ValueError, match="lacks column"):
        category_plots.category_summary(df, "ae_loss", "removal")
    with pytest.raises(ValueError, match="manga"):
        category_plots.category_summary(df, "png_bpp", "removal", order=["faces", "manga"])
    with pytest.raises(ValueError, match="different columns"):
        category_plots.category_summary(df, "removal", "removal")
    with pytest.raises(ValueError, match="no finite"):
        category_plots.category_summary(df.assign(removal=np.nan), "png_bpp", "removal")


def test_category_scatter_points_and_error_bars():
    ax = category_plots.category_scatter(_category_table(), "png_bpp", "removal", legend=True)
    scatters = [c for c in ax.collections if type(c).__name__ == "PathCollection"]
    assert len(scatters) == 3 and all(len(c.get_offsets()) == 3 for c in scatters)  # 3 seeds per category
    assert len(ax.containers) == 3  # one error bar per category
    xs = sorted(float(c.lines[0].get_xdata()[0]) for c in ax.containers)
    assert xs == [0.0, 10.0, 20.0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["faces", "urban", "blobs"]
    assert ax.get_xlabel() == metric_table.label("png_bpp")
    assert ax.get_ylabel().replace("\n", " ") == metric_table.label("removal")  # wrapped to fit its panel
    assert {t.get_text() for t in ax.texts} == {"faces", "urban", "blobs"}
    with pytest.raises(ValueError, match="no colour"):
        category_plots.category_scatter(_category_table(), "png_bpp", "removal", palette={"faces": "red"})


def test_category_palette_is_stable_and_distinct():
    pal = plotting.category_palette(["faces", "urban", "faces", "blobs"])
    assert list(pal) == ["faces", "urban", "blobs"] and len(set(pal.values())) == 3
    assert len(set(plotting.category_palette([f"c{i}" for i in range(12)]).values())) == 12
    with pytest.raises(ValueError, match="empty"):
        plotting.category_palette([])


def test_measures_by_category_one_panel_per_measure():
    summary = pd.DataFrame({
        "set": ["faces", "urban"] * 3,
        "measure": ["png_bpp"] * 2 + ["grad_mean"] * 2 + ["ae_loss"] * 2,
        "mean": [12.0, 15.0, 0.04, 0.09, 0.03, 0.05],
        "std": [1.0, 2.0, 0.01, 0.02, 0.005, np.nan],
    })
    fig = category_plots.measures_by_category(summary, ncols=2)
    axes = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in axes] == [metric_table.label(m) for m in ("png_bpp", "grad_mean",
                                                                                          "ae_loss")]
    assert len(fig.axes) == 4  # 2 x 2 grid, the last panel switched off
    assert [t.get_text() for t in axes[0].get_yticklabels()] == ["urban", "faces"]  # first category on top
    assert len(axes[0].containers) == 2
    with pytest.raises(ValueError, match="spectral_slope"):
        category_plots.measures_by_category(summary, measures=["spectral_slope"])
    with pytest.raises(ValueError, match="lacks column"):
        category_plots.measures_by_category(summary.drop(columns="std"))


def test_rank_agreement_heatmap_and_bad_input():
    corr = pd.DataFrame([[1.0, -0.5], [-0.5, 1.0]], index=["png_bpp", "ae_loss"], columns=["png_bpp", "ae_loss"])
    ax = category_plots.rank_agreement(corr, title="rho")
    assert sorted(t.get_text() for t in ax.texts) == ["-0.50", "-0.50", "1.00", "1.00"]
    assert ax.collections[0].get_clim() == (-1.0, 1.0)
    with pytest.raises(ValueError, match="square"):
        category_plots.rank_agreement(corr.iloc[:1])
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        category_plots.rank_agreement(corr * 2)


# ----------------------------------------------------------------------------- model-level outcomes


def _outcomes():
    rng = np.random.default_rng(0)
    rows = [{"arm": arm, "n_train": n, "seed": s, "excess_removal": 0.1 - 0.01 * np.log2(n) + rng.normal(0, 0.01),
             "removal": 0.3 + rng.normal(0, 0.02), "bg_psnr": 30 + np.log2(n)}
            for arm in ("resnet", "unet") for n in (4, 16, 64) for s in range(3)]
    return pd.DataFrame(rows)


def test_outcome_vs_n_one_line_per_arm_and_a_zero_line():
    fig = plotting.outcome_vs_n(_outcomes(), suptitle="t")
    axes = fig.axes
    assert len(axes) == 3 and axes[0].get_ylabel().replace("\n", " ") == "excess removal over the filters"
    labelled = [ln for ln in axes[0].get_lines() if not ln.get_label().startswith("_")]
    assert [ln.get_label() for ln in labelled] == ["resnet", "unet"]
    means = _outcomes().groupby(["arm", "n_train"])["excess_removal"].mean()
    assert np.allclose(labelled[0].get_ydata(), means.loc["resnet"].to_numpy())
    assert any(ln.get_linestyle() == ":" and np.allclose(ln.get_ydata(), 0) for ln in axes[0].get_lines())
    with pytest.raises(ValueError, match="empty"):
        plotting.outcome_vs_n(_outcomes().iloc[:0])
    with pytest.raises(ValueError, match="arm"):
        plotting.outcome_vs_n(_outcomes().drop(columns="arm"))


def test_frontier_panels_draw_each_group_and_its_frontier():
    from derain_utils.measure import baselines

    pts = pd.DataFrame({"preset": ["a"] * 3 + ["b"] * 3, "baseline": ["identity", "g1", "g2"] * 2,
                        "bg_psnr": [60.0, 35.0, 30.0, 60.0, 33.0, 28.0], "removal": [0.0, 0.2, 0.4, 0.0, 0.3, 0.5],
                        "image": "i"})
    front = baselines.frontier(pts)
    models = pd.DataFrame({"preset": ["a", "a", "b", "b"], "n_train": [4, 256, 4, 256], "bg_psnr": [40.0, 45, 38, 44],
                           "removal": [0.3, 0.1, 0.4, 0.2]})
    fig = plotting.frontier_panels(models, front, ["a", "b"], hue="n_train", hue_label="N")
    assert [ax.get_title() for ax in fig.axes] == ["a", "b"]
    assert all(any(ln.get_linestyle() == "--" for ln in ax.get_lines()) for ax in fig.axes)  # the frontier
    assert fig.legends and {t.get_text() for t in fig.legends[0].get_texts()} >= {"N = 4", "N = 256"}
    wrapped = plotting.frontier_panels(models, front, ["a", "b", "a"], hue="n_train", ncols=2)  # rows of 2 panels
    shown = [ax for ax in wrapped.axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown] == ["a", "b", "a"] and len(wrapped.axes) == 4
    assert [bool(ax.get_ylabel()) for ax in shown] == [True, False, True]  # the y label on each row's first panel
    with pytest.raises(ValueError, match="no rows"):
        plotting.frontier_panels(models, front, ["c"], hue="n_train")
    with pytest.raises(ValueError, match="grouped by"):
        plotting.frontier_panels(models, baselines.frontier(pts.assign(s="x"), by=("s", "preset")), ["a"], hue="n_train")


def _frontier_and_models():
    from derain_utils.measure import baselines, outcome
    from derain_utils.synth import backgrounds

    images = backgrounds.draw_split("blobs", 0, 3, test_size=40, seed=0).test_tensor()
    es = scoring.make_eval_set(images, ["small", "dense"], seed=1)
    rows = baselines.baseline_rows(es, [baselines.IDENTITY, baselines.Baseline("median", 5),
                                        baselines.Baseline("gaussian", 1.0)], whole_image=False, train_spec="small")
    rows = rows.drop(columns=["family", "param", "blend"]).rename(columns={"baseline": "key"})
    rows["background"] = np.where(rows["key"] == "median_5", "a", "b")
    front = baselines.frontier_of(es)
    return front, outcome.model_table(rows, front, model_cols=("key", "background"))


def test_frontier_panels_one_panel_per_preset_with_the_frontier():
    front, models = _frontier_and_models()
    fig = plotting.frontier_panels(models, front, ["dense", "small"], order=["a", "b"])
    assert len(fig.axes) == 2 and [ax.get_title() for ax in fig.axes] == ["dense", "small"]
    for ax in fig.axes:
        dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
        assert len(dashed) == 1  # the frontier of the panel's preset
        bg, rm = front.curve(ax.get_title())
        assert np.allclose(dashed[0].get_xdata(), bg) and np.allclose(dashed[0].get_ydata(), rm)
        lo, hi = ax.get_xlim()  # the models' range, not the identity's 70-80 dB end of the frontier
        assert lo < models.loc[models["preset"] == ax.get_title(), "bg_psnr"].min() < hi
    # a frontier per hue level (grouped by (hue, preset)): one dashed line per level
    from derain_utils.measure import baselines

    pts = front.points.rename(columns={"baseline": "b"})
    rows = pd.concat([pts.assign(background=h, removal=pts["removal"] * f) for h, f in (("a", 1.0), ("b", 0.5))])
    per = baselines.frontier(rows.rename(columns={"b": "baseline"}), by=("background", "preset"))
    fig = plotting.frontier_panels(models, per, ["dense"], order=["a", "b"])
    dashed = [ln for ln in fig.axes[0].get_lines() if ln.get_linestyle() == "--"]
    assert len(dashed) == 2
    assert np.allclose(dashed[1].get_ydata(), per.curve(("b", "dense"))[1])
    plt.close("all")


def test_frontier_panels_bad_input():
    front, models = _frontier_and_models()
    with pytest.raises(ValueError, match="not in models"):
        plotting.frontier_panels(models, front, ["long_wide"])
    with pytest.raises(ValueError, match="empty"):
        plotting.frontier_panels(models, front, [])
    with pytest.raises(ValueError, match="background"):
        plotting.frontier_panels(models.drop(columns="background"), front, ["dense"])
    from derain_utils.measure import baselines

    other = baselines.frontier(front.points.assign(test_set="x"), by=("test_set", "preset"))
    with pytest.raises(ValueError, match="grouped by"):
        plotting.frontier_panels(models, other, ["dense"])

    plt.close("all")


def test_dose_response_draws_complexity_then_one_panel_per_outcome():
    rng = np.random.default_rng(0)
    rows = pd.DataFrame([{"mix": m, "proportion": p, "seed": s, "stalled": s == 3 and p == 0.5,
                          "removal": 0.3 - 0.1 * p + rng.normal(0, 0.01), "excess_removal": rng.normal(0, 0.02)}
                         for m in ("a->b", "a->c") for p in (0.0, 0.5, 1.0) for s in range(4)])
    by_seed = rows[~rows["stalled"]].groupby(["seed", "proportion"])[["removal", "excess_removal"]].mean().reset_index()
    cx = pd.DataFrame({"mix": ["a->b"] * 3 + ["a->c"] * 3, "proportion": [0.0, 0.5, 1.0] * 2,
                       "value": [1.0, 2, 3, 1, 2.5, 4]})
    fig = category_plots.dose_response(rows, by_seed, {"removal": "paper", "excess_removal": "beyond"},
                                       complexity=cx, suptitle="dose")
    axes = fig.axes
    assert len(axes) == 3 and axes[0].get_title() == "training sets" and axes[1].get_title() == "paper"
    assert axes[1].get_ylabel() == "removal of unseen rain"
    pooled = [ln for ln in axes[1].get_lines() if ln.get_label() == "pooled (declared)"][0]
    np.testing.assert_allclose(pooled.get_ydata(), by_seed.groupby("proportion")["removal"].mean())
    assert len(category_plots.dose_response(rows, by_seed, {"removal": "paper"}).axes) == 1
    plt.close("all")
    with pytest.raises(ValueError, match="stalled"):
        category_plots.dose_response(rows.drop(columns="stalled"), by_seed, {"removal": "paper"})


def test_ladder_figure_panels_lines_and_marks():
    rows = []
    for q in ("paper", "beyond_fidelity"):
        for s in ("synthetic", "rain100H_dev"):
            for rung, v in (("500x32", "reproduced"), ("2000x32", "inconclusive"), ("500x64", "contradicted")):
                rows.append({"rung": rung, "test_set": s, "question": q, "difference": 0.05, "ci_low": 0.01,
                             "ci_high": 0.09, "verdict": v})
    tests = pd.DataFrame(rows)
    steps = {"500x32": 500, "2000x32": 2000, "500x64": 500}
    groups = {"500x32": "32 px crops", "2000x32": "32 px crops", "500x64": "64 px crops"}
    fig = plotting.ladder(tests, steps=steps, groups=groups, questions={"paper": "raw removal"})
    axes = fig.get_axes()
    assert len(axes) == 4 and axes[0].get_title() == "synthetic" and axes[0].get_xscale() == "log"
    assert axes[0].get_ylabel() == "raw removal" and axes[2].get_ylabel() == "beyond_fidelity"
    marks = [t.get_text() for t in axes[0].texts]
    assert sorted(marks) == ["*", "x"]  # reproduced and contradicted are marked, inconclusive is not
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["32 px crops", "64 px crops"]
    with pytest.raises(ValueError, match="no steps or group"):
        plotting.ladder(tests, steps={"500x32": 500}, groups=groups)
    with pytest.raises(ValueError, match="empty"):
        plotting.ladder(tests.iloc[:0], steps=steps, groups=groups)
