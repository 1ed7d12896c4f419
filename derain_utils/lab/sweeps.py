"""Sweeps: many experiments, run where they can run, read back as ONE tidy table.

:func:`sweep` runs a list of configurations (:func:`derain_utils.lab.experiments.run` each,
skipping verified cache entries) and returns one table with a row per config x test image x
preset, the config columns first, ready for ``seaborn`` and for the verdict statistics.
:func:`sweep_curves` does the same for runs scored during training and returns their
learning curves. Both read every result back from the cache, so the table is the same
whoever computed it.

How well each model fits its own training data (:func:`training_fit`: removal of its training
rain on its training tiles) is what the stall rule of :mod:`derain_utils.measure.outcome` reads:
a fact about training, not about the unseen rain the verdicts are about.

Executors: ``"inline"`` (this process), ``"process"`` (a ``spawn`` process pool, each worker
with ``cpu_count // workers`` torch threads) and ``"submitit"`` (slurm, or local processes).
Duplicate configs run once; an interrupted sweep reruns only what is missing. On a small
CPU, give each run ONE torch thread per core it really has: oversubscribed intra-op
threads made a 2-core machine 5-10x slower in our tests.
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import numbers
import os
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from derain_utils import store
from derain_utils.lab import experiments
from derain_utils.lab.experiments import ExperimentConfig, ExperimentResult
from derain_utils.measure import scoring

__all__ = ["EXECUTORS", "FIT_TILES", "sweep", "sweep_curves", "training_fit"]

EXECUTORS: tuple[str, ...] = ("inline", "process", "submitit")
POOL_ATTEMPTS: int = 3
"""Pools a run of the process executor may be lost with: a worker killed outright (SIGKILL, out of memory)
breaks the whole pool and fails every run in it, so the runs it took down go to a fresh pool, each at
most this many times (a run that kills its worker every time is reported, not retried forever)."""
FIT_TILES: int = 8
"""Training tiles (the first ones of the model's training set) that :func:`training_fit` scores."""
FIT_SEED_SALT: int = 7919
"""Added to a config's ``eval_seed`` for the rain of :func:`training_fit` (not the test rain)."""


def _worker_threads(workers: int) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus // workers)


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def _job(
    config_dict: dict[str, Any],
    root: str,
    data_dir: str | None,
    device: str | None,
    threads: int | None,
    curve_points: int | None,
) -> str:
    """Run one config in a worker process/job; the parent reads the result from the cache."""
    if threads is not None:
        torch.set_num_threads(threads)
    config = ExperimentConfig.from_dict(config_dict)
    experiments.run(config, cache_root=root, data_dir=data_dir, device=device, progress=False, threads=threads,
                    curve_points=curve_points)
    return config.key()


@contextlib.contextmanager
def _package_on_pythonpath() -> Iterator[None]:
    """Make ``derain_utils`` importable by job processes that start a fresh interpreter."""
    old = os.environ.get("PYTHONPATH")
    parts = [str(store.repo_root())] + ([old] if old else [])
    os.environ["PYTHONPATH"] = os.pathsep.join(parts)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def sweep(
    configs: Iterable[ExperimentConfig],
    *,
    cache_root: str | Path | None = None,
    data_dir: str | Path | None = None,
    workers: int = 1,
    executor: str | None = None,
    progress: bool = True,
    submitit_kwargs: Mapping[str, Any] | None = None,
    device: str | torch.device | None = None,
    threads: int | None = None,
) -> pd.DataFrame:
    """Run every config (skipping verified cached ones) and return ONE tidy table.

    The table has one row per config x test image x preset (plus the "clean" rows of
    :func:`scoring.evaluate`), with :data:`experiments.CONFIG_COLUMNS` first, in the order
    of ``configs`` (duplicates, by key, run and appear once). Interrupting a sweep and
    calling it again finishes only the missing runs; a run interrupted mid-training
    resumes from its checkpoint.

    Args:
        configs: the experiments.
        workers: parallel runs for the ``"process"`` executor (each with
            ``cpu_count // workers`` torch threads), and the array parallelism for slurm.
        executor: ``"inline"`` (this process, one after another), ``"process"``
            (``ProcessPoolExecutor`` with the ``spawn`` context) or ``"submitit"``
            (``submitit.AutoExecutor``: slurm when available, else local processes).
            None = ``"inline"`` when ``workers == 1`` else ``"process"``.
        submitit_kwargs: for ``"submitit"``: ``folder`` (job logs; default
            ``<cache_root>/_submitit``) and ``cluster`` (e.g. ``"local"``, ``"debug"``,
            ``"slurm"``) go to the AutoExecutor constructor; everything else
            (``timeout_min``, ``slurm_partition``, ``gpus_per_node``, ...) to
            ``update_parameters``.
        progress: a ``tqdm.auto`` bar over configs (runs themselves show no bar).
        device: training/evaluation device of every run (None = cuda > mps > cpu).
        threads: torch CPU threads per run. Default: 1 for ``"inline"`` (a single-worker
            sweep of small models: on a busy 2-core machine a smoke model took 2 s on torch's
            default threads against 0.5 s on one in issue 23's measurement (0.43 s on one thread
            in this session's), and the worker measurements of docs/performance.md found OpenMP threads
            waiting for busy cores); ``cpu_count // workers`` for
            ``"process"``; ``cpu_count // n_jobs`` for local submitit jobs (they all start at
            once); the node's for cluster jobs. Oversubscribed threads are very slow on a busy
            machine.

    Raises:
        ValueError: empty ``configs``, a non-config entry, bad ``workers``/``executor``.
        RuntimeError: some runs failed in worker processes/jobs (named); the others
            are cached, so a rerun only redoes the failed ones.
    """
    results = _run_all(configs, None, cache_root=cache_root, data_dir=data_dir, workers=workers, executor=executor,
                       progress=progress, submitit_kwargs=submitit_kwargs, device=device, threads=threads)
    return pd.concat([r.eval for r in results], ignore_index=True)


def sweep_curves(
    configs: Iterable[ExperimentConfig],
    points: int,
    *,
    cache_root: str | Path | None = None,
    data_dir: str | Path | None = None,
    workers: int = 1,
    executor: str | None = None,
    progress: bool = True,
    submitit_kwargs: Mapping[str, Any] | None = None,
    device: str | torch.device | None = None,
    threads: int | None = None,
) -> pd.DataFrame:
    """:func:`sweep` of runs scored during training (``experiments.run(config, curve_points=points)``).

    Returns:
        The learning curves in one table: one row per config x evaluated step x test image
        x preset (and "clean"), :data:`experiments.CONFIG_COLUMNS` first (``key`` is the
        curve entry's key, :func:`experiments.curve_key`; ``experiment_key`` follows it: the
        key of the same model in the experiments cache), then
        :data:`experiments.CURVE_COLUMNS`. Arguments as :func:`sweep`.

    Raises:
        ValueError: as :func:`sweep`, and a ``points`` larger than a config's steps (named).
    """
    configs = list(configs)
    for c in configs:
        if isinstance(c, ExperimentConfig):
            experiments.curve_steps(c.steps, points)  # validates points against every config
    results = _run_all(configs, points, cache_root=cache_root, data_dir=data_dir, workers=workers,
                       executor=executor, progress=progress, submitit_kwargs=submitit_kwargs, device=device,
                       threads=threads)
    frames = []
    for r in results:
        cols = experiments.config_columns(r.config, key=r.entry_key)
        cols = {"key": cols.pop("key"), "experiment_key": r.key, **cols}
        curve = r.curve.copy()
        for i, (col, v) in enumerate(cols.items()):
            curve.insert(i, col, v)
        frames.append(curve)
    out = pd.concat(frames, ignore_index=True)
    out["in_distribution"] = out["in_distribution"].astype("boolean")
    return out


PROGRESS_ENV = "DERAIN_PROGRESS_FILE"
"""Environment variable naming a JSON file that sweeps keep current with their progress (the monograph runner
sets it for its kernels and prints one line per model from it: ``01_set_size: trained 37/72 models, ETA 4 min``)."""


class _ProgressFile:
    """The sweep's progress, written to ``$DERAIN_PROGRESS_FILE`` after every model (nothing when it is unset).

    The file holds ``what``, ``done``, ``total``, ``cached`` (models read from the cache), ``elapsed_s`` and
    ``eta_s`` (the remaining models at the rate of the ones trained so far; None before the first).
    """

    def __init__(self, total: int, cached: int, what: str) -> None:
        self.path = os.environ.get(PROGRESS_ENV) or None
        self.total, self.cached, self.done, self.what = total, cached, cached, what
        self.t0 = time.perf_counter()
        self._write()

    def update(self) -> None:
        self.done += 1
        self._write()

    def _write(self) -> None:
        if self.path is None:
            return
        elapsed = time.perf_counter() - self.t0
        trained = self.done - self.cached
        eta = (self.total - self.done) * elapsed / trained if trained > 0 else None
        try:
            store.write_json(Path(self.path), {"what": self.what, "done": self.done, "total": self.total,
                                               "cached": self.cached, "elapsed_s": round(elapsed, 1),
                                               "eta_s": None if eta is None else round(eta, 1)},
                             what="sweep progress")
        except OSError:  # progress is a courtesy: a full disk or a vanished folder must not stop the sweep
            self.path = None


def _run_all(
    configs: Iterable[ExperimentConfig],
    curve_points: int | None,
    *,
    cache_root: str | Path | None,
    data_dir: str | Path | None,
    workers: int,
    executor: str | None,
    progress: bool,
    submitit_kwargs: Mapping[str, Any] | None,
    device: str | torch.device | None,
    threads: int | None,
) -> list[ExperimentResult]:
    """The verified results of ``configs`` (deduplicated by key, in order), running what is missing."""
    from tqdm.auto import tqdm

    configs = list(configs)
    if not configs:
        raise ValueError("configs is empty: nothing to sweep")
    for i, c in enumerate(configs):
        if not isinstance(c, ExperimentConfig):
            raise ValueError(f"configs[{i}] must be an ExperimentConfig, got {type(c).__name__}")
    if not _is_int(workers) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if executor is None:
        executor = "inline" if workers == 1 else "process"
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be 'inline', 'process' or 'submitit', got {executor!r}")
    if threads is not None and (not _is_int(threads) or threads < 1):
        raise ValueError(f"threads must be None or an integer >= 1, got {threads!r}")
    if submitit_kwargs is not None and executor != "submitit":
        raise ValueError(f"submitit_kwargs is only used with executor='submitit', not {executor!r}")

    unique: dict[str, ExperimentConfig] = {}
    for c in configs:
        unique.setdefault(c.key(), c)
    root = store.cache_root(cache_root)

    def cached(c: ExperimentConfig, warn: bool) -> ExperimentResult | None:
        return experiments.load(c, cache_root=root, curve_points=curve_points, warn=warn)

    results: dict[str, ExperimentResult] = {}
    todo: list[ExperimentConfig] = []
    for key, c in unique.items():
        hit = cached(c, warn=False)
        if hit is not None and experiments.data_changed(hit, data_dir=data_dir) is None:
            results[key] = hit
        else:
            todo.append(c)

    desc = "sweep" if curve_points is None else "curves"
    bar = tqdm(total=len(unique), initial=len(results), desc=desc, unit="run", disable=not progress)
    report = _ProgressFile(len(unique), len(results), "trained" if curve_points is None else "trained (curves)")
    failures: list[tuple[ExperimentConfig, BaseException]] = []
    dev = None if device is None else str(device)
    dd = None if data_dir is None else str(data_dir)
    try:
        if executor == "inline":
            threads = 1 if threads is None else threads
            for c in todo:
                bar.set_postfix_str(c.name())
                try:
                    results[c.key()] = experiments.run(c, cache_root=root, data_dir=data_dir, device=device,
                                                       progress=False, threads=threads, curve_points=curve_points)
                except Exception as e:  # noqa: BLE001 - collected; KeyboardInterrupt still stops the sweep
                    failures.append((c, e))
                bar.update()
                report.update()
        elif executor == "process" and todo:
            threads = threads or _worker_threads(workers)
            ctx = multiprocessing.get_context("spawn")
            attempts = dict.fromkeys((c.key() for c in todo), 0)
            pending = list(todo)
            while pending:  # a worker killed outright breaks the pool: its runs go to a fresh pool (resuming)
                broken: list[ExperimentConfig] = []
                with cf.ProcessPoolExecutor(
                    max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(threads,)
                ) as pool:
                    futures = {pool.submit(_job, c.to_dict(), str(root), dd, dev, threads, curve_points): c
                               for c in pending}
                    try:
                        for fut in cf.as_completed(futures):
                            c = futures[fut]
                            try:
                                fut.result()
                            except BrokenProcessPool as e:
                                attempts[c.key()] += 1
                                if attempts[c.key()] < POOL_ATTEMPTS:
                                    broken.append(c)
                                    continue
                                failures.append((c, RuntimeError(
                                    f"its worker process died {attempts[c.key()]} times (killed outright: SIGKILL, "
                                    f"out of memory?; or it could not start: a script that calls sweep() with "
                                    f"workers > 1 needs `if __name__ == '__main__':`); the last: {e}")))
                            except Exception as e:  # noqa: BLE001 - collected and re-raised below
                                failures.append((c, e))
                            bar.set_postfix_str(c.name())
                            bar.update()
                            report.update()
                    except BaseException:
                        for f in futures:
                            f.cancel()
                        raise
                if broken:
                    warnings.warn(f"a sweep worker died; {len(broken)} run(s) it took down with it go to a fresh "
                                  f"pool (they resume from their checkpoints): {', '.join(c.name() for c in broken)}",
                                  RuntimeWarning, stacklevel=3)
                pending = broken
        elif executor == "submitit" and todo:
            failures = _sweep_submitit(todo, root, dd, dev, workers, threads, curve_points, submitit_kwargs or {},
                                       bar)
    finally:
        bar.close()

    failed_keys = {c.key() for c, _ in failures}
    for c in todo:
        if c.key() in results or c.key() in failed_keys:
            continue
        hit = cached(c, warn=True)
        if hit is None:
            entry = experiments.entry_dir(c, cache_root=root, curve_points=curve_points)
            failures.append((c, RuntimeError(f"no valid cache entry after the run: {entry}")))
        else:
            results[c.key()] = hit
    if failures:
        names = ", ".join(f"{c.name()} [{c.key()}]: {type(e).__name__}: {e}" for c, e in failures[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        raise RuntimeError(
            f"{len(failures)} of {len(unique)} runs failed: {names}{more}; finished runs are cached"
        ) from failures[0][1]
    return [results[k] for k in unique]


def _sweep_submitit(
    todo: list[ExperimentConfig],
    root: Path,
    data_dir: str | None,
    device: str | None,
    workers: int,
    threads: int | None,
    curve_points: int | None,
    submitit_kwargs: Mapping[str, Any],
    bar: Any,
) -> list[tuple[ExperimentConfig, BaseException]]:
    try:
        import submitit
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("executor='submitit' needs the submitit package (pip install submitit)") from e
    kw = dict(submitit_kwargs)
    folder = Path(kw.pop("folder", root / "_submitit"))
    cluster = kw.pop("cluster", None)
    ex = submitit.AutoExecutor(folder=folder, cluster=cluster)
    if ex.cluster == "slurm":
        kw.setdefault("slurm_array_parallelism", workers)
    ex.update_parameters(**kw)
    # Local jobs all start at once and share this machine's cores; cluster jobs own theirs.
    if threads is None and ex.cluster in ("local", "debug"):
        threads = _worker_threads(len(todo))
    with _package_on_pythonpath():
        jobs = [(c, ex.submit(_job, c.to_dict(), str(root), data_dir, device, threads, curve_points)) for c in todo]
    failures: list[tuple[ExperimentConfig, BaseException]] = []
    for c, job in jobs:
        try:
            job.result()
        except Exception as e:  # noqa: BLE001 - collected and re-raised by sweep
            failures.append((c, e))
        bar.set_postfix_str(c.name())
        bar.update()
    return failures


def training_fit(
    models: Iterable[ExperimentConfig | ExperimentResult],
    *,
    data_dir: str | Path | None = None,
    cache_root: str | Path | None = None,
    n_tiles: int = FIT_TILES,
) -> pd.DataFrame:
    """How well each model fits its own training data: its training rain removed from its own training tiles.

    The first ``min(N, n_tiles)`` tiles of the model's training set (the tiles it saw) get
    one fresh layer of its training rain (seed ``eval_seed + FIT_SEED_SALT``), and the
    model is scored on them by :func:`derain_utils.measure.scoring.evaluate`. Nothing here
    looks at test images or unseen rain, so a rule built on it (the stall rule of
    :mod:`derain_utils.measure.outcome`) cannot depend on the outcome of a verdict.

    Args:
        models: finished runs, or configs whose verified cache entries exist (never trains).
        data_dir: the folder of real image sets the models were trained from.
        cache_root: the cache of the configs (default :func:`derain_utils.store.cache_root`).
        n_tiles: at most this many training tiles per model.

    Returns:
        One row per model: ``key``, ``name``, ``removal_fit`` and ``bg_psnr_fit`` (means
        over the tiles) and ``n_fit_tiles``.
    """
    if not _is_int(n_tiles) or n_tiles < 1:
        raise ValueError(f"n_tiles must be an int >= 1, got {n_tiles!r}")
    rows, seen = [], set()
    for m in models:
        if isinstance(m, ExperimentResult):
            res = m
        elif isinstance(m, ExperimentConfig):
            res = experiments.load(m, cache_root=cache_root)
            if res is None:
                raise ValueError(f"training_fit: no finished cache entry for {m.name()} (key {m.key()}); "
                                 "run the model first")
        else:
            raise ValueError(f"training_fit takes ExperimentConfigs or ExperimentResults, got {type(m).__name__}")
        cfg = res.config
        if cfg.key() in seen:
            continue
        seen.add(cfg.key())
        tiles = experiments.training_split(cfg, data_dir=data_dir).train_tensor()[:n_tiles]
        inputs = scoring.make_eval_set(tiles, [cfg.train_rain], seed=cfg.eval_seed + FIT_SEED_SALT)
        ev = scoring.evaluate(res.load_model(), inputs, train_spec=cfg.train_rain, ssim=False)
        ev = ev[ev["preset"] != "clean"]
        rows.append({"key": cfg.key(), "name": cfg.name(), "removal_fit": float(np.nanmean(ev["removal"])),
                     "bg_psnr_fit": float(np.nanmean(ev["bg_psnr"])), "n_fit_tiles": int(tiles.shape[0])})
    return pd.DataFrame(rows, columns=["key", "name", "removal_fit", "bg_psnr_fit", "n_fit_tiles"])
