"""Perspective rain: a rain *scene* deliberately unlike the training rain, for out-of-distribution tests.

:func:`synthesize_perspective` renders a :class:`PerspectiveRain` scene: streak size, brightness and
defocus tied to a drop's depth, one wind direction per image fanned out by perspective, and a
veiling haze. Its parameters are not a :class:`~derain_utils.synth.rain.RainSpec` box: it is a
deliberately *different kind* of rain for out-of-distribution tests (notebook 04, the report card),
drawn with the same streak renderer as :mod:`derain_utils.synth.rain`. It is NOT real rain.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from derain_utils.synth.rain import (
    MASK_THRESHOLD,
    Streaks,
    _blur_radius,
    _number,
    _pair,
    _parse_n,
    _parse_size,
    _range,
    render_streaks,
)

__all__ = ["PerspectiveRain", "PERSPECTIVE_RAIN", "synthesize_perspective"]


@dataclass(frozen=True)
class PerspectiveRain:
    """A rain *scene* deliberately unlike every :data:`PRESETS` distribution. It is NOT real rain.

    The presets draw every streak independently from one box of parameters: sizes and angles are
    unrelated to where a streak is. Real rain has structure the presets lack, and this renderer
    imitates three pieces of it, crudely, so that a network can be tested on rain whose *joint*
    structure it has never seen (its marginal ranges alone overlap ``small`` on most fields):

    * **depth**: every drop gets a size factor ``s`` in [``far_scale``, 1] (1 = nearest), drawn with
      density ~ 1/s**2 (distant drops are more numerous). Its length, width and brightness grow
      with ``s``, and so does its defocus: streaks are rendered in three depth layers blurred by
      ``blur[0]`` (far) ... ``blur[1]`` (near) px;
    * **one wind per image**: all streaks of an image share one slant, ``|angle|`` drawn from
      ``wind`` with a random sign, plus a per-streak ``jitter``, fanned out by perspective: a
      streak at horizontal offset dx from the image centre leans by a further
      ``atan(fan * dx / H)`` (lines converging on a vanishing point ``H / fan`` below the frame);
    * **a veiling haze**: an achromatic, smooth veil of strength ``haze`` (one value per image)
      at the top row, falling to 0 at the bottom row as ``(1 - y / (H - 1))**1.5``.

    Lengths and widths are in pixels as given (like the presets, not rescaled with the image), so a
    64 px crop sees a few near streaks and many far ones. The layout (fan, haze gradient) is
    relative to the frame. What it does not model: drop shape and refraction, splashes, rain
    accumulation that changes with scene depth, camera noise and compression. Use it as a
    controlled OOD test, never as a stand-in for photographs.

    Attributes:
        density: (lo, hi), streak centres per pixel; one value per image.
        near_length: (lo, hi), length of a nearest streak (s = 1), px; a streak gets ``length * s``.
        near_width: (lo, hi), width of a nearest streak, px; a streak gets ``max(1, width * s)``.
        far_scale: size factor of the farthest drops, in (0, 1].
        intensity: (lo, hi), value of a fully covered pixel for a nearest streak, in (0, 1];
            a streak gets ``intensity * (0.5 + 0.5 s)``.
        wind: (lo, hi), magnitude of the image's slant, degrees from vertical in [0, 80].
        jitter: per-streak angle noise, +- degrees (>= 0).
        fan: perspective spread, >= 0 (0 = parallel streaks).
        haze: (lo, hi), veil strength at the top row, in [0, 1).
        blur: (far, near) gaussian sigma in px of the farthest and nearest depth layers (>= 0).
        name, description: labels.
    """

    density: tuple[float, float] = (0.002, 0.006)
    near_length: tuple[float, float] = (24.0, 48.0)
    near_width: tuple[float, float] = (2.0, 4.0)
    far_scale: float = 0.2
    intensity: tuple[float, float] = (0.3, 0.7)
    wind: tuple[float, float] = (10.0, 35.0)
    jitter: float = 3.0
    fan: float = 0.5
    haze: tuple[float, float] = (0.0, 0.15)
    blur: tuple[float, float] = (0.5, 1.5)
    name: str = "perspective"
    description: str = ("synthetic perspective rain (NOT real rain): depth-dependent streak size, one wind "
                        "direction per image, perspective fan, defocus and a veiling haze")

    def __post_init__(self) -> None:
        put = lambda key, val: object.__setattr__(self, key, val)  # noqa: E731 (frozen dataclass)
        cls = "PerspectiveRain"
        put("density", _range(f"{cls}.density", self.density, minimum=0.0, minimum_open=True, maximum=1.0))
        put("near_length", _range(f"{cls}.near_length", self.near_length, minimum=0.0, minimum_open=True,
                                  what=" px"))
        put("near_width", _range(f"{cls}.near_width", self.near_width, minimum=1.0, minimum_open=False, what=" px"))
        put("intensity", _range(f"{cls}.intensity", self.intensity, minimum=0.0, minimum_open=True, maximum=1.0))
        put("wind", _range(f"{cls}.wind", self.wind, minimum=0.0, minimum_open=False, maximum=80.0,
                           what=" degrees"))
        put("haze", _range(f"{cls}.haze", self.haze, minimum=0.0, minimum_open=False, maximum=0.99))
        put("blur", _pair(f"{cls}.blur", self.blur))
        if self.blur[0] < 0:
            raise ValueError(f"{cls}.blur must be >= 0 px, got {self.blur}")
        far = _number(f"{cls}.far_scale", self.far_scale)
        if not 0 < far <= 1:
            raise ValueError(f"{cls}.far_scale must lie in (0, 1], got {far:g}")
        put("far_scale", far)
        for key in ("jitter", "fan"):
            v = _number(f"{cls}.{key}", getattr(self, key))
            if v < 0:
                raise ValueError(f"{cls}.{key} must be >= 0, got {v:g}")
            put(key, v)
        for key in ("name", "description"):
            if not isinstance(getattr(self, key), str):
                raise ValueError(f"{cls}.{key} must be a str, got {getattr(self, key)!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples as lists)."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}


PERSPECTIVE_RAIN = PerspectiveRain()
"""The default perspective rain scene (see :class:`PerspectiveRain`; NOT real rain)."""


_DEPTH_LAYERS = 3  # defocus levels between blur[0] (far) and blur[1] (near)


def _perspective_image(spec: PerspectiveRain, h: int, w: int, seed: int, index: int) -> dict[str, np.ndarray]:
    """The streak parameters and haze strength of image ``index`` (numpy; depends on (seed, index) only)."""
    rng = np.random.default_rng(np.random.SeedSequence(int(seed) % 2**63, spawn_key=(index,)))
    margin = spec.near_length[1] / 2 + spec.near_width[1] / 2 + 1.0 + _blur_radius(spec.blur[1])
    ext_h, ext_w = h + 2 * margin, w + 2 * margin
    density = rng.uniform(*spec.density)
    count = int(math.floor(density * ext_h * ext_w + rng.random()))  # stochastic rounding
    a = spec.far_scale
    u = rng.random(count)
    s = 1.0 / (1.0 / a - u * (1.0 / a - 1.0)) if a < 1 else np.ones(count)  # density ~ 1/s**2 on [a, 1]
    cx = rng.uniform(-0.5 - margin, w - 0.5 + margin, count)
    cy = rng.uniform(-0.5 - margin, h - 0.5 + margin, count)
    wind = rng.uniform(*spec.wind) * (1.0 if rng.random() < 0.5 else -1.0)
    angle = wind + rng.uniform(-spec.jitter, spec.jitter, count)
    angle = angle + np.degrees(np.arctan(spec.fan * (cx - (w - 1) / 2) / h))
    return {
        "cx": cx, "cy": cy, "s": s,
        "length": rng.uniform(*spec.near_length, count) * s,
        "width": np.maximum(1.0, rng.uniform(*spec.near_width, count) * s),
        "intensity": rng.uniform(*spec.intensity, count) * (0.5 + 0.5 * s),
        "angle": np.clip(angle, -89.0, 89.0),
        "haze": np.float64(rng.uniform(*spec.haze)),
        "wind": np.float64(wind),
    }


def synthesize_perspective(
    spec: PerspectiveRain | None,
    size: int | tuple[int, int],
    n: int,
    seed: int,
    device: str | torch.device | None = None,
    *,
    return_parts: bool = False,
) -> tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Draw ``n`` perspective rain layers (:class:`PerspectiveRain`; NOT real rain): ``(rain, mask)``.

    Args:
        spec: the scene distribution (None = :data:`PERSPECTIVE_RAIN`).
        size: H = W = size, or (H, W), px.
        n: number of layers.
        seed: int; image i depends only on (spec, size, seed, i), so the first m of n layers equal
            ``synthesize_perspective(spec, size, m, seed)``.
        device: where to render (default CPU); streak parameters are drawn on the CPU (numpy).
        return_parts: also return ``{"streaks": (n,1,H,W), "haze": (n,1,H,W), "wind": (n,) degrees}``.

    Returns:
        rain: float32 (n, 1, H, W) in [0, 1], ``clip(streaks + haze)``: add it like any rain layer
        (``add_rain``). mask: bool (n, 1, H, W) = ``streaks > MASK_THRESHOLD``; the haze is not
        in the mask (it covers the whole frame), so background-region scores also count haze
        that a network leaves in place.
    """
    spec = PERSPECTIVE_RAIN if spec is None else spec
    if not isinstance(spec, PerspectiveRain):
        raise ValueError(f"spec must be a PerspectiveRain or None, got {type(spec).__name__}")
    h, w = _parse_size(size)
    n = _parse_n(n)
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) or int(seed) < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    per_image = [_perspective_image(spec, h, w, int(seed), i) for i in range(n)]
    cat = {k: np.concatenate([p[k] for p in per_image]) for k in ("cx", "cy", "s", "length", "width",
                                                                  "intensity", "angle")}
    owner = np.concatenate([np.full(len(p["cx"]), i) for i, p in enumerate(per_image)])
    # depth layers: equal steps of s between far_scale and 1, blurred from blur[0] to blur[1]
    edges = np.linspace(spec.far_scale, 1.0, _DEPTH_LAYERS + 1)
    layer_of = np.clip(np.searchsorted(edges, cat["s"], side="right") - 1, 0, _DEPTH_LAYERS - 1)
    sigmas = np.linspace(spec.blur[0], spec.blur[1], _DEPTH_LAYERS)
    streaks = torch.zeros((n, 1, h, w), dtype=torch.float32, device=dev)
    for k in range(_DEPTH_LAYERS):
        sel = layer_of == k
        if not sel.any():
            continue
        s = Streaks.make(cx=cat["cx"][sel], cy=cat["cy"][sel], length=cat["length"][sel], width=cat["width"][sel],
                         angle=cat["angle"][sel], intensity=cat["intensity"][sel], image=owner[sel], n_images=n)
        streaks += render_streaks(s, (h, w), blur=float(sigmas[k]), device=dev)
    streaks.clamp_(0.0, 1.0)
    profile = (1.0 - torch.arange(h, dtype=torch.float32, device=dev) / max(h - 1, 1)).pow(1.5)
    strength = torch.tensor([float(p["haze"]) for p in per_image], dtype=torch.float32, device=dev)
    haze = (strength.view(n, 1, 1, 1) * profile.view(1, 1, h, 1)).expand(n, 1, h, w)
    rain_layer = (streaks + haze).clamp(0.0, 1.0)
    mask = streaks > MASK_THRESHOLD
    if return_parts:
        wind = torch.tensor([float(p["wind"]) for p in per_image], dtype=torch.float32)
        return rain_layer, mask, {"streaks": streaks, "haze": haze.contiguous(), "wind": wind}
    return rain_layer, mask
