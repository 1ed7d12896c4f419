"""Figures of the monograph: the shared style, curves over training seeds, model-level outcomes, the
fixed-filter frontier and the report card's intervals.

The notebooks only *call* these functions; every figure a reader sees is drawn here,
from the tidy tables of :func:`derain_utils.lab.sweeps.sweep` (one row per trained
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
metric can take, :func:`derain_utils.measure.metric_table.bounds`, e.g. removal <= 1). With one seed there is no
band. The band is seaborn's (``lineplot`` with ``errorbar=`` this t-interval). The in-distribution preset
(the training rain) is drawn as a black dashed
*reference* line; every out-of-distribution (OOD) preset gets a colour of seaborn's
colour-blind palette, the same colour in every panel. Set sizes grow geometrically,
so the x axis is log2, with a tick at each size that was trained.

Image grids are :mod:`derain_utils.book.pictures`; the figures of background categories and of
the decoupled metrics (notebooks 02 and 03) are :mod:`derain_utils.book.category_plots`.

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
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator

from derain_utils.book import layout
from derain_utils.book.pictures import to_image
from derain_utils.measure import metric_table

__all__ = [
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
    "interval_plot",
    "report_card",
    "category_palette",
    "outcome_vs_n",
    "ladder",
]

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
    ax.set_ylabel(layout.wrap(metric_table.label(metric), 30))
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


# ----------------------------------------------------------------------------- real rain (notebook 04, report card)

def _figure_legend(fig: Figure, axes: Iterable[Axes], **kw: Any) -> None:
    """One legend below the figure of every labelled artist of ``axes``, each label once (``kw`` to ``fig.legend``)."""
    handles, labels = [], []
    for ax in axes:
        for hnd, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(hnd)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), fontsize="small",
                   frameon=False, **kw)


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
            (e.g. from :func:`derain_utils.stats.bootstrap.mean_ci`); NaN intervals draw a bare point.
        metrics: metric columns, one panel each (axis labels and titles from :mod:`derain_utils.measure.metric_table`).
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
    _figure_legend(fig, axes[0])
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
    """The figure of :mod:`derain_utils.book.report`: how one model's rain removal holds up away from its training rain.

    Top: removal and background PSNR per test set, mean and 95% interval (black = the training
    rain, grey = presets overlapping its ranges, vermilion = OOD presets, pink = perspective rain,
    green = paired benchmark sets); a dashed line marks 0 removal (the identity). Without a
    ``relation`` column, presets are split by ``in_distribution`` alone. Bottom (when
    ``examples`` is given): per test set, the rainy input above the model's output.

    Args:
        summary: :func:`derain_utils.book.report.summarize`'s table (rows of kind preset, perspective,
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
        ax.set_ylabel(layout.wrap(metric_table.label(m), 30))
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

# ----------------------------------------------------------------------------- categories
# Notebook 02 compares networks trained on different background *categories*. Its figures
# put one point per (category, training seed) -- the seed's model averaged over the test
# images -- and, per category, the mean over seeds with a Student-t interval (the same
# two-step summary as the curves above, with categories instead of set sizes).

def draw_frontier(
    ax: Axes,
    frontier: Any,
    key: Any,
    *,
    label: str = "fixed filters (frontier)",
    points: bool = True,
    color: str = "0.35",
) -> Axes:
    """Draw the fixed-filter frontier of one group (:class:`derain_utils.measure.baselines.Frontier`) on a
    removal (y) vs background PSNR (x) plot: the staircase (best filter at least as faithful) as a
    dashed line, the other baselines as faint crosses.

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
    # the staircase: at a background PSNR b, the best filter at least as faithful (the next tread to the right)
    ax.plot(bg, rm, linestyle="--", color=color, linewidth=1.4, label=label, zorder=1.5, drawstyle="steps-pre")
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
    ncols: int | None = None,
) -> Figure:
    """Rain removal against background PSNR, one panel per group, with the fixed-filter frontier.

    One small point per model (its means over the test images of that group, e.g. a row of
    :func:`derain_utils.measure.outcome.model_table`) and one large point per ``hue`` level (the mean
    over its models), over the frontier (:func:`draw_frontier`): a model above the dashed line
    removes rain that no fixed filter as faithful to the background removes (its excess removal).

    Args:
        models: one row per (model, group) with ``group_col``, ``hue``, ``bg_psnr`` and ``removal``.
        frontier: a :class:`derain_utils.measure.baselines.Frontier` grouped by ``(group_col,)`` (one
            frontier per panel) or by ``(hue, group_col)`` (one per ``hue`` level, in its colour).
        groups: the panels, in order (e.g. the unseen presets, or the paired sets).
        hue: the column that colours the points (e.g. ``background``, ``n_train``).
        order: the ``hue`` levels (default: sorted when numeric, else in order of appearance).
        palette: level -> colour (default: viridis for more than two numeric levels, else
            :func:`category_palette`).
        hue_label: legend entries read ``"<hue_label> = <level>"`` (default: the level alone).
        titles: panel titles by group (default: the group name).
        ncols: panels per row (default: all in one row); the panels fill rows left to right.

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
    cols = len(groups) if not ncols else min(int(ncols), len(groups))
    rows = -(-len(groups) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(panel_size[0] * cols, panel_size[1] * rows), squeeze=False,
                             layout="constrained")
    for ax in axes.flat[len(groups):]:
        ax.set_visible(False)
    for i, (ax, g) in enumerate(zip(axes.flat, groups)):
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
        ax.set_ylabel(layout.wrap(metric_table.label("removal"), 30) if i % cols == 0 else "")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(max(len(labels), 1), 5), fontsize="small",
               frameon=False)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


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
    :func:`metric_vs_n`); the rows are one per trained model (e.g. :func:`derain_utils.measure.outcome.outcome_table`
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
        ax.set_ylabel(layout.wrap(labels.get(m, metric_table.label(m)), 28))  # no taller than its panel
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=min(max(len(names), 1), 4), fontsize="small",
               frameon=False)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def category_palette(categories: Sequence[str]) -> dict[str, Any]:
    """One colour per category, in the given order (seaborn colour-blind palette; ``husl`` beyond 10)."""
    cats = list(dict.fromkeys(categories))
    if not cats:
        raise ValueError("categories is empty")
    colours = sns.color_palette("colorblind" if len(cats) <= 10 else "husl", len(cats))
    return dict(zip(cats, colours))


_VERDICT_MARK = {"reproduced": "*", "contradicted": "x", "inconclusive": ""}


def ladder(
    tests: pd.DataFrame,
    *,
    steps: Mapping[str, int],
    groups: Mapping[str, str],
    test_sets: Sequence[str] | None = None,
    questions: Mapping[str, str] | None = None,
    panel_size: tuple[float, float] = (3.9, 3.0),
    suptitle: str | None = None,
) -> Figure:
    """The budget ladder: effect and 95% interval against training steps, one panel per (question, test set).

    Rows of panels are the questions, columns the test sets; within a panel the x axis is the
    rung's steps (log scale) and each ``groups`` level (e.g. the crop side) is one line, dodged a
    little. A ``*`` above a point marks a rung where the declared rule says *reproduced*, an ``x``
    *contradicted*; the dotted line is 0 (no difference between the smallest and the largest N).

    Args:
        tests: :func:`derain_utils.stats.questions.ladder_tests` rows (``rung``, ``test_set``,
            ``question``, ``difference``, ``ci_low``, ``ci_high``, ``verdict``).
        steps: rung -> its optimiser steps (the x position).
        groups: rung -> its line (e.g. ``"32 px crops"``).
        test_sets: column order (default: order of appearance).
        questions: question -> panel-row label (default the question names).

    Returns:
        The Figure, with a figure legend of the groups.
    """
    _check_columns(tests, ["rung", "test_set", "question", "difference", "ci_low", "ci_high", "verdict"], "tests")
    if tests.empty:
        raise ValueError("tests is empty: nothing to plot")
    absent = sorted(set(tests["rung"]) - set(steps) | set(tests["rung"]) - set(groups))
    if absent:
        raise ValueError(f"no steps or group for rung(s) {absent}")
    sets = list(test_sets) if test_sets is not None else list(dict.fromkeys(tests["test_set"]))
    qs = list(dict.fromkeys(tests["question"]))
    qlabel = dict(questions or {})
    levels = list(dict.fromkeys(groups[r] for r in dict.fromkeys(tests["rung"])))
    colours = dict(zip(levels, sns.color_palette("colorblind", max(len(levels), 1))))
    fig, axes = plt.subplots(len(qs), len(sets), figsize=(panel_size[0] * len(sets), panel_size[1] * len(qs)),
                             squeeze=False, layout="constrained", sharex=True)
    all_steps = sorted({int(steps[r]) for r in tests["rung"]})
    for i, q in enumerate(qs):
        for j, s in enumerate(sets):
            ax = axes[i][j]
            d = tests[(tests["question"] == q) & (tests["test_set"] == s)]
            for k, level in enumerate(levels):
                g = d[d["rung"].map(groups) == level].assign(x=lambda t: t["rung"].map(steps).astype(float))
                g = g[np.isfinite(g["difference"].to_numpy(float))].sort_values("x")
                if g.empty:
                    continue
                x = g["x"].to_numpy() * 2 ** ((k - (len(levels) - 1) / 2) * 0.12)
                y = g["difference"].to_numpy(float)
                err = np.vstack([y - g["ci_low"].to_numpy(float), g["ci_high"].to_numpy(float) - y])
                ax.errorbar(x, y, yerr=np.where(np.isfinite(err), err, 0), color=colours[level], capsize=3,
                            marker=_MARKERS[k % len(_MARKERS)], markersize=5, linewidth=1.4, label=level)
                for xi, hi, v in zip(x, g["ci_high"].to_numpy(float), g["verdict"]):
                    if _VERDICT_MARK.get(v):
                        ax.annotate(_VERDICT_MARK[v], (xi, hi if np.isfinite(hi) else 0), xytext=(0, 3),
                                    textcoords="offset points", ha="center", color=colours[level], fontsize=11)
            ax.axhline(0.0, color="0.4", linestyle=":", linewidth=1.0, zorder=0)
            ax.set_xscale("log")
            ax.set_xticks(all_steps)
            ax.set_xticklabels([str(v) for v in all_steps], fontsize="small")
            ax.minorticks_off()
            if i == 0:
                ax.set_title(str(s), fontsize="medium")
            if i == len(qs) - 1:
                ax.set_xlabel("training steps")
            if j == 0:
                ax.set_ylabel(textwrap.fill(qlabel.get(q, str(q)), 30), fontsize="small")
    _figure_legend(fig, axes.ravel(), title="* reproduced, x contradicted (declared rule); bars: 95% intervals "
                                            "over seeds", title_fontsize="small")
    if suptitle:
        fig.suptitle(suptitle)
    return fig
