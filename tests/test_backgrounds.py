"""Tests for derain_utils.synth.backgrounds: procedural ladder, loaders, sources, splits, crops."""
from __future__ import annotations

import io
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from derain_utils.synth import backgrounds as bg
from derain_utils.synth import procedural


# --------------------------------------------------------------------------- helpers
def mean_gradient(images: np.ndarray) -> float:
    """Mean finite-difference gradient magnitude of (n, H, W, C) images."""
    gy = np.diff(images, axis=1)[:, :, :-1]
    gx = np.diff(images, axis=2)[:, :-1]
    return float(np.sqrt(gy**2 + gx**2).mean())


def png_bytes(img: np.ndarray) -> int:
    buf = io.BytesIO()
    Image.fromarray(np.round(img * 255).astype(np.uint8)).save(buf, "PNG")
    return len(buf.getvalue())


def radial_power_slope(field: np.ndarray) -> float:
    """Least-squares slope of log power vs log frequency (radially binned, mid band)."""
    h, w = field.shape
    power = np.abs(np.fft.fft2(field)) ** 2
    f = np.sqrt(np.fft.fftfreq(h)[:, None] ** 2 + np.fft.fftfreq(w)[None, :] ** 2)
    bins = np.geomspace(4 / h, 0.4, 16)
    idx = np.digitize(f.ravel(), bins)
    fc, pc = [], []
    for b in range(1, len(bins)):
        sel = idx == b
        fc.append(f.ravel()[sel].mean())
        pc.append(power.ravel()[sel].mean())
    return float(np.polyfit(np.log(fc), np.log(pc), 1)[0])


def coded_image(k: int, h: int, w: int) -> np.ndarray:
    """uint8 RGB image whose pixels encode (image k, row y, column x) exactly."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([np.full((h, w), k), y % 256, x % 256], -1).astype(np.uint8)


@pytest.fixture
def coded_folder(tmp_path: Path) -> tuple[Path, dict[str, tuple[int, int]]]:
    """40 lossless PNGs of assorted sizes (some smaller than 64 px) + a non-image file."""
    rng = np.random.default_rng(0)
    sizes = {}
    for k in range(40):
        h, w = (int(v) for v in rng.integers(40, 200, 2))
        name = f"img{k:02d}.png"
        Image.fromarray(coded_image(k, h, w)).save(tmp_path / name)
        sizes[name] = (h, w)
    (tmp_path / "PROVENANCE.md").write_text("not an image")
    return tmp_path, sizes


# --------------------------------------------------------------------------- procedural
@pytest.mark.parametrize("kind", procedural.LADDER)
def test_procedural_shape_dtype_range(kind):
    x = procedural.procedural(kind, (40, 56), seed=3, n=3)
    assert x.shape == (3, 40, 56, 3) and x.dtype == np.float32
    assert np.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0
    assert procedural.procedural(kind, 24, seed=0, n=0).shape == (0, 24, 24, 3)


@pytest.mark.parametrize("kind", procedural.LADDER)
def test_procedural_deterministic_nested_and_seeded(kind):
    a = procedural.procedural(kind, 32, seed=5, n=4)
    np.testing.assert_array_equal(a, procedural.procedural(kind, 32, seed=5, n=4))
    np.testing.assert_array_equal(a[:2], procedural.procedural(kind, 32, seed=5, n=2))  # image i depends on (seed, i)
    assert not np.array_equal(a, procedural.procedural(kind, 32, seed=6, n=4))
    assert not np.array_equal(a[0], a[1])


def test_flat_is_constant_and_gradient_is_smooth():
    flat = procedural.procedural("flat", 16, seed=1, n=4)
    assert np.ptp(flat, axis=(1, 2)).max() == 0.0
    grad = procedural.procedural("gradient", 64, seed=1, n=8)
    # a two-colour blend: neighbouring pixels differ by at most |c1 - c0| / (span in px) ~ 1/64 per channel
    assert np.abs(np.diff(grad, axis=1)).max() < 0.05 and np.abs(np.diff(grad, axis=2)).max() < 0.05


def test_complexity_increases_along_ladder():
    g = [mean_gradient(procedural.procedural(k, 64, seed=0, n=16)) for k in procedural.LADDER]
    assert g[0] == 0.0
    assert all(a < b for a, b in zip(g, g[1:])), dict(zip(procedural.LADDER, g))
    # the two ends of the study's calibration: smooth blobs vs 1/f noise + shapes, far apart in PNG size
    blobs = np.mean([png_bytes(x) for x in procedural.procedural("blobs", 64, seed=0, n=8)])
    noise = np.mean([png_bytes(x) for x in procedural.procedural("noise", 64, seed=0, n=8)])
    assert noise > 2 * blobs


def test_smooth_kinds_have_no_high_frequencies():
    window = np.hanning(64)[:, None] * np.hanning(64)[None, :]  # no wrap-around edges
    f = np.sqrt(np.fft.fftfreq(64)[:, None] ** 2 + np.fft.fftfreq(64)[None, :] ** 2)

    def high_freq_share(kind):
        gray = procedural.procedural(kind, 64, seed=2, n=8).mean(-1)
        p = np.abs(np.fft.fft2((gray - gray.mean(axis=(1, 2), keepdims=True)) * window)) ** 2
        return float(p[:, f > 0.125].sum() / p.sum())  # share of power above 1/8 cycle per px

    share = {k: high_freq_share(k) for k in procedural.LADDER[1:]}
    assert share["gradient"] < 1e-4 and share["blobs"] < 1e-4, share
    assert 0.05 < share["shapes"] < share["noise"] < share["texture"], share


@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_power_law_noise_spectral_slope(beta):
    x = procedural.power_law_noise(256, beta=beta, seed=0, n=4)
    assert x.shape == (4, 256, 256) and x.dtype == np.float32
    np.testing.assert_allclose(x.mean(axis=(1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(x.std(axis=(1, 2)), 1.0, atol=1e-3)
    slope = np.mean([radial_power_slope(f) for f in x])
    assert abs(slope + beta) < 0.15, slope


def test_procedural_bad_input():
    with pytest.raises(ValueError, match="kind"):
        procedural.procedural("clouds", 32, seed=0)
    with pytest.raises(ValueError, match="size"):
        procedural.procedural("flat", 0, seed=0)
    with pytest.raises(ValueError, match="size"):
        procedural.procedural("flat", (32,), seed=0)
    with pytest.raises(ValueError, match="seed"):
        procedural.procedural("flat", 32, seed=-1)
    with pytest.raises(ValueError, match="n must"):
        procedural.procedural("flat", 32, seed=0, n=-1)


# --------------------------------------------------------------------------- loading
def test_load_gray_png_replicates(tmp_path):
    a = np.array([[0, 51], [204, 255]], np.uint8)
    Image.fromarray(a, "L").save(tmp_path / "g.png")
    x = bg.load_image(tmp_path / "g.png")
    assert x.shape == (2, 2, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x, np.repeat(a[..., None] / 255.0, 3, -1), atol=1e-7)


def test_load_rgba_composites_on_white(tmp_path):
    a = np.array([[[255, 0, 0, 255], [255, 0, 0, 0], [0, 0, 255, 102]]], np.uint8)
    Image.fromarray(a, "RGBA").save(tmp_path / "a.png")
    x = bg.load_image(tmp_path / "a.png")
    alpha = 102 / 255
    expected = np.array([[[1, 0, 0], [1, 1, 1], [1 - alpha, 1 - alpha, 1.0]]], np.float32)
    np.testing.assert_allclose(x, expected, atol=1e-6)


def test_load_gray_alpha(tmp_path):
    a = np.array([[[0, 255], [100, 0]]], np.uint8)
    Image.fromarray(a, "LA").save(tmp_path / "la.png")
    np.testing.assert_allclose(bg.load_image(tmp_path / "la.png"), [[[0, 0, 0], [1, 1, 1]]], atol=1e-6)


def test_load_palette_with_transparency(tmp_path):
    im = Image.new("P", (3, 1))
    im.putpalette([255, 0, 0, 0, 0, 255, 0, 255, 0] + [0] * (768 - 9))
    for i in range(3):
        im.putpixel((i, 0), i)
    im.save(tmp_path / "p.png", transparency=1)  # index 1 (blue) is transparent
    x = bg.load_image(tmp_path / "p.png")
    np.testing.assert_allclose(x, [[[1, 0, 0], [1, 1, 1], [0, 1, 0]]], atol=1e-6)


def test_load_16bit_gray(tmp_path):
    a = np.array([[0, 1000, 65535]], np.uint16)
    Image.fromarray(a).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    x = bg.load_image(tmp_path / "g16.png")
    np.testing.assert_allclose(x[..., 0], a / 65535.0, rtol=1e-6)
    np.testing.assert_array_equal(x[..., 0], x[..., 2])
    Image.fromarray(a).save(tmp_path / "g16.tif")
    np.testing.assert_allclose(bg.load_image(tmp_path / "g16.tif")[..., 1], a / 65535.0, rtol=1e-6)


@pytest.mark.parametrize("suffix", [".bmp", ".tif", ".TIFF", ".png"])
def test_load_lossless_rgb_exact(tmp_path, suffix):
    a = np.random.default_rng(0).integers(0, 256, (7, 9, 3)).astype(np.uint8)
    Image.fromarray(a).save(tmp_path / f"c{suffix}")
    np.testing.assert_allclose(bg.load_image(tmp_path / f"c{suffix}"), a / 255.0, atol=1e-7)


def test_load_bilevel_cmyk_and_jpeg(tmp_path):
    Image.fromarray(np.array([[0, 255]], np.uint8)).convert("1").save(tmp_path / "b.png")
    np.testing.assert_array_equal(bg.load_image(tmp_path / "b.png"), [[[0, 0, 0], [1, 1, 1]]])
    Image.new("CMYK", (4, 4), (0, 0, 0, 0)).save(tmp_path / "cmyk.jpg", quality=100)
    assert np.allclose(bg.load_image(tmp_path / "cmyk.jpg"), 1.0, atol=0.02)
    Image.new("RGB", (16, 8), (200, 100, 50)).save(tmp_path / "c.jpg", quality=95)
    x = bg.load_image(tmp_path / "c.jpg")
    assert x.shape == (8, 16, 3)
    np.testing.assert_allclose(x.mean(axis=(0, 1)), np.array([200, 100, 50]) / 255, atol=0.02)


def test_exif_orientation_applied_to_load_and_size(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees for display
    Image.new("RGB", (20, 10), (10, 20, 30)).save(tmp_path / "o.jpg", exif=exif)
    assert bg.load_image(tmp_path / "o.jpg").shape == (20, 10, 3)
    assert bg.image_size(tmp_path / "o.jpg") == (20, 10)


def test_load_errors_name_the_file(tmp_path):
    bad = tmp_path / "garbage.png"
    bad.write_bytes(b"this is not a png" * 10)
    with pytest.raises(ValueError, match="garbage.png"):
        bg.load_image(bad)
    with pytest.raises(ValueError, match="garbage.png"):
        bg.image_size(bad)
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3)).astype(np.uint8)).save(buf, "PNG")
    (tmp_path / "trunc.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ValueError, match="trunc.png"):
        bg.load_image(tmp_path / "trunc.png")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        bg.load_image(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="folder"):
        bg.load_image(tmp_path)


def test_to_float_rgb_conversions_and_errors():
    np.testing.assert_array_equal(bg.to_float_rgb(np.array([[True, False]])), [[[1, 1, 1], [0, 0, 0]]])
    np.testing.assert_allclose(bg.to_float_rgb(np.full((1, 1, 3), 65535, np.uint16)), 1.0)
    with pytest.raises(ValueError, match="dtype"):
        bg.to_float_rgb(np.zeros((2, 2), np.int32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bg.to_float_rgb(np.full((2, 2), 2.0))
    with pytest.raises(ValueError, match="shape"):
        bg.to_float_rgb(np.zeros((2, 2, 5), np.uint8))


def test_to_gray_bt601():
    rgb = np.array([[[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]]], np.float32)
    np.testing.assert_allclose(bg.to_gray(rgb)[..., 0], [[0.299, 0.587, 0.114, 1.0]], atol=1e-6)
    with pytest.raises(ValueError, match="3 channels"):
        bg.to_gray(np.zeros((2, 2, 1)))


# --------------------------------------------------------------------------- folders
def test_image_folder_lists_sorted_case_insensitive_non_recursive(tmp_path):
    px = np.zeros((8, 8, 3), np.uint8)
    for name in ["b.PNG", "a.JpG", "c.tiff", "d.bmp"]:
        Image.fromarray(px).save(tmp_path / name)
    (tmp_path / "PROVENANCE.md").write_text("x")
    (tmp_path / "notes.txt").write_text("x")
    Image.fromarray(px).save(tmp_path / ".hidden.png")
    (tmp_path / "sub").mkdir()
    Image.fromarray(px).save(tmp_path / "sub" / "e.png")
    folder = bg.ImageFolder(tmp_path)
    assert folder.names == ["a.JpG", "b.PNG", "c.tiff", "d.bmp"]
    assert len(folder) == 4 and folder.paths[0] == tmp_path / "a.JpG"
    assert folder[1].shape == (8, 8, 3) and folder.ids() == folder.names
    assert folder.size("c.tiff") == (8, 8)
    with pytest.raises(ValueError, match="nope.png"):
        folder.load("nope.png")


def test_image_folder_empty_and_missing(tmp_path):
    (tmp_path / "PROVENANCE.md").write_text("x")
    with pytest.raises(ValueError, match=str(tmp_path.name)):
        bg.ImageFolder(tmp_path)
    with pytest.raises(FileNotFoundError, match="no_such_folder"):
        bg.ImageFolder(tmp_path / "no_such_folder")
    with pytest.raises(ValueError, match="on_small"):
        bg.ImageFolder(tmp_path, on_small="ignore")


def test_image_folder_min_size_policy(tmp_path):
    Image.fromarray(np.zeros((64, 80, 3), np.uint8)).save(tmp_path / "big.png")
    Image.fromarray(np.zeros((30, 90, 3), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(ValueError, match=r"small\.png.*30x90"):
        bg.ImageFolder(tmp_path, min_size=48)
    with pytest.warns(UserWarning, match=r"small\.png"):
        folder = bg.ImageFolder(tmp_path, min_size=48, on_small="skip")
    assert folder.names == ["big.png"]
    assert bg.ImageFolder(tmp_path, min_size=30).names == ["big.png", "small.png"]


# --------------------------------------------------------------------------- sources
def test_get_source_kinds(tmp_path, monkeypatch):
    monkeypatch.delenv("DERAIN_DATA", raising=False)
    assert isinstance(bg.get_source("noise"), bg.ProceduralSource) and bg.get_source("noise").ids() is None
    assert isinstance(bg.get_source("skimage"), bg.SkimageSource)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "x.png")
    src = bg.get_source(str(tmp_path))
    assert isinstance(src, bg.ImageFolder) and src.ids() == ["x.png"]
    assert bg.get_source(src) is src
    with pytest.raises(ValueError, match="natural.*skimage.*texture"):
        bg.get_source("clouds")


def test_category_resolution_and_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("DERAIN_DATA", raising=False)
    with pytest.raises(ValueError, match="DERAIN_DATA"):
        bg.get_source("natural")
    assert bg.available_categories() == []
    root = tmp_path / "data"
    (root / "bg_faces_celebahq").mkdir(parents=True)
    (root / "bg_natural").mkdir()  # present but holds no image
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "bg_faces_celebahq" / "f.jpg")
    assert bg.available_categories(root) == ["faces"]
    src = bg.get_source("faces", data_dir=root)
    assert src.name == "faces" and src.ids() == ["f.jpg"]
    assert bg.get_source("bg_faces_celebahq", data_dir=root).root == src.root
    with pytest.raises(FileNotFoundError, match="bg_urban100"):
        bg.get_source("urban", data_dir=root)
    monkeypatch.setenv("DERAIN_DATA", str(root))
    assert bg.get_source("faces").root == root.resolve() / "bg_faces_celebahq"
    monkeypatch.setenv("DERAIN_DATA", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="DERAIN_DATA"):
        bg.get_source("faces")


def test_skimage_samples_offline_photographic(monkeypatch):
    attempts = []

    def no_network(*args, **kwargs):
        attempts.append(args)  # recorded: skimage_samples swallows loader errors by design
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)  # name lookup comes first
    monkeypatch.setattr(socket.socket, "connect", no_network)
    bg._skimage_cache.cache_clear()
    try:
        samples = bg.skimage_samples()
        assert len(bg.skimage_samples(photographic_only=False)) > len(samples)
    finally:
        bg._skimage_cache.cache_clear()
    assert attempts == []
    names = [n for n, _ in samples]
    assert len(names) >= 8 and set(names) <= set(bg.SKIMAGE_PHOTOS)
    assert not set(names) & set(bg.SKIMAGE_EXCLUDED)
    for _, img in samples:
        assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.float32
        assert 0.0 <= img.min() and img.max() <= 1.0 and min(img.shape[:2]) >= 256
        assert not img.flags.writeable


def test_procedural_source_ids_reproduce_images():
    src = bg.get_source("shapes")
    split = bg.draw_split(src, 3, 2, tile=32, test_size=40, seed=7)
    loader = bg.ProceduralSource("shapes", size=32)
    np.testing.assert_array_equal(loader.load(split.train_ids[2]), split.train[2])
    np.testing.assert_array_equal(bg.ProceduralSource("shapes", 40).load(split.test_ids[1]), split.test[1])
    with pytest.raises(ValueError, match="id"):
        loader.load("noise:s1:0")


# --------------------------------------------------------------------------- split
def test_split_ids_fixed_fraction_and_stem_rule():
    ids = [f"img_{i:04d}.jpg" for i in range(4000)]
    train, test = bg.split_ids(ids)
    assert set(train).isdisjoint(test) and sorted(train + test) == ids
    assert abs(len(test) / len(ids) - bg.TEST_FRACTION) < 0.03
    assert all(bg.is_test_image(i) == bg.is_test_image(i.replace(".jpg", ".png")) for i in ids[:200])
    # adding images never moves existing ones (per-image hash, not a rank)
    train2, test2 = bg.split_ids(ids[:1000])
    assert set(test2) == set(test) & set(ids[:1000])


def test_split_ids_keeps_one_image_on_each_side():
    pool = [f"x{i}.png" for i in range(200)]
    only_train = [i for i in pool if not bg.is_test_image(i)][:3]
    only_test = [i for i in pool if bg.is_test_image(i)][:3]
    for ids in (only_train, only_test):
        train, test = bg.split_ids(ids)
        assert len(train) >= 1 and len(test) >= 1 and sorted(train + test) == sorted(ids)
    with pytest.raises(ValueError, match="at least 2"):
        bg.split_ids(["one.png"])


def test_draw_split_tiles_are_exact_distinct_grid_tiles(coded_folder):
    root, sizes = coded_folder
    s = bg.draw_split(str(root), 30, 6, tile=32, test_size=48, seed=1)
    assert s.train.shape == (30, 32, 32, 3) and s.test.shape == (6, 48, 48, 3)
    assert s.train.dtype == np.float32 and len(set(s.train_ids)) == 30
    for tile, tid in zip(s.train, s.train_ids):
        name, pos = tid.rsplit("@", 1)
        y, x = map(int, pos.split(","))
        h, w = sizes[name]
        k = int(name[3:5])
        np.testing.assert_allclose(tile * 255, coded_image(k, h, w)[y : y + 32, x : x + 32], atol=1e-3)
        rows, cols = h // 32, w // 32
        assert (y - (h - rows * 32) // 2) % 32 == 0 and (x - (w - cols * 32) // 2) % 32 == 0  # on the grid


def test_draw_split_disjoint_nested_seeded(coded_folder):
    root, _ = coded_folder
    small = bg.draw_split(str(root), 5, 8, seed=3)
    big = bg.draw_split(str(root), 25, 8, seed=3)
    other = bg.draw_split(str(root), 25, 8, seed=4)
    assert big.train_ids[:5] == small.train_ids
    np.testing.assert_array_equal(big.train[:5], small.train)
    assert other.train_ids != big.train_ids
    for s in (small, big, other):
        assert set(s.train_images).isdisjoint(s.test_images)
        assert s.test_ids == small.test_ids
        np.testing.assert_array_equal(s.test, small.test)
    assert set(big.train_images).isdisjoint(other.test_images)


def test_draw_split_test_crops_centre_first(coded_folder):
    root, sizes = coded_folder
    _, test_imgs = bg.split_ids(list(sizes))
    eligible = [i for i in test_imgs if min(sizes[i]) >= 64]
    s = bg.draw_split(str(root), 1, len(eligible) + 2, seed=0)
    for tid, name in zip(s.test_ids, eligible):
        h, w = sizes[name]
        assert tid == f"{name}@{(h - 64) // 2},{(w - 64) // 2}"
    extra = s.test_ids[len(eligible) :]
    assert len(set(s.test_ids)) == len(s.test_ids) and all(e.rsplit("@", 1)[0] in eligible for e in extra)


def test_draw_split_too_few_raises_with_count(coded_folder):
    root, sizes = coded_folder
    train_imgs, _ = bg.split_ids(list(sizes))
    available = sum((sizes[i][0] // 64) * (sizes[i][1] // 64) for i in train_imgs)
    with pytest.raises(ValueError, match=rf"only {available} distinct 64x64 tiles.*smaller tile"):
        bg.draw_split(str(root), available + 1, 1)
    assert bg.draw_split(str(root), available, 1).train.shape[0] == available
    with pytest.raises(ValueError, match="n_test=.*smaller test_size"):
        bg.draw_split(str(root), 1, 10_000)
    with pytest.raises(ValueError, match="n_train"):
        bg.draw_split(str(root), -1, 1)
    with pytest.raises(ValueError, match="tile"):
        bg.draw_split(str(root), 1, 1, tile=0)


def test_draw_split_gray_and_tensors(coded_folder):
    root, _ = coded_folder
    rgb = bg.draw_split(str(root), 4, 2, tile=16, test_size=16, seed=2)
    gray = bg.draw_split(str(root), 4, 2, tile=16, test_size=16, seed=2, gray=True)
    assert gray.train.shape == (4, 16, 16, 1) and gray.channels == 1
    np.testing.assert_allclose(gray.train[..., 0], rgb.train @ np.array([0.299, 0.587, 0.114]), atol=1e-6)
    t = rgb.train_tensor()
    assert t.shape == (4, 3, 16, 16) and t.dtype == torch.float32
    np.testing.assert_array_equal(t.numpy(), rgb.train.transpose(0, 3, 1, 2))
    assert gray.test_tensor().shape == (2, 1, 16, 16)
    assert "train=(4, 16, 16, 3)" in repr(rgb)


def test_draw_split_procedural():
    s = bg.draw_split("noise", 6, 3, tile=32, test_size=48, seed=1)
    np.testing.assert_array_equal(s.train, procedural.procedural("noise", 32, 1, 6))
    assert s.test.shape == (3, 48, 48, 3)
    s2 = bg.draw_split("noise", 2, 3, tile=32, test_size=48, seed=2)
    np.testing.assert_array_equal(s.test, s2.test)  # test stream ignores the seed
    assert not np.array_equal(s.train[:2], s2.train)
    assert set(s.test_ids).isdisjoint(s.train_ids)
    # the test stream is not the training stream of any small seed
    assert not any(np.array_equal(s.test[0], procedural.procedural("noise", 48, k, 1)[0]) for k in range(5))


# --------------------------------------------------------------------------- dead leaves
def slopes(images: np.ndarray) -> np.ndarray:
    from derain_utils.measure import complexity

    return np.array([complexity.measure_image(x, ["spectral_slope"])["spectral_slope"] for x in images])


def test_dead_leaves_shape_range_determinism_nesting():
    a = procedural.dead_leaves((40, 56), seed=3, n=4)
    assert a.shape == (4, 40, 56, 3) and a.dtype == np.float32 and 0.0 <= a.min() and a.max() <= 1.0
    np.testing.assert_array_equal(a, procedural.dead_leaves((40, 56), seed=3, n=4))  # bitwise repeatable
    np.testing.assert_array_equal(a[:2], procedural.procedural("deadleaves", (40, 56), 3, 2))  # nested: i = (seed, i)
    assert not np.array_equal(a[0], procedural.dead_leaves((40, 56), seed=4, n=1)[0])
    assert procedural.dead_leaves(24, 0, 0).shape == (0, 24, 24, 3)
    assert "deadleaves" in procedural.PROCEDURAL_KINDS and "deadleaves" not in procedural.LADDER  # ladder unchanged
    with pytest.raises(ValueError, match="seed"):
        procedural.dead_leaves(32, -1)


def test_dead_leaves_are_distinct_and_not_flat():
    x = procedural.dead_leaves(32, seed=0, n=128).reshape(128, -1).astype(np.float64)
    sq = (x**2).sum(1)
    d2 = (sq[:, None] + sq[None] - 2 * x @ x.T) / x.shape[1]  # mean squared difference of every pair
    off = d2[~np.eye(len(x), dtype=bool)]
    assert off.min() > 1e-4, "two dead-leaves images are (nearly) identical"
    per_image_sd = x.reshape(128, 32 * 32, 3).std(1).mean(-1)
    assert (per_image_sd > 0.01).all()  # every image has structure (no flat image)


def test_dead_leaves_has_natural_image_spectrum():
    # photographs give about -2 to -3 in complexity's 1/16-1/2 cycles/px band; the ideal 1/f**2 law is -2
    s = slopes(procedural.dead_leaves(64, seed=0, n=48))
    assert -2.7 < np.median(s) < -2.0, np.median(s)
    assert (s > -4.5).all() and (s < -1.2).all(), (s.min(), s.max())


def test_draw_split_deadleaves_disjoint_any_size():
    s = bg.draw_split("deadleaves", 300, 12, tile=32, test_size=48, seed=0)
    assert s.train.shape == (300, 32, 32, 3) and s.test.shape == (12, 48, 48, 3) and s.source == "deadleaves"
    np.testing.assert_array_equal(s.train, procedural.dead_leaves(32, 0, 300))
    s1 = bg.draw_split("deadleaves", 16, 12, tile=48, test_size=48, seed=1)
    np.testing.assert_array_equal(s1.test, s.test)  # one test stream for every seed and n_train
    assert set(s.test_ids).isdisjoint(s.train_ids) and set(s.test_ids).isdisjoint(s1.train_ids)
    train48 = np.concatenate([procedural.dead_leaves(48, k, 16) for k in range(4)])
    assert not any(np.array_equal(t, u) for t in s.test for u in train48)
    src = bg.get_source("deadleaves")
    assert isinstance(src, bg.ProceduralSource) and src.ids() is None
    np.testing.assert_array_equal(src.load("deadleaves:test:3"), bg.draw_split("deadleaves", 0, 4, test_size=256).test[3])


@pytest.mark.shared_data
def test_dead_leaves_statistics_match_natural_tiles(shared_data):
    from derain_utils.measure import complexity

    nat = bg.draw_split("natural", 96, 1, tile=64, seed=0, data_dir=shared_data).train
    dl = procedural.dead_leaves(64, seed=0, n=96)
    m_nat, m_dl = complexity.measure_set(nat).median(numeric_only=True), complexity.measure_set(dl).median(
        numeric_only=True)
    assert abs(m_dl["spectral_slope"] - m_nat["spectral_slope"]) < 0.3, (m_dl, m_nat)
    assert 0.67 < m_dl["grad_mean"] / m_nat["grad_mean"] < 1.5, (m_dl, m_nat)


def test_draw_split_skimage_offline():
    s = bg.draw_split("skimage", 64, 4, seed=0)
    assert s.train.shape == (64, 64, 64, 3) and set(s.train_images).isdisjoint(s.test_images)


@pytest.mark.shared_data
def test_natural_category_loads_and_splits_fast(shared_data):
    src = bg.get_source("natural", data_dir=shared_data)
    assert len(src.ids()) == 95 and bg.available_categories(shared_data) == list(bg.CATEGORIES)
    t = time.perf_counter()
    s = bg.draw_split("natural", 256, 24, seed=0, data_dir=shared_data)
    elapsed = time.perf_counter() - t
    assert elapsed < 10.0, f"draw_split took {elapsed:.1f} s"  # ~0.3 s here; generous for loaded CI
    assert s.train.shape == (256, 64, 64, 3) and 0.0 <= s.train.min() and s.train.max() <= 1.0
    assert set(s.train_images).isdisjoint(s.test_images)
    s2 = bg.draw_split("natural", 64, 24, seed=9, data_dir=shared_data)
    assert s2.test_ids == s.test_ids and set(s2.train_images).isdisjoint(s.test_images)


# --------------------------------------------------------------------------- random crops
def test_random_crops_shape_determinism_device():
    images = torch.rand(3, 2, 20, 24)
    a = bg.random_crops(images, 16, 8, torch.Generator().manual_seed(0))
    b = bg.random_crops(images, 16, 8, torch.Generator().manual_seed(0))
    c = bg.random_crops(images, 16, 8, torch.Generator().manual_seed(1))
    assert a.shape == (16, 2, 8, 8) and a.dtype == images.dtype and a.device == images.device
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_random_crops_are_flipped_windows_with_all_flips():
    images = torch.arange(2 * 1 * 5 * 6, dtype=torch.float32).reshape(2, 1, 5, 6)
    crops = bg.random_crops(images, 400, 3, torch.Generator().manual_seed(0))
    seen_flips = set()
    for crop in crops:
        found = False
        for n in range(2):
            for y in range(3):
                for x in range(4):
                    win = images[n, :, y : y + 3, x : x + 3]
                    for fv in (False, True):
                        for fh in (False, True):
                            cand = win.flip(-2) if fv else win
                            cand = cand.flip(-1) if fh else cand
                            if torch.equal(cand, crop):
                                found = True
                                seen_flips.add((fv, fh))
        assert found
    assert seen_flips == {(False, False), (False, True), (True, False), (True, True)}


def test_random_crops_bad_input():
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="patch"):
        bg.random_crops(torch.rand(1, 3, 8, 8), 2, 9, g)
    with pytest.raises(ValueError, match="batch"):
        bg.random_crops(torch.rand(1, 3, 8, 8), 0, 4, g)
    with pytest.raises(ValueError, match="images"):
        bg.random_crops(torch.rand(3, 8, 8), 2, 4, g)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_random_crops_on_cuda_match_cpu_for_a_cpu_generator():
    images = torch.rand(4, 3, 32, 32)
    cpu = bg.random_crops(images, 8, 16, torch.Generator().manual_seed(0))
    gpu = bg.random_crops(images.cuda(), 8, 16, torch.Generator().manual_seed(0))
    assert gpu.device.type == "cuda" and torch.equal(gpu.cpu(), cpu)
    g = torch.Generator(device="cuda").manual_seed(0)
    assert bg.random_crops(images.cuda(), 8, 16, g).shape == (8, 3, 16, 16)


# --------------------------------------------------------------------------- mixed sets
def test_mix_names_round_trip_and_refuse_bad_input():
    assert bg.mix_name("faces", "urban", 0.25) == "faces+urban@0.25"
    assert bg.mix_name("blobs", "noise", 0.5) == "blobs+noise@0.5"
    assert bg.parse_mix("faces+urban@0.25") == ("faces", "urban", 0.25)
    for other in ("faces", "faces+urban", "faces+faces@0.5", "faces+urban@1.0", "a+b@0", 3, None):
        assert bg.parse_mix(other) is None
    for args, match in ((("faces", "faces", 0.5), "two different"), (("faces", "urban", 0.0), "strictly between"),
                        (("faces", "urban", 1), "strictly between"), (("faces", "urban", 1e-9), "6 decimals"),
                        (("faces", "urban", "half"), "a number"), (("fa+ces", "urban", 0.5), "without '\\+'"),
                        (("faces", "urban", float("nan")), "strictly between")):
        with pytest.raises(ValueError, match=match):
            bg.mix_name(*args)
    assert bg.mix_counts(64, 0.25) == (48, 16) and bg.mix_counts(8, 0.5) == (4, 4) and bg.mix_counts(5, 0.5) == (2, 3)
    with pytest.raises(ValueError, match="mixed training set"):
        bg.get_source("faces+urban@0.25")


def test_a_mixed_set_is_the_two_pure_draws_of_its_seed_cut_to_the_proportion():
    for seed in (0, 3):
        mix = bg.draw_split("blobs+noise@0.25", 8, 4, tile=32, test_size=32, seed=seed)
        a = bg.draw_split("blobs", 8, 4, tile=32, test_size=32, seed=seed)
        b = bg.draw_split("noise", 8, 4, tile=32, test_size=32, seed=seed)
        assert mix.source == "blobs+noise@0.25" and mix.train.shape == (8, 32, 32, 3) and mix.test.shape[0] == 4
        # 6 blobs at (k + 1/2)/6 and 2 noise at (j + 1/2)/2, interleaved: b b N b b b N b (ties to blobs)
        order = [("a", 0), ("a", 1), ("b", 0), ("a", 2), ("a", 3), ("a", 4), ("b", 1), ("a", 5)]
        for pos, (src, k) in enumerate(order):
            np.testing.assert_array_equal(mix.train[pos], (a if src == "a" else b).train[k])
        assert mix.train_ids == [f"blobs/{a.train_ids[k]}" if src == "a" else f"noise/{b.train_ids[k]}"
                                 for src, k in order]
        # test crops: 3 blobs and 1 noise
        np.testing.assert_array_equal(mix.test[[0, 1, 3]], a.test[:3])
        np.testing.assert_array_equal(mix.test[2], b.test[0])
    gray = bg.draw_split("blobs+noise@0.5", 4, 2, tile=16, test_size=16, seed=1, gray=True)
    assert gray.train.shape == (4, 16, 16, 1) and gray.channels == 1


def test_a_mixed_set_of_image_folders_splits_without_leakage(coded_folder, tmp_path_factory):
    folder, _ = coded_folder
    other = tmp_path_factory.mktemp("other")
    for k in range(12):
        Image.fromarray(coded_image(100 + k, 128, 128)).save(other / f"o{k:02d}.png")
    name = f"{folder}+{other}@0.5"
    mix = bg.draw_split(name, 10, 2, tile=32, test_size=32, seed=2)
    assert mix.source == name and len(mix.train_ids) == 10
    test_images = {i.rsplit("@", 1)[0] for i in mix.test_ids}
    assert not test_images & set(mix.train_images)  # held-out images of both sources stay held out
