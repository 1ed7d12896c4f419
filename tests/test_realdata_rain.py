"""Tests for measuring the rain of paired sets (derain_utils.realdata): streaks, placement, scale, many folders.

Known answers: single rendered streaks of known length, width and angle; synthetic rain drawn from the
presets (rain.synthesize) over dead-leaves backgrounds, whose measured lengths, widths and angles must
fall in the presets' ranges and whose placement must name the right out-of-distribution fields.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from derain_utils.measure import rainmeter, realscores
from derain_utils.synth import procedural, rain, realsets
from derain_utils.synth.rain import Streaks


def _save(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)).save(path)


def _one_streak(length: float, width: float, angle: float, size: int = 96, blur: float = 0.5) -> np.ndarray:
    s = Streaks.make(cx=size / 2, cy=size / 2, length=length, width=width, angle=angle, intensity=0.8, n_images=1)
    return rain.render_streaks(s, size, blur=blur)[0, 0].numpy().astype(np.float64)


def _synthetic_pairs(spec, n: int = 8, size: int = 128, seed: int = 7, name: str | None = None):
    """Pairs of (dead-leaves background + rain of ``spec``, background), another seed than preset_rain's."""
    spec = rain.get_spec(spec)
    layers, _ = rain.synthesize(spec, size, n, seed)
    bgs = procedural.dead_leaves(size, seed, n)
    rainy = rain.add_rain(torch.from_numpy(bgs).permute(0, 3, 1, 2), layers).permute(0, 2, 3, 1).numpy()
    return [realsets.Pair(name or spec.name, str(i), rainy[i], bgs[i]) for i in range(n)]


# ----------------------------------------------------------------------------------------- one streak


@pytest.mark.parametrize("length, width, angle", [(30, 1, 0), (30, 3, 25), (40, 2, -40), (20, 2, 60)])
def test_a_single_streak_is_measured_right(length, width, angle):
    st, im = rainmeter.measure_streaks(_one_streak(length, width, angle))
    assert len(st) == 1 and im["streaks"] == 1 and not st["border"].iloc[0]
    r = st.iloc[0]
    assert -0.1 * length - width < r["length"] - length < 0.1 * length, r["length"]  # faded ends read shorter
    assert abs(r["angle"] - angle) < 2.0 and abs(r["abs_angle"] - abs(angle)) < 2.0, r["angle"]
    # half-maximum width: exact for 2-3 px, a 1 px streak straddling pixels measures up to ~1.6 px
    assert width - 0.3 < r["width"] < width + 0.7, r["width"]
    assert r["y"] == pytest.approx(48, abs=1) and r["x"] == pytest.approx(48, abs=1)
    assert im["density"] == pytest.approx(1 / 96**2) and im["merged"] == 1.0


def test_streaks_layer_edge_cases_and_errors():
    st, im = rainmeter.measure_streaks(np.zeros((20, 30)))
    assert len(st) == 0 and im == {"density": 0.0, "coverage": 0.0, "streaks": 0, "merged": 0.0}
    assert list(st.columns) == ["y", "x", *rainmeter.STREAK_KEYS, "border"]
    speck = np.zeros((20, 30))
    speck[5, 5] = speck[5, 6] = 0.5  # 2 px: below min_area, not a streak
    assert rainmeter.measure_streaks(speck)[1]["streaks"] == 0
    edge = np.zeros((40, 40))
    edge[0:15, 20] = 0.6
    assert rainmeter.measure_streaks(edge)[0]["border"].tolist() == [True]
    for bad, match in [(np.full((4, 4), np.nan), "NaN"), (np.zeros(5), "2-D")]:
        with pytest.raises(ValueError, match=match):
            rainmeter.measure_streaks(bad)
    with pytest.raises(ValueError, match="threshold"):
        rainmeter.measure_streaks(edge, threshold=1.5)
    with pytest.raises(ValueError, match="min_area"):
        rainmeter.measure_streaks(edge, min_area=0)
    with pytest.raises(ValueError, match="tophat"):
        rainmeter.streak_layer(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)), tophat=1)


def test_streak_layer_removes_haze_and_keeps_streaks():
    target = np.full((64, 64, 3), 0.3)
    streak = _one_streak(30, 2, 10, size=64)
    haze = np.linspace(0.0, 0.2, 64)[None, :, None]  # a smooth veil, brighter to the right
    rainy = np.clip(target + haze + streak[..., None], 0, 1)
    layer = rainmeter.streak_layer(rainy, target)
    assert layer[:, :8].max() < 0.01 and layer.max() > 0.5  # the veil is gone, the streak stays
    st, _ = rainmeter.measure_pair_rain(rainy, target)
    assert len(st) == 1 and abs(st["length"].iloc[0] - 30) < 3
    assert rainmeter.measure_pair_rain(rainy, target, tophat=0)[1]["merged"] == 1.0  # raw: veil + streak, one blob


# ----------------------------------------------------------------------------------------- presets


@pytest.mark.parametrize("preset", ["small", "slanted", "long_wide", "dense", "large"])
def test_measurement_recovers_preset_ranges(preset):
    """Known answer: rain drawn from a preset, added to backgrounds, measured from rainy - background."""
    spec = rain.PRESETS[preset]
    st, im = rainmeter.measure_rain(_synthetic_pairs(spec))
    s = rainmeter.rain_summary(st, im).iloc[0]
    lo, hi = spec.length
    assert lo - 1 <= s["length"] <= hi, (s["length"], spec.length)  # long streaks cut or crossed read shorter
    assert spec.width[0] - 0.5 <= s["width"] <= spec.width[1] + 0.5, (s["width"], spec.width)
    a_lo = min(min(abs(a), abs(b)) if a * b > 0 else 0.0 for a, b in spec.angles)
    a_hi = max(max(abs(a), abs(b)) for a, b in spec.angles)
    if preset != "dense":  # 3-6 px dashes 2 px wide, 2-3.5 per 100 px: they touch, and a pair has no direction
        assert a_lo - 2 <= s["abs_angle"] <= a_hi, (s["abs_angle"], spec.angles)
    assert s["streaks"] > 10


def test_preset_rain_is_cached_deterministic_and_copied():
    a, ai = rainmeter.preset_rain("small")
    a.loc[:, "length"] = -1.0
    b, bi = rainmeter.preset_rain("small")
    assert (b["length"] > 0).all() and ai.equals(bi)
    rainmeter._preset_rain_cached.cache_clear()
    c, _ = rainmeter.preset_rain("small")
    pd.testing.assert_frame_equal(b, c)


def test_place_rain_names_the_out_of_distribution_fields():
    pairs = _synthetic_pairs("small", name="like_train") + _synthetic_pairs("slanted", name="tilted") + \
        _synthetic_pairs("long_wide", name="big")
    st, im = rainmeter.measure_rain(pairs)
    placed = rainmeter.place_rain(st, im).set_index("set")
    assert placed.loc["like_train", "in_distribution"] and placed.loc["like_train", "ood_fields"] == ""
    assert placed.loc["like_train", "closest_preset"] == "small"
    assert placed.loc["tilted", "ood_fields"] == "abs_angle" and placed.loc["tilted", "closest_preset"] == "slanted"
    big = placed.loc["big", "ood_fields"].split(", ")
    assert {"length", "abs_angle"} <= set(big) and placed.loc["big", "closest_preset"] == "long_wide"
    assert (placed["merged"] < rainmeter.MERGED_LIMIT).all()
    detail = rainmeter.place_rain(st, im, "small", ["small", "slanted"], detail=True)
    assert set(detail["field"]) == set(rainmeter.RAIN_FIELDS) and len(detail) == 3 * len(rainmeter.RAIN_FIELDS)
    assert {"share_in_small", "share_in_slanted", "train_lo", "train_hi"} <= set(detail.columns)
    row = detail[(detail["set"] == "tilted") & (detail["field"] == "abs_angle")].iloc[0]
    assert row["share_in_train"] < 0.1 and row["share_in_slanted"] > 0.8 and row["outside"]


def test_rain_summary_per_image():
    st, im = rainmeter.measure_rain(_synthetic_pairs("small", n=3))
    per = rainmeter.rain_summary(st, im, by=["set", "image"])
    assert per["image"].tolist() == ["0", "1", "2"] and (per["streaks"] > 5).all()
    assert {"length_q25", "length_q75", "coverage", "merged"} <= set(per.columns)
    with pytest.raises(ValueError, match="no pairs"):
        rainmeter.measure_rain([])


# ----------------------------------------------------------------------------------------- folders and scale


def _write_pairs(root: Path, pairs) -> Path:
    for p in pairs:
        _save(root / "input" / f"{p.name}.png", p.rainy)
        _save(root / "target" / f"{p.name}.png", p.target)
    return root


def test_paired_sets_and_load_pairs(tmp_path, monkeypatch):
    monkeypatch.delenv("DERAIN_DATA", raising=False)
    a = _write_pairs(tmp_path / "data" / "setA", _synthetic_pairs("small", n=3, size=32))
    b = _write_pairs(tmp_path / "data" / "setB", _synthetic_pairs("dense", n=2, size=32))
    sets = realsets.paired_sets([a, "setB", a], tmp_path / "data")  # a name, a path, a repeat
    assert [s.name for s in sets] == ["setA", "setB"]
    pairs = realsets.load_pairs(sets)
    assert [(p.set, p.name) for p in pairs] == [("setA", "0"), ("setA", "1"), ("setA", "2"), ("setB", "0"),
                                                 ("setB", "1")]
    assert realsets.load_pairs(a, max_pairs=2)[-1].name == "1"
    half = realsets.load_pairs([a, b], factor={"setB": 0.5})
    assert half[0].rainy.shape == (32, 32, 3) and half[-1].rainy.shape == (16, 16, 3)
    with pytest.warns(UserWarning, match="absent_set"):
        assert [s.name for s in realsets.paired_sets(["absent_set", a], tmp_path / "data", missing="skip")] == ["setA"]
    with pytest.raises(FileNotFoundError, match="absent_set"):
        realsets.paired_sets(["absent_set"], tmp_path / "data")
    with pytest.raises(FileNotFoundError):
        realsets.paired_sets([tmp_path / "no" / "such"], missing="skip")  # an explicit path is never skipped
    twin = _write_pairs(tmp_path / "other" / "setA", _synthetic_pairs("small", n=1, size=32))
    with pytest.raises(ValueError, match="share the name 'setA'"):
        realsets.paired_sets([a, twin])
    with pytest.raises(ValueError, match="max_pairs"):
        realsets.load_pairs(a, max_pairs=0)


def test_rescale_pair():
    rng = np.random.default_rng(0)
    t = rng.random((40, 60, 3)).astype(np.float32)
    o = np.clip(t + 0.2, 0, 1)
    ro, rt = realsets.rescale_pair(o, t, 0.5)
    assert ro.shape == rt.shape == (20, 30, 3) and ro.dtype == np.float32 and 0 <= ro.min() and ro.max() <= 1
    same_o, same_t = realsets.rescale_pair(t, t, 0.5)
    np.testing.assert_array_equal(same_o, same_t)  # one operation for both images
    flat = np.full((40, 60, 3), 0.25, np.float32)
    np.testing.assert_allclose(realsets.rescale_pair(flat, flat, 0.37)[0], 0.25, atol=1e-6)
    assert realsets.rescale_pair(o, t, 1.0)[0] is not None
    for bad in (0, -1.0, float("nan"), True):
        with pytest.raises(ValueError, match="factor"):
            realsets.rescale_pair(o, t, bad)
    with pytest.raises(ValueError, match="8 px"):
        realsets.rescale_pair(o, t, 0.1)
    with pytest.raises(ValueError, match="same shape"):
        realsets.rescale_pair(o, t[:20], 0.5)


def test_match_scale_finds_the_magnification(tmp_path):
    """Known answer: training rain seen twice as large (spec.scaled(2)) needs about factor 0.5."""
    big = rain.get_spec("small").scaled(2.0)
    folder = _write_pairs(tmp_path / "twice", _synthetic_pairs(big, n=4, size=192, name="twice"))
    same = _write_pairs(tmp_path / "same", _synthetic_pairs("small", n=4, size=128, name="same"))
    table = rainmeter.match_scale([folder, same]).set_index("set")
    assert 0.35 <= table.loc["twice", "factor"] <= 0.71, table.loc["twice"]
    assert table.loc["twice", "native_width"] > 1.5 * table.loc["twice", "train_width"]
    assert table.loc["same", "factor"] == 1.0  # already at the training scale: never upsampled
    assert table.loc["same", "ood_fields_at_factor"] == ""
    assert table.loc["twice", "image_factor"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="field"):
        rainmeter.match_scale([same], field="angle")
    with pytest.raises(ValueError, match="factors"):
        rainmeter.match_scale([same], factors=[2.0])


# ----------------------------------------------------------------------------------------- shared data


@pytest.mark.shared_data
def test_shared_paired_sets_rain(shared_data):
    names = ["rain100L_dev", "rain100H_dev", "real_rain_paired_dev"]
    st, im = rainmeter.measure_rain(names, shared_data)
    assert im.groupby("set").size().to_dict() == {"rain100L_dev": 8, "rain100H_dev": 8, "real_rain_paired_dev": 2}
    placed = rainmeter.place_rain(st, im).set_index("set")
    r100l = placed.loc["rain100L_dev"]
    assert 6 < r100l["length"] < 16 and 8 < r100l["abs_angle"] < 16 and r100l["closest_preset"] == "small"
    assert placed.loc["rain100H_dev", "merged"] > rainmeter.MERGED_LIMIT  # heavy rain: one connected sheet
    assert placed.loc["rain100H_dev", "coverage"] > 3 * r100l["coverage"]
    assert not placed["in_distribution"].any()


# ----------------------------------------------------------------------------------------- notebook 04's rule


def test_rain_placement_and_the_unseen_rule_on_known_rain():
    """Sets of known rain: one like the training rain, one slanted, one long and wide. The rule calls
    the first seen and the other two unseen, as it does the presets themselves."""
    pairs = _synthetic_pairs("small", name="like_train") + _synthetic_pairs("slanted", name="tilted") + \
        _synthetic_pairs("long_wide", name="big")
    st, im = rainmeter.measure_rain(pairs)
    placed = rainmeter.rain_placement(st, im, "small", ["small", "slanted", "long_wide", "dense"])
    assert list(placed["kind"]) == ["training rain", "preset", "preset", "preset", "paired set", "paired set",
                                    "paired set"]
    assert list(placed["set"][:4]) == ["small", "slanted", "long_wide", "dense"]
    assert rainmeter.unseen_sets(placed, "small") == ["tilted", "big"]
    presets_only = placed[placed["kind"] != "paired set"].drop(columns="kind")
    assert rainmeter.unseen_sets(presets_only, "small") == ["slanted", "long_wide", "dense"]  # = rain.OOD_PRESETS
    # a set that differs only at the margins and is closest to the training rain stays out
    margins = pd.DataFrame({"set": ["faint"], "ood_fields": ["intensity, density"], "closest_preset": ["small"]})
    assert rainmeter.unseen_sets(margins, "small") == []
    with pytest.raises(ValueError, match="closest_preset"):
        rainmeter.unseen_sets(margins.drop(columns="closest_preset"))
    with pytest.raises(ValueError, match="name of a rain preset"):
        rainmeter.rain_placement(st.assign(set="small"), im.assign(set="small"), "small")


def test_score_pairs_known_answers():
    pairs = _synthetic_pairs("small", n=3, size=64)
    masks = [np.abs(p.rainy - p.target).max(-1) > 0.02 for p in pairs]
    perfect = realscores.score_pairs(pairs, [p.target for p in pairs], masks=masks)
    identity = realscores.score_pairs(pairs, [p.rainy for p in pairs])
    assert list(perfect.columns) == ["set", "image", *realscores.PAIR_SCORE_KEYS, "mask_source"]
    assert np.allclose(perfect["removal"], 1.0) and (perfect["mask_source"] == "given").all()
    assert np.allclose(identity["removal"], 0.0) and (identity["mask_source"] == "estimated").all()
    # the estimated mask is the package's own (metrics.estimate_mask), as in paired_scores
    ref = realscores.paired_scores(pairs[0].target, pairs[0].rainy, pairs[0].rainy)
    assert identity.loc[0, "bg_psnr"] == pytest.approx(ref["bg_psnr"]) and identity.loc[0, "psnr_y"] == \
        pytest.approx(ref["psnr_y"])
    with pytest.raises(ValueError, match="2 images for 3 pairs"):
        realscores.score_pairs(pairs, [p.rainy for p in pairs[:2]])
    with pytest.raises(ValueError, match="same shape"):
        realscores.score_pairs(pairs[:1], [pairs[0].rainy[:32]])
