"""Real rain: paired benchmarks, unpaired photographs, and what can be measured without ground truth.

The study's practical claim is about *real* rain, which no synthetic training range fully
covers. Real test data comes in two forms, and this module reads both and scores what each allows.

Paired sets (with ground truth)
-------------------------------
A benchmark such as Rain100L ships a rainy image and its clean background per scene, in two
sub-folders whose files share a stem: ``input/16.png`` with ``target/16.png``.
:func:`paired_set` accepts any such folder (the sub-folder names in :data:`INPUT_DIRS` and
:data:`TARGET_DIRS` are recognised) and checks that every file has its partner. Their rain layer
is unknown, so the decoupled metrics use :func:`derain_utils.metrics.estimate_mask` (luma of
``rainy - target`` above a threshold) as the rain mask: :func:`paired_scores`.

:func:`paired_sets` opens any number of such folders and :func:`load_pairs` reads every pair of all
of them, optionally resampled (:func:`rescale_pair`).

What rain a paired set holds
----------------------------
A paired benchmark tests generalisation only if its rain differs from the training rain, so its rain
is measured (:func:`measure_rain`): the streak layer is the white top-hat of
``|luma(rainy - target)|`` (haze removed), thresholded; each connected component is a streak with a
length, a half-maximum width, an angle and a peak intensity (:func:`measure_streaks`), and each image
has a streak density and a coverage. :func:`rain_summary` gives medians and quartiles per set or per
image. :func:`place_rain` compares them with the presets, measured the same way on synthetic rain
(:func:`preset_rain`), and names the fields on which a set lies outside the training rain: the
measured counterpart of :func:`derain_utils.rain.ood_fields`. :func:`match_scale` finds the factor
that brings a set's measured streak width to the training rain's (the networks meet rain in pixels).
:func:`rain_placement` puts the sets and the presets in one table, and :func:`unseen_sets` applies
notebook 04's rule for a set whose rain the networks have not seen. :func:`score_pairs` scores
outputs on pairs with the decoupled metrics alone (fast, for many networks and fixed filters).

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
    (degrees from vertical, positive = top leans right, as in :mod:`derain_utils.rain`). Rain in
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

Import order: this module sits beside :mod:`derain_utils.complexity` (it imports
:mod:`derain_utils.metrics`, :mod:`derain_utils.backgrounds`, :mod:`derain_utils.rain` and
:mod:`derain_utils.data` only); applying a network is left to the caller (e.g.
:func:`derain_utils.training.predict`).
"""
from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import skimage.feature
from scipy import ndimage

from derain_utils import backgrounds, metrics, rain
from derain_utils.data import data_root

__all__ = [
    "INPUT_DIRS",
    "TARGET_DIRS",
    "LUMA_WEIGHTS",
    "TOPHAT_SIZE",
    "TOPHAT_THRESHOLD",
    "RAINFREE_MARGIN",
    "PROXY_KEYS",
    "resolve_folder",
    "PairedSet",
    "paired_set",
    "is_paired_folder",
    "unpaired_set",
    "resize_long_side",
    "luma",
    "removed_layer",
    "structure_tensor",
    "orientation_coherence",
    "rain_free_mask",
    "no_gt_proxies",
    "paired_scores",
    "Pair",
    "paired_sets",
    "load_pairs",
    "rescale_pair",
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
    "PAIR_SCORE_KEYS",
    "score_pairs",
]

INPUT_DIRS: tuple[str, ...] = ("input", "rainy", "rain", "data")
"""Recognised names of the sub-folder holding the rainy images of a paired set (first match wins)."""
TARGET_DIRS: tuple[str, ...] = ("target", "gt", "groundtruth", "norain", "clean", "label")
"""Recognised names of the sub-folder holding the clean backgrounds of a paired set."""

LUMA_WEIGHTS: np.ndarray = np.array([0.299, 0.587, 0.114])
"""BT.601 luma weights (sum 1), applied to differences: a change of c in every channel has luma c."""

TOPHAT_SIZE: int = 7
"""Side (px) of the square opening of :func:`rain_free_mask`: bright structures narrower than this are
candidate rain (the streaks of the shared real photos are 1-5 px wide at a 512 px long side)."""
TOPHAT_THRESHOLD: float = 0.03
"""Luma (in [0, 1]) a thin structure must rise above its surroundings to count as candidate rain."""
RAINFREE_MARGIN: int = 2
"""px by which candidate rain is dilated before its complement is called rain-free."""

PROXY_KEYS: tuple[str, ...] = ("removed_rms", "brightening_share", "coherence", "global_coherence",
                               "angle_deg", "rainfree_change", "rainfree_fraction")
"""Keys of :func:`no_gt_proxies`, in order."""


# --------------------------------------------------------------------------- folders


def resolve_folder(folder: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> Path:
    """An image-set folder given as a path, or as a set name under the data root.

    ``folder`` is used as is when it is an existing folder; otherwise it is looked up as
    ``<data_dir or $DERAIN_DATA>/<folder>`` (e.g. ``"rain100L_dev"``).

    Raises:
        FileNotFoundError: neither exists (the message names both places tried).
    """
    if not isinstance(folder, (str, os.PathLike)) or not str(folder).strip():
        raise ValueError(f"folder must be a non-empty path or set name, got {folder!r}")
    p = Path(folder).expanduser()
    if p.is_dir():
        return p.resolve()
    root = data_root(data_dir)
    if root is not None and (root / str(folder)).is_dir():
        return (root / str(folder)).resolve()
    where = f" nor in the data root {str(root)!r}" if root is not None else \
        " and no data root is set (pass data_dir or set DERAIN_DATA)"
    raise FileNotFoundError(f"image set {str(folder)!r} is not an existing folder{where}")


def _images_in(folder: Path) -> dict[str, Path]:
    """stem -> file for the images directly inside ``folder`` (suffixes of backgrounds.IMAGE_EXTENSIONS)."""
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in backgrounds.IMAGE_EXTENSIONS:
            if p.stem in out:
                raise ValueError(f"folder {str(folder)!r} holds two images with the stem {p.stem!r}: "
                                 f"{out[p.stem].name} and {p.name}")
            out[p.stem] = p
    return out


def _find_sub(root: Path, names: Sequence[str]) -> Path | None:
    for n in names:
        for cand in (root / n, root / n.capitalize(), root / n.upper()):
            if cand.is_dir():
                return cand
    return None


def _natural_key(stem: str) -> tuple:
    """Sort ``2`` before ``10`` (numeric stems), other stems alphabetically after."""
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


@dataclass(frozen=True)
class PairedSet:
    """A folder of (rainy, clean) pairs matched by file stem.

    Attributes:
        name: the set's name (the folder name).
        root: the folder; input_dir / target_dir: its two sub-folders.
        names: the shared stems, in natural order (``2`` before ``10``).
    """

    name: str
    root: Path
    input_dir: Path
    target_dir: Path
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.names)

    def paths(self, i: int) -> tuple[Path, Path]:
        """(rainy file, target file) of pair ``i``."""
        stem = self.names[i]
        return _images_in(self.input_dir)[stem], _images_in(self.target_dir)[stem]

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Pair ``i`` as ``(rainy, target)``, float32 (H, W, 3) in [0, 1].

        Raises:
            ValueError: the two files differ in size (names both).
        """
        a, b = self.paths(i)
        rainy, target = backgrounds.load_image(a), backgrounds.load_image(b)
        if rainy.shape != target.shape:
            raise ValueError(f"pair {self.names[i]!r}: {str(a)!r} is {rainy.shape[:2]} (HxW) but "
                             f"{str(b)!r} is {target.shape[:2]}")
        return rainy, target

    def __iter__(self) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """Yields ``(name, rainy, target)``."""
        for i, n in enumerate(self.names):
            yield (n, *self.load(i))


def is_paired_folder(folder: str | os.PathLike) -> bool:
    """Does ``folder`` hold an input-like and a target-like sub-folder (see :data:`INPUT_DIRS`)?"""
    p = Path(folder)
    return p.is_dir() and _find_sub(p, INPUT_DIRS) is not None and _find_sub(p, TARGET_DIRS) is not None


def paired_set(
    folder: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    *,
    input_dir: str | None = None,
    target_dir: str | None = None,
) -> PairedSet:
    """Open a folder of ``input/``-``target/`` pairs (any names of :data:`INPUT_DIRS` / :data:`TARGET_DIRS`).

    Args:
        folder: a folder path, or a set name under the data root (:func:`resolve_folder`).
        data_dir: the data root for set names (default ``$DERAIN_DATA``).
        input_dir, target_dir: explicit sub-folder names, overriding the recognised ones.

    Raises:
        FileNotFoundError: the folder or a sub-folder is missing (named).
        ValueError: no images, or a file without its partner (names the files).
    """
    root = resolve_folder(folder, data_dir)
    subs = []
    for given, names, what in ((input_dir, INPUT_DIRS, "input_dir"), (target_dir, TARGET_DIRS, "target_dir")):
        sub = (root / given) if given else _find_sub(root, names)
        if sub is None or not sub.is_dir():
            tried = [given] if given else list(names)
            raise FileNotFoundError(f"paired set {str(root)!r}: no {what} sub-folder (tried {tried}); a paired set "
                                    f"holds rainy images in input/ and clean ones with the same names in target/")
        subs.append(sub)
    inputs, targets = _images_in(subs[0]), _images_in(subs[1])
    if not inputs:
        raise ValueError(f"paired set {str(root)!r}: {str(subs[0])!r} holds no images")
    lonely = sorted(set(inputs) ^ set(targets))
    if lonely:
        show = [str((inputs.get(s) or targets.get(s))) for s in lonely[:5]]
        raise ValueError(f"paired set {str(root)!r}: {len(lonely)} file(s) without a partner of the same stem, "
                         f"e.g. {show}")
    names = tuple(sorted(inputs, key=_natural_key))
    return PairedSet(name=root.name, root=root, input_dir=subs[0], target_dir=subs[1], names=names)


def unpaired_set(folder: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> backgrounds.ImageFolder:
    """The images directly inside a folder of real rainy photos (a path or a set name under the data root)."""
    root = resolve_folder(folder, data_dir)
    return backgrounds.ImageFolder(root)


def resize_long_side(img: np.ndarray, long_side: int | None) -> np.ndarray:
    """Downscale ``img`` (H, W, C) so that its long side is at most ``long_side`` px (never upscale).

    Pillow's Lanczos filter on 8-bit-exact float data would quantise, so the resize is done on
    float32 per channel (``PIL.Image`` mode ``F``, Lanczos). ``None`` or 0 returns ``img`` unchanged.
    """
    from PIL import Image

    if long_side is None or long_side == 0:
        return img
    if isinstance(long_side, bool) or not isinstance(long_side, (int, np.integer)) or long_side < 8:
        raise ValueError(f"long_side must be None, 0 or an int >= 8 px, got {long_side!r}")
    h, w = img.shape[:2]
    scale = long_side / max(h, w)
    if scale >= 1:
        return img
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    a = img if img.ndim == 3 else img[..., None]
    out = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(a[..., c], np.float32), mode="F")
                               .resize(size, Image.Resampling.LANCZOS)) for c in range(a.shape[-1])], -1)
    out = np.clip(out, 0.0, 1.0).astype(np.float32)
    return out if img.ndim == 3 else out[..., 0]


# --------------------------------------------------------------------------- the removed layer


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
    where it is brighter. Accepts the image forms of :mod:`derain_utils.metrics` (numpy (H, W[, C]),
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


# --------------------------------------------------------------------------- many paired folders


@dataclass(frozen=True)
class Pair:
    """One (rainy, target) pair of a paired set, float32 (H, W, 3) in [0, 1]."""

    set: str
    name: str
    rainy: np.ndarray
    target: np.ndarray


def paired_sets(
    folders: str | os.PathLike | Sequence[str | os.PathLike | PairedSet],
    data_dir: str | os.PathLike | None = None,
    *,
    missing: str = "error",
) -> list[PairedSet]:
    """Open any number of paired folders (:func:`paired_set` each), in the order given.

    Args:
        folders: one folder, or a sequence of folder paths, set names under the data root
            (``"rain100L_dev"``) or :class:`PairedSet` objects.
        data_dir: the data root for set names (default ``$DERAIN_DATA``).
        missing: ``"error"`` raises for a folder that does not exist; ``"skip"`` leaves out a
            bare set *name* that the data root lacks, with a warning (an explicit path that does
            not exist is always an error: it is a typo, not an absent optional set).

    Raises:
        FileNotFoundError: a missing folder (see ``missing``).
        ValueError: two folders with the same name (their pairs could not be told apart in a
            table; names both), a bad ``missing``, or a folder that is not a paired set.
    """
    import warnings

    if missing not in ("error", "skip"):
        raise ValueError(f"missing must be 'error' or 'skip', got {missing!r}")
    items = [folders] if isinstance(folders, (str, os.PathLike, PairedSet)) else list(folders)
    out: list[PairedSet] = []
    for item in items:
        if isinstance(item, PairedSet):
            out.append(item)
            continue
        try:
            out.append(paired_set(item, data_dir))
        except FileNotFoundError as err:
            bare = isinstance(item, str) and "/" not in item and os.sep not in item and not Path(item).exists()
            if missing == "skip" and bare and "is not an existing folder" in str(err):
                warnings.warn(f"paired set {item!r} skipped: {err}", stacklevel=2)
                continue
            raise
    seen: dict[str, Path] = {}
    for ps in out:
        if ps.name in seen and seen[ps.name] != ps.root:
            raise ValueError(f"two paired sets share the name {ps.name!r}: {str(seen[ps.name])!r} and "
                             f"{str(ps.root)!r}; rename one folder")
        seen[ps.name] = ps.root
    return list({ps.root: ps for ps in out}.values())  # the same folder twice is used once


def load_pairs(
    sets: str | os.PathLike | Sequence[str | os.PathLike | PairedSet],
    data_dir: str | os.PathLike | None = None,
    *,
    max_pairs: int | None = None,
    factor: float | dict[str, float] = 1.0,
) -> list[Pair]:
    """Every pair of every paired set (:func:`paired_sets`), optionally resampled.

    Args:
        sets: folders, set names or :class:`PairedSet` objects.
        data_dir: the data root for set names.
        max_pairs: at most this many pairs per set, in name order (None: all).
        factor: resampling factor for every set, or ``{set name: factor}`` (sets not named keep
            1.0); see :func:`rescale_pair` and :func:`match_scale`.

    Returns:
        :class:`Pair` records, set by set, pairs in natural name order.
    """
    if max_pairs is not None and (isinstance(max_pairs, bool) or not isinstance(max_pairs, (int, np.integer))
                                  or max_pairs < 1):
        raise ValueError(f"max_pairs must be None or an int >= 1, got {max_pairs!r}")
    out = []
    for ps in paired_sets(sets, data_dir):
        f = factor.get(ps.name, 1.0) if isinstance(factor, dict) else factor
        for i in range(min(len(ps), max_pairs or len(ps))):
            rainy, target = ps.load(i)
            if f != 1.0:
                rainy, target = rescale_pair(rainy, target, f)
            out.append(Pair(ps.name, ps.names[i], rainy, target))
    return out


def rescale_pair(rainy: np.ndarray, target: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Resample a (rainy, target) pair by ``factor`` (< 1 shrinks), identically for both.

    ``skimage.transform.rescale`` with a gaussian anti-aliasing prefilter when shrinking
    (sigma ``(1/factor - 1)/2``, scikit-image's default) and bilinear interpolation; values stay in
    [0, 1]. Both images go through the same operation, so the rain layer ``rainy - target`` is
    resampled exactly as the images are (the transform is linear before the final clip).

    Raises:
        ValueError: a factor that is not a finite number > 0, images of different shapes, or a
            factor that would leave fewer than 8 px on a side.
    """
    from skimage.transform import rescale

    if isinstance(factor, bool) or not isinstance(factor, (int, float, np.floating)) or not (
            math.isfinite(factor) and factor > 0):
        raise ValueError(f"factor must be a finite number > 0, got {factor!r}")
    o, b = np.asarray(rainy), np.asarray(target)
    if o.shape != b.shape or o.ndim not in (2, 3):
        raise ValueError(f"rainy {o.shape} and target {b.shape} must be images of the same shape")
    if factor == 1.0:
        return o.astype(np.float32, copy=False), b.astype(np.float32, copy=False)
    if min(o.shape[:2]) * factor < 8:
        raise ValueError(f"factor={factor:g} would shrink a {o.shape[0]}x{o.shape[1]} pair below 8 px")
    kw = dict(order=1, anti_aliasing=factor < 1, channel_axis=-1 if o.ndim == 3 else None, mode="reflect",
              preserve_range=True)
    out = [np.clip(rescale(x.astype(np.float64), float(factor), **kw), 0.0, 1.0).astype(np.float32) for x in (o, b)]
    return out[0], out[1]


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
        in :mod:`derain_utils.rain`); ``abs_angle`` is its magnitude. NaN for components shorter
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
    bgs = backgrounds.dead_leaves(size, seed, n)
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

    ``n`` images of ``size`` px: rain drawn from ``spec`` (:func:`derain_utils.rain.synthesize`,
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
    :func:`derain_utils.rain.ood_fields`, which compares specs.

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
    :func:`derain_utils.metrics.estimate_mask` of the pair (``luma(rainy - target) > threshold``),
    as :func:`paired_scores` does; the scores are :func:`derain_utils.metrics.decoupled` with
    ``margin``. A network and a fixed filter scored by this function on the same pairs are
    comparable (the frontier of :mod:`derain_utils.baselines` uses it). About 10 ms per 480 x 320
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
