"""Learning dynamics: reading what a deraining network learned first, from its learning curve.

Gu et al. (NeurIPS 2023) explain poor generalisation by *what* a network learns:
trained on complex backgrounds and one simple rain, the cheapest way to lower the
loss is to recognise that rain and subtract it ("slacking off"); trained on simple
backgrounds, the network has to learn what a clean image looks like, and that
knowledge removes any rain. A finished model shows the result of that choice. Its
*training curve* shows the choice being made, which is the more direct test: with
complex backgrounds the removal of the training rain (in-distribution, ID) should
rise early while the removal of unseen rain (out-of-distribution, OOD) stays low;
with simple backgrounds OOD removal should follow ID removal.

Where the curves come from
--------------------------
A learning curve is a run of :func:`derain_utils.lab.experiments.run` with ``curve_points``:
the model of ``run(config)``, scored by :func:`derain_utils.measure.scoring.evaluate` on its
held-out test inputs at step 0 and at :func:`derain_utils.lab.experiments.curve_steps`
(many at once: :func:`derain_utils.lab.sweeps.sweep_curves`). The tidy curve has one row per
evaluated step x test image x rain preset (:data:`derain_utils.lab.experiments.CURVE_COLUMNS`).
This module only reads such curves.

Reading the curves
------------------
:func:`model_curves` reduces the tidy curve to one row per model and step
(:data:`MODEL_CURVE_METRICS`: ``removal_id``, ``removal_ood``, ``bg_psnr``, ...; their
words are in :mod:`derain_utils.measure.metric_table`); :func:`half_rise_step` gives the step at
which a curve has covered half of its change from step 0 to the end (linear interpolation
between evaluated steps), and :func:`learning_summary` applies it to the seed-mean curve
of each condition to say which metric a network learns first; :func:`removal_gap` gives
each model's final ID minus OOD removal, the quantity notebook 03's verdict compares
between simple and complex backgrounds.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "MODEL_CURVE_METRICS",
    "model_curves",
    "crossing_step",
    "half_rise_step",
    "MIN_RISE",
    "learning_summary",
    "removal_gap",
]

#: Per-model metrics of :func:`model_curves` (keys of :data:`derain_utils.measure.metric_table.METRICS`):
#: removal of the in-distribution and of the OOD presets (pooled), background, rain-region and
#: whole-image PSNR over all rainy presets, and the PSNR of the output for a clean input.
MODEL_CURVE_METRICS: tuple[str, ...] = ("removal_id", "removal_ood", "bg_psnr", "rain_psnr", "psnr", "clean_psnr")


# --------------------------------------------------------------------------- reading the curves


def model_curves(curve: pd.DataFrame, by: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per model and step: the metrics of :data:`MODEL_CURVE_METRICS`, averaged over images.

    Args:
        curve: tidy curve (:func:`derain_utils.lab.sweeps.sweep_curves`, or an
            ``ExperimentResult.curve`` of a curve run),
            with ``step``, ``preset``, ``in_distribution``, ``removal``, ``bg_psnr``,
            ``rain_psnr``, ``psnr``.
        by: columns that identify a model (default: those of ``key``, ``name``, ``background``,
            ``n_train``, ``seed`` present in ``curve``).

    Returns:
        ``by`` + ``step`` + the metric columns. ``removal_ood`` pools every OOD preset
        (NaN when there is none); ``clean_psnr`` averages the "clean" rows.
    """
    need = ["step", "preset", "in_distribution", "removal", "bg_psnr", "rain_psnr", "psnr"]
    missing = [c for c in need if c not in curve.columns]
    if missing:
        raise ValueError(f"curve lacks column(s) {missing}")
    if by is None:
        by = [c for c in ("key", "name", "background", "n_train", "seed") if c in curve.columns]
    by = list(by)
    missing = [c for c in by if c not in curve.columns]
    if missing:
        raise ValueError(f"by names column(s) {missing} that curve lacks")
    keys = [*by, "step"]
    rainy = curve[curve["preset"] != "clean"]
    flag = rainy["in_distribution"].astype("boolean")
    parts = [
        rainy[flag.fillna(False).to_numpy(bool)].groupby(keys, sort=True)["removal"].mean().rename("removal_id"),
        rainy[(~flag).fillna(False).to_numpy(bool)].groupby(keys, sort=True)["removal"].mean().rename("removal_ood"),
        rainy.groupby(keys, sort=True)[["bg_psnr", "rain_psnr", "psnr"]].mean(),
        curve[curve["preset"] == "clean"].groupby(keys, sort=True)["psnr"].mean().rename("clean_psnr"),
    ]
    out = pd.concat(parts, axis=1).reset_index()
    return out[[*keys, *MODEL_CURVE_METRICS]]


def _as_curve(steps: Any, values: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(steps, dtype=float)
    v = np.asarray(values, dtype=float)
    if s.ndim != 1 or v.shape != s.shape or s.size < 2:
        raise ValueError(f"steps and values must be 1-D of the same length >= 2, got shapes {s.shape}, {v.shape}")
    if not np.all(np.diff(s) > 0):
        raise ValueError("steps must be strictly increasing")
    if not np.all(np.isfinite(v)):
        raise ValueError("values must be finite")
    return s, v


def crossing_step(steps: Any, values: Any, level: float) -> float:
    """The first step at which the curve reaches ``level`` from below (linear interpolation).

    ``steps[0]`` if the curve starts at or above ``level``; NaN if it never reaches it.
    """
    s, v = _as_curve(steps, values)
    if not math.isfinite(level):
        raise ValueError(f"level must be finite, got {level!r}")
    above = np.flatnonzero(v >= level)
    if above.size == 0:
        return math.nan
    i = int(above[0])
    if i == 0:
        return float(s[0])
    frac = (level - v[i - 1]) / (v[i] - v[i - 1])
    return float(s[i - 1] + frac * (s[i] - s[i - 1]))


def half_rise_step(steps: Any, values: Any, *, min_rise: float = 0.0) -> float:
    """The step at which a curve first covers half of its rise from the first to the last value.

    ``crossing_step(steps, values, v0 + (v_end - v0) / 2)``. A curve whose net change
    ``v_end - v0`` is not larger than ``min_rise`` did not learn that metric: NaN.
    """
    s, v = _as_curve(steps, values)
    rise = v[-1] - v[0]
    if not rise > max(min_rise, 0.0):
        return math.nan
    return crossing_step(s, v, v[0] + rise / 2.0)


#: Smallest net rise that counts as "learned" in :func:`learning_summary` (removal: ratio; PSNR: dB).
MIN_RISE: dict[str, float] = {"removal_id": 0.1, "removal_ood": 0.1, "bg_psnr": 1.0, "rain_psnr": 1.0, "psnr": 1.0}


def learning_summary(
    curves: pd.DataFrame,
    columns: Sequence[str] = ("removal_id", "removal_ood", "bg_psnr"),
    *,
    by: Sequence[str] = ("background", "n_train"),
    seed_col: str = "seed",
    min_rise: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Which metric each kind of network learns first, from its seed-mean curve.

    For every condition (``by``) the per-model curves (:func:`model_curves`) are
    averaged over seeds at each step; then, per metric, ``start`` (step 0), ``final``,
    ``change`` and ``t_half`` (:func:`half_rise_step` with ``min_rise[metric]``, default
    :data:`MIN_RISE`: NaN when the metric did not rise by at least that much).
    ``first`` names the metric (of ``columns``) with the smallest ``t_half`` ("none" when
    no metric rose).

    Returns:
        One row per condition: ``by``, ``n_seeds``, then ``<metric>_start``, ``_final``,
        ``_change``, ``_t_half`` for each metric, and ``first``.
    """
    columns = list(columns)
    by = list(by)
    need = [*by, seed_col, "step", *columns]
    missing = [c for c in need if c not in curves.columns]
    if missing:
        raise ValueError(f"curves lacks column(s) {missing}")
    rises = {**MIN_RISE, **(dict(min_rise) if min_rise else {})}
    rows = []
    for cond, g in curves.groupby(by, sort=True):
        cond = cond if isinstance(cond, tuple) else (cond,)
        mean = g.groupby("step", sort=True)[columns].mean()
        row: dict[str, Any] = dict(zip(by, cond))
        row["n_seeds"] = int(g[seed_col].nunique())
        t = {}
        for m in columns:
            v = mean[m].to_numpy(dtype=float)
            row[f"{m}_start"], row[f"{m}_final"] = float(v[0]), float(v[-1])
            row[f"{m}_change"] = float(v[-1] - v[0])
            t[m] = half_rise_step(mean.index.to_numpy(), v, min_rise=rises.get(m, 0.0)) if np.all(np.isfinite(v)) \
                else math.nan
            row[f"{m}_t_half"] = t[m]
        learned = {m: x for m, x in t.items() if math.isfinite(x)}
        row["first"] = min(learned, key=learned.get) if learned else "none"
        rows.append(row)
    return pd.DataFrame(rows)


def removal_gap(curves: pd.DataFrame, step: int | None = None, *, by: Sequence[str] | None = None) -> pd.DataFrame:
    """Each model's in-distribution minus OOD rain removal at ``step`` (default: its last step).

    Args:
        curves: per-model curves (:func:`model_curves`).
        step: the step to read (every model must have it); None = each model's last.
        by: model columns (default: those of ``key``, ``background``, ``n_train``, ``seed`` present).

    Returns:
        ``by``, ``step``, ``removal_id``, ``removal_ood``, ``gap`` = removal_id - removal_ood.
    """
    need = ["step", "removal_id", "removal_ood"]
    missing = [c for c in need if c not in curves.columns]
    if missing:
        raise ValueError(f"curves lacks column(s) {missing}")
    if by is None:
        by = [c for c in ("key", "background", "n_train", "seed") if c in curves.columns]
    by = list(by)
    if step is None:
        last = curves.groupby(by, sort=False)["step"].transform("max")
        sel = curves[curves["step"] == last]
    else:
        sel = curves[curves["step"] == step]
        n_models = curves.groupby(by).ngroups
        if sel.groupby(by).ngroups != n_models:
            raise ValueError(f"step={step} is not evaluated for every model")
    out = sel[[*by, "step", "removal_id", "removal_ood"]].copy()
    out["gap"] = out["removal_id"] - out["removal_ood"]
    return out.sort_values(by).reset_index(drop=True)
