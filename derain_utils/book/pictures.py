"""Pictures: image grids of rainy inputs, derained outputs, rain layers and what a network removed.

Image grids
-----------
:func:`image_grid` lays out images (numpy ``(H, W, C)`` / ``(H, W)``, or torch
``(C, H, W)``) in rows and columns without ticks, gray images and one-channel
layers (rain ``R``, removed rain ``O - D``) in a gray colour map on the fixed range
[0, 1], so that a rain layer and the rain a network removed are directly comparable.
:func:`rain_examples` shows one test image under each rain preset (rainy input and the
rain layer), and :func:`derain_grid` a test image derained by several models:
``rainy O`` / ``derained D`` / ``removed O - D`` / ``rain R`` (truth) / ``background B``.

Every function returns the matplotlib ``Figure`` it drew and never calls ``plt.show()``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from derain_utils.book import layout
from derain_utils.measure import realscores
from derain_utils.synth import rain

__all__ = [
    "EXAMPLE_COLUMNS",
    "to_image",
    "image_grid",
    "rain_examples",
    "derain_grid",
    "stretch_removed",
    "removed_layer_grid",
]

EXAMPLE_COLUMNS: dict[str, str] = {
    "rainy": "rainy O",
    "derained": "derained D",
    "removed": "removed O − D",
    "rain": "rain R (truth)",
    "background": "background B",
}
"""Keys of an example dict (see :func:`derain_grid`) and their column titles, in order."""


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
            if row_labels is not None and j == 0:  # horizontal, left of the row: a long label cannot reach the next row
                ax.set_ylabel(row_labels[i], fontsize="small", rotation=0, ha="right", va="center")
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
            (n, 1, H, W) tensors, i.e. :func:`derain_utils.measure.scoring.make_eval_set`'s output.
        index: which test image.
        train_preset: the training rain; each column title says whether the preset is
            in-distribution for it or on which fields it is OOD (:func:`rain.ood_fields`).

    Returns:
        Figure with 2 rows x len(eval_set) columns.
    """
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
        why = "(in-distribution)" if not ood else layout.wrap(f"(OOD: {', '.join(ood)})", 20)  # fits its column
        titles.append(f"{name}\n{why}")
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
            :meth:`derain_utils.book.widgets.DerainExplorer.example`). ``"removed"`` is
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
    output D. Bottom: under O, the rain-free pixels of :func:`derain_utils.measure.realscores.rain_free_mask`
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
        layers = [realscores.removed_layer(o, np.asarray(it["outputs"][c], np.float32)) for c in columns]
        target = it.get("target")
        if target is not None:
            layers.insert(0, realscores.removed_layer(o, np.asarray(target, np.float32)))
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
