"""Procedural backgrounds: a complexity ladder, and dead leaves with the statistics of natural images.

Generated backgrounds need no download and have a controlled complexity. They are served as
sources by :mod:`derain_utils.synth.backgrounds` (:class:`~derain_utils.synth.backgrounds.ProceduralSource`,
any name in :data:`PROCEDURAL_KINDS`).

**The ladder** (:data:`LADDER`), from simple to complex::

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

**Dead leaves** (``"deadleaves"``, :func:`dead_leaves`), the embedded default that
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
"""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

__all__ = ["LADDER", "PROCEDURAL_KINDS", "DEADLEAVES", "MIN_LINE_WIDTH", "procedural", "dead_leaves", "power_law_noise"]


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
300 64 px tiles of the development ``bg_natural`` set: medians of :mod:`derain_utils.measure.complexity` for
300 64 px dead-leaves images vs the tiles: spectral slope -2.31 vs -2.43, mean gradient 0.056 vs
0.053, gradient entropy 4.18 vs 4.09 bits, JPEG 1.95 vs 1.73 bpp, PNG 13.7 vs 15.6 bpp (the JPEG
sources' noise costs PNG bits). A shared-data test keeps slope and gradient close."""


MIN_LINE_WIDTH: float = 3.0
"""Minimum width (px) of drawn lines and of the short side of drawn shapes: rain streaks are 1-2 px."""


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
    and 50 ms per 256 x 256 on one core of a busy 2-core machine (docs/data.md, "The embedded default").

    Returns:
        float32 (n, H, W, 3) in [0, 1]; image ``i`` depends only on ``(size, seed, i)``.
    """
    return procedural("deadleaves", size, seed, n)
