"""Figures of the monograph: metric-versus-set-size curves and image grids.

The notebooks only *call* these functions; every figure a reader sees is drawn here,
from the tidy tables of :func:`derain_utils.experiments.sweep` (one row per trained
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
metric can take, :data:`METRIC_BOUNDS`, e.g. removal <= 1). With one seed there is no band. The in-distribution preset (the training rain) is drawn as a black dashed
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

Every function returns the matplotlib ``Figure`` (or ``Axes``) it drew and never
calls ``plt.show()``; save it with ``fig.savefig(path, dpi=..., bbox_inches="tight")``.
"""
from __future__ import annotations

import math
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

__all__ = [
    "METRIC_LABELS",
    "METRIC_TITLES",
    "METRIC_BOUNDS",
    "EXAMPLE_COLUMNS",
    "use_style",
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
]

METRIC_LABELS: dict[str, str] = {
    "removal": "rain removal ratio (1 = all removed)",
    "bg_psnr": "background PSNR outside rain (dB)",
    "rain_psnr": "PSNR inside the rain mask (dB)",
    "psnr": "whole-image PSNR (dB)",
    "psnr_y": "whole-image PSNR, Y channel (dB)",
    "ssim": "whole-image SSIM",
    "ssim_y": "whole-image SSIM, Y channel",
    "rain_mse": "MSE inside the rain mask",
    "bg_mse": "MSE outside the rain mask",
}
"""Axis labels of the evaluation columns (:data:`derain_utils.training.EVAL_COLUMNS`)."""

METRIC_TITLES: dict[str, str] = {
    "removal": "Rain removal (decoupled)",
    "bg_psnr": "Background fidelity (decoupled)",
    "rain_psnr": "Rain region (decoupled)",
    "psnr": "Whole-image PSNR",
    "psnr_y": "Whole-image PSNR (Y)",
    "ssim": "Whole-image SSIM",
    "ssim_y": "Whole-image SSIM (Y)",
}
"""Panel titles of :func:`metrics_vs_n`."""

METRIC_BOUNDS: dict[str, tuple[float, float]] = {
    "removal": (-math.inf, 1.0),
    "bg_psnr": (0.0, 100.0),
    "rain_psnr": (0.0, 100.0),
    "psnr": (0.0, 100.0),
    "psnr_y": (0.0, 100.0),
    "ssim": (-1.0, 1.0),
    "ssim_y": (-1.0, 1.0),
    "rain_mse": (0.0, math.inf),
    "bg_mse": (0.0, math.inf),
}
"""Values a metric can take (PSNRs are capped at ``metrics.PSNR_CAP`` = 100 dB); interval bands are
clipped to them, since with few seeds a t-interval can reach past what the metric allows."""

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
    """The monograph's plot style: seaborn ``whitegrid``, ``notebook`` context, colour-blind palette."""
    sns.set_theme(style="whitegrid", context="notebook", palette="colorblind")


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
        band (``PolyCollection``, clipped to :data:`METRIC_BOUNDS`) per preset that has at least two seeds.
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
    k_ood = 0
    for p in presets:
        s = summary[summary[hue] == p].sort_values(x)
        is_ref = p in ref
        style = dict(color=colours[p], linestyle="--" if is_ref else "-", linewidth=1.8,
                     marker="o" if is_ref else _MARKERS[k_ood % len(_MARKERS)], markersize=5,
                     zorder=3 if is_ref else 2)
        if not is_ref:
            k_ood += 1
        ax.plot(s[x], s["mean"], label=preset_label(p, ref), **style)
        band = s[np.isfinite(s["ci_low"]) & np.isfinite(s["ci_high"])]
        if len(band):
            lo, hi = METRIC_BOUNDS.get(metric, (-math.inf, math.inf))
            ax.fill_between(band[x], band["ci_low"].clip(lo, hi), band["ci_high"].clip(lo, hi), color=colours[p],
                            alpha=0.08 if is_ref else 0.18, linewidth=0)
    if log_x:
        _log2_axis(ax, summary[x].tolist())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
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
                    confidence=confidence, title=METRIC_TITLES.get(m, m), legend=False)
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
