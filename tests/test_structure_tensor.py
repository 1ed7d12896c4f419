"""realscores.structure_tensor is scikit-image's structure tensor of the pre-smoothed layer, bitwise."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from derain_utils.measure import realscores


def _by_hand(a: np.ndarray, sigma: float, rho: float) -> tuple[np.ndarray, ...]:
    """The textbook definition: Sobel gradients of the smoothed layer, outer products smoothed by rho."""
    s = ndimage.gaussian_filter(a, sigma) if sigma > 0 else a
    gx, gy = ndimage.sobel(s, axis=1), ndimage.sobel(s, axis=0)
    return tuple(ndimage.gaussian_filter(p, rho) if rho > 0 else p for p in (gx * gx, gx * gy, gy * gy))


@pytest.mark.parametrize("sigma, rho", [(0.0, 0.0), (1.0, 4.0), (2.5, 1.0), (0.0, 3.0)])
def test_structure_tensor_matches_the_definition(sigma, rho):
    a = np.random.default_rng(0).random((23, 31))
    for ours, ref in zip(realscores.structure_tensor(a, sigma=sigma, rho=rho), _by_hand(a, sigma, rho)):
        np.testing.assert_array_equal(ours, ref)


def test_a_vertical_stroke_has_horizontal_gradients_only():
    a = np.zeros((21, 21))
    a[:, 10] = 1.0
    jxx, jxy, jyy = realscores.structure_tensor(a, sigma=1.0, rho=2.0)
    assert jxx[10, 10] > 0 and np.allclose(jyy, 0) and np.allclose(jxy, 0)
