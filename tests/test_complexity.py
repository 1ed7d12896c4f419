"""Tests of derain_utils.measure.complexity: known answers, directions, determinism, sets, CLI, real data."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from skimage import data as skdata
from skimage.filters import gaussian

from derain_utils.measure import complexity
from derain_utils.measure.complexity import (
    HIGHER_IS_MORE_COMPLEX,
    MEASURES,
    SLOPE_FLOOR,
    main,
    measure_image,
    measure_set,
    summarize,
)


def _noise(size: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((size, size, 3)).astype(np.float32)


def _flat(size: int = 64, value: float = 0.4) -> np.ndarray:
    return np.full((size, size, 3), value, dtype=np.float32)


def _powerlaw(alpha: float, n: int = 128, seed: int = 0) -> np.ndarray:
    """Gray image whose power spectrum falls as f**-alpha (random phases), scaled to [0.1, 0.9]."""
    rng = np.random.default_rng(seed)
    f = np.sqrt(np.fft.fftfreq(n)[:, None] ** 2 + np.fft.fftfreq(n)[None, :] ** 2)
    f[0, 0] = 1.0
    amp = f ** (-alpha / 2)
    amp[0, 0] = 0.0
    img = np.real(np.fft.ifft2(amp * np.exp(2j * np.pi * rng.random((n, n)))))
    return 0.1 + 0.8 * (img - img.min()) / (img.max() - img.min())


@pytest.fixture(scope="module")
def astronaut_crop() -> np.ndarray:
    """A 128x128 natural crop (face, suit, flag) from the image scikit-image ships."""
    return (skdata.astronaut()[80:208, 160:288] / 255.0).astype(np.float32)


def test_measures_and_directions_are_documented():
    assert list(MEASURES) == ["png_bpp", "jpeg_bpp", "grad_mean", "grad_entropy", "spectral_slope"]
    assert set(HIGHER_IS_MORE_COMPLEX) == set(MEASURES)
    for name, sentence in MEASURES.items():
        assert sentence.endswith(".") and len(sentence) > 40, name
    assert set(measure_image(_noise())) == set(MEASURES)


def _more_complex(a: dict, b: dict, name: str) -> bool:
    """Is image ``a`` more complex than ``b`` on measure ``name`` (in its documented direction)?"""
    return a[name] > b[name] if HIGHER_IS_MORE_COMPLEX[name] else a[name] < b[name]


def test_flat_is_simpler_than_noise_on_every_measure():
    flat, noise = measure_image(_flat()), measure_image(_noise())
    for name in MEASURES:
        assert _more_complex(noise, flat, name), (name, flat[name], noise[name])
    # and the flat image's known answers
    assert flat["grad_entropy"] == 0.0
    assert flat["grad_mean"] == pytest.approx(0.0, abs=1e-12)
    assert flat["spectral_slope"] == SLOPE_FLOOR


def test_blurred_is_simpler_than_its_sharp_original(astronaut_crop):
    sharp = measure_image(astronaut_crop)
    blurred = measure_image(gaussian(astronaut_crop, sigma=1.5, channel_axis=-1))
    for name in MEASURES:
        assert _more_complex(sharp, blurred, name), (name, sharp[name], blurred[name])


def test_png_bpp_of_random_bytes_is_about_24():
    u8 = np.random.default_rng(1).integers(0, 256, size=(96, 96, 3), dtype=np.uint8)
    bpp = measure_image(u8, ["png_bpp"])["png_bpp"]
    assert 24.0 <= bpp <= 24.5  # incompressible: 24 raw bits plus filter bytes and deflate framing
    gray = measure_image(u8[..., 0], ["png_bpp"])["png_bpp"]
    assert 8.0 <= gray <= 8.3


def test_headers_are_excluded_from_bpp():
    # a flat 64x64 image: a 600-byte JPEG header alone would be 1.2 bpp
    flat = measure_image(_flat(), ["png_bpp", "jpeg_bpp"])
    assert flat["png_bpp"] < 0.3 and flat["jpeg_bpp"] < 0.3
    # and bpp does not depend on image size for statistically identical content
    small = measure_image(_noise(64, seed=2), ["jpeg_bpp"])["jpeg_bpp"]
    large = measure_image(_noise(256, seed=2), ["jpeg_bpp"])["jpeg_bpp"]
    assert small == pytest.approx(large, rel=0.03)


@pytest.mark.parametrize("alpha", [0.0, 1.0, 2.0, 3.0])
def test_spectral_slope_recovers_power_law_exponent(alpha):
    slopes = [measure_image(_powerlaw(alpha, seed=s), ["spectral_slope"])["spectral_slope"] for s in range(3)]
    assert np.mean(slopes) == pytest.approx(-alpha, abs=0.15)


def test_grad_mean_of_a_ramp():
    step = 2 / 255  # exactly two grey levels per pixel, so 8-bit rounding changes nothing
    ramp = np.tile(np.arange(64) * step, (64, 1))
    # sqrt(2) * slope inside; the two border columns (reflect mode) see half the slope
    assert measure_image(ramp, ["grad_mean"])["grad_mean"] == pytest.approx(math.sqrt(2) * step, rel=0.02)


def test_grad_entropy_grows_with_the_spread_of_edge_strengths():
    # two-level stripes have a few distinct gradient magnitudes; noise has many
    stripes = np.zeros((64, 64))
    stripes[:, ::8] = 1.0
    e_stripes = measure_image(stripes, ["grad_entropy"])["grad_entropy"]
    e_noise = measure_image(_noise()[..., 0], ["grad_entropy"])["grad_entropy"]
    assert 0 < e_stripes < 2.0 < e_noise <= math.log2(complexity.GRAD_BINS)


def test_measures_are_deterministic_and_input_forms_agree(astronaut_crop):
    a = measure_image(astronaut_crop)
    assert measure_image(astronaut_crop) == a
    u8 = np.round(astronaut_crop * 255).astype(np.uint8)
    assert measure_image(u8) == a  # floats are rounded to the same 8-bit image
    assert measure_image(torch.from_numpy(astronaut_crop).permute(2, 0, 1)) == a
    assert measure_image(astronaut_crop, ["grad_entropy", "png_bpp"]) == {
        "grad_entropy": a["grad_entropy"],
        "png_bpp": a["png_bpp"],
    }
    gray = astronaut_crop[..., 0]
    assert measure_image(gray[..., None]) == measure_image(gray)


@pytest.mark.parametrize(
    "img, match",
    [
        (np.zeros((16, 64, 3)), r"img is 16x64 px; complexity needs sides >= 32"),
        (np.zeros((64, 64, 4)), r"img has shape \(64, 64, 4\)"),
        (np.zeros((64, 64, 3), dtype=np.int32), r"img has dtype int32"),
        (np.full((64, 64, 3), 255.0), r"img has values in \[255, 255\]"),
        (np.full((64, 64), np.nan), r"img has values in \[nan, nan\]"),
        (torch.zeros(2, 3, 64, 64), r"img is a torch tensor of shape \(2, 3, 64, 64\)"),
    ],
)
def test_measure_image_bad_input(img, match):
    with pytest.raises(ValueError, match=match):
        measure_image(img)


def test_unknown_measure_is_named():
    with pytest.raises(ValueError, match=r"'sharpness'.*valid names are"):
        measure_image(_flat(), ["png_bpp", "sharpness"])


# ----------------------------------------------------------------------------- sets
def test_measure_set_from_list_array_and_tensor_agree():
    imgs = [_noise(48, seed=s) for s in range(3)]
    df = measure_set(imgs)
    assert list(df.columns) == ["set", "image", *MEASURES]
    assert len(df) == 3 and (df["set"] == "images").all() and list(df["image"]) == ["0", "1", "2"]
    stack = np.stack(imgs)
    pd.testing.assert_frame_equal(measure_set(stack), df)
    pd.testing.assert_frame_equal(measure_set(torch.from_numpy(stack).permute(0, 3, 1, 2)), df)
    named = measure_set(imgs, names=["a", "b", "c"], set_name="noise", measures=["png_bpp"])
    assert list(named.columns) == ["set", "image", "png_bpp"]
    assert list(named["image"]) == ["a", "b", "c"] and (named["set"] == "noise").all()
    np.testing.assert_array_equal(named["png_bpp"], df["png_bpp"])


def test_measure_set_max_images_is_a_seeded_subset():
    imgs = [_noise(32, seed=s) for s in range(6)]
    a = measure_set(imgs, max_images=3, seed=1, measures=["grad_mean"])
    b = measure_set(imgs, max_images=3, seed=1, measures=["grad_mean"])
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 3 and list(a["image"]) == sorted(a["image"], key=int)
    assert len(measure_set(imgs, max_images=10, measures=["grad_mean"])) == 6
    picks = {tuple(measure_set(imgs, max_images=3, seed=s, measures=["grad_mean"])["image"]) for s in range(6)}
    assert len(picks) > 1  # the seed matters


def test_measure_set_bad_input():
    with pytest.raises(ValueError, match="names has 2 entries but the set has 3 images"):
        measure_set([_flat()] * 3, names=["a", "b"])
    with pytest.raises(ValueError, match="max_images"):
        measure_set([_flat()], max_images=0)
    with pytest.raises(ValueError, match="empty"):
        measure_set([])
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        measure_set(_flat())
    with pytest.raises(ValueError, match="expected a folder path"):
        measure_set(42)


def test_summarize_shape_and_values():
    df = pd.concat(
        [
            measure_set([_flat(48, v) for v in (0.2, 0.5)], set_name="flat"),
            measure_set([_noise(48, seed=s) for s in range(3)], set_name="noise"),
        ],
        ignore_index=True,
    )
    s = summarize(df)
    assert list(s.columns) == ["set", "measure", "n", "mean", "std"]
    assert s.shape == (2 * len(MEASURES), 5)
    assert list(s["set"].unique()) == ["flat", "noise"]
    assert list(s["measure"][:5]) == list(MEASURES)
    row = s[(s["set"] == "noise") & (s["measure"] == "png_bpp")].iloc[0]
    vals = df.loc[df["set"] == "noise", "png_bpp"]
    assert row["n"] == 3 and row["mean"] == pytest.approx(vals.mean()) and row["std"] == pytest.approx(vals.std())
    with pytest.raises(ValueError, match="'set' column"):
        summarize(df.drop(columns="set"))


# ------------------------------------------------------------------ folders and CLI
def _write_folder(path, images, suffix=".png"):
    path.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        Image.fromarray(np.round(img * 255).astype(np.uint8)).save(path / f"img_{i:02d}{suffix}")
    return path


def test_measure_set_from_folder_matches_arrays(tmp_path):
    imgs = [_noise(48, seed=s) for s in range(3)]
    folder = _write_folder(tmp_path / "noise_set", imgs)
    df = measure_set(folder)
    assert (df["set"] == "noise_set").all() and len(df) == 3
    assert all("img_0" in name for name in df["image"])
    ref = measure_set(imgs)  # PNG is lossless, so the same 8-bit pixels
    np.testing.assert_allclose(df[list(MEASURES)].to_numpy(), ref[list(MEASURES)].to_numpy(), rtol=1e-12)


def test_cli_compares_folders(tmp_path, capsys):
    simple = _write_folder(tmp_path / "simple", [_flat(48, v) for v in (0.2, 0.4, 0.6)])
    busy = _write_folder(tmp_path / "busy", [_noise(48, seed=s) for s in range(3)])
    out_csv = tmp_path / "out" / "complexity.csv"
    code = main([str(simple), str(busy), "--csv", str(out_csv), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.out.splitlines()
    header = next(line for line in lines if "simple" in line and "busy" in line and "images:" not in line)
    assert header.index("simple") < header.index("busy")
    for name, sentence in MEASURES.items():
        assert any(line.startswith(name) and "±" in line for line in lines), name
        assert f"{name}: {sentence}" in captured.out
    written = pd.read_csv(out_csv)
    assert len(written) == 6 and set(written["set"]) == {"simple", "busy"}
    simple_png = written.loc[written["set"] == "simple", "png_bpp"].max()
    assert simple_png < written.loc[written["set"] == "busy", "png_bpp"].min()


def test_cli_max_images(tmp_path, capsys):
    folder = _write_folder(tmp_path / "many", [_noise(32, seed=s) for s in range(5)])
    out_csv = tmp_path / "few.csv"
    assert main([str(folder), "--max-images", "2", "--csv", str(out_csv)]) == 0
    assert len(pd.read_csv(out_csv)) == 2
    assert "many 2" in capsys.readouterr().out


def test_cli_errors_name_the_culprit(tmp_path, capsys):
    empty = tmp_path / "empty_set"
    empty.mkdir()
    assert main([str(empty)]) == 2
    err = capsys.readouterr().err
    assert "empty_set" in err and "error" in err and "Traceback" not in err

    broken = _write_folder(tmp_path / "broken_set", [_noise(48)])
    (broken / "corrupt.png").write_bytes(b"this is not a png")
    assert main([str(broken), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "corrupt.png" in err and "Traceback" not in err

    missing = tmp_path / "no_such_folder"
    assert main([str(missing)]) == 2
    assert "no_such_folder" in capsys.readouterr().err

    with pytest.raises(SystemExit) as exc:  # argparse: no PATH at all
        main([])
    assert exc.value.code == 2


# ------------------------------------------------------------------------- real data
@pytest.mark.shared_data
def test_faces_have_the_lowest_png_bpp_of_the_four_categories(shared_data):
    from derain_utils.synth.backgrounds import CATEGORIES

    frames = [
        measure_set(shared_data / folder, max_images=8, seed=0, measures=["png_bpp"], set_name=cat)
        for cat, folder in CATEGORIES.items()
    ]
    means = pd.concat(frames).groupby("set")["png_bpp"].mean()
    print("mean png_bpp of 8 images per category:", means.round(2).to_dict())
    assert means.idxmin() == "faces"


def test_measure_set_from_source_objects(tmp_path):
    from derain_utils.synth.backgrounds import ImageFolder, Source, get_source

    class TwoNoises(Source):
        name = "two_noises"

        def ids(self):
            return ["n1", "n2"]

        def load(self, id):
            return _noise(48, seed=int(id[1]))

    df = measure_set(TwoNoises())
    assert list(df["image"]) == ["n1", "n2"] and (df["set"] == "two_noises").all()
    ref = measure_set([_noise(48, seed=1), _noise(48, seed=2)])
    np.testing.assert_array_equal(df[list(MEASURES)].to_numpy(), ref[list(MEASURES)].to_numpy())

    folder = _write_folder(tmp_path / "pngs", [_noise(40, seed=s) for s in range(2)])
    from_source = measure_set(ImageFolder(folder))
    pd.testing.assert_frame_equal(from_source, measure_set(folder))

    with pytest.raises(ValueError, match="procedural"):
        measure_set(get_source("noise"))


# --------------------------------------------------------------------- the learned measure
from derain_utils.measure.complexity import (
    ALL_MEASURES,
    LEARNED_MEASURES,
    TinyAutoencoder,
    fit_autoencoder,
    learned_complexity,
)
from derain_utils.synth import procedural

_FAST = {"steps": 100}  # enough to rank the ladder (checked on seeds 0-2); the default 300 is for real use


@pytest.fixture(scope="module")
def ladder_losses() -> dict[str, float]:
    """ae_loss of 12 procedural 64 px images per kind (3 held out), 100 steps."""
    return {k: learned_complexity(procedural.procedural(k, 64, seed=0, n=12), **_FAST)
            for k in ("flat", "blobs", "noise", "texture")}


def test_learned_measure_is_documented():
    assert list(LEARNED_MEASURES) == ["ae_loss"]
    assert list(ALL_MEASURES) == [*MEASURES, "ae_loss"]
    assert LEARNED_MEASURES["ae_loss"].endswith(".")


def test_tiny_autoencoder_shapes_and_size():
    ae = TinyAutoencoder()
    x = torch.rand(2, 3, 32, 48)
    assert ae(x).shape == x.shape
    assert ae.encoder(x - x.mean()).shape == (2, 4, 8, 12)  # the code: 4 channels at 1/4 resolution
    assert 5_000 < sum(p.numel() for p in ae.parameters()) < 20_000
    assert TinyAutoencoder(channels=1)(torch.rand(1, 1, 16, 16)).shape == (1, 1, 16, 16)
    with pytest.raises(ValueError, match="width"):
        TinyAutoencoder(width=0)


def test_ae_loss_ranks_simple_below_complex_procedural_sets(ladder_losses):
    loss = ladder_losses
    assert loss["flat"] < 0.005  # the mean colour passes through: a flat set is fitted exactly
    assert loss["flat"] < loss["blobs"] < min(loss["noise"], loss["texture"]), loss


def test_ae_loss_of_uniform_noise_is_its_mean_absolute_deviation():
    # nothing in i.i.d. noise can be predicted: the best a 12:1 code can do is close to the
    # mean, whose L1 error is E|U - 1/2| = 0.25 (a little detail gets through the code)
    noise = [_noise(64, seed=s) for s in range(8)]
    assert 0.2 < learned_complexity(noise, steps=60) < 0.26


def test_fit_autoencoder_is_deterministic_and_reports_its_parts():
    imgs = procedural.procedural("shapes", 64, seed=3, n=8)
    a = fit_autoencoder(imgs, steps=40, seed=5)
    b = fit_autoencoder(imgs, steps=40, seed=5)
    assert a.heldout_loss == b.heldout_loss and np.array_equal(a.history, b.history)
    assert len(a.heldout_images) == 2 and len(a.fit_images) == 6  # round(0.25 * 8)
    assert sorted(a.heldout_images + a.fit_images) == list(range(8))
    assert a.tile_losses.shape == (2 * 4,)  # two held-out images of four 32 px tiles each
    assert set(a.image_losses) == set(a.heldout_images)
    assert a.heldout_loss == pytest.approx(np.mean(list(a.image_losses.values())))
    assert a.history.shape == (40,) and a.history[-5:].mean() < a.history[:5].mean()
    c = fit_autoencoder(imgs, steps=40, seed=6)
    assert c.heldout_images != a.heldout_images or c.heldout_loss != a.heldout_loss


def test_learned_complexity_input_forms_agree_and_threads_are_restored(tmp_path):
    imgs = procedural.procedural("blobs", 32, seed=1, n=4)
    before = torch.get_num_threads()
    ref = learned_complexity(imgs, steps=10)
    assert torch.get_num_threads() == before
    assert learned_complexity(list(imgs), steps=10) == ref
    assert learned_complexity(torch.from_numpy(imgs).permute(0, 3, 1, 2), steps=10) == ref
    folder = _write_folder(tmp_path / "blobs", list(imgs))  # PNG keeps the 8-bit pixels exactly
    assert learned_complexity(folder, steps=10) == ref


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"steps": 0}, "steps"),
        ({"patch": 30}, "patch"),
        ({"holdout": 1.0}, "holdout"),
        ({"lr": -1.0}, "lr"),
        ({"seed": -1}, "seed"),
        ({"threads": 0}, "threads"),
        ({"patch": 64}, "no 64x64 tile"),
    ],
)
def test_fit_autoencoder_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit_autoencoder([_noise(48, seed=s) for s in range(3)], **kwargs)


def test_fit_autoencoder_bad_sets_are_named():
    with pytest.raises(ValueError, match="at least 2 images"):
        learned_complexity([_noise(48)])
    with pytest.raises(ValueError, match="mix of RGB and gray"):
        learned_complexity([_noise(48), _noise(48)[..., 0]])
    with pytest.raises(ValueError, match="procedural"):
        learned_complexity("noise")


def test_cli_learned_adds_ae_loss_for_held_out_images(tmp_path, capsys):
    simple = _write_folder(tmp_path / "simple", [_flat(48, v) for v in (0.1, 0.3, 0.5, 0.7)])
    busy = _write_folder(tmp_path / "busy", [_noise(48, seed=s) for s in range(4)])
    out_csv = tmp_path / "ae.csv"
    code = main([str(simple), str(busy), "--learned", "--ae-steps", "30", "--csv", str(out_csv), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert any(line.startswith("ae_loss") for line in captured.out.splitlines())
    assert f"ae_loss: {LEARNED_MEASURES['ae_loss']}" in captured.out
    df = pd.read_csv(out_csv)
    held = df.dropna(subset=["ae_loss"])
    assert held.groupby("set").size().to_dict() == {"simple": 1, "busy": 1}  # round(0.25 * 4) per folder
    assert held.set_index("set").loc["simple", "ae_loss"] < held.set_index("set").loc["busy", "ae_loss"]
    assert main([str(simple), "--learned", "--ae-steps", "0", "--no-progress"]) == 2
    assert "--ae-steps" in capsys.readouterr().err
    # was: "Maximum allowed dimension exceeded" from numpy, deep inside the autoencoder
    assert main([str(simple), "--learned", "--ae-steps", "99999999999999999999", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--ae-steps must be an integer from 1 to 1,000,000, got 99999999999999999999" in err
    assert err.count("\n") == 1
    with pytest.raises(ValueError, match="steps must be at most 1,000,000"):
        complexity.fit_autoencoder(_noise(48, seed=0)[None].repeat(4, 0), steps=10**7)


def test_measure_categories_orders_simple_below_complex():
    flat = procedural.procedural("flat", 64, seed=0, n=6)
    noise = procedural.procedural("noise", 64, seed=0, n=6)
    per_tile, summary, means = complexity.measure_categories(
        {"noise": ([f"n{i}" for i in range(6)], noise), "flat": ([f"f{i}" for i in range(6)], flat)}, ae_steps=20)
    assert list(means.index) == ["noise", "flat"] and list(means.columns) == list(complexity.ALL_MEASURES)
    assert (means.loc["flat"] < means.loc["noise"]).all()  # higher = more complex, for every measure
    assert len(per_tile) == 12 and set(per_tile["set"]) == {"flat", "noise"}
    assert set(summary["measure"]) == set(complexity.ALL_MEASURES)
    tiles = {"flat": (["a", "b"], flat[:2])}
    again = complexity.measure_categories(tiles, ae_steps=20)[2]
    assert again.equals(complexity.measure_categories(tiles, ae_steps=20)[2])  # deterministic
    with pytest.raises(ValueError, match="non-empty mapping"):
        complexity.measure_categories({})


def test_measure_categories_without_the_learned_measure_matches_the_per_image_measures():
    flat = procedural.procedural("flat", 64, seed=0, n=4)
    noise = procedural.procedural("noise", 64, seed=0, n=4)
    tiles = {"flat": ([f"f{i}" for i in range(4)], flat), "noise": ([f"n{i}" for i in range(4)], noise)}
    _, summary, means = complexity.measure_categories(tiles, learned=False)
    full = complexity.measure_categories(tiles, ae_steps=20)[2]
    assert "ae_loss" not in set(summary["measure"]) and means["ae_loss"].isna().all()
    others = [m for m in complexity.ALL_MEASURES if m != "ae_loss"]
    pd.testing.assert_frame_equal(means[others], full[others])
