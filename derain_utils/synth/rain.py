"""Synthetic rain: the additive layer ``rain`` R of ``rainy = clip(background + R)``.

Deraining networks are trained on synthetic pairs: a clean ``background`` B plus a rain layer R,
clipped to [0, 1]. Gu et al. (NeurIPS 2023) argue that the network can either *reconstruct the
background* or *recognise the rain*. When the rain in training is simple and the backgrounds are
complex, recognising the rain is the easier shortcut ("slacking off"), and the network then fails on
rain it has not seen. To test that claim we need rain whose **distribution** we control exactly, so
that "seen" (in-distribution) and "unseen" (out-of-distribution, OOD) rain are well defined. This
module provides that.

The idea in three pieces
------------------------
1. :class:`RainSpec` describes a *distribution* of rain, not one layer: closed ranges for the streak
   density, length, width, intensity, a union of angle ranges, and a blur. Every streak draws its
   parameters uniformly from those ranges.
2. :func:`overlaps` / :func:`ood_fields` compare two specs as boxes in parameter space. A test
   preset is OOD for a model trained on ``small`` when its box misses the training box on at least
   one field (density, length, width, angles, intensity). Blur is a fixed value, not a range, and is
   not compared.
3. :func:`synthesize` draws ``n`` rain layers from a spec, batched in torch (no Python loop over
   streaks or images), deterministic for a given seed.

Units and conventions
---------------------
* Lengths and widths are in pixels **at** ``REFERENCE_SIZE = 64``: the presets are calibrated for
  48-64 px training crops. For 128-256 px images use ``spec.scaled(size / 64)`` (or
  :func:`spec_for_size`), which multiplies lengths, widths and blur by the factor and divides the
  density by its square, so the *fraction of the image covered* by rain stays about the same.
* ``density`` is the expected number of streak centres per pixel (a "fraction of pixels that seed a
  streak"): an H x W image holds about ``density * H * W`` streak centres. Each image draws its own
  density uniformly from the range, then its number of streaks by stochastic rounding. Centres are
  uniform over the frame enlarged by a margin, so streaks enter from outside the frame and the
  density is the same at the border as in the middle.
* ``angle`` is in degrees from vertical, **positive = the top of the streak leans right**
  (clockwise from vertical as seen on screen; with image axes x right, y down, the streak's upward
  direction is ``(sin a, -cos a)``). ``angles`` is a union of closed ranges; a streak picks a range
  with probability proportional to its length (degenerate ranges like (30, 30) are chosen evenly if
  all are degenerate), then an angle uniformly inside it.
* ``width`` is continuous, >= 1 px: the renderer cannot draw a streak thinner than a pixel.
* ``intensity`` is the value a pixel *fully covered* by one streak receives (before blur). Streaks
  are rendered by coverage (see below), so a 1-px-wide streak, which straddles pixels, peaks at
  0.5-0.75 x intensity depending on its sub-pixel position, and the blur lowers thin peaks further.
* ``MASK_THRESHOLD = 0.02``: the rain mask is ``M = R > 0.02`` (about 5/255: a change a careful eye
  can see on a flat background; it includes the blurred rim of each streak).

How a layer is rendered (splatting)
-----------------------------------
Each streak is a rectangle (length x width) rotated by its angle; its ends fade linearly over
``min(width, length / 2)`` px, as a drop of that diameter smeared along its path by the exposure
does. The rectangle is sampled on a grid with spacing <= 0.5 px along and across; each sample
carries ``intensity x`` (the area it stands for) and is spread over the 4 nearest pixels with
bilinear weights, all with one ``index_add_`` into a flat ``(n, H, W)`` buffer. A pixel thus
receives ``intensity x`` (the fraction of it the streak covers); overlapping streaks add up (rain
adds light), and the total is clipped to [0, 1]. The layer is then blurred with a separable gaussian
of ``sigma = blur`` px, computed on a canvas that includes the streaks just outside the frame (so no
padding artefacts at the border). Streak parameters are drawn on the CPU from the seed (a few numbers
per streak), so one seed gives the same streaks on every device; on CUDA the additions run as atomics,
so layers match the CPU to float rounding, not bit for bit.

Presets
-------
Role is relative to the training preset ``TRAIN_PRESET = "small"``; "OOD fields" lists the fields
on which a preset's box misses the box of ``small`` (``ood_fields("small", name)``). Ranges are
closed intervals; lengths, widths and blur in px at 64 px; angles in degrees from vertical.

| name | role | density | length | width | angle | intensity | blur | OOD fields vs small |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
| small | train | [0.004, 0.01] | [6, 14] | 1 | [-10, 10] | [0.3, 0.6] | 0.5 | - |
| slanted | OOD test | [0.004, 0.01] | [6, 14] | 1 | [-60, -30] U [30, 60] | [0.3, 0.6] | 0.5 | angles |
| long_wide | OOD test | [0.0015, 0.004] | [16, 30] | [2, 3] | [-60, -30] U [30, 60] | [0.3, 0.6] | 0.5 | length, width, angles |
| dense | OOD test | [0.02, 0.035] | [3, 6] | 2 | [-10, 10] | [0.2, 0.4] | 0.5 | density, width |
| medium | partial overlap | [0.003, 0.008] | [10, 24] | [1, 2] | [-25, 25] | [0.4, 0.7] | 0.5 | - |
| large | OOD test | [0.002, 0.006] | [20, 40] | [2, 3] | [-45, 45] | [0.5, 0.9] | 0.5 | length, width |
| mixed | wide-range train (remedy) | [0.0015, 0.035] | [3, 40] | [1, 3] | [-60, 60] | [0.2, 0.9] | 0.5 | - |

``OOD_PRESETS = ("slanted", "long_wide", "dense")`` are the standard unseen rains; ``mixed`` covers
every other preset (:func:`contains`) and is the "train on a wide range of rain" remedy.
:func:`presets_table` gives the same table as a DataFrame; a test keeps this docstring in sync.

Rain unlike the training rain
-----------------------------
:mod:`derain_utils.synth.perspective` renders a different *kind* of rain (depth, wind, haze) for
out-of-distribution tests; it is NOT real rain.

Example
-------
>>> import torch
>>> from derain_utils import rain
>>> R, M = rain.synthesize("small", size=64, n=8, seed=0)  # (8, 1, 64, 64) float32 and bool
>>> rainy = rain.add_rain(torch.rand(8, 3, 64, 64), R)      # clip(background + R), RGB
>>> rain.ood_fields("small", "slanted"), rain.overlaps("small", "medium")
(['angles'], True)
>>> R128, _ = rain.synthesize(rain.spec_for_size("small", 128), 128, 4, seed=0)  # same rain, 128 px
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "MASK_THRESHOLD",
    "REFERENCE_SIZE",
    "SAMPLE_SPACING",
    "MAX_LENGTH",
    "MAX_WIDTH",
    "MAX_BLUR",
    "MAX_SPLAT_SAMPLES",
    "RainSpec",
    "PRESETS",
    "ROLES",
    "TRAIN_PRESET",
    "OOD_PRESETS",
    "get_spec",
    "spec_for_size",
    "overlaps",
    "ood_fields",
    "contains",
    "Streaks",
    "sample_streaks",
    "render_streaks",
    "synthesize",
    "add_rain",
    "presets_table",
    "presets_markdown",
]

MASK_THRESHOLD: float = 0.02
"""Rain mask ``M = R > MASK_THRESHOLD`` (about 5/255, includes each streak's blurred rim)."""

REFERENCE_SIZE: int = 64
"""px; preset lengths/widths are in pixels at this image size (calibrated for 48-64 px crops)."""

SAMPLE_SPACING: float = 0.5
"""px; largest distance between splatted samples, along and across a streak."""

MAX_LENGTH: float = 4096.0
"""px; longest streak a RainSpec accepts (a preset scaled for a 4096-px image is 2560 px at most)."""

MAX_WIDTH: float = 256.0
"""px; widest streak a RainSpec accepts."""

MAX_BLUR: float = 256.0
"""px; largest blur sigma a RainSpec accepts."""

MAX_SPLAT_SAMPLES: int = 2**25
"""Expected splat samples one ``synthesize`` call may render: about 33.5 million, i.e. about 2.5 GB of
temporaries at the ~76 bytes per sample measured on CPU (a training batch of 16 ``mixed`` 64-px layers
needs about 0.6 million). :meth:`RainSpec.check_size` refuses a call that would need more, naming the fields."""

_RANGE_FIELDS = ("density", "length", "width", "intensity")
_BOX_FIELDS = ("density", "length", "width", "angles", "intensity")  # the fields overlaps() compares


# --------------------------------------------------------------------------------------------------
# validation helpers


def _number(name: str, value: Any) -> float:
    """``value`` as a finite float, or a ValueError naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a finite number, got {value!r} ({type(value).__name__})")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return out


def _pair(name: str, value: Any) -> tuple[float, float]:
    """``value`` as a closed range ``(lo, hi)`` of finite floats with lo <= hi."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise ValueError(f"{name} must be a (lo, hi) pair of numbers, got {value!r}")
    if len(value) != 2:
        raise ValueError(f"{name} must be a (lo, hi) pair of numbers, got {len(value)} values: {value!r}")
    lo, hi = _number(f"{name}[0]", value[0]), _number(f"{name}[1]", value[1])
    if lo > hi:
        raise ValueError(f"{name} must have lo <= hi, got ({lo:g}, {hi:g})")
    return lo, hi


def _range(
    name: str,
    value: Any,
    *,
    minimum: float,
    minimum_open: bool,
    maximum: float = math.inf,
    what: str = "",
) -> tuple[float, float]:
    lo, hi = _pair(name, value)
    too_low = lo <= minimum if minimum_open else lo < minimum
    if too_low or hi > maximum:
        left = "(" if minimum_open else "["
        right = "]" if math.isfinite(maximum) else ")"
        bounds = f"{left}{minimum:g}, {maximum:g}{right}"
        raise ValueError(f"{name} must lie in {bounds}{what}, got ({lo:g}, {hi:g})")
    return lo, hi


def _angles(value: Any) -> tuple[tuple[float, float], ...]:
    """A union of angle ranges, normalised to a sorted tuple of pairs. A flat pair is one range."""
    name = "RainSpec.angles"
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise ValueError(f"{name} must be a sequence of (lo, hi) degree ranges, got {value!r}")
    if len(value) == 0:
        raise ValueError(f"{name} must hold at least one (lo, hi) range, got an empty sequence")
    if len(value) == 2 and all(isinstance(v, numbers.Real) for v in value):
        value = (value,)  # a single flat range such as (-10, 10)
    out = []
    for i, item in enumerate(value):
        lo, hi = _pair(f"{name}[{i}]", item)
        if lo < -90 or hi > 90:
            raise ValueError(f"{name}[{i}] must lie in [-90, 90] degrees from vertical, got ({lo:g}, {hi:g})")
        out.append((lo, hi))
    return tuple(sorted(out))


def _merge(ranges: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Merge overlapping/touching closed ranges (sorted input or not)."""
    merged: list[list[float]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return [(lo, hi) for lo, hi in merged]


def _fmt_range(r: tuple[float, float]) -> str:
    return f"{r[0]:g}" if r[0] == r[1] else f"[{r[0]:g}, {r[1]:g}]"


# --------------------------------------------------------------------------------------------------
# the distribution of rain


@dataclass(frozen=True)
class RainSpec:
    """A distribution of rain streaks; every streak draws each parameter uniformly from its range.

    Attributes:
        density: (lo, hi), expected streak centres per pixel, in (0, 1]. Each image draws one value.
        length: (lo, hi), streak length end to end, px (> 0).
        width: (lo, hi), streak width, px, continuous, >= 1 (the renderer's thinnest line is 1 px).
        angles: union of closed (lo, hi) ranges, degrees from vertical in [-90, 90];
            positive = top of the streak leans right. A flat pair ``(-10, 10)`` is accepted as one range.
        intensity: (lo, hi), value of a pixel fully covered by one streak, in (0, 1].
        blur: gaussian sigma in px applied to the whole layer (>= 0; 0 = none).
        name: short label (used in tables and file names).
        description: one line for humans.

    Lists are normalised to tuples (and angle ranges sorted), so specs are hashable and compare by
    value; :meth:`to_dict` / :meth:`from_dict` round-trip through JSON. Bad values raise ValueError
    naming the field.
    """

    density: tuple[float, float]
    length: tuple[float, float]
    width: tuple[float, float]
    angles: tuple[tuple[float, float], ...]
    intensity: tuple[float, float]
    blur: float = 0.5
    name: str = "custom"
    description: str = ""

    def __post_init__(self) -> None:
        put = lambda key, val: object.__setattr__(self, key, val)  # noqa: E731 (frozen dataclass)
        put("density", _range("RainSpec.density", self.density, minimum=0.0, minimum_open=True, maximum=1.0))
        put("length", _range("RainSpec.length", self.length, minimum=0.0, minimum_open=True, maximum=MAX_LENGTH,
                             what=" px (rain.MAX_LENGTH)"))
        put("width", _range("RainSpec.width", self.width, minimum=1.0, minimum_open=False, maximum=MAX_WIDTH,
                            what=" px (rain.MAX_WIDTH)"))
        put("intensity", _range("RainSpec.intensity", self.intensity, minimum=0.0, minimum_open=True, maximum=1.0))
        put("angles", _angles(self.angles))
        blur = _number("RainSpec.blur", self.blur)
        if blur < 0:
            raise ValueError(f"RainSpec.blur must be >= 0 px, got {blur:g}")
        if blur > MAX_BLUR:
            raise ValueError(f"RainSpec.blur must be <= {MAX_BLUR:g} px (rain.MAX_BLUR), got {blur:g}")
        put("blur", blur)
        for key in ("name", "description"):
            if not isinstance(getattr(self, key), str):
                raise ValueError(f"RainSpec.{key} must be a str, got {getattr(self, key)!r}")

    def check_size(self, size: int | tuple[int, int], n: int = 1) -> None:
        """Check the spec against an image size, where it is known (``sample_streaks`` calls this).

        A streak may be at most 4 times the image's longer side (or 4 x ``REFERENCE_SIZE``, so every
        preset fits any image), and width and blur at most its longer side (or ``REFERENCE_SIZE``):
        streak centres are drawn in a margin of half a streak around the frame, so absurd lengths
        make absurd numbers of streaks. And the expected number of splat samples of ``n`` images
        (mean density x the frame with its margin x samples per streak) must stay below
        :data:`MAX_SPLAT_SAMPLES`. Raises ValueError naming the field and the limit.
        """
        h, w = _parse_size(size)
        n = _parse_n(n)
        side = max(h, w, REFERENCE_SIZE)
        where = f"for a {h}x{w} px image"
        if self.length[1] > 4 * side:
            raise ValueError(f"RainSpec.length: {self.length[1]:g} px is more than 4 x {side} px {where} "
                             f"(at most {4 * side} px); use spec.scaled() or a larger image")
        for key, value in (("width", self.width[1]), ("blur", self.blur)):
            if value > side:
                raise ValueError(f"RainSpec.{key}: {value:g} px is more than {side} px {where}")
        margin = self.length[1] / 2 + self.width[1] / 2 + 1.0 + math.ceil(3.0 * self.blur)
        area = (h + 2 * margin) * (w + 2 * margin)
        mean = lambda r: 0.5 * (r[0] + r[1])  # noqa: E731
        per_streak = math.ceil(mean(self.length) / SAMPLE_SPACING) * math.ceil(mean(self.width) / SAMPLE_SPACING)
        samples = n * mean(self.density) * area * per_streak
        if samples > MAX_SPLAT_SAMPLES:
            raise ValueError(
                f"RainSpec density x length x width: {n} image(s) of {h}x{w} px would need about {samples:.3g} "
                f"splat samples (rain.MAX_SPLAT_SAMPLES = {MAX_SPLAT_SAMPLES:.3g}; density {self.density}, length "
                f"{self.length} px, width {self.width} px); lower them, synthesize fewer images at once, or raise "
                "rain.MAX_SPLAT_SAMPLES if the memory is there")

    def scaled(self, factor: float) -> RainSpec:
        """The same rain seen on an image ``factor`` times larger (e.g. ``size / REFERENCE_SIZE``).

        Lengths, widths and blur are multiplied by ``factor`` (the whole picture is magnified; widths
        stay >= 1 px), the density is divided by ``factor**2`` so the fraction of the image covered
        by rain stays about the same. ``factor <= 0`` (or one that would push density above 1)
        raises ValueError naming ``factor``.
        The name is kept (it is the same preset); the description records the factor.
        """
        f = _number("factor", factor)
        if f <= 0:
            raise ValueError(f"factor must be > 0, got {factor!r}")
        if f == 1.0:
            return self
        density = (self.density[0] / f**2, self.density[1] / f**2)
        if density[1] > 1.0:
            raise ValueError(
                f"factor={f:g} is too small for {self.name!r}: its density would reach {density[1]:g} > 1"
            )
        return replace(
            self,
            density=density,
            length=(self.length[0] * f, self.length[1] * f),
            width=(max(1.0, self.width[0] * f), max(1.0, self.width[1] * f)),
            blur=self.blur * f,
            description=f"{self.description} [scaled x{f:g}]".strip(),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict (lists, floats, strings); ``from_dict`` inverts it."""
        return {
            "name": self.name,
            "description": self.description,
            "density": list(self.density),
            "length": list(self.length),
            "width": list(self.width),
            "angles": [list(a) for a in self.angles],
            "intensity": list(self.intensity),
            "blur": self.blur,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RainSpec:
        """Inverse of :meth:`to_dict`. Unknown or missing keys raise ValueError naming them."""
        if not isinstance(d, Mapping):
            raise ValueError(f"RainSpec.from_dict needs a mapping, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"RainSpec.from_dict: unknown key(s) {unknown}; valid keys are {sorted(known)}")
        required = {"density", "length", "width", "angles", "intensity"}
        missing = sorted(required - set(d))
        if missing:
            raise ValueError(f"RainSpec.from_dict: missing key(s) {missing}")
        return cls(**dict(d))


def _spec(
    name: str,
    density: tuple[float, float],
    length: tuple[float, float],
    width: tuple[float, float],
    angles: Any,
    intensity: tuple[float, float],
    description: str,
    blur: float = 0.5,
) -> RainSpec:
    return RainSpec(density, length, width, angles, intensity, blur=blur, name=name, description=description)


_SLANTS = ((-60.0, -30.0), (30.0, 60.0))

PRESETS: dict[str, RainSpec] = {
    spec.name: spec
    for spec in (
        _spec("small", (0.004, 0.010), (6, 14), (1, 1), (-10, 10), (0.3, 0.6),
              "training rain: thin, short, near-vertical streaks"),
        _spec("slanted", (0.004, 0.010), (6, 14), (1, 1), _SLANTS, (0.3, 0.6),
              "small's streaks, but slanted 30-60 degrees either way (unseen angle)"),
        _spec("long_wide", (0.0015, 0.004), (16, 30), (2, 3), _SLANTS, (0.3, 0.6),
              "few long, wide, slanted streaks (unseen length, width and angle)"),
        _spec("dense", (0.02, 0.035), (3, 6), (2, 2), (-10, 10), (0.2, 0.4),
              "many short, faint, 2-px drops (unseen density and width)"),
        _spec("medium", (0.003, 0.008), (10, 24), (1, 2), (-25, 25), (0.4, 0.7),
              "longer, brighter streaks that partially overlap small"),
        _spec("large", (0.002, 0.006), (20, 40), (2, 3), (-45, 45), (0.5, 0.9),
              "long, wide, bright streaks (unseen length and width)"),
        _spec("mixed", (0.0015, 0.035), (3, 40), (1, 3), (-60, 60), (0.2, 0.9),
              "one wide range covering every other preset: the train-on-varied-rain remedy"),
    )
}
"""The named rain distributions; see the table in the module docstring."""

ROLES: dict[str, str] = {
    "small": "train",
    "slanted": "OOD test",
    "long_wide": "OOD test",
    "dense": "OOD test",
    "medium": "partial overlap",
    "large": "OOD test",
    "mixed": "wide-range train (remedy)",
}
"""What each preset is for, relative to ``TRAIN_PRESET`` (documentation; checked against overlaps)."""

TRAIN_PRESET: str = "small"
OOD_PRESETS: tuple[str, ...] = ("slanted", "long_wide", "dense")


def get_spec(spec: str | RainSpec | Mapping[str, Any]) -> RainSpec:
    """A preset by name, a RainSpec unchanged, or a ``to_dict`` mapping; otherwise ValueError."""
    if isinstance(spec, RainSpec):
        return spec
    if isinstance(spec, str):
        try:
            return PRESETS[spec]
        except KeyError:
            raise ValueError(f"unknown rain preset {spec!r}; valid names are {sorted(PRESETS)}") from None
    if isinstance(spec, Mapping):
        return RainSpec.from_dict(spec)
    raise ValueError(f"spec must be a preset name or a RainSpec, got {type(spec).__name__}: {spec!r}")


def spec_for_size(spec: str | RainSpec, size: int | tuple[int, int]) -> RainSpec:
    """``get_spec(spec).scaled(s / REFERENCE_SIZE)`` with s the geometric mean of the image sides."""
    h, w = _parse_size(size)
    return get_spec(spec).scaled(math.sqrt(h * w) / REFERENCE_SIZE)


def _intervals_meet(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def ood_fields(train: str | RainSpec, test: str | RainSpec) -> list[str]:
    """Fields (of density, length, width, angles, intensity) on which ``test``'s ranges miss ``train``'s.

    Ranges are closed, so touching ranges (e.g. length 6-14 vs 3-6) count as overlapping. Angles
    overlap when any range of one union meets any range of the other. Blur is not compared.
    """
    a, b = get_spec(train), get_spec(test)
    out = []
    for key in _BOX_FIELDS:
        if key == "angles":
            meet = any(_intervals_meet(x, y) for x in a.angles for y in b.angles)
        else:
            meet = _intervals_meet(getattr(a, key), getattr(b, key))
        if not meet:
            out.append(key)
    return out


def overlaps(a: str | RainSpec, b: str | RainSpec) -> bool:
    """True iff the two distributions' parameter boxes intersect on every field (see :func:`ood_fields`)."""
    return not ood_fields(a, b)


def contains(outer: str | RainSpec, inner: str | RainSpec) -> bool:
    """True iff every range of ``inner`` lies inside the matching range of ``outer`` (blur ignored)."""
    a, b = get_spec(outer), get_spec(inner)
    for key in _RANGE_FIELDS:
        (alo, ahi), (blo, bhi) = getattr(a, key), getattr(b, key)
        if not (alo <= blo and bhi <= ahi):
            return False
    union = _merge(a.angles)
    return all(any(lo <= blo and bhi <= hi for lo, hi in union) for blo, bhi in b.angles)


# --------------------------------------------------------------------------------------------------
# sampling and rendering


def _parse_size(size: Any) -> tuple[int, int]:
    """``size`` (int or (H, W)) as two positive ints, or a ValueError naming ``size``."""
    def ok(v: Any) -> bool:
        return isinstance(v, (numbers.Integral,)) and not isinstance(v, (bool, np.bool_)) and int(v) > 0

    if ok(size):
        return int(size), int(size)
    if isinstance(size, (tuple, list)) and len(size) == 2 and all(ok(v) for v in size):
        return int(size[0]), int(size[1])
    raise ValueError(f"size must be a positive int or a (H, W) pair of positive ints, got {size!r}")


def _parse_n(n: Any) -> int:
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral) or int(n) < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    return int(n)


def _generator(seed: int | torch.Generator) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an int or a torch.Generator, got {seed!r}")
    gen = torch.Generator(device="cpu")
    try:
        gen.manual_seed(int(seed))
    except (RuntimeError, ValueError, OverflowError) as err:
        raise ValueError(f"seed {seed!r} is out of range for a torch.Generator: {err}") from None
    return gen


def _blur_radius(sigma: float) -> int:
    return int(math.ceil(3.0 * sigma)) if sigma > 0 else 0


@dataclass(frozen=True)
class Streaks:
    """A flat list of M streaks spread over a batch of ``n_images`` images (all tensors 1-D, length M).

    Coordinates are in px with pixel centres at integers: pixel (row r, column c) is at (x=c, y=r),
    so the frame spans [-0.5, W - 0.5] x [-0.5, H - 0.5]; centres may lie outside it.

    Attributes:
        image: int64, which image each streak belongs to, in [0, n_images).
        cx, cy: float32, streak centre (x = column, y = row), px.
        length, width: float32, px (> 0).
        angle: float32, degrees from vertical, positive = top leaning right.
        intensity: float32, value of a fully covered pixel.
        n_images: batch size of the layers this list renders to.
    """

    image: torch.Tensor
    cx: torch.Tensor
    cy: torch.Tensor
    length: torch.Tensor
    width: torch.Tensor
    angle: torch.Tensor
    intensity: torch.Tensor
    n_images: int

    _FLOATS = ("cx", "cy", "length", "width", "angle", "intensity")

    def __post_init__(self) -> None:
        if not isinstance(self.image, torch.Tensor):
            raise ValueError(f"Streaks.image must be a 1-D tensor, got {type(self.image).__name__}")
        m = self.image.shape
        for key in ("image", *self._FLOATS):
            t = getattr(self, key)
            if not isinstance(t, torch.Tensor) or t.dim() != 1 or t.shape != m:
                raise ValueError(f"Streaks.{key} must be a 1-D tensor of length {tuple(m)}, got {t!r}")
            dtype = torch.int64 if key == "image" else torch.float32
            if t.dtype != dtype:  # normalise dtypes (frozen dataclass)
                object.__setattr__(self, key, t.to(dtype))
        _parse_n(self.n_images)
        if len(self) and (int(self.image.min()) < 0 or int(self.image.max()) >= self.n_images):
            raise ValueError(f"Streaks.image must lie in [0, n_images={self.n_images})")
        if len(self) and (bool((self.length <= 0).any()) or bool((self.width <= 0).any())):
            raise ValueError("Streaks.length and Streaks.width must be > 0")

    def __len__(self) -> int:
        return int(self.image.numel())

    def to(self, device: str | torch.device) -> Streaks:
        """The same streaks with every tensor on ``device``."""
        moved = {k: getattr(self, k).to(device) for k in ("image", *self._FLOATS)}
        return Streaks(**moved, n_images=self.n_images)

    @classmethod
    def make(
        cls,
        *,
        cx: Any,
        cy: Any,
        length: Any,
        width: Any = 1.0,
        angle: Any = 0.0,
        intensity: Any = 1.0,
        image: Any = 0,
        n_images: int | None = None,
    ) -> Streaks:
        """Streaks from scalars or sequences (broadcast together), e.g. one hand-placed streak for a test."""
        floats = [torch.as_tensor(v, dtype=torch.float32) for v in (cx, cy, length, width, angle, intensity)]
        img = torch.as_tensor(image, dtype=torch.int64)
        *floats, img = torch.broadcast_tensors(*floats, img)
        floats = [f.reshape(-1).contiguous() for f in floats]
        img = img.reshape(-1).contiguous()
        if n_images is None and img.numel() == 0:
            raise ValueError("n_images is needed when there are no streaks")
        n = int(img.max()) + 1 if n_images is None else n_images
        return cls(img, *floats, n_images=n)


def _margin(spec: RainSpec) -> float:
    """px beyond the frame where a streak centre can still put rain into the frame."""
    return spec.length[1] / 2 + spec.width[1] / 2 + 1.0 + _blur_radius(spec.blur)


def sample_streaks(
    spec: str | RainSpec, size: int | tuple[int, int], n: int, seed: int | torch.Generator
) -> Streaks:
    """Draw the streaks of ``n`` images of ``size`` from ``spec`` (no rendering).

    Random numbers come from ``seed`` (an int makes a CPU generator; a Generator is used on its own
    device). The draws are laid out per image with a fixed stride, so with a CPU generator image i's
    streaks depend only on (spec, size, seed, i): the first m images of a batch of n equal a batch of m.
    """
    spec = get_spec(spec)
    h, w = _parse_size(size)
    n = _parse_n(n)
    spec.check_size((h, w), n)
    gen = _generator(seed)
    dev = gen.device
    m = _margin(spec)
    ext_h, ext_w = h + 2 * m, w + 2 * m
    area = ext_h * ext_w
    k_max = int(math.floor(spec.density[1] * area)) + 1
    n_params = 6
    u = torch.rand((n, 2 + n_params * k_max), generator=gen, device=dev, dtype=torch.float32)

    d_lo, d_hi = spec.density
    density = d_lo + (d_hi - d_lo) * u[:, 0].double()
    count = torch.floor(density * area + u[:, 1].double()).long().clamp_(0, k_max)  # stochastic rounding
    valid = torch.arange(k_max, device=dev).unsqueeze(0) < count.unsqueeze(1)  # (n, k_max)
    p = u[:, 2:].view(n, k_max, n_params)[valid]  # (M, 6), image-major order
    image = torch.arange(n, device=dev).unsqueeze(1).expand(n, k_max)[valid]

    def uniform(col: int, lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * p[:, col]

    cx = uniform(0, -0.5 - m, w - 0.5 + m)
    cy = uniform(1, -0.5 - m, h - 0.5 + m)
    length = uniform(2, *spec.length)
    width = uniform(3, *spec.width)
    intensity = uniform(5, *spec.intensity)

    lo = torch.tensor([a[0] for a in spec.angles], dtype=torch.float32, device=dev)
    hi = torch.tensor([a[1] for a in spec.angles], dtype=torch.float32, device=dev)
    span = hi - lo
    total = float(span.sum())
    if total > 0:  # pick a range with probability ~ its length, then uniformly inside it
        t = p[:, 4] * total
        cum = torch.cumsum(span, 0)
        j = torch.searchsorted(cum, t, right=True).clamp_(max=len(spec.angles) - 1)
        angle = torch.minimum(torch.maximum(lo[j] + (t - (cum[j] - span[j])), lo[j]), hi[j])
    else:  # only degenerate ranges: choose one evenly
        j = (p[:, 4] * len(spec.angles)).long().clamp_(max=len(spec.angles) - 1)
        angle = lo[j]
    return Streaks(image, cx, cy, length, width, angle, intensity, n_images=n)


_RENDER_CHUNK: int = 1 << 16
"""Samples splatted per chunk of images on the CPU (:func:`render_streaks`). A chunk's samples,
weights and canvas then stay in the core's cache, which, more than the arithmetic, sets the speed."""

_FLOAT_EXACT: int = 2**24
"""Integers below this are exact in float32 (pixel indices are computed in float32 below it)."""


def _gaussian_taps(sigma: float) -> list[float]:
    """The 2r + 1 normalised float32 weights of a gaussian of ``sigma`` px, r = ceil(3 sigma)."""
    r = _blur_radius(sigma)
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    return (g / g.sum()).tolist()


def _gaussian_blur_valid(x: torch.Tensor, sigma: float, out: torch.Tensor | None = None) -> torch.Tensor:
    """Separable gaussian of ``sigma`` px, no padding: (n, c, h, w) -> (n, c, h - 2r, w - 2r), r = ceil(3 sigma).

    A weighted sum of 2r + 1 shifted views per direction (``add_`` with ``alpha``), which on a CPU
    is faster than a depthwise convolution and, on the cache-sized chunks of :func:`render_streaks`,
    reads every value from cache. The result goes to ``out`` when given.
    """
    r = _blur_radius(sigma)
    if r == 0:
        return x.clone() if out is None else out.copy_(x)
    g = _gaussian_taps(sigma)
    m = x.shape[-1] - 2 * r
    y = x[..., 0:m] * g[0]
    for k in range(1, 2 * r + 1):
        y.add_(x[..., k : k + m], alpha=g[k])
    m = x.shape[-2] - 2 * r
    out = torch.mul(y[..., 0:m, :], g[0], out=out)
    for k in range(1, 2 * r + 1):
        out.add_(y[..., k : k + m, :], alpha=g[k])
    return out


def _grouped_by_image(s: Streaks) -> Streaks:
    """``s`` with its streaks in image order (a stable sort: each image keeps its own streak order)."""
    if len(s) < 2 or bool((s.image[1:] >= s.image[:-1]).all()):
        return s
    order = torch.argsort(s.image, stable=True)
    return Streaks(**{k: getattr(s, k)[order] for k in ("image", *Streaks._FLOATS)}, n_images=s.n_images)


def _image_chunks(samples: list[int], npx: int, max_samples: int) -> list[tuple[int, int]]:
    """Consecutive image ranges ``[i0, i1)`` holding at most ``max_samples`` samples (but at least one
    image) whose canvas of ``(i1 - i0) * npx`` px stays below ``_FLOAT_EXACT`` (unless one image alone
    is larger). ``samples[i]`` is the number of samples of the images before image i (length n + 1)."""
    n = len(samples) - 1
    out = []
    i0 = 0
    while i0 < n:
        i1 = i0 + 1
        while i1 < n and (i1 + 1 - i0) * npx < _FLOAT_EXACT and samples[i1 + 1] - samples[i0] <= max_samples:
            i1 += 1
        out.append((i0, i1))
        i0 = i1
    return out


def render_streaks(
    streaks: Streaks,
    size: int | tuple[int, int],
    blur: float = 0.5,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Render streaks into rain layers: float32 (n_images, 1, H, W) in [0, 1].

    Splatting (see module docstring): each streak is sampled every <= ``SAMPLE_SPACING`` px along
    and across; each sample adds ``intensity x its area`` (x a linear fade over ``min(width,
    length/2)`` px at each end) to its 4 nearest pixels with bilinear weights (``index_add_`` into
    a flat canvas). Then a gaussian blur of ``blur`` px, computed with the rain just outside the
    frame, then clip to [0, 1].

    Vectorised with torch ops on ``device``: the streak list is expanded to "lines" (one per sample
    position along a streak) with ``repeat_interleave``, and each line to its samples across by
    broadcasting, laid out across-major so that every elementwise op runs over long contiguous rows.
    On the CPU the images are rendered in chunks of about :data:`_RENDER_CHUNK` samples, so that a
    chunk's temporaries and canvas stay in cache. An image's layer does not depend on the chunking
    or on the other images of the batch. Deterministic on CPU; on CUDA the additions are atomics
    (float rounding may differ run to run).
    """
    return _render(streaks, size, blur, device)[0]


def _render(
    streaks: Streaks,
    size: int | tuple[int, int],
    blur: float,
    device: str | torch.device | None,
    mask_threshold: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`render_streaks`, plus the mask ``layer > mask_threshold`` when a threshold is given."""
    h, w = _parse_size(size)
    sigma = _number("blur", blur)
    if sigma < 0:
        raise ValueError(f"blur must be >= 0 px, got {sigma:g}")
    dev = torch.device(device) if device is not None else streaks.image.device
    s = _grouped_by_image(streaks.to(dev))
    n = s.n_images
    r = _blur_radius(sigma)
    pad = r + 2  # canvas border: blur support + 2 px that collect clamped (off-canvas) samples
    hp, wp = h + 2 * pad, w + 2 * pad
    npx = hp * wp
    out = torch.empty((n, 1, h, w), dtype=torch.float32, device=dev)
    mask = None if mask_threshold is None else torch.empty((n, 1, h, w), dtype=torch.bool, device=dev)
    if not len(s):
        return out.zero_(), None if mask is None else mask.zero_()

    # per streak (M): sample counts, first sample position (canvas px), steps along/across, weights
    n_along = torch.ceil(s.length / SAMPLE_SPACING).clamp_(min=1)
    n_across = torch.ceil(s.width / SAMPLE_SPACING).clamp_(min=1)
    theta = torch.deg2rad(s.angle)
    sin, cos = torch.sin(theta), torch.cos(theta)
    st_a, st_t = s.length / n_along, s.width / n_across
    a0 = 0.5 * st_a - 0.5 * s.length  # along position of the first sample, 0 = streak centre
    t0 = 0.5 * st_t - 0.5 * s.width
    nt = int(n_across.max())  # samples across, dense up to the widest streak (unused slots weigh 0)
    uniform = bool((n_across == nt).all())
    # upward direction (sin a, -cos a): the top leans right for a > 0; across = (cos a, sin a)
    table = torch.stack(
        [
            s.cx + a0 * sin + t0 * cos + pad,  # 0, 1: x, y of the first sample on the canvas
            s.cy - a0 * cos + t0 * sin + pad,
            st_a * sin, -st_a * cos,  # 2, 3: step along
            st_t * cos, st_t * sin,  # 4, 5: step across
            n_along - 0.5,  # 6: (for the end fade)
            st_a / torch.minimum(s.width, 0.5 * s.length),  # 7: along step / end-fade length
            s.intensity * st_a * st_t,  # 8: mass of one sample
            n_across,  # 9
        ][: 10 if not uniform else 9]
    )
    n_along_i = n_along.long()
    first = torch.cumsum(n_along_i, 0) - n_along_i  # global index of each streak's first line
    per_image = torch.zeros(n + 1, dtype=torch.long, device=dev)
    per_image[1:].index_add_(0, s.image, n_along_i * nt)
    samples = torch.cumsum(per_image, 0).tolist()
    per_image.zero_()[1:].index_add_(0, s.image, torch.ones_like(s.image))
    streak_at = torch.cumsum(per_image, 0).tolist()
    it = torch.arange(nt, device=dev, dtype=torch.float32).unsqueeze(1)  # (nt, 1)
    exact = npx < _FLOAT_EXACT
    # chunk sizes also keep the in-chunk line and pixel indices exact in float32
    chunks = _image_chunks(samples, npx, _RENDER_CHUNK if dev.type == "cpu" else _FLOAT_EXACT - 1)
    buffer = torch.empty(max(i1 - i0 for i0, i1 in chunks) * npx, dtype=torch.float32, device=dev)

    for i0, i1 in chunks:
        a, b = streak_at[i0], streak_at[i1]
        if a == b:  # no streaks: the layers are 0
            out[i0:i1].zero_()
            if mask is not None:
                mask[i0:i1].zero_()
            continue
        n_lines = (samples[i1] - samples[i0]) // nt
        l0 = samples[i0] // nt
        canvas = buffer[: (i1 - i0) * npx].zero_()
        sid = torch.repeat_interleave(n_along_i[a:b], output_size=n_lines)  # line -> streak (in chunk)
        per_line = table[:, a:b].index_select(1, sid)
        # first line (in chunk) and canvas offset of each line's image: exact small integers in float32
        aux = torch.stack([first[a:b] - l0, (s.image[a:b] - i0) * npx]).float().index_select(1, sid)
        ia = torch.arange(n_lines, device=dev, dtype=torch.float32).sub_(aux[0])  # along index
        weight = torch.minimum(ia + 0.5, per_line[6] - ia).mul_(per_line[7]).clamp_(max=1.0).mul_(per_line[8])
        xy_line = torch.addcmul(per_line[0:2], ia, per_line[2:4])  # (2, lines)
        xy = torch.addcmul(xy_line.unsqueeze(1), it, per_line[4:6].unsqueeze(1))  # (2, nt, lines)
        if hp == wp:
            xy.clamp_(1.0, wp - 2.0)  # clamped samples land in the outer px, which are never read
        else:
            xy[0].clamp_(1.0, wp - 2.0)
            xy[1].clamp_(1.0, hp - 2.0)
        if not uniform:
            weight = weight * (it < per_line[9])
        frac = torch.frac(xy)  # xy >= 1, so frac = xy - floor(xy)
        xy.sub_(frac)
        if exact:  # pixel index, exact in float32 (the chunk's canvas is below 2**24 px)
            base = xy[0].add_(xy[1], alpha=wp).add_(aux[1]).view(-1).to(torch.int32)
        else:  # one image per chunk, too large for float32 indices
            base = xy[1].long().mul_(wp).add_(xy[0].long()).view(-1)
        wts = torch.empty((2, nt, n_lines), dtype=torch.float32, device=dev)  # (upper row, lower row)
        torch.mul(weight, frac[1], out=wts[1])
        torch.sub(weight, wts[1], out=wts[0])
        right = wts * frac[0]
        left = wts.sub_(right)
        canvas.index_add_(0, base, left[0].view(-1))
        canvas[1:].index_add_(0, base, right[0].view(-1))
        canvas[wp:].index_add_(0, base, left[1].view(-1))
        canvas[wp + 1 :].index_add_(0, base, right[1].view(-1))
        layer = canvas.view(i1 - i0, 1, hp, wp)[:, :, pad - r : pad + h + r, pad - r : pad + w + r]
        done = _gaussian_blur_valid(layer, sigma, out=out[i0:i1]).clamp_(0.0, 1.0)
        if mask is not None:  # while the chunk is in cache
            torch.gt(done, mask_threshold, out=mask[i0:i1])
    return out, mask


def synthesize(
    spec: str | RainSpec,
    size: int | tuple[int, int],
    n: int,
    seed: int | torch.Generator,
    device: str | torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` rain layers from ``spec``: ``(rain, mask)``.

    Args:
        spec: a RainSpec or a preset name (lengths in px as given: use ``spec_for_size`` for images
            much larger than ``REFERENCE_SIZE``).
        size: H = W = size, or (H, W), px.
        n: number of layers.
        seed: int (a CPU generator is made from it, so the same seed gives the same streaks on every
            device) or a torch.Generator (used on its own device and advanced).
        device: where the layers are rendered; default CPU, or the Generator's device if one is given.

    Returns:
        rain: float32 (n, 1, H, W) in [0, 1]; mask: bool (n, 1, H, W) = rain > MASK_THRESHOLD.
        Same seed -> bitwise-equal layers on CPU; the first m of n layers equal ``synthesize(.., m, seed)``.
    """
    spec = get_spec(spec)
    hw = _parse_size(size)
    n = _parse_n(n)
    gen = _generator(seed)
    if device is None:
        device = gen.device if isinstance(seed, torch.Generator) else torch.device("cpu")
    streaks = sample_streaks(spec, hw, n, gen)
    return _render(streaks, hw, spec.blur, device, mask_threshold=MASK_THRESHOLD)


# --------------------------------------------------------------------------------------------------
# compositing


def add_rain(background: Any, rain: Any, strength: float = 1.0) -> Any:
    """``rainy = clip(background + strength * rain, 0, 1)``; rain is achromatic, broadcast over channels.

    torch: background (N, C, H, W) float, rain (N, 1, H, W) or (N, C, H, W); result on background's
    device and dtype. numpy: background (H, W, C) or (H, W) float, rain (H, W), (H, W, 1) or (H, W, C)
    (a torch layer of shape (1, H, W) or (1, 1, H, W) is accepted too); result in background's dtype.
    Shape mismatches raise ValueError stating both shapes; ``strength`` must be >= 0.
    """
    k = _number("strength", strength)
    if k < 0:
        raise ValueError(f"strength must be >= 0, got {strength!r}")

    if isinstance(background, torch.Tensor):
        if not background.is_floating_point():
            raise ValueError(f"background must be a float tensor in [0, 1], got dtype {background.dtype}")
        rain_t = rain if isinstance(rain, torch.Tensor) else torch.as_tensor(np.asarray(rain))
        if background.dim() != 4:
            raise ValueError(f"background must be (N, C, H, W), got shape {tuple(background.shape)}")
        nb, c, h, w = background.shape
        if tuple(rain_t.shape) not in ((nb, 1, h, w), (nb, c, h, w)):
            raise ValueError(
                f"rain shape {tuple(rain_t.shape)} does not match background shape {tuple(background.shape)}:"
                f" expected {(nb, 1, h, w)}"
            )
        rain_t = rain_t.to(device=background.device, dtype=background.dtype)
        return (background + k * rain_t).clamp_(0.0, 1.0)

    if isinstance(background, np.ndarray):
        if background.dtype.kind != "f":
            raise ValueError(f"background must be a float array in [0, 1], got dtype {background.dtype}")
        r = rain.detach().cpu().numpy() if isinstance(rain, torch.Tensor) else np.asarray(rain)
        hw = background.shape[:2]
        if r.ndim == 4 and r.shape == (1, 1, *hw):  # one layer of synthesize()'s (n, 1, H, W) output
            r = r[0, 0]
        elif r.ndim == 3 and r.shape == (1, *hw) and r.shape != (*hw, 1):
            r = r[0]
        if background.ndim == 2:
            if r.shape == (*background.shape, 1):
                r = r[..., 0]
            if r.shape != background.shape:
                raise ValueError(
                    f"rain shape {r.shape} does not match background shape {background.shape}:"
                    f" expected {background.shape}"
                )
        elif background.ndim == 3:
            h, w, c = background.shape
            if r.shape == (h, w):
                r = r[..., None]
            if r.shape not in ((h, w, 1), (h, w, c)):
                raise ValueError(
                    f"rain shape {r.shape} does not match background shape {background.shape}:"
                    f" expected {(h, w)} or {(h, w, 1)}"
                )
        else:
            raise ValueError(f"background must be (H, W) or (H, W, C), got shape {background.shape}")
        out = background + np.asarray(k * r, dtype=background.dtype)
        return np.clip(out, 0.0, 1.0, out=out)

    raise ValueError(f"background must be a torch.Tensor or numpy.ndarray, got {type(background).__name__}")


# --------------------------------------------------------------------------------------------------
# tables


def _row(name: str, spec: RainSpec, train: RainSpec) -> dict[str, Any]:
    ood = ood_fields(train, spec)
    return {
        "name": name,
        "role": ROLES.get(name, "custom"),
        "density": _fmt_range(spec.density),
        "length": _fmt_range(spec.length),
        "width": _fmt_range(spec.width),
        "angle": " U ".join(f"[{lo:g}, {hi:g}]" if lo != hi else f"{lo:g}" for lo, hi in spec.angles),
        "intensity": _fmt_range(spec.intensity),
        "blur": f"{spec.blur:g}",
        "ood_fields": ", ".join(ood) if ood else "-",
        "in_distribution": not ood,
        "description": spec.description,
    }


def presets_table(train: str | RainSpec = TRAIN_PRESET) -> pd.DataFrame:
    """One row per preset: role, human-readable ranges, and the fields that are OOD w.r.t. ``train``."""
    import pandas as pd

    t = get_spec(train)
    return pd.DataFrame([_row(name, spec, t) for name, spec in PRESETS.items()])


def presets_markdown(train: str | RainSpec = TRAIN_PRESET) -> str:
    """The preset table as markdown (the one in the module docstring)."""
    df = presets_table(train)
    cols = ["name", "role", "density", "length", "width", "angle", "intensity", "blur", "ood_fields"]
    train_name = get_spec(train).name
    header = [*cols[:-1], f"OOD fields vs {train_name}"]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in df[cols].itertuples(index=False)]
    return "\n".join(lines)
