"""Speed of rain synthesis (pytest-benchmark).

The project runs pytest with ``--benchmark-disable``, so these execute once as plain tests (and
check their outputs). To measure: ``pytest --benchmark-enable tests/test_bench_rain.py``.
The reference is albumentations' ``RandomRain`` (a per-image loop of OpenCV line drawing: integer,
aliased lines, one slant per image, a box blur, and a darkening of the image) on the same number of
128 x 128 RGB uint8 images; it is skipped where albumentations is not installed (it is not a project
dependency). Ours draws anti-aliased streaks with per-streak parameters and a gaussian blur.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from derain_utils.synth import rain

N, SIZE = 256, 128


def test_bench_synthesize_small(benchmark):
    """256 rain layers of 128 x 128 from the training preset, batched on CPU."""
    layers, mask = benchmark(rain.synthesize, "small", SIZE, N, 0)
    assert layers.shape == (N, 1, SIZE, SIZE) and mask.dtype == torch.bool
    assert 0.05 < float(mask.float().mean()) < 0.5


def test_bench_synthesize_and_composite_small(benchmark):
    """Like-for-like with RandomRain: make the rain and add it to 256 RGB backgrounds."""
    backgrounds = torch.rand(N, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))

    def run() -> torch.Tensor:
        layers, _ = rain.synthesize("small", SIZE, N, 0)
        return rain.add_rain(backgrounds, layers)

    rainy = benchmark(run)
    assert rainy.shape == backgrounds.shape and float(rainy.max()) <= 1.0


def test_bench_albumentations_random_rain(benchmark):
    A = pytest.importorskip("albumentations")
    images = np.random.default_rng(0).integers(0, 256, size=(N, SIZE, SIZE, 3), dtype=np.uint8)
    # "heavy" draws H = 128 drops per image, close to the ~115 streak centres per 128 x 128 image of
    # "small" (density 0.007 on average); length 10 and slant +-10 px match small's mean length/angle
    transform = A.RandomRain(p=1.0, rain_type="heavy", drop_length=10, drop_width=1, slant_range=(-10, 10))

    def run() -> list[np.ndarray]:
        return [transform(image=img)["image"] for img in images]

    out = benchmark(run)
    assert len(out) == N and out[0].shape == (SIZE, SIZE, 3)
    assert not np.array_equal(out[0], images[0])
