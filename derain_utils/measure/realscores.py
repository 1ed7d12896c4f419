"""Scores on real data: decoupled scores on paired sets, and what can be measured without ground truth.

Paired sets (with ground truth)
-------------------------------
The rain layer of a real pair is unknown, so the decoupled metrics use
:func:`derain_utils.measure.metrics.estimate_mask` (luma of ``rainy - target`` above a threshold) as
the rain mask: :func:`paired_scores` (with SSIM) and :func:`score_pairs` (decoupled scores alone:
fast, for many networks and fixed filters).

Unpaired photographs (no ground truth)
--------------------------------------
Real rainy photographs have no clean counterpart, so no PSNR can be computed. What *can* be
measured is what a network took away, the **removed layer** ``L = luma(rainy - derained)``
(:func:`removed_layer`), and how much it changed pixels that hold no rain. :func:`no_gt_proxies`
reports:

``removed_rms``
    root mean square of L: how much the network changed at all. 0 for the identity.
``brightening_share``
    share of the removed energy that was *brightening*, sum(max(L, 0)**2) / sum(L**2). Rain adds
    light, so removed rain is positive; smoothing away edges or texture removes as much bright
    as dark (about 0.5).
``coherence``
    local orientation coherence of L from the structure tensor (:func:`orientation_coherence`),
    energy-weighted over the image: 1 = every neighbourhood of L is one oriented stroke (streaks,
    but also single edges), 0 = isotropic (noise, blotches).
``global_coherence`` and ``angle_deg``
    the same for the structure tensor summed over the whole image, and its dominant orientation
    (degrees from vertical, positive = top leans right, as in :mod:`derain_utils.synth.rain`). Rain in
    one photo falls in about one direction, so a removed layer made of rain is globally coherent;
    damage to a scene follows the scene's edges in every direction and is not.
``rainfree_change``
    root mean square of ``luma(derained - rainy)`` over the pixels :func:`rain_free_mask` judges
    free of rain: thin bright structures are found by a white top-hat of the rainy luma and
    excluded with a margin; what is left should come out unchanged.

Limits, plainly: none of these is a measure of quality. A network that removes nothing scores
a perfect ``rainfree_change`` of 0 and an undefined coherence; a network that removes streaks and
also erases a striped shirt scores a high coherence. Scene structures that look like rain (wires,
railings, bright edges of one orientation) count as removed rain, and faint, wide or hazy rain
escapes the top-hat and counts as "rain-free". Read the proxies *together* with the pictures, and
only to compare networks on the same photos. Notebook 04 checks them against the truth on the
paired sets, where the rain is known.

Applying a network is left to the caller (e.g. :func:`derain_utils.nets.training.predict`).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import skimage.feature
from scipy import ndimage

from derain_utils.measure import metrics
from derain_utils.synth.realsets import Pair

__all__ = [
    "LUMA_WEIGHTS",
    "TOPHAT_SIZE",
    "TOPHAT_THRESHOLD",
    "RAINFREE_MARGIN",
    "PROXY_KEYS",
    "luma",
    "removed_layer",
    "structure_tensor",
    "orientation_coherence",
    "rain_free_mask",
    "no_gt_proxies",
    "paired_scores",
    "PAIR_SCORE_KEYS",
    "score_pairs",
]

LUMA_WEIGHTS: np.ndarray = np.array([0.299, 0.587, 0.114])
"""BT.601 luma weights (sum 1), applied to differences: a change of c in every channel has luma c."""


TOPHAT_SIZE: int = 7
"""Side (px) of the square opening of :func:`rain_free_mask`: bright structures narrower than this are
candidate rain (the streaks of the shared real photos are 1-5 px wide at a 512 px long side)."""


TOPHAT_THRESHOLD: float = 0.03
"""Luma (in [0, 1]) a thin structure must rise above its surroundings to count as candidate rain."""


RAINFREE_MARGIN: int = 2
"""px by which candidate rain is dilated before its complement is called rain-free."""


MIN_SIDE: int = 32
"""Smallest short side (px) of a photo the proxies are computed on: the orientation statistics integrate
over rho = 4 px (a window of about 25 px) and the top-hat needs room around 7-px structures, so a smaller
photo (a 7x7 icon, a 4 px strip) gives numbers that describe its border, not its rain."""


PROXY_KEYS: tuple[str, ...] = ("removed_rms", "brightening_share", "coherence", "global_coherence",
                               "angle_deg", "rainfree_change", "rainfree_fraction")
"""Keys of :func:`no_gt_proxies`, in order."""


def _as_hwc(x: Any, name: str) -> np.ndarray:
    """A float64 image (H, W) or (H, W, 3) in [0, 1] from numpy (H, W[, C]) or torch (C, H, W) / (1, C, H, W)."""
    if hasattr(x, "detach"):  # a torch tensor: channels first
        t = x.detach().cpu()
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim == 3:
            t = t.permute(1, 2, 0)
        x = t.numpy()
    a = np.asarray(x)
    if a.dtype.kind != "f":
        raise ValueError(f"{name} has dtype {a.dtype}; expected a float image in [0, 1] (divide 8-bit images by 255)")
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3)) or a.size == 0:
        raise ValueError(f"{name} has shape {np.shape(x)}; expected (H, W), (H, W, 1) or (H, W, 3) "
                         f"(torch: (C, H, W))")
    a = a.astype(np.float64, copy=False)
    if not np.isfinite(a).all() or a.min() < -metrics.RANGE_SLACK or a.max() > 1 + metrics.RANGE_SLACK:
        raise ValueError(f"{name} must hold finite values in [0, 1], got [{np.nanmin(a):.4g}, {np.nanmax(a):.4g}]")
    return a


def luma(img: Any) -> np.ndarray:
    """BT.601 luma with weights summing to 1 (:data:`LUMA_WEIGHTS`), float64 (H, W); gray passes through."""
    a = np.asarray(img, dtype=np.float64)
    return a @ LUMA_WEIGHTS if a.ndim == 3 else a


def removed_layer(rainy: Any, derained: Any) -> np.ndarray:
    """``L = luma(rainy - derained)``: what a network took away, signed, float64 (H, W).

    Positive where the output is darker than the input (removed brightness, e.g. rain), negative
    where it is brighter. Accepts the image forms of :mod:`derain_utils.measure.metrics` (numpy (H, W[, C]),
    torch (C, H, W)); the two must have the same shape.
    """
    o = _as_hwc(rainy, "rainy")
    d = _as_hwc(derained, "derained")
    if o.shape != d.shape:
        raise ValueError(f"shape mismatch: rainy is {o.shape}, derained is {d.shape}")
    return luma(o - d)


def structure_tensor(layer: np.ndarray, *, sigma: float = 1.0, rho: float = 4.0) -> tuple[np.ndarray, ...]:
    """Smoothed structure tensor ``(Jxx, Jxy, Jyy)`` of a 2-D layer, each float64 (H, W).

    Gradients are Sobel derivatives of the layer smoothed by a gaussian of ``sigma`` px (plain
    central differences on 1-px lines favour the diagonals); their outer products are averaged by
    a gaussian of ``rho`` px (the neighbourhood whose orientation is measured): that second part
    is ``skimage.feature.structure_tensor`` (reflected borders). x is the column axis (right),
    y the row axis (down).
    """
    a = np.asarray(layer, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"layer must be a 2-D (H, W) array, got shape {a.shape}")
    for name, v in (("sigma", sigma), ("rho", rho)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be a finite number >= 0 px, got {v!r}")
    s = ndimage.gaussian_filter(a, sigma) if sigma > 0 else a
    jyy, jxy, jxx = skimage.feature.structure_tensor(s, sigma=rho, mode="reflect", order="rc")
    return jxx, jxy, jyy


def _coherence(jxx: Any, jxy: Any, jyy: Any) -> tuple[Any, Any]:
    """(anisotropy sqrt((Jxx - Jyy)^2 + 4 Jxy^2), trace Jxx + Jyy): coherence = anisotropy / trace."""
    return np.sqrt((jxx - jyy) ** 2 + 4.0 * jxy ** 2), jxx + jyy


def orientation_coherence(layer: np.ndarray, *, sigma: float = 1.0, rho: float = 4.0) -> dict[str, float]:
    """How much a layer is made of strokes of one orientation.

    With the structure tensor J (:func:`structure_tensor`) and its eigenvalues l1 >= l2,
    coherence = (l1 - l2) / (l1 + l2) = sqrt((Jxx - Jyy)^2 + 4 Jxy^2) / (Jxx + Jyy), in [0, 1].

    Returns:
        ``coherence``: local coherences averaged with the local energy (trace) as weight,
        i.e. sum(l1 - l2) / sum(l1 + l2); ``global_coherence``: the coherence of J summed over
        the image (one orientation for the whole layer?); ``angle_deg``: the dominant stroke
        orientation in degrees from vertical in (-90, 90], positive = top leans right (the
        gradients of a stroke point across it, so the dominant gradient direction's angle from
        the x axis equals the stroke's angle from vertical). All NaN for a constant layer.
    """
    jxx, jxy, jyy = structure_tensor(layer, sigma=sigma, rho=rho)
    aniso, trace = _coherence(jxx, jxy, jyy)
    total = float(trace.sum())
    if not total > 1e-20:
        return {"coherence": math.nan, "global_coherence": math.nan, "angle_deg": math.nan}
    gxx, gxy, gyy = float(jxx.sum()), float(jxy.sum()), float(jyy.sum())
    g_aniso, g_trace = _coherence(gxx, gxy, gyy)
    phi = 0.5 * math.degrees(math.atan2(2.0 * gxy, gxx - gyy))  # gradient direction, from the x axis
    angle = (phi + 90.0) % 180.0 - 90.0
    return {"coherence": float(aniso.sum()) / total, "global_coherence": float(g_aniso / g_trace),
            "angle_deg": 90.0 if angle == -90.0 else angle}


def rain_free_mask(
    rainy: Any,
    *,
    size: int = TOPHAT_SIZE,
    threshold: float = TOPHAT_THRESHOLD,
    margin: int = RAINFREE_MARGIN,
) -> np.ndarray:
    """Pixels of a rainy photo judged free of rain, bool (H, W).

    Rain streaks are thin and brighter than their surroundings. The white top-hat of the luma,
    ``luma - opening(luma)`` with a ``size`` x ``size`` square, keeps exactly the bright structures
    narrower than ``size``; those above ``threshold`` are candidate rain, dilated by ``margin`` px;
    everything else is called rain-free. It errs both ways (see the module docstring): thin
    bright scene detail is excluded (harmless: fewer pixels), faint or wide rain and haze are not.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 2:
        raise ValueError(f"size must be an int >= 2 px, got {size!r}")
    if not (isinstance(threshold, (int, float)) and 0 <= threshold < 1):
        raise ValueError(f"threshold must be a number in [0, 1), got {threshold!r}")
    if isinstance(margin, bool) or not isinstance(margin, (int, np.integer)) or margin < 0:
        raise ValueError(f"margin must be an int >= 0 px, got {margin!r}")
    y = luma(_as_hwc(rainy, "rainy"))
    tophat = y - ndimage.grey_opening(y, size=(int(size), int(size)))
    candidate = tophat > threshold
    if margin:
        candidate = ndimage.binary_dilation(candidate, structure=np.ones((2 * margin + 1,) * 2, bool))
    return ~candidate


def no_gt_proxies(
    rainy: Any,
    derained: Any,
    *,
    sigma: float = 1.0,
    rho: float = 4.0,
    rainfree: np.ndarray | None = None,
) -> dict[str, float]:
    """Ground-truth-free descriptors of what a network did to one rainy photo (module docstring).

    Args:
        rainy: the input O; derained: the output D (same shape, [0, 1]).
        sigma, rho: scales of :func:`orientation_coherence` (px).
        rainfree: a precomputed :func:`rain_free_mask` of ``rainy`` (computed when None; pass it
            when scoring many networks on one photo).

    Returns:
        dict with the :data:`PROXY_KEYS`: ``removed_rms``, ``brightening_share`` (NaN when nothing
        was removed), ``coherence``, ``global_coherence``, ``angle_deg`` (NaN for an empty layer),
        ``rainfree_change`` (RMS luma change over the rain-free pixels; NaN if there are none) and
        ``rainfree_fraction`` (their share of the image).
    """
    layer = removed_layer(rainy, derained)
    energy = float((layer ** 2).sum())
    out: dict[str, float] = {
        "removed_rms": math.sqrt(energy / layer.size),
        "brightening_share": float((np.maximum(layer, 0.0) ** 2).sum()) / energy if energy > 0 else math.nan,
    }
    out.update(orientation_coherence(layer, sigma=sigma, rho=rho))
    free = rain_free_mask(rainy) if rainfree is None else np.asarray(rainfree)
    if free.shape != layer.shape or free.dtype != np.bool_:
        raise ValueError(f"rainfree must be a bool mask of shape {layer.shape}, got {free.dtype} {free.shape}")
    n = int(free.sum())
    out["rainfree_change"] = math.sqrt(float((layer[free] ** 2).mean())) if n else math.nan
    out["rainfree_fraction"] = n / free.size
    return {k: out[k] for k in PROXY_KEYS}


def paired_scores(
    target: Any,
    rainy: Any,
    derained: Any,
    *,
    threshold: float = metrics.ESTIMATE_THRESHOLD,
    margin: int = 1,
) -> dict[str, float | str]:
    """Every ground-truth score of a real pair: :func:`metrics.evaluate_pair` with the mask estimated.

    The rain mask is ``luma(rainy - target) > threshold`` (:func:`metrics.estimate_mask`, whose
    docstring gives the calibration on Rain100L). Returns psnr, ssim, psnr_y, ssim_y, input_psnr,
    input_ssim, the decoupled keys and ``mask_source = "estimated"``.
    """
    return metrics.evaluate_pair(target, rainy, derained, None, margin=margin, threshold=threshold)


PAIR_SCORE_KEYS: tuple[str, ...] = (*metrics.DECOUPLED_KEYS, "psnr", "psnr_y")
"""Columns of :func:`score_pairs` after ``set`` and ``image``."""


def score_pairs(
    pairs: Sequence[Pair],
    derained: Sequence[Any],
    *,
    masks: Sequence[np.ndarray] | None = None,
    margin: int = 1,
    threshold: float = metrics.ESTIMATE_THRESHOLD,
) -> Any:
    """Decoupled scores (and whole-image PSNR) of outputs on pairs, one row per pair; no SSIM.

    The rain mask is ``masks[i]`` when given (a synthetic pair's true mask), else
    :func:`derain_utils.measure.metrics.estimate_mask` of the pair (``luma(rainy - target) > threshold``),
    as :func:`paired_scores` does; the scores are :func:`derain_utils.measure.metrics.decoupled` with
    ``margin``. A network and a fixed filter scored by this function on the same pairs are
    comparable (the frontier of :mod:`derain_utils.measure.baselines` uses it). About 10 ms per 480 x 320
    pair, against about 110 ms for :func:`paired_scores` with its SSIM.

    Args:
        pairs: :class:`Pair` records (or objects with ``set``, ``name``, ``rainy``, ``target``).
        derained: one output per pair, same shape as its rainy image.
        masks: true rain masks, bool (H, W), one per pair (default: estimated).

    Returns:
        DataFrame: ``set``, ``image``, :data:`PAIR_SCORE_KEYS`, ``mask_source``.
    """
    import pandas as pd

    pairs = list(pairs)
    if len(derained) != len(pairs):
        raise ValueError(f"derained has {len(derained)} images for {len(pairs)} pairs")
    if masks is not None and len(masks) != len(pairs):
        raise ValueError(f"masks has {len(masks)} entries for {len(pairs)} pairs")
    rows = []
    for i, p in enumerate(pairs):
        b, o, d = (_as_hwc(x, what) for x, what in ((p.target, "target"), (p.rainy, "rainy"),
                                                     (derained[i], f"derained[{i}]")))
        if not (b.shape == o.shape == d.shape):
            raise ValueError(f"pair {p.set}/{p.name}: target {b.shape}, rainy {o.shape} and derained {d.shape} "
                             "must have the same shape")
        m = metrics.estimate_mask(o, b, threshold) if masks is None else np.asarray(masks[i], bool)
        s = metrics.decoupled(b, o, d, m, margin=margin)
        rgb = b.ndim == 3
        rows.append({"set": p.set, "image": str(p.name), **{k: float(s[k]) for k in metrics.DECOUPLED_KEYS},
                     "psnr": metrics.psnr(b, d), "psnr_y": metrics.psnr(b, d, y_channel=True) if rgb else math.nan,
                     "mask_source": "estimated" if masks is None else "given"})
    return pd.DataFrame(rows, columns=["set", "image", *PAIR_SCORE_KEYS, "mask_source"])
