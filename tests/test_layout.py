"""Overlapping text in figures: found from the drawn text boxes, reported by the saver the notebooks use."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from derain_utils.book import layout, plotting


def test_an_overlap_is_found_and_a_clean_figure_has_none():
    fig, ax = plt.subplots(layout="constrained")
    ax.set_title("A title")
    ax.set_xlabel("x")
    assert layout.text_overlaps(fig) == []
    ax.text(0.5, 1.0, "Text on the title", transform=ax.transAxes, ha="center", va="bottom")
    assert layout.text_overlaps(fig) == ["panel 1 title 'A title' overlaps panel 1 text 'Text on the title'"]
    plt.close(fig)


def test_ticks_outside_the_view_and_ticks_of_one_axis_are_not_compared():
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    ax.set_xticks(np.linspace(0, 1, 40))  # crowded tick labels of one axis: matplotlib's business, not ours
    ax.set_ylim(0.2, 0.8)
    fig.suptitle("Title")
    assert layout.text_overlaps(fig) == []
    plt.close(fig)


def test_save_warns_keeps_what_it_found_and_forgets_a_fixed_figure(tmp_path):
    layout.FOUND.clear()
    fig, ax = plt.subplots()
    ax.set_title("Overlapping")
    ax.text(0.5, 1.0, "here", transform=ax.transAxes, ha="center", va="bottom")
    with pytest.warns(UserWarning, match=r"fig_x\.png: 1 overlapping text"):
        assert layout.save(fig, tmp_path / "fig_x.png") is None  # a cell ending with it shows no path
    assert (tmp_path / "fig_x.png").is_file() and list(layout.FOUND) == ["fig_x.png"]
    ax.texts[0].remove()
    layout.save(fig, tmp_path / "fig_x.png")
    assert layout.FOUND == {}
    plt.close(fig)


def test_outcome_vs_n_keeps_long_labels_inside_their_panels():
    """was: the 'rain removal (ratio, 1 = all removed)' label outgrew its panel and ran into the suptitle"""
    rows = [{"n_train": n, "seed": s, "arm": "resnet", "excess_removal": 0.01 * np.log2(n) + 0.01 * s,
             "removal": 0.3 - 0.02 * np.log2(n), "bg_psnr": 30 + np.log2(n)} for n in (4, 16, 64, 256) for s in range(8)]
    fig = plotting.outcome_vs_n(pd.DataFrame(rows), ["excess_removal", "removal", "bg_psnr"], x="n_train", hue="arm",
                                suptitle="Unseen rain, pooled: model-level outcomes against N")
    assert layout.text_overlaps(fig) == []
    plt.close(fig)


def test_wrap():
    assert layout.wrap("short") == "short"
    assert layout.wrap("rain removal (ratio, 1 = all removed)", 28) == "rain removal (ratio, 1 = all\nremoved)"


def test_close_point_labels_are_moved_apart_and_row_labels_stay_in_their_rows():
    """was: 'noise' and 'texture' on top of each other in fig_excess_vs_complexity; the rows' multi-line labels of
    fig_examples ran into each other"""
    from derain_utils.book import category_plots, pictures

    per_seed = pd.DataFrame({"background": ["faces", "noise", "texture"] * 2, "seed": [0, 0, 0, 1, 1, 1],
                             "png_bpp": [1.0, 5.0, 5.05] * 2, "excess_removal": [0.5, 0.1, 0.102] * 2})
    ax = category_plots.category_scatter(per_seed, "png_bpp", "excess_removal", category="background")
    assert len(ax.texts) == 3 and layout.text_overlaps(ax.figure) == []
    label = "N = 2, seed 0\nrain removal 0.42\nbackground PSNR 35.1 dB\nwhole-image PSNR 30.2 dB"
    ex = {c: np.zeros((32, 32, 3), np.float32) for c in pictures.EXAMPLE_COLUMNS}
    fig = pictures.derain_grid([ex, ex], [label, label.replace("2", "8")], size=1.4, suptitle="an image")
    assert layout.text_overlaps(fig) == []
    plt.close("all")
