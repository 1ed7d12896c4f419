"""How fast is a training step, how much of it is making the data, and how many models fit on a GPU?

:func:`derain_utils.training.train` synthesises every training pair on the fly
(random crops of the backgrounds, fresh rain, ``clip(B + R)``) and runs the step on
the fast path that :func:`derain_utils.training.resolve_mode` picks (bfloat16
autocast where the hardware has it, channels-last weights and batches). This module
measures what that buys, always **interleaved in one run** (baseline, fast, full,
baseline, fast, full, ...) so that drifts of a shared machine hit every variant
alike, after untimed warm-up steps, reporting **medians**; on CUDA every timed
region ends with ``torch.cuda.synchronize()``.

The suite (``python -m derain_utils.bench --json PATH``)
    One record per model of :data:`SUITE` with

    * ``baseline_ms``: the bare step (forward + L1 + backward + Adam on a fixed,
      pre-made batch) in float32, NCHW, eager, one thread (``--threads``);
    * ``fast_ms``: the same step on the default path (``precision``, ``memory_format``);
    * ``speedup`` = baseline / fast;
    * ``full_step_ms``: crops + rain synthesis + ``add_rain`` + the fast step, through
      the very functions ``train()`` calls (``training.make_batch``, ``training._optimize``);
    * ``overhead_ratio`` = full / fast (target <= 1.25: making the data costs at most a
      quarter of the model);

    plus ``{"model": "synthesis", "images_per_s": ..., "albumentations_ms_per_image": ...}``:
    rain layers of the training preset per second at 128 px (``synthesize``, batches of
    256), and albumentations' ``RandomRain`` on the same number of 128 px RGB images
    (null where albumentations is not installed; ``pip install -e .[bench]``).

The GPU report (``--gpu-report PATH``, see :func:`gpu_report`)
    On CUDA: step times of the suite's models on the fast path and in float32,
    achieved TFLOP/s (a training step costs about **3x the forward FLOPs**,
    :func:`derain_utils.models.count_flops`), throughput when k models train at once
    in k processes sharing the GPU (as ``sweeps.sweep(workers=k)`` runs them), one
    real ``experiments.run`` of a shortened paper configuration (train + evaluate + cache,
    for the per-model overhead), and an extrapolated wall time of the ``paper`` profile's
    four notebooks. It writes its JSON after every section (a timeout still leaves the
    finished parts) and prints progress. ``--device cpu --tiny`` runs the same code on
    the CPU with tiny sizes (the tests do).

The workers report (``--workers-report PATH``)
    Training throughput of the quick profile's model on the CPU for processes x threads
    layouts (default 1 x 2 and 2 x 1), the measurement behind ``Profile.workers``.

One model in detail (``--arch resnet --size quick ...``, :func:`run_bench`)
    The bare and full step of one model, the data part split into crops / rain /
    ``add_rain``, ``train()`` itself end to end, and rain-synthesis throughput.
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
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from derain_utils import backgrounds, models, rain, training

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
    "paper_workload",
    "gpu_report",
    "workers_report",
    "precision_check",
    "quick_timing",
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


#: The models of ``python -m derain_utils.bench`` (issue 10): the quick profile's ResNet at 48 px, the
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
    """Write ``obj`` as JSON atomically (a temporary file, then ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


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
        root = str(Path(__file__).resolve().parents[1])
        os.environ["PYTHONPATH"] = os.pathsep.join([root] + ([self.old] if self.old else []))

    def __exit__(self, *exc: Any) -> None:
        if self.old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = self.old


# --------------------------------------------------------------------------- the paper profile on one GPU


def paper_workload(profile: str = "paper", real_categories: int = 4) -> dict[str, Any]:
    """How many models the four notebooks train under ``profile`` (what the GPU report extrapolates).

    Every notebook is counted from its design function in :data:`derain_utils.designs.NOTEBOOK_DESIGNS`:
    the union of the configs, deduplicated by cache key, each counted for the first notebook (in
    monograph order) that trains it; a later notebook that reuses a model finds it in the cache.
    Today that is

    * 01: ``len(archs) x len(n_list) x len(seeds)`` models, plus the predict-background ablation
      (the first architecture at the smallest and largest N, every seed);
    * 02: ``(real categories + 4 ladder rungs) x len(seeds)`` at ``category_n`` tiles, plus one
      negative control per seed (the real categories' and rungs' curve runs are shared with 03);
    * 03: the curve runs of its contrast, already trained by 02: nothing new;
    * 04: notebook 01's primary models at the smallest and largest N: nothing new.

    ``real_categories`` is how many of faces/natural/urban/manga the data folder holds (4 with
    ``DERAIN_DATA``, when notebooks 01 and 04 train on ``natural``; 0 offline, when they train on
    ``deadleaves`` and notebook 02 trains the ladder only). Only 0 and 4 are modelled.
    """
    from derain_utils import designs, profiles  # noqa: PLC0415 - lazy: the benchmark itself needs no profiles

    p = profiles.resolve(profile)
    if real_categories not in (0, 4):
        raise ValueError(f"real_categories must be 0 (offline) or 4 (DERAIN_DATA), got {real_categories!r}")
    seeds = len(p.seeds)
    background = "natural" if real_categories > 0 else "deadleaves"  # notebook.training_background's rule
    counts: dict[str, int] = {}
    curve_models: dict[str, int] = {}
    seen: set[str] = set()
    for nb, design in designs.NOTEBOOK_DESIGNS.items():
        configs = design(p, background)
        keys = {c.key() for c in configs}
        counts[nb] = len(keys - seen)
        seen |= keys
    cd = designs.category_complexity(p, real=designs.REAL if real_categories else ())
    curve_models["02_category_complexity"] = len({c.key() for c in cd.curve_configs})
    return {
        "profile": p.name, "arch": p.arch, "archs": list(p.archs), "model_size": p.model_size, "patch": p.patch,
        "batch": p.batch_size, "steps": p.steps, "seeds": seeds, "n_list": list(p.n_list),
        "category_n": p.category_n, "dynamics_points": p.dynamics_points, "real_categories": real_categories,
        "background": background, "new_models": counts, "total_models": sum(counts.values()),
        "curve_models": curve_models,
        "assumption": ("models trained per notebook: the union of the design functions' configs (derain_utils."
                       f"designs: {', '.join(designs.NOTEBOOK_DESIGNS)}), deduplicated by cache key (cached models "
                       f"of earlier notebooks not counted again); {real_categories} real categories; every "
                       "architecture costed as the profile's arch; evaluation, data drawing and process start-up "
                       "per model taken from one measured experiments.run; curve runs evaluated dynamics_points "
                       "times while training"),
    }


def _estimate(workload: dict[str, Any], concurrency: list[dict[str, Any]], overhead_s: float | None,
              dynamics_eval_s: float | None) -> dict[str, Any]:
    """Wall time of the workload for each measured k: models x (steps / per-process rate + overhead) / k."""
    n_models = workload["total_models"]
    n_dyn = sum(workload.get("curve_models", {}).values())
    out = []
    for c in concurrency:
        k = c["processes"]
        per_model_train = workload["steps"] / (c["steps_per_s"] / k)
        extra = overhead_s or 0.0
        dyn_extra = n_dyn * workload["dynamics_points"] * (dynamics_eval_s or 0.0)
        wall = (n_models * (per_model_train + extra) + dyn_extra) / k
        out.append({"processes": k, "per_model_train_s": round(per_model_train, 1),
                    "wall_s": round(wall, 1), "wall_h": round(wall / 3600, 3)})
    best = min(out, key=lambda r: r["wall_s"]) if out else None
    return {"per_k": out, "best": best, "overhead_s_per_model": overhead_s,
            "dynamics_eval_s_per_point": dynamics_eval_s}


def _end_to_end(dev: torch.device, tiny: bool, cache: Path) -> dict[str, Any]:
    """One real ``experiments.run`` (train + evaluate + write the cache entry) of a shortened paper config."""
    from derain_utils import experiments, profiles  # noqa: PLC0415 - lazy (see paper_workload)

    prof = profiles.resolve("smoke" if tiny else "paper")
    steps = 10 if tiny else 300
    config = profiles.experiment(prof, background="blobs", n_train=16, steps=steps,
                                 warmup_steps=min(prof.warmup_steps, steps // 4))
    t0 = time.perf_counter()
    res = experiments.run(config, cache_root=cache, device=dev, progress=False)
    wall = time.perf_counter() - t0
    prov = json.loads((cache / config.key() / "provenance.json").read_text())
    train_s = float(prov.get("train_wall_s", float("nan")))
    # one evaluation as notebook 03 does it at each of its points (the test set of the config)
    t1 = time.perf_counter()
    model = res.load_model(dev)
    split = backgrounds.draw_split(config.background, 0, config.n_test, tile=config.tile,
                                   test_size=config.test_size, seed=config.seed)
    training.evaluate(model, split.test_tensor(), list(config.eval_presets), seed=config.eval_seed, device=dev)
    _sync(dev)
    eval_s = time.perf_counter() - t1
    return {"key": config.key(), "steps": steps, "precision": config.precision, "wall_s": round(wall, 2),
            "train_wall_s": round(train_s, 2), "overhead_s": round(wall - train_s, 2),
            "train_step_ms": round(1e3 * train_s / steps, 2), "evaluate_s": round(eval_s, 2),
            "n_test": config.n_test, "test_size": config.test_size}


def gpu_report(
    path: str | Path,
    *,
    device: str | torch.device | None = "cuda",
    tiny: bool = False,
    budget_s: float = 270.0,
    ks: Sequence[int] = (1, 2, 4, 8),
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure the paper profile's cost on one GPU and write the report to ``path`` as it goes.

    Sections (each written to ``path`` as soon as it is done; a section that fails records
    its error and the report goes on): ``environment``; ``steps`` (the :data:`SUITE` models
    on the default fast path vs float32-NCHW and float32-channels-last, with TFLOP/s and
    the full step's overhead); ``synthesis`` (rain layers/s on the device); ``concurrency``
    (k = ``ks`` processes training the paper ResNet at once); ``end_to_end`` (one
    ``experiments.run`` of the paper configuration shortened to 300 steps: per-model
    overhead of data, evaluation and caching); ``workload`` and ``estimate`` (the paper
    profile's models and the extrapolated wall time for each k); ``compile``
    (``torch.compile`` of the paper ResNet, only when the budget leaves time).

    ``tiny=True`` shrinks everything (tiny models, 16 px, k <= 2, sub-second windows) so
    the same code runs in seconds on a CPU (``device="cpu"``); those numbers mean nothing.
    """
    start = time.perf_counter()
    say = progress or (lambda msg: print(f"[gpu-report {time.perf_counter() - start:5.0f} s] {msg}", flush=True))
    dev = training.select_device(device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
    path = Path(path)
    report: dict[str, Any] = {"format": "derain_utils.bench.gpu_report/1", "tiny": tiny, "budget_s": budget_s,
                              "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    def save() -> None:
        report["elapsed_s"] = round(time.perf_counter() - start, 1)
        _write_json(path, report)

    def section(name: str, fn: Callable[[], Any]) -> Any:
        say(f"{name} ...")
        try:
            report[name] = fn()
        except Exception as exc:  # noqa: BLE001 - recorded; the other sections still run
            report[name] = {"error": f"{type(exc).__name__}: {exc}"}
            say(f"{name} FAILED: {type(exc).__name__}: {exc}")
        save()
        return report[name]

    left = lambda: budget_s - (time.perf_counter() - start)  # noqa: E731
    fast = training.resolve_mode(device=dev)
    report["fast_path"] = {"precision": fast.precision, "memory_format": fast.memory_format}
    section("environment", lambda: _environment(dev))

    if tiny:
        cases = (BenchCase("resnet", "tiny", 16, 4), BenchCase("unet", "tiny", 16, 4))
        paper_case = BenchCase("resnet", "tiny", 16, 4)
        ks = tuple(k for k in ks if k <= 2)
        steps, window, warm = 2, 0.5, 0.2
    else:
        cases = SUITE
        paper_case = SUITE[-1]
        steps, window, warm = 20, 8.0, 3.0

    def steps_section() -> list[dict[str, Any]]:
        out = []
        for case in cases:
            say(f"  steps {case.name} {case.patch} px x {case.batch}")
            rec = bench_model(case, device=dev, threads=None, steps=steps, warmup=3 if not tiny else 1, fast=fast)
            cl = bench_model(case, device=dev, threads=None, steps=steps, warmup=3 if not tiny else 1,
                             fast=training.StepMode("fp32", "channels_last"))
            rec["fp32_channels_last_ms"] = cl["fast_ms"]
            out.append(rec)
            report["steps"] = out
            save()
        return out

    section("steps", steps_section)
    section("synthesis", lambda: [bench_synthesis(device=dev, threads=None, n=n, size=s, reps=3)
                                  for n, s in ((256, 128), (paper_case.batch, paper_case.patch))])

    def concurrency_section() -> list[dict[str, Any]]:
        def partial(res: list[dict[str, Any]]) -> None:
            report["concurrency"] = res
            save()

        return measure_concurrency(paper_case, [(k, 1) for k in ks], device=dev,
                                   precision=fast.precision, memory_format=fast.memory_format,
                                   seconds=window, warmup_s=warm, progress=say, on_result=partial)

    section("concurrency", concurrency_section)
    with tempfile.TemporaryDirectory(prefix="derain-gpu-report-") as tmp:
        section("end_to_end", lambda: _end_to_end(dev, tiny, Path(tmp)))
    section("workload", lambda: paper_workload("paper"))

    def estimate() -> dict[str, Any]:
        e2e = report.get("end_to_end", {})
        conc = report.get("concurrency")
        if not isinstance(conc, list) or "total_models" not in report.get("workload", {}):
            raise RuntimeError("needs the concurrency and workload sections")
        return _estimate(report["workload"], conc, e2e.get("overhead_s"), e2e.get("evaluate_s"))

    section("estimate", estimate)

    def compile_section() -> dict[str, Any]:
        if dev.type != "cuda":
            return {"skipped": "torch.compile is measured on CUDA only"}
        if left() < 90:
            return {"skipped": f"only {left():.0f} s of the budget left"}
        compiled = training.StepMode(fast.precision, fast.memory_format)
        torch.manual_seed(0)
        model = models.build_model(paper_case.arch, size=paper_case.size).to(dev)
        compiled.prepare_model(model)
        cmodel = torch.compile(model)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        gen = torch.Generator(device=dev).manual_seed(0)
        side = max(64, paper_case.patch)
        images = torch.rand(64, 3, side, side, generator=gen, device=dev)
        batch = training.make_batch(images, rain.TRAIN_PRESET, paper_case.batch, paper_case.patch, gen)
        t_compile, _ = _timed(lambda: training._optimize(cmodel, opt, *batch, compiled), dev)
        times = [_timed(lambda: training._optimize(cmodel, opt, *batch, compiled), dev)[0] for _ in range(steps + 3)]
        eager = next((r for r in report.get("steps", []) if r.get("model") == paper_case.name), {})
        ms = _ms(times[3:])
        return {"model": paper_case.name, "first_step_s": round(t_compile, 1), "compiled_ms": round(ms, 3),
                "eager_fast_ms": eager.get("fast_ms"),
                "gain": round(eager["fast_ms"] / ms, 3) if eager.get("fast_ms") else None}

    section("compile", compile_section)
    report["finished"] = True
    save()
    say(f"done: {path}")
    return report


# --------------------------------------------------------------------------- processes x threads on the CPU


def workers_report(
    path: str | Path | None = None,
    *,
    case: BenchCase | None = None,
    layouts: Sequence[tuple[int, int]] = ((1, 2), (2, 1)),
    seconds: float = 20.0,
    warmup_s: float = 3.0,
    rounds: int = 3,
    progress: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """CPU training throughput of the quick profile's model for processes x threads ``layouts``,
    alternated ``rounds`` times (medians), written to ``path`` (the measurement behind ``Profile.workers``)."""
    if case is None:
        from derain_utils import profiles  # noqa: PLC0415 - lazy

        q = profiles.resolve("quick")
        case = BenchCase(q.arch, q.model_size, q.patch, q.batch_size)
    runs: list[dict[str, Any]] = []
    for _ in range(rounds):
        runs += measure_concurrency(case, layouts, device="cpu", seconds=seconds, warmup_s=warmup_s,
                                    progress=progress)
        if path is not None:
            _write_json(Path(path), {"runs": runs})
    summary = []
    for k, t in layouts:
        rates = [r["steps_per_s"] for r in runs if (r["processes"], r["threads"]) == (k, t)]
        summary.append({"processes": k, "threads": t, "steps_per_s_median": round(statistics.median(rates), 3),
                        "steps_per_s": rates})
    out = {"model": case.name, "patch": case.patch, "batch": case.batch, "cpu_count": os.cpu_count(),
           "summary": summary, "runs": runs}
    if path is not None:
        _write_json(Path(path), out)
    return out


# --------------------------------------------------------------------------- the quick profile: numerics and wall time


def _quick_background(data_dir: str | Path | None = None) -> str:
    """The notebooks' rule: natural photos when the data folder has them, else the embedded ones."""
    return "natural" if "natural" in backgrounds.available_categories(data_dir) else "skimage"


def _seed_stats(values: Sequence[float]) -> dict[str, float]:
    vals = [float(v) for v in values]
    return {"mean": statistics.fmean(vals), "sd": statistics.stdev(vals) if len(vals) > 1 else float("nan"),
            "values": vals}


def precision_check(
    *,
    profile: str = "quick",
    seeds: Sequence[int] = (0, 1, 2),
    background: str | None = None,
    data_dir: str | Path | None = None,
    cache_root: str | Path | None = None,
    workers: int | None = None,
    path: str | Path | None = None,
) -> dict[str, Any]:
    """Train ``profile``'s base model for every seed in fp32 and in bf16 and compare the two.

    For each precision: the final training loss and the decoupled metrics (mean over test
    images of the removal of the training rain, of the unseen rains, and the background
    PSNR), each as mean and seed-to-seed SD; the loss curves as the largest gap between the
    two precisions' seed-mean curves next to the mean seed SD along the curve. ``within_spread``
    says whether the difference of the precisions' means is at most the pooled seed SD.
    """
    from derain_utils import experiments, profiles, sweeps  # noqa: PLC0415 - lazy

    prof = profiles.resolve(profile)
    bg = background or _quick_background(data_dir)
    configs = {p: [profiles.experiment(prof, background=bg, seed=int(s), precision=p) for s in seeds]
               for p in training.PRECISIONS}
    t0 = time.perf_counter()
    sweeps.sweep([c for cs in configs.values() for c in cs], cache_root=cache_root, data_dir=data_dir,
                      workers=workers or prof.workers, progress=False)
    wall = time.perf_counter() - t0
    per: dict[str, dict[str, Any]] = {}
    curves: dict[str, Any] = {}
    for p, cs in configs.items():
        results = [experiments.load(c, cache_root=cache_root) for c in cs]
        rows: dict[str, list[float]] = {"final_loss": [], "removal_seen": [], "removal_unseen": [], "bg_psnr": []}
        hist = []
        for res in results:
            ev = res.eval[res.eval["preset"] != "clean"]
            rows["final_loss"].append(float(res.history["loss"].iloc[-1]))
            rows["removal_seen"].append(float(ev.loc[ev["in_distribution"] == True, "removal"].mean()))  # noqa: E712
            rows["removal_unseen"].append(float(ev.loc[ev["in_distribution"] == False, "removal"].mean()))  # noqa: E712
            rows["bg_psnr"].append(float(ev["bg_psnr"].mean()))
            hist.append(res.history.set_index("step")["loss"])
        per[p] = {k: _seed_stats(v) for k, v in rows.items()}
        import pandas as pd  # noqa: PLC0415

        frame = pd.concat(hist, axis=1)
        curves[p] = {"mean": frame.mean(axis=1), "sd": frame.std(axis=1)}
    gap = (curves["bf16"]["mean"] - curves["fp32"]["mean"]).abs()
    compare = {}
    for k in per["fp32"]:
        a, b = per["fp32"][k], per["bf16"][k]
        pooled = math.sqrt((a["sd"] ** 2 + b["sd"] ** 2) / 2)
        compare[k] = {"bf16_minus_fp32": b["mean"] - a["mean"], "pooled_seed_sd": pooled,
                      "within_spread": abs(b["mean"] - a["mean"]) <= pooled}
    out = {
        "profile": prof.name, "background": bg, "seeds": [int(s) for s in seeds], "steps": prof.steps,
        "arch": prof.arch, "model_size": prof.model_size, "patch": prof.patch, "batch": prof.batch_size,
        "sweep_wall_s": round(wall, 1), "per_precision": per, "compare": compare,
        "loss_curve": {"max_gap_between_precision_means": float(gap.max()),
                       "mean_seed_sd_fp32": float(curves["fp32"]["sd"].mean()),
                       "mean_seed_sd_bf16": float(curves["bf16"]["sd"].mean()),
                       "steps": [int(s) for s in gap.index]},
        "keys": {p: [c.key() for c in cs] for p, cs in configs.items()},
    }
    if path is not None:
        _write_json(Path(path), out)
    return out


def quick_timing(
    *,
    rounds: int = 2,
    profile: str = "quick",
    background: str | None = None,
    data_dir: str | Path | None = None,
    threads: int = 1,
    sweep_models: int = 0,
    workers: int | None = None,
    path: str | Path | None = None,
    progress: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Wall time of one ``profile`` model (train + evaluate) on the default path vs the old one.

    "old" is float32, NCHW (the path before the fast path existed; the rain renderer is
    today's in both). The two alternate ``rounds`` times with ``threads`` torch threads.
    With ``sweep_models > 0``, also an ``sweeps.sweep`` of that many models (seeds
    0..n-1, default path, ``workers`` processes, a temporary cache): models per minute.
    """
    from derain_utils import experiments, profiles, sweeps  # noqa: PLC0415 - lazy

    prof = profiles.resolve(profile)
    bg = background or _quick_background(data_dir)
    config = profiles.experiment(prof, background=bg)
    split = backgrounds.draw_split(config.background, config.n_train, config.n_test, tile=config.tile,
                                   test_size=config.test_size, seed=config.seed, gray=config.gray, data_dir=data_dir)
    paths = {"default": training.resolve_mode(device="cpu"), "old_fp32_nchw": training.StepMode("fp32", "contiguous")}
    times: dict[str, dict[str, list[float]]] = {k: {"train_s": [], "evaluate_s": []} for k in paths}
    with _Threads(threads):
        for r in range(rounds):
            for name, mode in paths.items():
                if progress:
                    progress(f"quick model, {name} ({mode.precision}, {mode.memory_format}), round {r + 1}/{rounds}")
                torch.manual_seed(config.seed)
                model = models.build_model(config.arch, in_channels=config.in_channels,
                                           **config.resolved_model_kwargs())
                t0 = time.perf_counter()
                res = training.train(model, split.train_tensor(), config.train_rain, steps=config.steps,
                                     batch_size=config.batch_size, patch=config.patch, lr=config.lr,
                                     warmup_steps=config.warmup_steps, seed=config.seed, device="cpu",
                                     progress=False, precision=mode.precision, memory_format=mode.memory_format)
                t1 = time.perf_counter()
                training.evaluate(res.model, split.test_tensor(), list(config.eval_presets), seed=config.eval_seed,
                                  train_spec=config.train_rain)
                times[name]["train_s"].append(t1 - t0)
                times[name]["evaluate_s"].append(time.perf_counter() - t1)
    out: dict[str, Any] = {"profile": prof.name, "background": bg, "steps": config.steps, "patch": config.patch,
                           "batch": config.batch_size, "threads": threads, "rounds": rounds, "paths": {}}
    for name, mode in paths.items():
        tr, ev = statistics.median(times[name]["train_s"]), statistics.median(times[name]["evaluate_s"])
        out["paths"][name] = {"precision": mode.precision, "memory_format": mode.memory_format,
                              "train_s": round(tr, 2), "evaluate_s": round(ev, 2), "model_s": round(tr + ev, 2),
                              "all": times[name]}
    out["speedup"] = round(out["paths"]["old_fp32_nchw"]["model_s"] / out["paths"]["default"]["model_s"], 2)
    if path is not None:
        _write_json(Path(path), out)
    if sweep_models > 0:
        w = workers or prof.workers
        configs = [profiles.experiment(prof, background=bg, seed=s) for s in range(sweep_models)]
        if progress:
            progress(f"sweep of {sweep_models} {prof.name} models with {w} worker(s) ...")
        with tempfile.TemporaryDirectory(prefix="derain-quick-timing-") as tmp:
            t0 = time.perf_counter()
            sweeps.sweep(configs, cache_root=tmp, data_dir=data_dir, workers=w, progress=False)
            wall = time.perf_counter() - t0
        out["sweep"] = {"models": sweep_models, "workers": w, "wall_s": round(wall, 1),
                        "models_per_minute": round(60 * sweep_models / wall, 2)}
        if path is not None:
            _write_json(Path(path), out)
    return out


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
        device: see :func:`derain_utils.training.select_device`.
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


def format_report(result: dict[str, Any]) -> str:
    """A readable multi-line table of one :func:`run_bench` result."""
    r = result
    lines = [
        f"derain_utils.bench  {r['arch']}/{r['size']}  C={r['in_channels']}  device={r['device']}  "
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
            raise SystemExit(f"--models: unknown model {name!r}; valid: {', '.join(by_name)}")
        out.append(by_name[name])
    return tuple(out)


def main(argv: Sequence[str] | None = None) -> Any:
    """Command line entry point (see the module docstring); returns what it measured."""
    p = argparse.ArgumentParser(prog="python -m derain_utils.bench", description=__doc__.split("\n")[0])
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

    if args.gpu_report is not None:
        return gpu_report(args.gpu_report, device=args.device or "cuda", tiny=args.tiny, budget_s=args.budget_s)
    if args.precision_check is not None:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        out = precision_check(seeds=seeds, cache_root=args.cache, workers=args.workers, path=args.precision_check)
        curve = {k: v for k, v in out["loss_curve"].items() if k != "steps"}
        print(json.dumps({"compare": out["compare"], "loss_curve": curve}, indent=2, default=str))
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


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
