"""Tests of derain_utils.nets.training (derain_utils.lab.bench is tested in test_bench.py).

Known answers (identity model removes nothing; an oracle that returns the
background removes everything), invariants (history layout, eval-set stability),
bitwise determinism, bitwise resume after an interruption, and bad input.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from derain_utils.measure import metrics, scoring
from derain_utils.nets import models, training
from derain_utils.synth import procedural, rain

TINY = {"depth": 3, "width": 8}
PRESETS = ("small", "slanted", "long_wide", "dense")


def tiny_model(channels: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return models.build_model("resnet", in_channels=channels, **TINY)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread is fastest, and immune to a busy second core (OpenMP waits)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def train_images() -> torch.Tensor:
    """Six 32-px procedural backgrounds, (6, 3, 32, 32) in [0, 1]."""
    arr = procedural.procedural("blobs", 32, seed=3, n=6)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2))).float()


@pytest.fixture(scope="module")
def test_images() -> torch.Tensor:
    arr = procedural.procedural("shapes", 32, seed=99, n=3)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2))).float()


def run(images, *, seed=0, model_seed=0, steps=20, spec="small", **kw) -> training.TrainResult:
    """A tiny CPU run: resnet depth 3 width 8, 4 crops of 24 px per step."""
    kw.setdefault("log_every", 4)
    kw.setdefault("lr", 2e-3)
    kw.setdefault("progress", False)
    channels = images.shape[1] if isinstance(images, torch.Tensor) else images.shape[-1]
    return training.train(tiny_model(channels, model_seed), images, spec, steps=steps, batch_size=4,
                          patch=24, seed=seed, device="cpu", **kw)


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def assert_same_history(a: pd.DataFrame, b: pd.DataFrame) -> None:
    cols = ["step", "loss", "lr"]  # elapsed_s is wall-clock
    pd.testing.assert_frame_equal(a[cols], b[cols], check_exact=True)


# --------------------------------------------------------------------------- devices


def test_select_device_explicit_and_auto(monkeypatch):
    assert training.select_device("cpu") == torch.device("cpu")
    assert training.select_device(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert training.select_device(None) == torch.device("cpu")
    assert training.select_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert training.select_device(None) == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert training.select_device(None) == torch.device("cuda")  # cuda beats mps


def test_select_device_bad(monkeypatch):
    with pytest.raises(ValueError, match="gpu0"):
        training.select_device("gpu0")
    with pytest.raises(ValueError, match="device"):
        training.select_device(3)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        training.select_device("cuda")


def test_seed_everything_makes_init_repeatable():
    training.seed_everything(5)
    a = models.build_model("resnet", **TINY)
    r1 = np.random.rand()
    training.seed_everything(5)
    b = models.build_model("resnet", **TINY)
    assert_same_weights(a, b)
    assert np.random.rand() == r1
    with pytest.raises(ValueError, match="seed"):
        training.seed_everything(-1)
    try:
        training.seed_everything(0, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


# --------------------------------------------------------------------------- train


def test_make_batch(train_images):
    g = torch.Generator().manual_seed(0)
    rainy, bg = training.make_batch(train_images, "small", 5, 16, g)
    assert rainy.shape == bg.shape == (5, 3, 16, 16)
    assert (rainy >= bg).all() and rainy.max() <= 1  # rain only adds light, clipped
    assert (rainy > bg).any()
    g2 = torch.Generator().manual_seed(0)
    again = training.make_batch(train_images, "small", 5, 16, g2)
    assert torch.equal(rainy, again[0]) and torch.equal(bg, again[1])


@pytest.mark.parametrize("precision", training.PRECISIONS)
def test_train_is_bitwise_deterministic(train_images, precision):
    a, b = run(train_images, precision=precision), run(train_images, precision=precision)
    assert a.precision == b.precision == precision and a.memory_format == "channels_last"
    assert_same_weights(a.model, b.model)
    assert_same_history(a.history, b.history)
    c = run(train_images, seed=1, precision=precision)  # another data seed: other crops and rain
    assert not torch.equal(a.model.tail.weight, c.model.tail.weight)
    assert not a.history["loss"].equals(c.history["loss"])
    # trained channels-last, returned NCHW (evaluation and saved weights use the standard layout)
    assert all(p.is_contiguous() for p in a.model.parameters())


def test_history_layout(train_images):
    res = run(train_images, steps=10, log_every=4)
    h = res.history
    assert list(h.columns) == list(training.HISTORY_COLUMNS)
    assert h["step"].tolist() == [4, 8, 10]  # every log_every steps plus the last
    assert np.isfinite(h["loss"]).all() and (h["loss"] > 0).all()
    assert h["lr"].iloc[0] < 2e-3 and h["lr"].is_monotonic_decreasing  # cosine decay
    assert h["elapsed_s"].is_monotonic_increasing
    assert res.complete and res.step == 10 and res.resumed_from is None and res.device == "cpu"
    assert not res.model.training  # returned in eval mode


@pytest.mark.parametrize("lr", [1e6, 1e3, 10.0])
def test_a_diverged_run_is_refused_not_returned(train_images, lr):
    # was (lr 1e3 and 10): the loss came back below 1 after exploding, and the broken model (removal -4 to -8)
    # was returned and cached as a normal one; only NaN or inf was caught
    with pytest.raises(FloatingPointError, match=r"training diverged: mean loss .* above 1, the most an output"):
        run(train_images, steps=20, lr=lr, warmup_steps=2)


def test_a_healthy_run_stays_far_below_the_divergence_bound(train_images):
    assert run(train_images, steps=20).history["loss"].max() < 0.1 * training.MAX_LOSS


def test_history_loss_is_window_mean(train_images):
    losses: list[float] = []
    res = run(train_images, steps=6, log_every=3, callback=lambda s, l: losses.append(l))
    assert len(losses) == 6
    np.testing.assert_allclose(res.history["loss"], [np.mean(losses[:3]), np.mean(losses[3:])], rtol=1e-6)


def test_cosine_schedule_and_warmup(train_images):
    res = run(train_images, steps=8, log_every=1)
    expected = [2e-3 * 0.5 * (1 + math.cos(math.pi * t / 8)) for t in range(8)]
    np.testing.assert_allclose(res.history["lr"], expected, rtol=1e-9)
    warm = run(train_images, steps=8, log_every=1, warmup_steps=3)
    assert warm.history["lr"].iloc[0] == pytest.approx(2e-3 / 4)
    assert warm.history["lr"].iloc[:4].is_monotonic_increasing
    assert warm.history["lr"].iloc[3] == pytest.approx(2e-3)


def test_loss_decreases(train_images):
    res = run(train_images, steps=60, log_every=10)
    first, last = res.history["loss"].iloc[0], res.history["loss"].iloc[-1]
    assert last < first, res.history


def test_precisions_differ_and_amp_is_an_alias(train_images):
    bf16 = run(train_images, steps=3, log_every=2, precision="bf16", progress=True)  # bf16 autocast on the CPU
    fp32 = run(train_images, steps=3, log_every=2, precision="fp32")
    assert bf16.history["step"].tolist() == [2, 3] and np.isfinite(bf16.history["loss"]).all()
    assert bf16.history["loss"].iloc[0] != fp32.history["loss"].iloc[0]
    assert (bf16.precision, fp32.precision) == ("bf16", "fp32")
    assert_same_weights(run(train_images, steps=3, log_every=2, amp=True).model, bf16.model)
    assert_same_weights(run(train_images, steps=3, log_every=2, amp=False).model, fp32.model)
    with pytest.raises(ValueError, match="contradicts"):
        run(train_images, steps=1, amp=True, precision="fp32")
    with pytest.raises(ValueError, match="precision"):
        run(train_images, steps=1, precision="fp16")
    with pytest.raises(ValueError, match="memory_format"):
        run(train_images, steps=1, memory_format="nhwc")


def test_memory_format_changes_rounding_only(train_images):
    nchw = run(train_images, precision="fp32", memory_format="contiguous")
    nhwc = run(train_images, precision="fp32", memory_format="channels_last")
    assert (nchw.memory_format, nhwc.memory_format) == ("contiguous", "channels_last")
    for k, v in nchw.model.state_dict().items():
        torch.testing.assert_close(nhwc.model.state_dict()[k], v, rtol=1e-3, atol=1e-5)


def test_resolve_precision_order_env_and_errors(monkeypatch):
    monkeypatch.delenv(training.PRECISION_ENV, raising=False)
    auto = training.resolve_precision("auto", "cpu")
    assert auto == ("bf16" if training.cpu_bf16_support()[0] else "fp32")
    assert training.resolve_precision(None, "cpu") == auto
    monkeypatch.setenv(training.PRECISION_ENV, "fp32")
    assert training.resolve_precision("auto", "cpu") == "fp32"
    assert training.resolve_precision("bf16", "cpu") == "bf16"  # an explicit value beats the environment
    monkeypatch.setenv(training.PRECISION_ENV, "BFloat16")
    assert training.resolve_precision("auto", "cpu") == "bf16"
    assert training.resolve_precision("float32", "cpu") == "fp32"
    monkeypatch.setenv(training.PRECISION_ENV, "half")
    with pytest.raises(ValueError, match="DERAIN_PRECISION"):
        training.resolve_precision("auto", "cpu")
    with pytest.raises(ValueError, match="precision"):
        training.resolve_precision(16, "cpu")
    assert training.resolve_memory_format("auto", "cpu") == "channels_last"
    mode = training.resolve_mode("fp32", "contiguous", "cpu")
    assert mode == training.StepMode("fp32", "contiguous")
    with pytest.raises(ValueError, match="precision"):
        training.StepMode("auto", "contiguous")


def test_cpu_bf16_detection_reads_cpuinfo(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f amx_bf16 amx_tile\n\nprocessor\t: 1\n")
    if torch.backends.mkldnn.is_available() and torch.backends.cpu.get_cpu_capability() != "DEFAULT":
        ok, why = training.cpu_bf16_support(str(info))
        assert ok and "amx_bf16" in why
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n")
    ok, why = training.cpu_bf16_support(str(info))
    assert not ok
    ok, why = training.cpu_bf16_support(str(tmp_path / "absent"))
    assert not ok
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    info.write_text("flags\t\t: amx_bf16 avx512_bf16\n")
    ok, why = training.cpu_bf16_support(str(info))
    assert not ok and "oneDNN" in why


def test_threads_restored(train_images):
    seen = []
    run(train_images, steps=2, threads=2, callback=lambda s, l: seen.append(torch.get_num_threads()))
    assert seen == [2, 2]
    assert torch.get_num_threads() == 1  # restored


def test_gray_training_and_eval(train_images):
    gray = train_images.mean(1, keepdim=True)
    res = run(gray, steps=4)
    assert res.model.in_channels == 1
    df = scoring.evaluate(res.model, gray[:2], ["small"], seed=0)
    assert len(df) == 4
    assert df["psnr_y"].isna().all() and df["ssim_y"].isna().all()
    assert df["psnr"].notna().all()


def test_train_bad_input(train_images):
    with pytest.raises(ValueError, match="patch"):
        run(train_images[:, :, :16, :16])
    with pytest.raises(ValueError, match="steps"):
        run(train_images, steps=0)
    with pytest.raises(ValueError, match="train_images"):
        run(train_images * 2)
    with pytest.raises(ValueError, match="train_images"):
        run(train_images[:, :2])
    with pytest.raises(ValueError, match="small"):  # lists the valid preset names
        run(train_images, steps=1, spec="drizzle")
    with pytest.raises(ValueError, match="warmup_steps"):
        run(train_images, steps=4, warmup_steps=4)


def test_numpy_images_give_the_same_run(train_images):
    arr = train_images.permute(0, 2, 3, 1).numpy()
    a, b = run(train_images, steps=3), run(arr, steps=3)
    assert_same_weights(a.model, b.model)


# --------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("precision", training.PRECISIONS)
def test_resume_after_interrupt_is_bitwise_identical(train_images, tmp_path, precision):
    run = lambda images, **kw: globals()["run"](images, precision=precision, **kw)  # noqa: E731
    reference = run(train_images, ckpt_dir=tmp_path / "ref", ckpt_every=5)

    def crash_at_13(step: int, loss: float) -> None:
        if step == 13:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(train_images, ckpt_dir=tmp_path / "b", ckpt_every=5, callback=crash_at_13)
    assert training.load_checkpoint(tmp_path / "b" / "last.pt")["step"] == 10
    # a differently initialised model: the weights must come from the checkpoint
    resumed = run(train_images, model_seed=7, ckpt_dir=tmp_path / "b", ckpt_every=5)
    assert resumed.resumed_from == 10 and resumed.complete
    assert_same_weights(reference.model, resumed.model)
    assert_same_history(reference.history, resumed.history)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["last.pt"]  # no temp files left


@pytest.mark.parametrize("precision", training.PRECISIONS)
def test_stop_after_then_resume(train_images, tmp_path, precision):
    run = lambda images, **kw: globals()["run"](images, precision=precision, **kw)  # noqa: E731
    reference = run(train_images, steps=12)
    part = run(train_images, steps=12, ckpt_dir=tmp_path, stop_after=7)
    assert part.step == 7 and not part.complete and part.history["step"].tolist() == [4]
    rest = run(train_images, steps=12, ckpt_dir=tmp_path)
    assert rest.resumed_from == 7 and rest.complete
    assert_same_weights(reference.model, rest.model)
    assert_same_history(reference.history, rest.history)
    # a finished checkpoint: nothing left to do, same result
    again = run(train_images, steps=12, model_seed=5, ckpt_dir=tmp_path)
    assert again.resumed_from == 12
    assert_same_weights(reference.model, again.model)


def test_checkpoint_mismatch(train_images, tmp_path):
    run(train_images, steps=4, ckpt_dir=tmp_path)
    ckpt = tmp_path / "last.pt"
    with pytest.raises(training.CheckpointMismatchError) as info:
        run(train_images, steps=4, ckpt_dir=tmp_path, lr=1e-3)
    msg = str(info.value)
    assert str(ckpt) in msg and "lr" in msg and "delete" in msg
    assert isinstance(info.value, ValueError)
    with pytest.raises(training.CheckpointMismatchError, match="images_sha256"):
        run(train_images.roll(1, 0), steps=4, ckpt_dir=tmp_path)  # same images, another order
    with pytest.raises(training.CheckpointMismatchError, match="rain_spec"):
        run(train_images, steps=4, ckpt_dir=tmp_path, spec="dense")
    # a bf16 checkpoint never continues as an fp32 run (or the other way round)
    run(train_images, steps=4, ckpt_dir=tmp_path / "p", precision="bf16", stop_after=2)
    with pytest.raises(training.CheckpointMismatchError, match="precision"):
        run(train_images, steps=4, ckpt_dir=tmp_path / "p", precision="fp32")


def test_corrupt_checkpoint(train_images, tmp_path):
    run(train_images, steps=4, ckpt_dir=tmp_path)
    ckpt = tmp_path / "last.pt"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(training.CorruptCheckpointError, match=str(ckpt)):
        run(train_images, steps=4, ckpt_dir=tmp_path)
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=str(ckpt)):
        run(train_images, steps=4, ckpt_dir=tmp_path)
    torch.save({"something": 1}, ckpt)
    with pytest.raises(training.CorruptCheckpointError, match="not a"):
        training.load_checkpoint(ckpt)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        training.load_checkpoint(tmp_path / "nowhere.pt")


# --------------------------------------------------------------------------- predict & evaluate


class FixedOutput(nn.Module):
    """An 'oracle' that returns one fixed image whatever the input."""

    def __init__(self, image: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("image", image)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.image.expand(x.shape[0], -1, -1, -1)


def test_predict_clamps_batches_and_restores_mode(test_images):
    model = tiny_model()
    model.train()
    x = test_images
    full = training.predict(model, x, batch_size=32)
    chunked = training.predict(model, x, batch_size=2)
    assert model.training  # restored
    assert full.device.type == "cpu" and full.shape == x.shape
    torch.testing.assert_close(full, chunked)
    over = training.predict(FixedOutput(torch.full((1, 3, 32, 32), 1.7)), x)
    assert over.max().item() == 1.0


def test_make_eval_set_is_stable(test_images):
    a = scoring.make_eval_set(test_images, PRESETS, seed=3)
    b = scoring.make_eval_set(test_images[:2], ["dense", "small"], seed=3)
    assert list(a) == list(PRESETS)
    for name in ("small", "dense"):
        e = a[name]
        assert e.rainy.shape == test_images.shape and e.rain.shape == (3, 1, 32, 32) and e.mask.dtype == torch.bool
        torch.testing.assert_close(e.rainy, rain.add_rain(test_images, e.rain), rtol=0, atol=0)
        # the rain of (preset, image i) does not depend on the other presets or images
        assert torch.equal(e.rain[:2], b[name].rain)
    assert not torch.equal(a["small"].rain, scoring.make_eval_set(test_images, ["small"], seed=4)["small"].rain)


def test_evaluate_identity_known_answers(test_images):
    df = scoring.evaluate(nn.Identity(), test_images, PRESETS, seed=0, train_spec="small", names=["a", "b", "c"])
    assert list(df.columns) == list(scoring.EVAL_COLUMNS)
    assert len(df) == 3 * (len(PRESETS) + 1)
    assert df.groupby("preset").size().to_dict() == {p: 3 for p in (*PRESETS, "clean")}
    rainy_rows = df[df.preset != "clean"]
    np.testing.assert_array_equal(rainy_rows["removal"], 0.0)  # D = O removes nothing
    np.testing.assert_array_equal(rainy_rows["psnr"], rainy_rows["input_psnr"])
    assert (rainy_rows["mask_fraction"] > 0).all()
    clean = df[df.preset == "clean"]
    assert (clean["psnr"] == metrics.PSNR_CAP).all() and (clean["ssim"] == 1.0).all()
    assert clean[["removal", "rain_mse", "bg_mse"]].isna().all().all()
    assert clean["in_distribution"].isna().all()
    for p in PRESETS:
        rows = df[df.preset == p]
        assert (rows["in_distribution"] == rain.overlaps(rain.get_spec("small"), rain.get_spec(p))).all()
        assert (rows["ood_fields"] == ",".join(rain.ood_fields(rain.get_spec("small"), rain.get_spec(p)))).all()
    assert df[df.preset == "small"]["in_distribution"].all()
    assert df[df.preset == "small"]["ood_fields"].eq("").all()
    for p in rain.OOD_PRESETS:
        assert not df[df.preset == p]["in_distribution"].any()
        assert df[df.preset == p]["ood_fields"].str.len().gt(0).all()
    assert df["image"].tolist()[:3] == ["a", "b", "c"]


def test_evaluate_oracle_known_answers(test_images):
    one = test_images[:1]
    df = scoring.evaluate(FixedOutput(one.clone()), one, PRESETS, seed=0)
    np.testing.assert_array_equal(df[df.preset != "clean"]["removal"], 1.0)
    assert (df["psnr"] == metrics.PSNR_CAP).all() and (df["ssim"] == 1.0).all()
    assert (df[df.preset != "clean"]["input_psnr"] < 60).all()


class Blur(nn.Module):
    """A fixed, batch-independent 'deraining' (3x3 box blur): outputs do not depend on batching."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


def test_evaluate_matches_evaluate_pair(test_images):
    model = Blur()
    df = scoring.evaluate(model, test_images[:2], ["dense", "small"], seed=2)
    e = scoring.make_eval_set(test_images[:2], ["dense"], seed=2)["dense"]
    d = training.predict(model, e.rainy)
    ref = metrics.evaluate_pair(e.background[1], e.rainy[1], d[1], e.mask[1])
    row = df[(df.preset == "dense") & (df.image == "img001")].iloc[0]
    assert 0 < row["removal"] < 1
    for k in scoring.EVAL_COLUMNS[4:]:
        assert row[k] == pytest.approx(ref[k], rel=1e-9, abs=1e-12), k


def test_evaluate_bad_input(test_images):
    with pytest.raises(ValueError, match="small"):  # lists the valid names
        scoring.evaluate(nn.Identity(), test_images, ["small", "drizzle"])
    with pytest.raises(ValueError, match="names"):
        scoring.evaluate(nn.Identity(), test_images, ["small"], names=["x"])
    with pytest.raises(ValueError, match="presets"):
        scoring.evaluate(nn.Identity(), test_images, [])
    with pytest.raises(ValueError, match="test_images"):
        scoring.evaluate(nn.Identity(), test_images[:, 0], ["small"])


@pytest.mark.gpu
def test_cuda_fast_path_trains_and_evaluates(train_images, test_images):
    """On CUDA the default path is bf16 + channels-last with the rain made on the GPU."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    res = training.train(tiny_model(), train_images, "small", steps=6, batch_size=4, patch=24, device="cuda",
                         progress=False)
    assert res.device.startswith("cuda") and res.memory_format == "channels_last"
    assert res.precision == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")
    assert np.isfinite(res.history["loss"]).all()
    df = scoring.evaluate(res.model, test_images, ["small", "dense"], device="cuda")
    assert df["psnr"].notna().all()

