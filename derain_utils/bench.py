"""How much of a training step is the model, and how much is making the data?

:func:`derain_utils.training.train` synthesises every training pair on the fly
(random crops of the backgrounds, fresh rain, ``clip(B + R)``). That is only a good
design if making the data is cheap next to the optimiser step. This benchmark
measures, in one run and on one device:

(a) the **bare step**: forward + L1 loss + backward + Adam step on a fixed,
    pre-made batch (the cost of the model alone);
(b) the **full step**: random crops + rain synthesis + ``add_rain`` + the same
    optimiser step, through the very functions ``train()`` calls
    (``training.make_batch`` and ``training._optimize``);
(c) their **ratio** full / bare (target on a CPU: <= 1.25, i.e. data costs at most
    a quarter of the model), with the data part split into crops / rain / add_rain;
    as an end-to-end check, ``train()`` itself is then run for ``warmup + steps``
    steps and its per-step time (between consecutive ``callback`` calls, so it
    includes the scheduler, logging and progress bookkeeping) is reported as
    ``train_step_ms`` / ``train_ratio``;
(d) the **rain synthesis throughput**, images/s, for ``synth_n`` images of
    ``synth_size`` px of the training preset;

plus the model's parameters, its forward FLOPs (:func:`derain_utils.models.count_flops`,
2 FLOPs per multiply-accumulate) and the achieved GFLOP/s, using the usual
estimate that a training step costs **3x the forward FLOPs** (the backward pass
computes gradients for both activations and weights, about 2x the forward).

Bare and full steps are interleaved (bare, full, bare, full, ...) so that slow
drifts of the machine (turbo, other processes) hit both alike; ``warmup`` steps of
each are run first and discarded; medians over ``steps`` are reported. On CUDA
every timed region ends with ``torch.cuda.synchronize()``.

Command line::

    python -m derain_utils.bench --arch resnet --size quick --batch 16 --patch 48 \\
        --steps 30 --device cpu --threads 2 --json out.json
"""
from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from derain_utils import backgrounds, models, rain, training

__all__ = ["BENCH_KEYS", "run_bench", "format_report", "main"]

#: Keys of the dict returned by :func:`run_bench` (and written by ``--json``).
BENCH_KEYS: tuple[str, ...] = (
    "arch", "size", "in_channels", "device", "threads", "torch_version", "cpu",
    "batch", "patch", "steps", "warmup", "rain", "amp",
    "params", "forward_gflop_per_batch", "train_gflop_per_step",
    "bare_step_ms", "full_step_ms", "data_ms", "ratio", "train_step_ms", "train_ratio",
    "crops_ms", "rain_ms", "add_rain_ms",
    "achieved_gflops", "full_gflops",
    "synth_n", "synth_size", "synth_ms", "synth_images_per_s",
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """(seconds, result) of ``fn()``, synchronised on ``device``."""
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - t0, out


def _ms(values: list[float]) -> float:
    return 1e3 * statistics.median(values)


def run_bench(
    arch: str = "resnet",
    size: str = "quick",
    *,
    batch: int = 16,
    patch: int = 48,
    steps: int = 30,
    warmup: int = 5,
    device: str | torch.device | None = "cpu",
    threads: int | None = None,
    rain_spec: str | rain.RainSpec = rain.TRAIN_PRESET,
    gray: bool = False,
    n_train: int = 64,
    tile: int = 64,
    amp: bool | None = None,
    synth_n: int = 256,
    synth_size: int = 128,
    synth_reps: int = 3,
    seed: int = 0,
) -> dict[str, Any]:
    """Time the bare and the full training step of one model, and rain synthesis.

    Args:
        arch, size: the model, ``models.build_model(arch, size=size)``.
        batch, patch: training batch size and crop side (px).
        steps: timed steps of each kind (medians are reported).
        warmup: untimed steps of each kind run first.
        device: see :func:`derain_utils.training.select_device`.
        threads: ``torch.set_num_threads`` during the benchmark (restored after).
        rain_spec: the training rain preset.
        gray: benchmark a 1-channel model.
        n_train, tile: the training backgrounds (uniform noise: timing does not
            depend on content), ``n_train`` tiles of ``tile`` px.
        amp: as in ``train()`` (None = bfloat16 autocast on CUDA only).
        synth_n, synth_size, synth_reps: the rain-throughput test draws
            ``synth_n`` layers of ``synth_size`` px, ``synth_reps`` times (median).
        seed: seeds the model init and the data generator.

    Returns:
        dict with the keys :data:`BENCH_KEYS` (times in ms, rates per second).
    """
    for name, value, minimum in (("batch", batch, 1), ("patch", patch, 1), ("steps", steps, 1),
                                 ("warmup", warmup, 0), ("n_train", n_train, 1), ("tile", tile, 1),
                                 ("synth_n", synth_n, 1), ("synth_size", synth_size, 1),
                                 ("synth_reps", synth_reps, 1)):
        training._check_int(name, value, minimum)
    if tile < patch:
        raise ValueError(f"tile ({tile}) must be >= patch ({patch})")
    dev = training.select_device(device)
    spec = rain.get_spec(rain_spec)
    amp = (dev.type == "cuda") if amp is None else bool(amp)
    channels = 1 if gray else 3
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(training._check_int("threads", threads, 1))
    try:
        torch.manual_seed(seed)
        model = models.build_model(arch, in_channels=channels, size=size).to(dev)
        n_params = models.count_params(model)
        fwd_flops = models.count_flops(model, patch, in_channels=channels, batch=batch)
        model.train()
        gen = torch.Generator(device=dev)
        gen.manual_seed(seed)
        images = torch.rand(n_train, channels, tile, tile, generator=gen, device=dev)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        amp_ctx = (lambda: training._amp_context(dev, True)) if amp else contextlib.nullcontext
        fixed_rainy, fixed_bg = training.make_batch(images, spec, batch, patch, gen)

        def bare() -> None:
            training._optimize(model, optimizer, fixed_rainy, fixed_bg, amp_ctx)

        bare_s: list[float] = []
        full_s: list[float] = []
        data_s: list[float] = []
        for i in range(warmup + steps):
            tb, _ = _timed(bare, dev)
            td, (rainy, bg) = _timed(lambda: training.make_batch(images, spec, batch, patch, gen), dev)
            to, _ = _timed(lambda: training._optimize(model, optimizer, rainy, bg, amp_ctx), dev)
            if i >= warmup:
                bare_s.append(tb)
                full_s.append(td + to)
                data_s.append(td)

        # the data part, phase by phase
        crops_s: list[float] = []
        rain_s: list[float] = []
        add_s: list[float] = []
        for i in range(warmup + steps):
            tc, crops = _timed(lambda: backgrounds.random_crops(images, batch, patch, gen), dev)
            tr, (layer, _m) = _timed(lambda: rain.synthesize(spec, patch, batch, gen, device=dev), dev)
            ta, _ = _timed(lambda: rain.add_rain(crops, layer), dev)
            if i >= warmup:
                crops_s.append(tc)
                rain_s.append(tr)
                add_s.append(ta)

        # end to end: train() itself, timed between consecutive callbacks
        stamps: list[float] = []
        training.train(model, images, spec, steps=warmup + steps + 1, batch_size=batch, patch=patch, lr=1e-4,
                       seed=seed, device=dev, progress=False, amp=amp,
                       callback=lambda step, loss: stamps.append(time.perf_counter()), log_every=10)
        train_s = [b - a for a, b in zip(stamps[warmup:-1], stamps[warmup + 1 :])]

        synth: list[float] = []
        for i in range(synth_reps + 1):
            ts, _ = _timed(lambda: rain.synthesize(spec, synth_size, synth_n, gen, device=dev), dev)
            if i:
                synth.append(ts)
    finally:
        torch.set_num_threads(old_threads)

    bare_ms, full_ms = _ms(bare_s), _ms(full_s)
    train_flops = 3 * fwd_flops
    synth_ms = _ms(synth)
    return {
        "arch": arch,
        "size": size,
        "in_channels": channels,
        "device": str(dev),
        "threads": torch.get_num_threads() if threads is None else int(threads),
        "torch_version": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "batch": batch,
        "patch": patch,
        "steps": steps,
        "warmup": warmup,
        "rain": spec.name,
        "amp": amp,
        "params": n_params,
        "forward_gflop_per_batch": fwd_flops / 1e9,
        "train_gflop_per_step": train_flops / 1e9,
        "bare_step_ms": bare_ms,
        "full_step_ms": full_ms,
        "data_ms": _ms(data_s),
        "ratio": full_ms / bare_ms,
        "train_step_ms": _ms(train_s),
        "train_ratio": _ms(train_s) / bare_ms,
        "crops_ms": _ms(crops_s),
        "rain_ms": _ms(rain_s),
        "add_rain_ms": _ms(add_s),
        "achieved_gflops": train_flops / (bare_ms * 1e-3) / 1e9,
        "full_gflops": train_flops / (full_ms * 1e-3) / 1e9,
        "synth_n": synth_n,
        "synth_size": synth_size,
        "synth_ms": synth_ms,
        "synth_images_per_s": synth_n / (synth_ms * 1e-3),
    }


def format_report(result: dict[str, Any]) -> str:
    """A readable multi-line table of one :func:`run_bench` result."""
    r = result
    lines = [
        f"derain_utils.bench  {r['arch']}/{r['size']}  C={r['in_channels']}  device={r['device']}  "
        f"threads={r['threads']}  torch {r['torch_version']}",
        f"  batch {r['batch']} x {r['patch']} px, rain {r['rain']!r}, amp={r['amp']}, "
        f"median of {r['steps']} steps after {r['warmup']} warm-up",
        f"  params                 {r['params']:>12,d}",
        f"  forward GFLOP / batch  {r['forward_gflop_per_batch']:>12.3f}   (train step ~ 3x = "
        f"{r['train_gflop_per_step']:.3f})",
        f"  (a) bare step          {r['bare_step_ms']:>12.2f} ms   {r['achieved_gflops']:.1f} GFLOP/s",
        f"  (b) full step          {r['full_step_ms']:>12.2f} ms   {r['full_gflops']:.1f} GFLOP/s",
        f"      of which data      {r['data_ms']:>12.2f} ms   (crops {r['crops_ms']:.2f}, rain {r['rain_ms']:.2f}, "
        f"add_rain {r['add_rain_ms']:.2f})",
        f"  (c) ratio full/bare    {r['ratio']:>12.3f}     (target <= 1.25)",
        f"      train() step       {r['train_step_ms']:>12.2f} ms   ratio to bare {r['train_ratio']:.3f}",
        f"  (d) rain synthesis     {r['synth_images_per_s']:>12.0f} images/s  ({r['synth_n']} x "
        f"{r['synth_size']} px in {r['synth_ms']:.1f} ms)",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line entry point; prints the table and returns the result dict."""
    p = argparse.ArgumentParser(prog="python -m derain_utils.bench", description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="resnet", choices=list(models.MODEL_SIZES))
    p.add_argument("--size", default="quick", help="tiny | quick | paper (models.MODEL_SIZES)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--patch", type=int, default=48)
    p.add_argument("--steps", type=int, default=30, help="timed steps (median reported)")
    p.add_argument("--warmup", type=int, default=5, help="untimed warm-up steps")
    p.add_argument("--device", default="cpu", help="cpu | cuda | mps | auto")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--rain", default=rain.TRAIN_PRESET, help="training rain preset")
    p.add_argument("--gray", action="store_true", help="1-channel model and data")
    p.add_argument("--amp", choices=("auto", "on", "off"), default="auto")
    p.add_argument("--synth-n", type=int, default=256)
    p.add_argument("--synth-size", type=int, default=128)
    p.add_argument("--json", type=Path, default=None, help="write the numbers to this JSON file")
    args = p.parse_args(argv)
    result = run_bench(
        args.arch, args.size, batch=args.batch, patch=args.patch, steps=args.steps, warmup=args.warmup,
        device=args.device, threads=args.threads, rain_spec=args.rain, gray=args.gray,
        amp={"auto": None, "on": True, "off": False}[args.amp],
        synth_n=args.synth_n, synth_size=args.synth_size,
    )
    print(format_report(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
