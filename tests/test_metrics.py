"""Tests of derain_utils.measure.metrics: known answers on constructed triples, invariants, bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from derain_utils.measure import metrics
from derain_utils.measure.metrics import (
    DECOUPLED_KEYS,
    PSNR_CAP,
    decoupled,
    decoupled_batch,
    estimate_mask,
    evaluate_pair,
    psnr,
    rgb_to_y,
    ssim,
)

H = W = 32


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _streak_mask(h: int = H, w: int = W) -> np.ndarray:
    """Three vertical 1-px streaks, rows 4..27: a thin mask well inside the image."""
    m = np.zeros((h, w), dtype=bool)
    m[4:28, [8, 16, 24]] = True
    return m


@pytest.fixture
def triple():
    """B in [0.2, 0.6] so B + rain stays below 1 (no clipping); O = B + 0.35 inside M."""
    rng = _rng(1)
    b = (0.2 + 0.4 * rng.random((H, W, 3))).astype(np.float32)
    m = _streak_mask()
    o = b.copy()
    o[m] += 0.35
    return b, o, m


# ------------------------------------------------------------------------ psnr / ssim
def test_psnr_matches_direct_mse_computation():
    rng = _rng(0)
    a = rng.random((40, 48, 3))
    b = np.clip(a + 0.05 * rng.standard_normal(a.shape), 0, 1)
    mse = np.mean((a - b) ** 2)
    assert psnr(a, b) == pytest.approx(10 * math.log10(1 / mse), abs=1e-6)
    # float32 inputs give the same number (converted to float64 inside)
    assert psnr(a.astype(np.float32), b.astype(np.float32)) == pytest.approx(
        10 * math.log10(1 / np.mean((a.astype(np.float32).astype(np.float64) - b.astype(np.float32)) ** 2)),
        abs=1e-6,
    )
    # data_range scales consistently
    assert psnr(a * 255, b * 255, data_range=255.0) == pytest.approx(psnr(a, b), abs=1e-9)


def test_identical_images_are_capped_not_inf():
    a = _rng(0).random((16, 16, 3))
    assert psnr(a, a) == PSNR_CAP
    assert psnr(a, a, y_channel=True) == PSNR_CAP
    assert ssim(a, a) == pytest.approx(1.0)


def test_psnr_is_symmetric_and_decreases_with_noise():
    rng = _rng(2)
    a = rng.random((24, 24))
    n = rng.standard_normal(a.shape)
    p1, p2 = psnr(a, np.clip(a + 0.01 * n, 0, 1)), psnr(a, np.clip(a + 0.1 * n, 0, 1))
    assert p1 > p2 + 10
    b = np.clip(a + 0.1 * n, 0, 1)
    assert psnr(a, b) == pytest.approx(psnr(b, a))


def test_ssim_uses_wang_gaussian_setting():
    rng = _rng(3)
    a = rng.random((32, 32, 3))
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1)
    expected = structural_similarity(
        a, b, data_range=1.0, channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    default = structural_similarity(a, b, data_range=1.0, channel_axis=-1)
    assert ssim(a, b) == pytest.approx(expected, abs=1e-12)
    assert abs(expected - default) > 1e-4  # the setting matters, so the test can tell them apart
    # RGB SSIM is the mean of the per-channel SSIMs
    per_channel = [ssim(a[..., c], b[..., c]) for c in range(3)]
    assert ssim(a, b) == pytest.approx(np.mean(per_channel), abs=1e-12)


def test_ssim_too_small_image_raises_clearly():
    a = np.zeros((8, 8))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(a, a)


def test_rgb_to_y_of_gray_is_the_affine_map():
    g = _rng(4).random((10, 12))
    expected = (16 + 219 * g) / 255
    np.testing.assert_allclose(rgb_to_y(np.repeat(g[..., None], 3, axis=-1)), expected, atol=1e-12)
    np.testing.assert_allclose(rgb_to_y(g), expected, atol=1e-12)
    np.testing.assert_allclose(rgb_to_y(g[..., None]), expected, atol=1e-12)
    # the extremes of studio-swing luma
    assert rgb_to_y(np.zeros((2, 2, 3)))[0, 0] == pytest.approx(16 / 255)
    assert rgb_to_y(np.ones((2, 2, 3)))[0, 0] == pytest.approx(235 / 255)
    # pure primaries give the BT.601 weights
    red = np.zeros((1, 1, 3))
    red[..., 0] = 1
    assert rgb_to_y(red)[0, 0] == pytest.approx((16 + 65.481) / 255)


def test_y_channel_psnr_is_psnr_of_rgb_to_y():
    rng = _rng(5)
    a = rng.random((20, 20, 3))
    b = np.clip(a + 0.05 * rng.standard_normal(a.shape), 0, 1)
    ya, yb = rgb_to_y(a), rgb_to_y(b)
    assert psnr(a, b, y_channel=True) == pytest.approx(10 * math.log10(1 / np.mean((ya - yb) ** 2)), abs=1e-6)
    assert ssim(a, b, y_channel=True) == pytest.approx(ssim(ya, yb), abs=1e-12)
    # gray: Y differences are the gray differences scaled by 219/255
    g1, g2 = a[..., 0], b[..., 0]
    assert psnr(g1, g2, y_channel=True) == pytest.approx(psnr(g1, g2) - 20 * math.log10(219 / 255), abs=1e-9)


def test_torch_chw_input_equals_numpy_hwc():
    rng = _rng(6)
    a = rng.random((24, 20, 3)).astype(np.float32)
    b = np.clip(a + 0.05 * rng.standard_normal(a.shape), 0, 1).astype(np.float32)
    ta, tb = torch.from_numpy(a).permute(2, 0, 1), torch.from_numpy(b).permute(2, 0, 1)
    assert psnr(ta, tb) == pytest.approx(psnr(a, b), abs=1e-12)
    assert ssim(ta, tb) == pytest.approx(ssim(a, b), abs=1e-12)
    assert psnr(ta[None], b) == pytest.approx(psnr(a, b), abs=1e-12)  # (1, C, H, W) and mixed types
    assert psnr(ta[:1], tb[:1]) == pytest.approx(psnr(a[..., 0], b[..., 0]), abs=1e-12)  # (1, H, W) gray
    np.testing.assert_allclose(rgb_to_y(ta), rgb_to_y(a), atol=1e-12)


def test_gray_with_singleton_channel_equals_2d():
    rng = _rng(7)
    a, b = rng.random((16, 16)), rng.random((16, 16))
    assert psnr(a[..., None], b[..., None]) == pytest.approx(psnr(a, b))
    assert ssim(a[..., None], b) == pytest.approx(ssim(a, b))


@pytest.mark.parametrize(
    "ref, test, match",
    [
        (np.zeros((16, 16, 3)), np.zeros((16, 16)), r"shape mismatch: reference is \(16, 16, 3\).*test is \(16, 16\)"),
        (np.zeros((16, 16, 3)), np.zeros((16, 17, 3)), r"shape mismatch"),
        (np.zeros((16, 16, 3)), np.zeros((16, 16, 3), dtype=np.uint8), r"test has dtype uint8"),
        (np.zeros((16, 16), dtype=bool), np.zeros((16, 16)), r"reference has dtype bool"),
        (np.zeros((16, 16, 3)), np.full((16, 16, 3), 255.0), r"test has values in \[255, 255\], far outside \[0, 1\]"),
        (np.full((16, 16), -1.0), np.zeros((16, 16)), r"reference has values in \[-1, -1\]"),
        (np.zeros((3, 16, 16)), np.zeros((3, 16, 16)), r"reference has shape \(3, 16, 16\); numpy images are channels-last"),
        (np.zeros((16, 16, 3)), np.full((16, 16, 3), np.nan), r"test contains NaN"),
        (torch.zeros(5, 16, 16), torch.zeros(5, 16, 16), r"reference is a torch tensor of shape \(5, 16, 16\)"),
        (torch.zeros(3, 16, 16, dtype=torch.uint8), torch.zeros(3, 16, 16), r"reference has dtype torch.uint8"),
    ],
)
def test_bad_input_raises_naming_the_argument(ref, test, match):
    with pytest.raises(ValueError, match=match):
        psnr(ref, test)
    with pytest.raises(ValueError, match=match):
        ssim(ref, test)


def test_slight_overshoot_is_accepted_but_bad_data_range_is_not():
    a = np.zeros((16, 16))
    b = np.full((16, 16), 1.02)  # a network output that overshoots a little
    assert psnr(a, b) == pytest.approx(10 * math.log10(1 / 1.02**2), abs=1e-9)
    with pytest.raises(ValueError, match="data_range"):
        psnr(a, a, data_range=0)
    with pytest.raises(ValueError, match="data_range"):
        ssim(a, a, data_range="white")


# -------------------------------------------------------------------------- decoupled
def test_perfect_output_removes_all_rain(triple):
    b, o, m = triple
    r = decoupled(b, o, b, m)
    assert set(r) == set(DECOUPLED_KEYS)
    assert r["removal"] == 1.0
    assert r["rain_mse"] == 0.0 and r["bg_mse"] == 0.0
    assert r["rain_psnr"] == PSNR_CAP and r["bg_psnr"] == PSNR_CAP
    assert r["mask_fraction"] == pytest.approx(3 * 24 / (H * W))


def test_identity_output_removes_nothing(triple):
    b, o, m = triple
    r = decoupled(b, o, o, m)
    assert r["removal"] == pytest.approx(0.0, abs=1e-12)
    assert r["rain_mse"] == pytest.approx(0.35**2, rel=1e-5)  # float32 images
    assert r["bg_mse"] == 0.0  # rain only inside M


def test_half_way_output_removes_three_quarters(triple):
    b, o, m = triple
    b64, o64 = b.astype(np.float64), o.astype(np.float64)
    d = b64 + 0.5 * (o64 - b64)
    assert decoupled(b64, o64, d, m)["removal"] == pytest.approx(0.75, abs=1e-12)


def test_output_worse_than_input_is_negative(triple):
    b, o, m = triple
    d = b + 1.2 * (o - b)  # strengthens the rain by 20% (max 0.6 + 1.2 * 0.35 = 1.02: unclipped)
    r = decoupled(b, o, d, m)
    assert r["removal"] == pytest.approx(1 - 1.2**2, abs=1e-5)
    assert r["removal"] < 0


def test_background_and_rain_errors_are_separated(triple):
    b, o, m = triple
    far = np.zeros((H, W), dtype=bool)
    far[:, 0:3] = True  # columns 0-2: at least 5 px from the nearest streak (column 8)
    d_bg = b.copy()
    d_bg[far] += 0.1
    r = decoupled(b, o, d_bg, m, margin=2)
    assert r["rain_mse"] == 0.0
    assert r["bg_mse"] == pytest.approx(0.01 * far.sum() / (~_dilate(m, 2)).sum(), rel=1e-5)
    assert r["removal"] == 1.0
    d_rain = b.copy()
    d_rain[m] += 0.1  # error only on the rain pixels
    r = decoupled(b, o, d_rain, m, margin=2)
    assert r["bg_mse"] == 0.0
    assert r["rain_mse"] == pytest.approx(0.01, rel=1e-4)


def _dilate(m: np.ndarray, margin: int) -> np.ndarray:
    """Reference dilation by explicit shifts (independent of scipy)."""
    h, w = m.shape
    out = np.zeros_like(m)
    for dy in range(-margin, margin + 1):
        for dx in range(-margin, margin + 1):
            shifted = np.zeros_like(m)
            shifted[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = m[
                max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
            ]
            out |= shifted
    return out


def test_margin_excludes_the_streak_edges(triple):
    b, o, m = triple
    # a soft halo exactly 1 px beside every streak (below the mask threshold in real data)
    halo = _dilate(m, 1) & ~m
    d = b.copy()
    d[halo] += 0.2
    assert decoupled(b, o, d, m, margin=0)["bg_mse"] > 0  # margin 0: the halo counts as background
    r1 = decoupled(b, o, d, m, margin=1)
    assert r1["bg_mse"] == 0.0  # margin 1 hides it
    # a single damaged pixel k px left of a streak counts as background iff k > margin,
    # and bg_mse divides by exactly the reference count of background pixels
    for margin in (0, 1, 2, 3):
        n_bg = (~_dilate(m, margin)).sum()
        for k in (1, 2, 3, 4):
            d = b.astype(np.float64).copy()
            d[15, 8 - k] += 0.1
            r = decoupled(b, o, d, m, margin=margin)
            expected = 0.01 / n_bg if k > margin else 0.0
            assert r["bg_mse"] == pytest.approx(expected, rel=1e-5, abs=1e-15), (margin, k)
            assert r["rain_mse"] == 0.0
    # margin so large that no background remains -> nan, not an error
    assert math.isnan(decoupled(b, o, b, m, margin=20)["bg_mse"])
    assert math.isnan(decoupled(b, o, b, m, margin=20)["bg_psnr"])


def test_empty_mask_or_no_rain_gives_nan_removal(triple):
    b, o, m = triple
    empty = np.zeros((H, W), dtype=bool)
    r = decoupled(b, o, o, empty)
    assert math.isnan(r["removal"]) and math.isnan(r["rain_mse"]) and math.isnan(r["rain_psnr"])
    assert r["mask_fraction"] == 0.0
    assert math.isnan(decoupled(b, b, b, m)["removal"])  # O == B inside M: nothing to remove


def test_mask_shapes_and_bad_masks(triple):
    b, o, m = triple
    ref = decoupled(b, o, o, m)
    for variant in (m[..., None], m[None], torch.from_numpy(m)[None, None]):
        assert decoupled(b, o, o, variant) == ref
    with pytest.raises(ValueError, match="mask has dtype float"):
        decoupled(b, o, o, m.astype(np.float32))
    with pytest.raises(ValueError, match=r"mask has shape \(16, 16\)"):
        decoupled(b, o, o, np.zeros((16, 16), dtype=bool))
    with pytest.raises(ValueError, match=r"mask has shape \(32, 32, 3\)"):
        decoupled(b, o, o, np.zeros((H, W, 3), dtype=bool))
    with pytest.raises(ValueError, match="margin"):
        decoupled(b, o, o, m, margin=-1)
    with pytest.raises(ValueError, match="margin"):
        decoupled(b, o, o, m, margin=1.5)
    with pytest.raises(ValueError, match=r"shape mismatch: background .* derained is \(32, 32\)"):
        decoupled(b, o, b[..., 0], m)
    with pytest.raises(ValueError, match="rainy has dtype uint8"):
        decoupled(b, (o * 255).astype(np.uint8), b, m)


def test_decoupled_gray_images(triple):
    b, o, m = triple
    g = decoupled(b[..., 0], o[..., 0], b[..., 0] + 0.5 * (o[..., 0] - b[..., 0]), m)
    assert g["removal"] == pytest.approx(0.75, abs=1e-6)


# ---------------------------------------------------------------------- batch version
def _random_batch(n: int = 5, c: int = 3, h: int = 24, w: int = 28, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    b = torch.rand(n, c, h, w, generator=gen) * 0.7
    rain = (torch.rand(n, 1, h, w, generator=gen) > 0.85).float() * torch.rand(n, 1, h, w, generator=gen) * 0.3
    m = rain > 0.02
    o = (b + rain).clamp(0, 1)
    d = (b + 0.3 * rain + 0.02 * torch.randn(n, c, h, w, generator=gen)).clamp(0, 1)
    return b, o, d, m


@pytest.mark.parametrize("margin", [0, 1, 2])
@pytest.mark.parametrize("channels", [1, 3])
def test_decoupled_batch_matches_per_image(margin, channels):
    b, o, d, m = _random_batch(c=channels, seed=margin)
    # include the edge cases: a perfect output, an empty mask, no rain inside the mask
    d[1] = b[1]
    m[2] = False
    o[3] = b[3]
    out = decoupled_batch(b, o, d, m, margin=margin)
    assert set(out) == set(DECOUPLED_KEYS)
    for key, val in out.items():
        assert val.shape == (5,), key
    for i in range(5):
        ref = decoupled(b[i], o[i], d[i], m[i, 0], margin=margin)
        for key in DECOUPLED_KEYS:
            got, want = float(out[key][i]), ref[key]
            if math.isnan(want):
                assert math.isnan(got), (i, key)
            else:
                assert got == pytest.approx(want, rel=1e-5, abs=1e-5), (i, key)
    assert float(out["removal"][1]) == 1.0 and float(out["rain_psnr"][1]) == PSNR_CAP
    assert math.isnan(float(out["removal"][2])) and math.isnan(float(out["removal"][3]))


def test_decoupled_batch_accepts_n_h_w_mask_and_rejects_bad_input():
    b, o, d, m = _random_batch()
    a = decoupled_batch(b, o, d, m)
    c = decoupled_batch(b, o, d, m[:, 0])
    for key in DECOUPLED_KEYS:
        torch.testing.assert_close(a[key], c[key], equal_nan=True)
    with pytest.raises(ValueError, match="mask has dtype torch.float32"):
        decoupled_batch(b, o, d, m.float())
    with pytest.raises(ValueError, match=r"mask has shape \(5, 3, 24, 28\)"):
        decoupled_batch(b, o, d, m.expand(-1, 3, -1, -1))
    with pytest.raises(ValueError, match=r"shape mismatch: background is \(5, 3, 24, 28\), derained"):
        decoupled_batch(b, o, d[:4], m)
    with pytest.raises(ValueError, match=r"derained has values in \[.*\], far outside"):
        decoupled_batch(b, o, d * 255, m)
    with pytest.raises(ValueError, match=r"rainy has shape \(3, 24, 28\)"):
        decoupled_batch(b, o[0], d, m)


# --------------------------------------------------------------------- mask estimation
def test_estimate_mask_recovers_streaks_despite_noise_and_darkening():
    rng = _rng(8)
    b = 0.1 + 0.6 * rng.random((H, W, 3))
    m = _streak_mask()
    o = b.copy()
    o[m] += 0.25
    # JPEG-like noise of +-3 grey levels per channel, and a darker colour jitter region
    o += rng.uniform(-3 / 255, 3 / 255, size=o.shape)
    o[:4, :] -= 0.2  # rows 0-3: above the streaks (rows 4-27)
    o = np.clip(o, 0, 1)
    est = estimate_mask(o, b)
    assert est.shape == (H, W) and est.dtype == bool
    np.testing.assert_array_equal(est, m)
    # unsigned thresholding also flags the darkened region: the reason signed is the default
    unsigned = estimate_mask(o, b, signed=False)
    assert unsigned[:4, :].all() and (unsigned & ~m).sum() == 4 * W
    # a threshold above the rain strength finds nothing
    assert not estimate_mask(o, b, threshold=0.5).any()


def test_estimate_mask_gray_torch_and_bad_threshold():
    b = torch.full((1, 16, 16), 0.3)
    o = b.clone()
    o[0, 4, 5] = 0.6
    est = estimate_mask(o, b)
    assert est.sum() == 1 and est[4, 5]
    with pytest.raises(ValueError, match="threshold"):
        estimate_mask(o, b, threshold=-0.1)
    with pytest.raises(ValueError, match="shape mismatch: rainy"):
        estimate_mask(o, torch.zeros(3, 16, 16))


# ------------------------------------------------------------------------ evaluate_pair
def test_evaluate_pair_rgb_known_answers(triple):
    b, o, m = triple
    r = evaluate_pair(b, o, b, m)
    assert r["mask_source"] == "given"
    assert r["psnr"] == PSNR_CAP and r["psnr_y"] == PSNR_CAP and r["ssim"] == pytest.approx(1.0)
    assert r["input_psnr"] == pytest.approx(psnr(b, o))
    assert r["input_ssim"] == pytest.approx(ssim(b, o))
    assert r["removal"] == 1.0
    # mask estimated from the pair: the constructed rain is found exactly
    e = evaluate_pair(b, o, o)
    assert e["mask_source"] == "estimated"
    assert e["mask_fraction"] == pytest.approx(m.mean())
    assert e["removal"] == pytest.approx(0.0, abs=1e-12)
    assert e["psnr"] == pytest.approx(e["input_psnr"])
    expected_keys = {"psnr", "ssim", "psnr_y", "ssim_y", "input_psnr", "input_ssim", "mask_source", *DECOUPLED_KEYS}
    assert set(e) == expected_keys


def test_evaluate_pair_gray_has_nan_y_scores(triple):
    b, o, m = triple
    r = evaluate_pair(b[..., 0], o[..., 0], b[..., 0], m)
    assert math.isnan(r["psnr_y"]) and math.isnan(r["ssim_y"])
    assert r["psnr"] == PSNR_CAP
    with pytest.raises(ValueError, match="shape mismatch: background"):
        evaluate_pair(b, o[..., 0], b, m)


def test_metrics_are_deterministic(triple):
    b, o, m = triple
    d = np.clip(b + 0.3 * (o - b) + 0.01, 0, 1)
    assert evaluate_pair(b, o, d, m) == evaluate_pair(b, o, d, m)
    assert metrics.PSNR_CAP == 100.0


@pytest.mark.shared_data
def test_estimate_mask_default_covers_rain100l_rain_energy(shared_data):
    """The calibration claimed in estimate_mask's docstring, on the 8 Rain100L dev pairs."""
    from derain_utils.synth.backgrounds import load_image

    inputs = sorted((shared_data / "rain100L_dev" / "input").glob("*.png"))
    assert len(inputs) == 8
    for path in inputs:
        o = load_image(path)
        b = load_image(shared_data / "rain100L_dev" / "target" / path.name)
        m = estimate_mask(o, b)
        energy = ((o.astype(np.float64) - b) ** 2).sum(-1)
        assert energy[m].sum() / energy.sum() >= 0.85, path.name
        assert 0.02 < m.mean() < 0.2, path.name  # selective: a minority of pixels
        r = evaluate_pair(b, o, o)  # doing nothing: removal 0 on the estimated mask
        assert r["removal"] == pytest.approx(0.0, abs=1e-12) and r["mask_source"] == "estimated"
