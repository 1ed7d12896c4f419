"""The rain meter: what rain a paired set holds, measured against the presets.

A paired benchmark tests generalisation only if its rain differs from the training rain, so its rain
is measured (:func:`measure_rain`): the streak layer is the white top-hat of
``|luma(rainy - target)|`` (haze removed), thresholded; each connected component is a streak with a
length, a half-maximum width, an angle and a peak intensity (:func:`measure_streaks`), and each image
has a streak density and a coverage. :func:`rain_summary` gives medians and quartiles per set or per
image. :func:`place_rain` compares them with the presets, measured the same way on synthetic rain
(:func:`preset_rain`), and names the fields on which a set lies outside the training rain: the
measured counterpart of :func:`derain_utils.synth.rain.ood_fields`. :func:`match_scale` finds the
factor that brings a set's measured streak width to the training rain's (the networks meet rain in
pixels). :func:`rain_placement` puts the sets and the presets in one table, and :func:`unseen_sets`
applies notebook 04's rule for a set whose rain the networks have not seen.

The paired sets themselves are read by :mod:`derain_utils.synth.realsets`; outputs on them are
scored by :mod:`derain_utils.measure.realscores`.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from derain_utils.measure import metrics
from derain_utils.measure.realscores import removed_layer
from derain_utils.synth import procedural, rain
from derain_utils.synth.realsets import Pair, load_pairs, paired_sets, rescale_pair

__all__ = [
    "STREAK_THRESHOLD",
    "STREAK_TOPHAT",
    "STREAK_MIN_AREA",
    "HALF_MAX_WINDOW",
    "MIN_ELONGATION",
    "MERGED_LIMIT",
    "STREAK_KEYS",
    "IMAGE_KEYS",
    "RAIN_FIELDS",
    "streak_layer",
    "measure_streaks",
    "measure_pair_rain",
    "measure_rain",
    "rain_summary",
    "REFERENCE_RAIN_SIZE",
    "REFERENCE_RAIN_IMAGES",
    "PRESET_RANGE",
    "preset_rain",
    "place_rain",
    "match_scale",
    "rain_placement",
    "unseen_sets",
]

# --------------------------------------------------------------------------- measuring the rain of a pair

STREAK_THRESHOLD: float = metrics.ESTIMATE_THRESHOLD
"""Luma (in [0, 1]) of the streak layer above which a pixel belongs to a streak (as ``estimate_mask``)."""
STREAK_TOPHAT: int = 9
"""Side (px) of the square opening whose white top-hat turns ``|luma(rainy - target)|`` into the streak
layer: it removes veiling haze and other smooth differences (Rain100H adds both) and keeps bright
structures narrower than this (three times the widest preset streak, 3 px)."""
STREAK_MIN_AREA: int = 4
"""Components smaller than this (px) are noise, not streaks; they count for neither streaks nor density."""
MIN_ELONGATION: float = 2.0
"""A component has an orientation only if its length is at least this many times its width; the
``angle`` of rounder ones (single drops, short wide dashes) is NaN and left out of the statistics."""
HALF_MAX_WINDOW: int = 7
"""Side (px) of the window whose maximum is the "peak" of the half-maximum width in :func:`measure_streaks`."""
STREAK_KEYS: tuple[str, ...] = ("length", "width", "angle", "abs_angle", "intensity", "area")
"""Per-streak measurements of :func:`measure_streaks`."""
IMAGE_KEYS: tuple[str, ...] = ("density", "coverage", "streaks", "merged")
"""Per-image measurements: streaks per pixel, share of pixels in streaks, number of streaks, and the
share of the streak pixels in the largest component (near 1: the rain is one connected sheet)."""
MERGED_LIMIT: float = 0.5
"""Above this median ``merged`` share, a set's streaks have run together into a sheet: its per-streak
fields describe fragments, and :func:`place_rain` says so (``merged`` column)."""
RAIN_FIELDS: tuple[str, ...] = ("length", "width", "abs_angle", "intensity", "density", "coverage")
"""The fields on which :func:`place_rain` compares a set's rain with a preset's."""


def streak_layer(rainy: Any, target: Any, *, tophat: int = STREAK_TOPHAT) -> np.ndarray:
    """The streak layer of a pair: white top-hat of ``|luma(rainy - target)|``, float64 (H, W).

    ``tophat = 0`` returns ``|luma(rainy - target)|`` itself (no haze removal).
    """
    if isinstance(tophat, bool) or not isinstance(tophat, (int, np.integer)) or tophat < 0 or tophat == 1:
        raise ValueError(f"tophat must be 0 (off) or an int >= 2 px, got {tophat!r}")
    d = np.abs(removed_layer(rainy, target))
    if tophat:
        d = d - ndimage.grey_opening(d, size=(int(tophat), int(tophat)))
    return d


def measure_streaks(
    layer: np.ndarray,
    *,
    threshold: float = STREAK_THRESHOLD,
    min_area: int = STREAK_MIN_AREA,
) -> tuple[Any, dict[str, float]]:
    """The streaks of a rain layer, one row each, and the image's density and coverage.

    Streaks are the 8-connected components (``skimage.measure.label``) of ``layer > threshold``
    with at least ``min_area`` px. Each is described by the second moments of the layer's values
    over its pixels (the weighted inertia ellipse of ``skimage.measure.regionprops``), computed for
    all components at once:

    ``length``
        ``sqrt(12 l1)`` with l1 the larger eigenvalue of the weighted covariance: the length of a
        uniform rod with that spread (exact for a rectangle; ends that fade, as the renderer's
        drops do over one width, read up to about a width shorter).
    ``width``
        full width at half maximum: the number of the component's pixels at or above half its
        peak, divided by its length. A 1 px streak blurred by 0.5 px measures about 1.4 px (it
        straddles pixels), a 2-3 px one its own width.
    ``angle``
        of the major axis, degrees from vertical in (-90, 90], positive = the top leans right (as
        in :mod:`derain_utils.synth.rain`); ``abs_angle`` is its magnitude. NaN for components shorter
        than :data:`MIN_ELONGATION` times their width (a blob has no direction).
    ``intensity``
        the component's peak value of the layer; ``area`` its pixel count.
    ``border``
        whether it touches the frame (then cut: its length is a lower bound).

    Returns:
        (DataFrame with columns y, x (centroid, px), :data:`STREAK_KEYS`, border; and a dict with
        :data:`IMAGE_KEYS`: ``density`` = streaks per pixel (the unit of ``RainSpec.density``;
        overlapping streaks merge and count once), ``coverage`` = share of pixels above the
        threshold, ``streaks`` = count, ``merged`` = share of the above-threshold pixels in the
        largest component).

    Limits: streaks that cross merge into one component (longer, and at an average angle); dense
    short dashes (the ``dense`` preset) touch so often that their angle is not recovered; in
    heavy rain (Rain100H) the layer is one connected sheet, ``merged`` approaches 1 and the
    per-streak fields describe the fragments that stay apart; density and coverage remain
    meaningful.
    """
    import pandas as pd
    from skimage.measure import label as cc_label

    a = np.asarray(layer, dtype=np.float64)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"layer must be a non-empty 2-D (H, W) array, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("layer holds NaN or infinite values")
    if not (isinstance(threshold, (int, float, np.floating)) and 0 <= threshold < 1):
        raise ValueError(f"threshold must be a number in [0, 1), got {threshold!r}")
    if isinstance(min_area, bool) or not isinstance(min_area, (int, np.integer)) or min_area < 1:
        raise ValueError(f"min_area must be an int >= 1 px, got {min_area!r}")
    h, w = a.shape
    mask = a > threshold
    lab = cc_label(mask, connectivity=2)
    n = int(lab.max())
    cols = ["y", "x", *STREAK_KEYS, "border"]
    empty = pd.DataFrame({c: pd.Series(dtype=bool if c == "border" else float) for c in cols})
    if n == 0:
        return empty, {"density": 0.0, "coverage": float(mask.mean()), "streaks": 0, "merged": 0.0}
    idx = lab[mask]
    wt = a[mask]
    yy, xx = np.nonzero(mask)
    yy, xx = yy + 0.5, xx + 0.5
    m = n + 1

    def total(v: np.ndarray) -> np.ndarray:
        return np.bincount(idx, weights=v, minlength=m)

    area = np.bincount(idx, minlength=m)
    sw = total(wt)
    my, mx = total(wt * yy) / np.maximum(sw, 1e-300), total(wt * xx) / np.maximum(sw, 1e-300)
    cyy = np.maximum(total(wt * yy * yy) / np.maximum(sw, 1e-300) - my**2, 0.0)
    cxx = np.maximum(total(wt * xx * xx) / np.maximum(sw, 1e-300) - mx**2, 0.0)
    cxy = total(wt * xx * yy) / np.maximum(sw, 1e-300) - mx * my
    half = np.hypot((cxx - cyy) / 2, cxy)
    l1 = (cxx + cyy) / 2 + half
    peak = np.asarray(ndimage.maximum(a, lab, np.arange(m)), dtype=np.float64)
    # half of the *local* maximum (a window of HALF_MAX_WINDOW px): a streak that fades along its length
    # keeps its width, and a wide streak is counted whole
    local_max = ndimage.maximum_filter(a, size=HALF_MAX_WINDOW, mode="nearest")[mask]
    at_half = np.bincount(idx, weights=(wt >= 0.5 * local_max).astype(np.float64), minlength=m)
    length = np.sqrt(12.0 * l1)
    phi = 0.5 * np.arctan2(2.0 * cxy, cxx - cyy)  # major axis, from the x axis (y points down)
    dx, dy = np.cos(phi), np.sin(phi)
    flip = dy > 0  # point the axis upwards (dy < 0) so that the angle is measured from "up"
    dx, dy = np.where(flip, -dx, dx), np.where(flip, -dy, dy)
    angle = np.degrees(np.arctan2(dx, -dy))
    angle = np.where(angle <= -90.0, angle + 180.0, angle)
    on_border = np.zeros(m, bool)
    on_border[np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))] = True
    keep = np.flatnonzero(area >= min_area)
    keep = keep[keep > 0]
    width = at_half[keep] / np.maximum(length[keep], 1.0)
    angle = np.where(length[keep] >= MIN_ELONGATION * width, angle[keep], np.nan)
    df = pd.DataFrame({
        "y": my[keep], "x": mx[keep], "length": length[keep], "width": width, "angle": angle,
        "abs_angle": np.abs(angle), "intensity": peak[keep], "area": area[keep].astype(float),
        "border": on_border[keep],
    }, columns=cols)
    merged = float(area[1:].max() / area[1:].sum())
    return df, {"density": len(keep) / (h * w), "coverage": float(mask.mean()), "streaks": int(len(keep)),
                "merged": merged}


def measure_pair_rain(
    rainy: Any,
    target: Any,
    *,
    threshold: float = STREAK_THRESHOLD,
    tophat: int = STREAK_TOPHAT,
    min_area: int = STREAK_MIN_AREA,
) -> tuple[Any, dict[str, float]]:
    """:func:`measure_streaks` of the :func:`streak_layer` of one (rainy, target) pair."""
    return measure_streaks(streak_layer(rainy, target, tophat=tophat), threshold=threshold, min_area=min_area)


def measure_rain(
    pairs: Any,
    data_dir: str | os.PathLike | None = None,
    *,
    max_pairs: int | None = None,
    factor: float | dict[str, float] = 1.0,
    threshold: float = STREAK_THRESHOLD,
    tophat: int = STREAK_TOPHAT,
    min_area: int = STREAK_MIN_AREA,
) -> tuple[Any, Any]:
    """Measure the rain of paired sets, streak by streak and image by image.

    Args:
        pairs: what :func:`load_pairs` accepts (folders, set names, :class:`PairedSet` objects),
            or a list of :class:`Pair` records (already loaded, e.g. synthetic).
        data_dir, max_pairs, factor: as for :func:`load_pairs` (ignored for :class:`Pair` records).
        threshold, tophat, min_area: see :func:`streak_layer` and :func:`measure_streaks`.

    Returns:
        ``(streaks, images)``: tidy DataFrames. ``streaks`` has one row per streak (``set``,
        ``image``, y, x, :data:`STREAK_KEYS`, border); ``images`` one row per pair (``set``,
        ``image``, height, width, :data:`IMAGE_KEYS`). Summarise with :func:`rain_summary`, place
        against the presets with :func:`place_rain`.
    """
    import pandas as pd

    if isinstance(pairs, (list, tuple)) and pairs and all(isinstance(p, Pair) for p in pairs):
        records = list(pairs)
    else:
        records = load_pairs(pairs, data_dir, max_pairs=max_pairs, factor=factor)
    if not records:
        raise ValueError(f"no pairs to measure in {pairs!r}")
    s_frames, i_rows = [], []
    for p in records:
        st, im = measure_pair_rain(p.rainy, p.target, threshold=threshold, tophat=tophat, min_area=min_area)
        s_frames.append(st.assign(set=p.set, image=p.name))
        i_rows.append({"set": p.set, "image": p.name, "height": p.rainy.shape[0], "width": p.rainy.shape[1], **im})
    streaks = pd.concat(s_frames, ignore_index=True)
    streaks = streaks[["set", "image", *[c for c in streaks.columns if c not in ("set", "image")]]]
    return streaks, pd.DataFrame(i_rows)


def rain_summary(streaks: Any, images: Any, by: str | Sequence[str] = "set", *,
                 include_border: bool = False) -> Any:
    """Median and quartiles of every rain field, per set (``by="set"``) or per image (``["set", "image"]``).

    Streak fields (length, width, angle, abs_angle, intensity) are pooled over the streaks of the
    group (streaks cut by the frame are left out unless ``include_border``); image fields (density,
    coverage) over its images. Columns: ``by``, ``images``, ``streaks``, then ``<field>``,
    ``<field>_q25``, ``<field>_q75`` for each field.
    """
    import pandas as pd

    keys = [by] if isinstance(by, str) else list(by)
    st = streaks if include_border else streaks[~streaks["border"].astype(bool)]
    rows = []
    for key, grp in images.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        sel = np.ones(len(st), bool)
        for k, v in zip(keys, key):
            sel &= (st[k] == v).to_numpy()
        s = st[sel]
        row: dict[str, Any] = dict(zip(keys, key))
        row.update(images=len(grp), streaks=len(s))
        for field in ("length", "width", "angle", "abs_angle", "intensity", "density", "coverage", "merged"):
            v = (s[field] if field in s.columns and field not in IMAGE_KEYS else grp[field]).to_numpy(float)
            v = v[np.isfinite(v)]
            q = np.quantile(v, [0.5, 0.25, 0.75]) if len(v) else [math.nan] * 3
            row.update({field: q[0], f"{field}_q25": q[1], f"{field}_q75": q[2]})
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the rain of a set against the presets

REFERENCE_RAIN_SIZE: int = 128
"""Side (px) of the synthetic images on which :func:`preset_rain` measures each preset."""
REFERENCE_RAIN_IMAGES: int = 16
"""Number of synthetic images per preset in :func:`preset_rain`."""
PRESET_RANGE: tuple[float, float] = (0.05, 0.95)
"""Quantiles of a preset's *measured* values that make its range in :func:`place_rain` (central 90%)."""


@functools.lru_cache(maxsize=64)
def _preset_rain_cached(spec: rain.RainSpec, size: int, n: int, seed: int, threshold: float, tophat: int,
                        min_area: int) -> tuple[Any, Any]:
    import torch

    layers, _ = rain.synthesize(spec, size, n, seed)
    bgs = procedural.dead_leaves(size, seed, n)
    rainy = rain.add_rain(torch.from_numpy(bgs).permute(0, 3, 1, 2), layers).permute(0, 2, 3, 1).numpy()
    pairs = [Pair(spec.name, f"{spec.name}_{i}", rainy[i], bgs[i]) for i in range(n)]
    return measure_rain(pairs, threshold=threshold, tophat=tophat, min_area=min_area)


def preset_rain(
    spec: str | rain.RainSpec,
    *,
    size: int = REFERENCE_RAIN_SIZE,
    n: int = REFERENCE_RAIN_IMAGES,
    seed: int = 0,
    threshold: float = STREAK_THRESHOLD,
    tophat: int = STREAK_TOPHAT,
    min_area: int = STREAK_MIN_AREA,
) -> tuple[Any, Any]:
    """A rain preset as the measurement sees it: :func:`measure_rain` of synthetic pairs.

    ``n`` images of ``size`` px: rain drawn from ``spec`` (:func:`derain_utils.synth.rain.synthesize`,
    in px as given, the way training and evaluation use it) over dead-leaves backgrounds, clipped
    to [0, 1]. Comparing a benchmark's measurements with these, rather than with the spec's nominal
    ranges, cancels the estimators' biases (a 1 px streak measures about 1.4 px wide, its peak is
    below the spec's intensity). Cached per arguments; returns copies.
    """
    spec = rain.get_spec(spec)
    st, im = _preset_rain_cached(spec, int(size), int(n), int(seed), float(threshold), int(tophat), int(min_area))
    return st.copy(), im.copy()


def _field_values(streaks: Any, images: Any, field: str) -> np.ndarray:
    """The finite values of ``field``: per image for :data:`IMAGE_KEYS`, else per streak not cut by the frame."""
    if field in IMAGE_KEYS:
        v = images[field].to_numpy(float)
    else:
        v = streaks.loc[~streaks["border"].astype(bool), field].to_numpy(float)
    return v[np.isfinite(v)]


def place_rain(
    streaks: Any,
    images: Any,
    train: str | rain.RainSpec = rain.TRAIN_PRESET,
    presets: Sequence[str | rain.RainSpec] | None = None,
    *,
    detail: bool = False,
    **measure: Any,
) -> Any:
    """Which paired sets' rain lies outside the training distribution, and on which fields.

    For every set of :func:`measure_rain`'s tables and every field of :data:`RAIN_FIELDS`, the
    share of the set's values (streaks not cut by the frame; images for density and coverage) that
    fall inside each preset's *measured* range, the central :data:`PRESET_RANGE` of
    :func:`preset_rain`. A field is **outside** the training distribution when fewer than half
    of the set's values lie in the training preset's range. This is the measured counterpart of
    :func:`derain_utils.synth.rain.ood_fields`, which compares specs.

    Args:
        streaks, images: from :func:`measure_rain`.
        train: the training preset.
        presets: presets to compare with (default every :data:`rain.PRESETS`; ``train`` is added).
        detail: return the long table (one row per set and field) instead of the summary.
        **measure: ``threshold``, ``tophat``, ``min_area`` (and ``size``, ``n``, ``seed``) for
            :func:`preset_rain`; use the values the sets were measured with.

    Returns:
        Summary: one row per set with ``images``, ``streaks``, the median of every field,
        ``merged`` (median share of streak pixels in each image's largest component: above
        :data:`MERGED_LIMIT` the per-streak fields describe fragments of a sheet of rain),
        ``ood_fields`` (comma-separated fields outside the training range, "" if none),
        ``in_distribution`` (no such field) and ``closest_preset`` (the preset whose ranges hold
        the largest mean share of the set's values). ``detail=True``: set, field, median, q25,
        q75, ``train_lo``, ``train_hi``, ``share_in_train``, ``outside`` and ``share_in_<preset>``
        for every preset.
    """
    import pandas as pd

    train_spec = rain.get_spec(train)
    specs = [rain.get_spec(p) for p in (presets if presets is not None else list(rain.PRESETS))]
    if train_spec.name not in [s.name for s in specs]:
        specs.insert(0, train_spec)
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"presets have repeated names: {names}")
    refs = {s.name: preset_rain(s, **measure) for s in specs}
    ranges = {(p, f): tuple(np.quantile(_field_values(*refs[p], f), PRESET_RANGE)) for p in names for f in RAIN_FIELDS}
    rows = []
    for set_name, grp in images.groupby("set", sort=False):
        st = streaks[streaks["set"] == set_name]
        for f in RAIN_FIELDS:
            v = _field_values(st, grp, f)
            q = np.quantile(v, [0.5, 0.25, 0.75]) if len(v) else [math.nan] * 3
            share = {p: float(np.mean((v >= ranges[p, f][0]) & (v <= ranges[p, f][1]))) if len(v) else math.nan
                     for p in names}
            rows.append({"set": set_name, "field": f, "median": q[0], "q25": q[1], "q75": q[2],
                         "train_lo": ranges[train_spec.name, f][0], "train_hi": ranges[train_spec.name, f][1],
                         "share_in_train": share[train_spec.name], "outside": bool(share[train_spec.name] < 0.5),
                         **{f"share_in_{p}": share[p] for p in names}})
    long = pd.DataFrame(rows)
    if detail:
        return long
    out = []
    for set_name, grp in long.groupby("set", sort=False):
        ood = grp.loc[grp["outside"], "field"].tolist()
        mean_share = {p: grp[f"share_in_{p}"].mean() for p in names}
        img = images[images["set"] == set_name]
        out.append({"set": set_name, "images": len(img), "streaks": int(img["streaks"].sum()),
                    **dict(zip(grp["field"], grp["median"])), "merged": float(img["merged"].median()),
                    "ood_fields": ", ".join(ood), "in_distribution": not ood,
                    "closest_preset": max(mean_share, key=mean_share.get)})
    return pd.DataFrame(out)


def match_scale(
    sets: Any,
    train: str | rain.RainSpec = rain.TRAIN_PRESET,
    data_dir: str | os.PathLike | None = None,
    *,
    field: str = "width",
    factors: Sequence[float] | None = None,
    max_pairs: int | None = None,
    reference_long_side: int = 256,
    **measure: Any,
) -> Any:
    """The resampling factor that brings each paired set's rain to the training rain's scale.

    The network meets rain in pixels. For each set, the pairs are resampled
    (:func:`rescale_pair`, both images alike) by each candidate factor, their rain re-measured
    (:func:`measure_rain`), and the factor chosen whose median ``field`` (default the streak width)
    is closest, in log scale, to the training preset's measured median (:func:`preset_rain`). The
    search is on a grid because the measurement is not proportional to the scale (a streak
    cannot measure thinner than a pixel). Sets whose rain is already no wider than the training
    rain keep factor 1: nothing is upsampled.

    Args:
        sets: what :func:`paired_sets` accepts.
        train: the training preset.
        field: ``"width"`` or ``"length"`` (a streak field of :func:`measure_streaks`).
        factors: candidate factors in (0, 1] (default 1, 2**-1/4, ..., 1/8: 13 values); 1 (no
            resampling) is always a candidate.
        max_pairs: pairs per set (default all).
        reference_long_side: the long side (px) of the images the training tiles are cut from
            (the development background sets: 256); ``image_factor = reference / long side`` is
            reported beside the rain-based factor, for the other notion of scale.
        **measure: ``threshold``, ``tophat``, ``min_area`` for the measurement.

    Returns:
        One row per set: ``set``, ``long_side`` (px, median over pairs), ``native_<field>`` (the
        set's median at factor 1), ``train_<field>`` (the training preset's), ``factor``,
        ``<field>_at_factor``, ``length_at_factor``, ``width_at_factor``, ``image_factor`` and
        ``ood_fields_at_factor`` (:func:`place_rain` after resampling).
    """
    import pandas as pd

    if field not in ("width", "length"):
        raise ValueError(f"field must be 'width' or 'length', got {field!r}")
    try:
        grid = sorted({1.0, *(float(f) for f in (factors if factors is not None else 2.0 ** (-np.arange(13) / 4)))},
                      reverse=True)
    except (TypeError, ValueError):
        raise ValueError(f"factors must be numbers in (0, 1], got {factors!r}") from None
    if any(not (0 < f <= 1) for f in grid):
        raise ValueError(f"factors must be numbers in (0, 1], got {factors!r}")
    ref_keys = {k: measure[k] for k in ("threshold", "tophat", "min_area") if k in measure}
    target = float(np.median(_field_values(*preset_rain(train, **ref_keys), field)))
    rows = []
    for ps in paired_sets(sets, data_dir):
        native = load_pairs([ps], max_pairs=max_pairs)
        long_side = float(np.median([max(p.rainy.shape[:2]) for p in native]))
        best = None
        for f in grid:
            pairs = [Pair(p.set, p.name, *rescale_pair(p.rainy, p.target, f)) for p in native] if f != 1 else native
            st, im = measure_rain(pairs, **ref_keys)
            value = float(np.median(_field_values(st, im, field))) if len(st) else math.nan
            if f == 1.0:
                native_value = value
            if not math.isfinite(value):
                continue
            err = abs(math.log(value / target))
            if best is None or err < best[0] - 1e-12:
                best = (err, f, value, st, im)
            if value <= target:  # smaller factors only move further away
                break
        if best is None:
            raise ValueError(f"paired set {ps.name!r}: no streak was found at any factor; is its rain layer empty?")
        _, f, value, st, im = best
        placed = place_rain(st, im, train, [train], **ref_keys)
        rows.append({"set": ps.name, "long_side": long_side, f"native_{field}": native_value,
                     f"train_{field}": target, "factor": f, f"{field}_at_factor": value,
                     "length_at_factor": float(placed["length"].iloc[0]),
                     "width_at_factor": float(placed["width"].iloc[0]),
                     "image_factor": min(1.0, reference_long_side / long_side),
                     "ood_fields_at_factor": placed["ood_fields"].iloc[0]})
    return pd.DataFrame(rows)


def rain_placement(
    streaks: Any,
    images: Any,
    train: str | rain.RainSpec = rain.TRAIN_PRESET,
    presets: Sequence[str | rain.RainSpec] | None = None,
    **measure: Any,
) -> Any:
    """The rain of paired sets and of the rain presets in one table: :func:`place_rain` of both.

    The presets are measured on synthetic pairs (:func:`preset_rain`) and placed exactly as the
    sets are, so a reader sees each set next to the training rain and the test presets, and sees the
    rule work on the presets (the training preset has no field outside; an unseen preset has).

    Args:
        streaks, images: :func:`measure_rain` of the sets.
        train: the training preset; presets: the presets to show and to compare with (default
            every :data:`rain.PRESETS`; ``train`` is added).
        **measure: as :func:`place_rain`.

    Returns:
        :func:`place_rain`'s summary with a first column ``kind``: ``"training rain"``,
        ``"preset"`` or ``"paired set"`` (presets first).
    """
    import pandas as pd

    train_spec = rain.get_spec(train)
    specs = [rain.get_spec(p) for p in (presets if presets is not None else list(rain.PRESETS))]
    if train_spec.name not in [s.name for s in specs]:
        specs.insert(0, train_spec)
    clash = sorted(set(images["set"]) & {s.name for s in specs})
    if clash:
        raise ValueError(f"paired set(s) {clash} have the name of a rain preset; rename the folder(s)")
    ref_keys = {k: measure[k] for k in ("threshold", "tophat", "min_area") if k in measure}
    refs = [preset_rain(s, **ref_keys) for s in specs]
    st = pd.concat([*(r[0] for r in refs), streaks], ignore_index=True)
    im = pd.concat([*(r[1] for r in refs), images], ignore_index=True)
    placed = place_rain(st, im, train_spec, specs, **measure)
    names = {s.name for s in specs}
    kind = ["training rain" if n == train_spec.name else "preset" if n in names else "paired set"
            for n in placed["set"]]
    placed.insert(0, "kind", kind)
    return placed


def unseen_sets(placed: Any, train: str | rain.RainSpec = rain.TRAIN_PRESET) -> list[str]:
    """Notebook 04's rule: the paired sets whose rain lies outside the training distribution.

    A set qualifies when :func:`place_rain` finds at least one field outside the training range
    (``ood_fields`` not empty) **and** the preset its rain is closest to is not the training preset.
    The second condition leaves out a set whose rain differs from the training rain only at the
    margins (e.g. somewhat fainter and sparser streaks of the training shape): a test on it cannot
    tell networks that learned the training rain from networks that learned the background. Applied
    to the presets themselves, the rule calls the training preset seen and every preset of
    :data:`rain.OOD_PRESETS` unseen.

    Args:
        placed: :func:`place_rain` or :func:`rain_placement` output (rows of presets are ignored
            when a ``kind`` column marks them).
        train: the training preset.

    Returns:
        The qualifying set names, in table order.
    """
    need = {"set", "ood_fields", "closest_preset"}
    missing = sorted(need - set(placed.columns))
    if missing:
        raise ValueError(f"placed lacks column(s) {missing}; give the output of place_rain or rain_placement")
    train_name = rain.get_spec(train).name
    rows = placed[placed["kind"] == "paired set"] if "kind" in placed.columns else placed
    out = rows["ood_fields"].fillna("").astype(str).str.len().gt(0) & (rows["closest_preset"] != train_name)
    return rows.loc[out, "set"].tolist()


