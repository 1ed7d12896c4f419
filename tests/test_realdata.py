"""Tests for derain_utils.realdata: paired/unpaired folders, the removed layer and the no-ground-truth proxies."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from derain_utils.measure import realscores
from derain_utils.synth import rain, realsets
from derain_utils.synth.rain import Streaks


def _save(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)).save(path)


def _paired_folder(root: Path, stems=("2", "10", "1"), inp="input", tgt="target", size=(12, 16)) -> Path:
    rng = np.random.default_rng(0)
    for s in stems:
        b = rng.random((*size, 3)) * 0.5
        _save(root / tgt / f"{s}.png", b)
        _save(root / inp / f"{s}.png", b + 0.3)
    return root


def _streak_layer(angle: float, size: int = 64, width: float = 1.5, n: int = 1, cx=None) -> np.ndarray:
    """One or more parallel streaks at ``angle`` degrees from vertical (positive: top leans right)."""
    cx = [size / 2] if cx is None else cx
    s = Streaks.make(cx=cx, cy=size / 2, length=40, width=width, angle=angle, intensity=0.8, n_images=1)
    return rain.render_streaks(s, size, blur=0.7)[0, 0].numpy().astype(np.float64)


# ----------------------------------------------------------------------------------------- folders


def test_resolve_folder_path_name_and_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("DERAIN_DATA", raising=False)  # CI exports it; this test needs it unset
    (tmp_path / "setA").mkdir()
    assert realsets.resolve_folder(tmp_path / "setA") == (tmp_path / "setA").resolve()
    assert realsets.resolve_folder("setA", tmp_path) == (tmp_path / "setA").resolve()
    with pytest.raises(FileNotFoundError, match="nope.*data root"):
        realsets.resolve_folder("nope", tmp_path)
    with pytest.raises(FileNotFoundError, match="no data root"):
        realsets.resolve_folder("nope")
    with pytest.raises(ValueError, match="folder"):
        realsets.resolve_folder("  ")


def test_paired_set_natural_order_and_loading(tmp_path):
    root = _paired_folder(tmp_path / "bench")
    ps = realsets.paired_set(root)
    assert ps.names == ("1", "2", "10") and len(ps) == 3 and ps.name == "bench"
    rainy, target = ps.load(2)
    assert rainy.shape == target.shape == (12, 16, 3) and rainy.dtype == np.float32
    np.testing.assert_allclose(rainy - target, 0.3, atol=2 / 255)
    names = [n for n, _, _ in ps]
    assert names == ["1", "2", "10"]
    assert realsets.is_paired_folder(root) and not realsets.is_paired_folder(root / "input")


def test_paired_set_other_folder_names_and_set_names(tmp_path):
    _paired_folder(tmp_path / "data" / "rain_x", inp="rainy", tgt="gt")
    ps = realsets.paired_set("rain_x", tmp_path / "data")
    assert ps.input_dir.name == "rainy" and ps.target_dir.name == "gt"
    ps2 = realsets.paired_set(tmp_path / "data" / "rain_x", input_dir="rainy", target_dir="gt")
    assert ps2.names == ps.names


def test_paired_set_bad_folders(tmp_path):
    root = _paired_folder(tmp_path / "b1")
    (root / "input" / "3.png").write_bytes((root / "input" / "1.png").read_bytes())
    with pytest.raises(ValueError, match=r"without a partner.*3\.png"):
        realsets.paired_set(root)
    only = tmp_path / "b2" / "input"
    only.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="target_dir"):
        realsets.paired_set(tmp_path / "b2")
    bad = _paired_folder(tmp_path / "b3", stems=("1",))
    _save(bad / "target" / "1.png", np.zeros((10, 16, 3)))
    with pytest.raises(ValueError, match=r"pair '1'.*input.*target"):
        realsets.paired_set(bad).load(0)
    dup = _paired_folder(tmp_path / "b4", stems=("1",))
    _save(dup / "input" / "1.jpg", np.zeros((12, 16, 3)))
    with pytest.raises(ValueError, match="two images with the stem '1'"):
        realsets.paired_set(dup)
    empty = tmp_path / "b5"
    (empty / "input").mkdir(parents=True)
    (empty / "target").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        realsets.paired_set(empty)


def test_unpaired_set(tmp_path):
    _save(tmp_path / "real" / "b.png", np.full((8, 9, 3), 0.5))
    _save(tmp_path / "real" / "a.png", np.full((8, 9, 3), 0.2))
    src = realsets.unpaired_set("real", tmp_path)
    assert src.names == ["a.png", "b.png"]
    assert src.load("a.png").shape == (8, 9, 3)


def test_resize_long_side():
    img = np.random.default_rng(1).random((40, 80, 3)).astype(np.float32)
    small = realsets.resize_long_side(img, 20)
    assert small.shape == (10, 20, 3) and small.dtype == np.float32
    assert 0 <= small.min() and small.max() <= 1
    assert realsets.resize_long_side(img, 200) is img  # never upscale
    assert realsets.resize_long_side(img, None) is img and realsets.resize_long_side(img, 0) is img
    flat = np.full((30, 60, 3), 0.25, np.float32)
    np.testing.assert_allclose(realsets.resize_long_side(flat, 24), 0.25, atol=1e-5)
    assert realsets.resize_long_side(img[..., 0], 20).shape == (10, 20)
    for bad in (4, -1, 2.5, True):
        with pytest.raises(ValueError, match="long_side"):
            realsets.resize_long_side(img, bad)


# ----------------------------------------------------------------------------------------- the removed layer


def test_removed_layer_known_answer_and_inputs():
    o = np.zeros((4, 5, 3), np.float32)
    o[..., 0], o[..., 1], o[..., 2] = 0.5, 0.4, 0.3
    d = np.zeros_like(o)
    layer = realscores.removed_layer(o, d)
    np.testing.assert_allclose(layer, 0.299 * 0.5 + 0.587 * 0.4 + 0.114 * 0.3)
    t = torch.from_numpy(o.transpose(2, 0, 1))
    np.testing.assert_allclose(realscores.removed_layer(t, torch.zeros_like(t)), layer)
    np.testing.assert_allclose(realscores.removed_layer(o[..., 0], d[..., 0]), 0.5)  # gray passes through
    with pytest.raises(ValueError, match="shape mismatch"):
        realscores.removed_layer(o, d[:3])
    with pytest.raises(ValueError, match="derained"):
        realscores.removed_layer(o, (d * 255).astype(np.uint8))
    with pytest.raises(ValueError, match="rainy"):
        realscores.removed_layer(o * 255, d)


@pytest.mark.parametrize("angle", [0.0, 30.0, -45.0])
def test_orientation_of_a_streak(angle):
    r = realscores.orientation_coherence(_streak_layer(angle, width=2.0))
    assert abs(r["angle_deg"] - angle) < 4.0
    assert r["global_coherence"] > 0.8 and r["coherence"] > 0.8


def test_coherence_separates_parallel_streaks_from_isotropic_damage():
    streaks = _streak_layer(20.0, size=96, cx=[20, 45, 70])
    noise = ndimage.gaussian_filter(np.random.default_rng(0).standard_normal((96, 96)), 1.5)
    a, b = realscores.orientation_coherence(streaks), realscores.orientation_coherence(noise)
    assert a["global_coherence"] > 0.8 > 0.3 > b["global_coherence"]
    assert a["coherence"] > b["coherence"]
    const = realscores.orientation_coherence(np.full((16, 16), 0.3))
    assert all(math.isnan(v) for v in const.values())
    with pytest.raises(ValueError, match="2-D"):
        realscores.orientation_coherence(np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="rho"):
        realscores.structure_tensor(np.zeros((4, 4)), rho=-1)


def test_rain_free_mask_excludes_thin_bright_lines_only():
    img = np.full((40, 40, 3), 0.3, np.float32)
    img[:, 10] = 0.9  # a 1-px bright line: candidate rain
    img[20:35, 22:38] = 0.9  # a wide bright block (wider than the top-hat): scene, not rain
    free = realscores.rain_free_mask(img)
    assert not free[:, 8:13].any()  # the line and its 2-px margin
    assert free[:, 14:20].all() and free[22:33, 24:36].all() and free[:, 0:7].all()
    assert realscores.rain_free_mask(img, margin=0)[:, 9].all()
    for kw in ({"size": 1}, {"threshold": 1.5}, {"margin": -1}):
        with pytest.raises(ValueError, match=next(iter(kw))):
            realscores.rain_free_mask(img, **kw)


def test_no_gt_proxies_known_cases():
    rng = np.random.default_rng(3)
    bg = np.clip(0.4 + 0.1 * ndimage.gaussian_filter(rng.standard_normal((96, 96, 3)), (3, 3, 0)), 0, 1)
    layer = _streak_layer(15.0, size=96, cx=[15, 40, 65, 85])
    rainy = np.clip(bg + layer[..., None], 0, 1).astype(np.float32)
    ident = realscores.no_gt_proxies(rainy, rainy)
    assert list(ident) == list(realscores.PROXY_KEYS)
    assert ident["removed_rms"] == 0 and ident["rainfree_change"] == 0
    assert math.isnan(ident["brightening_share"]) and math.isnan(ident["global_coherence"])
    perfect = realscores.no_gt_proxies(rainy, bg.astype(np.float32))
    assert perfect["brightening_share"] > 0.99 and perfect["global_coherence"] > 0.7
    assert abs(perfect["angle_deg"] - 15.0) < 5
    # image-like damage: blurring away a fine isotropic texture removes bright and dark alike, in every direction
    texture = np.clip(0.5 + 0.2 * rng.standard_normal((96, 96, 3)), 0, 1).astype(np.float32)
    blurred = ndimage.gaussian_filter(texture, (1.5, 1.5, 0))
    damage = realscores.no_gt_proxies(texture, blurred)
    assert 0.3 < damage["brightening_share"] < 0.7 and damage["global_coherence"] < 0.2
    assert damage["coherence"] < perfect["coherence"]
    smeared = realscores.no_gt_proxies(rainy, ndimage.gaussian_filter(rainy, (2, 2, 0)))
    assert smeared["rainfree_change"] > perfect["rainfree_change"]
    free = realscores.rain_free_mask(texture)
    assert realscores.no_gt_proxies(texture, blurred, rainfree=free) == damage
    with pytest.raises(ValueError, match="rainfree"):
        realscores.no_gt_proxies(texture, blurred, rainfree=free[:10])


def test_paired_scores_perfect_and_identity():
    rng = np.random.default_rng(0)
    b = rng.random((32, 32, 3)).astype(np.float32) * 0.6
    o = b.copy()
    o[::4] = np.clip(o[::4] + 0.3, 0, 1)
    perfect, ident = realscores.paired_scores(b, o, b), realscores.paired_scores(b, o, o)
    assert perfect["removal"] == 1.0 and perfect["psnr"] == 100.0 and perfect["mask_source"] == "estimated"
    assert ident["removal"] == 0.0 and ident["psnr"] == ident["input_psnr"]


def test_shared_rain100l_pairs(shared_data):
    folder = shared_data / "rain100L_dev"
    if not folder.is_dir():
        pytest.skip("rain100L_dev is not in the shared data folder")
    ps = realsets.paired_set(folder)
    assert len(ps) == 8 and ps.names == tuple(sorted(ps.names, key=int))
    rainy, target = ps.load(0)
    assert rainy.shape in ((320, 480, 3), (480, 320, 3))
    assert (rainy - target).mean() > 0  # rain brightens
