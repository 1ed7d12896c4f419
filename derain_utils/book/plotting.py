"""Figures of the monograph: metric-versus-set-size curves and image grids.

The notebooks only *call* these functions; every figure a reader sees is drawn here,
from the tidy tables of :func:`derain_utils.sweeps.sweep` (one row per trained
model x test image x rain preset), so that the figure and the verdict read the same
numbers.

Curves over training seeds
--------------------------
A point of a curve is one training-set size ``N``. The experimental unit is the
training run, not the test image: the images of one model share that model. So the
curves are drawn in two steps (:func:`seed_summary`):

1. average the metric over the test images of each model: one value per
   (preset, N, seed);
2. across seeds, draw the mean and a two-sided Student-t interval
   ``mean +- t_{k-1} * sd / sqrt(k)`` over the ``k`` seed means (:func:`t_interval`).

With 3 seeds, ``t_2 = 4.30``: the band is wide, honestly so (it is clipped to the values the
metric can take, :func:`derain_utils.metric_table.bounds`, e.g. removal <= 1). With one seed there is no
band. The band is seaborn's (``lineplot`` with ``errorbar=`` this t-interval). The in-distribution preset
(the training rain) is drawn as a black dashed
*reference* line; every out-of-distribution (OOD) preset gets a colour of seaborn's
colour-blind palette, the same colour in every panel. Set sizes grow geometrically,
so the x axis is log2, with a tick at each size that was trained.

Image grids
-----------
:func:`image_grid` lays out images (numpy ``(H, W, C)`` / ``(H, W)``, or torch
``(C, H, W)``) in rows and columns without ticks, gray images and one-channel
layers (rain ``R``, removed rain ``O - D``) in a gray colour map on the fixed range
[0, 1], so that a rain layer and the rain a network removed are directly comparable.
:func:`rain_examples` shows one test image under each rain preset (rainy input and the
rain layer), and :func:`derain_grid` a test image derained by several models:
``rainy O`` / ``derained D`` / ``removed O - D`` / ``rain R`` (truth) / ``background B``.

Categories
----------
Notebook 02 compares background categories. :func:`category_summary` reduces a tidy
table to one point per (category, seed) and one mean with a t-interval per category;
:func:`category_scatter` draws both (e.g. OOD rain removal against a complexity
measure, or removal against background PSNR); :func:`measures_by_category` shows every
complexity measure of every category (mean ± sd over its images), and
:func:`rank_agreement` a correlation matrix between measures as an annotated heatmap.

Every function returns the matplotlib ``Figure`` (or ``Axes``) it drew and never
calls ``plt.show()``; save it with ``fig.savefig(path, dpi=..., bbox_inches="tight")``.
"""
from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scipy.stats
import seaborn as sns
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator

from derain_utils import metric_table

__all__ = [
    "EXAMPLE_COLUMNS",
    "use_style",
    "draw_frontier",
    "frontier_panels",
    "t_interval",
    "seed_summary",
    "reference_presets",
    "preset_palette",
    "preset_label",
    "metric_vs_n",
    "metrics_vs_n",
    "to_image",
    "image_grid",
    "rain_examples",
    "derain_grid",
    "decoupled_regions",
    "psnr_vs_metrics",
    "curves_vs_step",
    "stretch_removed",
    "removed_layer_grid",
    "interval_plot",
    "report_card",
    "category_palette",
    "category_summary",
    "category_scatter",
    "measures_by_category",
    "rank_agreement",
    "outcome_vs_n",
    "frontier_panels",
]

EXAMPLE_COLUMNS: dict[str, str] = {
    "rainy": "rainy O",
    "derained": "derained D",
    "removed": "removed O − D",
    "rain": "rain R (truth)",
    "background": "background B",
}
"""Keys of an example dict (see :func:`derain_grid`) and their column titles, in order."""

_REFERENCE_COLOR = "black"
_MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def use_style() -> None:
    """The monograph's plot style: seaborn ``whitegrid``, ``notebook`` context, colour-blind palette.

    In a Jupyter kernel it also makes figures appear in the notebook when the environment chose a
    file-only backend (:func:`inline_figures`).
    """
    sns.set_theme(style="whitegrid", context="notebook", palette="colorblind")
    inline_figures()


_FILE_BACKENDS = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}


def inline_figures() -> bool:
    """In a Jupyter kernel whose matplotlib backend draws to files only, switch to ``%matplotlib inline``.

    Headless servers and CI often export ``MPLBACKEND=Agg``; a kernel started there inherits it,
    and its figures never reach the notebook (nor its HTML export). Inside a kernel (JupyterLab,
    papermill) that backend is switched to the inline one; interactive backends (ipympl, Qt) and
    plain Python scripts are left alone. Returns whether it switched.
    """
    import sys

    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or not hasattr(shell, "kernel"):
        return False
    if plt.get_backend().lower() not in _FILE_BACKENDS:
        return False
    shell.run_line_magic("matplotlib", "inline")
    return True


# ----------------------------------------------------------------------------- statistics


def t_interval(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Student-t interval of the mean of ``values`` (one value per seed).

    ``mean +- t_{k-1, (1+confidence)/2} * sd / sqrt(k)`` with the sample sd (ddof = 1).
    NaN values are ignored; fewer than two finite values give ``(nan, nan)``.
    """
    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v)]
    k = v.size
    if k < 2:
        return (math.nan, math.nan)
    half = float(scipy.stats.t.ppf(0.5 + confidence / 2.0, k - 1)) * float(v.std(ddof=1)) / math.sqrt(k)
    m = float(v.mean())
    return (m - half, m + half)


def _check_columns(df: Any, cols: Iterable[str], what: str = "df") -> None:
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{what} must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; it has {list(df.columns)}")


def seed_summary(
    df: pd.DataFrame,
    metric: str,
    *,
    x: str = "n_train",
    hue: str = "preset",
    seed_col: str = "seed",
    confidence: float = 0.95,
    exclude: Iterable[str] = ("clean",),
) -> pd.DataFrame:
    """Mean of ``metric`` per (hue, x) with a t-interval over seeds (see the module docstring).

    Args:
        df: tidy evaluation table (one row per model x test image x preset).
        metric: the column to summarise (numeric; NaN rows are ignored).
        x, hue, seed_col: the columns of the set size, the curve (preset) and the seed.
        confidence: coverage of the interval.
        exclude: ``hue`` levels to drop first (the ``"clean"`` rows have no decoupled metrics).

    Returns:
        One row per (hue, x), sorted: ``hue``, ``x``, ``mean``, ``ci_low``, ``ci_high``,
        ``sd`` (across seed means), ``n_seeds`` and ``n_images`` (rows per seed, averaged).
    """
    _check_columns(df, [metric, x, hue, seed_col])
    d = df[~df[hue].isin(list(exclude))] if exclude else df
    d = d[np.isfinite(pd.to_numeric(d[metric], errors="coerce").to_numpy(dtype=float))]
    if d.empty:
        raise ValueError(f"no finite values of {metric!r} to summarise (after excluding {list(exclude)})")
    per_seed = (
        d.groupby([hue, x, seed_col], sort=True)[metric].agg(["mean", "size"]).reset_index()
    )
    rows = []
    for (h, xv), g in per_seed.groupby([hue, x], sort=True):
        vals = g["mean"].to_numpy(dtype=float)
        lo, hi = t_interval(vals, confidence)
        rows.append({
            hue: h,
            x: xv,
            "mean": float(vals.mean()),
            "ci_low": lo,
            "ci_high": hi,
            "sd": float(vals.std(ddof=1)) if vals.size > 1 else math.nan,
            "n_seeds": int(vals.size),
            "n_images": float(g["size"].mean()),
        })
    return pd.DataFrame(rows)


def reference_presets(df: pd.DataFrame, hue: str = "preset", flag: str = "in_distribution") -> list[str]:
    """The ``hue`` levels whose rows are marked in-distribution (``flag`` True), in table order."""
    _check_columns(df, [hue, flag])
    mask = df[flag].fillna(False).astype(bool).to_numpy()
    return list(dict.fromkeys(df.loc[mask, hue].tolist()))


def preset_palette(presets: Sequence[str], reference: Iterable[str] = ()) -> dict[str, Any]:
    """Colour per preset: black for the reference (in-distribution) ones, colour-blind palette for the rest."""
    ref = set(reference)
    others = [p for p in presets if p not in ref]
    colours = sns.color_palette("colorblind", max(len(others), 1))
    out: dict[str, Any] = {p: _REFERENCE_COLOR for p in presets if p in ref}
    out.update(zip(others, colours))
    return out


def preset_label(preset: str, reference: Iterable[str] = ()) -> str:
    """``"small (in-distribution)"`` or ``"slanted (OOD)"``."""
    return f"{preset} (in-distribution)" if preset in set(reference) else f"{preset} (OOD)"


# ----------------------------------------------------------------------------- curves


def _log2_axis(ax: Axes, values: Sequence[float]) -> None:
    ax.set_xscale("log", base=2)
    ticks = sorted({float(v) for v in values})
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{t:g}" for t in ticks])
    if len(ticks) > 1:
        lo, hi = ticks[0], ticks[-1]
        pad = (hi / lo) ** 0.06
        ax.set_xlim(lo / pad, hi * pad)


def _seed_band(
    ax: Axes, d: pd.DataFrame, x: str, metric: str, seed_col: str, confidence: float, *, alpha: float, **line: Any
) -> None:
    """One line: the mean over seeds of ``metric`` at each ``x``, with seaborn's band of the t-interval over seeds.

    ``d`` holds the rows of one curve; they are first averaged per (``x``, seed), so every
    seed counts once. The band is clipped to the metric's bounds; with one seed per ``x``
    there is no band.
    """
    per = d.groupby([x, seed_col], sort=True)[metric].mean().reset_index()
    lo_b, hi_b = metric_table.bounds(metric)

    def interval(values: pd.Series) -> tuple[float, float]:
        lo, hi = t_interval(values.to_numpy(dtype=float), confidence)
        return float(np.clip(lo, lo_b, hi_b)), float(np.clip(hi, lo_b, hi_b))

    banded = bool((per.groupby(x)[seed_col].nunique() >= 2).any())
    sns.lineplot(data=per, x=x, y=metric, ax=ax, estimator="mean", errorbar=interval if banded else None,
                 legend=False, err_kws={"alpha": alpha, "linewidth": 0}, **line)


def metric_vs_n(
    df: pd.DataFrame,
    metric: str,
    *,
    ax: Axes | None = None,
    x: str = "n_train",
    hue: str = "preset",
    seed_col: str = "seed",
    reference: Iterable[str] | None = None,
    presets: Sequence[str] | None = None,
    log_x: bool = True,
    confidence: float = 0.95,
    title: str | None = None,
    xlabel: str = "training background tiles N",
    legend: bool = True,
) -> Axes:
    """One curve of ``metric`` against the set size per preset: seed mean and t-interval band.

    Args:
        df: tidy evaluation table (columns ``x``, ``hue``, ``seed_col``, ``metric``;
            ``in_distribution`` when ``reference`` is None).
        metric: column to plot (e.g. ``"removal"``, ``"bg_psnr"``, ``"psnr"``).
        ax: axes to draw on (default: a new 5 x 3.6 in figure).
        reference: presets drawn as the black dashed in-distribution reference
            (default: those flagged ``in_distribution`` in ``df``).
        presets: which presets to draw, in legend order (default: all but ``"clean"``,
            reference first, then in order of first appearance in ``df``).
        log_x: log2 x axis with a tick at each set size.
        confidence: coverage of the band (:func:`t_interval` over seed means).
        title, xlabel: texts (title default: none).
        legend: draw a legend on the axes.

    Returns:
        The Axes: one ``Line2D`` per preset (labelled :func:`preset_label`) and one
        band (``PolyCollection``, clipped to :func:`metric_table.bounds`) per preset that has at least two seeds.
    """
    summary = seed_summary(df, metric, x=x, hue=hue, seed_col=seed_col, confidence=confidence)
    ref = list(reference) if reference is not None else (
        reference_presets(df, hue) if "in_distribution" in df.columns else [])
    in_summary = set(summary[hue].tolist())
    available = [p for p in dict.fromkeys(df[hue].tolist()) if p in in_summary]  # order of first appearance
    if presets is None:
        presets = [p for p in available if p in ref] + [p for p in available if p not in ref]
    else:
        unknown = [p for p in presets if p not in available]
        if unknown:
            raise ValueError(f"presets {unknown} have no finite {metric!r} values; available: {available}")
    if ax is None:
        _, ax = plt.subplots(figsize=(5.0, 3.6))
    colours = preset_palette(list(presets), ref)
    d = df[df[hue].isin(list(presets))]
    d = d[np.isfinite(pd.to_numeric(d[metric], errors="coerce").to_numpy(dtype=float))]
    k_ood = 0
    for p in presets:
        is_ref = p in ref
        _seed_band(ax, d[d[hue] == p], x, metric, seed_col, confidence, alpha=0.08 if is_ref else 0.18,
                   color=colours[p], linestyle="--" if is_ref else "-", linewidth=1.8,
                   marker="o" if is_ref else _MARKERS[k_ood % len(_MARKERS)], markersize=5,
                   zorder=3 if is_ref else 2, label=preset_label(p, ref))
        if not is_ref:
            k_ood += 1
    if log_x:
        _log2_axis(ax, summary[x].tolist())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(metric_table.label(metric))
    if title:
        ax.set_title(title)
    if legend:
        ax.legend(fontsize="small", frameon=True)
    return ax


def metrics_vs_n(
    df: pd.DataFrame,
    metrics: Sequence[str] = ("removal", "bg_psnr", "psnr"),
    *,
    x: str = "n_train",
    hue: str = "preset",
    seed_col: str = "seed",
    reference: Iterable[str] | None = None,
    presets: Sequence[str] | None = None,
    confidence: float = 0.95,
    panel_size: tuple[float, float] = (4.3, 3.6),
    suptitle: str | None = None,
) -> Figure:
    """A row of :func:`metric_vs_n` panels, one per metric, with one shared legend below.

    Returns:
        The Figure (``len(metrics)`` axes; the legend is a figure legend).
    """
    if isinstance(metrics, str) or not metrics:
        raise ValueError(f"metrics must be a non-empty sequence of column names, got {metrics!r}")
    k = len(metrics)
    fig, axes = plt.subplots(1, k, figsize=(panel_size[0] * k, panel_size[1]), squeeze=False,
                             layout="constrained")
    for ax, m in zip(axes[0], metrics):
        metric_vs_n(df, m, ax=ax, x=x, hue=hue, seed_col=seed_col, reference=reference, presets=presets,
                    confidence=confidence, title=metric_table.title(m), legend=False)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), fontsize="small",
               frameon=False)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


# ----------------------------------------------------------------------------- images


def to_image(x: Any) -> np.ndarray:
    """An image for ``imshow``: float ``(H, W)`` (gray/one-channel) or ``(H, W, 3)`` in [0, 1].

    Accepts numpy ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` and torch ``(H, W)``,
    ``(C, H, W)``, ``(1, C, H, W)`` with C in {1, 3}. Values are clipped to [0, 1].
    """
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu().float()
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim == 3:
            if t.shape[0] not in (1, 3):
                raise ValueError(f"image tensor must be (C, H, W) with C in {{1, 3}}, got {tuple(x.shape)}")
            t = t.permute(1, 2, 0)
        elif t.ndim != 2:
            raise ValueError(f"image tensor must be (H, W), (C, H, W) or (1, C, H, W), got {tuple(x.shape)}")
        a = t.numpy()
    else:
        a = np.asarray(x, dtype=np.float32)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3)):
        raise ValueError(f"image must be (H, W), (H, W, 1) or (H, W, 3), got shape {np.shape(x)}")
    return np.clip(a.astype(np.float32, copy=False), 0.0, 1.0)


def _as_rows(images: Any, ncols: int | None) -> list[list[Any]]:
    """Nested rows of images from a flat sequence (laid out ``ncols`` wide) or a list of rows."""
    if isinstance(images, np.ndarray) and images.ndim == 4:
        images = list(images)
    elif isinstance(images, torch.Tensor) and images.ndim == 4:
        images = list(images)
    if not isinstance(images, Sequence) or len(images) == 0:
        raise ValueError("images must be a non-empty sequence of images or of rows of images")
    nested = all(isinstance(r, (list, tuple)) for r in images)
    if nested:
        if ncols is not None:
            raise ValueError("ncols applies to a flat sequence of images, not to rows")
        return [list(r) for r in images]
    n = len(images)
    ncols = ncols or min(n, 8)
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    return [list(images[i:i + ncols]) for i in range(0, n, ncols)]


def image_grid(
    images: Any,
    *,
    titles: Sequence[str] | Sequence[Sequence[str]] | None = None,
    row_labels: Sequence[str] | None = None,
    ncols: int | None = None,
    size: float = 1.9,
    cmap: str = "gray",
    suptitle: str | None = None,
) -> Figure:
    """Images in a grid, no ticks; one-channel images in ``cmap`` on the fixed range [0, 1].

    Args:
        images: a flat sequence of images (laid out ``ncols`` wide, default up to 8),
            an ``(N, H, W, C)`` array / ``(N, C, H, W)`` tensor, or a list of rows of
            images (rows may be ragged; ``None`` leaves a cell empty).
        titles: one title per column (for rows), or per image (flat input).
        row_labels: one label per row (written as the y label of its first cell).
        size: side of one cell in inches.
        cmap: colour map of one-channel images.
        suptitle: figure title.

    Returns:
        The Figure; ``fig.axes`` holds ``rows x cols`` axes in row-major order
        (unused cells are switched off).
    """
    flat_input = not (isinstance(images, (list, tuple)) and images and
                      all(isinstance(r, (list, tuple)) for r in images))
    rows = _as_rows(images, ncols)
    nrows, ncol = len(rows), max(len(r) for r in rows)
    if row_labels is not None and len(row_labels) != nrows:
        raise ValueError(f"row_labels has {len(row_labels)} entries for {nrows} rows")
    if titles is not None:
        n_titles = sum(len(r) for r in rows) if flat_input else ncol
        if len(titles) != n_titles:
            raise ValueError(f"titles has {len(titles)} entries; expected {n_titles} "
                             f"({'one per image' if flat_input else 'one per column'})")
    fig, axes = plt.subplots(nrows, ncol, figsize=(size * ncol, size * nrows + (0.4 if suptitle else 0.0)),
                             squeeze=False, layout="constrained")
    for i, row in enumerate(rows):
        for j in range(ncol):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            img = row[j] if j < len(row) else None
            if img is None:
                ax.set_axis_off()
                continue
            a = to_image(img)
            ax.imshow(a, cmap=cmap if a.ndim == 2 else None, vmin=0.0, vmax=1.0, interpolation="nearest")
            for spine in ax.spines.values():
                spine.set_visible(False)
            if titles is not None:
                t = titles[i * ncol + j] if flat_input else (titles[j] if i == 0 else None)
                if t:
                    ax.set_title(t, fontsize="small")
            if row_labels is not None and j == 0:
                ax.set_ylabel(row_labels[i], fontsize="small")
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def rain_examples(
    eval_set: Mapping[str, Any],
    index: int = 0,
    *,
    train_preset: str = "small",
    size: float = 1.9,
) -> Figure:
    """One test image under each rain preset: the rainy input (top) and the rain layer (bottom).

    Args:
        eval_set: ``{preset name: inputs}`` with ``.rainy`` (n, C, H, W) and ``.rain``
            (n, 1, H, W) tensors, i.e. :func:`derain_utils.training.make_eval_set`'s output.
        index: which test image.
        train_preset: the training rain; each column title says whether the preset is
            in-distribution for it or on which fields it is OOD (:func:`rain.ood_fields`).

    Returns:
        Figure with 2 rows x len(eval_set) columns.
    """
    from derain_utils import rain  # below plotting in the import order

    if not eval_set:
        raise ValueError("eval_set is empty")
    names = list(eval_set)
    n = int(next(iter(eval_set.values())).rainy.shape[0])
    if not 0 <= index < n:
        raise ValueError(f"index={index} is out of range for {n} test images")
    titles = []
    for name in names:
        spec = getattr(eval_set[name], "spec", name)
        ood = rain.ood_fields(train_preset, spec)
        titles.append(f"{name}\n(in-distribution)" if not ood else f"{name}\n(OOD: {', '.join(ood)})")
    rows = [[eval_set[p].rainy[index] for p in names], [eval_set[p].rain[index] for p in names]]
    return image_grid(rows, titles=titles, row_labels=["rainy O = B + R", "rain layer R"], size=size)


def derain_grid(
    examples: Sequence[Mapping[str, Any]],
    row_labels: Sequence[str],
    *,
    columns: Sequence[str] = tuple(EXAMPLE_COLUMNS),
    size: float = 1.9,
    suptitle: str | None = None,
) -> Figure:
    """Test images derained by several models, one row per model.

    Args:
        examples: one mapping per row holding images under the keys of ``columns``
            (see :data:`EXAMPLE_COLUMNS`; e.g. the output of
            :meth:`derain_utils.widgets.DerainExplorer.example`). ``"removed"`` is
            ``rainy - derained``, shown as a one-channel layer (channel mean, clipped
            to [0, 1], the same scale as the rain layer).
        row_labels: one label per row (e.g. ``"N = 4\\nremoval 0.42"``).
        columns: which images to show, in order.

    Returns:
        Figure with len(examples) rows x len(columns) columns.
    """
    unknown = [c for c in columns if c not in EXAMPLE_COLUMNS]
    if unknown:
        raise ValueError(f"columns {unknown} are not example keys; valid: {list(EXAMPLE_COLUMNS)}")
    if len(examples) != len(row_labels):
        raise ValueError(f"row_labels has {len(row_labels)} entries for {len(examples)} examples")
    rows = []
    for i, ex in enumerate(examples):
        missing = [c for c in columns if c not in ex]
        if missing:
            raise ValueError(f"examples[{i}] lacks {missing}")
        row = []
        for c in columns:
            a = to_image(ex[c]) if c != "removed" else _layer(ex[c])
            row.append(a)
        rows.append(row)
    return image_grid(rows, titles=[EXAMPLE_COLUMNS[c] for c in columns], row_labels=list(row_labels), size=size,
                      suptitle=suptitle)


def _layer(x: Any) -> np.ndarray:
    """A signed difference image as a one-channel layer: channel mean, clipped to [0, 1]."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().float()
        if x.ndim == 4 and x.shape[0] == 1:
            x = x[0]
        a = x.mean(0).numpy() if x.ndim == 3 else x.numpy()
    else:
        a = np.asarray(x, dtype=np.float32)
        a = a.mean(-1) if a.ndim == 3 else a
    if a.ndim != 2:
        raise ValueError(f"a layer must be (H, W), (H, W, C) or (C, H, W), got shape {np.shape(x)}")
    return np.clip(a, 0.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------- real rain (notebook 04, report card)

REMOVED_TITLE = "removed\nO − D"
"""Row label of removed layers in :func:`removed_layer_grid` (mid-grey = unchanged)."""


def stretch_removed(layers: Sequence[Any], *, percentile: float = 99.5) -> tuple[list[np.ndarray], float]:
    """Signed removed layers ``L = luma(O - D)`` on one common, symmetric grey scale.

    Each layer becomes ``0.5 + L / (2 s)`` clipped to [0, 1], with ``s`` the ``percentile`` of |L|
    over *all* layers together: a network that removed less looks fainter, never rescaled up.
    Mid-grey = unchanged; white = the output is darker than the input (brightness removed: rain
    is bright); black = the output is brighter. A layer given as (H, W, C) is averaged over C.

    Returns:
        (the stretched layers, float32 (H, W) each; the scale ``s``; 0 when every layer is 0).
    """
    if not 0.0 < float(percentile) <= 100.0:
        raise ValueError(f"percentile must be in (0, 100], got {percentile!r}")
    arrs = []
    for i, x in enumerate(layers):
        a = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
        a = a.mean(-1) if a.ndim == 3 else a
        if a.ndim != 2:
            raise ValueError(f"layers[{i}] must be (H, W) or (H, W, C), got shape {np.shape(x)}")
        arrs.append(a)
    if not arrs:
        raise ValueError("layers is empty")
    s = float(np.percentile(np.concatenate([np.abs(a).ravel() for a in arrs]), percentile))
    if not s > 0:
        return [np.full(a.shape, 0.5, np.float32) for a in arrs], 0.0
    return [np.clip(0.5 + a / (2.0 * s), 0.0, 1.0).astype(np.float32) for a in arrs], s


def removed_layer_grid(
    items: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    percentile: float = 99.5,
    size: float = 2.2,
    suptitle: str | None = None,
) -> Figure:
    """Photos derained by several networks, each with what every network removed.

    Two rows per item. Top: the rainy photo O, the clean target B when given, and each network's
    output D. Bottom: under O, the rain-free pixels of :func:`derain_utils.realdata.rain_free_mask`
    (white) when given; under B, the true rain ``O - B``; under each output, its removed layer
    ``luma(O - D)``. All layers of one item share the scale of :func:`stretch_removed`, so they are
    directly comparable.

    Args:
        items: mappings with ``"name"`` (row label), ``"rainy"`` (H, W, 3), ``"outputs"``
            (``{column: derained}`` for every name in ``columns``), optionally ``"target"`` (H, W, 3)
            and ``"rainfree"`` (bool (H, W)).
        columns: the network labels, in column order.

    Returns:
        The Figure (``2 * len(items)`` rows).
    """
    from derain_utils import realdata  # below plotting in the import order

    if not items:
        raise ValueError("items is empty")
    if not columns:
        raise ValueError("columns is empty: name at least one network")
    has_target = any(it.get("target") is not None for it in items)
    rows, labels, ratios = [], [], []
    for k, it in enumerate(items):
        missing = [c for c in ("name", "rainy", "outputs") if c not in it]
        if missing:
            raise ValueError(f"items[{k}] lacks {missing}")
        lost = [c for c in columns if c not in it["outputs"]]
        if lost:
            raise ValueError(f"items[{k}] ({it['name']}) has no output for {lost}")
        o = np.asarray(it["rainy"], np.float32)
        layers = [realdata.removed_layer(o, np.asarray(it["outputs"][c], np.float32)) for c in columns]
        target = it.get("target")
        if target is not None:
            layers.insert(0, realdata.removed_layer(o, np.asarray(target, np.float32)))
        shown, _ = stretch_removed(layers, percentile=percentile)
        top: list[Any] = [o]
        bottom: list[Any] = [np.asarray(it["rainfree"], np.float32) if it.get("rainfree") is not None else None]
        if has_target:
            top.append(target)
            bottom.append(shown.pop(0) if target is not None else None)
        top += [it["outputs"][c] for c in columns]
        bottom += shown
        rows += [top, bottom]
        labels += [str(it["name"]), REMOVED_TITLE]
        ratios += [o.shape[0] / o.shape[1]] * 2
    titles = ["rainy O" + ("  /  rain-free pixels" if any(it.get("rainfree") is not None for it in items) else "")]
    titles += (["target B  /  true rain O − B"] if has_target else []) + list(columns)
    ncol = len(titles)
    fig, axes = plt.subplots(len(rows), ncol, squeeze=False, layout="constrained",
                             figsize=(size * ncol, size * sum(ratios) + (0.5 if suptitle else 0.2)),
                             gridspec_kw={"height_ratios": ratios})
    for i, row in enumerate(rows):
        for j in range(ncol):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            for spine in ax.spines.values():
                spine.set_visible(False)
            img = row[j] if j < len(row) else None
            if img is None:
                ax.set_facecolor("none")
                if j == 0:
                    ax.set_ylabel(labels[i], fontsize="small")
                continue
            a = to_image(img)
            ax.imshow(a, cmap="gray" if a.ndim == 2 else None, vmin=0.0, vmax=1.0, interpolation="nearest")
            if i == 0:
                ax.set_title(titles[j], fontsize="small")
            if j == 0:
                ax.set_ylabel(labels[i], fontsize="small")
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def interval_plot(
    summary: pd.DataFrame,
    metrics: Sequence[str],
    *,
    x: str = "group",
    hue: str = "set",
    order: Sequence[Any] | None = None,
    hue_order: Sequence[Any] | None = None,
    xlabels: Mapping[Any, str] | None = None,
    ylabels: Mapping[str, str] | None = None,
    panel_size: tuple[float, float] = (4.2, 3.4),
    suptitle: str | None = None,
) -> Figure:
    """Means with 95% intervals: one panel per metric, ``x`` levels on the x axis, ``hue`` levels dodged.

    Args:
        summary: one row per (x, hue) with columns ``<metric>``, ``<metric>_lo``, ``<metric>_hi``
            (e.g. from :func:`derain_utils.report.mean_ci`); NaN intervals draw a bare point.
        metrics: metric columns, one panel each (axis labels and titles from :mod:`derain_utils.metric_table`).
        order, hue_order: level orders (default: order of first appearance).
        xlabels: display names of the ``x`` levels.
        ylabels: axis labels overriding the metric table's.

    Returns:
        The Figure, with one figure legend for the hue levels.
    """
    if isinstance(metrics, str) or not metrics:
        raise ValueError(f"metrics must be a non-empty sequence of column names, got {metrics!r}")
    need = [x, hue] + [f"{m}{s}" for m in metrics for s in ("", "_lo", "_hi")]
    _check_columns(summary, need, "summary")
    order = list(order) if order is not None else list(dict.fromkeys(summary[x].tolist()))
    hue_order = list(hue_order) if hue_order is not None else list(dict.fromkeys(summary[hue].tolist()))
    colours = dict(zip(hue_order, sns.color_palette("colorblind", max(len(hue_order), 1))))
    k = len(metrics)
    fig, axes = plt.subplots(1, k, figsize=(panel_size[0] * k, panel_size[1]), squeeze=False, layout="constrained")
    width = 0.7
    for ax, m in zip(axes[0], metrics):
        for j, h in enumerate(hue_order):
            off = (j - (len(hue_order) - 1) / 2) * width / max(len(hue_order), 1)
            for i, level in enumerate(order):
                r = summary[(summary[x] == level) & (summary[hue] == h)]
                if r.empty or not np.isfinite(float(r[m].iloc[0])):
                    continue
                v, lo, hi = (float(r[c].iloc[0]) for c in (m, f"{m}_lo", f"{m}_hi"))
                err = [[v - lo], [hi - v]] if np.isfinite(lo) and np.isfinite(hi) else None
                ax.errorbar(i + off, v, yerr=err, fmt=_MARKERS[j % len(_MARKERS)], color=colours[h], capsize=3,
                            markersize=6, label=str(h) if i == 0 or not ax.get_legend_handles_labels()[1] else None)
        ax.set_xticks(range(len(order)))
        ax.set_xticklabels([(xlabels or {}).get(o, str(o)) for o in order], rotation=20, ha="right",
                           fontsize="small")
        ax.set_xlim(-0.6, len(order) - 0.4)
        label = (ylabels or {}).get(m, metric_table.label(m))
        ax.set_ylabel(textwrap.fill(label, 28), fontsize="small")
        ax.set_title(metric_table.title(m) if m in metric_table.METRICS else "")
    handles, labels = [], []
    for ax in axes[0]:
        for hnd, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(hnd)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), fontsize="small",
                   frameon=False)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


_CARD_COLOURS = {"training rain": "black", "overlapping preset": "#999999", "in-distribution": "black",
                 "OOD preset": "#d55e00", "perspective": "#cc79a7", "paired": "#009e73"}


def report_card(
    summary: pd.DataFrame,
    *,
    examples: Mapping[str, tuple[Any, Any]] | None = None,
    title: str | None = None,
) -> Figure:
    """The figure of :mod:`derain_utils.report`: how one model's rain removal holds up away from its training rain.

    Top: removal and background PSNR per test set, mean and 95% interval (black = the training
    rain, grey = presets overlapping its ranges, vermilion = OOD presets, pink = perspective rain,
    green = paired benchmark sets); a dashed line marks 0 removal (the identity). Without a
    ``relation`` column, presets are split by ``in_distribution`` alone. Bottom (when
    ``examples`` is given): per test set, the rainy input above the model's output.

    Args:
        summary: :func:`derain_utils.report.summarize`'s table (rows of kind preset, perspective,
            paired are drawn).
        examples: ``{set: (rainy, derained)}`` images.
        title: figure title.
    """
    _check_columns(summary, ["set", "kind", "in_distribution", "removal", "removal_lo", "removal_hi", "bg_psnr",
                             "bg_psnr_lo", "bg_psnr_hi"], "summary")
    s = summary[summary["kind"].isin(["preset", "perspective", "paired"])].reset_index(drop=True)
    if s.empty:
        raise ValueError("summary holds no preset, perspective or paired rows to draw")

    def category(r: pd.Series) -> str:
        if r["kind"] == "preset":
            relation = r.get("relation")
            if relation in ("training", "overlap", "OOD"):
                return {"training": "training rain", "overlap": "overlapping preset", "OOD": "OOD preset"}[relation]
            flag = r["in_distribution"]
            return "in-distribution" if (not pd.isna(flag) and bool(flag)) else "OOD preset"
        return r["kind"]

    cats = [category(r) for _, r in s.iterrows()]
    fig = plt.figure(figsize=(max(8.0, 1.05 * len(s) + 2.5), 7.2 if examples else 3.8), layout="constrained")
    top, bottom = (fig.subfigures(2, 1, height_ratios=[1.0, 1.0]) if examples else (fig, None))
    axes = top.subplots(1, 2)
    for ax, m in zip(axes, ("removal", "bg_psnr")):
        for i, (r, c) in enumerate(zip(s.itertuples(index=False), cats)):
            v, lo, hi = getattr(r, m), getattr(r, f"{m}_lo"), getattr(r, f"{m}_hi")
            if not np.isfinite(v):
                continue
            err = [[v - lo], [hi - v]] if np.isfinite(lo) and np.isfinite(hi) else None
            ax.bar(i, v, color=_CARD_COLOURS[c], alpha=0.35, width=0.7)
            ax.errorbar(i, v, yerr=err, fmt="o", color=_CARD_COLOURS[c], capsize=3, markersize=4)
        ax.set_xticks(range(len(s)))
        ax.set_xticklabels(s["set"].tolist(), rotation=30, ha="right", fontsize="small")
        ax.set_ylabel(metric_table.label(m))
        ax.set_title(metric_table.title(m))
        if m == "removal":
            ax.axhline(0.0, color="grey", linestyle="--", linewidth=1)
            ax.set_ylim(min(-0.1, float(np.nanmin(s["removal_lo"].fillna(s["removal"])) - 0.05)), 1.0)
    from matplotlib.patches import Patch

    present = list(dict.fromkeys(cats))
    top.legend([Patch(color=_CARD_COLOURS[c], alpha=0.6) for c in present], present, loc="outside lower center",
               ncols=len(present), fontsize="small", frameon=False)
    if examples:
        names = [n for n in s["set"] if n in examples]
        if names:
            ax_img = bottom.subplots(2, len(names), squeeze=False)
            for j, n in enumerate(names):
                for i, img in enumerate(examples[n]):
                    ax = ax_img[i, j]
                    a = to_image(img)
                    ax.imshow(a, cmap="gray" if a.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
                    ax.set_xticks([])
                    ax.set_yticks([])
                    ax.grid(False)
                    if i == 0:
                        ax.set_title(n, fontsize="small")
                if j == 0:
                    ax_img[0, 0].set_ylabel("rainy", fontsize="small")
                    ax_img[1, 0].set_ylabel("derained", fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


# ----------------------------------------------------------------------------- notebook 03: decoupled metrics

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
    dilated by ``margin`` px (square footprint, as :func:`derain_utils.metrics.decoupled`).
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
        ax.set_ylabel(metric_table.label(y))
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
    the per-model curves of :func:`derain_utils.dynamics.model_curves`), with a band of
    the :func:`t_interval` over seeds (seaborn's ``errorbar=``, clipped to the metric's
    :func:`metric_table.bounds`). Colour = ``hue`` level, line style = ``style`` level.
    Panels of ``removal_*`` metrics share one y range.

    ``titles`` and ``ylabels`` override the panel titles and y labels of
    :mod:`derain_utils.metric_table` (e.g. for columns it does not list).

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
        ax.set_ylabel((ylabels or {}).get(m, metric_table.label(m)))
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


# ----------------------------------------------------------------------------- categories
# Notebook 02 compares networks trained on different background *categories*. Its figures
# put one point per (category, training seed) -- the seed's model averaged over the test
# images -- and, per category, the mean over seeds with a Student-t interval (the same
# two-step summary as the curves above, with categories instead of set sizes).

def category_palette(categories: Sequence[str]) -> dict[str, Any]:
    """One colour per category, in the given order (seaborn colour-blind palette; ``husl`` beyond 10)."""
    cats = list(dict.fromkeys(categories))
    if not cats:
        raise ValueError("categories is empty")
    colours = sns.color_palette("colorblind" if len(cats) <= 10 else "husl", len(cats))
    return dict(zip(cats, colours))


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
    ax.set_xlabel(xlabel if xlabel is not None else metric_table.label(x))
    ax.set_ylabel(ylabel if ylabel is not None else metric_table.label(y))
    if title:
        ax.set_title(title)
    if legend:
        ax.legend(fontsize="small", frameon=True)
    return ax


def draw_frontier(
    ax: Axes,
    frontier: Any,
    key: Any,
    *,
    label: str = "fixed filters (frontier)",
    points: bool = True,
    color: str = "0.35",
) -> Axes:
    """Draw the fixed-filter frontier of one group (:class:`derain_utils.baselines.Frontier`) on a
    removal (y) vs background PSNR (x) plot: the envelope as a dashed line, the other baselines as
    faint crosses.

    Every figure that shows rain removal against background fidelity draws it, so that a reader
    sees what blur alone achieves at each fidelity: a model above the line removes rain that no
    fixed filter of that background PSNR removes (its excess removal, the primary outcome).

    Args:
        ax: the axes (x: background PSNR in dB, y: removal).
        frontier: the frontier (``.curve(key)`` and ``.points``).
        key: the group, e.g. a preset name.
        label: legend label of the envelope.
        points: also draw every baseline of the group as a faint cross.
        color: line colour.
    """
    bg, rm = frontier.curve(key)
    if points:
        pts = frontier.points
        sel = np.ones(len(pts), dtype=bool)
        for col, v in zip(frontier.by, key if isinstance(key, tuple) else (key,)):
            sel &= (pts[col] == v).to_numpy()
        ax.scatter(pts.loc[sel, "bg_psnr"], pts.loc[sel, "removal"], marker="x", s=12, color=color, alpha=0.35,
                   linewidths=0.8, zorder=1)
    ax.plot(bg, rm, linestyle="--", color=color, linewidth=1.4, label=label, zorder=1.5)
    return ax


def frontier_panels(
    models: pd.DataFrame,
    frontier: Any,
    groups: Sequence[str],
    *,
    hue: str = "background",
    group_col: str = "preset",
    order: Sequence[Any] | None = None,
    palette: Mapping[Any, Any] | None = None,
    hue_label: str | None = None,
    titles: Mapping[str, str] | None = None,
    panel_size: tuple[float, float] = (4.0, 3.4),
    suptitle: str | None = None,
) -> Figure:
    """Rain removal against background PSNR, one panel per group, with the fixed-filter frontier.

    One small point per model (its means over the test images of that group, e.g. a row of
    :func:`derain_utils.outcome.model_table`) and one large point per ``hue`` level (the mean
    over its models), over the frontier (:func:`draw_frontier`): a model above the dashed line
    removes rain that no fixed filter as faithful to the background removes (its excess removal).

    Args:
        models: one row per (model, group) with ``group_col``, ``hue``, ``bg_psnr`` and ``removal``.
        frontier: a :class:`derain_utils.baselines.Frontier` grouped by ``(group_col,)`` (one
            frontier per panel) or by ``(hue, group_col)`` (one per ``hue`` level, in its colour).
        groups: the panels, in order (e.g. the unseen presets, or the paired sets).
        hue: the column that colours the points (e.g. ``background``, ``n_train``).
        order: the ``hue`` levels (default: sorted when numeric, else in order of appearance).
        palette: level -> colour (default: viridis for more than two numeric levels, else
            :func:`category_palette`).
        hue_label: legend entries read ``"<hue_label> = <level>"`` (default: the level alone).
        titles: panel titles by group (default: the group name).

    Returns:
        The Figure (one axes per group; legend below).
    """
    groups = list(groups)
    if not groups:
        raise ValueError("groups is empty: name at least one preset or set to draw")
    _check_columns(models, [group_col, hue, "bg_psnr", "removal"], "models")
    missing = [g for g in groups if g not in set(models[group_col])]
    if missing:
        raise ValueError(f"groups {missing} have no rows: not in models[{group_col!r}]")
    by = tuple(frontier.by)
    if by not in ((group_col,), (hue, group_col)):
        raise ValueError(f"the frontier is grouped by {by}; frontier_panels needs one grouped by ({group_col!r},) "
                         f"or ({hue!r}, {group_col!r})")
    if order is not None:
        levels = list(order)
    else:
        levels = list(dict.fromkeys(models[hue].dropna().tolist()))
        if pd.api.types.is_numeric_dtype(models[hue]):
            levels = sorted(levels)
    if palette is not None:
        colours = dict(palette)
    elif pd.api.types.is_numeric_dtype(models[hue]) and len(levels) > 2:
        colours = dict(zip(levels, sns.color_palette("viridis", len(levels))))
    else:
        colours = category_palette([str(v) for v in levels])
        colours = {v: colours[str(v)] for v in levels}
    fig, axes = plt.subplots(1, len(groups), figsize=(panel_size[0] * len(groups), panel_size[1]), squeeze=False,
                             layout="constrained")
    for i, (ax, g) in enumerate(zip(axes[0], groups)):
        if by == (group_col,):
            draw_frontier(ax, frontier, g)
        else:
            for h in levels:
                draw_frontier(ax, frontier, (h, g), color=colours[h], points=False, label=f"filters on {h}")
        d = models[models[group_col] == g]
        for k, h in enumerate(levels):
            pts = d[d[hue] == h]
            if pts.empty:
                continue
            marker = _MARKERS[k % len(_MARKERS)]
            ax.scatter(pts["bg_psnr"], pts["removal"], color=colours[h], marker=marker, s=18, alpha=0.55,
                       linewidths=0, zorder=2)
            ax.scatter([pts["bg_psnr"].mean()], [pts["removal"].mean()], color=colours[h], marker=marker, s=70,
                       edgecolors="black", linewidths=0.6, zorder=3,
                       label=f"{hue_label} = {h}" if hue_label else str(h))
        bg = d["bg_psnr"].to_numpy(float)
        if np.isfinite(bg).any():  # the models' range: the identity's end of the frontier (70-80 dB) is cut off
            lo, hi = np.nanmin(bg), np.nanmax(bg)
            pad = max(1.0, 0.15 * (hi - lo))
            ax.set_xlim(lo - 2 * pad, hi + pad)
        ax.set_title((titles or {}).get(g, g))
        ax.set_xlabel(metric_table.label("bg_psnr"))
        ax.set_ylabel(metric_table.label("removal") if i == 0 else "")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(max(len(labels), 1), 5), fontsize="small",
               frameon=False)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


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
        summary: :func:`derain_utils.complexity.summarize`'s table (columns ``set``,
            ``measure``, ``mean``, ``std``), possibly with extra rows for ``ae_loss``.
            The bars are the spread (standard deviation) over the images of a set, not
            an interval of the mean.
        measures: which measures, in panel order (default: those present, in the
            order of the complexity group of :mod:`derain_utils.metric_table`, then any others).
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


# ----------------------------------------------------------------------------- model-level outcomes (01, 04)

def outcome_vs_n(
    outcomes: pd.DataFrame,
    metrics: Sequence[str] = ("excess_removal", "removal", "bg_psnr"),
    *,
    x: str = "n_train",
    hue: str = "arm",
    seed_col: str = "seed",
    ylabels: Mapping[str, str] | None = None,
    confidence: float = 0.95,
    panel_size: tuple[float, float] = (4.3, 3.4),
    suptitle: str | None = None,
) -> Figure:
    """Model-level outcomes against the set size: one panel per metric, one line per ``hue`` level.

    Each line is the mean over seeds at each ``x`` with a t-interval band over seeds (as
    :func:`metric_vs_n`); the rows are one per trained model (e.g. :func:`derain_utils.outcome.outcome_table`
    with an ``arm`` column). Panels of ``excess_removal`` get a dotted line at 0 (the fixed-filter frontier).

    Args:
        outcomes: one row per model with ``x``, ``hue``, ``seed_col`` and the ``metrics``.
        metrics: the columns to plot, one panel each.
        ylabels: axis labels by metric (default: :func:`metric_table.label`).

    Returns:
        The Figure; one ``Line2D`` per hue level in each panel and a figure legend below.
    """
    if isinstance(metrics, str) or not metrics:
        raise ValueError(f"metrics must be a non-empty sequence of column names, got {metrics!r}")
    _check_columns(outcomes, [x, hue, seed_col, *metrics], "outcomes")
    if outcomes.empty:
        raise ValueError("outcomes is empty: nothing to plot")
    labels = {m: metric_table.label(m) for m in metrics if m in metric_table.METRICS} | dict(ylabels or {})
    levels = list(dict.fromkeys(outcomes[hue].tolist()))
    colours = dict(zip(levels, sns.color_palette("colorblind", max(len(levels), 1))))
    k = len(metrics)
    fig, axes = plt.subplots(1, k, figsize=(panel_size[0] * k, panel_size[1]), squeeze=False, layout="constrained")
    for ax, m in zip(axes[0], metrics):
        d = outcomes[np.isfinite(pd.to_numeric(outcomes[m], errors="coerce").to_numpy(dtype=float))]
        for j, level in enumerate(levels):
            g = d[d[hue] == level]
            if g.empty:
                continue
            _seed_band(ax, g, x, m, seed_col, confidence, alpha=0.15, color=colours[level], linewidth=1.8,
                       marker=_MARKERS[j % len(_MARKERS)], markersize=5, label=str(level))
        if m == "excess_removal":
            ax.axhline(0.0, color="0.4", linestyle=":", linewidth=1.0, zorder=0)
        _log2_axis(ax, d[x].tolist())
        ax.set_xlabel("training background tiles N")
        ax.set_ylabel(labels.get(m, metric_table.label(m)))
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=min(max(len(names), 1), 4), fontsize="small",
               frameon=False)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


