"""The dose-response figure of notebook 02 (the other figures of category_plots are drawn by the notebook tests)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from derain_utils.book import category_plots


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
