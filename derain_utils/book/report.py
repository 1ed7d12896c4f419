"""The report card: how does *any* deraining model generalize? One command, one page.

::

    python -m derain_utils.book.report runs/cache/<key>             # a cached model of this package
    python -m derain_utils.book.report runs/cache/<key>/model.pt    # its checkpoint
    python -m derain_utils.book.report config.json --train          # a config (trained if not cached)
    python -m derain_utils.book.report my_pkg.nets:build_net --data rain100L_dev --real real_rain_misc
    python -m derain_utils.book.report prenet:rain100H --data rain100H_dev   # published weights, by name
    python -m derain_utils.book.report my_pkg.nets:Net --weights net.pth     # any network's published weights
    python -m derain_utils.book.report path/to/file.py:net --train-rain small --out card/

The notebooks ask whether networks trained one way generalize better than networks trained
another way. The report card asks the same of a single model, whatever made it, and writes the
answer on one page. It scores the model on

* **synthetic rain of every preset** (:data:`derain_utils.synth.rain.PRESETS`) added to held-out
  backgrounds (by default the embedded scikit-image photos of the fixed test split, which no
  model of this package trains on), each preset marked in-distribution or out-of-distribution
  (OOD) with respect to the model's training rain (:func:`derain_utils.synth.rain.overlaps`);
* **perspective rain** (:func:`derain_utils.synth.perspective.synthesize_perspective`): a rain scene built to
  be unlike every preset (depth-dependent streaks, one wind per image, haze). Synthetic, NOT
  real rain;
* the **clean** backgrounds themselves: how much the model changes an image without rain;
* any **paired sets** given with ``--data`` (folders of ``input/`` - ``target/`` pairs such as
  Rain100L), scored on the full images with the rain mask estimated from ``rainy - target``;
* any folders of **real rainy photos** given with ``--real``, described by the no-ground-truth
  proxies of :mod:`derain_utils.realdata`.

Every test set reports the decoupled scores of :mod:`derain_utils.measure.metrics`: ``removal`` (share of
the rain's squared error removed inside the rain mask: 1 = all of it, 0 = none, which is what the
identity scores, < 0 = worse than the input) and ``bg_psnr`` (PSNR outside the rain mask: damage
to the background), plus whole-image PSNR/SSIM on the Y channel as deraining tables report them.
Means come with 95% bootstrap intervals over the test images (one model: the images are the
sampling units). The output folder holds ``report.md`` (the page: model, table, summary,
figure), ``report.png``, ``report.csv`` (one row per image and test set), ``summary.csv`` and
``report.json``.

What can be scored
------------------
* a cache entry folder of :mod:`derain_utils.lab.experiments` (holding ``model.pt`` and
  ``config.json``), its ``model.pt``, or a ``config.json`` (an entry's, or a plain
  :class:`~derain_utils.lab.experiments.ExperimentConfig` dict; its model is read from the cache,
  or trained with ``--train``);
* ``module:attr`` or ``path/to/file.py:attr`` where ``attr`` is a ``torch.nn.Module`` instance, an
  ``nn.Module`` subclass, or a zero-argument callable returning an ``nn.Module``. The module must
  map a rainy batch (N, 3, H, W) in [0, 1] to a derained batch of the same shape (any H, W;
  outputs are clamped to [0, 1]). Its training rain is unknown to the card: ``--train-rain``
  names the preset that counts as in-distribution (default ``small``, the package's). ``--weights FILE``
  (or ``module:attr@FILE``) loads a state dict into it with ``strict=True``
  (:func:`derain_utils.nets.published.load_weights`);
* a published network by name (:data:`derain_utils.nets.published.PUBLISHED`, e.g. ``prenet:rain100H``): its
  weights are read from ``$DERAIN_DATA`` and checked against the registry's sha256. Its training rain is none
  of the presets, so every preset is "unknown" unless ``--train-rain`` says otherwise. The card records
  where the weights came from (file, URL, sha256).

Its intervals come from :mod:`derain_utils.stats.bootstrap` and its figure from
:mod:`derain_utils.book.plotting`; notebook 04 uses its scoring functions (:func:`apply`, :func:`paired_rows`,
:func:`real_rows`, :func:`synthetic_sets`) so that the notebook and the card compute the same numbers.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from derain_utils import store
from derain_utils.lab import experiments
from derain_utils.measure import metric_table, metrics, realscores, scoring
from derain_utils.nets import models, published, training
from derain_utils.stats.bootstrap import group_summary, mean_ci  # re-exported: part of the report card's API
from derain_utils.synth import backgrounds, rain, realsets
from derain_utils.synth.data import data_root
from derain_utils.synth.perspective import PerspectiveRain, synthesize_perspective

__all__ = [
    "LoadedModel",
    "SyntheticSet",
    "PAIRED_METRICS",
    "load_model",
    "apply",
    "synthetic_sets",
    "paired_rows",
    "real_rows",
    "load_real",
    "mean_ci",
    "group_summary",
    "evaluate",
    "summarize",
    "headline",
    "write_report",
    "main",
]

PAIRED_METRICS: tuple[str, ...] = ("removal", "bg_psnr", "rain_psnr", "psnr", "ssim", "psnr_y", "ssim_y",
                                   "input_psnr", "input_ssim", "input_psnr_y", "mask_fraction")
"""Columns that every synthetic or paired row carries (from :func:`metrics.evaluate_pair`)."""

_MODEL_FILE = "model.pt"
_CONFIG_FILE = "config.json"


# --------------------------------------------------------------------------- loading a model


@dataclass
class LoadedModel:
    """A model ready to score, and what is known about it.

    Attributes:
        model: the network (eval mode).
        name: a readable name (the config's name, or ``module:attr``).
        source: what was given on the command line (path or ``module:attr``).
        train_rain: the preset it was trained on (None = unknown).
        in_channels: 3 (RGB) or 1 (gray: inputs are converted to luma).
        config: its ExperimentConfig when it is a model of this package.
        n_params: number of parameters.
        weights: where its weights came from, when they were loaded from a file (file, bytes, sha256; for
            a published network also its URL and the registry's sha256).
    """

    model: nn.Module
    name: str
    source: str
    train_rain: str | None
    in_channels: int = 3
    config: experiments.ExperimentConfig | None = None
    n_params: int = 0
    weights: dict[str, Any] | None = None

    def describe(self) -> str:
        """One line: name, architecture, parameters, training rain."""
        arch = f"{self.config.arch} ({self.config.model_size}), trained on {self.config.n_train} " \
               f"{self.config.background} tiles for {self.config.steps} steps" if self.config else \
            type(self.model).__name__
        rain_txt = self.train_rain or "unknown"
        return f"{self.name}: {arch}; {self.n_params:,} parameters; training rain {rain_txt}"


def _read_config(path: Path) -> experiments.ExperimentConfig:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"config file {path} cannot be read as JSON: {e}") from e
    if isinstance(d, Mapping) and "config" in d and isinstance(d["config"], Mapping):
        d = d["config"]  # a cache entry's config.json
    try:
        return experiments.ExperimentConfig.from_dict(d)
    except (TypeError, ValueError) as e:
        raise ValueError(f"config file {path} is not an ExperimentConfig: {e}") from e


OUTPUT_SCALE: tuple[float, float] = (-0.5, 1.5)
"""The bulk of a model's raw output (its :data:`OUTPUT_QUANTILES`) must lie in this range to be scored;
the output is then clamped to [0, 1]. A network that overshoots on a few pixels is scored (the quick
N = 4 ResNets of a fresh run reach -0.56 on the Rain100H development pairs, their 1st percentile no lower
than -0.31); a model on another scale (0..255, say) is refused."""
OUTPUT_QUANTILES: tuple[float, float] = (0.01, 0.99)
"""The quantiles of a raw output that :data:`OUTPUT_SCALE` bounds: the scale is decided by the middle 98%
of the values, never by the extremes."""
_QUANTILE_SAMPLE = 1 << 20


def _output_quantiles(y: torch.Tensor) -> tuple[float, float]:
    flat = y.detach().flatten().float()
    if flat.numel() > _QUANTILE_SAMPLE:  # an even subsample: torch.quantile has a size limit
        flat = flat[torch.linspace(0, flat.numel() - 1, _QUANTILE_SAMPLE).long()]
    lo, hi = torch.quantile(flat, torch.tensor(OUTPUT_QUANTILES, dtype=flat.dtype)).tolist()
    return float(lo), float(hi)


def _check_output(y: Any, x: torch.Tensor, name: str) -> torch.Tensor:
    """A model's raw output, checked: one float tensor, finite, on the [0, 1] scale (its 1st and 99th
    percentiles within :data:`OUTPUT_SCALE`)."""
    how = "map a rainy batch (N, C, H, W) in [0, 1] to one derained tensor of the same shape"
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"{name} returned an object of type {type(y).__name__}, not a torch tensor; "
                         f"the model must {how}")
    if not torch.is_floating_point(y):
        raise ValueError(f"{name} returned dtype {y.dtype}; expected floats in [0, 1] (divide 0..255 outputs "
                         f"by 255); the model must {how}")
    if y.shape != x.shape:
        raise ValueError(f"{name} returned shape {tuple(y.shape)} for an input of shape {tuple(x.shape)}; "
                         f"the model must {how}")
    finite = torch.isfinite(y)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ValueError(f"{name} returned NaN or infinite values ({bad} of {y.numel()}); the model must {how}")
    q_lo, q_hi = _output_quantiles(y)
    if q_lo < OUTPUT_SCALE[0] or q_hi > OUTPUT_SCALE[1]:
        lo, hi = float(y.min()), float(y.max())
        raise ValueError(f"{name} returned values in [{lo:.4g}, {hi:.4g}] (1st to 99th percentile [{q_lo:.4g}, "
                         f"{q_hi:.4g}]), not on the [0, 1] scale (accepted: percentiles within "
                         f"{list(OUTPUT_SCALE)}, then clamped); the model must {how}")
    return y


class _CheckedModel(nn.Module):
    """Wraps the model being scored: its errors and its bad outputs become ValueErrors naming it."""

    def __init__(self, inner: nn.Module, name: str):
        super().__init__()
        self.inner = inner
        self.label = name
        self.train(inner.training)  # predict() restores the mode it found: the inner model's

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        try:
            y = self.inner(x)
        except Exception as e:  # noqa: BLE001 - any failure of the model is reported, not a traceback
            raise ValueError(f"{self.label}: running it on a batch of shape {tuple(x.shape)} raised "
                             f"{published.one_line(e)}") from e
        return _check_output(y, x, self.label)


def load_model(
    spec: str | os.PathLike,
    *,
    cache_root: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    train: bool = False,
    train_rain: str | None = None,
    weights: str | os.PathLike | None = None,
) -> LoadedModel:
    """Load what the report card scores (see the module docstring for the accepted forms).

    Args:
        spec: a cache entry folder, a ``model.pt``, a ``config.json``, or ``module:attr``.
        cache_root: model cache for a config (default ``$DERAIN_RUNS/cache``).
        data_dir: data root, used only when a config must be trained.
        train: train a config whose model is not cached (:func:`experiments.run`).
        train_rain: overrides the training rain (needed for ``module:attr``, default ``"small"``).
        weights: a weights file loaded strictly into a ``module:attr`` model (also ``module:attr@file``).

    Raises:
        FileNotFoundError: a path that does not exist, or a config that is neither beside a
            model.pt nor cached (without ``train``).
        experiments.CacheError: a cache entry (or its model.pt / config.json) that is not
            complete and untouched: a file does not match its checksum (a ValueError).
        ValueError: anything that is not a model (the message names it).
    """
    text = os.fspath(spec)
    if train_rain is not None:
        rain.get_spec(train_rain)  # unknown preset -> ValueError naming the valid ones
    if published.is_published(text):
        if weights is not None:
            raise ValueError(f"model {text!r} is a published network: its weights come from the registry, "
                             "not from --weights")
        model, record = published.load(text, data_dir)
        return LoadedModel(model=model, name=text, source=text, train_rain=train_rain, config=None,
                           n_params=models.count_params(model), weights=record)
    text, at_weights = published.split_spec(text) if "@" in text and not Path(text).exists() else (text, None)
    weights = at_weights if weights is None else weights
    path = Path(text).expanduser()
    if path.exists() and weights is not None:
        raise ValueError(f"--weights is for module:callable models; {text!r} is this package's model and has its own")
    if path.exists():
        if path.is_dir():
            if not (path / _MODEL_FILE).is_file():
                raise FileNotFoundError(f"model folder {str(path)!r} holds no {_MODEL_FILE}")
            result = experiments.load_entry(path)  # checksums enforced: a tampered entry is refused
        elif path.suffix == ".json" and not path.with_name(_MODEL_FILE).is_file():
            config = _read_config(path)  # a bare config: the cache, or training
            result = experiments.load(config, cache_root=cache_root)
            if result is None:
                if not train:
                    raise FileNotFoundError(
                        f"config {str(path)!r} ({config.name()}, key {config.key()}) has no cached model in "
                        f"{store.cache_root(cache_root)}; pass --train (train=True) to train it")
                result = experiments.run(config, cache_root=cache_root, data_dir=data_dir, progress=False)
        else:  # an entry's model.pt or config.json
            result = experiments.load_entry(path.parent)
        model, config = result.load_model(), result.config
        return LoadedModel(model=model, name=config.name(), source=text, train_rain=train_rain or config.train_rain,
                           in_channels=config.in_channels, config=config, n_params=models.count_params(model))
    if ":" not in text or text.endswith(".pt") or text.endswith(".json"):
        raise FileNotFoundError(f"model {text!r} does not exist (give a cache folder, model.pt, config.json, "
                                f"or module:callable)")
    model, name = published.import_model(text)
    record = None if weights is None else published.load_weights(model, weights)
    return LoadedModel(model=model.eval(), name=name, source=text, train_rain=train_rain or rain.TRAIN_PRESET,
                       in_channels=3, config=None, n_params=models.count_params(model), weights=record)


# --------------------------------------------------------------------------- applying a model


def apply(
    model: nn.Module,
    images: Sequence[np.ndarray],
    *,
    in_channels: int = 3,
    device: str | torch.device | None = None,
    batch_size: int = 16,
    name: str = "the model",
) -> list[np.ndarray]:
    """Derain a list of images of any sizes: float32 numpy (H, W, 3) in, the same shapes out.

    Images of equal size are batched (``batch_size`` per forward pass); each goes through
    :func:`derain_utils.nets.training.predict` (eval mode, no gradients, output clamped to [0, 1]). Whole
    images are processed: the package's networks are fully convolutional. A gray model
    (``in_channels=1``) gets the luma and its output is returned as (H, W, 1).

    Before clamping, every raw output is checked (:func:`_check_output`): a tensor of the input's
    shape, floating point, finite, its bulk within :data:`OUTPUT_SCALE`. A model that raises, returns a tuple
    or an array, integers, NaN/inf or values on another scale gets a ValueError naming it (``name``).
    """
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels must be 1 or 3, got {in_channels!r}")
    out: list[np.ndarray | None] = [None] * len(images)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, img in enumerate(images):
        a = np.asarray(img)
        if a.ndim != 3 or a.shape[-1] != 3:
            raise ValueError(f"images[{i}] must be (H, W, 3) RGB, got shape {a.shape}")
        by_shape.setdefault(a.shape, []).append(i)
    for idx in by_shape.values():
        batch = np.stack([np.asarray(images[i], np.float32) for i in idx])
        if in_channels == 1:
            batch = backgrounds.to_gray(batch)
        x = torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))
        checked = _CheckedModel(model, name)
        y = training.predict(checked, x, device=device, batch_size=batch_size).numpy().transpose(0, 2, 3, 1)
        for k, i in enumerate(idx):
            out[i] = np.ascontiguousarray(y[k])
    return out  # type: ignore[return-value]


def _label(loaded: LoadedModel) -> str:
    return f"model {loaded.source!r}"


def _channels(img: np.ndarray, in_channels: int) -> np.ndarray:
    return backgrounds.to_gray(img) if in_channels == 1 and img.shape[-1] == 3 else img


# --------------------------------------------------------------------------- test sets


@dataclass
class SyntheticSet:
    """Synthetic test inputs whose rain layer is known (numpy, channels last).

    Attributes:
        name: the rain's name (a preset, or ``"perspective"``).
        kind: ``"preset"`` or ``"perspective"``.
        names: one id per image.
        background, rainy: float32 (n, H, W, 3); rain: float32 (n, H, W); mask: bool (n, H, W).
        in_distribution: whether the rain overlaps the training rain (None = unknown/not a box).
        ood_fields: fields on which a preset misses the training rain ("" for perspective).
        relation: ``"training"`` (the training rain itself), ``"overlap"`` (its ranges overlap the
            training ranges on every field but differ), ``"OOD"`` or ``"unknown"``.
    """

    name: str
    kind: str
    names: list[str]
    background: np.ndarray
    rainy: np.ndarray
    rain: np.ndarray
    mask: np.ndarray
    in_distribution: bool | None = None
    ood_fields: str = ""
    relation: str = "unknown"
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.names)


def _hwc(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy().transpose(0, 2, 3, 1), dtype=np.float32)


def synthetic_sets(
    test_images: np.ndarray,
    *,
    names: Sequence[str] | None = None,
    presets: Sequence[str] | None = None,
    train_rain: str | None = rain.TRAIN_PRESET,
    seed: int = 1234,
    perspective: PerspectiveRain | None | bool = True,
    perspective_images: np.ndarray | None = None,
    perspective_names: Sequence[str] | None = None,
) -> dict[str, SyntheticSet]:
    """Test inputs for every preset (and the perspective rain) on held-out backgrounds.

    Args:
        test_images: float32 (n, H, W, 3) clean backgrounds.
        names: one id per image (default ``img000``...).
        presets: preset names (default: all of :data:`rain.PRESETS`); rain is drawn exactly as
            :func:`scoring.make_eval_set` does, so the same seed gives the notebooks' inputs.
        train_rain: decides ``in_distribution`` (None = unknown).
        seed: evaluation seed (presets and perspective rain).
        perspective: True (default scene), a :class:`PerspectiveRain`, or False (none).
        perspective_images / perspective_names: other backgrounds for the perspective rain
            (e.g. larger crops); default the same test images.

    Returns:
        ``{set name: SyntheticSet}``, presets first, then ``"perspective"``.
    """
    imgs = np.asarray(test_images, np.float32)
    if imgs.ndim != 4 or imgs.shape[-1] != 3:
        raise ValueError(f"test_images must be (n, H, W, 3), got shape {imgs.shape}")
    names = list(names) if names is not None else [f"img{i:03d}" for i in range(len(imgs))]
    if len(names) != len(imgs):
        raise ValueError(f"names has {len(names)} entries for {len(imgs)} test images")
    presets = list(presets) if presets is not None else list(rain.PRESETS)
    out: dict[str, SyntheticSet] = {}
    if presets:
        train_spec = rain.get_spec(train_rain) if train_rain is not None else None
        for pname, e in scoring.make_eval_set(imgs, presets, seed=seed).items():
            ood = rain.ood_fields(train_spec, e.spec) if train_spec is not None else []
            relation = ("unknown" if train_spec is None else "OOD" if ood else
                        "training" if e.spec == train_spec else "overlap")
            out[pname] = SyntheticSet(
                name=pname, kind="preset", names=list(names), background=_hwc(e.background), rainy=_hwc(e.rainy),
                rain=e.rain[:, 0].numpy(), mask=e.mask[:, 0].numpy(),
                in_distribution=None if train_rain is None else not ood, ood_fields=",".join(ood), relation=relation)
    if perspective is not False:
        spec = None if perspective is True else perspective
        p_imgs = imgs if perspective_images is None else np.asarray(perspective_images, np.float32)
        p_names = names if perspective_images is None else (
            list(perspective_names) if perspective_names is not None else [f"img{i:03d}" for i in range(len(p_imgs))])
        if len(p_names) != len(p_imgs):
            raise ValueError(f"perspective_names has {len(p_names)} entries for {len(p_imgs)} images")
        layer, mask, parts = synthesize_perspective(spec, p_imgs.shape[1:3], len(p_imgs), seed,
                                                         return_parts=True)
        bg = torch.from_numpy(np.ascontiguousarray(p_imgs.transpose(0, 3, 1, 2)))
        out["perspective"] = SyntheticSet(
            name="perspective", kind="perspective", names=list(p_names), background=p_imgs,
            rainy=_hwc(rain.add_rain(bg, layer)), rain=layer[:, 0].numpy(), mask=mask[:, 0].numpy(),
            in_distribution=False if train_rain is not None else None, ood_fields="",
            relation="OOD" if train_rain is not None else "unknown",
            extra={"wind_deg": parts["wind"].tolist(), "haze": parts["haze"][:, 0, 0, 0].tolist()})
    return out


def paired_rows(
    pairs: Sequence[tuple[str, np.ndarray, np.ndarray]],
    derained: Sequence[np.ndarray],
    *,
    masks: Sequence[np.ndarray] | None = None,
    in_channels: int = 3,
) -> pd.DataFrame:
    """Per-image ground-truth scores: one row per ``(name, rainy, background)`` pair.

    ``masks`` gives the true rain masks (synthetic sets); without it the mask is estimated
    from ``rainy - background`` (:func:`realscores.paired_scores`). Columns: ``image``, the
    :data:`PAIRED_METRICS`, ``mask_source``.
    """
    if len(derained) != len(pairs):
        raise ValueError(f"derained has {len(derained)} images for {len(pairs)} pairs")
    if masks is not None and len(masks) != len(pairs):
        raise ValueError(f"masks has {len(masks)} entries for {len(pairs)} pairs")
    rows = []
    for i, (name, rainy_img, bg) in enumerate(pairs):
        o, b = _channels(rainy_img, in_channels), _channels(bg, in_channels)
        d = derained[i]
        if masks is None:
            s = realscores.paired_scores(b, o, d)
        else:
            s = metrics.evaluate_pair(b, o, d, np.asarray(masks[i], bool))
        s["input_psnr_y"] = metrics.psnr(b, o, y_channel=True) if b.ndim == 3 and b.shape[-1] == 3 else math.nan
        rows.append({"image": str(name), **{k: s[k] for k in (*PAIRED_METRICS, "mask_source")}})
    return pd.DataFrame(rows)


def real_rows(
    photos: Sequence[tuple[str, np.ndarray]],
    derained: Sequence[np.ndarray],
    *,
    rainfree: Sequence[np.ndarray] | None = None,
    in_channels: int = 3,
) -> pd.DataFrame:
    """Per-photo no-ground-truth proxies (:func:`realscores.no_gt_proxies`): ``image`` and
    :data:`realscores.PROXY_KEYS`."""
    if len(derained) != len(photos):
        raise ValueError(f"derained has {len(derained)} images for {len(photos)} photos")
    rows = []
    for i, (name, img) in enumerate(photos):
        free = None if rainfree is None else rainfree[i]
        rows.append({"image": str(name), **realscores.no_gt_proxies(_channels(img, in_channels), derained[i],
                                                                   rainfree=free)})
    return pd.DataFrame(rows)


def load_real(
    folder: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    long_side: int | None = None,
) -> list[tuple[str, np.ndarray]]:
    """``limit`` photos of a folder of real rainy photos, downscaled to ``long_side`` px: ``[(file name, image)]``.

    With a ``limit`` smaller than the folder, the photos are spread evenly over the file-name order
    (indices ``round(linspace(0, n - 1, limit))``), so that a folder of video frames gives frames of
    every clip rather than the first frames of one. ``None``/0 = all photos, full size. A photo whose
    short side is below :data:`~derain_utils.measure.realscores.MIN_SIDE` is a ValueError naming it.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 0):
        raise ValueError(f"limit must be None or an int >= 0, got {limit!r}")
    src = realsets.unpaired_set(folder, data_dir)
    names = src.names
    if limit and limit < len(names):
        names = [names[i] for i in np.unique(np.round(np.linspace(0, len(names) - 1, limit)).astype(int))]
    out = []
    for n in names:
        img = src.load(n)
        small = realsets.resize_long_side(img, long_side)
        if min(small.shape[:2]) < realscores.MIN_SIDE:
            was = "" if small.shape == img.shape else f" after downscaling from {img.shape[1]}x{img.shape[0]} px"
            raise ValueError(
                f"real photo {str(Path(src.root) / n) if hasattr(src, 'root') else n!r} is {small.shape[1]}x"
                f"{small.shape[0]} px{was}: too small for the no-ground-truth proxies (short side at least "
                f"{realscores.MIN_SIDE} px); remove it from the folder" + (" or raise --real-long-side" if was else ""))
        out.append((n, small))
    return out


# --------------------------------------------------------------------------- the card


def evaluate(
    loaded: LoadedModel,
    *,
    presets: Sequence[str] | None = None,
    background: str = "skimage",
    n_test: int = 8,
    test_size: int = 64,
    perspective_size: int = 128,
    eval_seed: int = 1234,
    paired: Sequence[str | os.PathLike] = (),
    real: Sequence[str | os.PathLike] = (),
    real_limit: int | None = None,
    real_long_side: int | None = None,
    data_dir: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    examples: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> pd.DataFrame:
    """Score one model on every test set of the card; one row per (test set, image).

    ``examples``, when a dict is given, is filled with ``{set: (rainy, derained)}``: the most
    colourful test image of each synthetic set and the first pair of each paired set (the
    thumbnails of :func:`derain_utils.book.plotting.report_card`).

    Columns: ``set``, ``kind`` (``preset`` / ``perspective`` / ``clean`` / ``paired`` / ``real``),
    ``relation`` (to the training rain: see :class:`SyntheticSet`), ``in_distribution`` (True/False/NA),
    ``ood_fields``, ``image``, the :data:`PAIRED_METRICS`
    (synthetic and paired rows; ``clean`` rows hold psnr/ssim of the output against the clean
    input), ``mask_source`` and the :data:`realscores.PROXY_KEYS` (real rows).
    """
    split = backgrounds.draw_split(background, 0, n_test, test_size=test_size, data_dir=data_dir)
    frames = []
    sets = synthetic_sets(split.test, names=split.test_ids, presets=presets, train_rain=loaded.train_rain,
                          seed=eval_seed, perspective=False)
    if perspective_size:
        big = backgrounds.draw_split(background, 0, n_test, test_size=perspective_size, data_dir=data_dir)
        sets.update(synthetic_sets(big.test, names=big.test_ids, presets=[], train_rain=loaded.train_rain,
                                   seed=eval_seed, perspective=True))
    ch = loaded.in_channels
    for s in sets.values():
        pairs = list(zip(s.names, s.rainy, s.background))
        out = apply(loaded.model, [p[1] for p in pairs], in_channels=ch, device=device, name=_label(loaded))
        if examples is not None:
            k = int(np.argmax([_chroma(b) for b in s.background]))
            examples[s.name] = (s.rainy[k], out[k])
        df = paired_rows(pairs, out, masks=list(s.mask), in_channels=ch)
        frames.append(df.assign(set=s.name, kind=s.kind, in_distribution=s.in_distribution, ood_fields=s.ood_fields,
                                relation=s.relation))
    clean_out = apply(loaded.model, list(split.test), in_channels=ch, device=device, name=_label(loaded))
    clean = []
    for name, b, d in zip(split.test_ids, split.test, clean_out):
        b = _channels(b, ch)
        clean.append({"image": name, "psnr": metrics.psnr(b, d), "ssim": metrics.ssim(b, d),
                      "psnr_y": metrics.psnr(b, d, y_channel=True) if ch == 3 else math.nan,
                      "ssim_y": metrics.ssim(b, d, y_channel=True) if ch == 3 else math.nan})
    frames.append(pd.DataFrame(clean).assign(set="clean", kind="clean", in_distribution=None, ood_fields="",
                                             relation="no rain"))
    for folder in paired:
        ps = realsets.paired_set(folder, data_dir)
        pairs = [(n, o, t) for n, o, t in ps]
        out = apply(loaded.model, [p[1] for p in pairs], in_channels=ch, device=device, name=_label(loaded))
        if examples is not None:
            examples[ps.name] = (pairs[0][1], out[0])
        frames.append(paired_rows(pairs, out, in_channels=ch).assign(
            set=ps.name, kind="paired", in_distribution=None, ood_fields="", relation="benchmark pairs"))
    for folder in real:
        photos = load_real(folder, data_dir=data_dir, limit=real_limit, long_side=real_long_side)
        out = apply(loaded.model, [p[1] for p in photos], in_channels=ch, device=device, name=_label(loaded))
        frames.append(real_rows(photos, out, in_channels=ch).assign(
            set=realsets.resolve_folder(folder, data_dir).name, kind="real", in_distribution=None, ood_fields="",
            relation="real photos"))
    df = pd.concat(frames, ignore_index=True)
    df["in_distribution"] = df["in_distribution"].astype("boolean")
    lead = ["set", "kind", "relation", "in_distribution", "ood_fields", "image"]
    return df[lead + [c for c in df.columns if c not in lead]]


_SUMMARY_METRICS = {
    "preset": ("removal", "bg_psnr", "psnr_y", "ssim_y", "input_psnr_y"),
    "perspective": ("removal", "bg_psnr", "psnr_y", "ssim_y", "input_psnr_y"),
    "paired": ("removal", "bg_psnr", "psnr_y", "ssim_y", "input_psnr_y"),
    "clean": ("psnr_y", "ssim_y"),
    "real": realscores.PROXY_KEYS[:-1],
}


def summarize(df: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """One row per test set: ``set, kind, in_distribution, n``, and per metric ``<m>``, ``<m>_lo``,
    ``<m>_hi`` (mean and 95% bootstrap interval over images, :func:`mean_ci`)."""
    rows = []
    for (name, kind), g in df.groupby(["set", "kind"], sort=False):
        row: dict[str, Any] = {"set": name, "kind": kind, "relation": g["relation"].iloc[0],
                               "in_distribution": g["in_distribution"].iloc[0],
                               "ood_fields": g["ood_fields"].iloc[0], "n": len(g)}
        for m in _SUMMARY_METRICS[kind]:
            row[m], row[f"{m}_lo"], row[f"{m}_hi"] = mean_ci(g[m], seed=seed)
        rows.append(row)
    out = pd.DataFrame(rows)
    out["in_distribution"] = out["in_distribution"].astype("boolean")
    return out


def headline(summary: pd.DataFrame) -> dict[str, float]:
    """The card's three numbers: in-distribution removal, mean OOD-preset removal, and their ratio.

    ``id_removal`` is the removal of the training rain itself (the presets that merely overlap
    it when the training rain was not tested); ``ood_removal`` the mean over the OOD presets;
    ``retained`` = OOD / in-distribution removal: the share of what the model does on its own
    rain that it still does on unseen rain (NaN when it removes nothing in-distribution).
    Also ``preset_removal`` (mean over every preset: what a model whose training rain is unknown is described
    by), ``perspective_removal``, ``paired_removal`` (mean over paired sets) and ``clean_psnr_y``.
    """
    pre = summary[summary["kind"] == "preset"]
    idr = pre.loc[pre["relation"] == "training", "removal"]
    if idr.empty:
        idr = pre.loc[pre["relation"] == "overlap", "removal"]
    ood = pre.loc[pre["relation"] == "OOD", "removal"]
    id_m = float(idr.mean()) if len(idr) else math.nan
    ood_m = float(ood.mean()) if len(ood) else math.nan
    get = lambda kind, col: float(summary.loc[summary["kind"] == kind, col].mean()) \
        if (summary["kind"] == kind).any() else math.nan  # noqa: E731
    return {
        "id_removal": id_m,
        "ood_removal": ood_m,
        "retained": ood_m / id_m if id_m > 0.02 else math.nan,
        "preset_removal": float(pre["removal"].mean()) if len(pre) else math.nan,
        "perspective_removal": get("perspective", "removal"),
        "paired_removal": get("paired", "removal"),
        "clean_psnr_y": get("clean", "psnr_y"),
    }


def _fmt(v: float, lo: float, hi: float, digits: int) -> str:
    if not math.isfinite(v):
        return "–"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{v:.{digits}f}"
    return f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _markdown_table(summary: pd.DataFrame) -> str:
    col = {k: metric_table.METRICS[k].header for k in ("removal", "bg_psnr", "psnr_y", "ssim_y", "input_psnr_y")}
    head = ["test set", "kind", "rain vs training", "n", f"{col['removal']} [95% CI]", f"{col['bg_psnr']} [95% CI]",
            col["psnr_y"], col["ssim_y"], col["input_psnr_y"]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in summary[summary["kind"] != "real"].iterrows():
        if r["kind"] == "preset":
            rel = {"training": "training rain", "overlap": "overlaps the training ranges",
                   "OOD": f"OOD ({r['ood_fields']})"}.get(r["relation"], "unknown")
        else:
            rel = {"perspective": "OOD (synthetic, unlike any preset)", "clean": "no rain",
                   "paired": "benchmark pairs (mask estimated)"}[r["kind"]]
        cells = [str(r["set"]), str(r["kind"]), rel, str(int(r["n"]))]
        if r["kind"] == "clean":
            cells += ["–", "–", _fmt(r["psnr_y"], math.nan, math.nan, 2),
                      _fmt(r["ssim_y"], math.nan, math.nan, 3), "–"]
        else:
            cells += [_fmt(r["removal"], r["removal_lo"], r["removal_hi"], 3),
                      _fmt(r["bg_psnr"], r["bg_psnr_lo"], r["bg_psnr_hi"], 1),
                      _fmt(r["psnr_y"], math.nan, math.nan, 2), _fmt(r["ssim_y"], math.nan, math.nan, 3),
                      _fmt(r["input_psnr_y"], math.nan, math.nan, 2)]
        lines.append("| " + " | ".join(cells) + " |")
    real = summary[summary["kind"] == "real"]
    if len(real):
        proxies = ("removed_rms", "brightening_share", "coherence", "global_coherence", "rainfree_change")
        lines += ["", "Real photos without ground truth (proxies of `derain_utils.realdata`; no quality score):", "",
                  "| folder | n | " + " | ".join(metric_table.METRICS[k].header for k in proxies) + " |",
                  "|---|---|---|---|---|---|---|"]
        for _, r in real.iterrows():
            lines.append(f"| {r['set']} | {int(r['n'])} | {_fmt(r['removed_rms'], math.nan, math.nan, 4)} | "
                         f"{_fmt(r['brightening_share'], math.nan, math.nan, 2)} | "
                         f"{_fmt(r['coherence'], math.nan, math.nan, 2)} | "
                         f"{_fmt(r['global_coherence'], math.nan, math.nan, 2)} | "
                         f"{_fmt(r['rainfree_change'], math.nan, math.nan, 4)} |")
    return "\n".join(lines)


def _sentence(h: Mapping[str, float], loaded: LoadedModel) -> str:
    def f(v: float) -> str:
        return "n/a" if not math.isfinite(v) else f"{v:.2f}"

    if loaded.train_rain is None:  # a published network: its training rain is none of the presets
        parts = [f"Its training rain is unknown to the card (none of the presets); on the synthetic presets it removes "
                 f"{f(h['preset_removal'])} of the rain's error (mean)"]
    else:
        parts = [f"On its training rain ({loaded.train_rain}) the model removes {f(h['id_removal'])} of the rain's "
                 f"error; on the unseen presets {f(h['ood_removal'])} (mean)"]
    if math.isfinite(h["retained"]):
        parts.append(f", i.e. it keeps {100 * h['retained']:.0f}% of its in-distribution removal")
    text = "".join(parts) + "."
    if math.isfinite(h["perspective_removal"]):
        text += f" On perspective rain (synthetic, unlike any preset) it removes {f(h['perspective_removal'])}."
    if math.isfinite(h["paired_removal"]):
        text += f" On the paired benchmark set(s) it removes {f(h['paired_removal'])} (mask estimated)."
    if math.isfinite(h["clean_psnr_y"]):
        text += f" A rain-free image comes out at {h['clean_psnr_y']:.1f} dB PSNR-Y (100 = untouched)."
    if abs(h["id_removal"]) < 0.02 and (not math.isfinite(h["ood_removal"]) or abs(h["ood_removal"]) < 0.02):
        text += " It removes essentially no rain anywhere: it behaves like the identity."
    return text


def write_report(
    df: pd.DataFrame,
    loaded: LoadedModel,
    out_dir: str | os.PathLike,
    *,
    settings: Mapping[str, Any] | None = None,
    examples: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    seed: int = 0,
) -> dict[str, Path]:
    """Write the card into ``out_dir``: report.md, report.png, report.csv, summary.csv, report.json.

    The files are written whole or not at all: into a staging folder beside ``out_dir``, then moved
    into place (a new ``out_dir`` is one rename). A failure leaves ``out_dir`` as it was.

    Args:
        df: :func:`evaluate`'s table.
        loaded: the model scored.
        settings: how it was scored (test backgrounds, sizes, seeds), recorded in the page and JSON.
        examples: ``{set: (rainy, derained)}`` thumbnails for the figure (optional).
    """
    final = Path(out_dir)
    if final.exists() and not final.is_dir():
        raise ValueError(f"output folder {str(final)!r} is a file")
    store.ensure_dir(final.parent, "output folder's parent")
    out = final.parent / f".{final.name}.partial-{os.getpid()}"  # staged, then published whole
    try:
        if out.exists():
            shutil.rmtree(out)
        out.mkdir()
        _write_card(_text_columns(df), loaded, out, settings=settings, examples=examples, seed=seed)
        _publish(out, final)
    except store.StoreError:
        raise
    except OSError as e:  # a full disk or a folder that turned read-only: name where, not only why
        raise store.write_error(final, "the report card into", e) from e
    finally:
        if out.exists():
            shutil.rmtree(out, ignore_errors=True)
    return {k: final / f for k, f in (("md", "report.md"), ("png", "report.png"), ("csv", "report.csv"),
                                      ("summary", "summary.csv"), ("json", "report.json"))}


def _text(value: Any) -> Any:
    """Strings as valid UTF-8 text (undecodable file-name bytes as backslash escapes); others unchanged."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace") \
        if isinstance(value, str) else value


def _text_columns(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object:
            out[col] = [_text(v) for v in out[col]]
    return out


def _publish(staged: Path, final: Path) -> None:
    """Move a finished card into place: one rename for a new folder, else file by file (each atomic)."""
    if not final.exists():
        os.rename(staged, final)
        return
    for f in sorted(staged.iterdir()):
        os.replace(f, final / f.name)


def _write_card(
    df: pd.DataFrame,
    loaded: LoadedModel,
    out: Path,
    *,
    settings: Mapping[str, Any] | None,
    examples: Mapping[str, tuple[np.ndarray, np.ndarray]] | None,
    seed: int,
) -> None:
    """The files of :func:`write_report`, written into the (staging) folder ``out``."""
    from derain_utils.book import plotting

    summary = summarize(df, seed=seed)
    h = headline(summary)
    fig = plotting.report_card(summary, examples=examples, title=f"Report card: {loaded.name}")
    fig.savefig(out / "report.png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    df.to_csv(out / "report.csv", index=False)
    summary.to_csv(out / "summary.csv", index=False)
    settings = dict(settings or {})
    record = {"model": {"name": loaded.name, "source": loaded.source, "train_rain": loaded.train_rain,
                        "in_channels": loaded.in_channels, "n_params": loaded.n_params,
                        "config": loaded.config.to_dict() if loaded.config else None,
                        "key": loaded.config.key() if loaded.config else None, "weights": loaded.weights},
              "settings": settings, "headline": h, "summary": summary,
              "provenance": store.provenance(params=settings)}
    store.write_json(out / "report.json", record, strict=False, what="report record")
    setting_lines = "\n".join(f"- {k}: {v}" for k, v in settings.items())
    page = f"""# Report card: {loaded.name}

{loaded.describe()}. Source: `{loaded.source}`.{_weights_line(loaded.weights)}

**Summary.** {_sentence(h, loaded)}

{_markdown_table(summary)}

![report card](report.png)

How to read it: *removal* is the share of the rain's squared error removed inside the rain mask
(1 = all, 0 = none: the identity scores exactly 0; < 0 = worse than the input); *background PSNR*
scores the pixels away from the rain (damage to the background); PSNR-Y/SSIM-Y are whole-image
scores on the BT.601 Y channel, as deraining tables report them. Intervals are 95% bootstrap
intervals over the test images of this one model. Presets are synthetic rain ranges
(`derain_utils.synth.rain.PRESETS`), marked in-distribution or OOD against the training rain; perspective
rain is synthetic and is not real rain; paired sets use a rain mask estimated from rainy − target.

Settings:
{setting_lines}
"""
    (out / "report.md").write_text(page, encoding="utf-8")


def _weights_line(w: Mapping[str, Any] | None) -> str:
    return "" if not w else (f" Weights: `{Path(w['file']).name}` ({w['bytes']:,} bytes, sha256 `{w['sha256']}`)"
                             + (f", the published file of {w['url']}" if w.get("url") else "") + ".")


def _chroma(img: np.ndarray) -> float:
    """Mean channel spread of an RGB image (0 for gray): picks a colourful example."""
    a = np.asarray(img, np.float32)
    return float((a.max(-1) - a.min(-1)).mean()) if a.ndim == 3 and a.shape[-1] == 3 else 0.0


# --------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=("derain-report" if Path(sys.argv[0]).name.startswith("derain-report")
              else "python -m derain_utils.book.report"),
        description="Score any deraining model on in-distribution, out-of-distribution and real rain, and write "
                    "a one-page report card (report.md + report.png).")
    ap.add_argument("model", help="cache entry folder, model.pt, config.json, module:callable / file.py:callable, "
                                  f"or a published network ({', '.join(published.PUBLISHED)})")
    ap.add_argument("--weights", default=None, help="weights file loaded strictly into a module:callable model")
    ap.add_argument("--data", nargs="+", default=[], metavar="PAIRED",
                    help="paired sets (folders of input/ and target/ images, or set names under the data root)")
    ap.add_argument("--real", nargs="+", default=[], metavar="FOLDER",
                    help="folders of real rainy photos without ground truth (scored with no-GT proxies)")
    ap.add_argument("--out", type=Path, default=None,
                    help="output folder (default: <runs>/reports/<model name>/<UTC stamp>)")
    ap.add_argument("--train-rain", default=None, help="preset the model was trained on (default: the config's, "
                                                       "else 'small')")
    ap.add_argument("--background", default="skimage",
                    help="source of the held-out test backgrounds (default: the embedded skimage photos)")
    ap.add_argument("--presets", nargs="+", default=None, help="rain presets to test (default: all)")
    ap.add_argument("--n-test", type=int, default=8, help="held-out test images per preset (default 8)")
    ap.add_argument("--test-size", type=int, default=64, help="side of the preset test crops, px (default 64)")
    ap.add_argument("--perspective-size", type=int, default=128,
                    help="side of the perspective-rain crops, px; 0 = skip (default 128)")
    ap.add_argument("--seed", type=int, default=1234, help="evaluation seed of the synthetic rain (default 1234)")
    ap.add_argument("--real-limit", type=int, default=0, help="photos per --real folder, 0 = all")
    ap.add_argument("--real-long-side", type=int, default=0, help="downscale real photos to this long side, 0 = no")
    ap.add_argument("--data-dir", default=None, help="data root for set names (default $DERAIN_DATA)")
    ap.add_argument("--cache-root", default=None, help="model cache for config.json (default $DERAIN_RUNS/cache)")
    ap.add_argument("--train", action="store_true", help="train a config.json whose model is not cached")
    ap.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    return ap


def _no_repeats(option: str, items: Sequence[Any] | None, data_dir: str | None) -> None:
    """A set, folder or preset named twice would be scored twice (n doubled, intervals too narrow)."""
    root = data_root(data_dir) if option in ("--data", "--real") and items else None
    seen: dict[str, str] = {}
    for x in items or ():
        text = str(x)
        path = Path(text).expanduser()
        if not path.exists() and root is not None and (root / text).exists():
            path = root / text
        key = os.path.realpath(path) if path.exists() else text
        if key in seen:
            same = "" if seen[key] == text else f" (as {seen[key]!r} and {text!r}, the same {key!r})"
            raise ValueError(f"{option} names {text!r} twice{same}: it would be scored twice")
        seen[key] = text


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns 0 on success, 2 on bad input (the message names it)."""
    parser = _parser()
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    try:
        if args.out is not None and args.out.exists() and not args.out.is_dir():
            raise ValueError(f"--out {str(args.out)!r} is a file, not a folder")
        for option, items in (("--data", args.data), ("--real", args.real), ("--presets", args.presets)):
            _no_repeats(option, items, args.data_dir)
        loaded = load_model(args.model, cache_root=args.cache_root, data_dir=args.data_dir, train=args.train,
                            train_rain=args.train_rain, weights=args.weights)
        device = training.select_device(args.device)
        examples: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        df = evaluate(loaded, presets=args.presets, background=args.background, n_test=args.n_test,
                      test_size=args.test_size, perspective_size=args.perspective_size, eval_seed=args.seed,
                      paired=args.data, real=args.real, real_limit=args.real_limit or None,
                      real_long_side=args.real_long_side or None, data_dir=args.data_dir, device=device,
                      examples=examples)
        out = args.out or store.runs_root() / "reports" / loaded.name.replace(":", "-") / store.utc_stamp()
        settings = {"test backgrounds": f"held-out {args.background} test crops ({args.n_test} x {args.test_size} px; "
                                        f"perspective rain on {args.perspective_size} px crops)",
                    "evaluation seed": args.seed, "paired sets": [str(p) for p in args.data] or "none",
                    "real photo folders": [str(p) for p in args.real] or "none", "device": str(device),
                    "wall_s": round(time.perf_counter() - t0, 1)}
        paths = write_report(df, loaded, out, settings=settings, examples=examples)
    except (ValueError, OSError) as err:  # OSError: store.StoreError, FileNotFoundError, an unwritable --out, a full disk
        print(f"{parser.prog}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: one line, no traceback; the card is written whole or not at all
        print(f"{parser.prog}: interrupted; no report card written", file=sys.stderr)
        return 130
    h = headline(summarize(df))
    print(_sentence(h, loaded))
    print(f"report card: {paths['md']} (figure {paths['png']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
