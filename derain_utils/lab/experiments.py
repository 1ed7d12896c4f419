"""Experiments: one trained-and-evaluated deraining model per configuration, cached by a hash.

Every claim of the monograph is a comparison between *trained models*: a model
trained on 4 background tiles against one trained on 1024, a model trained on
faces against one trained on urban scenes, each repeated over seeds. This module
turns "train a model" into a pure function of a frozen :class:`ExperimentConfig`
(whose sizes come from a profile, :func:`derain_utils.lab.profiles.experiment`)::

    result = run(config)
    result.eval        # tidy: one row per test image x rain preset (+ "clean" rows)
    result.history     # training loss curve
    model = result.load_model()

and :func:`derain_utils.lab.sweeps.sweep` runs many of them into ONE tidy table.

One pipeline
------------
:func:`held_out` builds the test inputs of a config (its held-out test images and their
rain, :func:`derain_utils.measure.scoring.make_eval_set` with ``eval_seed``), and
:func:`derain_utils.measure.scoring.evaluate` scores a model on them: every table of the package
(the evaluation of a run, its learning curve, the model explorer of
:mod:`derain_utils.book.widgets`) comes from these two, so they agree by construction.

A run can also score its model *while it trains* (``run(config, curve_points=P)``): at
step 0 (the untrained network, close to the identity) and at :func:`curve_steps` = ``P``
evenly spaced steps, the last one the final step. The scoring happens in the training
callback, uses no random numbers and restores the train mode, so it changes nothing about
training: the model is bitwise the one of ``run(config)`` on the CPU. The curve (one row
per evaluated step x test image x preset, :data:`CURVE_COLUMNS`) is what
:mod:`derain_utils.measure.dynamics` reads.

Cache
-----
A finished run lives in ``<cache_root>/<config.key()>/`` (a run with a learning curve in
``<cache_root>/_curves/<curve_key(config, P)>/``; ``cache_root`` is
:func:`derain_utils.store.cache_root`):

``config.json``      the configuration, its name and key (and the expanded rain specs)
``model.pt``         ``{"state_dict", "arch", "kwargs", "in_channels", "key", "cache_version"}``
``history.csv``      the training curve (step, loss, lr, elapsed_s)
``eval.csv``         the evaluation table, with config columns added
``curve.csv``        (curve runs only) the scores during training
``provenance.json``  git commit, package versions, device, wall time, data fingerprint
``manifest.json``    sha256 of every file above; written LAST, it marks the entry complete

The key is the first 16 hex digits of the sha256 of a canonical JSON of every
config field, with the rain presets *expanded* to their :class:`~derain_utils.synth.rain.RainSpec`
values and the model size resolved to its keyword arguments, plus
:data:`CACHE_VERSION` (a curve key adds ``P`` and :data:`CURVE_VERSION`). So editing a
preset, a model size, or any field gives a new key and a new run; bump
:data:`CACHE_VERSION` when the training or evaluation code changes in a way that
invalidates old results. The key does NOT cover the content of an image folder (it is
computed before any data is read, so cached results load without the data);
``provenance.json`` records a fingerprint of the images used (ids and a sha256 of the
pixels), and :func:`run` and the sweeps compare it with the images a category or folder holds
now (:func:`data_changed`): an entry whose images changed is retrained, with a CacheWarning.

An entry is reused only when its manifest exists, every listed file is present with
a matching checksum, ``config.json`` equals the config, and ``model.pt`` loads into
the architecture. Anything else (missing or corrupt file, unreadable checkpoint, an
entry without a manifest) raises a :class:`CacheWarning` and the run is recomputed:
the cache never silently reuses a doubtful result. :func:`load_entry` opens an entry
folder by its path (the report card's way in) and raises :class:`CacheError`, naming the
folder and the reason, instead. While training, checkpoints go to ``<entry>/ckpt/``
(every ``ckpt_every`` steps), so an interrupted run *resumes* when rerun; the checkpoints
are deleted once the entry is complete. A curve run keeps no checkpoints (its scores
before the interruption would be lost): it restarts.

Files are written atomically and an entry is locked while it is computed
(:class:`derain_utils.store.EntryLock`): a second process asking for the same entry waits,
saying for what and whom, and then reads the result.

Names
-----
:meth:`ExperimentConfig.name` is the house vocabulary for a model named by what made
it, ``<arch>_bg-<background>_n<n_train>_rain-<train_rain>[_gray][_pred-bg]_s<seed>``, e.g.
``resnet_bg-natural_n64_rain-small_s0``. A name is for reading, not identity: two
configs that differ only in, say, ``steps`` share a name; the key is the identity.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import numbers
import os
import re
import shutil
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from derain_utils import store
from derain_utils.measure import scoring
from derain_utils.nets import models, training
from derain_utils.synth import backgrounds, rain

__all__ = [
    "CACHE_VERSION",
    "CURVE_VERSION",
    "CURVES_DIR",
    "CONFIG_COLUMNS",
    "CURVE_COLUMNS",
    "CacheWarning",
    "CacheError",
    "ExperimentConfig",
    "ExperimentResult",
    "HeldOut",
    "held_out",
    "training_split",
    "curve_steps",
    "curve_key",
    "entry_dir",
    "config_columns",
    "run",
    "load",
    "data_changed",
    "entry_config",
    "load_entry",
]

#: Bump when training/evaluation code changes so that old cache entries must not be reused.
CACHE_VERSION = 1
#: Bump when the scoring during training or the curve format changes (curve entries only).
CURVE_VERSION = 1
#: Folder under the cache root that holds the runs with a learning curve.
CURVES_DIR = "_curves"

#: Columns added to every evaluation row (in this order, before the metric columns).
CONFIG_COLUMNS: tuple[str, ...] = (
    "key",
    "name",
    "arch",
    "model_size",
    "predict",
    "precision",
    "background",
    "n_train",
    "gray",
    "train_rain",
    "steps",
    "patch",
    "seed",
    "eval_background",
)
#: Columns of a learning curve (``curve.csv``): the step, then the scores of :func:`scoring.evaluate`.
CURVE_COLUMNS: tuple[str, ...] = (
    "step", "image", "preset", "in_distribution", "psnr", "rain_psnr", "bg_psnr", "removal", "mask_fraction",
)

_FILES = ("config.json", "model.pt", "history.csv", "eval.csv", "provenance.json")
_CURVE_FILE = "curve.csv"
_CKPT = "ckpt"


class CacheWarning(UserWarning):
    """A cache entry exists but cannot be trusted (incomplete or corrupt); it is recomputed."""


class CacheError(ValueError):
    """A cache entry opened by its path cannot be trusted or read; the message names the folder and why."""


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


@dataclass(frozen=True, kw_only=True)
class ExperimentConfig:
    """Everything that makes one trained-and-evaluated model (hashable, JSON round-trippable).

    The *sizes* (``model_size``, ``n_train``, ``tile``, ``steps``, ``batch_size``, ``patch``,
    ``lr``, ``warmup_steps``, ``n_test``, ``test_size``, ``ckpt_every``) have no defaults: they
    come from a profile, the one place that sizes experiments
    (``profiles.experiment("quick", background="natural", n_train=64)``). The other fields
    default to the monograph's design: a ResNet, the embedded photos, the training rain
    ``small`` and its out-of-distribution test presets, seed 0, evaluation seed 1234.
    Fields are keyword-only.

    Model
        arch: ``models.MODEL_SIZES`` architecture (``"resnet"``, ``"unet"``, ``"swinir"``).
        model_size: named size of ``arch`` (``"tiny"``, ``"quick"``, ``"paper"``).
        model_kwargs: overrides of single size entries, e.g. ``{"depth": 3}``; a dict is
            accepted and stored as a sorted tuple of ``(name, value)`` pairs.
        predict: what the network's body outputs, ``"rain"`` (``derained = rainy - f``, the
            default) or ``"background"`` (``derained = f``); see ``models.PREDICT``.
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
    model_size: str
    model_kwargs: tuple[tuple[str, Any], ...] = ()
    predict: str = "rain"
    background: str = "skimage"
    n_train: int
    tile: int
    gray: bool = False
    train_rain: str = rain.TRAIN_PRESET
    steps: int
    batch_size: int
    patch: int
    lr: float
    warmup_steps: int
    seed: int = 0
    eval_presets: tuple[str, ...] = (rain.TRAIN_PRESET, *rain.OOD_PRESETS)
    eval_background: str | None = None
    n_test: int
    test_size: int
    eval_seed: int = 1234
    ckpt_every: int
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
        if self.predict not in models.PREDICT:
            raise ValueError(f"predict must be one of {models.PREDICT}, got {self.predict!r}")
        if "predict" in dict(self.model_kwargs):
            raise ValueError("model_kwargs: 'predict' is a config field of its own; use predict=... instead")
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
        kw["predict"] = self.predict
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
        """Readable name ``<arch>_bg-<background>_n<N>_rain-<preset>[_gray][_pred-bg]_s<seed>`` (not unique)."""
        bg = self.background
        if os.sep in bg or "/" in bg:  # a folder path: its last component
            bg = Path(bg.rstrip("/" + os.sep)).name or bg
        bg = re.sub(r"[^A-Za-z0-9.\-]+", "-", bg).strip("-") or "bg"
        gray = "_gray" if self.gray else ""
        pred = "_pred-bg" if self.predict == "background" else ""
        return f"{self.arch}_bg-{bg}_n{self.n_train}_rain-{self.train_rain}{gray}{pred}_s{self.seed}"


def _jsonable(v: Any) -> Any:
    return [_jsonable(x) for x in v] if isinstance(v, tuple) else v


# --------------------------------------------------------------------------- identity of curve runs


def curve_steps(steps: int, points: int) -> list[int]:
    """The training steps at which a curve run scores its model (besides step 0).

    ``points`` evenly spaced steps ``round(k * steps / points)`` for k = 1..points:
    distinct, ascending, the last one ``steps``. E.g. ``curve_steps(500, 5)`` is
    ``[100, 200, 300, 400, 500]``.

    Raises:
        ValueError: ``steps`` or ``points`` not a positive integer, or ``points > steps``.
    """
    for name, v in (("steps", steps), ("points", points)):
        if not _is_int(v) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    if points > steps:
        raise ValueError(f"points ({points}) must be <= steps ({steps}): one evaluation per step at most")
    return [int(round(k * steps / points)) for k in range(1, points + 1)]


def curve_key(config: ExperimentConfig, points: int) -> str:
    """First 16 hex digits of the sha256 of a curve run's identity (config, ``points``, CURVE_VERSION)."""
    if not isinstance(config, ExperimentConfig):
        raise ValueError(f"config must be an ExperimentConfig, got {type(config).__name__}")
    if not _is_int(points) or points < 1:
        raise ValueError(f"points must be an integer >= 1, got {points!r}")
    ident = {"dynamics_version": CURVE_VERSION, "points": int(points), "experiment": config.canonical()}
    text = json.dumps(ident, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def entry_dir(config: ExperimentConfig, *, cache_root: str | Path | None = None,
              curve_points: int | None = None) -> Path:
    """The cache entry folder of ``config`` (of its curve run with ``curve_points``, when given)."""
    root = store.cache_root(cache_root)
    if curve_points is None:
        return root / config.key()
    return root / CURVES_DIR / curve_key(config, curve_points)


# --------------------------------------------------------------------------- the test inputs


@dataclass
class HeldOut:
    """The test inputs of a config: what :func:`run` scores its model on.

    Attributes:
        names: one id per held-out test image.
        eval_set: ``{preset: scoring.EvalInputs}`` (the rain of ``eval_seed``, identical for
            every model with the same evaluation fields).
        source: the background source of the test images.
    """

    names: list[str]
    eval_set: dict[str, scoring.EvalInputs]
    source: str


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


def _held_out(config: ExperimentConfig, test: backgrounds.BackgroundSplit) -> HeldOut:
    eval_set = scoring.make_eval_set(test.test_tensor(), list(config.eval_presets), seed=config.eval_seed)
    return HeldOut(names=list(test.test_ids), eval_set=eval_set, source=test.source)


def held_out(config: ExperimentConfig, *, data_dir: str | Path | None = None) -> HeldOut:
    """The test inputs :func:`run` scores ``config``'s model on (the same code path, so the same inputs)."""
    if not isinstance(config, ExperimentConfig):
        raise ValueError(f"config must be an ExperimentConfig, got {type(config).__name__}")
    return _held_out(config, _draw_data(config, data_dir)[1])


def training_split(config: ExperimentConfig, *, data_dir: str | Path | None = None) -> backgrounds.BackgroundSplit:
    """The background split ``config``'s model was trained on (``.train``: its N training tiles)."""
    if not isinstance(config, ExperimentConfig):
        raise ValueError(f"config must be an ExperimentConfig, got {type(config).__name__}")
    return _draw_data(config, data_dir)[0]


def _score(model: nn.Module, config: ExperimentConfig, inputs: HeldOut, *,
           device: str | torch.device | None = None, ssim: bool = True) -> pd.DataFrame:
    """:func:`scoring.evaluate` of ``model`` on ``inputs``, with ``config``'s training rain."""
    return scoring.evaluate(model, inputs.eval_set, device=device, train_spec=config.train_rain,
                            names=inputs.names, ssim=ssim)


def config_columns(config: ExperimentConfig, key: str | None = None) -> dict[str, Any]:
    """The values of :data:`CONFIG_COLUMNS` for ``config`` (``key`` defaults to its own)."""
    return {
        "key": key or config.key(),
        "name": config.name(),
        "arch": config.arch,
        "model_size": config.model_size,
        "predict": config.predict,
        "precision": config.precision,
        "background": config.background,
        "n_train": config.n_train,
        "gray": config.gray,
        "train_rain": config.train_rain,
        "steps": config.steps,
        "patch": config.patch,
        "seed": config.seed,
        "eval_background": config.eval_background or config.background,
    }


# --------------------------------------------------------------------------- result


@dataclass
class ExperimentResult:
    """A finished run, as read back from its cache entry.

    Attributes: config; dir (the cache entry); eval (tidy table, one row per test
    image x preset plus "clean" rows, config columns first); history (training
    curve); provenance (dict); cached (True when no training happened in this call);
    curve_points and curve (:data:`CURVE_COLUMNS`) for a run scored during training.
    """

    config: ExperimentConfig
    dir: Path
    eval: pd.DataFrame
    history: pd.DataFrame
    provenance: dict
    cached: bool
    curve_points: int | None = None
    curve: pd.DataFrame | None = None

    @property
    def key(self) -> str:
        """The model's identity, :meth:`ExperimentConfig.key` (also for a curve run)."""
        return self.config.key()

    @property
    def entry_key(self) -> str:
        """The cache entry's key: :attr:`key`, or :func:`curve_key` for a curve run."""
        return self.key if self.curve_points is None else curve_key(self.config, self.curve_points)

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
    missing = [k for k in ("state_dict", "arch", "kwargs", "in_channels") if not isinstance(blob, dict) or k not in blob]
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


def _files(curve_points: int | None) -> tuple[str, ...]:
    return _FILES if curve_points is None else (*_FILES, _CURVE_FILE)


def _verify_entry(entry: Path, config: ExperimentConfig, curve_points: int | None = None) -> str | None:
    """None when the entry is complete and trustworthy, else the reason it is not."""
    reason = store.check_manifest(entry, _files(curve_points))
    if reason is not None:
        return reason
    expected_key = config.key() if curve_points is None else curve_key(config, curve_points)
    try:
        stored = json.loads((entry / "config.json").read_text())
        if stored.get("key") != expected_key or ExperimentConfig.from_dict(stored["config"]) != config:
            return "config.json describes another configuration"
    except Exception as e:  # noqa: BLE001 - any failure means "not this config"
        return f"config.json is unreadable ({e})"
    try:
        _load_model(entry / "model.pt", expect=config)
    except Exception as e:  # noqa: BLE001
        return f"model.pt does not load ({e})"
    return None


def _read_entry(entry: Path, config: ExperimentConfig, cached: bool, curve_points: int | None = None
                ) -> ExperimentResult:
    return ExperimentResult(
        config=config,
        dir=entry,
        eval=_read_csv(entry / "eval.csv"),
        history=_read_csv(entry / "history.csv"),
        provenance=json.loads((entry / "provenance.json").read_text()),
        cached=cached,
        curve_points=curve_points,
        curve=None if curve_points is None else _read_csv(entry / _CURVE_FILE),
    )


def _try_cached(entry: Path, config: ExperimentConfig, *, warn: bool, curve_points: int | None = None
                ) -> ExperimentResult | None:
    """The cached result if the entry verifies; else None (with a CacheWarning when the entry exists)."""
    if not entry.is_dir():
        return None
    reason = _verify_entry(entry, config, curve_points)
    if reason is None:
        try:
            return _read_entry(entry, config, cached=True, curve_points=curve_points)
        except Exception as e:  # noqa: BLE001 - a file that checksums but does not parse
            reason = f"a file does not parse ({e})"
    if warn and _entry_has_content(entry):
        resume = " (will resume from its checkpoint)" if _has_ckpt(entry) else ""
        warnings.warn(f"cache entry {entry} is not usable: {reason}; recomputing{resume}", CacheWarning, stacklevel=3)
    return None


def _has_ckpt(entry: Path) -> bool:
    ck = entry / _CKPT
    return ck.is_dir() and any(ck.iterdir())


_LOCK_FILES = (store.LOCK_FILE, store.HOLDER_FILE)


def _entry_has_content(entry: Path) -> bool:
    return any(p.name not in _LOCK_FILES for p in entry.iterdir())


def _clear_entry(entry: Path, *, keep_ckpt: bool) -> None:
    """Delete the result files (and the checkpoints unless ``keep_ckpt``); the lock stays."""
    for p in entry.iterdir():
        if p.name in _LOCK_FILES or (p.name == _CKPT and keep_ckpt):
            continue
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)
        except OSError as e:
            raise store.StoreError(f"cannot clear {p} of cache entry {entry} before recomputing it: "
                                   f"{e.strerror or e}") from e


# --------------------------------------------------------------------------- run


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
    curve_points: int | None = None,
) -> ExperimentResult:
    """Train and evaluate ``config``, or return its verified cached result.

    Args:
        config: the experiment.
        cache_root: cache folder (see :func:`derain_utils.store.cache_root`).
        data_dir: folder of named image sets (else ``$DERAIN_DATA``).
        device: training/evaluation device (``training.select_device``).
        progress: show the training progress bar.
        force: discard any existing entry (including checkpoints) and retrain.
        threads: torch CPU threads for training (passed to ``training.train``).
        callback: extra ``callback(step, loss)`` passed on to ``training.train``.
        lock_timeout: seconds to wait for another process computing the same entry
            (None = as long as it lives); TimeoutError after that.
        curve_points: also score the model at step 0 and at ``curve_steps(steps,
            curve_points)`` while it trains (the learning curve, ``result.curve``); the
            run is then cached in its own entry (:func:`entry_dir`).

    Returns:
        ExperimentResult; ``cached`` is True when nothing was trained in this call.

    Raises:
        ValueError: a bad ``config`` or ``curve_points``.
        StoreError: the cache root or the entry cannot be used (a file in the way, a
            read-only cache holding an incomplete entry); the message names the path.
    """
    if not isinstance(config, ExperimentConfig):
        raise ValueError(f"config must be an ExperimentConfig, got {type(config).__name__}")
    if curve_points is not None:
        curve_steps(config.steps, curve_points)  # validates points against the steps
    entry = entry_dir(config, cache_root=cache_root, curve_points=curve_points)
    if not force:
        hit = _try_cached(entry, config, warn=False, curve_points=curve_points)
        if hit is not None:
            stale = data_changed(hit, data_dir=data_dir)
            if stale is None:
                return hit
            warnings.warn(f"cache entry {entry} is stale: {stale}; retraining it", CacheWarning, stacklevel=2)
            force = True  # its images changed: retrained from scratch, like a forced run
    store.ensure_dir(entry.parent, "cache root" if curve_points is None else "curve cache")
    store.ensure_dir(entry, "cache entry")
    lock = store.EntryLock(entry, what="cache entry")
    waited = lock.acquire(
        timeout=lock_timeout,
        done=None if force else (lambda: _try_cached(entry, config, warn=False, curve_points=curve_points)))
    if waited is not None:  # another process finished it meanwhile
        return waited
    try:
        if force:
            _clear_entry(entry, keep_ckpt=False)
        else:
            hit = _try_cached(entry, config, warn=True, curve_points=curve_points)
            if hit is not None:
                return hit
            # Not usable. An entry that never completed keeps its checkpoints (resume);
            # one that completed and then got damaged is retrained from scratch.
            _clear_entry(entry, keep_ckpt=not (entry / store.MANIFEST).exists())
        _compute(config, entry, data_dir=data_dir, device=device, progress=progress, threads=threads,
                 callback=callback, curve_points=curve_points)
        return _read_entry(entry, config, cached=False, curve_points=curve_points)
    finally:
        lock.release()


def load(config: ExperimentConfig, *, cache_root: str | Path | None = None,
         curve_points: int | None = None, warn: bool = True) -> ExperimentResult | None:
    """The verified cached result of ``config``, or None when there is none; never trains.

    An entry that exists but does not verify (see the module docstring) gives a
    :class:`CacheWarning` (unless ``warn`` is False) and None, as a missing one does.
    """
    if not isinstance(config, ExperimentConfig):
        raise ValueError(f"config must be an ExperimentConfig, got {type(config).__name__}")
    entry = entry_dir(config, cache_root=cache_root, curve_points=curve_points)
    return _try_cached(entry, config, warn=warn, curve_points=curve_points)


def entry_config(folder: str | Path) -> tuple[ExperimentConfig, int | None]:
    """What a cache entry says it holds, from its ``config.json``: ``(config, curve_points)``.

    Checks nothing else (see :func:`load_entry` for a verified result).

    Raises:
        CacheError: not a folder, or no readable ``config.json`` of this package (named).
    """
    entry = Path(folder).expanduser()
    if not entry.is_dir():
        raise CacheError(f"cache entry {entry} is not a folder")
    try:
        stored = store.read_json(entry / "config.json", "config.json of the cache entry")
        return ExperimentConfig.from_dict(stored["config"]), stored.get("points")
    except (ValueError, TypeError, KeyError) as e:
        raise CacheError(f"{entry} is not a cache entry of this package: {e}") from None


def load_entry(folder: str | Path) -> ExperimentResult:
    """Open a cache entry by its folder (what the report card scores), checksums enforced.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        CacheError: it is not a complete, untouched entry (no config.json, a file that
            does not match its checksum, a model that does not load, ...); the message
            names the folder and the reason.
    """
    entry = Path(folder).expanduser()
    if not entry.exists():
        raise FileNotFoundError(f"cache entry {entry} does not exist")
    config, points = entry_config(entry)
    reason = _verify_entry(entry, config, points)
    if reason is not None:
        raise CacheError(f"cache entry {entry} cannot be trusted: {reason}. Recompute it (e.g. run its config "
                         "again) rather than use it")
    try:
        return _read_entry(entry, config, cached=True, curve_points=points)
    except Exception as e:  # noqa: BLE001 - a file that checksums but does not parse
        raise CacheError(f"cache entry {entry}: a file does not parse ({e})") from e


def data_changed(result: ExperimentResult, *, data_dir: str | Path | None = None) -> str | None:
    """Why a cached result no longer matches the images its backgrounds name, or None.

    The key of an entry does not cover the content of an image folder (it is computed before any
    data is read). For a model trained or scored on image files (a category or a folder), the
    images are drawn again and their pixels' sha256 compared with the fingerprint stored in its
    ``provenance.json``; a folder whose images were replaced, added or edited gives a reason that
    names the source. Procedural and embedded backgrounds are code (a change bumps
    :data:`CACHE_VERSION`), and a result whose images cannot be read here is not judged (a cached
    result loads without the data): both give None.
    """
    cfg = result.config
    if not (backgrounds.reads_files(cfg.background) or backgrounds.reads_files(cfg.eval_background)):
        return None
    stored = result.provenance.get("data") if isinstance(result.provenance, dict) else None
    if not isinstance(stored, dict):
        return None
    try:
        now = backgrounds.fingerprint(*_draw_data(cfg, data_dir))
    except Exception:  # noqa: BLE001 - the images are not here (or unreadable): nothing to compare
        return None
    changed = [f"the {label} images of {source!r}" for label, field, source in (
        ("training", "train_pixels_sha256", cfg.background),
        ("test", "test_pixels_sha256", cfg.eval_background or cfg.background))
        if stored.get(field) is not None and stored[field] != now[field]]
    if not changed:
        return None
    return f"{' and '.join(changed)} changed since it was computed (their pixels' sha256 differ from its provenance)"


def _compute(
    config: ExperimentConfig,
    entry: Path,
    *,
    data_dir: str | Path | None,
    device: str | torch.device | None,
    progress: bool,
    threads: int | None,
    callback: Callable[[int, float], Any] | None,
    curve_points: int | None,
) -> None:
    t0 = time.perf_counter()
    dev = training.select_device(device)
    split, test = _draw_data(config, data_dir)
    inputs = _held_out(config, test)
    ckpt = None if curve_points is not None else store.ensure_dir(entry / _CKPT, "training checkpoint folder")

    def build() -> nn.Module:
        torch.manual_seed(config.seed)  # the model initialisation is part of the seeded experiment
        try:
            return models.build_model(config.arch, in_channels=config.in_channels, **config.resolved_model_kwargs())
        except (TypeError, ValueError) as e:
            raise ValueError(f"model_kwargs {dict(config.model_kwargs)} do not build a {config.arch!r}: {e}") from e

    model = build()
    curve: list[pd.DataFrame] = []
    todo = set(curve_steps(config.steps, curve_points)) if curve_points is not None else set()

    def record(step: int) -> None:  # the learning curve: the one scorer, without SSIM, on the same inputs
        frame = _score(model, config, inputs, ssim=False)
        frame.insert(0, "step", step)
        curve.append(frame[list(CURVE_COLUMNS)])

    if curve_points is not None:
        record(0)

    def step_done(step: int, loss: float) -> None:
        if step in todo:
            record(step)
        if callback is not None:
            callback(step, loss)

    def train_once() -> training.TrainResult:
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
            ckpt_dir=ckpt,
            ckpt_every=config.ckpt_every,
            progress=progress,
            precision=config.precision,
            threads=threads,
            callback=step_done if (todo or callback is not None) else None,
        )

    try:
        res = train_once()
    except training.CheckpointError as e:  # unreadable, or written by another configuration
        warnings.warn(
            f"training checkpoint in {ckpt} cannot be resumed ({e}); training from scratch",
            CacheWarning,
            stacklevel=3,
        )
        shutil.rmtree(ckpt, ignore_errors=True)
        model = build()
        res = train_once()
    trained = res.model
    table = _score(trained, config, inputs, device=dev)
    key = config.key() if curve_points is None else curve_key(config, curve_points)
    cols = config_columns(config)
    table = table.drop(columns=[c for c in cols if c in table.columns])
    for i, (c, v) in enumerate(cols.items()):
        table.insert(i, c, v)

    # ---- write, manifest last
    stored = {"key": key, "name": config.name(), "config": config.to_dict(), "canonical": config.canonical()}
    if curve_points is not None:
        stored.update(points=curve_points, eval_steps=[0, *sorted(todo)], curve_version=CURVE_VERSION,
                      experiment_key=config.key())
    store.write_json(entry / "config.json", stored, sort_keys=True)
    buf = io.BytesIO()
    torch.save(
        {
            "state_dict": {k: v.detach().cpu() for k, v in trained.state_dict().items()},
            "arch": config.arch,
            "kwargs": {k: _jsonable(v) for k, v in config.resolved_model_kwargs().items()},
            "in_channels": config.in_channels,
            "key": key,
            "cache_version": CACHE_VERSION,
        },
        buf,
    )
    store.write_bytes(entry / "model.pt", buf.getvalue())
    store.write_csv(entry / "history.csv", res.history)
    store.write_csv(entry / "eval.csv", table)
    if curve_points is not None:
        store.write_csv(entry / _CURVE_FILE, pd.concat(curve, ignore_index=True))
    store.write_json(
        entry / "provenance.json",
        store.provenance(
            device=res.device,
            key=key,
            name=config.name(),
            wall_s=round(time.perf_counter() - t0, 3),
            train_wall_s=round(float(res.wall_s), 3),
            precision=res.precision,
            memory_format=res.memory_format,
            cpu_bf16=training.cpu_bf16_support()[1],
            resumed_from=res.resumed_from,
            torch_threads=int(threads) if threads is not None and dev.type == "cpu" else torch.get_num_threads(),
            data=backgrounds.fingerprint(split, test),
            eval_background=inputs.source,
        ),
    )
    store.write_manifest(entry, _files(curve_points), key=key, cache_version=CACHE_VERSION)
    if ckpt is not None:
        shutil.rmtree(ckpt, ignore_errors=True)  # complete: checkpoints are no longer needed
