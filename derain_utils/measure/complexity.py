"""How complex is an image set? Five cheap, documented measures of background complexity.

The study's claim is about *background complexity*: with more, or more complex,
training backgrounds a deraining network finds it easier to learn the (simple)
rain than the background, and "slacks off". To test that, complexity needs
numbers. There is no single right definition, so this module reports five that
look at different things, each computed on the image quantised to 8 bits (the
form in which image sets are stored):

``png_bpp``
    Lossless compressibility: bits per pixel of the PNG-compressed image
    (Pillow, ``compress_level=9``). A proxy for the information content an
    algorithm cannot predict away.
``jpeg_bpp``
    Perceptual/lossy compressibility: bits per pixel at JPEG quality 75
    (Pillow/libjpeg, 4:2:0 chroma subsampling, standard Huffman tables). Counts
    the detail a perceptual codec thinks worth keeping, so fine noise costs less
    than in PNG.
``grad_mean``
    Edge strength: mean Sobel gradient magnitude of the luma
    (``skimage.filters.sobel``; a ramp rising by s per pixel gives sqrt(2) s).
``grad_entropy``
    Edge diversity: Shannon entropy, in bits, of the histogram of the Sobel
    magnitudes in :data:`GRAD_BINS` fixed bins of width 1/128 over [0, 1/2]
    (larger magnitudes go in the last bin). Fixed, absolute bins make a flat
    image 0 bits and a noisy one many.
``spectral_slope``
    Scale content: slope of log10 radially averaged power spectrum against
    log10 spatial frequency of the Hann-windowed luma, fitted over
    :data:`SLOPE_BAND` (1/16 to 1/2 cycles per pixel, log-spaced bins so every
    octave counts equally). White noise gives 0; the classic value for natural
    images is -2, and in this fine-scale band photographs give about -2 to -3
    (optics, downscaling and JPEG remove the finest detail; the shared background
    sets average -3.1 for faces to -2.2 for urban); smooth images are steeper. Higher (closer to 0) =
    relatively more fine detail. An image with no variation at all (a constant)
    has no spectrum; it gets :data:`SLOPE_FLOOR` (-10), the same way PSNR is
    capped instead of reported as infinite.

For *every* measure, higher = more complex (:data:`HIGHER_IS_MORE_COMPLEX`).

Byte counts exclude the container: ``png_bpp`` counts only the compressed pixel
data (the IDAT chunk payloads) and ``jpeg_bpp`` only the entropy-coded scan, so
the ~60 B of PNG and ~600 B of JPEG headers and tables do not inflate the values
of small crops (600 B is 1.2 bpp on a 64x64 crop). Both are *per pixel*, not per
channel: a 24-bit RGB image stores 24 raw bits per pixel, an 8-bit gray one 8, so
compare gray with gray and RGB with RGB (:func:`derain_utils.synth.backgrounds.load_image`
always gives RGB).

A learned measure
-----------------
The five measures above are cheap and well defined, but they answer a codec's
question (how many bits?) or a filter's (how many edges?). The study's question is
what a small *network* finds hard to fit, and the measures need not agree on it
(shapes with flat fills compress well but have sharp edges; fine photographic
texture costs PNG bits that a network can smooth over). ``ae_loss``
(:data:`LEARNED_MEASURES`, :func:`learned_complexity`, :func:`fit_autoencoder`)
asks it directly: train a tiny convolutional autoencoder (:class:`TinyAutoencoder`,
two stride-2 convolutions down to a 12:1 code, two up; about 11 k parameters) for a
few hundred steps on the tiles of part of a set, and report its L1 reconstruction
error on the tiles of the held-out rest. It is a property of a *set*, costs seconds
instead of milliseconds, and is deterministic for a seed on a given machine.

Use :func:`measure_image` for one image, :func:`measure_set` for a folder, a
:class:`derain_utils.synth.backgrounds.Source`, or arrays (a tidy table, one row per
image), :func:`summarize` for per-set mean and std, :func:`learned_complexity` for
``ae_loss``, and the command line ``python -m derain_utils.measure.complexity PATH [PATH ...]
[--learned] [--csv out.csv]`` to compare folders (the tool for choosing training
backgrounds).
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from scipy.signal.windows import hann
from skimage.color import rgb2gray
from skimage.filters import sobel
from torch import nn
from tqdm.auto import tqdm

from derain_utils.synth import backgrounds

__all__ = [
    "MEASURES",
    "HIGHER_IS_MORE_COMPLEX",
    "PNG_COMPRESS_LEVEL",
    "JPEG_QUALITY",
    "GRAD_BINS",
    "GRAD_MAX",
    "SLOPE_BAND",
    "SLOPE_FLOOR",
    "MIN_SIZE",
    "LEARNED_MEASURES",
    "ALL_MEASURES",
    "AE_PATCH",
    "AE_STEPS",
    "AE_WIDTH",
    "AE_BOTTLENECK",
    "measure_image",
    "measure_set",
    "summarize",
    "TinyAutoencoder",
    "AutoencoderFit",
    "fit_autoencoder",
    "learned_complexity",
    "measure_categories",
    "main",
]

PNG_COMPRESS_LEVEL: int = 9
"""zlib level of the PNG encoder (maximum compression; fixed so values are comparable)."""
JPEG_QUALITY: int = 75
"""libjpeg quality of ``jpeg_bpp`` (the common default; 4:2:0 subsampling, standard tables)."""
GRAD_BINS: int = 64
"""Number of fixed histogram bins of ``grad_entropy`` (so at most 6 bits)."""
GRAD_MAX: float = 0.5
"""Upper edge of the last regular ``grad_entropy`` bin (luma units); larger magnitudes go in that bin."""
SLOPE_BAND: tuple[float, float] = (1 / 16, 1 / 2)
"""Spatial-frequency band (cycles per pixel) over which ``spectral_slope`` is fitted."""
SLOPE_BINS: int = 12
"""Log-spaced radial frequency bins in :data:`SLOPE_BAND` (4 per octave)."""
SLOPE_FLOOR: float = -10.0
"""``spectral_slope`` of an image without any variation, and the lowest value ever reported."""
MIN_SIZE: int = 32
"""Smallest image side (px) accepted: 2 cycles of the lowest fitted frequency."""

MEASURES: dict[str, str] = {
    "png_bpp": "Lossless compressed size in bits per pixel (PNG, zlib level 9, headers excluded): "
    "information a predictor cannot remove.",
    "jpeg_bpp": "Lossy compressed size in bits per pixel at JPEG quality 75 (headers excluded): "
    "detail a perceptual codec thinks worth keeping.",
    "grad_mean": "Mean Sobel gradient magnitude of the luma: how strong and how dense edges and textures are.",
    "grad_entropy": "Shannon entropy (bits) of the histogram of Sobel gradient magnitudes in fixed bins: "
    "how varied the edge strengths are (0 for a flat image).",
    "spectral_slope": "Slope of the log power spectrum vs log frequency over 1/16-1/2 cycles/px "
    "(white noise 0, photographs about -2 to -3, flat images -10): closer to 0 = more fine detail.",
}
"""Measure name -> one sentence on what it means (used by the CLI and notebooks)."""

HIGHER_IS_MORE_COMPLEX: dict[str, bool] = {name: True for name in MEASURES}
"""Direction of each measure: True = a higher value means a more complex image (all of them)."""


# --------------------------------------------------------------------------- one image
def _to_uint8(img: Any, name: str = "img") -> np.ndarray:
    """8-bit (H, W) or (H, W, 3) array from a float [0, 1] or uint8 image (numpy or torch)."""
    if isinstance(img, torch.Tensor):
        t = img.detach().cpu()
        if t.ndim == 3 and t.shape[0] in (1, 3):
            t = t.permute(1, 2, 0)
        elif t.ndim != 2:
            raise ValueError(f"{name} is a torch tensor of shape {tuple(img.shape)}; expected (C, H, W) or (H, W)")
        arr = t.numpy()
    else:
        arr = np.asarray(img)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] == 3)):
        raise ValueError(f"{name} has shape {arr.shape}; expected (H, W), (H, W, 1) or (H, W, 3)")
    if min(arr.shape[:2]) < MIN_SIZE:
        raise ValueError(f"{name} is {arr.shape[0]}x{arr.shape[1]} px; complexity needs sides >= {MIN_SIZE} px")
    if arr.dtype == np.uint8:
        return arr
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{name} has dtype {arr.dtype}; expected float in [0, 1] or uint8")
    lo, hi = float(np.min(arr)), float(np.max(arr))
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo < -0.05 or hi > 1.05:
        raise ValueError(f"{name} has values in [{lo:.4g}, {hi:.4g}]; expected floats in [0, 1]")
    return np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)


def _luma(u8: np.ndarray) -> np.ndarray:
    """float64 luma in [0, 1]: Rec. 709 weights via skimage.color.rgb2gray for RGB."""
    return rgb2gray(u8) if u8.ndim == 3 else u8 / 255.0


def _png_payload_bytes(u8: np.ndarray) -> int:
    """Sum of the IDAT chunk lengths of the PNG encoding (the compressed pixel data)."""
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL, optimize=False)
    data = buf.getvalue()
    pos, total = 8, 0  # skip the 8-byte signature; then chunks of length(4) type(4) data crc(4)
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        if data[pos + 4 : pos + 8] == b"IDAT":
            total += length
        pos += 12 + length
    return total


def _jpeg_scan_bytes(u8: np.ndarray) -> int:
    """Bytes of the entropy-coded scan of the baseline JPEG encoding (markers and tables excluded)."""
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=2, optimize=False)
    data = buf.getvalue()
    pos = 2  # after SOI; walk the marker segments up to the start of scan (FFDA)
    while pos + 4 <= len(data):
        marker = data[pos : pos + 2]
        seg_len = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == b"\xff\xda":
            start = pos + 2 + seg_len
            end = data.rindex(b"\xff\xd9")  # EOI
            return end - start
        pos += 2 + seg_len
    raise RuntimeError("Pillow wrote a JPEG without a start-of-scan marker")  # pragma: no cover


def _grad_entropy(grad: np.ndarray) -> float:
    edges = np.linspace(0.0, GRAD_MAX, GRAD_BINS + 1)
    idx = np.clip(np.searchsorted(edges, grad.ravel(), side="right") - 1, 0, GRAD_BINS - 1)
    counts = np.bincount(idx, minlength=GRAD_BINS)
    p = counts[counts > 0] / grad.size
    return float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0


def _spectral_slope(luma: np.ndarray) -> float:
    if np.ptp(luma) == 0:
        return SLOPE_FLOOR
    h, w = luma.shape
    window = np.outer(hann(h, sym=False), hann(w, sym=False))
    x = (luma - luma.mean()) * window
    power = np.abs(np.fft.fft2(x)) ** 2
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    f = np.sqrt(fy**2 + fx**2)
    lo, hi = SLOPE_BAND
    edges = np.geomspace(lo, hi, SLOPE_BINS + 1)
    inband = (f >= lo) & (f <= hi)
    idx = np.clip(np.searchsorted(edges, f[inband], side="right") - 1, 0, SLOPE_BINS - 1)
    count = np.bincount(idx, minlength=SLOPE_BINS)
    mean_power = np.bincount(idx, weights=power[inband], minlength=SLOPE_BINS)
    mean_logf = np.bincount(idx, weights=np.log10(f[inband]), minlength=SLOPE_BINS)
    ok = count > 0
    mean_power, mean_logf = mean_power[ok] / count[ok], mean_logf[ok] / count[ok]
    log_power = np.log10(np.maximum(mean_power, np.finfo(float).tiny))
    slope = np.polyfit(mean_logf, log_power, 1)[0]
    return float(max(slope, SLOPE_FLOOR))


def _check_measures(measures: Iterable[str] | None) -> list[str]:
    if measures is None:
        return list(MEASURES)
    chosen = [measures] if isinstance(measures, str) else list(measures)
    unknown = [m for m in chosen if m not in MEASURES]
    if unknown or not chosen:
        raise ValueError(f"measures: unknown or empty {unknown or chosen!r}; valid names are {list(MEASURES)}")
    return chosen


def measure_image(img: Any, measures: Iterable[str] | None = None) -> dict[str, float]:
    """The complexity measures of one image (see :data:`MEASURES`; higher = more complex).

    Args:
        img: numpy (H, W, 3) RGB or (H, W) / (H, W, 1) gray, float in [0, 1] or
            uint8; or a torch (C, H, W) tensor. Floats are rounded to 8 bits
            first. Sides must be at least :data:`MIN_SIZE` px.
        measures: names to compute (default: all, in :data:`MEASURES` order).

    Returns:
        dict name -> float: ``png_bpp`` and ``jpeg_bpp`` in bits per pixel,
        ``grad_mean`` in luma units, ``grad_entropy`` in bits, ``spectral_slope``
        dimensionless (log-log slope).
    """
    chosen = _check_measures(measures)
    u8 = _to_uint8(img)
    pixels = u8.shape[0] * u8.shape[1]
    out: dict[str, float] = {}
    luma = grad = None
    for name in chosen:
        if name == "png_bpp":
            out[name] = 8.0 * _png_payload_bytes(u8) / pixels
        elif name == "jpeg_bpp":
            out[name] = 8.0 * _jpeg_scan_bytes(u8) / pixels
        else:
            if luma is None:
                luma = _luma(u8)
            if name == "spectral_slope":
                out[name] = _spectral_slope(luma)
                continue
            if grad is None:
                grad = sobel(luma)
            out[name] = float(grad.mean()) if name == "grad_mean" else _grad_entropy(grad)
    return out


# ----------------------------------------------------------------------------- sets
def _resolve(x: Any, set_name: str | None) -> tuple[str, list[str], Callable[[int], Any], int]:
    """(set name, image names, loader(i), count) for any accepted input of measure_set."""
    if isinstance(x, (str, os.PathLike)):
        path = Path(x)
        if path.is_dir():
            folder = backgrounds.ImageFolder(path)
            if len(folder) == 0:
                raise ValueError(f"folder {str(path)!r} contains no images")
            return set_name or path.name, list(folder.names), folder.__getitem__, len(folder)
        if path.exists():
            raise ValueError(f"{str(path)!r} is a file, not a folder of images")
        if isinstance(x, os.PathLike) or os.sep in str(x) or str(x).startswith("."):
            raise FileNotFoundError(f"folder {str(path)!r} does not exist")
        x = backgrounds.get_source(str(x))
    if hasattr(x, "ids") and hasattr(x, "load"):
        ids = x.ids()
        if ids is None:
            raise ValueError(
                f"source {getattr(x, 'name', x)!r} is procedural (unbounded): it has no fixed set of images; "
                "measure a folder or image set, or pass an array of its images "
                f"(e.g. procedural.procedural({getattr(x, 'name', 'kind')!r}, 256, seed=0, n=30))"
            )
        if len(ids) == 0:
            raise ValueError(f"source {getattr(x, 'name', x)!r} contains no images")
        ids = list(ids)
        return set_name or str(getattr(x, "name", "source")), [str(i) for i in ids], (lambda i: x.load(ids[i])), len(ids)
    if isinstance(x, torch.Tensor):
        if x.ndim != 4:
            raise ValueError(f"images: a torch batch must be (N, C, H, W), got shape {tuple(x.shape)}")
        items: Sequence[Any] = list(x)
    elif isinstance(x, np.ndarray):
        if x.ndim != 4:
            raise ValueError(
                f"images: an array of images must be (N, H, W, C), got shape {x.shape} "
                "(pass a list for a single image or gray stacks)"
            )
        items = list(x)
    elif isinstance(x, (list, tuple)):
        items = x
    else:
        raise ValueError(
            f"images: expected a folder path, a backgrounds Source, a list of images or an (N, H, W, C) array; "
            f"got {type(x).__name__}"
        )
    if len(items) == 0:
        raise ValueError("images: the list of images is empty")
    return set_name or "images", [str(i) for i in range(len(items))], items.__getitem__, len(items)


def _subset(count: int, max_images: int | None, seed: int) -> np.ndarray:
    """Indices of the images to measure: all, or a seeded random ``max_images`` of them in original order."""
    order = np.arange(count)
    if max_images is not None:
        if isinstance(max_images, bool) or not isinstance(max_images, (int, np.integer)) or max_images < 1:
            raise ValueError(f"max_images must be a positive integer, got {max_images!r}")
        if max_images < count:
            order = np.sort(np.random.default_rng(seed).choice(count, size=int(max_images), replace=False))
    return order


def measure_set(
    x: Any,
    names: Sequence[str] | None = None,
    progress: bool = False,
    *,
    measures: Iterable[str] | None = None,
    set_name: str | None = None,
    max_images: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Complexity of every image of a set, as a tidy table (one row per image).

    Args:
        x: the images: a folder path (read with
            :class:`derain_utils.synth.backgrounds.ImageFolder`), a background source name
            such as ``"faces"`` (:func:`derain_utils.synth.backgrounds.get_source`), a
            :class:`~derain_utils.synth.backgrounds.Source`, a list of images, an
            (N, H, W, C) numpy array or an (N, C, H, W) torch batch.
        names: image names for the ``image`` column (default: file names / source
            ids, or "0", "1", ... for arrays); must match the number of images.
        progress: show a ``tqdm.auto`` progress bar.
        measures: subset of :data:`MEASURES` (default all).
        set_name: value of the ``set`` column (default: the folder or source name,
            or "images").
        max_images: measure at most this many, a seeded random subset (kept in the
            original order) when the set is larger.
        seed: seed of that subset.

    Returns:
        DataFrame with columns ``set``, ``image`` and one per measure.

    Raises:
        FileNotFoundError: a folder that does not exist.
        ValueError: an empty set, an unreadable image (the message names the file),
            bad ``names`` / ``max_images`` / ``measures``.
    """
    chosen = _check_measures(measures)
    label, default_names, load, count = _resolve(x, set_name)
    if names is not None:
        names = [str(n) for n in names]
        if len(names) != count:
            raise ValueError(f"names has {len(names)} entries but the set has {count} images")
    image_names = names if names is not None else default_names
    order = _subset(count, max_images, seed)
    rows = []
    for i in tqdm(order, desc=f"complexity {label}", disable=not progress, leave=False):
        row: dict[str, Any] = {"set": label, "image": image_names[i]}
        try:
            row.update(measure_image(load(int(i)), chosen))
        except ValueError as err:
            if str(image_names[i]) in str(err):
                raise
            raise ValueError(f"{label}/{image_names[i]}: {err}") from err
        rows.append(row)
    return pd.DataFrame(rows, columns=["set", "image", *chosen])


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per-set mean and standard deviation (ddof = 1) of every measure column of ``df``.

    Returns:
        tidy DataFrame with columns ``set``, ``measure``, ``n`` (non-missing values),
        ``mean``, ``std``, one row per (set, measure), sets in order of first
        appearance and measures in :data:`ALL_MEASURES` order.
    """
    if "set" not in df.columns:
        raise ValueError("df has no 'set' column; pass the output of measure_set")
    present = [m for m in ALL_MEASURES if m in df.columns]
    if not present:
        raise ValueError(f"df has none of the measure columns {list(ALL_MEASURES)}")
    grouped = df.groupby("set", sort=False)[present]
    stats = grouped.agg(["count", "mean", "std"]).stack(level=0, future_stack=True).reset_index()
    stats.columns = ["set", "measure", "n", "mean", "std"]
    stats["measure"] = pd.Categorical(stats["measure"], categories=present, ordered=True)
    sets = pd.Categorical(stats["set"], categories=list(dict.fromkeys(df["set"])), ordered=True)
    stats = stats.assign(_set=sets).sort_values(["_set", "measure"]).drop(columns="_set")
    stats["measure"] = stats["measure"].astype(str)
    stats["n"] = stats["n"].astype(int)
    return stats.reset_index(drop=True)


# ------------------------------------------------------------------ a learned measure
LEARNED_MEASURES: dict[str, str] = {
    "ae_loss": "Held-out L1 reconstruction error of a tiny convolutional autoencoder (12:1 bottleneck) "
    "trained briefly on the set: how hard the content is for a small network to fit.",
}
"""Set-level measures that need training (name -> one sentence). Higher = more complex."""

ALL_MEASURES: dict[str, str] = {**MEASURES, **LEARNED_MEASURES}
"""Every measure of the module: the per-image ones of :data:`MEASURES`, then :data:`LEARNED_MEASURES`
(for all of them, higher = more complex)."""

AE_PATCH: int = 32
"""Side (px) of the tiles the autoencoder is trained and evaluated on (a multiple of 4)."""
AE_STEPS: int = 300
MAX_AE_STEPS: int = 1_000_000
"""The most steps :func:`fit_autoencoder` accepts (hours on a CPU; beyond it a typo, not a choice)."""
"""Default optimiser steps of the autoencoder (batches of 16 tiles; about 1-2 s on one CPU core)."""
AE_WIDTH: int = 16
"""Feature channels of the autoencoder's hidden layers."""
AE_BOTTLENECK: int = 4
"""Channels of the code at 1/4 resolution: 4 numbers per 4x4x3 = 48 input values (12:1)."""


class TinyAutoencoder(nn.Module):
    """The probe network of ``ae_loss``: two stride-2 convolutions down, two up.

    ``(N, C, H, W) -> (N, C, H, W)`` for H, W divisible by 4. The per-tile mean colour
    is subtracted first and added back at the end (it passes for free, so a flat image
    is reconstructed exactly). Encoder: 3x3 conv to ``width`` channels, ReLU, 4x4
    stride-2 conv, ReLU, 4x4 stride-2 conv to ``bottleneck`` channels (the code, at
    H/4 x W/4). Decoder: the mirror image with transposed convolutions and a linear
    3x3 output conv. With the defaults (16, 4) and RGB input it has about 11 k
    parameters and a 12:1 code.
    """

    def __init__(self, channels: int = 3, width: int = AE_WIDTH, bottleneck: int = AE_BOTTLENECK) -> None:
        super().__init__()
        for name, v in (("channels", channels), ("width", width), ("bottleneck", bottleneck)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, bottleneck, 4, stride=2, padding=1),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(bottleneck, width, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(width, width, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)  # the tile's mean colour passes for free
        return mean + self.decoder(self.encoder(x - mean))


@dataclass
class AutoencoderFit:
    """What :func:`fit_autoencoder` measured (losses are mean absolute errors in [0, 1] units).

    Attributes:
        heldout_loss: mean L1 reconstruction error over the held-out tiles: ``ae_loss``.
        fit_loss: the same on the tiles it was trained on (after training).
        tile_losses: float64 (n_heldout_tiles,) per held-out tile.
        image_losses: held-out image index -> mean loss of its tiles.
        fit_images, heldout_images: indices (into the input set) of the two parts.
        history: float64 (steps,) training loss of every step.
        steps, patch, seed: as called; wall_s: seconds it took.
    """

    heldout_loss: float
    fit_loss: float
    tile_losses: np.ndarray
    image_losses: dict[int, float]
    fit_images: list[int]
    heldout_images: list[int]
    history: np.ndarray
    steps: int
    patch: int
    seed: int
    wall_s: float


def _tiles(images: Sequence[np.ndarray], patch: int) -> tuple[torch.Tensor, np.ndarray]:
    """Non-overlapping ``patch`` grid tiles (centred grid) of images, as (T, C, p, p) + owner index (T,)."""
    out, owner = [], []
    for k, img in enumerate(images):
        h, w = img.shape[:2]
        rows, cols = h // patch, w // patch
        if rows == 0 or cols == 0:
            continue
        oy, ox = (h - rows * patch) // 2, (w - cols * patch) // 2
        grid = img[oy : oy + rows * patch, ox : ox + cols * patch]
        grid = grid.reshape(rows, patch, cols, patch, -1).transpose(0, 2, 4, 1, 3)  # (rows, cols, C, p, p)
        grid = grid.reshape(-1, img.shape[2], patch, patch)
        out.append(grid)
        owner.extend([k] * grid.shape[0])
    if not out:
        return torch.zeros((0, images[0].shape[2], patch, patch)), np.zeros(0, dtype=int)
    return torch.from_numpy(np.ascontiguousarray(np.concatenate(out), dtype=np.float32)), np.asarray(owner)


def _check_positive_int(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def fit_autoencoder(
    images: Any,
    *,
    steps: int = AE_STEPS,
    patch: int = AE_PATCH,
    batch_size: int = 16,
    lr: float = 1e-2,
    width: int = AE_WIDTH,
    bottleneck: int = AE_BOTTLENECK,
    holdout: float = 0.25,
    seed: int = 0,
    progress: bool = False,
    threads: int | None = 1,
) -> AutoencoderFit:
    """Train :class:`TinyAutoencoder` briefly on part of a set and score it on the rest.

    The idea: a deraining network is a small network that must reproduce the
    background. How hard a set of backgrounds is *for such a network* can be probed
    directly: fit a tiny bottleneck autoencoder for a few hundred steps and see how
    much of held-out content it fails to reconstruct. Smooth content (flat, blobs,
    faces) fits into the code; fine, irregular detail (noise, texture, dense line
    art) does not. Unlike the compression measures it counts only what a
    convolutional network of this size cannot learn in this time.

    Procedure (deterministic for a seed on a given machine and thread count):

    1. the images (quantised to 8 bits, as for every measure) are split, by a seeded
       permutation, into a held-out part (``round(holdout * n)``, at least 1) and a
       fit part (the rest, at least 1);
    2. each part is cut into non-overlapping ``patch`` x ``patch`` grid tiles;
    3. the autoencoder (initialised from ``seed``) is trained with Adam (``lr``,
       cosine decay) on ``steps`` batches of ``batch_size`` fit tiles, drawn with
       replacement and randomly flipped, minimising the L1 error (the loss the
       deraining networks are trained with);
    4. the L1 error is measured on every held-out tile.

    Tiles of the same source image may sit on both sides when ``images`` are tiles
    of larger photos (as the training tiles of a notebook are); then the held-out
    loss measures fitting more than generalising, which is what it is meant to rank.

    Args:
        images: anything :func:`measure_set` accepts (a folder, a source name, a list
            of images, an (N, H, W, C) array, an (N, C, H, W) tensor); at least 2 images,
            all RGB or all gray, each at least ``patch`` px on both sides.
        steps, batch_size, lr: the optimisation.
        patch: tile side in px (a multiple of 4, >= 8).
        width, bottleneck: :class:`TinyAutoencoder` channels.
        holdout: fraction of images held out, in (0, 1).
        seed: seeds the split, the initialisation and the batches.
        progress: a ``tqdm.auto`` bar over steps.
        threads: torch CPU threads while fitting (restored afterwards); None = leave
            torch's setting. One thread is the fastest for this tiny network (several
            threads on a busy machine were 10-30x slower) and makes the result
            independent of the machine's core count.

    Raises:
        ValueError: fewer than 2 images, mixed RGB and gray, bad arguments (named),
            or images too small to give a tile on one side of the split.
    """
    steps = _check_positive_int("steps", steps)
    if steps > MAX_AE_STEPS:
        raise ValueError(f"steps must be at most {MAX_AE_STEPS:,} (hours of training on a CPU), got {steps:,}")
    if threads is not None:
        threads = _check_positive_int("threads", threads)
    batch_size = _check_positive_int("batch_size", batch_size)
    patch = _check_positive_int("patch", patch)
    if patch % 4 or patch < 8:
        raise ValueError(f"patch must be a multiple of 4 and >= 8 (two stride-2 layers), got {patch}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float)) or not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout must be a fraction in (0, 1), got {holdout!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    t0 = time.perf_counter()
    label, names, load, count = _resolve(images, None)
    if count < 2:
        raise ValueError(f"images: the learned measure needs at least 2 images (fit and held out), got {count}")
    arrays = []
    for i in range(count):
        try:
            u8 = _to_uint8(load(i), name=f"image {names[i]!r}")
        except ValueError as err:
            raise ValueError(f"{label}/{names[i]}: {err}") from err
        arrays.append((u8[..., None] if u8.ndim == 2 else u8).astype(np.float32) / 255.0)
    channels = arrays[0].shape[2]
    mixed = [names[i] for i, a in enumerate(arrays) if a.shape[2] != channels]
    if mixed:
        raise ValueError(f"images: mix of RGB and gray images (first odd one: {mixed[0]!r}); convert them first")

    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(1,)))
    order = rng.permutation(count)
    n_held = min(max(1, int(round(holdout * count))), count - 1)
    held_idx, fit_idx = sorted(order[:n_held].tolist()), sorted(order[n_held:].tolist())
    fit_tiles, _ = _tiles([arrays[i] for i in fit_idx], patch)
    held_tiles, held_owner = _tiles([arrays[i] for i in held_idx], patch)
    for what, t in (("fit", fit_tiles), ("held-out", held_tiles)):
        if t.shape[0] == 0:
            raise ValueError(f"images: the {what} images give no {patch}x{patch} tile; use a smaller patch")

    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _fit(fit_tiles, held_tiles, held_owner, fit_idx, held_idx, channels=channels, steps=steps,
                    batch_size=batch_size, lr=float(lr), width=width, bottleneck=bottleneck, seed=int(seed),
                    patch=patch, label=label, progress=progress, t0=t0)
    finally:
        torch.set_num_threads(old_threads)


def _fit(fit_tiles: torch.Tensor, held_tiles: torch.Tensor, held_owner: np.ndarray, fit_idx: list[int],
         held_idx: list[int], *, channels: int, steps: int, batch_size: int, lr: float, width: int,
         bottleneck: int, seed: int, patch: int, label: str, progress: bool, t0: float) -> AutoencoderFit:
    """The training loop and held-out scoring of :func:`fit_autoencoder` (arguments already checked)."""
    gen = torch.Generator().manual_seed(int(seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = TinyAutoencoder(channels, width, bottleneck)
    opt = torch.optim.Adam(model.parameters(), lr=float(lr))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    history = np.empty(steps)
    model.train()
    for step in tqdm(range(steps), desc=f"autoencoder {label}", disable=not progress, leave=False):
        idx = torch.randint(fit_tiles.shape[0], (batch_size,), generator=gen)
        flips = torch.randint(2, (batch_size, 2, 1, 1, 1), generator=gen).bool()
        x = fit_tiles[idx]
        x = torch.where(flips[:, 0], x.flip(-1), x)  # per-tile horizontal flip
        x = torch.where(flips[:, 1], x.flip(-2), x)  # and vertical flip
        loss = (model(x) - x).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        history[step] = float(loss.detach())

    def per_tile(tiles: torch.Tensor) -> np.ndarray:
        model.eval()
        with torch.inference_mode():
            return torch.cat([(model(c) - c).abs().mean(dim=(1, 2, 3)) for c in tiles.split(256)]).double().numpy()

    tile_losses = per_tile(held_tiles)
    fit_loss = float(per_tile(fit_tiles).mean())
    image_losses = {held_idx[k]: float(tile_losses[held_owner == k].mean()) for k in np.unique(held_owner)}
    return AutoencoderFit(
        heldout_loss=float(tile_losses.mean()),
        fit_loss=fit_loss,
        tile_losses=tile_losses,
        image_losses=image_losses,
        fit_images=[int(i) for i in fit_idx],
        heldout_images=[int(i) for i in held_idx],
        history=history,
        steps=steps,
        patch=patch,
        seed=int(seed),
        wall_s=time.perf_counter() - t0,
    )


def learned_complexity(images: Any, *, steps: int = AE_STEPS, seed: int = 0, **kwargs: Any) -> float:
    """``ae_loss`` of a set: held-out L1 error of a briefly trained tiny autoencoder.

    A shortcut for ``fit_autoencoder(images, steps=steps, seed=seed, **kwargs).heldout_loss``
    (see :func:`fit_autoencoder` for the procedure and the arguments). In [0, 1] units of
    the image values: 0 for flat images, about 0.24 for uniform noise (the mean absolute
    deviation of U(0, 1) is 0.25); 64 px tiles of the shared sets gave about 0.025 (faces),
    0.04 (natural), 0.055 (urban) and 0.08 (manga). Higher = harder for a small network
    to fit = more complex.
    """
    return fit_autoencoder(images, steps=steps, seed=seed, **kwargs).heldout_loss


def measure_categories(
    tiles: Mapping[str, tuple[Sequence[str], Any]],
    *,
    ae_steps: int = AE_STEPS,
    seed: int = 0,
    learned: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Every measure of :data:`ALL_MEASURES` for several sets of tiles (e.g. the training tiles per category).

    Args:
        tiles: set name -> (tile names, tiles as accepted by :func:`measure_set`).
        ae_steps, seed: the autoencoder of ``ae_loss`` (:func:`fit_autoencoder`, on one torch thread).
        learned: fit the autoencoders; False leaves ``ae_loss`` out of the summary and NaN in the
            means (the per-image measures only, seconds instead of an autoencoder per set).

    Returns:
        ``(per_tile, summary, means)``: the per-tile table of :func:`measure_set` for all
        sets; :func:`summarize` of it with an ``ae_loss`` row per set (its mean is the
        held-out loss, its std the spread over held-out tiles); and the set means, one
        row per set (in the order given) and one column per measure of :data:`ALL_MEASURES`.
    """
    if not isinstance(tiles, Mapping) or not tiles:
        raise ValueError("tiles must be a non-empty mapping {set name: (tile names, tiles)}")
    per_tile = pd.concat([measure_set(t, names=list(n), set_name=str(s)) for s, (n, t) in tiles.items()],
                         ignore_index=True)
    ae = {s: fit_autoencoder(t, steps=ae_steps, seed=seed, threads=1) for s, (_, t) in tiles.items()} if learned else {}
    summary = summarize(per_tile)
    if ae:
        summary = pd.concat([summary, pd.DataFrame(
            [{"set": s, "measure": "ae_loss", "n": len(f.tile_losses), "mean": f.heldout_loss,
              "std": float(np.std(f.tile_losses, ddof=1)) if len(f.tile_losses) > 1 else float("nan")}
             for s, f in ae.items()])], ignore_index=True)
    means = summary.pivot(index="set", columns="measure", values="mean").reindex(
        index=[str(s) for s in tiles], columns=list(ALL_MEASURES))
    means.columns.name = None
    return per_tile, summary, means


# ------------------------------------------------------------------------------ CLI
def _table(summary: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """Rows = measures, columns = sets, cells 'mean ± std'."""
    cells = summary.assign(
        cell=[f"{m:.3f} ± {s:.3f}" if np.isfinite(s) else f"{m:.3f}" for m, s in zip(summary["mean"], summary["std"])]
    )
    table = cells.pivot(index="measure", columns="set", values="cell")
    return table.loc[[m for m in ALL_MEASURES if m in table.index], labels]


def _learned_column(path: str, df: pd.DataFrame, max_images: int | None, seed: int, steps: int,
                    progress: bool) -> pd.Series:
    """``ae_loss`` per image of one folder's table: its held-out tiles' mean loss, NaN for fitted images."""
    _, _, load, count = _resolve(path, None)
    order = _subset(count, max_images, seed)
    if len(order) < 2:
        raise ValueError(f"{path}: --learned needs at least 2 images (fit and held out), got {len(order)}")
    images = [load(int(i)) for i in tqdm(order, desc=f"loading {Path(str(path)).name}", disable=not progress,
                                         leave=False)]
    fit = fit_autoencoder(images, steps=steps, seed=seed, progress=progress)
    values = np.full(len(order), np.nan)
    for k, loss in fit.image_losses.items():
        values[k] = loss
    return pd.Series(values, index=df.index, name="ae_loss")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m derain_utils.measure.complexity PATH [PATH ...] [--learned] [--csv out.csv] [--max-images K]``.

    Prints the mean ± std of every measure for each folder side by side, then one
    sentence per measure. With ``--learned`` it also trains the tiny autoencoder of
    :func:`fit_autoencoder` on each folder (seconds per folder) and adds ``ae_loss``:
    mean ± std over that folder's held-out images (the per-image CSV has NaN for the
    images the autoencoder was fitted on). Returns the exit status: 0, or 2 with a
    one-line error on stderr (unreadable file, empty or missing folder).
    """
    parser = argparse.ArgumentParser(
        prog=_prog(argv),
        description="Compare the complexity of image folders (all measures: higher = more complex).",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="folders of images, or the names of image sets: faces, natural, urban, manga (folders "
                             "under $DERAIN_DATA) or skimage (the embedded photos). The procedural kinds (flat, "
                             "blobs, ...) have no fixed set of images: measure arrays of them with measure_set")
    parser.add_argument("--csv", type=Path, help="write the per-image table (one row per image) to this CSV file "
                                                 "(written whole or not at all)")
    parser.add_argument("--max-images", type=int, metavar="K", help="measure a seeded random K images per folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --max-images subset (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--learned", action="store_true",
                        help="also train a tiny autoencoder per folder and report its held-out loss (ae_loss)")
    parser.add_argument("--ae-steps", type=int, default=AE_STEPS, metavar="S",
                        help=f"training steps of that autoencoder (default {AE_STEPS})")
    args = parser.parse_args(argv)

    paths = _distinct_paths(args.paths)
    bases = [_text(Path(p).name or str(p)) for p in paths]
    labels = bases if len(set(bases)) == len(bases) else [_text(str(p)) for p in paths]
    try:
        if args.max_images is not None and args.max_images < 1:
            raise ValueError(f"--max-images must be a positive integer, got {args.max_images}")
        if not 1 <= args.ae_steps <= MAX_AE_STEPS:
            raise ValueError(f"--ae-steps must be an integer from 1 to {MAX_AE_STEPS:,}, got {args.ae_steps}")
        if args.csv is not None:
            _check_output_file(args.csv, "--csv")
        frames = []
        for path, label in zip(paths, labels):
            df = measure_set(
                path,
                progress=not args.no_progress,
                set_name=label,
                max_images=args.max_images,
                seed=args.seed,
            )
            if args.learned:
                df["ae_loss"] = _learned_column(path, df, args.max_images, args.seed, args.ae_steps,
                                                not args.no_progress)
            frames.append(df)
    except (ValueError, FileNotFoundError, OSError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: one line, no traceback; nothing was written
        print(f"{parser.prog}: interrupted; nothing written", file=sys.stderr)
        return 130
    df = pd.concat(frames, ignore_index=True)
    summary = summarize(df)
    counts = summary.groupby("set", sort=False)["n"].max()
    with pd.option_context("display.width", 200, "display.max_columns", None, "display.max_colwidth", 40):
        print("Image complexity, mean ± std over images (higher = more complex for every measure)")
        print("images: " + ", ".join(f"{label} {counts[label]}" for label in labels))
        print(_table(summary, labels).to_string())
    if args.learned:
        print("(ae_loss: one autoencoder per folder, fitted on 75% of its images; mean ± std over the other 25%)")
    print()
    for name, sentence in ALL_MEASURES.items():
        if name in df.columns:
            print(f"{name}: {sentence}")
    if args.csv is not None:
        try:
            _write_csv_atomic(df, args.csv)
        except OSError as err:
            print(f"{parser.prog}: error: --csv {str(args.csv)!r} cannot be written: {err}", file=sys.stderr)
            return 2
        print(f"\nper-image table written to {args.csv}")
    return 0


def _prog(argv: Sequence[str] | None) -> str:
    """The usage name: the console script's name when run as ``derain-complexity``."""
    if argv is None and Path(sys.argv[0]).name.startswith("derain-complexity"):
        return "derain-complexity"
    return "python -m derain_utils.measure.complexity"


def _text(name: str) -> str:
    """``name`` as valid UTF-8 text (undecodable file-name bytes as backslash escapes), printable and CSV-safe."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _distinct_paths(paths: Sequence[str]) -> list[str]:
    """``paths`` without repeats: a folder given twice (as the same or another spelling) is measured once."""
    seen: dict[str, str] = {}
    out = []
    for p in paths:
        key = os.path.realpath(p) if os.path.exists(p) else p
        if key in seen:
            print(f"note: {_text(p)!r} is the same image set as {_text(seen[key])!r}; measured once",
                  file=sys.stderr)
            continue
        seen[key] = p
        out.append(p)
    return out


def _check_output_file(path: Path, option: str) -> None:
    """Fail before any work when ``path`` cannot become a file (a folder, or a parent that is a file)."""
    if path.is_dir():
        raise ValueError(f"{option} {str(path)!r} is a folder; give a file name such as {str(path / 'complexity.csv')!r}")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{option} {str(path)!r}: {str(parent)!r} is a file, not a folder")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"{option} {str(path)!r}: folder {str(parent)!r} is not writable")


def _write_csv_atomic(df: pd.DataFrame, path: Path) -> None:
    """Write ``df`` to ``path`` whole or not at all (a temporary file beside it, then ``os.replace``).

    Text cells are written as valid UTF-8 (undecodable file-name bytes as backslash escapes).
    """
    safe = df.copy()
    for col in safe.columns:
        if safe[col].dtype == object:
            safe[col] = [_text(v) if isinstance(v, str) else v for v in safe[col]]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        safe.to_csv(tmp, index=False)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


if __name__ == "__main__":
    sys.exit(main())
