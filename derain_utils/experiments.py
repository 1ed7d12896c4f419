"""Experiments: one trained-and-evaluated deraining model per configuration, cached by a hash.

Every claim of the monograph is a comparison between *trained models*: a model
trained on 4 background tiles against one trained on 1024, a model trained on
faces against one trained on urban scenes, each repeated over seeds. This module
turns "train a model" into a pure function of a frozen :class:`ExperimentConfig`::

    result = run(ExperimentConfig(background="natural", n_train=64, seed=0))
    result.eval        # tidy: one row per test image x rain preset (+ "clean" rows)
    result.history     # training loss curve
    model = result.load_model()

and :func:`sweep` runs a list of configurations and returns ONE tidy table (one row
per config x test image x preset, with the config columns attached), ready for
``seaborn`` and for the verdict statistics.

Cache
-----
A finished run lives in ``<cache_root>/<config.key()>/``:

``config.json``      the configuration, its name and key (and the expanded rain specs)
``model.pt``         ``{"state_dict", "arch", "kwargs", "in_channels", "key", "cache_version"}``
``history.csv``      the training curve (step, loss, lr, elapsed_s)
``eval.csv``         the evaluation table, with config columns added
``provenance.json``  git commit, package versions, device, wall time, data fingerprint
``manifest.json``    sha256 of every file above; written LAST, it marks the entry complete

The key is the first 16 hex digits of the sha256 of a canonical JSON of every
config field, with the rain presets *expanded* to their :class:`~derain_utils.rain.RainSpec`
values and the model size resolved to its keyword arguments, plus
:data:`CACHE_VERSION`. So editing a preset, a model size, or any field gives a new
key and a new run; bump :data:`CACHE_VERSION` when the training or evaluation code
changes in a way that invalidates old results. The key does NOT cover the content
of an image folder (it is computed before any data is read, so cached results load
without the data); ``provenance.json`` records a fingerprint of the images used
(ids and a sha256 of the pixels) so a changed folder is detectable.

An entry is reused only when its manifest exists, every listed file is present with
a matching checksum, ``config.json`` equals the config, and ``model.pt`` loads into
the architecture. Anything else (missing or corrupt file, unreadable checkpoint, an
entry without a manifest) raises a :class:`CacheWarning` and the run is recomputed:
the cache never silently reuses a doubtful result. While training, checkpoints go
to ``<entry>/ckpt/`` (every ``ckpt_every`` steps), so an interrupted run *resumes*
when rerun; the checkpoints are deleted once the entry is complete.

Concurrency: files are written atomically (temporary file + ``os.replace``), and a
lock file ``<entry>/.lock`` (created with ``O_EXCL``) keeps two processes from
training the same entry; the holder refreshes it while training, and a lock whose
holder has died (same host, pid gone) or that has not been refreshed for
:data:`LOCK_STALE_S` seconds is broken.

Sweeps
------
:func:`sweep` skips verified entries, runs the rest, and reads every result back
from the cache, so the table is the same whoever computed it. Executors:
``"inline"`` (this process), ``"process"`` (a ``spawn`` process pool, each worker
with ``cpu_count // workers`` torch threads) and ``"submitit"`` (slurm, or local
processes). Duplicate configs run once; an interrupted sweep reruns only what is
missing. On a small CPU, give each run ONE torch thread per core it really has:
oversubscribed intra-op threads made a 2-core machine 5-10x slower in our tests.

Names
-----
:meth:`ExperimentConfig.name` is the house vocabulary for a model named by what made
it, ``<arch>_bg-<background>_n<n_train>_rain-<train_rain>[_gray]_s<seed>``, e.g.
``resnet_bg-natural_n64_rain-small_s0``. A name is for reading, not identity: two
configs that differ only in, say, ``steps`` share a name; the key is the identity.
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import math
import multiprocessing
import numbers
import os
import platform
import re
import shutil
import socket
import subprocess
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from derain_utils import backgrounds, models, rain, training

__all__ = [
    "CACHE_VERSION",
    "CONFIG_COLUMNS",
    "LOCK_STALE_S",
    "CacheWarning",
    "ExperimentConfig",
    "ExperimentResult",
    "cache_root",
    "load",
    "run",
    "sweep",
]

log = logging.getLogger(__name__)

#: Bump when training/evaluation code changes so that old cache entries must not be reused.
CACHE_VERSION = 1

#: Columns added to every evaluation row (in this order, before the metric columns).
CONFIG_COLUMNS: tuple[str, ...] = (
    "key",
    "name",
    "arch",
    "model_size",
    "background",
    "n_train",
    "gray",
    "train_rain",
    "steps",
    "patch",
    "seed",
    "eval_background",
)

#: A lock not refreshed for this many seconds is considered abandoned (s).
LOCK_STALE_S = 600.0
#: The lock holder refreshes the lock at most this often while training (s).
_LOCK_HEARTBEAT_S = 20.0

_REPO = Path(__file__).resolve().parents[1]
_FILES = ("config.json", "model.pt", "history.csv", "eval.csv", "provenance.json")
_MANIFEST = "manifest.json"
_LOCK = ".lock"
_CKPT = "ckpt"


class CacheWarning(UserWarning):
    """A cache entry exists but cannot be trusted (incomplete or corrupt); it is recomputed."""


# --------------------------------------------------------------------------- config


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _freeze(value: Any, where: str) -> Any:
    """Make a model-kwarg value hashable and JSON-stable: lists -> tuples, numpy -> python."""
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v, where) for v in value)
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"model_kwargs[{where!r}] must be finite, got {value!r}")
        return value
    raise ValueError(
        f"model_kwargs[{where!r}] must be a JSON-like scalar or a list/tuple of them, got {type(value).__name__}"
    )


def _normalise_kwargs(value: Any) -> tuple[tuple[str, Any], ...]:
    if value is None:
        return ()
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, (list, tuple)):
        items = []
        for pair in value:
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise ValueError(f"model_kwargs must be a dict or (name, value) pairs, got the entry {pair!r}")
            items.append((pair[0], pair[1]))
    else:
        raise ValueError(f"model_kwargs must be a dict or (name, value) pairs, got {type(value).__name__}")
    names = [k for k, _ in items]
    for k in names:
        if not isinstance(k, str) or not k:
            raise ValueError(f"model_kwargs names must be non-empty strings, got {k!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"model_kwargs has a repeated name: {sorted(names)}")
    return tuple(sorted((k, _freeze(v, k)) for k, v in items))


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that makes one trained-and-evaluated model (hashable, JSON round-trippable).

    Model
        arch: ``models.MODEL_SIZES`` architecture (``"resnet"``, ``"unet"``, ``"swinir"``).
        model_size: named size of ``arch`` (``"tiny"``, ``"quick"``, ``"paper"``).
        model_kwargs: overrides of single size entries, e.g. ``{"depth": 3}``; a dict is
            accepted and stored as a sorted tuple of ``(name, value)`` pairs.
    Training data
        background: a ``backgrounds.get_source`` name (``"skimage"``, a LADDER name,
            a category such as ``"natural"``, or a folder path).
        n_train: number of training tiles (the set size of notebook 01).
        tile: training tile side (px); ``patch <= tile``.
        gray: train and evaluate on luma (1 channel) instead of RGB.
        train_rain: the ``rain.PRESETS`` name of the training rain.
    Optimisation
        steps, batch_size, patch (crop side, px), lr (Adam, cosine decay), warmup_steps
        (linear learning-rate warm-up before the cosine decay; < steps), seed (model
        init, training tiles, crops and rain), ckpt_every (steps between checkpoints).
        precision: ``"fp32"`` or ``"bf16"`` (``training.PRECISIONS``), the precision of
            the training steps. ``"auto"`` (the default) is resolved when the config is
            made (``training.resolve_precision``: ``$DERAIN_PRECISION``, else bf16 where
            the default device has native bfloat16), so a config, its key and its
            cached model always name the precision that trained it.
    Evaluation
        eval_presets: rain presets to evaluate on (non-empty, distinct).
        eval_background: source of the test images; None = held-out test images of
            ``background``.
        n_test, test_size (px), eval_seed (seed of the test rain). The test images and
            their rain are the same for every seed and set size, so comparisons are paired.
    """

    arch: str = "resnet"
    model_size: str = "quick"
    model_kwargs: tuple[tuple[str, Any], ...] = ()
    background: str = "skimage"
    n_train: int = 16
    tile: int = 64
    gray: bool = False
    train_rain: str = "small"
    steps: int = 800
    batch_size: int = 16
    patch: int = 48
    lr: float = 1e-3
    warmup_steps: int = 0
    seed: int = 0
    eval_presets: tuple[str, ...] = ("small", "slanted", "long_wide", "dense")
    eval_background: str | None = None
    n_test: int = 8
    test_size: int = 64
    eval_seed: int = 1234
    ckpt_every: int = 200
    precision: str = "auto"

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        if self.arch not in models.MODEL_SIZES:
            raise ValueError(f"arch: unknown architecture {self.arch!r}; valid: {', '.join(models.MODEL_SIZES)}")
        sizes = models.MODEL_SIZES[self.arch]
        if self.model_size not in sizes:
            raise ValueError(
                f"model_size: unknown size {self.model_size!r} for arch {self.arch!r}; valid: {', '.join(sizes)}"
            )
        set_("model_kwargs", _normalise_kwargs(self.model_kwargs))
        for name in ("background", "train_rain"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v.strip():
                raise ValueError(f"{name} must be a non-empty string, got {v!r}")
        if self.eval_background is not None and (
            not isinstance(self.eval_background, str) or not self.eval_background.strip()
        ):
            raise ValueError(f"eval_background must be None or a non-empty string, got {self.eval_background!r}")
        if self.train_rain not in rain.PRESETS:
            raise ValueError(f"train_rain: unknown rain preset {self.train_rain!r}; valid: {', '.join(rain.PRESETS)}")
        presets = self.eval_presets
        if isinstance(presets, str):
            presets = (presets,)
        if not isinstance(presets, (list, tuple)) or not presets:
            raise ValueError(f"eval_presets must be a non-empty tuple of rain preset names, got {self.eval_presets!r}")
        presets = tuple(presets)
        for p in presets:
            if p not in rain.PRESETS:
                raise ValueError(f"eval_presets: unknown rain preset {p!r}; valid: {', '.join(rain.PRESETS)}")
        if len(set(presets)) != len(presets):
            raise ValueError(f"eval_presets has a repeated preset: {presets}")
        set_("eval_presets", presets)
        minimum = {
            "n_train": 1,
            "tile": 1,
            "steps": 1,
            "batch_size": 1,
            "patch": 1,
            "seed": 0,
            "n_test": 1,
            "test_size": 1,
            "eval_seed": 0,
            "ckpt_every": 1,
            "warmup_steps": 0,
        }
        for name, lo in minimum.items():
            v = getattr(self, name)
            if not _is_int(v) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
            set_(name, int(v))
        if self.warmup_steps >= self.steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must be < steps ({self.steps})")
        if self.patch > self.tile:
            raise ValueError(f"patch ({self.patch} px) must be <= tile ({self.tile} px)")
        if not isinstance(self.gray, (bool, np.bool_)):
            raise ValueError(f"gray must be a bool, got {self.gray!r}")
        set_("gray", bool(self.gray))
        if isinstance(self.lr, bool) or not isinstance(self.lr, numbers.Real) or not (
            math.isfinite(self.lr) and self.lr > 0
        ):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        set_("lr", float(self.lr))
        set_("precision", training.resolve_precision(self.precision))

    # ------------------------------------------------------------------ derived

    @property
    def in_channels(self) -> int:
        """1 for gray, 3 for RGB."""
        return 1 if self.gray else 3

    def resolved_model_kwargs(self) -> dict[str, Any]:
        """The constructor kwargs: ``MODEL_SIZES[arch][model_size]`` updated by ``model_kwargs``."""
        kw = models.model_kwargs(self.arch, self.model_size)
        kw.update(dict(self.model_kwargs))
        return {k: _freeze(v, k) for k, v in sorted(kw.items())}

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict of the fields (``model_kwargs`` as a dict, tuples as lists)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["model_kwargs"] = {k: _jsonable(v) for k, v in self.model_kwargs}
        d["eval_presets"] = list(self.eval_presets)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ExperimentConfig:
        """Inverse of :meth:`to_dict`; unknown keys -> ValueError naming them."""
        if not isinstance(d, Mapping):
            raise ValueError(f"config must be a mapping, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown ExperimentConfig field(s) {unknown}; valid: {sorted(names)}")
        return cls(**dict(d))

    def replace(self, **changes: Any) -> ExperimentConfig:
        """A copy with some fields changed (validated); unknown field -> ValueError naming it."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ValueError(f"unknown ExperimentConfig field(s) {unknown}; valid: {sorted(names)}")
        return dataclasses.replace(self, **changes)

    def canonical(self) -> dict[str, Any]:
        """What the key hashes: every field, expanded rain specs, resolved model kwargs, CACHE_VERSION."""
        return {
            "cache_version": CACHE_VERSION,
            "config": self.to_dict(),
            "train_rain_spec": rain.get_spec(self.train_rain).to_dict(),
            "eval_rain_specs": {p: rain.get_spec(p).to_dict() for p in self.eval_presets},
            "model": {
                "arch": self.arch,
                "in_channels": self.in_channels,
                "kwargs": {k: _jsonable(v) for k, v in self.resolved_model_kwargs().items()},
            },
        }

    def key(self) -> str:
        """First 16 hex digits of sha256(canonical JSON): the cache identity of this config."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def name(self) -> str:
        """Readable model name ``<arch>_bg-<background>_n<N>_rain-<preset>[_gray]_s<seed>`` (not unique)."""
        bg = self.background
        if os.sep in bg or "/" in bg:  # a folder path: its last component
            bg = Path(bg.rstrip("/" + os.sep)).name or bg
        bg = re.sub(r"[^A-Za-z0-9.\-]+", "-", bg).strip("-") or "bg"
        gray = "_gray" if self.gray else ""
        return f"{self.arch}_bg-{bg}_n{self.n_train}_rain-{self.train_rain}{gray}_s{self.seed}"


def _jsonable(v: Any) -> Any:
    return [_jsonable(x) for x in v] if isinstance(v, tuple) else v


# --------------------------------------------------------------------------- cache paths


def cache_root(root: str | Path | None = None) -> Path:
    """The cache folder: explicit ``root`` > ``$DERAIN_RUNS/cache`` > ``<repo>/runs/cache``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("DERAIN_RUNS")
    if env:
        return Path(env).expanduser() / "cache"
    return _REPO / "runs" / "cache"


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _atomic_write_json(path: Path, obj: Any) -> None:
    _atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8"))


# --------------------------------------------------------------------------- lock


class _EntryLock:
    """An exclusive lock file (``O_CREAT | O_EXCL``) with a heartbeat and stale detection."""

    def __init__(self, path: Path, stale_after: float = LOCK_STALE_S) -> None:
        self.path = path
        self.stale_after = stale_after
        self.held = False
        self._last_beat = 0.0

    def try_acquire(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if self._is_stale():
                self._break()
                return self.try_acquire()
            return False
        with os.fdopen(fd, "w") as f:
            json.dump({"pid": os.getpid(), "host": socket.gethostname(), "time": time.time()}, f)
        self.held = True
        self._last_beat = time.monotonic()
        return True

    def _is_stale(self) -> bool:
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return False  # released meanwhile: the next O_EXCL attempt decides
        try:
            info = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            info = {}  # being written, or garbage: only its age can make it stale
        if age > self.stale_after:
            return True
        pid, host = info.get("pid"), info.get("host")
        if host == socket.gethostname() and isinstance(pid, int) and pid != os.getpid():
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
        return False

    def _break(self) -> None:
        # Best effort: rename first (atomic, only one breaker wins), then delete.
        grave = self.path.with_name(f"{self.path.name}.stale.{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            os.rename(self.path, grave)
            warnings.warn(f"broke a stale cache lock {self.path}", CacheWarning, stacklevel=4)
            grave.unlink(missing_ok=True)

    def heartbeat(self) -> None:
        now = time.monotonic()
        if self.held and now - self._last_beat >= _LOCK_HEARTBEAT_S:
            with contextlib.suppress(OSError):
                os.utime(self.path)
            self._last_beat = now

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


# --------------------------------------------------------------------------- result


@dataclass
class ExperimentResult:
    """A finished run, as read back from its cache entry.

    Attributes: config; dir (the cache entry); eval (tidy table, one row per test
    image x preset plus "clean" rows, config columns first); history (training
    curve); provenance (dict); cached (True when no training happened in this call).
    """

    config: ExperimentConfig
    dir: Path
    eval: pd.DataFrame
    history: pd.DataFrame
    provenance: dict
    cached: bool

    @property
    def key(self) -> str:
        return self.config.key()

    @property
    def name(self) -> str:
        return self.config.name()

    def load_model(self, device: str | torch.device = "cpu") -> nn.Module:
        """Rebuild the trained model from ``model.pt`` on ``device``, in eval mode."""
        return _load_model(self.dir / "model.pt", device=device)


def _load_model(path: Path, device: str | torch.device = "cpu", expect: ExperimentConfig | None = None) -> nn.Module:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"model checkpoint not found: {path}") from None
    except Exception as e:  # torch raises several types for a damaged file
        raise ValueError(f"model checkpoint {path} cannot be read: {e}") from e
    missing = [k for k in ("state_dict", "arch", "kwargs", "in_channels") if k not in blob]
    if missing:
        raise ValueError(f"model checkpoint {path} lacks the entries {missing}")
    if expect is not None and (
        blob["arch"] != expect.arch
        or blob["in_channels"] != expect.in_channels
        or {k: _freeze(v, k) for k, v in blob["kwargs"].items()} != expect.resolved_model_kwargs()
    ):
        raise ValueError(f"model checkpoint {path} describes another architecture than the config")
    model = models.build_model(blob["arch"], in_channels=blob["in_channels"], **blob["kwargs"])
    model.load_state_dict(blob["state_dict"], strict=True)
    return model.to(device).eval()


def _read_csv(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path)
    if "in_distribution" in df.columns:  # True/False, empty on the "clean" rows
        df["in_distribution"] = df["in_distribution"].astype("boolean")
    return df


def _verify_entry(entry: Path, config: ExperimentConfig) -> str | None:
    """None when the entry is complete and trustworthy, else the reason it is not."""
    manifest_path = entry / _MANIFEST
    if not manifest_path.is_file():
        present = [f for f in _FILES if (entry / f).exists()]
        return f"incomplete (no {_MANIFEST}; present: {present or 'nothing'})"
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
        if not isinstance(files, dict):
            raise TypeError("files is not a mapping")
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"{_MANIFEST} is unreadable ({e})"
    for name in _FILES:
        if name not in files:
            return f"{_MANIFEST} does not list {name}"
    for name, digest in files.items():
        path = entry / name
        if not path.is_file():
            return f"{name} is missing"
        if _sha256_file(path) != digest:
            return f"{name} does not match its checksum"
    try:
        stored = json.loads((entry / "config.json").read_text())
        if stored.get("key") != config.key() or ExperimentConfig.from_dict(stored["config"]) != config:
            return "config.json describes another configuration"
    except Exception as e:  # noqa: BLE001 - any failure means "not this config"
        return f"config.json is unreadable ({e})"
    try:
        _load_model(entry / "model.pt", expect=config)
    except Exception as e:  # noqa: BLE001
        return f"model.pt does not load ({e})"
    return None


def _read_entry(entry: Path, config: ExperimentConfig, cached: bool) -> ExperimentResult:
    return ExperimentResult(
        config=config,
        dir=entry,
        eval=_read_csv(entry / "eval.csv"),
        history=_read_csv(entry / "history.csv"),
        provenance=json.loads((entry / "provenance.json").read_text()),
        cached=cached,
    )


def _try_cached(entry: Path, config: ExperimentConfig, *, warn: bool) -> ExperimentResult | None:
    """The cached result if the entry verifies; else None (with a CacheWarning when the entry exists)."""
    if not entry.is_dir():
        return None
    reason = _verify_entry(entry, config)
    if reason is None:
        try:
            return _read_entry(entry, config, cached=True)
        except Exception as e:  # noqa: BLE001 - a file that checksums but does not parse
            reason = f"a file does not parse ({e})"
    if warn and _entry_has_content(entry):
        resume = " (will resume from its checkpoint)" if _has_ckpt(entry) else ""
        warnings.warn(f"cache entry {entry} is not usable: {reason}; recomputing{resume}", CacheWarning, stacklevel=3)
    return None


def _has_ckpt(entry: Path) -> bool:
    ck = entry / _CKPT
    return ck.is_dir() and any(ck.iterdir())


def _entry_has_content(entry: Path) -> bool:
    return any(p.name != _LOCK and not p.name.startswith(f"{_LOCK}.") for p in entry.iterdir())


def _clear_entry(entry: Path, *, keep_ckpt: bool) -> None:
    """Delete the result files (and the checkpoints unless ``keep_ckpt``); the lock stays."""
    for p in entry.iterdir():
        if p.name == _LOCK:
            continue
        if p.name == _CKPT and keep_ckpt:
            continue
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)


# --------------------------------------------------------------------------- provenance


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(_REPO), *args], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    import derain_utils

    out = {"python": platform.python_version(), "derain_utils": derain_utils.__version__}
    for pkg in ("torch", "numpy", "pandas", "scipy", "scikit-image"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "absent"
    return out


def _provenance(**extra: Any) -> dict[str, Any]:
    """Where a result came from: git commit (+ dirty flag), versions, platform, and ``extra``.

    Kept here (not in ``verdict``) because ``verdict`` sits above ``experiments`` in the
    import order.
    """
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_commit": commit,
        "git_dirty": None if status is None else bool(status),
        "versions": _versions(),
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        **extra,
    }


def _fingerprint(split: backgrounds.BackgroundSplit, test: backgrounds.BackgroundSplit) -> dict[str, Any]:
    """sha256 of the training/test image ids + sources, and of their pixels."""
    ids = {
        "train_source": split.source,
        "train_ids": list(split.train_ids),
        "test_source": test.source,
        "test_ids": list(test.test_ids),
    }
    text = json.dumps(ids, sort_keys=True)
    return {
        "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "train_pixels_sha256": hashlib.sha256(np.ascontiguousarray(split.train).tobytes()).hexdigest(),
        "test_pixels_sha256": hashlib.sha256(np.ascontiguousarray(test.test).tobytes()).hexdigest(),
        "train_source": split.source,
        "test_source": test.source,
        "n_train": len(split.train_ids),
        "test_ids": list(test.test_ids),
    }


# --------------------------------------------------------------------------- run


def _draw_data(
    config: ExperimentConfig, data_dir: str | Path | None
) -> tuple[backgrounds.BackgroundSplit, backgrounds.BackgroundSplit]:
    """(training split, split whose ``.test`` holds the test images)."""
    common = {"tile": config.tile, "test_size": config.test_size, "gray": config.gray, "data_dir": data_dir}
    split = backgrounds.draw_split(config.background, config.n_train, config.n_test, seed=config.seed, **common)
    if config.eval_background is None or config.eval_background == config.background:
        return split, split
    # Test crops are seed-independent (fixed image-level split / fixed procedural test stream).
    test = backgrounds.draw_split(config.eval_background, 0, config.n_test, seed=config.seed, **common)
    return split, test


def run(
    config: ExperimentConfig,
    *,
    cache_root: str | Path | None = None,
    data_dir: str | Path | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    force: bool = False,
    threads: int | None = None,
    callback: Callable[[int, float], Any] | None = None,
    lock_timeout: float | None = None,
) -> ExperimentResult:
    """Train and evaluate ``config``, or return its verified cached result.

    Args:
        config: the experiment.
        cache_root: cache folder (see :func:`cache_root`).
        data_dir: folder of named image sets (else ``$DERAIN_DATA``).
        device: training/evaluation device (``training.select_device``).
        progress: show the training progress bar.
        force: discard any existing entry (including checkpoints) and retrain.
        threads: torch CPU threads for training (passed to ``training.train``).
        callback: extra ``callback(step, loss)`` passed on to ``training.train``.
        lock_timeout: seconds to wait for another process training the same entry
            (None = wait as long as its lock is alive); TimeoutError after that.

    Returns:
        ExperimentResult; ``cached`` is True when nothing was trained in this call.
    """
    if not isinstance(config, ExperimentConfig):
        raise ValueError(f"config must be an ExperimentConfig, got {type(config).__name__}")
    entry = _globals_cache_root(cache_root) / config.key()
    if not force:
        hit = _try_cached(entry, config, warn=False)
        if hit is not None:
            return hit
    entry.mkdir(parents=True, exist_ok=True)
    lock = _EntryLock(entry / _LOCK)
    t_wait, waited = time.monotonic(), False
    while not lock.try_acquire():
        # Someone else is computing this entry: wait, then use their result.
        hit = None if force else _try_cached(entry, config, warn=False)
        if hit is not None:
            return hit
        if not waited:
            log.info("cache entry %s is being computed by another process; waiting", entry)
            waited = True
        if lock_timeout is not None and time.monotonic() - t_wait > lock_timeout:
            raise TimeoutError(f"cache entry {entry} stayed locked by another process for {lock_timeout} s")
        time.sleep(0.5)
    try:
        if force:
            _clear_entry(entry, keep_ckpt=False)
        else:
            hit = _try_cached(entry, config, warn=True)
            if hit is not None:
                return hit
            # Not usable. An entry that never completed keeps its checkpoints (resume);
            # one that completed and then got damaged is retrained from scratch.
            _clear_entry(entry, keep_ckpt=not (entry / _MANIFEST).exists())
        _compute(config, entry, data_dir=data_dir, device=device, progress=progress, threads=threads,
                 callback=callback, lock=lock)
        return _read_entry(entry, config, cached=False)
    finally:
        lock.release()


def load(config: ExperimentConfig, *, cache_root: str | Path | None = None) -> ExperimentResult | None:
    """The verified cached result of ``config``, or None when there is none; never trains.

    An entry that exists but does not verify (see the module docstring) gives a
    :class:`CacheWarning` and None, as a missing one does.
    """
    if not isinstance(config, ExperimentConfig):
        raise ValueError(f"config must be an ExperimentConfig, got {type(config).__name__}")
    return _try_cached(_globals_cache_root(cache_root) / config.key(), config, warn=True)


def _globals_cache_root(root: str | Path | None) -> Path:
    return cache_root(root)  # the module function (run's argument shadows its name)


def _compute(
    config: ExperimentConfig,
    entry: Path,
    *,
    data_dir: str | Path | None,
    device: str | torch.device | None,
    progress: bool,
    threads: int | None,
    callback: Callable[[int, float], Any] | None,
    lock: _EntryLock,
) -> None:
    t0 = time.perf_counter()
    dev = training.select_device(device)
    split, test = _draw_data(config, data_dir)
    test_source = test.source

    def beat(step: int, loss: float) -> None:
        lock.heartbeat()
        if callback is not None:
            callback(step, loss)

    def train_once() -> training.TrainResult:
        torch.manual_seed(config.seed)  # the model initialisation is part of the seeded experiment
        try:
            model = models.build_model(config.arch, in_channels=config.in_channels, **config.resolved_model_kwargs())
        except (TypeError, ValueError) as e:
            raise ValueError(f"model_kwargs {dict(config.model_kwargs)} do not build a {config.arch!r}: {e}") from e
        return training.train(
            model,
            split.train_tensor(),
            config.train_rain,
            steps=config.steps,
            batch_size=config.batch_size,
            patch=config.patch,
            lr=config.lr,
            warmup_steps=config.warmup_steps,
            seed=config.seed,
            device=dev,
            ckpt_dir=entry / _CKPT,
            ckpt_every=config.ckpt_every,
            progress=progress,
            precision=config.precision,
            threads=threads,
            callback=beat,
        )

    try:
        res = train_once()
    except training.CheckpointError as e:  # unreadable, or written by another configuration
        warnings.warn(
            f"training checkpoint in {entry / _CKPT} cannot be resumed ({e}); training from scratch",
            CacheWarning,
            stacklevel=3,
        )
        shutil.rmtree(entry / _CKPT, ignore_errors=True)
        res = train_once()
    lock.heartbeat()
    trained = res.model
    table = training.evaluate(
        trained,
        test.test_tensor(),
        list(config.eval_presets),
        seed=config.eval_seed,
        device=dev,
        train_spec=config.train_rain,
        names=list(test.test_ids),
    )
    cols = {
        "key": config.key(),
        "name": config.name(),
        "arch": config.arch,
        "model_size": config.model_size,
        "background": config.background,
        "n_train": config.n_train,
        "gray": config.gray,
        "train_rain": config.train_rain,
        "steps": config.steps,
        "patch": config.patch,
        "seed": config.seed,
        "eval_background": config.eval_background or config.background,
    }
    table = table.drop(columns=[c for c in cols if c in table.columns])
    for i, (c, v) in enumerate(cols.items()):
        table.insert(i, c, v)

    # ---- write, manifest last
    _atomic_write_json(
        entry / "config.json",
        {"key": config.key(), "name": config.name(), "config": config.to_dict(), "canonical": config.canonical()},
    )
    buf = io.BytesIO()
    torch.save(
        {
            "state_dict": {k: v.detach().cpu() for k, v in trained.state_dict().items()},
            "arch": config.arch,
            "kwargs": {k: _jsonable(v) for k, v in config.resolved_model_kwargs().items()},
            "in_channels": config.in_channels,
            "key": config.key(),
            "cache_version": CACHE_VERSION,
        },
        buf,
    )
    _atomic_write_bytes(entry / "model.pt", buf.getvalue())
    _atomic_write_bytes(entry / "history.csv", res.history.to_csv(index=False).encode("utf-8"))
    _atomic_write_bytes(entry / "eval.csv", table.to_csv(index=False).encode("utf-8"))
    _atomic_write_json(
        entry / "provenance.json",
        _provenance(
            key=config.key(),
            name=config.name(),
            device=str(res.device),
            wall_s=round(time.perf_counter() - t0, 3),
            train_wall_s=round(float(res.wall_s), 3),
            precision=res.precision,
            memory_format=res.memory_format,
            cpu_bf16=training.cpu_bf16_support()[1],
            resumed_from=res.resumed_from,
            data=_fingerprint(split, test),
            eval_background=test_source,
        ),
    )
    _atomic_write_json(
        entry / _MANIFEST,
        {
            "key": config.key(),
            "cache_version": CACHE_VERSION,
            "files": {name: _sha256_file(entry / name) for name in _FILES},
        },
    )
    shutil.rmtree(entry / _CKPT, ignore_errors=True)  # complete: checkpoints are no longer needed


# --------------------------------------------------------------------------- sweep


def _worker_threads(workers: int) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus // workers)


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def _sweep_job(
    config_dict: dict[str, Any],
    root: str,
    data_dir: str | None,
    device: str | None,
    threads: int | None,
) -> str:
    """Run one config in a worker process/job; the parent reads the result from the cache."""
    if threads is not None:
        torch.set_num_threads(threads)
    config = ExperimentConfig.from_dict(config_dict)
    run(config, cache_root=root, data_dir=data_dir, device=device, progress=False, threads=threads)
    return config.key()


@contextlib.contextmanager
def _package_on_pythonpath() -> Iterator[None]:
    """Make ``derain_utils`` importable by job processes that start a fresh interpreter."""
    old = os.environ.get("PYTHONPATH")
    parts = [str(_REPO)] + ([old] if old else [])
    os.environ["PYTHONPATH"] = os.pathsep.join(parts)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


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
    :func:`training.evaluate`), with :data:`CONFIG_COLUMNS` first, in the order of
    ``configs`` (duplicates, by key, run and appear once). Interrupting a sweep and
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
        threads: torch CPU threads per run. Default: torch's own for ``"inline"``;
            ``cpu_count // workers`` for ``"process"``; ``cpu_count // n_jobs`` for local
            submitit jobs (they all start at once); the node's for cluster jobs.
            Oversubscribed threads are very slow on a busy machine.

    Raises:
        ValueError: empty ``configs``, a non-config entry, bad ``workers``/``executor``.
        RuntimeError: some runs failed in worker processes/jobs (named); the others
            are cached, so a rerun only redoes the failed ones.
    """
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
    if executor not in ("inline", "process", "submitit"):
        raise ValueError(f"executor must be 'inline', 'process' or 'submitit', got {executor!r}")
    if threads is not None and (not _is_int(threads) or threads < 1):
        raise ValueError(f"threads must be None or an integer >= 1, got {threads!r}")
    if submitit_kwargs is not None and executor != "submitit":
        raise ValueError(f"submitit_kwargs is only used with executor='submitit', not {executor!r}")

    unique: dict[str, ExperimentConfig] = {}
    for c in configs:
        unique.setdefault(c.key(), c)
    root = _globals_cache_root(cache_root)
    results: dict[str, ExperimentResult] = {}
    todo: list[ExperimentConfig] = []
    for key, c in unique.items():
        hit = _try_cached(root / key, c, warn=False)
        if hit is not None:
            results[key] = hit
        else:
            todo.append(c)

    bar = tqdm(total=len(unique), initial=len(results), desc="sweep", unit="run", disable=not progress)
    failures: list[tuple[ExperimentConfig, BaseException]] = []
    dev = None if device is None else str(device)
    try:
        if executor == "inline":
            for c in todo:
                bar.set_postfix_str(c.name())
                try:
                    results[c.key()] = run(
                        c, cache_root=root, data_dir=data_dir, device=device, progress=False, threads=threads
                    )
                except Exception as e:  # noqa: BLE001 - collected; KeyboardInterrupt still stops the sweep
                    failures.append((c, e))
                bar.update()
        elif executor == "process" and todo:
            threads = threads or _worker_threads(workers)
            ctx = multiprocessing.get_context("spawn")
            with cf.ProcessPoolExecutor(
                max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(threads,)
            ) as pool:
                futures = {
                    pool.submit(
                        _sweep_job, c.to_dict(), str(root), None if data_dir is None else str(data_dir), dev, threads
                    ): c
                    for c in todo
                }
                try:
                    for fut in cf.as_completed(futures):
                        c = futures[fut]
                        try:
                            fut.result()
                        except Exception as e:  # noqa: BLE001 - collected and re-raised below
                            failures.append((c, e))
                        bar.set_postfix_str(c.name())
                        bar.update()
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
        elif executor == "submitit" and todo:
            failures = _sweep_submitit(todo, root, data_dir, dev, workers, threads, submitit_kwargs or {}, bar)
    finally:
        bar.close()

    failed_keys = {c.key() for c, _ in failures}
    for c in todo:
        if c.key() in results or c.key() in failed_keys:
            continue
        hit = _try_cached(root / c.key(), c, warn=True)
        if hit is None:
            failures.append((c, RuntimeError(f"no valid cache entry after the run: {root / c.key()}")))
        else:
            results[c.key()] = hit
    if failures:
        names = ", ".join(f"{c.name()} [{c.key()}]: {type(e).__name__}: {e}" for c, e in failures[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        raise RuntimeError(
            f"{len(failures)} of {len(unique)} runs failed: {names}{more}; finished runs are cached"
        ) from failures[0][1]
    frames = [results[k].eval for k in unique]
    return pd.concat(frames, ignore_index=True)


def _sweep_submitit(
    todo: list[ExperimentConfig],
    root: Path,
    data_dir: str | Path | None,
    device: str | None,
    workers: int,
    threads: int | None,
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
    dd = None if data_dir is None else str(data_dir)
    with _package_on_pythonpath():
        jobs = [(c, ex.submit(_sweep_job, c.to_dict(), str(root), dd, device, threads)) for c in todo]
    failures: list[tuple[ExperimentConfig, BaseException]] = []
    for c, job in jobs:
        try:
            job.result()
        except Exception as e:  # noqa: BLE001 - collected and re-raised by sweep
            failures.append((c, e))
        bar.set_postfix_str(c.name())
        bar.update()
    return failures
