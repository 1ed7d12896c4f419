"""Learning dynamics: what a deraining network learns first.

Gu et al. (NeurIPS 2023) explain poor generalisation by *what* a network learns:
trained on complex backgrounds and one simple rain, the cheapest way to lower the
loss is to recognise that rain and subtract it ("slacking off"); trained on simple
backgrounds, the network has to learn what a clean image looks like, and that
knowledge removes any rain. A finished model shows the result of that choice. Its
*training curve* shows the choice being made, which is the more direct test: with
complex backgrounds the removal of the training rain (in-distribution, ID) should
rise early while the removal of unseen rain (out-of-distribution, OOD) stays low;
with simple backgrounds OOD removal should follow ID removal.

What a dynamics run is
----------------------
:func:`run_dynamics` trains exactly the model of ``experiments.run(config)``: the
same initial weights (``torch.manual_seed(config.seed)`` before
:func:`~derain_utils.models.build_model`), the same training tiles and the same
:func:`~derain_utils.training.train` call. In addition it scores the network on the
held-out test images (the same test inputs as the experiment's evaluation) before
training (step 0, where the global-residual networks are close to the identity)
and at :func:`eval_steps` = ``points`` evenly spaced steps, the last one being the
final step. Scoring happens inside the training callback; it uses no random numbers
and restores the model's train mode, so it does not change training: the final
model is bitwise the experiment's model on the CPU (a test checks it).

At each evaluated step :func:`score` gives, per test image and rain preset, the
whole-image PSNR and the decoupled metrics of :mod:`derain_utils.metrics`
(``removal``, ``bg_psnr``, ``rain_psnr``), plus a ``"clean"`` row per image (the
network on the rain-free image). Scoring costs about three training steps per
evaluation at the quick profile's sizes.

Cache
-----
A finished run lives in ``<cache_root>/_dynamics/<key>/`` (``cache_root`` as in
:func:`derain_utils.experiments.cache_root`), where ``key`` hashes the experiment's
canonical config (:meth:`ExperimentConfig.canonical`, which covers the rain specs,
model size and ``CACHE_VERSION``), ``points`` and :data:`DYNAMICS_VERSION`:

``config.json``      the configuration, key, points and evaluated steps
``curve.csv``        one row per evaluated step x test image x preset (+ "clean")
``history.csv``      the training loss curve
``model.pt``         the final model (``state_dict``, ``arch``, ``kwargs``, ``in_channels``)
``provenance.json``  versions, device, wall time
``manifest.json``    sha256 of the files above

An entry is computed in a temporary folder and renamed into place when complete,
so a reader sees a whole entry or none; an entry is reused only when every file
matches its checksum and ``config.json`` describes the same run. Anything else is
recomputed (an interrupted run restarts: runs are short).

Reading the curves
------------------
:func:`model_curves` reduces the tidy curve to one row per model and step
(``removal_id``, ``removal_ood``, ``bg_psnr``, ...); :func:`half_rise_step` gives the
step at which a curve has covered half of its change from step 0 to the end (linear
interpolation between evaluated steps), and :func:`learning_summary` applies it to
the seed-mean curve of each condition to say which metric a network learns first;
:func:`removal_gap` gives each model's final ID minus OOD removal, the quantity the
notebook's verdict compares between simple and complex backgrounds.
"""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import io
import json
import math
import multiprocessing
import os
import platform
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from derain_utils import backgrounds, experiments, metrics, models, rain, training
from derain_utils.experiments import ExperimentConfig

__all__ = [
    "DYNAMICS_VERSION",
    "DYNAMICS_DIR",
    "CURVE_COLUMNS",
    "MODEL_CURVE_METRICS",
    "eval_steps",
    "dynamics_key",
    "dynamics_root",
    "score",
    "DynamicsResult",
    "run_dynamics",
    "load_dynamics",
    "sweep_dynamics",
    "model_curves",
    "crossing_step",
    "half_rise_step",
    "MIN_RISE",
    "learning_summary",
    "removal_gap",
]

#: Bump when the scoring or the curve format changes, so old dynamics entries are not reused.
DYNAMICS_VERSION = 1
#: Folder under the experiments cache root that holds the dynamics entries.
DYNAMICS_DIR = "_dynamics"
#: Columns of :func:`score` (plus ``step`` first in a stored curve).
CURVE_COLUMNS: tuple[str, ...] = (
    "step", "image", "preset", "in_distribution", "psnr", "rain_psnr", "bg_psnr", "removal", "mask_fraction",
)
#: Per-model metrics of :func:`model_curves` and what they average.
MODEL_CURVE_METRICS: dict[str, str] = {
    "removal_id": "rain removal ratio on the in-distribution presets (the training rain)",
    "removal_ood": "rain removal ratio on the out-of-distribution presets, pooled",
    "bg_psnr": "PSNR outside the (dilated) rain mask, dB, over all rainy presets",
    "rain_psnr": "PSNR inside the rain mask, dB, over all rainy presets",
    "psnr": "whole-image PSNR, dB, over all rainy presets",
    "clean_psnr": "PSNR of the output for a rain-free input against that input, dB",
}
#: Config columns attached to every row of :func:`sweep_dynamics`.
CONFIG_COLUMNS: tuple[str, ...] = ("key", "name", "arch", "background", "n_train", "gray", "train_rain", "steps",
                                   "seed")

_FILES = ("config.json", "curve.csv", "history.csv", "model.pt", "provenance.json")
_MANIFEST = "manifest.json"


# --------------------------------------------------------------------------- schedule and identity


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def eval_steps(steps: int, points: int) -> list[int]:
    """The training steps at which a dynamics run is scored (besides step 0).

    ``points`` evenly spaced steps ``round(k * steps / points)`` for k = 1..points:
    distinct, ascending, the last one ``steps``. E.g. ``eval_steps(500, 5)`` is
    ``[100, 200, 300, 400, 500]``.

    Raises:
        ValueError: ``steps`` or ``points`` not a positive integer, or ``points > steps``.
    """
    steps = _check_int("steps", steps, 1)
    points = _check_int("points", points, 1)
    if points > steps:
        raise ValueError(f"points ({points}) must be <= steps ({steps}): one evaluation per step at most")
    return [int(round(k * steps / points)) for k in range(1, points + 1)]


def dynamics_key(config: ExperimentConfig, points: int) -> str:
    """First 16 hex digits of the sha256 of the run's identity (config, points, DYNAMICS_VERSION)."""
    if not isinstance(config, ExperimentConfig):
        raise ValueError(f"config must be an ExperimentConfig, got {type(config).__name__}")
    points = _check_int("points", points, 1)
    ident = {"dynamics_version": DYNAMICS_VERSION, "points": points, "experiment": config.canonical()}
    text = json.dumps(ident, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def dynamics_root(cache_root: str | Path | None = None) -> Path:
    """``<experiments cache root>/_dynamics`` (explicit ``cache_root`` > ``$DERAIN_RUNS/cache`` > repo)."""
    return experiments.cache_root(cache_root) / DYNAMICS_DIR


# --------------------------------------------------------------------------- scoring


def score(
    model: nn.Module,
    eval_set: Mapping[str, training.EvalInputs],
    *,
    train_spec: str | rain.RainSpec | None = rain.TRAIN_PRESET,
    names: Sequence[str] | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 32,
) -> pd.DataFrame:
    """Whole-image PSNR and decoupled metrics of ``model`` on every test input, vectorised.

    The fast scorer used during training: the numbers equal those of
    :func:`derain_utils.training.evaluate` (same inputs, same definitions; PSNR here is
    ``10 log10(1 / MSE)`` over all pixels and channels, capped at ``metrics.PSNR_CAP``,
    which is what ``metrics.psnr`` computes), without SSIM.

    Args:
        model: the network (its train/eval mode is restored afterwards).
        eval_set: ``{preset: EvalInputs}`` from :func:`derain_utils.training.make_eval_set`.
        train_spec: the training rain, which decides ``in_distribution``; None leaves it NA.
        names: one name per test image (default ``img000``, ...).
        device: where to run the model (see :func:`derain_utils.training.predict`).
        batch_size: images per forward pass.

    Returns:
        DataFrame with :data:`CURVE_COLUMNS` except ``step``: one row per preset x image
        (in ``eval_set`` order), then one ``preset="clean"`` row per image (the model on
        the background itself: ``psnr`` only, the decoupled columns NaN).
    """
    if not eval_set:
        raise ValueError("eval_set is empty: nothing to score")
    entries = list(eval_set.items())
    clean = entries[0][1].background
    n = int(clean.shape[0])
    if names is None:
        names = [f"img{i:03d}" for i in range(n)]
    names = [str(x) for x in names]
    if len(names) != n:
        raise ValueError(f"names has {len(names)} entries but there are {n} test images")
    train = rain.get_spec(train_spec) if train_spec is not None else None
    inputs = torch.cat([e.rainy for _, e in entries] + [clean])
    derained = training.predict(model, inputs, device=device, batch_size=batch_size)
    backgrounds_all = torch.cat([e.background for _, e in entries] + [clean]).to(torch.float64)
    mse = ((derained.to(torch.float64) - backgrounds_all) ** 2).mean(dim=(1, 2, 3))
    whole = torch.clamp(10.0 * torch.log10(1.0 / mse), max=metrics.PSNR_CAP).tolist()

    frames = []
    for k, (pname, e) in enumerate(entries):
        d = derained[k * n:(k + 1) * n]
        dec = metrics.decoupled_batch(e.background, e.rainy, d, e.mask)
        in_dist = pd.NA if train is None else bool(rain.overlaps(train, e.spec))
        frames.append(pd.DataFrame({
            "image": names, "preset": pname, "in_distribution": in_dist,
            "psnr": whole[k * n:(k + 1) * n],
            **{c: dec[c].double().cpu().numpy() for c in ("rain_psnr", "bg_psnr", "removal", "mask_fraction")},
        }))
    k = len(entries)
    frames.append(pd.DataFrame({
        "image": names, "preset": "clean", "in_distribution": pd.NA, "psnr": whole[k * n:(k + 1) * n],
        **{c: np.nan for c in ("rain_psnr", "bg_psnr", "removal", "mask_fraction")},
    }))
    out = pd.concat(frames, ignore_index=True)
    out["in_distribution"] = out["in_distribution"].astype("boolean")
    return out


# --------------------------------------------------------------------------- results and cache


@dataclass
class DynamicsResult:
    """A finished dynamics run, as read back from its cache entry.

    Attributes:
        config: the experiment it trains. points: evaluations after step 0.
        dir: the cache entry. curve: tidy table with :data:`CURVE_COLUMNS` (``step``
        0 and :func:`eval_steps`). history: training loss curve (step, loss, lr,
        elapsed_s). provenance: dict. cached: True when nothing was trained in this call.
    """

    config: ExperimentConfig
    points: int
    dir: Path
    curve: pd.DataFrame
    history: pd.DataFrame
    provenance: dict
    cached: bool

    @property
    def key(self) -> str:
        return dynamics_key(self.config, self.points)

    @property
    def name(self) -> str:
        return self.config.name()

    def load_model(self, device: str | torch.device = "cpu") -> nn.Module:
        """The final model (``model.pt``) on ``device``, in eval mode."""
        return _load_model(self.dir / "model.pt", device)


def _load_model(path: Path, device: str | torch.device = "cpu") -> nn.Module:
    """The model saved at ``path`` (the same file format as an experiments cache entry)."""
    return experiments._load_model(path, device=device)


# the cache-entry helpers are the experiments cache's own, so both caches read and check files alike
_sha256 = experiments._sha256_file
_read_csv = experiments._read_csv


def _verify(entry: Path, config: ExperimentConfig, points: int) -> str | None:
    """None when ``entry`` is a complete, untouched run of (config, points); else why not."""
    manifest = entry / _MANIFEST
    if not manifest.is_file():
        return f"no {_MANIFEST}"
    try:
        files = json.loads(manifest.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"{_MANIFEST} is unreadable ({e})"
    for name in _FILES:
        path = entry / name
        if name not in files or not path.is_file():
            return f"{name} is missing"
        if _sha256(path) != files[name]:
            return f"{name} does not match its checksum"
    try:
        stored = json.loads((entry / "config.json").read_text())
        if stored["key"] != dynamics_key(config, points) or ExperimentConfig.from_dict(stored["config"]) != config:
            return "config.json describes another run"
    except Exception as e:  # noqa: BLE001 - any failure means "not this run"
        return f"config.json is unreadable ({e})"
    return None


def _read(entry: Path, config: ExperimentConfig, points: int, cached: bool) -> DynamicsResult:
    return DynamicsResult(
        config=config, points=points, dir=entry, curve=_read_csv(entry / "curve.csv"),
        history=_read_csv(entry / "history.csv"), provenance=json.loads((entry / "provenance.json").read_text()),
        cached=cached,
    )


def load_dynamics(config: ExperimentConfig, points: int, *, cache_root: str | Path | None = None
                  ) -> DynamicsResult | None:
    """The verified cached dynamics run of ``(config, points)``, or None; never trains."""
    entry = dynamics_root(cache_root) / dynamics_key(config, points)
    if not entry.is_dir() or _verify(entry, config, points) is not None:
        return None
    return _read(entry, config, points, cached=True)


_write_json = experiments._atomic_write_json


def run_dynamics(
    config: ExperimentConfig,
    points: int,
    *,
    cache_root: str | Path | None = None,
    data_dir: str | Path | None = None,
    device: str | torch.device | None = None,
    threads: int | None = None,
    progress: bool = False,
    force: bool = False,
) -> DynamicsResult:
    """Train ``config``'s model while scoring it at step 0 and at ``eval_steps(config.steps, points)``.

    Returns the verified cached run when there is one (unless ``force``). Otherwise
    trains (module docstring), writes the entry atomically and returns it.

    Args:
        config: the experiment (its ``eval_presets``, ``n_test``, ``test_size``,
            ``eval_seed`` and ``eval_background`` define the test inputs, as in
            :func:`derain_utils.experiments.run`).
        points: evaluations after step 0 (``1 <= points <= config.steps``).
        cache_root: experiments cache root; the entry goes to ``<root>/_dynamics/<key>``.
        data_dir: folder of named image sets (else ``$DERAIN_DATA``).
        device: training device (``training.select_device``).
        threads: torch CPU threads while training.
        progress: training progress bar.
        force: recompute even when a verified entry exists.

    Raises:
        ValueError: ``config`` is not an ExperimentConfig, or a bad ``points`` (named).
    """
    if not isinstance(config, ExperimentConfig):
        raise ValueError(f"config must be an ExperimentConfig, got {type(config).__name__}")
    schedule = eval_steps(config.steps, points)
    key = dynamics_key(config, points)
    root = dynamics_root(cache_root)
    entry = root / key
    if not force:
        hit = load_dynamics(config, points, cache_root=cache_root)
        if hit is not None:
            return hit

    t0 = time.perf_counter()
    dev = training.select_device(device)
    split = backgrounds.draw_split(config.background, config.n_train, config.n_test, tile=config.tile,
                                   test_size=config.test_size, seed=config.seed, gray=config.gray, data_dir=data_dir)
    test = split
    if config.eval_background is not None and config.eval_background != config.background:
        test = backgrounds.draw_split(config.eval_background, 0, config.n_test, tile=config.tile,
                                      test_size=config.test_size, seed=config.seed, gray=config.gray,
                                      data_dir=data_dir)
    eval_set = training.make_eval_set(test.test_tensor(), list(config.eval_presets), seed=config.eval_seed)
    names = list(test.test_ids)

    torch.manual_seed(config.seed)  # as experiments.run: the initialisation is part of the experiment
    model = models.build_model(config.arch, in_channels=config.in_channels, **config.resolved_model_kwargs())
    frames: list[pd.DataFrame] = []
    todo = set(schedule)

    def record(step: int) -> None:
        frame = score(model, eval_set, train_spec=config.train_rain, names=names)
        frame.insert(0, "step", step)
        frames.append(frame)

    record(0)

    def callback(step: int, _loss: float) -> None:
        if step in todo:
            record(step)

    res = training.train(
        model, split.train_tensor(), config.train_rain, steps=config.steps, batch_size=config.batch_size,
        patch=config.patch, lr=config.lr, warmup_steps=config.warmup_steps, seed=config.seed, device=dev,
        progress=progress, threads=threads, callback=callback, precision=config.precision,
    )
    curve = pd.concat(frames, ignore_index=True)[list(CURVE_COLUMNS)]

    # ---- write into a temporary folder, then rename it into place (whole entry or none)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{key}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        _write_json(tmp / "config.json", {
            "key": key, "name": config.name(), "points": points, "eval_steps": [0, *schedule],
            "dynamics_version": DYNAMICS_VERSION, "config": config.to_dict(), "experiment_key": config.key(),
        })
        (tmp / "curve.csv").write_text(curve.to_csv(index=False), encoding="utf-8")
        (tmp / "history.csv").write_text(res.history.to_csv(index=False), encoding="utf-8")
        buf = io.BytesIO()
        torch.save({
            "state_dict": {k: v.detach().cpu() for k, v in res.model.state_dict().items()},
            "arch": config.arch,
            "kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in config.resolved_model_kwargs().items()},
            "in_channels": config.in_channels,
            "key": key,
        }, buf)
        (tmp / "model.pt").write_bytes(buf.getvalue())
        _write_json(tmp / "provenance.json", {
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "device": str(res.device), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
            "versions": {"torch": torch.__version__, "numpy": np.__version__, "pandas": pd.__version__},
            "wall_s": round(time.perf_counter() - t0, 3), "train_wall_s": round(float(res.wall_s), 3),
            "train_ids": list(split.train_ids), "test_ids": names,
        })
        _write_json(tmp / _MANIFEST, {"key": key, "files": {f: _sha256(tmp / f) for f in _FILES}})
        if entry.exists():
            shutil.rmtree(entry, ignore_errors=True)  # stale or damaged (a verified one returned above)
        try:
            os.rename(tmp, entry)
        except OSError:  # another process renamed its (identical) run into place first
            if load_dynamics(config, points, cache_root=cache_root) is None:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _read(entry, config, points, cached=False)


def _job(config_dict: dict[str, Any], points: int, root: str, data_dir: str | None, device: str | None,
         threads: int) -> str:
    """One dynamics run in a worker process; the parent reads the result from the cache."""
    torch.set_num_threads(threads)
    config = ExperimentConfig.from_dict(config_dict)
    run_dynamics(config, points, cache_root=root, data_dir=data_dir, device=device, threads=threads)
    return dynamics_key(config, points)


def sweep_dynamics(
    configs: Iterable[ExperimentConfig],
    points: int,
    *,
    cache_root: str | Path | None = None,
    data_dir: str | Path | None = None,
    workers: int = 1,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Run (or read from the cache) every config's dynamics; ONE tidy table.

    Duplicate configs run once. With ``workers > 1`` the missing runs go to a
    ``spawn`` process pool, each worker with ``cpu_count // workers`` torch threads
    (as :func:`derain_utils.experiments.sweep` does).

    Returns:
        One row per config x evaluated step x test image x preset (and "clean"):
        the config columns (``key`` is the *dynamics* key; ``experiment_key`` the
        key of the same model in the experiments cache) then :data:`CURVE_COLUMNS`.

    Raises:
        ValueError: empty ``configs``, a non-config entry, bad ``workers`` or ``points``.
        RuntimeError: some runs failed (named); the finished ones are cached.
    """
    from tqdm.auto import tqdm

    configs = list(configs)
    if not configs:
        raise ValueError("configs is empty: nothing to sweep")
    for i, c in enumerate(configs):
        if not isinstance(c, ExperimentConfig):
            raise ValueError(f"configs[{i}] must be an ExperimentConfig, got {type(c).__name__}")
        eval_steps(c.steps, points)  # validates points against every config
    workers = _check_int("workers", workers, 1)
    unique: dict[str, ExperimentConfig] = {}
    for c in configs:
        unique.setdefault(dynamics_key(c, points), c)
    root = experiments.cache_root(cache_root)
    results: dict[str, DynamicsResult] = {}
    todo = []
    for key, c in unique.items():
        hit = load_dynamics(c, points, cache_root=root)
        if hit is None:
            todo.append(c)
        else:
            results[key] = hit
    failures: list[tuple[ExperimentConfig, BaseException]] = []
    dev = None if device is None else str(device)
    with tqdm(total=len(unique), initial=len(results), desc="dynamics", unit="run", disable=not progress) as bar:
        if workers == 1 or len(todo) <= 1:
            for c in todo:
                try:
                    results[dynamics_key(c, points)] = run_dynamics(c, points, cache_root=root, data_dir=data_dir,
                                                                    device=device)
                except Exception as e:  # noqa: BLE001 - collected and re-raised below
                    failures.append((c, e))
                bar.update()
        else:
            threads = max(1, len(os.sched_getaffinity(0)) // workers) if hasattr(os, "sched_getaffinity") \
                else max(1, (os.cpu_count() or 1) // workers)
            ctx = multiprocessing.get_context("spawn")
            with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                futures = {pool.submit(_job, c.to_dict(), points, str(root),
                                       None if data_dir is None else str(data_dir), dev, threads): c for c in todo}
                for fut in cf.as_completed(futures):
                    c = futures[fut]
                    try:
                        fut.result()
                        hit = load_dynamics(c, points, cache_root=root)
                        if hit is None:
                            raise RuntimeError(f"no valid dynamics entry after the run in {root}")
                        results[dynamics_key(c, points)] = hit
                    except Exception as e:  # noqa: BLE001
                        failures.append((c, e))
                    bar.update()
    if failures:
        names = ", ".join(f"{c.name()}: {type(e).__name__}: {e}" for c, e in failures[:5])
        raise RuntimeError(f"{len(failures)} of {len(unique)} dynamics runs failed: {names}; "
                           "finished runs are cached") from failures[0][1]
    frames = []
    for key, c in unique.items():
        curve = results[key].curve.copy()
        cols = {"key": key, "experiment_key": c.key(), "name": c.name(), "arch": c.arch, "background": c.background,
                "n_train": c.n_train, "gray": c.gray, "train_rain": c.train_rain, "steps": c.steps, "seed": c.seed}
        for i, (col, v) in enumerate(cols.items()):
            curve.insert(i, col, v)
        frames.append(curve)
    out = pd.concat(frames, ignore_index=True)
    out["in_distribution"] = out["in_distribution"].astype("boolean")
    return out


# --------------------------------------------------------------------------- reading the curves


def model_curves(curve: pd.DataFrame, by: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per model and step: the metrics of :data:`MODEL_CURVE_METRICS`, averaged over images.

    Args:
        curve: tidy curve (:func:`sweep_dynamics` or a :class:`DynamicsResult`'s ``curve``),
            with ``step``, ``preset``, ``in_distribution``, ``removal``, ``bg_psnr``,
            ``rain_psnr``, ``psnr``.
        by: columns that identify a model (default: those of ``key``, ``name``, ``background``,
            ``n_train``, ``seed`` present in ``curve``).

    Returns:
        ``by`` + ``step`` + the metric columns. ``removal_ood`` pools every OOD preset
        (NaN when there is none); ``clean_psnr`` averages the "clean" rows.
    """
    need = ["step", "preset", "in_distribution", "removal", "bg_psnr", "rain_psnr", "psnr"]
    missing = [c for c in need if c not in curve.columns]
    if missing:
        raise ValueError(f"curve lacks column(s) {missing}")
    if by is None:
        by = [c for c in ("key", "name", "background", "n_train", "seed") if c in curve.columns]
    by = list(by)
    missing = [c for c in by if c not in curve.columns]
    if missing:
        raise ValueError(f"by names column(s) {missing} that curve lacks")
    keys = [*by, "step"]
    rainy = curve[curve["preset"] != "clean"]
    flag = rainy["in_distribution"].astype("boolean")
    parts = [
        rainy[flag.fillna(False).to_numpy(bool)].groupby(keys, sort=True)["removal"].mean().rename("removal_id"),
        rainy[(~flag).fillna(False).to_numpy(bool)].groupby(keys, sort=True)["removal"].mean().rename("removal_ood"),
        rainy.groupby(keys, sort=True)[["bg_psnr", "rain_psnr", "psnr"]].mean(),
        curve[curve["preset"] == "clean"].groupby(keys, sort=True)["psnr"].mean().rename("clean_psnr"),
    ]
    out = pd.concat(parts, axis=1).reset_index()
    return out[[*keys, *MODEL_CURVE_METRICS]]


def _as_curve(steps: Any, values: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(steps, dtype=float)
    v = np.asarray(values, dtype=float)
    if s.ndim != 1 or v.shape != s.shape or s.size < 2:
        raise ValueError(f"steps and values must be 1-D of the same length >= 2, got shapes {s.shape}, {v.shape}")
    if not np.all(np.diff(s) > 0):
        raise ValueError("steps must be strictly increasing")
    if not np.all(np.isfinite(v)):
        raise ValueError("values must be finite")
    return s, v


def crossing_step(steps: Any, values: Any, level: float) -> float:
    """The first step at which the curve reaches ``level`` from below (linear interpolation).

    ``steps[0]`` if the curve starts at or above ``level``; NaN if it never reaches it.
    """
    s, v = _as_curve(steps, values)
    if not math.isfinite(level):
        raise ValueError(f"level must be finite, got {level!r}")
    above = np.flatnonzero(v >= level)
    if above.size == 0:
        return math.nan
    i = int(above[0])
    if i == 0:
        return float(s[0])
    frac = (level - v[i - 1]) / (v[i] - v[i - 1])
    return float(s[i - 1] + frac * (s[i] - s[i - 1]))


def half_rise_step(steps: Any, values: Any, *, min_rise: float = 0.0) -> float:
    """The step at which a curve first covers half of its rise from the first to the last value.

    ``crossing_step(steps, values, v0 + (v_end - v0) / 2)``. A curve whose net change
    ``v_end - v0`` is not larger than ``min_rise`` did not learn that metric: NaN.
    """
    s, v = _as_curve(steps, values)
    rise = v[-1] - v[0]
    if not rise > max(min_rise, 0.0):
        return math.nan
    return crossing_step(s, v, v[0] + rise / 2.0)


#: Smallest net rise that counts as "learned" in :func:`learning_summary` (removal: ratio; PSNR: dB).
MIN_RISE: dict[str, float] = {"removal_id": 0.1, "removal_ood": 0.1, "bg_psnr": 1.0, "rain_psnr": 1.0, "psnr": 1.0}


def learning_summary(
    curves: pd.DataFrame,
    columns: Sequence[str] = ("removal_id", "removal_ood", "bg_psnr"),
    *,
    by: Sequence[str] = ("background", "n_train"),
    seed_col: str = "seed",
    min_rise: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Which metric each kind of network learns first, from its seed-mean curve.

    For every condition (``by``) the per-model curves (:func:`model_curves`) are
    averaged over seeds at each step; then, per metric, ``start`` (step 0), ``final``,
    ``change`` and ``t_half`` (:func:`half_rise_step` with ``min_rise[metric]``, default
    :data:`MIN_RISE`: NaN when the metric did not rise by at least that much).
    ``first`` names the metric (of ``columns``) with the smallest ``t_half`` ("none" when
    no metric rose).

    Returns:
        One row per condition: ``by``, ``n_seeds``, then ``<metric>_start``, ``_final``,
        ``_change``, ``_t_half`` for each metric, and ``first``.
    """
    columns = list(columns)
    by = list(by)
    need = [*by, seed_col, "step", *columns]
    missing = [c for c in need if c not in curves.columns]
    if missing:
        raise ValueError(f"curves lacks column(s) {missing}")
    rises = {**MIN_RISE, **(dict(min_rise) if min_rise else {})}
    rows = []
    for cond, g in curves.groupby(by, sort=True):
        cond = cond if isinstance(cond, tuple) else (cond,)
        mean = g.groupby("step", sort=True)[columns].mean()
        row: dict[str, Any] = dict(zip(by, cond))
        row["n_seeds"] = int(g[seed_col].nunique())
        t = {}
        for m in columns:
            v = mean[m].to_numpy(dtype=float)
            row[f"{m}_start"], row[f"{m}_final"] = float(v[0]), float(v[-1])
            row[f"{m}_change"] = float(v[-1] - v[0])
            t[m] = half_rise_step(mean.index.to_numpy(), v, min_rise=rises.get(m, 0.0)) if np.all(np.isfinite(v)) \
                else math.nan
            row[f"{m}_t_half"] = t[m]
        learned = {m: x for m, x in t.items() if math.isfinite(x)}
        row["first"] = min(learned, key=learned.get) if learned else "none"
        rows.append(row)
    return pd.DataFrame(rows)


def removal_gap(curves: pd.DataFrame, step: int | None = None, *, by: Sequence[str] | None = None) -> pd.DataFrame:
    """Each model's in-distribution minus OOD rain removal at ``step`` (default: its last step).

    Args:
        curves: per-model curves (:func:`model_curves`).
        step: the step to read (every model must have it); None = each model's last.
        by: model columns (default: those of ``key``, ``background``, ``n_train``, ``seed`` present).

    Returns:
        ``by``, ``step``, ``removal_id``, ``removal_ood``, ``gap`` = removal_id - removal_ood.
    """
    need = ["step", "removal_id", "removal_ood"]
    missing = [c for c in need if c not in curves.columns]
    if missing:
        raise ValueError(f"curves lacks column(s) {missing}")
    if by is None:
        by = [c for c in ("key", "background", "n_train", "seed") if c in curves.columns]
    by = list(by)
    if step is None:
        last = curves.groupby(by, sort=False)["step"].transform("max")
        sel = curves[curves["step"] == last]
    else:
        sel = curves[curves["step"] == step]
        n_models = curves.groupby(by).ngroups
        if sel.groupby(by).ngroups != n_models:
            raise ValueError(f"step={step} is not evaluated for every model")
    out = sel[[*by, "step", "removal_id", "removal_ood"]].copy()
    out["gap"] = out["removal_id"] - out["removal_ood"]
    return out.sort_values(by).reset_index(drop=True)
