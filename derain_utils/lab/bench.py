"""How fast is a training step, how much of it is making the data, and how many models fit on a GPU?

:func:`derain_utils.nets.training.train` synthesises every training pair on the fly
(random crops of the backgrounds, fresh rain, ``clip(B + R)``) and runs the step on
the fast path that :func:`derain_utils.nets.training.resolve_mode` picks (bfloat16
autocast where the hardware has it, channels-last weights and batches). This module
measures what that buys, always **interleaved in one run** (baseline, fast, full,
baseline, fast, full, ...) so that drifts of a shared machine hit every variant
alike, after untimed warm-up steps, reporting **medians**; on CUDA every timed
region ends with ``torch.cuda.synchronize()``.

The suite (``python -m derain_utils.lab.bench --json PATH``)
    One record per model of :data:`SUITE` with

    * ``baseline_ms``: the bare step (forward + L1 + backward + Adam on a fixed,
      pre-made batch) in float32, NCHW, eager, one thread (``--threads``);
    * ``fast_ms``: the same step on the default path (``precision``, ``memory_format``);
    * ``speedup`` = baseline / fast;
    * ``full_step_ms``: crops + rain synthesis + ``add_rain`` + the fast step, through
      the very functions ``train()`` calls (``training.make_batch``, ``training._optimize``);
    * ``overhead_ratio`` = full / fast (target <= 1.25: making the data costs at most a
      quarter of the model);

    plus ``{"model": "training", "one_at_a_time_per_min": ..., "stacked_per_min": ..., "default": ...}``
    (:func:`derain_utils.lab.workload.training_rate`: quick models per minute trained one at a time and k seeds stacked, and
    which path the sweeps take) and
    ``{"model": "synthesis", "images_per_s": ..., "albumentations_ms_per_image": ...}``:
    rain layers of the training preset per second at 128 px (``synthesize``, batches of
    256), and albumentations' ``RandomRain`` on the same number of 128 px RGB images
    (null where albumentations is not installed; ``pip install -e .[bench]``).

What the profiles cost (``--gpu-report``, ``--workers-report``, ``--precision-check``, ``--quick-timing``)
    :mod:`derain_utils.lab.workload`: the same command line, measurements of whole profiles.

One model in detail (``--arch resnet --size quick ...``, :func:`run_bench`)
    The bare and full step of one model, the data part split into crops / rain /
    ``add_rain``, ``train()`` itself end to end, and rain-synthesis throughput.

Seeds trained together (``--stacked-report PATH``, :func:`stacked_timing`)
    k models of one condition as one stacked model (``torch.func.stack_module_state``
    and ``vmap``, whose convolutions run as grouped convolutions, k groups) against one
    model at a time on the project's own path: models per minute, as a ratio in one
    run. The project adopts stacking where it gives at least :data:`STACK_ADOPT` times
    the models per minute; on the development machine (2 cores with AMX-BF16, quick
    ResNet, 16 crops of 32 px, one thread, bf16) it gave 0.88-0.99 with grouped
    convolutions and 0.32-0.43 with vmap for k = 2, 4, 8 (docs/performance.md), so
    models are trained one at a time.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import math
import multiprocessing
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from derain_utils import store
from derain_utils.nets import models, training
from derain_utils.synth import backgrounds, rain

__all__ = [
    "BENCH_KEYS",
    "RECORD_KEYS",
    "SYNTH_KEYS",
    "SUITE",
    "BenchCase",
    "bench_model",
    "bench_synthesis",
    "run_suite",
    "format_suite",
    "measure_concurrency",
    "run_bench",
    "format_report",
    "main",
]


@dataclass(frozen=True)
class BenchCase:
    """One model of a benchmark: ``models.build_model(arch, size=size)`` trained on ``batch`` crops of ``patch`` px."""

    arch: str
    size: str
    patch: int
    batch: int

    @property
    def name(self) -> str:
        return f"{self.arch}/{self.size}"


#: The models of ``python -m derain_utils.lab.bench`` (issue 10): the quick profile's ResNet at 48 px, the
#: quick UNet, the tiny SwinIR and the paper profile's ResNet at its own 64 px x 32 crops.
SUITE: tuple[BenchCase, ...] = (
    BenchCase("resnet", "quick", 48, 16),
    BenchCase("unet", "quick", 48, 16),
    BenchCase("swinir", "tiny", 48, 16),
    BenchCase("resnet", "paper", 64, 32),
)

#: Keys of a model record of the suite (and of the GPU report's step records).
RECORD_KEYS: tuple[str, ...] = (
    "model", "arch", "size", "patch", "batch", "device", "threads", "steps",
    "baseline_ms", "fast_ms", "speedup", "full_step_ms", "overhead_ratio", "precision", "memory_format",
    "forward_gflop", "baseline_tflops", "fast_tflops",
)
#: Keys of the synthesis record.
SYNTH_KEYS: tuple[str, ...] = (
    "model", "images_per_s", "ms_per_image", "albumentations_ms_per_image", "size", "n", "device", "threads",
)


# --------------------------------------------------------------------------- timing helpers


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


class _Threads:
    """``torch.set_num_threads(n)`` inside the block (None: unchanged), restored after."""

    def __init__(self, n: int | None) -> None:
        self.n = None if n is None else training._check_int("threads", n, 1)

    def __enter__(self) -> None:
        self.old = torch.get_num_threads()
        if self.n is not None:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc: Any) -> None:
        torch.set_num_threads(self.old)


def _write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON atomically; a path that cannot be written (a full disk, a file in the way)
    is a StoreError naming it, and no temporary file is left behind."""
    path = Path(path)
    store.ensure_dir(path.parent, "folder of the JSON file")
    store.write_text(path, json.dumps(obj, indent=2, default=str) + "\n", what="bench JSON")


def _environment(device: torch.device) -> dict[str, Any]:
    """Versions and hardware, for the record."""
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_bf16": list(training.cpu_bf16_support()),
        "device": str(device),
        "precision_env": os.environ.get(training.PRECISION_ENV),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update({
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "gpu": props.name,
            "gpu_memory_gib": round(props.total_memory / 2**30, 1),
            "gpu_sm_count": props.multi_processor_count,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        })
        smi = shutil.which("nvidia-smi")
        if smi:
            try:
                env["nvidia_smi"] = subprocess.run([smi], capture_output=True, text=True, timeout=20).stdout
            except (OSError, subprocess.SubprocessError) as exc:
                env["nvidia_smi"] = f"failed: {exc}"
    return env


# --------------------------------------------------------------------------- the suite


def _setup(case: BenchCase, dev: torch.device, mode: training.StepMode, seed: int, n_train: int = 64):
    torch.manual_seed(seed)
    model = models.build_model(case.arch, size=case.size).to(dev)
    mode.prepare_model(model)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    return model, optimizer


def bench_model(
    case: BenchCase,
    *,
    device: str | torch.device | None = "cpu",
    threads: int | None = 1,
    steps: int = 10,
    warmup: int = 2,
    seed: int = 0,
    fast: training.StepMode | None = None,
) -> dict[str, Any]:
    """Baseline (fp32, NCHW, eager), fast (default path) and full step of one model: a :data:`RECORD_KEYS` dict.

    The three are timed in turn within every iteration (``warmup`` untimed iterations
    first) on identical initial weights; medians over ``steps`` iterations.
    ``fast`` overrides the default path (``training.resolve_mode(device=device)``).
    """
    steps = training._check_int("steps", steps, 1)
    warmup = training._check_int("warmup", warmup, 0)
    dev = training.select_device(device)
    base_mode = training.StepMode("fp32", "contiguous")
    fast_mode = fast if fast is not None else training.resolve_mode(device=dev)
    spec = rain.get_spec(rain.TRAIN_PRESET)
    with _Threads(threads if dev.type == "cpu" else None):
        base_model, base_opt = _setup(case, dev, base_mode, seed)
        fast_model, fast_opt = _setup(case, dev, fast_mode, seed)
        gen = torch.Generator(device=dev).manual_seed(seed)
        images = torch.rand(64, 3, max(64, case.patch), max(64, case.patch), generator=gen, device=dev)
        fixed = training.make_batch(images, spec, case.batch, case.patch, gen)
        flops = case.batch * models.count_flops(fast_model, case.patch)  # FLOPs grow linearly with the batch

        def full() -> Any:
            rainy, bg = training.make_batch(images, spec, case.batch, case.patch, gen)
            return training._optimize(fast_model, fast_opt, rainy, bg, fast_mode)

        times: dict[str, list[float]] = {"baseline": [], "fast": [], "full": []}
        fns = {
            "baseline": lambda: training._optimize(base_model, base_opt, *fixed, base_mode),
            "fast": lambda: training._optimize(fast_model, fast_opt, *fixed, fast_mode),
            "full": full,
        }
        for i in range(warmup + steps):
            for key, fn in fns.items():
                t, _ = _timed(fn, dev)
                if i >= warmup:
                    times[key].append(t)
        used_threads = torch.get_num_threads()
    base_ms, fast_ms, full_ms = _ms(times["baseline"]), _ms(times["fast"]), _ms(times["full"])
    train_flop = 3 * flops
    return {
        "model": case.name, "arch": case.arch, "size": case.size, "patch": case.patch, "batch": case.batch,
        "device": str(dev), "threads": used_threads if dev.type == "cpu" else None, "steps": steps,
        "baseline_ms": round(base_ms, 3), "fast_ms": round(fast_ms, 3), "speedup": round(base_ms / fast_ms, 3),
        "full_step_ms": round(full_ms, 3), "overhead_ratio": round(full_ms / fast_ms, 3),
        "precision": fast_mode.precision, "memory_format": fast_mode.memory_format,
        "forward_gflop": flops / 1e9,
        "baseline_tflops": round(train_flop / (base_ms * 1e-3) / 1e12, 4),
        "fast_tflops": round(train_flop / (fast_ms * 1e-3) / 1e12, 4),
    }


def _albumentations_rain() -> Callable[[Any], Any] | None:
    try:
        import albumentations as A
    except ImportError:
        return None
    # "heavy" draws 128 drops per image, close to the ~115 streak centres per 128 px image of "small";
    # length 10 and slant +-10 px match small's mean length and angle (as tests/test_bench_rain.py)
    transform = A.RandomRain(p=1.0, rain_type="heavy", drop_length=10, drop_width=1, slant_range=(-10, 10))
    return lambda img: transform(image=img)["image"]


def bench_synthesis(
    *,
    device: str | torch.device | None = "cpu",
    threads: int | None = 1,
    n: int = 256,
    size: int = 128,
    reps: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Rain layers per second (``synthesize`` of the training preset, ``n`` x ``size`` px per call), and
    albumentations' ``RandomRain`` ms per 128 px RGB image, interleaved; a :data:`SYNTH_KEYS` dict."""
    import numpy as np

    dev = training.select_device(device)
    album = _albumentations_rain()
    imgs = np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    ours: list[float] = []
    theirs: list[float] = []
    with _Threads(threads if dev.type == "cpu" else None):
        gen = torch.Generator(device=dev).manual_seed(seed)
        for i in range(reps + 1):
            t, _ = _timed(lambda: rain.synthesize(rain.TRAIN_PRESET, size, n, gen, device=dev), dev)
            if album is not None:
                ta, _ = _timed(lambda: [album(im) for im in imgs], torch.device("cpu"))
            if i:
                ours.append(t)
                if album is not None:
                    theirs.append(ta)
        used_threads = torch.get_num_threads()
    sec = statistics.median(ours)
    return {
        "model": "synthesis", "images_per_s": round(n / sec, 1), "ms_per_image": round(1e3 * sec / n, 4),
        "albumentations_ms_per_image": round(1e3 * statistics.median(theirs) / n, 4) if theirs else None,
        "size": size, "n": n, "device": str(dev), "threads": used_threads if dev.type == "cpu" else None,
    }


def run_suite(
    cases: Iterable[BenchCase] = SUITE,
    *,
    device: str | torch.device | None = "cpu",
    threads: int | None = 1,
    steps: int = 20,
    warmup: int = 2,
    synth_n: int = 256,
    synth_size: int = 128,
    json_path: str | Path | None = None,
    progress: Callable[[str], None] | None = print,
) -> list[dict[str, Any]]:
    """:func:`bench_model` for every case, then :func:`bench_synthesis`; the list is written to
    ``json_path`` after every record (so an interrupted run keeps what it measured)."""
    records: list[dict[str, Any]] = []
    for case in cases:
        if progress:
            progress(f"bench {case.name} {case.patch} px x {case.batch} ...")
        records.append(bench_model(case, device=device, threads=threads, steps=steps, warmup=warmup))
        if json_path is not None:
            _write_json(Path(json_path), records)
    if progress:
        progress("bench training: models per minute, one at a time and stacked ...")
    from derain_utils.lab.workload import training_rate  # noqa: PLC0415 - workload builds on this module

    records.append(training_rate(device=device, threads=threads, steps=steps, warmup=warmup))
    if json_path is not None:
        _write_json(Path(json_path), records)
    if progress:
        progress(f"bench synthesis {synth_n} x {synth_size} px ...")
    records.append(bench_synthesis(device=device, threads=threads, n=synth_n, size=synth_size))
    if json_path is not None:
        _write_json(Path(json_path), records)
    return records


def format_suite(records: Sequence[dict[str, Any]]) -> str:
    """The suite as a markdown table (models), plus one line for synthesis."""
    lines = ["| model | crop x batch | baseline ms (fp32, NCHW) | fast ms | speedup | full step ms | "
             "full / fast | fast path |",
             "|---|---|---|---|---|---|---|---|"]
    extra = []
    for r in records:
        if r["model"] == "training":
            extra.append(f"training ({r['arch']} {r['size']}, {r['steps_per_model']} steps of {r['batch']} x "
                         f"{r['patch']} px, {r['device']}): {r['one_at_a_time_per_min']:.2f} models/min one at a "
                         f"time, {r['stacked_per_min']:.2f} stacked ({r['stacked_method']}, x{r['ratio']:.2f}); "
                         f"default: {r['default']} (stacking from x{r['adopt_at']:g})")
            continue
        if r["model"] == "synthesis":
            alb = r["albumentations_ms_per_image"]
            extra.append(f"rain synthesis: {r['images_per_s']:.0f} images/s at {r['size']} px "
                         f"({r['ms_per_image']:.3f} ms per image); albumentations RandomRain: "
                         + (f"{alb:.3f} ms per image" if alb is not None else "not installed"))
            continue
        lines.append(f"| {r['model']} | {r['patch']} px x {r['batch']} | {r['baseline_ms']:.1f} | {r['fast_ms']:.1f} | "
                     f"{r['speedup']:.2f} | {r['full_step_ms']:.1f} | {r['overhead_ratio']:.2f} | "
                     f"{r['precision']}, {r['memory_format']} |")
    return "\n".join(lines + [""] + extra)


# --------------------------------------------------------------------------- k models at once


def _concurrency_worker(task: dict[str, Any], barrier: Any) -> dict[str, Any]:
    """Train one model (full steps: data + rain + step) for ``task["seconds"]`` after a barrier."""
    torch.set_num_threads(task["threads"])
    dev = torch.device(task["device"])
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    case = BenchCase(**task["case"])
    mode = training.StepMode(task["precision"], task["memory_format"])
    model, opt = _setup(case, dev, mode, task["seed"])
    gen = torch.Generator(device=dev).manual_seed(task["seed"])
    side = max(64, case.patch)
    images = torch.rand(64, 3, side, side, generator=gen, device=dev)
    spec = rain.get_spec(rain.TRAIN_PRESET)

    def step() -> None:
        rainy, bg = training.make_batch(images, spec, case.batch, case.patch, gen)
        training._optimize(model, opt, rainy, bg, mode).item()  # .item(): the step has finished

    t0 = time.perf_counter()
    n = 0
    while n < 2 or time.perf_counter() - t0 < task["warmup_s"]:
        step()
        n += 1
    barrier.wait(timeout=task["barrier_timeout_s"])
    t0 = time.perf_counter()
    n = 0
    while n < 1 or time.perf_counter() - t0 < task["seconds"]:
        step()
        n += 1
    return {"steps": n, "seconds": time.perf_counter() - t0, "pid": os.getpid()}


def measure_concurrency(
    case: BenchCase,
    layouts: Sequence[tuple[int, int]],
    *,
    device: str | torch.device | None = "cpu",
    precision: str = "auto",
    memory_format: str = "auto",
    seconds: float = 10.0,
    warmup_s: float = 3.0,
    seed: int = 0,
    progress: Callable[[str], None] | None = print,
    on_result: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """Training throughput of ``case`` with k processes x t threads, for each ``(k, t)`` in ``layouts``.

    Each layout starts k fresh ``spawn`` processes (as ``sweeps.sweep(executor="process")``
    does) that each train their own model with full steps (crops + rain + step) on ``device``;
    after ``warmup_s`` s of untimed steps they meet at a barrier and then train for ``seconds`` s.
    Returns one dict per layout: ``processes``, ``threads``, ``steps_per_s`` (all processes
    together), ``per_process_steps_per_s``, ``step_ms`` (the mean time of one step in one process),
    ``images_per_s`` (steps/s x batch), ``tflops`` (3x forward FLOPs per step) and the startup time.
    """
    dev = training.select_device(device)
    mode = training.resolve_mode(precision, memory_format, dev)
    torch.manual_seed(seed)
    flops = 3 * case.batch * models.count_flops(models.build_model(case.arch, size=case.size), case.patch)
    ctx = multiprocessing.get_context("spawn")
    results: list[dict[str, Any]] = []
    for k, t in layouts:
        k = training._check_int("processes", k, 1)
        t = training._check_int("threads", t, 1)
        if progress:
            progress(f"concurrency {case.name}: {k} process(es) x {t} thread(s) on {dev} ...")
        task = {"case": asdict(case), "device": str(dev), "threads": t, "precision": mode.precision,
                "memory_format": mode.memory_format, "seconds": float(seconds), "warmup_s": float(warmup_s),
                "barrier_timeout_s": 300.0}
        t0 = time.perf_counter()
        with ctx.Manager() as manager:
            barrier = manager.Barrier(k)
            with _pythonpath(), cf.ProcessPoolExecutor(max_workers=k, mp_context=ctx) as pool:
                futs = [pool.submit(_concurrency_worker, {**task, "seed": seed + i}, barrier) for i in range(k)]
                runs = [f.result() for f in futs]
        wall = time.perf_counter() - t0
        rates = [r["steps"] / r["seconds"] for r in runs]
        total = sum(rates)
        results.append({
            "model": case.name, "patch": case.patch, "batch": case.batch, "device": str(dev),
            "processes": k, "threads": t, "precision": mode.precision, "memory_format": mode.memory_format,
            "steps_per_s": round(total, 3), "per_process_steps_per_s": [round(x, 3) for x in rates],
            "step_ms": round(1e3 * k / total, 3), "images_per_s": round(total * case.batch, 1),
            "tflops": round(total * flops / 1e12, 4), "seconds": seconds, "wall_s": round(wall, 1),
        })
        if on_result is not None:
            on_result(results)
    return results


class _pythonpath:
    """Put this checkout first on PYTHONPATH for spawned processes (the package may not be installed)."""

    def __enter__(self) -> None:
        self.old = os.environ.get("PYTHONPATH")
        root = str(store.repo_root())
        os.environ["PYTHONPATH"] = os.pathsep.join([root] + ([self.old] if self.old else []))

    def __exit__(self, *exc: Any) -> None:
        if self.old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = self.old


# --------------------------------------------------------------------------- one model in detail

#: Keys of the dict returned by :func:`run_bench`.
BENCH_KEYS: tuple[str, ...] = (
    "arch", "size", "in_channels", "device", "threads", "torch_version", "cpu",
    "batch", "patch", "steps", "warmup", "rain", "precision", "memory_format",
    "params", "forward_gflop_per_batch", "train_gflop_per_step",
    "bare_step_ms", "full_step_ms", "data_ms", "ratio", "train_step_ms", "train_ratio",
    "crops_ms", "rain_ms", "add_rain_ms",
    "achieved_gflops", "full_gflops",
    "synth_n", "synth_size", "synth_ms", "synth_images_per_s",
)


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
    precision: str = "auto",
    memory_format: str = "auto",
    synth_n: int = 256,
    synth_size: int = 128,
    synth_reps: int = 3,
    seed: int = 0,
) -> dict[str, Any]:
    """Time the bare and the full training step of one model on one path, and rain synthesis.

    (a) the bare step on a fixed batch, (b) the full step (crops + rain + ``add_rain`` +
    step, via ``training.make_batch`` and ``training._optimize``), interleaved; their
    ratio; the data part phase by phase; ``train()`` itself end to end (its per-step
    time between consecutive callbacks, which includes scheduler, logging and progress
    bookkeeping); and (d) rain synthesis of ``synth_n`` layers of ``synth_size`` px.

    Args:
        arch, size: the model, ``models.build_model(arch, size=size)``.
        batch, patch: training batch size and crop side (px).
        steps, warmup: timed steps of each kind (medians), untimed ones first.
        device: see :func:`derain_utils.nets.training.select_device`.
        threads: ``torch.set_num_threads`` during the benchmark (restored after).
        rain_spec: the training rain preset.
        gray: benchmark a 1-channel model.
        n_train, tile: the training backgrounds (uniform noise), ``n_train`` tiles of ``tile`` px.
        precision, memory_format: the path (``training.resolve_mode``; "auto" = the default).
        synth_n, synth_size, synth_reps: the rain-throughput test (median of ``synth_reps``).
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
    mode = training.resolve_mode(precision, memory_format, dev)
    channels = 1 if gray else 3
    with _Threads(threads):
        torch.manual_seed(seed)
        model = models.build_model(arch, in_channels=channels, size=size).to(dev)
        n_params = models.count_params(model)
        fwd_flops = models.count_flops(model, patch, in_channels=channels, batch=batch)
        mode.prepare_model(model)
        model.train()
        gen = torch.Generator(device=dev)
        gen.manual_seed(seed)
        images = torch.rand(n_train, channels, tile, tile, generator=gen, device=dev)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        fixed_rainy, fixed_bg = training.make_batch(images, spec, batch, patch, gen)

        bare_s: list[float] = []
        full_s: list[float] = []
        data_s: list[float] = []
        for i in range(warmup + steps):
            tb, _ = _timed(lambda: training._optimize(model, optimizer, fixed_rainy, fixed_bg, mode), dev)
            td, (rainy, bg) = _timed(lambda: training.make_batch(images, spec, batch, patch, gen), dev)
            to, _ = _timed(lambda: training._optimize(model, optimizer, rainy, bg, mode), dev)
            if i >= warmup:
                bare_s.append(tb)
                full_s.append(td + to)
                data_s.append(td)

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

        stamps: list[float] = []
        training.train(model, images, spec, steps=warmup + steps + 1, batch_size=batch, patch=patch, lr=1e-4,
                       seed=seed, device=dev, progress=False, precision=mode.precision,
                       memory_format=mode.memory_format,
                       callback=lambda step, loss: stamps.append(time.perf_counter()), log_every=10)
        train_s = [b - a for a, b in zip(stamps[warmup:-1], stamps[warmup + 1 :])]

        synth: list[float] = []
        for i in range(synth_reps + 1):
            ts, _ = _timed(lambda: rain.synthesize(spec, synth_size, synth_n, gen, device=dev), dev)
            if i:
                synth.append(ts)
        used_threads = torch.get_num_threads()

    bare_ms, full_ms = _ms(bare_s), _ms(full_s)
    train_flops = 3 * fwd_flops
    synth_ms = _ms(synth)
    return {
        "arch": arch,
        "size": size,
        "in_channels": channels,
        "device": str(dev),
        "threads": used_threads,
        "torch_version": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "batch": batch,
        "patch": patch,
        "steps": steps,
        "warmup": warmup,
        "rain": spec.name,
        "precision": mode.precision,
        "memory_format": mode.memory_format,
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


STACK_SIZES: tuple[int, ...] = (2, 4, 8)
"""Numbers of seeds trained as one stacked model by :func:`stacked_timing`."""
STACK_ADOPT: float = 1.5
"""Models per minute, stacked over one at a time, from which stacking would be adopted."""


def stacked_timing(
    arch: str = "resnet",
    size: str = "quick",
    *,
    ks: Sequence[int] = STACK_SIZES,
    batch: int = 16,
    patch: int = 32,
    steps: int = 20,
    warmup: int = 3,
    device: str | torch.device | None = "cpu",
    threads: int | None = 1,
    precision: str = "auto",
    seed: int = 0,
) -> dict[str, Any]:
    """Models per minute when k seeds train as one stacked model, against one model at a time.

    The baseline is the bare step of one model on the project's path (``training._optimize``:
    bf16 autocast and channels-last where :func:`training.resolve_mode` picks them). The stacked
    step: the k models' parameters stacked (``torch.func.stack_module_state``), the forward pass
    ``vmap``-ed over them (``functional_call``; convolutions become grouped convolutions), the
    sum of the k mean L1 losses backpropagated, one Adam over the stacked tensors (Adam is
    elementwise, so each model gets its own update). Each step on its own fixed batch of
    ``batch`` crops per model; medians of ``steps`` timed steps, variants interleaved.

    Returns:
        ``rows``: one per variant (``k``, ``method``, ``step_ms``, ``ms_per_model_step``,
        ``models_per_minute_ratio`` = k x one-model step / stacked step), ``best_ratio``,
        ``adopt`` (best ratio >= :data:`STACK_ADOPT`) and the settings.
    """
    ks = [training._check_int("k", k, 2) for k in ks]
    for name, value, minimum in (("batch", batch, 1), ("patch", patch, 8), ("steps", steps, 1),
                                 ("warmup", warmup, 0)):
        training._check_int(name, value, minimum)
    import copy  # noqa: PLC0415

    import torch.nn.functional as F  # noqa: PLC0415
    from torch.func import functional_call, stack_module_state, vmap  # noqa: PLC0415

    dev = training.select_device(device)
    mode = training.resolve_mode(precision, "auto", dev)
    gen = torch.Generator().manual_seed(seed)

    def data(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen).to(dev)

    with _Threads(threads):
        torch.manual_seed(seed)
        one = mode.prepare_model(models.build_model(arch, size=size).to(dev))
        opt1 = torch.optim.Adam(one.parameters(), lr=1e-3)
        x1, y1 = data(batch, 3, patch, patch), data(batch, 3, patch, patch)
        steppers: dict[str, tuple[int, Callable[[], Any]]] = {
            "one model": (1, lambda: training._optimize(one, opt1, x1, y1, mode))}
        for k in ks:
            nets = [models.build_model(arch, size=size).to(dev) for _ in range(k)]
            params, buffers = stack_module_state(nets)
            shell = copy.deepcopy(nets[0]).to("meta")
            opt = torch.optim.Adam(list(params.values()), lr=1e-3)
            xk, yk = data(k, batch, 3, patch, patch), data(k, batch, 3, patch, patch)

            def f(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor,
                  shell: nn.Module = shell) -> torch.Tensor:
                return functional_call(shell, (p, b), (x,))

            def step(params=params, buffers=buffers, opt=opt, xk=xk, yk=yk, f=f) -> None:
                opt.zero_grad(set_to_none=True)
                with mode.autocast(dev):
                    out = vmap(f)(params, buffers, xk)
                F.l1_loss(out.float(), yk, reduction="none").mean(dim=(1, 2, 3, 4)).sum().backward()
                opt.step()

            steppers[f"{k} stacked (vmap)"] = (k, step)
            grouped = _grouped_resnet(nets)
            if grouped is not None:  # the plain ResNet by hand: k groups, channels-last like the baseline
                grouped = mode.prepare_model(grouped)
                opt_g = torch.optim.Adam(grouped.parameters(), lr=1e-3)
                xg, yg = (mode.prepare(t.transpose(0, 1).reshape(batch, -1, patch, patch)) for t in (xk, yk))

                def step_g(grouped=grouped, opt_g=opt_g, xg=xg, yg=yg, k=k) -> None:
                    opt_g.zero_grad(set_to_none=True)
                    with mode.autocast(dev):
                        out = xg - grouped(xg)
                    err = (out.float() - yg).abs().reshape(batch, k, -1)
                    err.mean(dim=(0, 2)).sum().backward()
                    opt_g.step()

                steppers[f"{k} stacked (groups)"] = (k, step_g)
        times: dict[str, list[float]] = {name: [] for name in steppers}
        for i in range(warmup + steps):
            for name, (_, fn) in steppers.items():
                t, _ = _timed(fn, dev)
                if i >= warmup:
                    times[name].append(t)
    t1 = statistics.median(times["one model"])
    rows = [{"k": k, "method": name, "step_ms": _ms(times[name]), "ms_per_model_step": _ms(times[name]) / k,
             "models_per_minute_ratio": k * t1 / statistics.median(times[name])} for name, (k, _) in steppers.items()]
    best = max(r["models_per_minute_ratio"] for r in rows if r["k"] > 1)
    return {"arch": arch, "size": size, "batch": batch, "patch": patch, "steps": steps, "device": str(dev),
            "threads": torch.get_num_threads() if threads is None else threads, "precision": mode.precision,
            "memory_format_one_model": mode.memory_format, "rows": rows, "best_ratio": best,
            "adopt": bool(best >= STACK_ADOPT), "adopt_at": STACK_ADOPT, "torch": torch.__version__}


def _grouped_resnet(nets: Sequence[nn.Module]) -> nn.Sequential | None:
    """k plain ResNets (predicting the rain) as one network of grouped convolutions, their weights copied
    (input and output: the k models' channels side by side); None for any other architecture."""
    if not all(getattr(n, "arch", "") == "resnet" and n.config.get("block") == "plain"
               and n.config.get("predict") == "rain" for n in nets):
        return None
    k = len(nets)
    layers: list[nn.Module] = []
    convs = [[m for m in (*n.body, n.tail) if isinstance(m, nn.Conv2d)] for n in nets]
    for i, first in enumerate(convs[0]):
        conv = nn.Conv2d(k * first.in_channels, k * first.out_channels, 3, padding=1, groups=k)
        with torch.no_grad():
            conv.weight.copy_(torch.cat([c[i].weight for c in convs]))
            conv.bias.copy_(torch.cat([c[i].bias for c in convs]))
        layers += [conv, nn.ReLU(inplace=True)] if i < len(convs[0]) - 1 else [conv]
    return nn.Sequential(*layers).to(convs[0][0].weight.device)


def format_stacked(result: Mapping[str, Any]) -> str:
    """The table of :func:`stacked_timing` and its decision, as text."""
    lines = [f"{result['arch']}/{result['size']}, {result['batch']} x {result['patch']} px per model, "
             f"{result['device']}, {result['threads']} thread(s), {result['precision']}"]
    lines += [f"  {r['method']:<20} {r['step_ms']:9.1f} ms/step  {r['ms_per_model_step']:8.1f} ms/model-step  "
              f"models/min x{r['models_per_minute_ratio']:.2f}" for r in result["rows"]]
    lines.append(f"  best x{result['best_ratio']:.2f}: " + ("adopt stacking" if result["adopt"] else
                 f"below x{result['adopt_at']:g}, train one model at a time"))
    return "\n".join(lines)


def format_report(result: dict[str, Any]) -> str:
    """A readable multi-line table of one :func:`run_bench` result."""
    r = result
    lines = [
        f"derain_utils.lab.bench  {r['arch']}/{r['size']}  C={r['in_channels']}  device={r['device']}  "
        f"threads={r['threads']}  torch {r['torch_version']}",
        f"  batch {r['batch']} x {r['patch']} px, rain {r['rain']!r}, {r['precision']}, {r['memory_format']}, "
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


# --------------------------------------------------------------------------- command line


def _parse_models(text: str | None) -> tuple[BenchCase, ...]:
    if not text:
        return SUITE
    by_name = {c.name: c for c in SUITE}
    out = []
    for name in (t.strip() for t in text.split(",") if t.strip()):
        if name not in by_name:
            raise ValueError(f"--models: unknown model {name!r}; valid: {', '.join(by_name)}")
        out.append(by_name[name])
    return tuple(out)


def main(argv: Sequence[str] | None = None) -> Any:
    """Command line entry point (see the module docstring); returns what it measured."""
    p = argparse.ArgumentParser(prog="python -m derain_utils.lab.bench", description=__doc__.split("\n")[0])
    p.add_argument("--json", type=Path, default=None, help="write the numbers to this JSON file")
    p.add_argument("--device", default=None, help="cpu | cuda | mps | auto (default: cpu; cuda for --gpu-report)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (suite default 1: the baseline is one thread)")
    p.add_argument("--steps", type=int, default=None, help="timed steps (medians)")
    p.add_argument("--warmup", type=int, default=None, help="untimed warm-up steps")
    p.add_argument("--models", default=None, help="suite models, comma separated (default: all of SUITE)")
    p.add_argument("--gpu-report", type=Path, default=None, metavar="PATH",
                   help="the GPU report (CUDA; --device cpu --tiny runs it on the CPU in seconds)")
    p.add_argument("--tiny", action="store_true", help="tiny sizes for --gpu-report (plumbing check)")
    p.add_argument("--budget-s", type=float, default=270.0, help="--gpu-report: skip optional parts past this")
    p.add_argument("--workers-report", type=Path, default=None, metavar="PATH",
                   help="CPU processes x threads throughput of the quick profile's model")
    p.add_argument("--seconds", type=float, default=20.0, help="--workers-report: timed window per layout")
    p.add_argument("--rounds", type=int, default=3, help="--workers-report, --quick-timing: alternations")
    p.add_argument("--precision-check", type=Path, default=None, metavar="PATH",
                   help="train the quick profile's model per seed in fp32 and bf16 and compare them")
    p.add_argument("--seeds", default="0,1,2", help="--precision-check: seeds, comma separated")
    p.add_argument("--cache", default=None, help="--precision-check: cache folder (default: the experiments cache)")
    p.add_argument("--stacked-report", type=Path, default=None, metavar="PATH",
                   help="seeds trained as one stacked model (vmap) against one at a time: JSON to PATH")
    p.add_argument("--quick-timing", type=Path, default=None, metavar="PATH",
                   help="wall time of one quick model, default path vs fp32/NCHW (and --sweep-models)")
    p.add_argument("--sweep-models", type=int, default=0, help="--quick-timing: also sweep this many models")
    p.add_argument("--workers", type=int, default=None, help="--precision-check, --quick-timing: sweep workers")
    # one model in detail
    p.add_argument("--arch", default=None, choices=list(models.MODEL_SIZES),
                   help="benchmark one model in detail (run_bench) instead of the suite")
    p.add_argument("--size", default="quick", help="with --arch: tiny | quick | paper")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--patch", type=int, default=48)
    p.add_argument("--rain", default=rain.TRAIN_PRESET, help="with --arch: training rain preset")
    p.add_argument("--gray", action="store_true", help="with --arch: 1-channel model and data")
    p.add_argument("--precision", default="auto", help="with --arch: auto | fp32 | bf16")
    p.add_argument("--memory-format", default="auto", help="with --arch: auto | channels_last | contiguous")
    p.add_argument("--synth-n", type=int, default=256)
    p.add_argument("--synth-size", type=int, default=128)
    args = p.parse_args(argv)
    try:
        return _dispatch(args)
    except (ValueError, OSError) as err:  # bad values found by the checks below or by the code they reach, or a
        # JSON file that cannot be written (store.StoreError names it; the numbers were printed first): one line
        print(f"{p.prog}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


_LIMITS: dict[str, tuple[int | float, str]] = {
    "steps": (1, "timed steps"), "warmup": (0, "warm-up steps"), "threads": (1, "torch threads"),
    "batch": (1, "crops per step"), "patch": (1, "crop side in px"), "synth_n": (1, "images"),
    "synth_size": (1, "image side in px"), "rounds": (1, "alternations"), "sweep_models": (0, "models"),
    "workers": (1, "worker processes"), "seconds": (1e-9, "seconds"), "budget_s": (1e-9, "seconds"),
}
_CHOICES: dict[str, tuple[str, ...]] = {"precision": ("auto", "fp32", "bf16"),
                                        "memory_format": ("auto", "channels_last", "contiguous")}


def _check_args(args: argparse.Namespace) -> None:
    """Every numeric option in range and every named choice valid, before anything is measured."""
    for name, (low, what) in _LIMITS.items():
        v = getattr(args, name)
        if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v >= low):
            bound = f">= {low:g}" if low >= 1 or low == 0 else "> 0"
            raise ValueError(f"--{name.replace('_', '-')} must be {bound} ({what}), got {v!r}")
    for name, valid in _CHOICES.items():
        if getattr(args, name) not in valid:
            raise ValueError(f"--{name.replace('_', '-')} must be one of {', '.join(valid)}, "
                             f"got {getattr(args, name)!r}")
    if args.rain not in rain.PRESETS:
        raise ValueError(f"--rain must be a rain preset ({', '.join(rain.PRESETS)}), got {args.rain!r}")
    if args.arch is not None and args.size not in models.MODEL_SIZES[args.arch]:
        raise ValueError(f"--size must be a size of {args.arch} ({', '.join(models.MODEL_SIZES[args.arch])}), "
                         f"got {args.size!r}")
    try:
        args.seed_list = [int(x) for x in args.seeds.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--seeds must be integers separated by commas, got {args.seeds!r}") from None
    if not args.seed_list or min(args.seed_list) < 0:
        raise ValueError(f"--seeds must name at least one seed >= 0, got {args.seeds!r}")
    device = args.device or ("cuda" if args.gpu_report is not None else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        what = "--gpu-report (on its default device, cuda)" if args.device is None else f"--device {device}"
        raise ValueError(f"{what} needs CUDA, which this machine lacks (torch {torch.__version__}); "
                         f"use --device cpu")


def _dispatch(args: argparse.Namespace) -> Any:
    _check_args(args)
    # the profile-level measurements live in workload, which builds on this module's timing
    from derain_utils.lab.workload import gpu_report, precision_check, quick_timing, workers_report  # noqa: PLC0415

    if args.gpu_report is not None:
        return gpu_report(args.gpu_report, device=args.device or "cuda", tiny=args.tiny, budget_s=args.budget_s)
    if args.precision_check is not None:
        out = precision_check(seeds=args.seed_list, cache_root=args.cache, workers=args.workers,
                              path=args.precision_check)
        curve = {k: v for k, v in out["loss_curve"].items() if k != "steps"}
        print(json.dumps({"compare": out["compare"], "loss_curve": curve}, indent=2, default=str))
        return out
    if args.stacked_report is not None:
        out = stacked_timing(args.arch or "resnet", args.size, batch=args.batch, patch=args.patch,
                             steps=args.steps or 20, warmup=3 if args.warmup is None else args.warmup,
                             device=args.device or "cpu", threads=args.threads or 1, precision=args.precision)
        print(format_stacked(out))
        _write_json(args.stacked_report, out)
        return out
    if args.quick_timing is not None:
        out = quick_timing(rounds=args.rounds if args.rounds else 2, sweep_models=args.sweep_models,
                           workers=args.workers, path=args.quick_timing)
        print(json.dumps({k: v for k, v in out.items() if k != "paths"} | {
            k: {kk: vv for kk, vv in v.items() if kk != "all"} for k, v in out["paths"].items()}, indent=2))
        return out
    if args.workers_report is not None:
        out = workers_report(args.workers_report, seconds=args.seconds, rounds=args.rounds)
        print(json.dumps(out["summary"], indent=2))
        return out
    if args.arch is not None:
        result = run_bench(
            args.arch, args.size, batch=args.batch, patch=args.patch, steps=args.steps or 30,
            warmup=5 if args.warmup is None else args.warmup, device=args.device or "cpu", threads=args.threads,
            rain_spec=args.rain, gray=args.gray, precision=args.precision, memory_format=args.memory_format,
            synth_n=args.synth_n, synth_size=args.synth_size,
        )
        print(format_report(result))
        if args.json is not None:
            _write_json(args.json, result)
        return result
    records = run_suite(
        _parse_models(args.models), device=args.device or "cpu", threads=args.threads or 1,
        steps=args.steps or 20, warmup=2 if args.warmup is None else args.warmup,
        synth_n=args.synth_n, synth_size=args.synth_size, json_path=args.json,
    )
    print(format_suite(records))
    return records


def cli(argv: Sequence[str] | None = None) -> int:
    """The ``derain-bench`` command: :func:`main`, as an exit status (0 when it measured something)."""
    return 0 if main(argv) is not None else 1


if __name__ == "__main__":
    sys.exit(cli())
