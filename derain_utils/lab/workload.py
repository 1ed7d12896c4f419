"""What the profiles cost: the paper profile's workload and its GPU report, the CPU workers layout,
and the quick profile's numerics and wall time.

These measurements are run from the benchmark's command line (``python -m derain_utils.lab.bench``)
and build on its timing (:mod:`derain_utils.lab.bench`).

The GPU report (``--gpu-report PATH``, see :func:`gpu_report`)
    On CUDA: step times of the suite's models on the fast path and in float32,
    achieved TFLOP/s (a training step costs about **3x the forward FLOPs**,
    :func:`derain_utils.nets.models.count_flops`), throughput when k models train at once
    in k processes sharing the GPU (as ``sweeps.sweep(workers=k)`` runs them), one
    real ``experiments.run`` of a shortened paper configuration (train + evaluate + cache,
    for the per-model overhead), and an extrapolated wall time of the ``paper`` profile's
    four notebooks. It writes its JSON after every section (a timeout still leaves the
    finished parts) and prints progress. ``--device cpu --tiny`` runs the same code on
    the CPU with tiny sizes (the tests do).

The workers report (``--workers-report PATH``)
    Training throughput of the quick profile's model on the CPU for processes x threads
    layouts (default 1 x 2 and 2 x 1), the measurement behind ``Profile.workers``.

The precision check (``--precision-check PATH``, :func:`precision_check`)
    The quick profile's model trained per seed in float32 and in bfloat16, and the two compared.

The quick timing (``--quick-timing PATH``, :func:`quick_timing`)
    Wall time of one quick model on the default path against float32/NCHW (and of a sweep).
"""
from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from derain_utils.lab import bench, designs, experiments, profiles, sweeps
from derain_utils.measure import scoring
from derain_utils.nets import models, training
from derain_utils.synth import backgrounds, rain

__all__ = ["paper_workload", "gpu_report", "workers_report", "precision_check", "quick_timing", "training_rate",
           "RATE_STEPS_PER_MODEL"]


# --------------------------------------------------------------------------- the paper profile on one GPU


def paper_workload(profile: str = "paper", real_categories: int = 4) -> dict[str, Any]:
    """How many models the four notebooks train under ``profile`` (what the GPU report extrapolates).

    Every notebook is counted from its design function in :data:`derain_utils.lab.designs.NOTEBOOK_DESIGNS`:
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
    scoring.evaluate(model, split.test_tensor(), list(config.eval_presets), seed=config.eval_seed, device=dev)
    bench._sync(dev)
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
    its error and the report goes on): ``environment``; ``steps`` (the :data:`bench.SUITE` models
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
    # the format tag is frozen (reports written before the package had subpackages carry it)
    report: dict[str, Any] = {"format": "derain_utils.bench.gpu_report/1", "tiny": tiny, "budget_s": budget_s,
                              "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    def save() -> None:
        report["elapsed_s"] = round(time.perf_counter() - start, 1)
        bench._write_json(path, report)

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
    section("environment", lambda: bench._environment(dev))

    if tiny:
        cases = (bench.BenchCase("resnet", "tiny", 16, 4), bench.BenchCase("unet", "tiny", 16, 4))
        paper_case = bench.BenchCase("resnet", "tiny", 16, 4)
        ks = tuple(k for k in ks if k <= 2)
        steps, window, warm = 2, 0.5, 0.2
    else:
        cases = bench.SUITE
        paper_case = bench.SUITE[-1]
        steps, window, warm = 20, 8.0, 3.0

    def steps_section() -> list[dict[str, Any]]:
        out = []
        for case in cases:
            say(f"  steps {case.name} {case.patch} px x {case.batch}")
            rec = bench.bench_model(case, device=dev, threads=None, steps=steps, warmup=3 if not tiny else 1, fast=fast)
            cl = bench.bench_model(case, device=dev, threads=None, steps=steps, warmup=3 if not tiny else 1,
                             fast=training.StepMode("fp32", "channels_last"))
            rec["fp32_channels_last_ms"] = cl["fast_ms"]
            out.append(rec)
            report["steps"] = out
            save()
        return out

    section("steps", steps_section)
    section("synthesis", lambda: [bench.bench_synthesis(device=dev, threads=None, n=n, size=s, reps=3)
                                  for n, s in ((256, 128), (paper_case.batch, paper_case.patch))])

    def concurrency_section() -> list[dict[str, Any]]:
        def partial(res: list[dict[str, Any]]) -> None:
            report["concurrency"] = res
            save()

        return bench.measure_concurrency(paper_case, [(k, 1) for k in ks], device=dev,
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
        t_compile, _ = bench._timed(lambda: training._optimize(cmodel, opt, *batch, compiled), dev)
        times = [bench._timed(lambda: training._optimize(cmodel, opt, *batch, compiled), dev)[0]
                 for _ in range(steps + 3)]
        eager = next((r for r in report.get("steps", []) if r.get("model") == paper_case.name), {})
        ms = bench._ms(times[3:])
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
    case: bench.BenchCase | None = None,
    layouts: Sequence[tuple[int, int]] = ((1, 2), (2, 1)),
    seconds: float = 20.0,
    warmup_s: float = 3.0,
    rounds: int = 3,
    progress: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """CPU training throughput of the quick profile's model for processes x threads ``layouts``,
    alternated ``rounds`` times (medians), written to ``path`` (the measurement behind ``Profile.workers``)."""
    if case is None:
        q = profiles.resolve("quick")
        case = bench.BenchCase(q.arch, q.model_size, q.patch, q.batch_size)
    runs: list[dict[str, Any]] = []
    for _ in range(rounds):
        runs += bench.measure_concurrency(case, layouts, device="cpu", seconds=seconds, warmup_s=warmup_s,
                                    progress=progress)
        if path is not None:
            bench._write_json(Path(path), {"runs": runs})
    summary = []
    for k, t in layouts:
        rates = [r["steps_per_s"] for r in runs if (r["processes"], r["threads"]) == (k, t)]
        summary.append({"processes": k, "threads": t, "steps_per_s_median": round(statistics.median(rates), 3),
                        "steps_per_s": rates})
    out = {"model": case.name, "patch": case.patch, "batch": case.batch, "cpu_count": os.cpu_count(),
           "summary": summary, "runs": runs}
    if path is not None:
        bench._write_json(Path(path), out)
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
        bench._write_json(Path(path), out)
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
    prof = profiles.resolve(profile)
    bg = background or _quick_background(data_dir)
    config = profiles.experiment(prof, background=bg)
    split = backgrounds.draw_split(config.background, config.n_train, config.n_test, tile=config.tile,
                                   test_size=config.test_size, seed=config.seed, gray=config.gray, data_dir=data_dir)
    paths = {"default": training.resolve_mode(device="cpu"), "old_fp32_nchw": training.StepMode("fp32", "contiguous")}
    times: dict[str, dict[str, list[float]]] = {k: {"train_s": [], "evaluate_s": []} for k in paths}
    with bench._Threads(threads):
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
                scoring.evaluate(res.model, split.test_tensor(), list(config.eval_presets), seed=config.eval_seed,
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
        bench._write_json(Path(path), out)
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
            bench._write_json(Path(path), out)
    return out


RATE_STEPS_PER_MODEL: int = 500
"""The steps of one model in :func:`training_rate`'s models per minute (a quick-profile model)."""


def training_rate(
    arch: str = "resnet",
    size: str = "quick",
    *,
    ks: Sequence[int] = (2, 4),
    batch: int = 16,
    patch: int = 32,
    steps_per_model: int = RATE_STEPS_PER_MODEL,
    device: str | torch.device | None = "cpu",
    threads: int | None = 1,
    steps: int = 20,
    warmup: int = 2,
) -> dict[str, Any]:
    """Models per minute of the quick model trained one at a time and k seeds stacked, and which is the default.

    From :func:`bench.stacked_timing` (bare steps, interleaved in one run): ``one_at_a_time_per_min`` =
    60 s / (one model's step x ``steps_per_model``), ``stacked_per_min`` the same for the fastest
    stacked variant, ``ratio`` their quotient. ``default`` names the path the sweeps use: stacking
    only where ``ratio`` >= :data:`bench.STACK_ADOPT` (it never has on the CPUs measured; the sweeps train
    one model at a time).
    """
    out = bench.stacked_timing(arch, size, ks=ks, batch=batch, patch=patch, steps=steps, warmup=warmup, device=device,
                         threads=threads)
    one = next(r for r in out["rows"] if r["k"] == 1)
    best = max((r for r in out["rows"] if r["k"] > 1), key=lambda r: r["models_per_minute_ratio"])
    per_min = 60_000.0 / (one["step_ms"] * steps_per_model)
    return {"model": "training", "arch": arch, "size": size, "patch": patch, "batch": batch,
            "device": out["device"], "threads": out["threads"], "precision": out["precision"],
            "steps_per_model": steps_per_model, "one_at_a_time_per_min": per_min,
            "stacked_per_min": per_min * best["models_per_minute_ratio"], "stacked_method": best["method"],
            "ratio": best["models_per_minute_ratio"], "adopt_at": bench.STACK_ADOPT,
            "default": "stacked" if out["adopt"] else "one at a time", "rows": out["rows"]}
