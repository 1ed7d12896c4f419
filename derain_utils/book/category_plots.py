"""Figures of background categories (notebook 02) and of the decoupled metrics (notebook 03).

Categories
----------
Notebook 02 compares background categories. :func:`category_summary` reduces a tidy
table to one point per (category, seed) and one mean with a t-interval per category;
:func:`category_scatter` draws both (e.g. OOD rain removal against a complexity
measure, or removal against background PSNR); :func:`measures_by_category` shows every
complexity measure of every category (mean ± sd over its images), and
:func:`rank_agreement` a correlation matrix between measures as an annotated heatmap;
:func:`dose_response` the outcomes (and the complexity) of training sets that mix a simple and a
complex category in several proportions.

Notebook 03's figures: :func:`decoupled_regions` (what the rain mask and the background region of a
test image are), :func:`psnr_vs_metrics` (whole-image PSNR against the decoupled metrics) and
:func:`curves_vs_step` (metrics while the networks train).

Every function returns the matplotlib ``Figure`` (or ``Axes``) it drew and never calls ``plt.show()``.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from derain_utils.book import layout
from derain_utils.book.pictures import image_grid, to_image
from derain_utils.book.plotting import (
    _MARKERS,
    _check_columns,
    _seed_band,
    category_palette,
    preset_label,
    preset_palette,
    reference_presets,
    t_interval,
)
from derain_utils.measure import metric_table

__all__ = [
    "decoupled_regions",
    "psnr_vs_metrics",
    "curves_vs_step",
    "category_summary",
    "category_scatter",
    "measures_by_category",
    "rank_agreement",
    "dose_response",
]


_LINESTYLES = ("-", "--", ":", "-.")


def decoupled_regions(
    background: Any,
    rainy: Any,
    mask: Any,
    *,
    margin: int = 1,
    size: float = 2.0,
    dim: float = 0.2,
    suptitle: str | None = None,
) -> Figure:
    """Where the decoupled metrics look: background, rainy input, mask, rain region, background region.

    The rain region is the mask M; the background region is the complement of M
    dilated by ``margin`` px (square footprint, as :func:`derain_utils.measure.metrics.decoupled`).
    In the two region panels the rainy image is shown inside the region and dimmed to
    ``dim`` times its value outside it.

    Args:
        background, rainy: images (see :func:`to_image`), same size.
        mask: bool rain mask (H, W), or with singleton axes ((1, H, W), (H, W, 1), ...).
        margin: dilation in px (>= 0).
        size: panel side, inches; dim: brightness factor outside a region, in [0, 1].

    Returns:
        Figure with 5 panels (``fig.axes[3]`` the rain region, ``fig.axes[4]`` the background region).
    """
    import scipy.ndimage

    b, o = to_image(background), to_image(rainy)
    if b.shape != o.shape:
        raise ValueError(f"background {b.shape} and rainy {o.shape} differ in shape")
    m = np.asarray(mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else mask)
    if m.dtype != np.bool_:
        raise ValueError(f"mask must be a bool array, got dtype {m.dtype}")
    m = m.reshape([s for s in m.shape if s != 1]) if m.ndim > 2 else m
    if m.shape != b.shape[:2]:
        raise ValueError(f"mask has shape {m.shape}; expected the images' (H, W) = {b.shape[:2]}")
    if isinstance(margin, bool) or not isinstance(margin, (int, np.integer)) or margin < 0:
        raise ValueError(f"margin must be a non-negative integer, got {margin!r}")
    if not 0.0 <= dim <= 1.0:
        raise ValueError(f"dim must be in [0, 1], got {dim!r}")
    bg = ~scipy.ndimage.binary_dilation(m, structure=np.ones((2 * margin + 1,) * 2, bool)) if margin else ~m

    def show(region: np.ndarray) -> np.ndarray:
        r = region if o.ndim == 2 else region[..., None]
        return np.where(r, o, dim * o)

    fr, fb = m.mean(), bg.mean()
    titles = ["background B", "rainy O", f"rain mask M ({fr:.0%})", "rain region: inside M",
              f"background region ({fb:.0%}):\noutside M + {margin} px"]
    return image_grid([[b, o, m.astype(np.float32), show(m), show(bg)]], titles=titles, size=size,
                      suptitle=suptitle)


def psnr_vs_metrics(
    df: pd.DataFrame,
    metrics: Sequence[str] = ("removal", "bg_psnr"),
    *,
    y: str = "psnr",
    hue: str = "preset",
    reference: Iterable[str] | None = None,
    fit: bool = True,
    panel_size: tuple[float, float] = (4.3, 3.6),
    suptitle: str | None = None,
) -> Figure:
    """Scatter of ``y`` (whole-image PSNR) against each decoupled metric, one colour per preset.

    Args:
        df: one row per point (e.g. one model x preset, averaged over test images),
            with ``y``, ``hue`` and the ``metrics`` columns (``in_distribution`` when
            ``reference`` is None).
        metrics: x columns, one panel each.
        reference: presets drawn in black (default: those flagged in-distribution).
        fit: draw each preset's least-squares line.

    Returns:
        Figure with ``len(metrics)`` axes; each holds one scatter collection per preset.
    """
    if isinstance(metrics, str) or not metrics:
        raise ValueError(f"metrics must be a non-empty sequence of column names, got {metrics!r}")
    _check_columns(df, [y, hue, *metrics])
    ref = list(reference) if reference is not None else (
        reference_presets(df, hue) if "in_distribution" in df.columns else [])
    levels = [p for p in dict.fromkeys(df[hue].tolist()) if p != "clean"]
    levels = [p for p in levels if p in ref] + [p for p in levels if p not in ref]
    colours = preset_palette(levels, ref)
    fig, axes = plt.subplots(1, len(metrics), figsize=(panel_size[0] * len(metrics), panel_size[1]), squeeze=False,
                             layout="constrained")
    for ax, m in zip(axes[0], metrics):
        for k, p in enumerate(levels):
            d = df[df[hue] == p]
            xv, yv = d[m].to_numpy(float), d[y].to_numpy(float)
            ok = np.isfinite(xv) & np.isfinite(yv)
            ax.scatter(xv[ok], yv[ok], color=colours[p], marker=_MARKERS[k % len(_MARKERS)], s=26, alpha=0.85,
                       label=preset_label(p, ref), zorder=3)
            if fit and ok.sum() >= 3 and np.ptp(xv[ok]) > 0:
                slope, icpt = np.polyfit(xv[ok], yv[ok], 1)
                xs = np.linspace(xv[ok].min(), xv[ok].max(), 2)
                ax.plot(xs, slope * xs + icpt, color=colours[p], linewidth=1.0, alpha=0.7, zorder=2)
        ax.set_xlabel(metric_table.label(m))
        ax.set_ylabel(layout.wrap(metric_table.label(y), 30))
        ax.set_title(metric_table.title(m))
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), fontsize="small",
               frameon=False)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def curves_vs_step(
    df: pd.DataFrame,
    metrics: Sequence[str],
    *,
    x: str = "step",
    hue: str = "background",
    style: str | None = "n_train",
    seed_col: str = "seed",
    hue_order: Sequence[Any] | None = None,
    confidence: float = 0.95,
    titles: Mapping[str, str] | None = None,
    panel_size: tuple[float, float] = (4.3, 3.4),
    suptitle: str | None = None,
    ylabels: Mapping[str, str] | None = None,
) -> Figure:
    """Training curves: one panel per metric, one line per (``hue``, ``style``) condition.

    Each line is the mean over seeds at each ``x`` (one value per seed and ``x``, e.g.
    the per-model curves of :func:`derain_utils.measure.dynamics.model_curves`), with a band of
    the :func:`t_interval` over seeds (seaborn's ``errorbar=``, clipped to the metric's
    :func:`metric_table.bounds`). Colour = ``hue`` level, line style = ``style`` level.
    Panels of ``removal_*`` metrics share one y range.

    ``titles`` and ``ylabels`` override the panel titles and y labels of
    :mod:`derain_utils.measure.metric_table` (e.g. for columns it does not list).

    Returns:
        Figure with ``len(metrics)`` axes and one figure legend; each axes holds one
        ``Line2D`` per condition.
    """
    if isinstance(metrics, str) or not metrics:
        raise ValueError(f"metrics must be a non-empty sequence of column names, got {metrics!r}")
    conds = [hue] + ([style] if style else [])
    _check_columns(df, [x, seed_col, *conds, *metrics])
    hues = list(hue_order) if hue_order is not None else list(dict.fromkeys(df[hue].tolist()))
    unknown = [h for h in hues if h not in set(df[hue].tolist())]
    if unknown:
        raise ValueError(f"hue_order names {unknown}, which are not values of {hue!r}")
    styles = sorted(df[style].unique().tolist()) if style else [None]
    colours = dict(zip(hues, sns.color_palette("colorblind", max(len(hues), 1))))
    titles = dict(titles) if titles else {}
    fig, axes = plt.subplots(1, len(metrics), figsize=(panel_size[0] * len(metrics), panel_size[1]), squeeze=False,
                             layout="constrained")
    for ax, m in zip(axes[0], metrics):
        for h in hues:
            for j, s in enumerate(styles):
                d = df[(df[hue] == h) & ((df[style] == s) if style else True)]
                if d.empty:
                    continue
                label = f"{h}" + ("" if not style else f", N = {s}" if style == "n_train" else f", {style} {s}")
                _seed_band(ax, d, x, m, seed_col, confidence, alpha=0.12, color=colours[h],
                           linestyle=_LINESTYLES[j % len(_LINESTYLES)], linewidth=1.8,
                           marker=_MARKERS[j % len(_MARKERS)], markersize=4, label=label)
        ax.set_xlabel("training step" if x == "step" else x)
        ax.set_ylabel(layout.wrap((ylabels or {}).get(m, metric_table.label(m)), 30))  # no taller than its panel
        ax.set_title(titles.get(m, metric_table.title(m)))
    removal_axes = [ax for ax, m in zip(axes[0], metrics) if m.startswith("removal")]
    if len(removal_axes) > 1:  # removal panels share one scale, so their levels compare at a glance
        lims = np.array([ax.get_ylim() for ax in removal_axes])
        for ax in removal_axes:
            ax.set_ylim(lims[:, 0].min(), lims[:, 1].max())
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), fontsize="small",
               frameon=False)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def category_summary(
    df: pd.DataFrame,
    x: str,
    y: str,
    *,
    category: str = "background",
    seed_col: str = "seed",
    order: Sequence[str] | None = None,
    confidence: float = 0.95,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-seed points and per-category means of two columns, with t-intervals over seeds.

    Args:
        df: tidy rows (e.g. one per model x test image x preset); ``x`` and ``y`` numeric.
            Filter the rows first (e.g. to the OOD presets): every row given is averaged.
        x, y: the columns (e.g. a complexity measure and ``"removal"``).
        category, seed_col: the columns naming the category and the training seed.
        order: categories to keep, in this order (default: all, order of first appearance).
        confidence: coverage of the intervals (:func:`t_interval` over the seed means).

    Returns:
        ``(per_seed, summary)``: ``per_seed`` has one row per (category, seed) with the
        means of ``x`` and ``y`` over that seed's rows; ``summary`` one row per category
        with ``<x>``, ``<x>_lo``, ``<x>_hi``, ``<y>``, ``<y>_lo``, ``<y>_hi`` (mean over seeds
        and interval; NaN interval with one seed) and ``n_seeds``.
    """
    _check_columns(df, [x, y, category, seed_col])
    if x == y:
        raise ValueError(f"x and y must be different columns, both are {x!r}")
    present = list(dict.fromkeys(df[category].tolist()))
    if order is None:
        order = present
    else:
        order = list(order)
        missing = [c for c in order if c not in present]
        if missing:
            raise ValueError(f"order names categories {missing} that are not in column {category!r}: {present}")
    d = df[df[category].isin(order)]
    for col in (x, y):
        if not np.isfinite(pd.to_numeric(d[col], errors="coerce").to_numpy(dtype=float)).any():
            raise ValueError(f"column {col!r} has no finite values")
    per_seed = d.groupby([category, seed_col], sort=False)[[x, y]].mean().reset_index()
    per_seed[category] = pd.Categorical(per_seed[category], categories=order, ordered=True)
    per_seed = per_seed.sort_values([category, seed_col]).reset_index(drop=True)
    per_seed[category] = per_seed[category].astype(str)
    rows = []
    for cat in order:
        g = per_seed[per_seed[category] == cat]
        row: dict[str, Any] = {category: cat, "n_seeds": int(len(g))}
        for col in (x, y):
            vals = g[col].to_numpy(dtype=float)
            lo, hi = t_interval(vals, confidence)
            row.update({col: float(np.nanmean(vals)), f"{col}_lo": lo, f"{col}_hi": hi})
        rows.append(row)
    return per_seed, pd.DataFrame(rows)


def category_scatter(
    df: pd.DataFrame,
    x: str,
    y: str,
    *,
    category: str = "background",
    seed_col: str = "seed",
    order: Sequence[str] | None = None,
    palette: Mapping[str, Any] | None = None,
    ax: Axes | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    title: str | None = None,
    annotate: bool = True,
    legend: bool = False,
    confidence: float = 0.95,
) -> Axes:
    """``y`` against ``x``: one small point per (category, seed), one large point per category.

    The large point is the category's mean over seeds, with t-interval error bars over
    seeds on each axis that varies between seeds (:func:`category_summary`); the small
    points are the seeds' own models, so a reader sees both the effect and the scatter
    between training runs. Typical uses: OOD rain removal against a complexity measure
    (``x`` constant within a category), or removal against background PSNR (the
    trade-off).

    Args:
        df, x, y, category, seed_col, order, confidence: see :func:`category_summary`.
        palette: colour per category (default :func:`category_palette` of ``order``).
        ax: axes to draw on (default: a new 5 x 3.8 in figure).
        xlabel, ylabel: axis labels (default: :func:`metric_table.label`, else the column name).
        title: axes title.
        annotate: write each category's name next to its mean.
        legend: draw a legend of the categories.

    Returns:
        The Axes: one ``PathCollection`` of seed points and one error bar container per category.
    """
    per_seed, summary = category_summary(df, x, y, category=category, seed_col=seed_col, order=order,
                                         confidence=confidence)
    cats = summary[category].tolist()
    colours = dict(palette) if palette is not None else category_palette(cats)
    missing = [c for c in cats if c not in colours]
    if missing:
        raise ValueError(f"palette has no colour for categories {missing}")
    if ax is None:
        _, ax = plt.subplots(figsize=(5.0, 3.8))
    for k, cat in enumerate(cats):
        marker = _MARKERS[k % len(_MARKERS)]
        pts = per_seed[per_seed[category] == cat]
        ax.scatter(pts[x], pts[y], color=colours[cat], marker=marker, s=22, alpha=0.5, linewidths=0, zorder=2)
        r = summary.iloc[k]

        def err(col: str) -> Any:
            lo, hi = float(r[f"{col}_lo"]), float(r[f"{col}_hi"])
            if not (np.isfinite(lo) and np.isfinite(hi)) or hi - lo <= 0:
                return None
            return [[float(r[col]) - lo], [hi - float(r[col])]]

        ax.errorbar(float(r[x]), float(r[y]), xerr=err(x), yerr=err(y), fmt=marker, color=colours[cat],
                    markersize=8, markeredgecolor="black", markeredgewidth=0.6, capsize=3, label=cat, zorder=3)
        if annotate:
            ax.annotate(cat, (float(r[x]), float(r[y])), xytext=(6, 4), textcoords="offset points",
                        fontsize="small", color="0.2")
    if annotate:
        layout.separate(ax.texts[-len(cats):])  # two categories with close means: labels one above the other
    ax.set_xlabel(xlabel if xlabel is not None else metric_table.label(x))
    ax.set_ylabel(layout.wrap(ylabel if ylabel is not None else metric_table.label(y), 34))
    if title:
        ax.set_title(title)
    if legend:
        ax.legend(fontsize="small", frameon=True)
    return ax


def measures_by_category(
    summary: pd.DataFrame,
    *,
    measures: Sequence[str] | None = None,
    order: Sequence[str] | None = None,
    palette: Mapping[str, Any] | None = None,
    ncols: int = 3,
    panel_size: tuple[float, float] = (3.6, 2.6),
    suptitle: str | None = None,
) -> Figure:
    """Every complexity measure of every category: one panel per measure, mean ± 1 sd.

    Args:
        summary: :func:`derain_utils.measure.complexity.summarize`'s table (columns ``set``,
            ``measure``, ``mean``, ``std``), possibly with extra rows for ``ae_loss``.
            The bars are the spread (standard deviation) over the images of a set, not
            an interval of the mean.
        measures: which measures, in panel order (default: those present, in the
            order of the complexity group of :mod:`derain_utils.measure.metric_table`, then any others).
        order: categories, top to bottom (default: order of first appearance).
        palette: colour per category (default :func:`category_palette`).
        ncols: panels per row.

    Returns:
        The Figure (unused panels switched off).
    """
    _check_columns(summary, ["set", "measure", "mean", "std"], "summary")
    present = list(dict.fromkeys(summary["measure"].tolist()))
    if measures is None:
        known = metric_table.GROUPS["complexity"]
        measures = [m for m in known if m in present] + [m for m in present if m not in known]
    else:
        measures = list(measures)
        unknown = [m for m in measures if m not in present]
        if unknown or not measures:
            raise ValueError(f"measures {unknown or measures} are not in summary; it has {present}")
    sets = list(dict.fromkeys(summary["set"].tolist()))
    order = list(order) if order is not None else sets
    unknown = [c for c in order if c not in sets]
    if unknown:
        raise ValueError(f"order names sets {unknown} that are not in summary: {sets}")
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be a positive integer, got {ncols!r}")
    colours = dict(palette) if palette is not None else category_palette(order)
    ncols = min(ncols, len(measures))
    nrows = math.ceil(len(measures) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size[0] * ncols, panel_size[1] * nrows),
                             squeeze=False, layout="constrained")
    pos = {c: len(order) - 1 - i for i, c in enumerate(order)}  # first category on top
    for ax, m in zip(axes.flat, measures):
        s = summary[summary["measure"] == m].set_index("set")
        for c in order:
            if c not in s.index or not np.isfinite(float(s.loc[c, "mean"])):
                continue
            sd = float(s.loc[c, "std"])
            ax.errorbar(float(s.loc[c, "mean"]), pos[c], xerr=sd if np.isfinite(sd) else None, fmt="o",
                        color=colours[c], capsize=3, markersize=6)
        ax.set_yticks(range(len(order)), order[::-1], fontsize="small")  # bottom to top
        ax.set_ylim(-0.6, len(order) - 0.4)
        ax.set_title(metric_table.label(m), fontsize="medium")
        ax.tick_params(axis="x", labelsize="small")
    for ax in list(axes.flat)[len(measures):]:
        ax.set_axis_off()
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def rank_agreement(
    corr: pd.DataFrame,
    *,
    ax: Axes | None = None,
    title: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> Axes:
    """A correlation matrix (e.g. Spearman's rho between complexity measures) as an annotated heatmap.

    Args:
        corr: square DataFrame with identical index and columns, values in [-1, 1]
            (NaN cells are left blank).
        ax: axes to draw on (default: a new figure sized to the matrix).
        title: axes title.
        labels: display names of the rows/columns (default: the names themselves).

    Returns:
        The Axes (diverging colour map centred on 0, fixed range [-1, 1]).
    """
    if not isinstance(corr, pd.DataFrame) or corr.shape[0] != corr.shape[1] or corr.empty:
        raise ValueError(f"corr must be a non-empty square DataFrame, got {type(corr).__name__} "
                         f"{getattr(corr, 'shape', '')}")
    if list(corr.index) != list(corr.columns):
        raise ValueError(f"corr must have the same index and columns, got {list(corr.index)} and {list(corr.columns)}")
    values = corr.to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    if finite.size and (finite.min() < -1 - 1e-9 or finite.max() > 1 + 1e-9):
        raise ValueError(f"corr values must lie in [-1, 1], got [{finite.min():.3g}, {finite.max():.3g}]")
    names = [labels.get(n, n) if labels else n for n in corr.index]
    if ax is None:
        side = 0.75 * len(names) + 1.8
        _, ax = plt.subplots(figsize=(side + 0.8, side), layout="constrained")
    sns.heatmap(pd.DataFrame(values, index=names, columns=names), ax=ax, vmin=-1.0, vmax=1.0, center=0.0,
                cmap="vlag", annot=True, fmt=".2f", square=True, linewidths=0.5,
                cbar_kws={"shrink": 0.7, "label": "rank correlation"}, annot_kws={"fontsize": "small"})
    ax.tick_params(labelsize="small")
    if title:
        ax.set_title(title)
    return ax


def dose_response(
    rows: pd.DataFrame,
    by_seed: pd.DataFrame,
    outcomes: Mapping[str, str],
    *,
    complexity: pd.DataFrame | None = None,
    complexity_label: str = "complexity",
    x: str = "proportion",
    suptitle: str | None = None,
) -> Figure:
    """Outcomes against the share of complex tiles: per mix (mean and t-interval over seeds), pooled, per seed.

    Args:
        rows: one row per (mix, model) with ``mix``, ``x``, ``seed``, ``stalled`` and the outcomes
            (``CategoryDesign.dose_rows``); stalled models are left out.
        by_seed: the declared unit, one row per (seed, ``x``) with the outcomes pooled over the
            mixes (``CategoryDesign.dose_by_seed``): a thin grey line per seed, the mean in black.
        outcomes: column -> panel title (e.g. the question it answers), one panel each; the
            y axis names the column.
        complexity: optional ``mix``, ``x``, ``value`` rows (e.g. PNG bits per pixel of each
            training set): a first panel, the check that the mixes do rise in complexity.
    """
    _check_columns(rows, ["mix", x, "seed", "stalled", *outcomes])
    _check_columns(by_seed, ["seed", x, *outcomes])
    if not outcomes:
        raise ValueError("outcomes must name at least one column")
    live = rows[~rows["stalled"].astype(bool)]
    mixes = list(dict.fromkeys(rows["mix"]))
    palette = dict(zip(mixes, sns.color_palette("colorblind", len(mixes))))
    n = len(outcomes) + (complexity is not None)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 3.8), layout="constrained", squeeze=False)
    axes = list(axes[0])
    if complexity is not None:
        _check_columns(complexity, ["mix", x, "value"])
        ax = axes.pop(0)
        for m, g in complexity.groupby("mix", sort=False):
            g = g.sort_values(x)
            ax.plot(g[x], g["value"], "o-", color=palette.get(m, "grey"), label=m)
        ax.set(xlabel="share of complex tiles", ylabel=complexity_label, title="training sets")
        ax.legend(fontsize="small")
    for ax, (col, label) in zip(axes, outcomes.items()):
        for _, g in by_seed.groupby("seed"):
            ax.plot(g[x], g[col], color="0.8", lw=0.8, zorder=1)
        for m in mixes:
            stats = [(v, *t_interval(g[col].to_numpy(float)), float(g[col].mean())) for v, g in
                     live[live["mix"] == m].groupby(x)]
            if stats:
                v, lo, hi, mean = (np.array(c, float) for c in zip(*stats))
                ax.errorbar(v, mean, yerr=[mean - lo, hi - mean], fmt="o-", ms=4, capsize=3, color=palette[m],
                            label=m, zorder=2)
        pooled = by_seed.groupby(x)[col].mean()
        ax.plot(pooled.index, pooled.to_numpy(), "s-", color="black", lw=2, label="pooled (declared)", zorder=3)
        ax.set(xlabel="share of complex tiles", ylabel=f"{col.replace('_', ' ')} of unseen rain", title=label)
        ax.legend(fontsize="small")
    if suptitle:
        fig.suptitle(suptitle)
    return fig
