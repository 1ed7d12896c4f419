"""Backgrounds B: where the clean images come from, and how they are split.

A deraining network is trained on pairs ``rainy = clip(background + rain)``. The
study (Gu et al., NeurIPS 2023) varies only the **backgrounds**: how many, and how
complex. Its claim: with many or complex backgrounds the network "slacks off" --
it learns to recognise the simple training rain and subtract it, instead of
learning what a clean image looks like -- so it fails on rain it has not seen.
With few or simple backgrounds it has to model the background and generalises.

This module supplies backgrounds from three kinds of source, all behind one
:class:`Source` interface and :func:`get_source`:

* **Procedural**, on a complexity ladder (:data:`LADDER`, simple to complex)::

      flat      one random colour
      gradient  a smooth linear or radial blend of two colours
      blobs     a few large, smooth Gaussian colour blobs (low frequency only)
      shapes    piecewise-constant rectangles, ellipses, polygons and thick lines,
                random colours, sharp edges, on a gradient
      noise     1/f ("pink") colour noise -- power spectrum ~ f**-2 -- plus shapes
      texture   multi-scale high-frequency texture: 1/f**0.5 noise (power ~ f**-1),
                oriented sinusoidal gratings under soft windows, plus shapes

  Every image is seeded (image ``i`` of seed ``s`` comes from its own
  ``numpy.random.SeedSequence(s, spawn_key=(0, i))``), any size, float32 in [0, 1].
  A calibration run found that smooth-blob backgrounds and 1/f-noise-plus-shapes
  backgrounds give a *very* large difference in what a network learns, so the
  ladder spans the regime the study is about with no download at all.

  *Rain look-alikes.* Rain streaks are thin (1-2 px), bright and near-vertical. To
  keep backgrounds from containing rain, the thick lines in ``shapes``/``noise``/
  ``texture`` are at least :data:`MIN_LINE_WIDTH` = 3 px wide and at least 20 degrees
  away from vertical, rectangles and ellipses are at least 3 px across, and the
  gratings in ``texture`` are soft sinusoids with a period of at least 4 px, not
  isolated lines.

* **Dead leaves** (``"deadleaves"``, :func:`dead_leaves`), the embedded default that
  stands in for natural photographs: opaque coloured discs dropped one in front of the
  other until they cover the frame, with radii drawn from a power law p(r) ~ r**-3
  (:data:`DEADLEAVES`). That size law makes the picture scale invariant, which gives it
  the ~1/f**2 power spectrum of natural images (Lee, Mumford & Huang, IJCV 2001). Each
  disc has its own colour (image palette: a mean colour, luminance and chroma spreads)
  and a faint linear shading, and the image is slightly defocused (a gaussian of
  0.25-0.6 px). Unlimited distinct images, seeded like the ladder: training image ``i``
  of seed ``s`` and the separate test stream are disjoint. It is *not* on the ladder:
  its complexity is that of a photograph, not a rung. Sharp disc edges are arcs, never
  thin bright lines; a sliver between discs can be thin, but is not straight and bright
  the way a streak is.

* **Embedded photographs**: the sample images scikit-image ships inside its wheel
  (:func:`skimage_samples`, source name ``"skimage"``). They load offline and stand
  in for natural photos when no real data folder is configured.

* **Real image sets** from a folder: the categories in :data:`CATEGORIES`
  (``faces``, ``natural``, ``urban``, ``manga``) are sub-folders of ``$DERAIN_DATA``
  (or ``data_dir``; see :func:`derain_utils.data.data_root`), and any folder path works
  as a source too (:class:`ImageFolder`).

**Splitting without leakage** (:func:`draw_split`). Whether an image is a *test*
image depends only on a stable hash of its id (file stem), never on the seed or on
how many training images are drawn: test images are disjoint from every training
draw. Training samples are distinct, non-overlapping grid tiles of the training
images, taken in a seeded order that is *nested*: the first N tiles of a larger
draw are exactly the smaller draw, so "more backgrounds" only ever adds images.
"""
from __future__ import annotations

import abc
import functools
import hashlib
import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch

from .data import data_root

__all__ = [
    "LADDER",
    "PROCEDURAL_KINDS",
    "DEADLEAVES",
    "CATEGORIES",
    "IMAGE_EXTENSIONS",
    "TEST_FRACTION",
    "PROCEDURAL_TEST_SEED",
    "MIN_LINE_WIDTH",
    "SKIMAGE_PHOTOS",
    "SKIMAGE_EXCLUDED",
    "procedural",
    "dead_leaves",
    "power_law_noise",
    "skimage_samples",
    "to_float_rgb",
    "to_gray",
    "MAX_PIXELS",
    "load_image",
    "image_size",
    "Source",
    "ImageFolder",
    "SkimageSource",
    "ProceduralSource",
    "get_source",
    "available_categories",
    "is_test_image",
    "split_ids",
    "BackgroundSplit",
    "draw_split",
    "random_crops",
]

LADDER: tuple[str, ...] = ("flat", "gradient", "blobs", "shapes", "noise", "texture")
"""Procedural background kinds, from the simplest to the most complex."""

PROCEDURAL_KINDS: tuple[str, ...] = (*LADDER, "deadleaves")
"""Every procedural kind: the ladder plus the dead-leaves model (natural-image statistics)."""

DEADLEAVES: dict[str, float | tuple[float, float]] = {
    "alpha": 3.0,  # radius density p(r) ~ r**-alpha; 3 = scale invariant (1/f**2 power spectrum)
    "r_min": 1.0,  # px: the smallest discs are pixel-sized
    "r_max_frac": 0.5,  # the largest radius, as a fraction of the image's short side
    "blur": (0.25, 0.6),  # px: gaussian defocus, one sigma per image
    "tint_sd": 0.08,  # per-channel colour cast of the image's mean colour (a grey level in [0.25, 0.7])
    "lum_sd": (0.06, 0.15),  # spread of disc luminance around the image's mean colour, one value per image
    "chroma_sd": (0.02, 0.05),  # per-channel colour spread, one value per image
    "shade_sd": 0.05,  # sd of each disc's linear shading (change across one radius)
}
"""Parameters of :func:`dead_leaves` (ranges are drawn per image). Calibrated on 2026-12-04 against
300 64 px tiles of the development ``bg_natural`` set: medians of :mod:`derain_utils.complexity` for
300 64 px dead-leaves images vs the tiles: spectral slope -2.31 vs -2.43, mean gradient 0.056 vs
0.053, gradient entropy 4.18 vs 4.09 bits, JPEG 1.95 vs 1.73 bpp, PNG 13.7 vs 15.6 bpp (the JPEG
sources' noise costs PNG bits). A shared-data test keeps slope and gradient close."""

CATEGORIES: dict[str, str] = {
    "faces": "bg_faces_celebahq",
    "natural": "bg_natural",
    "urban": "bg_urban100",
    "manga": "bg_manga109",
}
"""Real background categories -> their folder names under ``$DERAIN_DATA``."""

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
"""File suffixes an :class:`ImageFolder` lists (case-insensitive)."""

TEST_FRACTION: float = 0.25
"""Expected share of a source's images that are test images (per-image hash threshold)."""

PROCEDURAL_TEST_SEED: int = 10**9
"""Entropy of the procedural *test* stream; it also uses spawn key 1 (training uses 0), so the
two streams are disjoint whatever the training seed."""

MIN_LINE_WIDTH: float = 3.0
"""Minimum width (px) of drawn lines and of the short side of drawn shapes: rain streaks are 1-2 px."""

MAX_PIXELS: int = 2**25
"""Largest image, in pixels (H x W), that :func:`load_image` decodes: 33,554,432 px (8192 x 4096; an
8K UHD frame of 7680 x 4320 fits). A larger file is refused, naming it, before any pixel is decoded:
its float32 RGB copy alone would take more than 400 MB, the complexity meter needs about 57 bytes per
pixel (measured on a 4096 x 4096 image: 1.9 GB at this limit), and a small compressed file can declare
a huge size (a "decompression bomb"). Downscale such images first, or pass ``max_pixels`` to
:func:`load_image`."""

_SPLIT_SALT = "derain-split-v1:"

SKIMAGE_PHOTOS: dict[str, tuple[str, str]] = {
    # name: (file bundled in skimage/data, what it shows)
    "astronaut": ("astronaut.png", "colour portrait of astronaut Eileen Collins"),
    "brick": ("brick.png", "gray close-up of a brick wall (texture)"),
    "camera": ("camera.png", "gray 'cameraman' photograph"),
    "chelsea": ("chelsea.png", "colour photo of Chelsea the cat"),
    "clock": ("clock_motion.png", "gray photo of a wall clock, motion blurred"),
    "coffee": ("coffee.png", "colour photo of a cup of coffee"),
    "coins": ("coins.png", "gray photo of Greek coins"),
    "grass": ("grass.png", "gray photo of grass (texture)"),
    "gravel": ("gravel.png", "gray photo of gravel (texture)"),
    "moon": ("moon.png", "gray photo of the lunar surface"),
    "rocket": ("rocket.jpg", "colour photo of a rocket on its launch pad"),
    "stereo_motorcycle": ("motorcycle_left.png", "colour photo of a motorcycle (left view only)"),
}
"""The scikit-image samples used as embedded photographs: name -> (bundled file, content).
A sample is used only if its file ships in the installed scikit-image (checked before
loading, so nothing is ever downloaded). Gray photos are replicated to RGB."""

SKIMAGE_EXCLUDED: dict[str, str] = {
    "cat": "the same image as chelsea",
    "binary_blobs": "synthetic binary pattern",
    "checkerboard": "synthetic pattern",
    "colorwheel": "synthetic colour wheel",
    "horse": "binary silhouette",
    "logo": "graphic (the scikit-image logo) with transparency",
    "shepp_logan_phantom": "synthetic phantom",
    "page": "scanned page of text: document, not a scene",
    "text": "photo of text: near-binary document content",
    "cell": "microscopy",
    "immunohistochemistry": "stained microscopy slide",
    "microaneurysms": "medical (retina detail), 102x102 px",
    "retina": "medical fundus photo, large black border",
    "hubble_deep_field": "astronomy: mostly black sky",
    "lfw_subset": "200 gray 25x25 face crops: too small to tile",
    "stereo_motorcycle (right view)": "near-duplicate of the left view",
    "brain, cells3d, eagle, human_mitosis, kidney, lily, nickel_solidification, palisades_of_vogt, "
    "protein_transport, skin, vortex": "not shipped in the wheel: needs a download",
}
"""scikit-image samples deliberately not used, with the reason."""


# =========================================================================== procedural
def _as_hw(size: int | Sequence[int], name: str = "size") -> tuple[int, int]:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        h = w = int(size)
    elif isinstance(size, (tuple, list)) and len(size) == 2 and all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size
    ):
        h, w = int(size[0]), int(size[1])
    else:
        raise ValueError(f"{name} must be an int or an (H, W) pair of ints, got {size!r}")
    if h < 1 or w < 1:
        raise ValueError(f"{name} must be positive, got {size!r}")
    return h, w


def _check_int(value: object, name: str, minimum: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


@functools.lru_cache(maxsize=32)
def _spectral_filter(h: int, w: int, beta: float) -> np.ndarray:
    """rfft-domain amplitude filter f**(-beta/2) for an (h, w) grid, zero at DC (read-only, cached)."""
    f = np.sqrt(np.fft.fftfreq(h)[:, None] ** 2 + np.fft.rfftfreq(w)[None, :] ** 2)
    f[0, 0] = np.inf  # no DC: the field is zero-mean
    amp = (f ** (-beta / 2.0)).astype(np.float32)
    amp.flags.writeable = False
    return amp


def _spectral_noise(rng: np.random.Generator, channels: int, h: int, w: int, beta: float) -> np.ndarray:
    """(channels, h, w) zero-mean, unit-std noise whose power spectrum falls as f**-beta."""
    import scipy.fft

    white = rng.standard_normal((channels, h, w), dtype=np.float32)
    field = scipy.fft.irfft2(scipy.fft.rfft2(white) * _spectral_filter(h, w, float(beta)), s=(h, w))
    field -= field.mean(axis=(1, 2), keepdims=True, dtype=np.float64).astype(np.float32)
    std = field.std(axis=(1, 2), keepdims=True, dtype=np.float64).astype(np.float32)
    return field / np.where(std > 0, std, np.float32(1.0))


def power_law_noise(size: int | tuple[int, int], beta: float, seed: int, n: int = 1) -> np.ndarray:
    """Gaussian noise fields with power spectrum ``P(f) ~ f**-beta``.

    ``beta = 0`` is white noise, ``beta = 1`` the multi-scale texture of ``texture``,
    ``beta = 2`` the 1/f "pink" noise of natural images used by ``noise`` (amplitude ~ 1/f).

    Returns:
        float32 array (n, H, W), each field zero-mean with unit standard deviation
        (periodic: it tiles seamlessly).
    """
    h, w = _as_hw(size)
    n = _check_int(n, "n", 0)
    _check_int(seed, "seed", 0)
    if not np.isfinite(beta):
        raise ValueError(f"beta must be finite, got {beta!r}")
    out = np.empty((n, h, w), np.float32)
    for i in range(n):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0, i)))
        out[i] = _spectral_noise(rng, 1, h, w, beta)[0]
    return out


class _Canvas:
    """Pixel-centre coordinates of an (h, w) image, shared by the shape rasterisers."""

    def __init__(self, h: int, w: int):
        self.h, self.w = h, w
        self.size = float(min(h, w))
        self.y = (np.arange(h, dtype=np.float32) + 0.5)[:, None]
        self.x = (np.arange(w, dtype=np.float32) + 0.5)[None, :]

    def box(self, cy: float, cx: float, extent: float) -> tuple[slice, slice]:
        """Rows/columns within `extent` px of (cy, cx), clipped to the image (may be empty)."""
        y0, y1 = max(int(np.floor(cy - extent)), 0), min(int(np.ceil(cy + extent)) + 1, self.h)
        x0, x1 = max(int(np.floor(cx - extent)), 0), min(int(np.ceil(cx + extent)) + 1, self.w)
        return slice(y0, max(y0, y1)), slice(x0, max(x0, x1))


def _fit01(img: np.ndarray) -> np.ndarray:
    """Map an image into [0, 1] by one affine map (no clipping, so smooth stays smooth)."""
    lo, hi = min(float(img.min()), 0.0), max(float(img.max()), 1.0)
    return (img - lo) / (hi - lo)


def _gradient(rng: np.random.Generator, cv: _Canvas) -> np.ndarray:
    c0, c1 = rng.uniform(0.0, 1.0, (2, 3)).astype(np.float32)
    if rng.random() < 0.5:  # linear, any direction
        theta = rng.uniform(0.0, 2 * np.pi)
        t = np.float32(np.cos(theta)) * cv.x + np.float32(np.sin(theta)) * cv.y
    else:  # radial, centre possibly outside the frame
        cy, cx = rng.uniform(-0.25, 1.25, 2) * (cv.h, cv.w)
        t = np.hypot(cv.y - np.float32(cy), cv.x - np.float32(cx))
    t = np.broadcast_to(t, (cv.h, cv.w))
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-12)
    return c0 + (c1 - c0) * t[..., None]


def _blobs(rng: np.random.Generator, cv: _Canvas) -> np.ndarray:
    k = int(rng.integers(3, 7))
    base = rng.uniform(0.2, 0.8, 3).astype(np.float32)
    cy = rng.uniform(-0.15, 1.15, k)[:, None, None] * cv.h
    cx = rng.uniform(-0.15, 1.15, k)[:, None, None] * cv.w
    sigma = rng.uniform(0.15, 0.4, k)[:, None, None] * cv.size
    amp = rng.uniform(-0.5, 0.5, (k, 3)).astype(np.float32)
    # separable Gaussians: exp(-(dy^2 + dx^2) / 2s^2) = gy (k, h, 1) * gx (k, 1, w)
    gy = np.exp(-((cv.y[None] - cy) ** 2) / (2 * sigma**2)).astype(np.float32)
    gx = np.exp(-((cv.x[None] - cx) ** 2) / (2 * sigma**2)).astype(np.float32)
    return _fit01(base + np.einsum("kyx,kc->yxc", gy * gx, amp))


def _paint_shapes(rng: np.random.Generator, cv: _Canvas, img: np.ndarray, count: int) -> np.ndarray:
    """Paint `count` opaque, sharp-edged, single-colour shapes onto img (h, w, 3) in place.

    Rectangles and ellipses are at least MIN_LINE_WIDTH px across; lines are at least
    MIN_LINE_WIDTH px wide and at least 20 degrees away from vertical (not rain-like).
    Each shape is rasterised only inside its bounding box.
    """
    from skimage.draw import polygon as _polygon

    img = np.array(img, np.float32)  # writable copy (img may be a broadcast view)
    for _ in range(count):
        kind = rng.choice(4, p=[0.3, 0.3, 0.25, 0.15])  # rect, ellipse, polygon, line
        colour = rng.uniform(0.0, 1.0, 3).astype(np.float32)
        cy, cx = rng.uniform(0.0, 1.0, 2) * (cv.h, cv.w)
        r = rng.uniform(0.06, 0.3) * cv.size
        phi = rng.uniform(0.0, np.pi)
        if kind in (0, 1):
            a = max(r, MIN_LINE_WIDTH / 2)
            b = max(r * rng.uniform(0.3, 1.0), MIN_LINE_WIDTH / 2)
            ys, xs = cv.box(cy, cx, float(np.hypot(a, b)))
            dy, dx = cv.y[ys] - np.float32(cy), cv.x[:, xs] - np.float32(cx)
            c, s = np.float32(np.cos(phi)), np.float32(np.sin(phi))
            u, v = dx * c + dy * s, dy * c - dx * s
            mask = (np.abs(u) <= a) & (np.abs(v) <= b) if kind == 0 else (u / a) ** 2 + (v / b) ** 2 <= 1.0
            img[ys, xs][mask] = colour  # basic slicing is a view: assigns in place
        elif kind == 2:  # star-shaped (simple, possibly non-convex) polygon
            nv = int(rng.integers(3, 8))
            ang = np.sort(rng.uniform(0.0, 2 * np.pi, nv))
            rad = r * rng.uniform(0.5, 1.0, nv)
            rr, cc = _polygon(cy + rad * np.sin(ang) - 0.5, cx + rad * np.cos(ang) - 0.5, shape=(cv.h, cv.w))
            img[rr, cc] = colour
        else:  # thick segment
            theta = np.deg2rad(rng.uniform(-70.0, 70.0))  # angle from horizontal
            ux, uy = np.float32(np.cos(theta)), np.float32(np.sin(theta))
            half_len = rng.uniform(0.25, 0.75) * cv.size
            width = rng.uniform(MIN_LINE_WIDTH, max(MIN_LINE_WIDTH, 0.06 * cv.size))
            ys, xs = cv.box(cy, cx, half_len + width)
            dy, dx = cv.y[ys] - np.float32(cy), cv.x[:, xs] - np.float32(cx)
            t = np.clip(dx * ux + dy * uy, -half_len, half_len)
            mask = np.hypot(dx - t * ux, dy - t * uy) <= width / 2
            img[ys, xs][mask] = colour
    return img


def _colour_noise(rng: np.random.Generator, cv: _Canvas, beta: float, sigma_lum: float, sigma_chroma: float):
    """Luminance-dominated colour noise: a shared field plus weaker per-channel fields (h, w, 3)."""
    f = _spectral_noise(rng, 4, cv.h, cv.w, beta)
    return sigma_lum * f[0][..., None] + sigma_chroma * np.moveaxis(f[1:], 0, -1)


def _gratings(rng: np.random.Generator, cv: _Canvas, count: int) -> np.ndarray:
    """Sum of `count` oriented sinusoidal gratings under soft Gaussian windows (h, w, 3).

    Period 4-16 px (soft sinusoids, not isolated thin lines), any orientation, random
    colour amplitude 0.025-0.15 per channel. Computed separably: window * sin(a x + b y)
    = (gy cos b y)(gx sin a x) + (gy sin b y)(gx cos a x), two rank-1 products per grating.
    """
    period = rng.uniform(4.0, 16.0, count)[:, None]
    theta = rng.uniform(0.0, np.pi, count)[:, None]
    phase = rng.uniform(0.0, 2 * np.pi, count)[:, None]
    amp = (rng.uniform(0.05, 0.15, (count, 1)) * rng.choice([-1.0, 1.0], (count, 3))
           * rng.uniform(0.5, 1.0, (count, 3))).astype(np.float32)
    cy = rng.uniform(0.0, 1.0, count)[:, None] * cv.h
    cx = rng.uniform(0.0, 1.0, count)[:, None] * cv.w
    sw = rng.uniform(0.25, 0.6, count)[:, None] * cv.size
    y, x = cv.y[:, 0][None].astype(np.float64), cv.x[0][None].astype(np.float64)
    gy, gx = np.exp(-((y - cy) ** 2) / (2 * sw**2)), np.exp(-((x - cx) ** 2) / (2 * sw**2))
    ay = 2 * np.pi * y * np.sin(theta) / period + phase  # (count, h)
    ax = 2 * np.pi * x * np.cos(theta) / period  # (count, w)
    rows = np.stack([gy * np.cos(ay), gy * np.sin(ay)], 1).astype(np.float32)  # (count, 2, h)
    cols = np.stack([gx * np.sin(ax), gx * np.cos(ax)], 1).astype(np.float32)  # (count, 2, w)
    return np.einsum("kty,ktx,kc->yxc", rows, cols, amp, optimize=True)


def _cover_discs(label: np.ndarray, start: int, cy: np.ndarray, cx: np.ndarray, r: np.ndarray, h: int,
                 w: int) -> None:
    """``label[p] = min(label[p], start + k)`` for every pixel p whose centre lies in disc k (in place).

    Vectorised over discs: the pixels of every disc's bounding box are enumerated at once
    (np.repeat), tested against the disc, and the smallest (front-most) index per pixel is
    kept with ``np.minimum.at``. Work is the total bounding-box area, about 1.3x the disc area.
    """
    y0 = np.clip(np.floor(cy - r), 0, h).astype(np.int64)
    y1 = np.clip(np.ceil(cy + r) + 1, 0, h).astype(np.int64)
    x0 = np.clip(np.floor(cx - r), 0, w).astype(np.int64)
    x1 = np.clip(np.ceil(cx + r) + 1, 0, w).astype(np.int64)
    bh, bw = np.maximum(y1 - y0, 0), np.maximum(x1 - x0, 0)
    count = bh * bw
    k = np.repeat(np.arange(r.size), count)
    off = np.arange(k.size) - np.repeat(np.cumsum(count) - count, count)
    yy, xx = y0[k] + off // bw[k], x0[k] + off % bw[k]
    inside = (yy + 0.5 - cy[k]) ** 2 + (xx + 0.5 - cx[k]) ** 2 <= r[k] ** 2
    np.minimum.at(label, yy[inside] * w + xx[inside], start + k[inside])


def _dead_leaves(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """One dead-leaves image (h, w, 3), float32, not yet clipped (see :func:`dead_leaves`)."""
    from scipy import ndimage

    p = DEADLEAVES
    alpha, r_min = float(p["alpha"]), float(p["r_min"])
    r_max = max(2.0 * r_min, float(p["r_max_frac"]) * min(h, w))
    mean = rng.uniform(0.25, 0.7) + rng.normal(0.0, float(p["tint_sd"]), 3)  # a grey level with a colour cast
    lum_sd, chroma_sd = rng.uniform(*p["lum_sd"]), rng.uniform(*p["chroma_sd"])
    blur = rng.uniform(*p["blur"])
    a = 1.0 - alpha  # inverse-CDF exponent (alpha != 1)

    def moment(e: float) -> float:  # integral of r**e over [r_min, r_max]
        return math.log(r_max / r_min) if e == -1 else (r_max ** (e + 1) - r_min ** (e + 1)) / (e + 1)

    # mean disc area of the truncated power law: enough discs per round to cover the frame ~4 times
    mean_area = math.pi * moment(2.0 - alpha) / moment(-alpha)
    n_round = int(np.ceil(4.0 * h * w / mean_area)) + 16
    empty = np.iinfo(np.int64).max
    label = np.full(h * w, empty, np.int64)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    total = 0
    while True:  # front to back: each round's discs lie behind all earlier ones
        r = (r_min ** a + rng.random(n_round) * (r_max ** a - r_min ** a)) ** (1.0 / a)
        # discs are a Poisson process on the plane: keep those that reach the frame, i.e. weight r by
        # the area (h + 2r)(w + 2r) of centres that do, then place the centre uniformly in it
        r = r[rng.random(n_round) < (h + 2 * r) * (w + 2 * r) / ((h + 2 * r_max) * (w + 2 * r_max))]
        cy, cx = rng.random(r.size) * (h + 2 * r) - r, rng.random(r.size) * (w + 2 * r) - r
        todo = np.flatnonzero(label == empty)
        if todo.size * r.size > float(np.sum((2 * r + 2) ** 2)):
            _cover_discs(label, total, cy, cx, r, h, w)
        else:  # the few pixels still uncovered against every new disc: cheaper than the discs' boxes
            py, px = todo // w + 0.5, todo % w + 0.5
            hit = (py[None] - cy[:, None]) ** 2 + (px[None] - cx[:, None]) ** 2 <= (r * r)[:, None]
            got = hit.any(0)
            label[todo[got]] = total + hit.argmax(0)[got]
        parts.append((cy, cx, r))
        total += r.size
        if not (label == empty).any():
            break
    cy, cx, r = (np.concatenate(v) for v in zip(*parts))
    colour = mean + rng.normal(0.0, lum_sd, (total, 1)) + rng.normal(0.0, chroma_sd, (total, 3))
    phi = rng.uniform(0.0, 2 * np.pi, total)
    shade = rng.normal(0.0, float(p["shade_sd"]), total)
    yy, xx = np.divmod(np.arange(h * w), w)
    t = ((xx + 0.5 - cx[label]) * np.cos(phi[label]) + (yy + 0.5 - cy[label]) * np.sin(phi[label])) / r[label]
    img = (colour[label] + (shade[label] * t)[:, None]).reshape(h, w, 3).astype(np.float32)
    return ndimage.gaussian_filter(img, (blur, blur, 0.0), mode="reflect")


def _render(kind: str, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    cv = _Canvas(h, w)
    if kind == "deadleaves":
        return _dead_leaves(rng, h, w)
    if kind == "flat":
        img = np.broadcast_to(rng.uniform(0.0, 1.0, 3).astype(np.float32), (h, w, 3))
    elif kind == "gradient":
        img = _gradient(rng, cv)
    elif kind == "blobs":
        img = _blobs(rng, cv)
    elif kind == "shapes":
        img = _paint_shapes(rng, cv, _gradient(rng, cv), int(rng.integers(6, 14)))
    elif kind == "noise":
        img = rng.uniform(0.3, 0.7, 3).astype(np.float32) + _colour_noise(rng, cv, 2.0, rng.uniform(0.1, 0.2), 0.04)
        img = _paint_shapes(rng, cv, img, int(rng.integers(3, 9)))
        img = _fit01(img + _colour_noise(rng, cv, 2.0, 0.06, 0.02))  # texture inside the shapes too
    elif kind == "texture":
        img = rng.uniform(0.3, 0.7, 3).astype(np.float32) + _colour_noise(rng, cv, 1.0, rng.uniform(0.1, 0.16), 0.04)
        img = img + _gratings(rng, cv, int(rng.integers(2, 5)))
        img = _paint_shapes(rng, cv, img, int(rng.integers(4, 11)))
        img = img + _colour_noise(rng, cv, 1.0, 0.07, 0.02) + _gratings(rng, cv, 1)
        img = _fit01(img)
    else:
        raise ValueError(f"kind={kind!r} is not a procedural kind; valid: {list(PROCEDURAL_KINDS)}")
    return np.asarray(img, np.float32)


def _procedural_stream(kind: str, size: int | tuple[int, int], seed: int, start: int, n: int, stream: int):
    h, w = _as_hw(size)
    out = np.empty((n, h, w, 3), np.float32)
    for j in range(n):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, start + j)))
        out[j] = _render(kind, rng, h, w)
    return np.clip(out, 0.0, 1.0, out=out)


def procedural(kind: str, size: int | tuple[int, int], seed: int, n: int = 1) -> np.ndarray:
    """Procedural backgrounds of a given complexity (see :data:`LADDER` and the module docstring).

    Args:
        kind: one of :data:`PROCEDURAL_KINDS` (the :data:`LADDER` or ``"deadleaves"``).
        size: side in px, or ``(H, W)``.
        seed: non-negative int. Image ``i`` depends only on ``(kind, size, seed, i)``, so
            ``procedural(k, s, seed, n)[:m] == procedural(k, s, seed, m)``.
        n: number of images.

    Returns:
        float32 array (n, H, W, 3), values in [0, 1].

    A Python loop runs over the images (each has its own seed stream, which is what
    makes draws nest); all pixel work inside is vectorised numpy (about 0.1-3 ms per
    64x64 image on one CPU core, simplest to most complex kind).
    """
    if kind not in PROCEDURAL_KINDS:
        raise ValueError(f"kind={kind!r} is not a procedural kind; valid: {list(PROCEDURAL_KINDS)}")
    _check_int(seed, "seed", 0)
    return _procedural_stream(kind, size, int(seed), 0, _check_int(n, "n", 0), stream=0)


def dead_leaves(size: int | tuple[int, int], seed: int, n: int = 1) -> np.ndarray:
    """Dead-leaves images with natural-image statistics: ``procedural("deadleaves", size, seed, n)``.

    Discs are dropped front to back (each new disc lies behind all earlier ones) until every
    pixel is covered; radii follow p(r) ~ r**-3 between 1 px and half the short side
    (:data:`DEADLEAVES`), centres a uniform Poisson process over the plane (only discs that
    reach the frame are drawn). Rendering is vectorised over discs (the last uncovered pixels
    are tested against each new disc instead): about 4 ms per 64 x 64 image, 9 ms per 128 x 128
    and 50 ms per 256 x 256 on one core of a busy 2-core machine (README, "The embedded default").

    Returns:
        float32 (n, H, W, 3) in [0, 1]; image ``i`` depends only on ``(size, seed, i)``.
    """
    return procedural("deadleaves", size, seed, n)


# =========================================================================== images
def _check_float_range(x: np.ndarray) -> np.ndarray:
    """The one rule for float images (arrays and float files alike): every value finite and in [0, 1].

    Values within 1e-6 of the range (float rounding) are clipped into it. Anything else -- NaN or
    infinite values, or another scale such as 0..255 or 0..1000 -- is refused with the range found:
    clipping would turn a 0..1000 image white and NaN black, silently. Rescale it first
    (e.g. ``x / x.max()``) or store it as 8- or 16-bit.
    """
    if not x.size:
        return x
    finite = np.isfinite(x)
    if not finite.all():
        bad = int((~finite).sum())
        what = "all of its" if bad == x.size else f"{bad} of its {x.size}"
        raise ValueError(f"float image has NaN or infinite values in {what} values; expected floats in [0, 1]")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ValueError(f"float image has values in [{lo:.6g}, {hi:.6g}], outside [0, 1]; rescale it to [0, 1] "
                         "(e.g. divide by its maximum) or store it as an 8- or 16-bit image")
    return np.clip(x, 0.0, 1.0)


def to_float_rgb(arr: np.ndarray) -> np.ndarray:
    """Convert a numpy image to float32 RGB (H, W, 3) in [0, 1].

    Accepts bool, uint8 (/255), uint16 (/65535) or float in [0, 1] (finite; anything else raises
    ValueError, see :func:`_check_float_range`: never clipped silently); shapes (H, W) and
    (H, W, 1) (gray, replicated), (H, W, 2) (gray + alpha), (H, W, 3) and (H, W, 4)
    (RGBA). Alpha is **composited over white**: ``rgb * a + (1 - a)``, so fully
    transparent pixels become white rather than whatever colour they happen to store.
    """
    a = np.asarray(arr)
    if a.dtype == bool:
        x = a.astype(np.float32)
    elif a.dtype in (np.uint8, np.uint16):
        x = a.astype(np.float32) / np.iinfo(a.dtype).max
    elif np.issubdtype(a.dtype, np.floating):
        x = _check_float_range(a.astype(np.float32))
    else:
        raise ValueError(f"image dtype {a.dtype} is not supported (use bool, uint8, uint16 or float in [0, 1])")
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3 or x.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(f"image shape {a.shape} is not (H, W) or (H, W, C) with C in 1..4")
    if x.shape[-1] in (2, 4):
        alpha = x[..., -1:]
        x = x[..., :-1] * alpha + (1.0 - alpha)
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return np.ascontiguousarray(x, dtype=np.float32)


def to_gray(images: np.ndarray) -> np.ndarray:
    """BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` of RGB images (..., 3) -> (..., 1), float32.

    This is plain luma on [0, 1] values (for training gray models), not the offset
    MATLAB ``rgb2ycbcr`` Y used for PSNR tables (see ``derain_utils.metrics.rgb_to_y``).
    """
    images = np.asarray(images)
    if images.shape[-1:] != (3,):
        raise ValueError(f"images must have 3 channels last, got shape {images.shape}")
    w = np.array([0.299, 0.587, 0.114], np.float32)
    return np.ascontiguousarray((images.astype(np.float32) @ w)[..., None])


def _pil_to_float_rgb(im) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return to_float_rgb(np.asarray(im).astype(np.uint16))
    if mode == "I":  # 32-bit int: Pillow's mode for some 16-bit files; read as 16-bit
        a = np.asarray(im)
        if a.size and (int(a.min()) < 0 or int(a.max()) > 65535):
            raise ValueError(f"32-bit integer image has values in [{int(a.min())}, {int(a.max())}], outside the "
                             "16-bit range [0, 65535]; store it as an 8- or 16-bit image")
        return to_float_rgb(a.astype(np.uint16))
    if mode == "F":  # 32-bit float (TIFF): the same rule as float arrays, no clipping
        return to_float_rgb(np.asarray(im, np.float32))
    if mode == "1":
        return to_float_rgb(np.asarray(im.convert("L")))
    if mode == "P" or mode == "PA":
        im = im.convert("RGBA" if ("transparency" in im.info or mode == "PA") else "RGB")
    elif mode == "La":
        im = im.convert("LA")
    elif mode == "RGBa":
        im = im.convert("RGBA")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        im = im.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX, ...
    return to_float_rgb(np.asarray(im))


def _check_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"image file {str(p)!r} does not exist")
    if p.is_dir():
        raise ValueError(f"image path {str(p)!r} is a folder, not an image file")
    return p


def _too_large(p: Path, im, limit: int) -> str | None:
    """Why an opened (not yet decoded) image is refused: more than ``limit`` pixels; None when it is not."""
    w, h = im.size
    if w * h <= limit:
        return None
    return (f"image file {str(p)!r} is {w}x{h} px ({w * h / 1e6:.1f} Mpx), more than the {limit / 1e6:.1f} Mpx "
            "that are decoded (backgrounds.MAX_PIXELS, or max_pixels); downscale it first")


def _bomb_message(p: Path, err: Exception) -> str:
    return (f"image file {str(p)!r} declares more pixels than Pillow will decode (a possible decompression "
            f"bomb; backgrounds.MAX_PIXELS is {MAX_PIXELS / 1e6:.1f} Mpx): {err}")


def load_image(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file (PNG, JPEG, TIFF, BMP, ... via Pillow) as float32 RGB (H, W, 3) in [0, 1].

    Conversions: gray (``L``, ``1``) is replicated to RGB; 16-bit gray (``I;16``) is
    divided by 65535; palette images are expanded; alpha (``LA``, ``RGBA``, palette
    transparency) is composited over white; CMYK/YCbCr/LAB are converted by Pillow.
    The EXIF orientation tag is applied, as an image viewer would. Multi-frame
    files give their first frame. Pillow reads 16-bit *colour* PNGs at 8-bit
    precision (a Pillow limitation; <0.4% of the range, irrelevant for backgrounds).

    Float files (TIFF mode ``F``) follow the rule for float arrays (:func:`to_float_rgb`): values
    must be finite and in [0, 1]; they are never clipped. Files larger than ``max_pixels``
    (default :data:`MAX_PIXELS`) are refused from their header, before decoding.

    Raises:
        FileNotFoundError: the file does not exist (names it).
        ValueError: the file is a folder, is not a readable image, is too large, or holds float
            values outside [0, 1] (names it).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    limit = MAX_PIXELS if max_pixels is None else _check_int(max_pixels, "max_pixels", 1)
    p = _check_file(path)
    try:
        with Image.open(p) as im:
            refused = _too_large(p, im, limit)
            if refused is None:
                im.load()
                im = ImageOps.exif_transpose(im)
    except Image.DecompressionBombError as err:
        raise ValueError(_bomb_message(p, err)) from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"cannot read image file {str(p)!r}: {err}") from err
    if refused is not None:
        raise ValueError(refused)
    try:
        return _pil_to_float_rgb(im)
    except ValueError as err:
        raise ValueError(f"image file {str(p)!r}: {err}") from err


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(H, W) of an image file from its header (no decoding), after EXIF orientation."""
    from PIL import Image, UnidentifiedImageError

    p = _check_file(path)
    try:
        with Image.open(p) as im:
            w, h = im.size
            if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # rotated by 90 degrees
                w, h = h, w
    except Image.DecompressionBombError as err:
        raise ValueError(_bomb_message(p, err)) from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"cannot read image file {str(p)!r}: {err}") from err
    return int(h), int(w)


# The non-photographic samples that ship in the wheel (used only with photographic_only=False);
# None = generated by code, no file needed.
_SKIMAGE_OTHER_FILES: dict[str, str | None] = {
    "binary_blobs": None, "checkerboard": None, "colorwheel": None, "horse": "horse.png", "logo": "logo.png",
    "shepp_logan_phantom": "phantom.png", "page": "page.png", "text": "text.png", "cell": "cell.png",
    "immunohistochemistry": "ihc.png", "microaneurysms": "microaneurysms.png", "retina": "retina.jpg",
    "hubble_deep_field": "hubble_deep_field.jpg",
}


@functools.lru_cache(maxsize=2)
def _skimage_cache(photographic_only: bool) -> tuple[tuple[str, np.ndarray], ...]:
    import skimage.data

    bundled = Path(skimage.data.__file__).parent
    files: dict[str, str | None] = {k: v[0] for k, v in SKIMAGE_PHOTOS.items()}
    if not photographic_only:
        files.update(_SKIMAGE_OTHER_FILES)
    out = []
    for name, fname in files.items():
        if fname is not None and not (bundled / fname).is_file():
            continue  # not in the wheel: it would need a download, so skip it and never touch the network
        try:
            img = getattr(skimage.data, name)()
        except Exception:  # noqa: BLE001 - any failure (download needed, missing codec) means "not offline"
            continue
        if isinstance(img, tuple):  # stereo_motorcycle -> (left, right, disparity)
            img = img[0]
        arr = to_float_rgb(img)
        arr.flags.writeable = False  # shared by the cache
        out.append((name, arr))
    return tuple(out)


def skimage_samples(photographic_only: bool = True) -> list[tuple[str, np.ndarray]]:
    """The sample images scikit-image ships in its wheel, as (name, float32 RGB (H, W, 3)) pairs.

    By default only the photographs in :data:`SKIMAGE_PHOTOS` (scenes, objects, texture
    photos); :data:`SKIMAGE_EXCLUDED` lists what is left out and why. Samples that would
    need a download are skipped before anything is fetched, so this works offline and
    gives the same list on every machine with the same scikit-image. Loaded once per
    process (cached); the arrays are read-only -- copy before modifying.
    """
    return list(_skimage_cache(bool(photographic_only)))


# =========================================================================== sources
class Source(abc.ABC):
    """A named collection of background images.

    ``ids()`` lists image ids (``None`` for procedural, unbounded sources);
    ``load(id)`` returns float32 RGB (H, W, 3) in [0, 1]; ``size(id)`` returns (H, W),
    cheaply where possible.
    """

    name: str

    @abc.abstractmethod
    def ids(self) -> list[str] | None: ...

    @abc.abstractmethod
    def load(self, id: str) -> np.ndarray: ...

    def size(self, id: str) -> tuple[int, int]:
        h, w = self.load(id).shape[:2]
        return int(h), int(w)

    def __repr__(self) -> str:
        ids = self.ids()
        return f"{type(self).__name__}(name={self.name!r}, images={'unbounded' if ids is None else len(ids)})"


def _safe_name(name: str) -> str:
    """A file name as valid UTF-8 text: bytes that are not UTF-8 (which Python keeps as lone
    surrogates, ``'caf\\udce9.png'``) become backslash escapes (``'caf\\\\xe9.png'``), so ids can be
    hashed and written to CSV and JSON. Valid names are returned unchanged."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class ImageFolder(Source):
    """The images directly inside a folder (not recursive), sorted by file name.

    Files with a suffix in :data:`IMAGE_EXTENSIONS` (any case) are listed; other files
    (``PROVENANCE.md``, hidden files) are ignored. Ids are the file names (a name that is not
    valid UTF-8 gets its odd bytes as backslash escapes, e.g. ``caf\\xe9.png``).

    Args:
        root: the folder.
        min_size: if given, every image must be at least ``min_size`` px on both sides
            (checked from the file headers at construction).
        on_small: ``"error"`` raises ValueError naming the first small file and its size;
            ``"skip"`` drops small files with a warning.
        name: source name (default: the folder's name).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        min_size: int | None = None,
        on_small: Literal["error", "skip"] = "error",
        name: str | None = None,
    ):
        self.root = Path(root).expanduser()
        if not self.root.exists():
            raise FileNotFoundError(f"image folder {str(self.root)!r} does not exist")
        if not self.root.is_dir():
            raise ValueError(f"image folder {str(self.root)!r} is not a folder")
        if on_small not in ("error", "skip"):
            raise ValueError(f"on_small must be 'error' or 'skip', got {on_small!r}")
        if min_size is not None:
            _check_int(min_size, "min_size", 1)
        paths = sorted(
            (p for p in self.root.iterdir()
             if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS),
            key=lambda p: p.name,
        )
        if not paths:
            raise ValueError(f"image folder {str(self.root)!r} holds no images with suffix in {list(IMAGE_EXTENSIONS)}")
        self._sizes: dict[str, tuple[int, int]] = {}
        if min_size is not None:
            kept = []
            for p in paths:
                h, w = self._sizes[p.name] = image_size(p)
                if min(h, w) >= min_size:
                    kept.append(p)
                elif on_small == "error":
                    raise ValueError(f"image {str(p)!r} is {h}x{w} (HxW), smaller than min_size={min_size}")
                else:
                    warnings.warn(f"skipping image {str(p)!r}: {h}x{w} (HxW) is smaller than min_size={min_size}",
                                  stacklevel=2)
            if not kept:
                raise ValueError(f"image folder {str(self.root)!r}: no image is at least min_size={min_size} px")
            paths = kept
        self.paths: list[Path] = paths
        self.names: list[str] = [_safe_name(p.name) for p in paths]
        self._by_name = dict(zip(self.names, self.paths))
        if len(self._by_name) != len(self.paths):  # a literal backslash name beside its undecodable twin
            raise ValueError(f"image folder {str(self.root)!r}: two file names give the same id {self.names}")
        self.name = name if name is not None else self.root.name

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        return load_image(self.paths[i])

    def _path(self, id: str) -> Path:
        try:
            return self._by_name[id]
        except KeyError:
            raise ValueError(f"id={id!r} is not an image in folder {str(self.root)!r}") from None

    def ids(self) -> list[str]:
        return list(self.names)

    def load(self, id: str) -> np.ndarray:
        return load_image(self._path(id))

    def size(self, id: str) -> tuple[int, int]:
        if id not in self._sizes:
            self._sizes[id] = image_size(self._path(id))
        return self._sizes[id]


class SkimageSource(Source):
    """The embedded scikit-image photographs (:func:`skimage_samples`); ids are sample names."""

    name = "skimage"

    def __init__(self) -> None:
        self._images = dict(skimage_samples())

    def ids(self) -> list[str]:
        return sorted(self._images)

    def load(self, id: str) -> np.ndarray:
        if id not in self._images:
            raise ValueError(f"id={id!r} is not an embedded scikit-image photo; valid: {self.ids()}")
        return self._images[id].copy()

    def size(self, id: str) -> tuple[int, int]:
        h, w = self._images[id].shape[:2] if id in self._images else self.load(id).shape[:2]
        return int(h), int(w)


class ProceduralSource(Source):
    """Procedural backgrounds of one :data:`PROCEDURAL_KINDS` kind (unbounded: ``ids()`` is None).

    Ids name the seed stream: ``"<kind>:s<seed>:<i>"`` is training image ``i`` of
    ``seed`` (``procedural(kind, size, seed, i + 1)[i]``); ``"<kind>:test:<j>"`` is test
    image ``j`` (the seed-independent test stream). ``load`` renders at ``self.size``.
    """

    _ID = re.compile(r"^(?P<kind>\w+):(?:s(?P<seed>\d+)|(?P<test>test)):(?P<i>\d+)$")

    def __init__(self, kind: str, size: int | tuple[int, int] = 256):
        if kind not in PROCEDURAL_KINDS:
            raise ValueError(f"kind={kind!r} is not a procedural kind; valid: {list(PROCEDURAL_KINDS)}")
        self.name = kind
        self.kind = kind
        self.shape = _as_hw(size)

    def ids(self) -> None:
        return None

    def train_images(self, n: int, size: int | tuple[int, int], seed: int) -> tuple[np.ndarray, list[str]]:
        return procedural(self.kind, size, seed, n), [f"{self.kind}:s{seed}:{i}" for i in range(n)]

    def test_images(self, n: int, size: int | tuple[int, int]) -> tuple[np.ndarray, list[str]]:
        imgs = _procedural_stream(self.kind, size, PROCEDURAL_TEST_SEED, 0, n, stream=1)
        return imgs, [f"{self.kind}:test:{j}" for j in range(n)]

    def load(self, id: str) -> np.ndarray:
        m = self._ID.match(id)
        if m is None or m["kind"] != self.kind:
            raise ValueError(
                f"id={id!r} is not a {self.kind!r} id ('{self.kind}:s<seed>:<i>' or '{self.kind}:test:<j>')"
            )
        seed, stream = (PROCEDURAL_TEST_SEED, 1) if m["test"] else (int(m["seed"]), 0)
        return _procedural_stream(self.kind, self.shape, seed, int(m["i"]), 1, stream)[0]

    def size(self, id: str) -> tuple[int, int]:
        return self.shape


def _category_hint() -> str:
    return (f"pass data_dir=... or set the environment variable DERAIN_DATA to the folder that holds "
            f"{sorted(CATEGORIES.values())} (in development: export DERAIN_DATA=../shared/data); offline "
            f"alternatives: 'deadleaves', 'skimage' or a procedural kind {list(LADDER)}")


def get_source(name: str | os.PathLike | Source, data_dir: str | os.PathLike | None = None) -> Source:
    """Resolve a background source by name.

    * ``"faces"``, ``"natural"``, ``"urban"``, ``"manga"`` (or their folder names in
      :data:`CATEGORIES`) -> :class:`ImageFolder` of ``<data_dir or $DERAIN_DATA>/<folder>``;
    * ``"skimage"`` -> the embedded photographs;
    * a :data:`PROCEDURAL_KINDS` name (the ladder, or ``"deadleaves"``) -> :class:`ProceduralSource`;
    * an existing folder path -> :class:`ImageFolder`;
    * a :class:`Source` is returned unchanged.

    Raises:
        ValueError: unknown name (lists the valid ones), or a category with no data
            root configured (says how to set one).
        FileNotFoundError: the configured data root, or the category's folder in it, is missing.
    """
    if isinstance(name, Source):
        return name
    if not isinstance(name, (str, os.PathLike)):
        raise ValueError(f"source must be a name, a folder path or a Source, got {type(name).__name__}")
    key = os.fspath(name)
    by_folder = {v: k for k, v in CATEGORIES.items()}
    if key in CATEGORIES or key in by_folder:
        category = key if key in CATEGORIES else by_folder[key]
        root = data_root(data_dir)
        if root is None:
            raise ValueError(f"source {category!r} needs the real image sets: {_category_hint()}")
        folder = root / CATEGORIES[category]
        if not folder.is_dir():
            raise FileNotFoundError(
                f"source {category!r}: folder {str(folder)!r} not found in the data root {str(root)!r} "
                f"(from data_dir / DERAIN_DATA); categories present there: {available_categories(root)}"
            )
        return ImageFolder(folder, name=category)
    if key == "skimage":
        return SkimageSource()
    if key in PROCEDURAL_KINDS:
        return ProceduralSource(key)
    if Path(key).expanduser().is_dir():
        return ImageFolder(key)
    raise ValueError(
        f"source={key!r} is not a category {list(CATEGORIES)}, 'skimage', a procedural kind "
        f"{list(PROCEDURAL_KINDS)}, "
        f"or an existing folder"
    )


def available_categories(data_dir: str | os.PathLike | None = None) -> list[str]:
    """The categories whose folder exists under the data root and holds at least one image ([] if none is set)."""
    root = data_root(data_dir)
    if root is None:
        return []
    out = []
    for category, folder in CATEGORIES.items():
        d = root / folder
        if d.is_dir() and any(p.suffix.lower() in IMAGE_EXTENSIONS for p in d.iterdir() if p.is_file()):
            out.append(category)
    return out


# =========================================================================== split
def _unit_hash(key: str) -> float:
    """Stable hash of a string to [0, 1) (sha1; identical on every machine and Python)."""
    # surrogateescape: a key holding undecodable file-name bytes hashes those bytes (valid text is unchanged)
    return int.from_bytes(hashlib.sha1(key.encode("utf-8", "surrogateescape")).digest()[:8], "big") / 2.0**64


def is_test_image(image_id: str) -> bool:
    """Whether an image id falls in the fixed test split: ``sha1(salt + stem) < TEST_FRACTION``.

    Only the file *stem* counts, so ``foo.jpg`` (a downscaled copy) and ``foo.png`` (the
    fetched original) land on the same side, and adding images never moves existing ones.
    """
    return _unit_hash(_SPLIT_SALT + Path(image_id).stem) < TEST_FRACTION


def split_ids(ids: Sequence[str], source: str | None = None) -> tuple[list[str], list[str]]:
    """Fixed (train, test) image ids, each sorted; independent of any seed.

    Per image by :func:`is_test_image`. At least one image goes to each side: if the
    hash puts none in test, the id with the smallest hash moves to test (and
    symmetrically for train), which needs at least 2 images.
    """
    ids = sorted(set(ids))
    if len(ids) < 2:
        where = f" in source {source!r}" if source else ""
        raise ValueError(f"a train/test split needs at least 2 images, got {len(ids)}{where}")
    test = [i for i in ids if is_test_image(i)]
    train = [i for i in ids if not is_test_image(i)]
    key = lambda i: _unit_hash(_SPLIT_SALT + Path(i).stem)  # noqa: E731
    if not test:
        test = [min(train, key=key)]
        train.remove(test[0])
    elif not train:
        train = [max(test, key=key)]
        test.remove(train[0])
    return train, test


def _grid(h: int, w: int, size: int) -> list[tuple[int, int]]:
    """Top-left corners of the non-overlapping size x size grid, centred in an h x w image."""
    rows, cols = h // size, w // size
    oy, ox = (h - rows * size) // 2, (w - cols * size) // 2
    return [(oy + r * size, ox + c * size) for r in range(rows) for c in range(cols)]


def _test_crops(h: int, w: int, size: int) -> list[tuple[int, int]]:
    """Centre crop first, then the grid crops that do not overlap it (raster order)."""
    if h < size or w < size:
        return []
    cy, cx = (h - size) // 2, (w - size) // 2
    rest = [(y, x) for y, x in _grid(h, w, size) if abs(y - cy) >= size or abs(x - cx) >= size]
    return [(cy, cx)] + rest


@dataclass(eq=False, repr=False)
class BackgroundSplit:
    """Training tiles and test crops drawn from one source (see :func:`draw_split`).

    Attributes:
        train: float32 (N, tile, tile, C) in [0, 1], C = 3 (RGB) or 1 (gray).
        test: float32 (n_test, test_size, test_size, C).
        train_ids, test_ids: one id per sample, ``"<image id>@<y>,<x>"`` (top-left corner
            of the tile/crop) for image sources, the procedural id otherwise.
        source: the source's name; tile, test_size, seed: as drawn.
    """

    train: np.ndarray
    test: np.ndarray
    train_ids: list[str]
    test_ids: list[str]
    source: str
    tile: int
    test_size: int
    seed: int

    @staticmethod
    def _tensor(arr: np.ndarray, device: str | torch.device | None) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2))).to(device)

    def train_tensor(self, device: str | torch.device | None = None) -> torch.Tensor:
        """Training tiles as torch float32 (N, C, tile, tile)."""
        return self._tensor(self.train, device)

    def test_tensor(self, device: str | torch.device | None = None) -> torch.Tensor:
        """Test crops as torch float32 (n_test, C, test_size, test_size)."""
        return self._tensor(self.test, device)

    @property
    def channels(self) -> int:
        return int(self.train.shape[-1])

    @property
    def train_images(self) -> list[str]:
        """The distinct source images the training tiles come from."""
        return sorted({i.rsplit("@", 1)[0] for i in self.train_ids})

    @property
    def test_images(self) -> list[str]:
        """The distinct source images the test crops come from."""
        return sorted({i.rsplit("@", 1)[0] for i in self.test_ids})

    def __repr__(self) -> str:
        return (f"BackgroundSplit(source={self.source!r}, train={tuple(self.train.shape)}, "
                f"test={tuple(self.test.shape)}, tile={self.tile}, test_size={self.test_size}, seed={self.seed})")


def draw_split(
    source: str | os.PathLike | Source,
    n_train: int,
    n_test: int,
    *,
    tile: int = 64,
    test_size: int = 64,
    seed: int = 0,
    gray: bool = False,
    data_dir: str | os.PathLike | None = None,
) -> BackgroundSplit:
    """Draw ``n_train`` training tiles and ``n_test`` test crops from a background source.

    Image sources (folders, categories, ``"skimage"``):

    1. The image-level split is fixed by :func:`split_ids` (a stable hash of each image's
       id, about :data:`TEST_FRACTION` test), independent of ``seed`` and ``n_train``:
       test images never appear in any training draw.
    2. Training: the distinct, non-overlapping ``tile`` x ``tile`` grid tiles of the
       training images (grid centred in each image; images smaller than ``tile`` give
       none), ordered by a seeded hash of each tile's id. The first ``n_train`` are
       taken, so draws are **nested**: same seed, larger ``n_train`` = smaller draw plus more.
    3. Test: ``test_size`` crops of the test images, deterministic and seed-independent:
       every test image's centre crop (in id order), then, if more are needed, further
       grid crops that do not overlap the centre crop, one per image per round.

    Procedural sources (a :data:`PROCEDURAL_KINDS` name): training image ``i`` is
    ``procedural(kind, tile, seed, n_train)[i]``, one whole image per tile; test images
    come from a separate stream (:data:`PROCEDURAL_TEST_SEED`, spawn key 1), the same for
    every seed.

    Args:
        source: a name or folder for :func:`get_source`, or a :class:`Source`.
        n_train, n_test: numbers of training tiles and test crops (>= 0).
        tile, test_size: sides in px of training tiles and test crops.
        seed: orders the training tiles (non-negative int).
        gray: return BT.601 luma, (..., 1) channels, instead of RGB.
        data_dir: data root for category names (default ``$DERAIN_DATA``).

    Raises:
        ValueError: bad arguments, or too few tiles / test crops (gives the available
            count and suggests a smaller tile or n).
    """
    n_train = _check_int(n_train, "n_train", 0)
    n_test = _check_int(n_test, "n_test", 0)
    tile = _check_int(tile, "tile", 1)
    test_size = _check_int(test_size, "test_size", 1)
    seed = _check_int(seed, "seed", 0)
    src = get_source(source, data_dir)

    if isinstance(src, ProceduralSource):
        train, train_ids = src.train_images(n_train, tile, seed)
        test, test_ids = src.test_images(n_test, test_size)
    else:
        ids = src.ids()
        if ids is None:
            raise ValueError(f"source {src.name!r} lists no image ids; draw_split needs an image source")
        train_imgs, test_imgs = split_ids(ids, source=getattr(src, 'root', None) and str(src.root) or src.name)
        tiles = [(i, y, x) for i in train_imgs for y, x in _grid(*src.size(i), tile)]
        if n_train > len(tiles):
            raise ValueError(
                f"n_train={n_train} but source {src.name!r} has only {len(tiles)} distinct {tile}x{tile} tiles "
                f"in its {len(train_imgs)} training images; use a smaller tile or n_train"
            )
        tile_id = [f"{i}@{y},{x}" for i, y, x in tiles]
        order = sorted(range(len(tiles)), key=lambda k: _unit_hash(f"tiles:{seed}:{tile_id[k]}"))[:n_train]

        per_image = [[(i, y, x) for y, x in _test_crops(*src.size(i), test_size)] for i in test_imgs]
        rounds = max((len(c) for c in per_image), default=0)
        crops = [c[r] for r in range(rounds) for c in per_image if r < len(c)]
        if n_test > len(crops):
            raise ValueError(
                f"n_test={n_test} but source {src.name!r} has only {len(crops)} non-overlapping "
                f"{test_size}x{test_size} test crops in its {len(test_imgs)} test images; "
                f"use a smaller test_size or n_test"
            )
        crops = crops[:n_test]

        cache: dict[str, np.ndarray] = {}

        def cut(i: str, y: int, x: int, s: int) -> np.ndarray:
            if i not in cache:
                cache[i] = src.load(i)
            return cache[i][y : y + s, x : x + s]

        chosen = [tiles[k] for k in order]
        train = np.stack([cut(i, y, x, tile) for i, y, x in chosen]) if chosen else np.zeros((0, tile, tile, 3))
        train_ids = [tile_id[k] for k in order]
        cache.clear()
        test = np.stack([cut(i, y, x, test_size) for i, y, x in crops]) if crops else np.zeros(
            (0, test_size, test_size, 3))
        test_ids = [f"{i}@{y},{x}" for i, y, x in crops]

    train = np.ascontiguousarray(train, np.float32)
    test = np.ascontiguousarray(test, np.float32)
    if gray:
        train, test = to_gray(train), to_gray(test)
    return BackgroundSplit(train=train, test=test, train_ids=train_ids, test_ids=test_ids, source=src.name,
                           tile=tile, test_size=test_size, seed=seed)


# =========================================================================== crops
def random_crops(images: torch.Tensor, batch: int, patch: int, generator: torch.Generator) -> torch.Tensor:
    """Random ``patch`` x ``patch`` crops with random horizontal/vertical flips, batched.

    Each crop picks an image uniformly, a uniform top-left offset, and flips each axis
    with probability 1/2. One advanced-indexing gather, no Python loop over the batch.
    Random numbers are drawn on the generator's device (then moved), so the result
    depends only on the generator state.

    Args:
        images: float tensor (N, C, H, W).
        batch: number of crops (>= 1).
        patch: crop side in px, <= H and <= W.
        generator: torch.Generator (its state advances).

    Returns:
        (batch, C, patch, patch) tensor on ``images.device``, same dtype.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"images must be a torch tensor (N, C, H, W), got "
                         f"{tuple(images.shape) if hasattr(images, 'shape') else type(images).__name__}")
    n, c, h, w = images.shape
    if n == 0:
        raise ValueError("images is empty (N = 0)")
    batch = _check_int(batch, "batch", 1)
    patch = _check_int(patch, "patch", 1)
    if patch > h or patch > w:
        raise ValueError(f"patch={patch} is larger than the images ({h}x{w}, HxW)")
    gdev = generator.device
    idx = torch.randint(n, (batch,), generator=generator, device=gdev)
    y0 = torch.randint(h - patch + 1, (batch,), generator=generator, device=gdev)
    x0 = torch.randint(w - patch + 1, (batch,), generator=generator, device=gdev)
    flip = torch.randint(2, (batch, 2), generator=generator, device=gdev).bool()
    dev = images.device
    idx, y0, x0, flip = idx.to(dev), y0.to(dev), x0.to(dev), flip.to(dev)
    ar = torch.arange(patch, device=dev)
    rows = y0[:, None] + torch.where(flip[:, :1], patch - 1 - ar, ar)  # vertical flip
    cols = x0[:, None] + torch.where(flip[:, 1:], patch - 1 - ar, ar)  # horizontal flip
    ch = torch.arange(c, device=dev)
    return images[idx[:, None, None, None], ch[None, :, None, None], rows[:, None, :, None], cols[:, None, None, :]]
