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

Import order: this module sits beside :mod:`derain_utils.metrics` and
:mod:`derain_utils.backgrounds` (it imports those and :mod:`derain_utils.data` only); applying a
network is left to the caller (e.g. :func:`derain_utils.training.predict`).
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import skimage.feature
from scipy import ndimage

from derain_utils import backgrounds, metrics
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
