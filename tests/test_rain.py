"""Tests for derain_utils.synth.rain: spec validation, preset geometry, rendering known answers, determinism."""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from derain_utils.synth import perspective, rain
from derain_utils.synth.rain import PRESETS, RainSpec, Streaks

SMALL = PRESETS["small"]


def _spec(**kw) -> RainSpec:
    base = dict(density=(0.01, 0.02), length=(5, 10), width=(1, 2), angles=((-10, 10),), intensity=(0.3, 0.6))
    base.update(kw)
    return RainSpec(**base)


def _orientation_deg(layers: torch.Tensor) -> float:
    """Dominant streak angle (degrees from vertical, + = top leans right) from the structure tensor.

    Gradients across a streak dominate; their mean doubled angle gives the streak normal
    n = (cos a, sin a) in (x right, y down) axes, whose angle from the x axis equals a (mod 180).
    Sobel gradients after a 1-px gaussian: plain central differences on 1-px lines are biased
    towards the diagonals by several degrees (grid anisotropy of the estimator, not of the rain).
    """
    x = ndimage.gaussian_filter(layers[:, 0].double().numpy(), (0, 1.0, 1.0))
    gx, gy = ndimage.sobel(x, axis=2), ndimage.sobel(x, axis=1)
    jxx, jyy, jxy = (gx * gx).sum(), (gy * gy).sum(), (gx * gy).sum()
    phi = 0.5 * math.degrees(math.atan2(2 * float(jxy), float(jxx - jyy)))
    return (phi + 90.0) % 180.0 - 90.0


# ------------------------------------------------------------------------------------------------
# RainSpec validation and normalisation


@pytest.mark.parametrize(
    "field, value",
    [
        ("density", (0.0, 0.1)),
        ("density", (0.2, 0.1)),
        ("density", (0.1, 1.5)),
        ("density", ("a", 0.1)),
        ("density", (float("nan"), 0.1)),
        ("density", (0.1,)),
        ("density", 0.1),
        ("length", (0.0, 5.0)),
        ("length", (-3.0, 5.0)),
        ("length", (5.0, float("inf"))),
        ("width", (0.5, 1.0)),
        ("width", (3.0, 2.0)),
        ("intensity", (0.0, 0.5)),
        ("intensity", (0.5, 1.2)),
        ("intensity", (True, 0.5)),
        ("angles", ()),
        ("angles", ((10.0, -10.0),)),
        ("angles", ((-100.0, 0.0),)),
        ("angles", ((0.0, 95.0), (10.0, 20.0))),
        ("angles", (("a", 1.0),)),
        ("angles", "vertical"),
        ("blur", -1.0),
        ("blur", "x"),
        ("blur", float("nan")),
        ("name", 3),
        ("description", None),
    ],
)
def test_spec_rejects_bad_field_and_names_it(field, value):
    with pytest.raises(ValueError, match=field):
        _spec(**{field: value})


def test_spec_normalises_lists_to_hashable_tuples():
    a = _spec(density=[0.01, 0.02], length=[5, 10], angles=[[30, 60], [-60, -30]])
    b = _spec(length=(5.0, 10.0), angles=((-60, -30), (30, 60)))
    assert a == b and hash(a) == hash(b)
    assert a.angles == ((-60.0, -30.0), (30.0, 60.0))  # sorted
    assert isinstance(a.density, tuple) and all(isinstance(v, float) for v in a.density)
    assert _spec(angles=(-10, 10)).angles == ((-10.0, 10.0),)  # a flat pair is one range
    assert len({a, b, SMALL}) == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.blur = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_json_round_trip(name):
    spec = PRESETS[name]
    back = RainSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert back == spec and hash(back) == hash(spec)


def test_from_dict_rejects_unknown_and_missing_keys():
    d = SMALL.to_dict()
    with pytest.raises(ValueError, match="colour"):
        RainSpec.from_dict({**d, "colour": "white"})
    d.pop("length")
    with pytest.raises(ValueError, match="length"):
        RainSpec.from_dict(d)
    with pytest.raises(ValueError, match="mapping"):
        RainSpec.from_dict([("density", (0.1, 0.2))])  # type: ignore[arg-type]


def test_scaled_multiplies_lengths_and_divides_density():
    s = SMALL.scaled(2.0)
    assert s.length == (12.0, 28.0) and s.width == (2.0, 2.0) and s.blur == 1.0
    assert s.density == pytest.approx((0.001, 0.0025))
    assert s.angles == SMALL.angles and s.intensity == SMALL.intensity and s.name == SMALL.name
    assert SMALL.scaled(1) is SMALL
    assert SMALL.scaled(0.5).width == (1.0, 1.0)  # widths never drop below the 1-px floor
    assert rain.spec_for_size("small", 256) == SMALL.scaled(4.0)
    for bad in (0, -1.0, float("nan"), "2"):
        with pytest.raises(ValueError, match="factor"):
            SMALL.scaled(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="factor"):
        _spec(density=(0.5, 1.0)).scaled(0.5)  # density would exceed 1


def test_scaled_keeps_rain_coverage():
    """The same preset, scaled to a 2x larger image, covers about the same fraction of it."""
    r64, _ = rain.synthesize(SMALL, 64, 96, seed=0)
    r128, _ = rain.synthesize(SMALL.scaled(2.0), 128, 24, seed=1)
    ratio = float(r128.mean()) / float(r64.mean())
    assert 0.85 < ratio < 1.15, ratio


# ------------------------------------------------------------------------------------------------
# presets and the in-/out-of-distribution relation


def test_preset_names_and_roles():
    assert {"small", "slanted", "long_wide", "dense", "medium", "large", "mixed"} <= set(PRESETS)
    assert rain.TRAIN_PRESET == "small" and rain.OOD_PRESETS == ("slanted", "long_wide", "dense")
    assert set(rain.ROLES) == set(PRESETS)
    for name, spec in PRESETS.items():
        assert spec.name == name and spec.description
        if name not in (rain.TRAIN_PRESET, "mixed"):  # the documented role agrees with the geometry
            assert (rain.ROLES[name] == "OOD test") == bool(rain.ood_fields(rain.TRAIN_PRESET, name)), name


def test_small_is_thin_short_near_vertical():
    assert SMALL.width == (1.0, 1.0) and SMALL.length[1] <= 14 and SMALL.angles == ((-10.0, 10.0),)


def test_ood_presets_do_not_overlap_training_rain():
    for name in rain.OOD_PRESETS:
        assert not rain.overlaps("small", name), name
        assert not rain.overlaps(name, "small"), name
    assert rain.ood_fields("small", "slanted") == ["angles"]
    assert rain.ood_fields("small", "long_wide") == ["length", "width", "angles"]
    assert rain.ood_fields("small", "dense") == ["density", "width"]
    assert rain.overlaps("small", "medium") and rain.overlaps("medium", "small")
    assert not rain.overlaps("small", "large")
    assert rain.ood_fields("small", "small") == []


def test_mixed_contains_every_preset():
    for name in PRESETS:
        assert rain.contains("mixed", name), name
        assert rain.overlaps("mixed", name), name
    assert not rain.contains("small", "mixed")
    assert not rain.contains("small", "slanted")


def test_overlap_uses_closed_ranges_and_angle_unions():
    a = _spec(length=(5, 10))
    assert rain.overlaps(a, _spec(length=(10, 20)))  # touching ends overlap
    assert rain.ood_fields(a, _spec(length=(10.5, 20))) == ["length"]
    two = _spec(angles=((-60, -30), (30, 60)))
    assert rain.overlaps(two, _spec(angles=((50, 70),)))
    assert rain.ood_fields(two, _spec(angles=((-20, 20),))) == ["angles"]
    # a range inside the union of two touching ranges is contained, though in neither alone
    assert rain.contains(_spec(angles=((-40, 0), (0, 40))), _spec(angles=((-10, 10),)))
    assert not rain.contains(two, _spec(angles=((-10, 10),)))


def test_get_spec():
    assert rain.get_spec("small") is SMALL
    custom = _spec()
    assert rain.get_spec(custom) is custom
    assert rain.get_spec(custom.to_dict()) == custom
    with pytest.raises(ValueError, match="small") as err:
        rain.get_spec("drizzle")
    assert "drizzle" in str(err.value) and "long_wide" in str(err.value)
    with pytest.raises(ValueError, match="spec"):
        rain.get_spec(3)  # type: ignore[arg-type]


def test_presets_table_and_docstring_agree():
    df = rain.presets_table()
    assert list(df["name"]) == list(PRESETS)
    assert {"role", "density", "length", "width", "angle", "intensity", "blur", "ood_fields"} <= set(df.columns)
    row = df.set_index("name").loc["slanted"]
    assert row["angle"] == "[-60, -30] U [30, 60]" and row["ood_fields"] == "angles" and not row["in_distribution"]
    assert bool(df.set_index("name").loc["medium", "in_distribution"])
    # the table in the module docstring is the one the code produces (no drift)
    assert rain.presets_markdown() in rain.__doc__


# ------------------------------------------------------------------------------------------------
# sampling streaks


def test_sampled_parameters_lie_in_their_ranges():
    spec = _spec(length=(4, 9), width=(1, 3), intensity=(0.2, 0.7), angles=((-60, -30), (30, 60)))
    s = rain.sample_streaks(spec, (40, 56), n=50, seed=0)
    assert len(s) > 500 and s.n_images == 50
    assert int(s.image.min()) == 0 and int(s.image.max()) == 49
    assert bool(torch.all(s.image[1:] >= s.image[:-1]))  # image-major order
    for key, (lo, hi) in (("length", spec.length), ("width", spec.width), ("intensity", spec.intensity)):
        t = getattr(s, key)
        assert float(t.min()) >= lo and float(t.max()) <= hi, key
    a = s.angle.abs()
    assert bool(torch.all((a >= 30) & (a <= 60)))
    assert 0.4 < float((s.angle > 0).float().mean()) < 0.6
    # centres fill the frame and a margin around it, so streaks enter from outside
    assert float(s.cx.min()) < -0.5 and float(s.cx.max()) > 55.5
    assert float(s.cy.min()) < -0.5 and float(s.cy.max()) > 39.5


def test_angle_ranges_are_weighted_by_length():
    s = rain.sample_streaks(_spec(angles=((0, 10), (20, 50))), 64, n=40, seed=1)
    frac_wide = float((s.angle >= 20).float().mean())
    assert abs(frac_wide - 0.75) < 0.04, frac_wide
    assert bool(torch.all((s.angle <= 10) | (s.angle >= 20)))
    s = rain.sample_streaks(_spec(angles=((30, 30),)), 64, n=4, seed=1)
    assert bool(torch.all(s.angle == 30))
    s = rain.sample_streaks(_spec(angles=((-30, -30), (30, 30))), 64, n=40, seed=1)
    assert bool(torch.all(s.angle.abs() == 30)) and 0.4 < float((s.angle > 0).float().mean()) < 0.6


@pytest.mark.parametrize("density", [0.005, 0.02])
def test_streak_count_matches_density(density):
    """``density`` = expected streak centres per pixel: count centres that fall inside the frame."""
    h, w, n = 64, 80, 40
    s = rain.sample_streaks(_spec(density=(density, density)), (h, w), n=n, seed=2)
    inside = (s.cx >= -0.5) & (s.cx < w - 0.5) & (s.cy >= -0.5) & (s.cy < h - 0.5)
    per_pixel = float(inside.sum()) / (n * h * w)
    assert per_pixel == pytest.approx(density, rel=0.08)


def test_per_image_density_is_drawn_from_the_range():
    spec = _spec(density=(0.002, 0.02))
    s = rain.sample_streaks(spec, 64, n=200, seed=3)
    counts = torch.bincount(s.image, minlength=200).double()
    area = (64 + 2 * rain._margin(spec)) ** 2
    assert float(counts.mean()) == pytest.approx(0.011 * area, rel=0.06)
    assert float(counts.min()) < 0.004 * area and float(counts.max()) > 0.018 * area  # spread over the range


# ------------------------------------------------------------------------------------------------
# rendering: known answers


def test_single_streak_mass_core_and_sign_convention():
    # vertical, width 2, on pixel centres: the core is exactly the intensity, mass = I * w * (L - fade)
    v = rain.render_streaks(Streaks.make(cx=32, cy=32, length=20, width=2, angle=0, intensity=0.7), 64, blur=0)
    core = v[0, 0, 25:39, 32]
    assert torch.allclose(core, torch.full_like(core, 0.7), atol=1e-5)
    assert float(v.sum()) == pytest.approx(0.7 * 2 * (20 - 2), rel=1e-4)
    assert float(v[0, 0, :, :30].sum()) == 0.0 and float(v[0, 0, :10].sum()) == 0.0
    # + angle: the top of the streak leans right (clockwise from vertical)
    for angle, sign in ((30.0, 1.0), (-30.0, -1.0)):
        r = rain.render_streaks(Streaks.make(cx=32, cy=32, length=30, angle=angle), 64, blur=0)[0, 0]
        rows, cols = torch.nonzero(r > 0.05, as_tuple=True)
        top, bottom = cols[rows < 28].float().mean(), cols[rows > 36].float().mean()
        assert sign * float(top - bottom) > 8.0, (angle, top, bottom)


def test_single_streak_principal_axis_matches_angle():
    for angle in (-45.0, -20.0, 0.0, 15.0, 40.0):
        r = rain.render_streaks(Streaks.make(cx=40, cy=40, length=40, width=1.5, angle=angle), 80, blur=0.5)[0, 0]
        yy, xx = torch.meshgrid(torch.arange(80.0), torch.arange(80.0), indexing="ij")
        m = r / r.sum()
        mx, my = (m * xx).sum(), (m * yy).sum()
        cxx, cyy, cxy = (m * (xx - mx) ** 2).sum(), (m * (yy - my) ** 2).sum(), (m * (xx - mx) * (yy - my)).sum()
        _, evecs = torch.linalg.eigh(torch.stack([torch.stack([cxx, cxy]), torch.stack([cxy, cyy])]).double())
        vx, vy = evecs[:, 1]  # major axis
        measured = math.degrees(math.atan2(float(vx), -float(vy)))
        measured = (measured + 90) % 180 - 90
        assert measured == pytest.approx(angle, abs=0.5), (angle, measured)
        assert float(mx) == pytest.approx(40, abs=0.05) and float(my) == pytest.approx(40, abs=0.05)


@pytest.mark.parametrize("angle", [-30.0, 0.0, 30.0])
def test_layer_orientation_matches_spec(angle):
    spec = _spec(angles=((angle, angle),), length=(10, 16), width=(1, 1), density=(0.004, 0.006))
    layers, _ = rain.synthesize(spec, 64, n=16, seed=4)
    assert _orientation_deg(layers) == pytest.approx(angle, abs=2.5)


def test_slanted_preset_is_slanted_and_small_is_not():
    sl, _ = rain.synthesize("slanted", 64, n=32, seed=5)
    angles = rain.sample_streaks("slanted", 64, n=32, seed=5).angle
    assert bool(torch.all((angles.abs() >= 30) & (angles.abs() <= 60)))
    only_pos, _ = rain.synthesize(dataclasses.replace(PRESETS["slanted"], angles=((30, 60),)), 64, 16, seed=5)
    assert 35 < _orientation_deg(only_pos) < 55  # mean of U(30, 60) is 45
    sm, _ = rain.synthesize("small", 64, n=32, seed=5)
    assert abs(_orientation_deg(sm)) < 3
    # streaks leaning both ways cancel in the structure tensor; the ratio of vertical to horizontal
    # variation still tells them apart (a vertical streak varies almost only across x)
    gy_sl = (sl[..., 1:, :] - sl[..., :-1, :]).abs().sum() / (sl[..., :, 1:] - sl[..., :, :-1]).abs().sum()
    gy_sm = (sm[..., 1:, :] - sm[..., :-1, :]).abs().sum() / (sm[..., :, 1:] - sm[..., :, :-1]).abs().sum()
    assert float(gy_sl) > 2 * float(gy_sm)


def test_long_wide_covers_more_area_per_streak_than_small():
    def area_per_streak(name: str) -> float:
        spec = dataclasses.replace(PRESETS[name], density=(0.0005, 0.0005))  # sparse: streaks rarely touch
        s = rain.sample_streaks(spec, 128, n=16, seed=6)
        _, mask = rain.synthesize(spec, 128, n=16, seed=6)
        # streaks that leave the frame are balanced by those that enter it: count centres inside
        inside = (s.cx >= -0.5) & (s.cx < 127.5) & (s.cy >= -0.5) & (s.cy < 127.5)
        return float(mask.sum()) / float(inside.sum())

    small, long_wide = area_per_streak("small"), area_per_streak("long_wide")
    assert 15 < small < 60 and long_wide > 2.5 * small, (small, long_wide)


def test_mask_fraction_and_mean_increase_with_density():
    fracs, means = [], []
    for d in (0.002, 0.006, 0.018):
        layers, mask = rain.synthesize(_spec(density=(d, d)), 64, n=16, seed=7)
        fracs.append(float(mask.float().mean()))
        means.append(float(layers.mean()))
    assert fracs[0] < fracs[1] < fracs[2]
    assert means[1] / means[0] == pytest.approx(3, rel=0.25)  # sparse rain: mass ~ number of streaks


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_gives_valid_layers(name):
    layers, mask = rain.synthesize(name, 48, n=8, seed=8)
    assert layers.shape == (8, 1, 48, 48) and layers.dtype == torch.float32
    assert mask.shape == layers.shape and mask.dtype == torch.bool
    assert float(layers.min()) >= 0.0 and float(layers.max()) <= 1.0
    assert torch.equal(mask, layers > rain.MASK_THRESHOLD)
    assert 0.01 < float(mask.float().mean()) < 0.95
    assert bool((layers.flatten(1).amax(1) > 0.1).all())  # every image has visible rain


def test_blur_makes_the_layer_smoother_and_keeps_its_mass():
    s = rain.sample_streaks(SMALL, 64, n=8, seed=9)
    sharp = rain.render_streaks(s, 64, blur=0.0)
    soft = rain.render_streaks(s, 64, blur=1.0)
    tv = lambda x: float((x[..., 1:, :] - x[..., :-1, :]).abs().sum() + (x[..., 1:] - x[..., :-1]).abs().sum())  # noqa: E731
    assert tv(soft) < 0.7 * tv(sharp)
    assert float(soft.max()) < float(sharp.max())
    # a gaussian moves mass but does not create or destroy it (streaks cross the border both ways)
    assert float(soft.sum()) == pytest.approx(float(sharp.sum()), rel=0.03)
    one = Streaks.make(cx=32, cy=32, length=12, angle=20, intensity=0.5)
    assert float(rain.render_streaks(one, 64, blur=1.5).sum()) == pytest.approx(
        float(rain.render_streaks(one, 64, blur=0).sum()), rel=1e-4
    )


def test_rain_is_uniform_over_the_frame():
    """Streaks enter from outside the frame: the border is as rainy as the centre."""
    layers, _ = rain.synthesize(SMALL, 64, n=128, seed=10)
    prof = layers.mean(dim=(0, 1, 2))  # mean over columns
    border, centre = float(prof[:4].mean() + prof[-4:].mean()) / 2, float(prof[24:40].mean())
    assert border == pytest.approx(centre, rel=0.15)


def test_render_rejects_bad_streaks_and_blur():
    with pytest.raises(ValueError, match="blur"):
        rain.render_streaks(Streaks.make(cx=1, cy=1, length=3), 8, blur=-1)
    with pytest.raises(ValueError, match="length"):
        Streaks.make(cx=1, cy=1, length=0)
    with pytest.raises(ValueError, match="image"):
        Streaks.make(cx=1, cy=1, length=3, image=2, n_images=2)
    empty = Streaks.make(cx=[], cy=[], length=[], n_images=3)
    assert torch.equal(rain.render_streaks(empty, (5, 7)), torch.zeros(3, 1, 5, 7))


def _reference_render(s: Streaks, size, blur: float) -> torch.Tensor:
    """The splatting renderer written plainly (one pass over all samples, one conv blur).

    It is the renderer as it was before the chunked, cache-sized version of ``render_streaks``; the
    two must agree to float rounding (the order of additions differs, nothing else).
    """
    h, w = (size, size) if isinstance(size, int) else size
    n = s.n_images
    r = int(math.ceil(3.0 * blur)) if blur > 0 else 0
    pad = r + 2
    hp, wp = h + 2 * pad, w + 2 * pad
    canvas = torch.zeros(n * hp * wp, dtype=torch.float64)
    if len(s):
        n_along = torch.ceil(s.length / rain.SAMPLE_SPACING).clamp(min=1).long()
        n_across = torch.ceil(s.width / rain.SAMPLE_SPACING).clamp(min=1).long()
        theta = torch.deg2rad(s.angle.double())
        sin, cos = torch.sin(theta), torch.cos(theta)
        for k in range(len(s)):
            length, width = float(s.length[k]), float(s.width[k])
            na, nt = int(n_along[k]), int(n_across[k])
            st_a, st_t = length / na, width / nt
            fade_len = min(width, 0.5 * length)
            for i in range(na):
                a = (i + 0.5) * st_a - 0.5 * length
                fade = min(1.0, min(i + 0.5, na - i - 0.5) * st_a / fade_len)
                for j in range(nt):
                    t = (j + 0.5) * st_t - 0.5 * width
                    x = float(s.cx[k]) + a * sin[k] + t * cos[k] + pad
                    y = float(s.cy[k]) - a * cos[k] + t * sin[k] + pad
                    x, y = min(max(float(x), 1.0), wp - 2.0), min(max(float(y), 1.0), hp - 2.0)
                    xf, yf = math.floor(x), math.floor(y)
                    fx, fy = x - xf, y - yf
                    m = float(s.intensity[k]) * st_a * st_t * fade
                    base = int(s.image[k]) * hp * wp + yf * wp + xf
                    canvas[base] += m * (1 - fx) * (1 - fy)
                    canvas[base + 1] += m * fx * (1 - fy)
                    canvas[base + wp] += m * (1 - fx) * fy
                    canvas[base + wp + 1] += m * fx * fy
    layer = canvas.view(n, 1, hp, wp)[:, :, pad - r : pad + h + r, pad - r : pad + w + r]
    if r:
        t = torch.arange(-r, r + 1, dtype=torch.float64)
        g = torch.exp(-0.5 * (t / blur) ** 2)
        g = g / g.sum()
        layer = torch.nn.functional.conv2d(layer, g.view(1, 1, 1, -1))
        layer = torch.nn.functional.conv2d(layer, g.view(1, 1, -1, 1))
    return layer.clamp(0.0, 1.0).float()


@pytest.mark.parametrize(
    "name, size, n",
    [("small", 32, 3), ("mixed", (20, 36), 2), ("long_wide", 28, 2), ("dense", 16, 2)],
)
def test_render_matches_plain_reference(name, size, n):
    """Known answer: the vectorised renderer equals a per-sample loop in float64 to float32 rounding."""
    spec = rain.get_spec(name)
    s = rain.sample_streaks(spec, size, n, seed=5)
    fast = rain.render_streaks(s, size, blur=spec.blur)
    ref = _reference_render(s, size, spec.blur)
    assert torch.allclose(fast, ref, atol=1e-5, rtol=0), float((fast - ref).abs().max())


def test_render_does_not_depend_on_chunking_or_streak_order(monkeypatch):
    """Each image's layer is the same whatever chunk it is rendered in and however the list is ordered."""
    s = rain.sample_streaks("mixed", 48, 12, seed=2)
    whole = rain.render_streaks(s, 48, blur=0.5)
    monkeypatch.setattr(rain, "_RENDER_CHUNK", 500)  # about one image per chunk
    assert torch.equal(rain.render_streaks(s, 48, blur=0.5), whole)
    monkeypatch.setattr(rain, "_RENDER_CHUNK", 2**30)  # the whole batch at once, as on a GPU
    assert torch.equal(rain.render_streaks(s, 48, blur=0.5), whole)
    monkeypatch.undo()
    order = torch.randperm(len(s), generator=torch.Generator().manual_seed(0))
    fields = {k: getattr(s, k)[order] for k in ("image", "cx", "cy", "length", "width", "angle", "intensity")}
    shuffled = rain.render_streaks(Streaks(**fields, n_images=s.n_images), 48, blur=0.5)
    # images keep their own streaks, so each image is the same up to the order of additions
    assert torch.allclose(shuffled, whole, atol=1e-6, rtol=0)
    # images without streaks stay exactly zero, with streaks elsewhere in the batch
    one = Streaks.make(cx=10, cy=10, length=8, image=2, n_images=4)
    layers = rain.render_streaks(one, 24, blur=0.5)
    assert float(layers[[0, 1, 3]].abs().max()) == 0 and float(layers[2].max()) > 0.1


def test_render_large_canvas_uses_exact_indices(monkeypatch):
    """Past float32's exact integers the pixel index is computed in int64: same picture."""
    one = Streaks.make(cx=[5, 30], cy=[7, 20], length=[9, 14], width=[1, 2.5], angle=[15, -40], image=[0, 1])
    small = rain.render_streaks(one, 40, blur=0.5)
    monkeypatch.setattr(rain, "_FLOAT_EXACT", 100)  # every image's canvas counts as 'too large'
    assert torch.allclose(rain.render_streaks(one, 40, blur=0.5), small, atol=1e-7, rtol=0)


# ------------------------------------------------------------------------------------------------
# synthesize: determinism, arguments, devices


def test_same_seed_same_rain_different_seed_different_rain():
    a, ma = rain.synthesize("small", 48, 6, seed=123)
    b, mb = rain.synthesize("small", 48, 6, seed=123)
    c, _ = rain.synthesize("small", 48, 6, seed=124)
    assert torch.equal(a, b) and torch.equal(ma, mb)
    assert not torch.equal(a, c)
    g = torch.Generator().manual_seed(123)
    d, _ = rain.synthesize("small", 48, 6, seed=g)
    assert torch.equal(a, d)
    e, _ = rain.synthesize("small", 48, 6, seed=g)  # the generator advanced
    assert not torch.equal(d, e)


def test_batches_are_nested():
    """Image i depends only on (spec, size, seed, i): a smaller batch is a prefix of a larger one."""
    big, _ = rain.synthesize("medium", 40, 7, seed=11)
    small, _ = rain.synthesize("medium", 40, 3, seed=11)
    assert torch.equal(big[:3], small)


def test_rectangular_size_and_device_argument():
    layers, mask = rain.synthesize(SMALL, (24, 40), 2, seed=0, device="cpu")
    assert layers.shape == (2, 1, 24, 40) and layers.device.type == "cpu"
    assert mask.shape == (2, 1, 24, 40)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(size=0), "size"),
        (dict(size=-8), "size"),
        (dict(size=32.0), "size"),
        (dict(size="64"), "size"),
        (dict(size=(64,)), "size"),
        (dict(size=(64, 0)), "size"),
        (dict(size=True), "size"),
        (dict(n=0), "n must"),
        (dict(n=2.5), "n must"),
        (dict(seed="a"), "seed"),
        (dict(seed=1.5), "seed"),
        (dict(seed=2**64 + 5), "seed"),
        (dict(spec="drizzle"), "drizzle"),
    ],
)
def test_synthesize_rejects_bad_arguments(kwargs, name):
    args = dict(spec="small", size=32, n=2, seed=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        rain.synthesize(**args)


@pytest.mark.gpu
def test_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    cpu, mcpu = rain.synthesize("long_wide", 64, 8, seed=3)
    gpu, mgpu = rain.synthesize("long_wide", 64, 8, seed=3, device="cuda")
    assert gpu.device.type == "cuda" and mgpu.device.type == "cuda" and gpu.dtype == torch.float32
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-5)
    g = torch.Generator(device="cuda").manual_seed(0)
    layers, _ = rain.synthesize("small", 64, 4, seed=g)  # a CUDA generator renders on its device
    assert layers.device.type == "cuda" and float(layers.max()) > 0.1


# ------------------------------------------------------------------------------------------------
# add_rain


def test_add_rain_torch_gray_and_rgb():
    g = torch.Generator().manual_seed(0)
    layers, _ = rain.synthesize("small", 32, 3, seed=0)
    rgb = torch.rand(3, 3, 32, 32, generator=g)
    out = rain.add_rain(rgb, layers)
    assert out.shape == rgb.shape and out.dtype == torch.float32
    assert torch.equal(out, (rgb + layers).clamp(0, 1))
    unclipped = (rgb + layers <= 1).all(dim=1, keepdim=True).expand_as(rgb)
    inc = (out - rgb)[unclipped].view(-1)
    assert torch.allclose(inc, layers.expand_as(rgb)[unclipped].view(-1), atol=1e-6)  # achromatic
    gray = torch.rand(3, 1, 32, 32, generator=g)
    assert torch.equal(rain.add_rain(gray, layers, strength=0.5), (gray + 0.5 * layers).clamp(0, 1))
    assert torch.equal(rain.add_rain(rgb, layers, strength=0.0), rgb)
    assert float(rain.add_rain(torch.ones(3, 3, 32, 32), layers).max()) == 1.0  # clipped


def test_add_rain_numpy():
    rng = np.random.default_rng(0)
    layers, _ = rain.synthesize("small", 16, 1, seed=1)
    r = layers[0, 0].numpy()
    rgb = rng.random((16, 16, 3), dtype=np.float32)
    expected = np.clip(rgb + r[..., None], 0, 1)
    for form in (r, r[..., None], layers[0], layers):  # (H,W), (H,W,1), torch (1,H,W), torch (1,1,H,W)
        out = rain.add_rain(rgb, form)
        assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (16, 16, 3)
        np.testing.assert_allclose(out, expected, atol=1e-7)
    gray = rng.random((16, 16), dtype=np.float32)
    np.testing.assert_allclose(rain.add_rain(gray, r, 2.0), np.clip(gray + 2 * r, 0, 1), atol=1e-6)
    assert rain.add_rain(gray, r[..., None]).shape == (16, 16)


def test_add_rain_rejects_bad_input():
    layers = torch.zeros(2, 1, 8, 8)
    with pytest.raises(ValueError, match=r"\(2, 1, 8, 8\).*\(2, 3, 9, 8\)"):
        rain.add_rain(torch.zeros(2, 3, 9, 8), layers)
    with pytest.raises(ValueError, match=r"\(5, 5\).*\(8, 8, 3\)"):
        rain.add_rain(np.zeros((8, 8, 3), np.float32), np.zeros((5, 5), np.float32))
    with pytest.raises(ValueError, match="strength"):
        rain.add_rain(torch.zeros(2, 3, 8, 8), layers, strength=-0.1)
    with pytest.raises(ValueError, match="strength"):
        rain.add_rain(torch.zeros(2, 3, 8, 8), layers, strength=float("nan"))
    with pytest.raises(ValueError, match="background"):
        rain.add_rain(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.float32))
    with pytest.raises(ValueError, match="background"):
        rain.add_rain(torch.zeros(3, 8, 8), layers[0])
    with pytest.raises(ValueError, match="background"):
        rain.add_rain([[0.0]], layers)


# ------------------------------------------------------------------------------------------------
# perspective rain (deliberately unlike the training rain; NOT real rain)


def _persp(**kw) -> perspective.PerspectiveRain:
    return dataclasses.replace(perspective.PERSPECTIVE_RAIN, **kw)


def test_perspective_shapes_range_mask_and_parts():
    r, m, parts = perspective.synthesize_perspective(None, (40, 56), 3, seed=0, return_parts=True)
    assert r.shape == m.shape == (3, 1, 40, 56) and r.dtype == torch.float32 and m.dtype == torch.bool
    assert 0 <= float(r.min()) and float(r.max()) <= 1
    torch.testing.assert_close(m, parts["streaks"] > rain.MASK_THRESHOLD)
    torch.testing.assert_close(r, (parts["streaks"] + parts["haze"]).clamp(0, 1))
    assert parts["wind"].shape == (3,) and (parts["wind"].abs() >= 10).all() and (parts["wind"].abs() <= 35).all()


def test_perspective_is_seeded_and_prefix_stable():
    a, _ = perspective.synthesize_perspective(None, 32, 4, seed=11)
    b, _ = perspective.synthesize_perspective(None, 32, 4, seed=11)
    c, _ = perspective.synthesize_perspective(None, 32, 2, seed=11)
    d, _ = perspective.synthesize_perspective(None, 32, 4, seed=12)
    assert torch.equal(a, b) and torch.equal(a[:2], c) and not torch.equal(a, d)


def test_perspective_haze_profile_known_answer():
    spec = _persp(haze=(0.1, 0.1), density=(1e-6, 1e-6))
    _, _, parts = perspective.synthesize_perspective(spec, (21, 8), 2, seed=0, return_parts=True)
    haze = parts["haze"][:, 0, :, 0]
    expected = 0.1 * (1 - torch.arange(21) / 20.0) ** 1.5
    torch.testing.assert_close(haze, expected.expand(2, 21))
    no_haze = _persp(haze=(0.0, 0.0))
    r, _, parts = perspective.synthesize_perspective(no_haze, 24, 1, seed=0, return_parts=True)
    assert float(parts["haze"].abs().max()) == 0 and torch.equal(r, parts["streaks"])


def test_perspective_one_wind_direction_per_image():
    spec = _persp(wind=(25.0, 25.0), jitter=0.0, fan=0.0, haze=(0.0, 0.0), near_width=(1.5, 1.5))
    r, _, parts = perspective.synthesize_perspective(spec, 96, 4, seed=3, return_parts=True)
    for i in range(4):
        assert abs(_orientation_deg(r[i : i + 1]) - float(parts["wind"][i])) < 4.0
    assert set(np.sign(parts["wind"].numpy())) <= {-1.0, 1.0}


def test_perspective_depth_makes_distant_streaks_smaller():
    near = _persp(far_scale=1.0, haze=(0.0, 0.0))
    deep = _persp(far_scale=0.2, haze=(0.0, 0.0))
    _, m_near = perspective.synthesize_perspective(near, 64, 4, seed=0)
    _, m_deep = perspective.synthesize_perspective(deep, 64, 4, seed=0)
    assert m_deep.float().mean() < 0.7 * m_near.float().mean()


@pytest.mark.parametrize(
    "field,value",
    [("density", (0.0, 0.01)), ("near_length", (-1, 4)), ("near_width", (0.5, 2)), ("intensity", (0.2, 1.5)),
     ("wind", (10, 95)), ("haze", (0.0, 1.0)), ("blur", (-0.5, 1)), ("far_scale", 0.0), ("jitter", -1.0),
     ("fan", float("nan")), ("name", 3)],
)
def test_perspective_rejects_bad_fields(field, value):
    with pytest.raises(ValueError, match=f"PerspectiveRain.{field}"):
        _persp(**{field: value})


def test_perspective_bad_arguments():
    with pytest.raises(ValueError, match="spec"):
        perspective.synthesize_perspective("small", 16, 1, seed=0)
    with pytest.raises(ValueError, match="seed"):
        perspective.synthesize_perspective(None, 16, 1, seed=-1)
    with pytest.raises(ValueError, match="size"):
        perspective.synthesize_perspective(None, 0, 1, seed=0)
    with pytest.raises(ValueError, match="n must"):
        perspective.synthesize_perspective(None, 16, 0, seed=0)
    assert json.loads(json.dumps(perspective.PERSPECTIVE_RAIN.to_dict()))["wind"] == [10.0, 35.0]
