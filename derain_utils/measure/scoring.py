"""The one scorer: the test inputs of every rain preset, and every model scored on them the same way.

:func:`make_eval_set` synthesises the test rain once per (preset, image) from a seed that depends
only on ``(seed, preset name, image index)``, so every model is scored on identical inputs.
:func:`evaluate` applies a network (:func:`derain_utils.nets.training.predict`: eval mode, no
gradients, clamped to [0, 1]) and returns a tidy table (one row per image x preset, plus a
``"clean"`` row per image: the model on the rain-free background) with full-image PSNR/SSIM (RGB
and Y), the input's PSNR/SSIM, and the *decoupled* metrics of :mod:`derain_utils.measure.metrics`
(error inside / outside the rain mask, fraction of rain removed), with ``in_distribution`` telling
whether the test rain overlaps the training rain.

Experiments, learning curves, probes and the model explorer all score through :func:`evaluate`; the
fixed-filter baselines give the same columns by the same metrics
(:func:`derain_utils.measure.baselines.baseline_rows`, checked against :func:`evaluate` by a test).
Anything that maps (N, C, H, W) to (N, C, H, W) can be scored: a trained network, or a fixed filter
wrapped as a module (:func:`derain_utils.measure.baselines.as_module`).
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from derain_utils.measure import metrics
from derain_utils.nets.training import _as_batch, _check_int, predict
from derain_utils.synth import rain

__all__ = ["EVAL_COLUMNS", "EvalInputs", "make_eval_set", "evaluate", "image_names"]

#: Columns of :func:`evaluate`, in order.
EVAL_COLUMNS: tuple[str, ...] = (
    "image", "preset", "in_distribution", "ood_fields",
    "psnr", "ssim", "psnr_y", "ssim_y", "input_psnr", "input_ssim",
    "rain_mse", "rain_psnr", "bg_mse", "bg_psnr", "removal", "mask_fraction",
)


_DECOUPLED_COLUMNS: tuple[str, ...] = ("rain_mse", "rain_psnr", "bg_mse", "bg_psnr", "removal", "mask_fraction")


@dataclass
class EvalInputs:
    """The test inputs of one rain preset (all on the CPU).

    Attributes:
        spec: the preset's RainSpec.
        background: (n, C, H, W) clean test images.
        rain: (n, 1, H, W) rain layers in [0, 1].
        mask: (n, 1, H, W) bool, ``rain > rain.MASK_THRESHOLD``.
        rainy: (n, C, H, W) ``clip(background + rain)``.
    """

    spec: rain.RainSpec
    background: Tensor
    rain: Tensor
    mask: Tensor
    rainy: Tensor


def _eval_seed(seed: int, preset: str, index: int) -> int:
    """A 63-bit seed that depends only on (seed, preset name, image index) (stable across runs/platforms).

    The salt names the module this function was first written in; it is frozen, since changing it
    would change every test input (and every cached score) of the monograph.
    """
    digest = hashlib.sha256(f"derain_utils.training.eval|{seed}|{preset}|{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _resolve_presets(presets: str | rain.RainSpec | Iterable[str | rain.RainSpec]) -> list[rain.RainSpec]:
    if isinstance(presets, (str, rain.RainSpec)):
        presets = [presets]
    try:
        items = list(presets)
    except TypeError as exc:
        raise ValueError(f"presets must be a preset name, a RainSpec or a list of them, got {presets!r}") from exc
    if not items:
        raise ValueError("presets is empty; give at least one rain preset name or RainSpec")
    specs = []
    for p in items:
        try:
            specs.append(rain.get_spec(p))
        except ValueError as exc:
            raise ValueError(f"presets: {exc}") from exc
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"presets: duplicate preset name(s) {dup}; give custom RainSpecs distinct names")
    if "clean" in names:
        raise ValueError("presets: the name 'clean' is reserved for the rain-free rows of evaluate()")
    return specs


def make_eval_set(
    test_images: Tensor | np.ndarray,
    presets: str | rain.RainSpec | Iterable[str | rain.RainSpec],
    *,
    seed: int = 0,
) -> dict[str, EvalInputs]:
    """Synthesise the rainy test inputs of every preset, identical for every model.

    The rain of (preset, image ``i``) is drawn from its own seed, a hash of
    ``(seed, preset name, i)``: it does not depend on the other presets, on the
    number of test images, or on any global RNG. Specs are used as given, in
    pixels (not rescaled with the image size), so the test rain has the same
    pixel-level statistics as the training rain of the same preset.

    Args:
        test_images: (n, C, H, W) float in [0, 1] (or numpy (n, H, W, C)).
        presets: preset names / RainSpecs (a single one also works); unknown
            names raise ValueError listing the valid ones.
        seed: the evaluation seed.

    Returns:
        ``{preset name: EvalInputs}`` in the given order.
    """
    seed = _check_int("seed", seed, 0)
    images = _as_batch(test_images, "test_images").cpu()
    specs = _resolve_presets(presets)
    n, _, h, w = images.shape
    out: dict[str, EvalInputs] = {}
    for spec in specs:
        layers, masks = [], []
        for i in range(n):
            r, m = rain.synthesize(spec, (h, w), 1, _eval_seed(seed, spec.name, i), device="cpu")
            layers.append(r)
            masks.append(m)
        r = torch.cat(layers)
        m = torch.cat(masks)
        out[spec.name] = EvalInputs(spec=spec, background=images, rain=r, mask=m, rainy=rain.add_rain(images, r))
    return out


def _whole_image_scores(
    background: Tensor, rainy: Tensor | None, derained: Tensor, ssim: bool = True
) -> dict[str, float]:
    """psnr/ssim (all channels), psnr_y/ssim_y (BT.601 Y; NaN for gray) and input_psnr/input_ssim of one image.

    ``rainy=None`` means the input was the background itself: input_psnr = PSNR_CAP, input_ssim = 1.
    ``ssim=False`` leaves the SSIM columns NaN.
    """
    rgb = background.shape[0] == 3
    nan = math.nan
    return {
        "psnr": metrics.psnr(background, derained),
        "ssim": metrics.ssim(background, derained) if ssim else nan,
        "psnr_y": metrics.psnr(background, derained, y_channel=True) if rgb else nan,
        "ssim_y": metrics.ssim(background, derained, y_channel=True) if rgb and ssim else nan,
        "input_psnr": metrics.PSNR_CAP if rainy is None else metrics.psnr(background, rainy),
        "input_ssim": (1.0 if rainy is None else metrics.ssim(background, rainy)) if ssim else nan,
    }


def image_names(names: Sequence[str] | None, n: int) -> list[str]:
    """One name per test image: ``names`` as strings, or ``img000``, ``img001``, ...

    A count that does not match ``n`` raises a ValueError.
    """
    if names is None:
        return [f"img{i:03d}" for i in range(n)]
    out = [str(x) for x in names]
    if len(out) != n:
        raise ValueError(f"names has {len(out)} entries but there are {n} test images")
    return out


def evaluate(
    model: nn.Module,
    test_images: Tensor | np.ndarray | Mapping[str, EvalInputs],
    presets: str | rain.RainSpec | Iterable[str | rain.RainSpec] | None = None,
    *,
    seed: int = 0,
    device: str | torch.device | None = None,
    train_spec: str | rain.RainSpec | None = "small",
    names: list[str] | None = None,
    batch_size: int = 32,
    ssim: bool = True,
) -> pd.DataFrame:
    """Score ``model`` on every test image under every rain preset, plus on the clean images.

    This is the one scorer of the package: experiments, learning curves, probes and the
    model explorer all score through it.

    Args:
        model: the deraining network.
        test_images: (n, C, H, W) clean test backgrounds in [0, 1] (or numpy (n, H, W, C)),
            or the inputs themselves: ``{preset: EvalInputs}`` from :func:`make_eval_set`
            (then ``presets`` must be None and ``seed`` is not used).
        presets: rain preset names / RainSpecs (see :func:`make_eval_set`).
        seed: evaluation seed (the same seed gives every model the same inputs).
        device: see :func:`predict`.
        train_spec: the rain the model was trained on; decides ``in_distribution``
            and ``ood_fields``. None leaves both unknown (NA).
        names: one name per test image (default ``"img000"``, ``"img001"``, ...).
        batch_size: images per forward pass.
        ssim: compute the SSIM columns (the slowest part); False leaves them NaN, e.g. when
            scoring many times during training.

    Returns:
        A tidy DataFrame with the columns :data:`EVAL_COLUMNS`: one row per
        (preset, image) in the given preset order, then one ``preset="clean"`` row
        per image (the model applied to the rain-free background; there the
        ``input_*`` columns compare the background with itself, and the decoupled
        columns, ``in_distribution`` and ``ood_fields`` are NA).
        ``in_distribution`` is ``rain.overlaps(train_spec, preset)``; ``ood_fields``
        the comma-joined fields on which the preset leaves the training ranges.
        PSNR/SSIM are :func:`derain_utils.measure.metrics.psnr` / :func:`~derain_utils.measure.metrics.ssim`
        (scikit-image, data range 1, identical images capped at ``metrics.PSNR_CAP``;
        the Y columns are NaN for gray images), exactly the whole-image part of
        :func:`~derain_utils.measure.metrics.evaluate_pair`; the decoupled columns come from
        :func:`~derain_utils.measure.metrics.decoupled_batch` with the true rain mask
        (vectorised, same definitions as ``evaluate_pair``).
    """
    if isinstance(test_images, Mapping):
        if presets is not None:
            raise ValueError("presets must be None when test_images is an eval set (it holds its presets)")
        if not test_images:
            raise ValueError("the eval set is empty: nothing to score")
        eval_set = dict(test_images)
    else:
        if presets is None:
            raise ValueError("presets is missing: name the rain presets to score test_images on")
        eval_set = make_eval_set(test_images, presets, seed=seed)
    first = next(iter(eval_set.values()))
    clean = first.background
    n = clean.shape[0]
    names = image_names(names, n)
    train = rain.get_spec(train_spec) if train_spec is not None else None

    # one pass of the model over all inputs: [preset_1 ... preset_k, clean]
    inputs = torch.cat([e.rainy for e in eval_set.values()] + [clean])
    derained = predict(model, inputs, device=device, batch_size=batch_size)
    if derained.shape != inputs.shape:
        raise ValueError(f"model output shape {tuple(derained.shape)} != input shape {tuple(inputs.shape)}")

    rows: list[dict[str, Any]] = []
    for k, (pname, e) in enumerate(eval_set.items()):
        d = derained[k * n : (k + 1) * n]
        if train is not None:
            in_dist: Any = bool(rain.overlaps(train, e.spec))
            ood: Any = ",".join(rain.ood_fields(train, e.spec))
        else:
            in_dist, ood = pd.NA, None
        dec = {key: v.cpu().tolist() for key, v in metrics.decoupled_batch(e.background, e.rainy, d, e.mask).items()}
        for i in range(n):
            rows.append({"image": names[i], "preset": pname, "in_distribution": in_dist, "ood_fields": ood,
                         **_whole_image_scores(e.background[i], e.rainy[i], d[i], ssim),
                         **{key: float(dec[key][i]) for key in _DECOUPLED_COLUMNS}})
    d = derained[len(eval_set) * n :]
    for i in range(n):
        scores = _whole_image_scores(clean[i], None, d[i], ssim)
        rows.append({"image": names[i], "preset": "clean", "in_distribution": pd.NA, "ood_fields": None,
                     **scores,
                     **{key: float("nan") for key in _DECOUPLED_COLUMNS}})
    df = pd.DataFrame(rows, columns=list(EVAL_COLUMNS))
    df["in_distribution"] = df["in_distribution"].astype("boolean")
    return df
