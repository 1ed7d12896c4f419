"""Reading what a network learned: constructed outputs, probes, and what whole-image PSNR is made of.

Whole-image PSNR scores a derained output D against the background B with one
number, so it cannot say *why* an output is poor: rain left in place, or a
background rebuilt badly. The decoupled metrics of :mod:`derain_utils.measure.metrics`
(``removal`` inside the rain mask, ``bg_psnr`` outside it) separate the two. This
module puts them to work in three ways.

1. **Two failures, one PSNR** (:func:`equal_psnr_outputs`). From one (B, R) pair it
   builds an output that leaves a fraction of the rain in place, and an output that
   removes all of the rain but blends the background towards a blurred copy, by the
   amount that gives exactly the same whole-image PSNR. Their decoupled scores differ
   completely.

2. **Probes** (:func:`make_probes`, :func:`run_probes`): inputs that isolate one
   ability of a trained network, beyond the paper's evaluation.

   ============  =====================================================================
   ``clean``     held-out backgrounds of the kind it was trained on, without rain:
                 does it leave a clean image alone? (PSNR of output vs input)
   ``grey_rain`` rain alone on a flat grey image (:data:`GREY_LEVEL`), for the training
                 rain and unseen rains: with no background to explain, does it remove
                 rain it never saw? (removal ratio)
   ``unseen``    backgrounds of a category it never saw, without rain: does it damage
                 unfamiliar content? (PSNR of output vs input)
   ============  =====================================================================

   A network that learned the *rain* removes the training rain from grey and little
   else; one that learned the *background* ("grey is smooth; anything else is rain")
   removes any rain from grey.

3. **What whole-image PSNR is made of.** :func:`error_share` gives, per image, the
   exact share of the whole-image squared error that lies inside the rain mask
   (``mask_fraction * rain_mse / mse``). :func:`r2_decomposition` asks, across models,
   how much of the variation in whole-image PSNR linear models on the decoupled
   metrics explain: R^2 of each metric alone, its *unique* R^2 (what the full model
   loses without it: the squared semi-partial correlation) and its Shapley (LMG)
   share, the average gain in R^2 from adding it over all orders of entry, which
   splits the full R^2 exactly between the metrics.

:func:`derain_utils.lab.profiles.cached_results` collects the models of the experiments cache that
were trained at a profile's sizes (those of notebooks 01 and 02 and any other sweep), so the
decomposition can cover every model there is.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.ndimage
import torch
from torch import Tensor, nn

from derain_utils.measure import metrics, scoring
from derain_utils.nets import training
from derain_utils.synth import rain

__all__ = [
    "GREY_LEVEL",
    "PROBES",
    "equal_psnr_outputs",
    "ProbeSet",
    "make_probes",
    "run_probes",
    "probe_outputs",
    "grey_outcomes",
    "error_share",
    "r2_decomposition",
]

GREY_LEVEL: float = 0.4
"""Value of the flat grey image of the ``grey_rain`` probe; rain intensities reach 0.6-0.9,
so 0.4 keeps most streaks below the clip at 1."""

PROBES: dict[str, str] = {
    "clean": "own kind of background, no rain: PSNR of the output against the input (dB)",
    "grey_rain": "rain alone on a flat grey image: removal ratio (1 = all removed)",
    "unseen": "background of a category never seen in training, no rain: PSNR of output vs input (dB)",
}
"""The probes of :func:`run_probes` and what each measures."""

# --------------------------------------------------------------------------- constructed outputs


def _hwc(x: Any, name: str) -> np.ndarray:
    """A float64 (H, W, C) array from numpy (H, W[, C]) or torch (C, H, W) / (H, W)."""
    if isinstance(x, Tensor):
        t = x.detach().cpu().double()
        if t.ndim == 3:
            t = t.permute(1, 2, 0)
        a = t.numpy()
    else:
        a = np.asarray(x, dtype=np.float64)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3):
        raise ValueError(f"{name} must be an image (H, W), (H, W, C) numpy or (C, H, W) torch with C in {{1, 3}}, "
                         f"got shape {tuple(np.shape(x))}")
    if not np.all(np.isfinite(a)) or a.min() < 0.0 or a.max() > 1.0:
        raise ValueError(f"{name} must hold finite values in [0, 1]")
    return a


def equal_psnr_outputs(
    background: Any, rain_layer: Any, *, leave: float = 0.5, blur_sigma: float = 2.0
) -> dict[str, Any]:
    """Two derained outputs of ``clip(B + R)`` with equal whole-image PSNR and opposite failures.

    * ``leaves_rain`` = ``clip(B + leave * R)``: the background is untouched, a fraction
      ``leave`` of the rain layer is left in place (removal about ``1 - leave**2``).
    * ``blurs_background`` = ``B + t (G(B) - B)``, with ``G`` a Gaussian blur of
      ``blur_sigma`` px per channel: every streak is gone, and the background is
      blended towards its blurred copy by the amount ``t`` in (0, 1] that gives the
      same whole-image PSNR. Its error is ``t (G(B) - B)``, so its MSE is
      ``t**2 * MSE(G(B), B)``: the 1-D matching has the closed-form solution
      ``t = sqrt(MSE(leaves_rain) / MSE(G(B), B))`` (no iterative search needed).

    Args:
        background: B, [0, 1]: numpy (H, W) / (H, W, C) or torch (C, H, W).
        rain_layer: R, [0, 1], one channel: numpy (H, W) / (H, W, 1) or torch (1, H, W).
        leave: fraction of the rain left by ``leaves_rain``, in (0, 1).
        blur_sigma: std of the Gaussian blur, px (> 0).

    Returns:
        dict with float32 (H, W, C) images ``background``, ``rainy``, ``leaves_rain``,
        ``blurs_background``; the scalars ``leave``, ``blend`` (``t``), ``blur_sigma``,
        ``psnr`` (the common whole-image PSNR, dB) and ``input_psnr`` (the rainy input's).

    Raises:
        ValueError: bad shapes/values, ``leave`` or ``blur_sigma``; no rain; or a blur too
            weak to lose as much as the rain left in place (even at ``t = 1``): then
            use a larger ``blur_sigma`` or a smaller ``leave``.
    """
    for name, v, ok in (("leave", leave, lambda x: 0 < x < 1), ("blur_sigma", blur_sigma, lambda x: x > 0)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not ok(v):
            raise ValueError(f"{name} must be a number {'in (0, 1)' if name == 'leave' else '> 0'}, got {v!r}")
    b = _hwc(background, "background")
    r = _hwc(rain_layer, "rain_layer")
    if r.shape[-1] != 1 or r.shape[:2] != b.shape[:2]:
        raise ValueError(f"rain_layer must be one channel of the background's size {b.shape[:2]}, got {r.shape}")
    rainy = np.clip(b + r, 0.0, 1.0)
    leaves = np.clip(b + leave * r, 0.0, 1.0)
    target = float(((leaves - b) ** 2).mean())
    if target <= 0:
        raise ValueError("rain_layer adds nothing to this background (no rain, or all of it clipped)")
    blurred = scipy.ndimage.gaussian_filter(b, sigma=(blur_sigma, blur_sigma, 0), mode="reflect")
    full = float(((blurred - b) ** 2).mean())
    if full < target:
        raise ValueError(f"blur_sigma={blur_sigma} px changes this background less (MSE {full:.3g}) than "
                         f"leave={leave} of the rain does (MSE {target:.3g}): use a larger blur_sigma or a smaller "
                         "leave")
    blend = math.sqrt(target / full)
    blurs = b + blend * (blurred - b)
    f32 = lambda a: a.astype(np.float32)  # noqa: E731
    return {"background": f32(b), "rainy": f32(rainy), "leaves_rain": f32(leaves), "blurs_background": f32(blurs),
            "leave": float(leave), "blend": blend, "blur_sigma": float(blur_sigma),
            "psnr": float(metrics.psnr(b, leaves)), "input_psnr": float(metrics.psnr(b, rainy))}


# --------------------------------------------------------------------------- probes


@dataclass
class ProbeSet:
    """The inputs of :func:`run_probes` (torch, CPU, [0, 1]).

    Attributes:
        own: (n, C, H, W) held-out clean backgrounds of the model's training kind.
        unseen: (m, C, H, W) clean backgrounds of a category the model never saw.
        grey: ``{preset: EvalInputs}``: rain on a flat :data:`GREY_LEVEL` image
            (:func:`derain_utils.measure.scoring.make_eval_set`: the same rain for every model).
        own_names, unseen_names: one name per image. unseen_source: the unseen category's name.
    """

    own: Tensor
    unseen: Tensor
    grey: dict[str, scoring.EvalInputs]
    own_names: list[str]
    unseen_names: list[str]
    unseen_source: str


def _batch(x: Any, name: str) -> Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2) if x.ndim == 4 else x))
    if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] not in (1, 3) or x.shape[0] < 1:
        raise ValueError(f"{name} must be a non-empty batch (N, C, H, W) tensor or (N, H, W, C) array with C in "
                         f"{{1, 3}}, got {tuple(getattr(x, 'shape', ()))}")
    x = x.detach().cpu().float()
    if not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise ValueError(f"{name} must hold finite values in [0, 1]")
    return x


def make_probes(
    own: Any,
    unseen: Any,
    presets: Sequence[str | rain.RainSpec],
    *,
    seed: int = 0,
    grey_level: float = GREY_LEVEL,
    n_grey: int | None = None,
    own_names: Sequence[str] | None = None,
    unseen_names: Sequence[str] | None = None,
    unseen_source: str = "unseen",
) -> ProbeSet:
    """Build the probe inputs shared by every model.

    Args:
        own: held-out clean test backgrounds of the models' training kind, (n, C, H, W)
            tensor or (n, H, W, C) array (e.g. ``BackgroundSplit.test_tensor()``).
        unseen: clean backgrounds of a category no probed model was trained on (same C).
        presets: rain presets for the grey probe (the training rain and unseen ones).
        seed: seed of the grey probe's rain (as ``make_eval_set``: per preset and image).
        grey_level: value of the flat grey image, in (0, 1).
        n_grey: number of grey images (default: as many as ``own``); same size as ``own``.
        own_names, unseen_names: image names (default ``own000``..., ``unseen000``...).
        unseen_source: name of the unseen category (for tables).

    Raises:
        ValueError: bad batches, channel mismatch, ``grey_level`` outside (0, 1), wrong name counts.
    """
    own_t, unseen_t = _batch(own, "own"), _batch(unseen, "unseen")
    if own_t.shape[1] != unseen_t.shape[1]:
        raise ValueError(f"own has {own_t.shape[1]} channels but unseen has {unseen_t.shape[1]}")
    if isinstance(grey_level, bool) or not isinstance(grey_level, (int, float)) or not 0 < grey_level < 1:
        raise ValueError(f"grey_level must be a number in (0, 1), got {grey_level!r}")
    n, c, h, w = own_t.shape
    n_grey = n if n_grey is None else n_grey
    if isinstance(n_grey, bool) or not isinstance(n_grey, (int, np.integer)) or n_grey < 1:
        raise ValueError(f"n_grey must be an integer >= 1, got {n_grey!r}")
    grey = torch.full((int(n_grey), c, h, w), float(grey_level))
    own_names = [f"own{i:03d}" for i in range(n)] if own_names is None else [str(x) for x in own_names]
    unseen_names = ([f"unseen{i:03d}" for i in range(unseen_t.shape[0])] if unseen_names is None
                    else [str(x) for x in unseen_names])
    if len(own_names) != n:
        raise ValueError(f"own_names has {len(own_names)} entries for {n} images")
    if len(unseen_names) != unseen_t.shape[0]:
        raise ValueError(f"unseen_names has {len(unseen_names)} entries for {unseen_t.shape[0]} images")
    return ProbeSet(own=own_t, unseen=unseen_t, grey=scoring.make_eval_set(grey, list(presets), seed=seed),
                    own_names=own_names, unseen_names=unseen_names, unseen_source=str(unseen_source))


def run_probes(
    model: nn.Module,
    probes: ProbeSet,
    *,
    train_spec: str | rain.RainSpec = rain.TRAIN_PRESET,
    device: str | torch.device | None = None,
) -> pd.DataFrame:
    """Score ``model`` on every probe (module docstring).

    Returns:
        One row per probe input: ``probe`` (a :data:`PROBES` key), ``preset`` (the rain
        preset; ``"none"`` for the rain-free probes), ``image``, ``in_distribution``
        (NA for rain-free), ``psnr`` (output vs the clean reference: the input itself,
        or the grey image), and for ``grey_rain`` ``removal``, ``bg_psnr``, ``rain_psnr``
        (NaN elsewhere).
    """
    if not isinstance(probes, ProbeSet):
        raise ValueError(f"probes must be a ProbeSet (make_probes), got {type(probes).__name__}")
    frames = []
    for probe, images, names in (("clean", probes.own, probes.own_names),
                                 ("unseen", probes.unseen, probes.unseen_names)):
        out = training.predict(model, images, device=device)
        frames.append(pd.DataFrame({"probe": probe, "preset": "none", "image": names, "in_distribution": pd.NA,
                                    "psnr": [metrics.psnr(a, b) for a, b in zip(images, out)], "removal": np.nan,
                                    "bg_psnr": np.nan, "rain_psnr": np.nan}))
    n_grey = next(iter(probes.grey.values())).rainy.shape[0]
    grey = scoring.evaluate(model, probes.grey, train_spec=train_spec, device=device,
                            names=[f"grey{i:03d}" for i in range(n_grey)], ssim=False)
    grey = grey[grey["preset"] != "clean"].copy()
    grey.insert(0, "probe", "grey_rain")
    frames.append(grey[["probe", "preset", "image", "in_distribution", "psnr", "removal", "bg_psnr", "rain_psnr"]])
    df = pd.concat(frames, ignore_index=True)
    df["in_distribution"] = df["in_distribution"].astype("boolean")
    return df


def probe_outputs(model: nn.Module, probes: ProbeSet, index: int = 0, *,
                  device: str | torch.device | None = None) -> dict[str, tuple[Tensor, Tensor]]:
    """The input and the output of ``model`` for image ``index`` of every probe, for figures.

    Returns:
        ``{"clean": (input, output), "unseen": (...), "grey_<preset>": (...), ...}`` with
        (C, H, W) CPU tensors.
    """
    items: dict[str, Tensor] = {"clean": probes.own, "unseen": probes.unseen}
    items.update({f"grey_{p}": e.rainy for p, e in probes.grey.items()})
    out = {}
    for k, batch in items.items():
        if not 0 <= index < batch.shape[0]:
            raise ValueError(f"index={index} is out of range for the {batch.shape[0]} images of probe {k!r}")
        x = batch[index:index + 1]
        out[k] = (x[0], training.predict(model, x, device=device)[0])
    return out


def grey_outcomes(rows: pd.DataFrame, model_cols: Sequence[str] = ("key",)) -> pd.DataFrame:
    """Per model, the grey-rain probe as one number per rain: what it removes with no background at all.

    Args:
        rows: :func:`run_probes` rows of several models, with the ``model_cols`` added
            (other probes are ignored).
        model_cols: the columns that identify a model (carried to the output).

    Returns:
        One row per model: ``removal`` (removal of the unseen rains on grey: the mean over
        the out-of-distribution presets of each preset's mean over the grey images, equal
        weight per preset, as :mod:`derain_utils.measure.outcome` pools them), ``removal_train``
        (the same over the in-distribution presets), ``removal_ratio`` (removal /
        removal_train; NaN when removal_train <= 0) and ``gap`` (removal_train - removal).
    """
    model_cols = [model_cols] if isinstance(model_cols, str) else list(model_cols)
    need = [*model_cols, "probe", "preset", "in_distribution", "removal"]
    missing = [c for c in need if c not in rows.columns]
    if missing:
        raise ValueError(f"rows lack column(s) {missing}; pass run_probes rows with the model columns added")
    grey = rows[rows["probe"] == "grey_rain"]
    if grey.empty:
        raise ValueError("rows hold no grey_rain probe rows")
    flag = grey["in_distribution"].astype("boolean")
    if flag.isna().any():
        raise ValueError("grey_rain rows with an unknown in_distribution: score the probes with train_spec")
    per = grey.assign(_id=flag.to_numpy(bool)).groupby([*model_cols, "_id", "preset"], sort=False, dropna=False)[
        "removal"].mean()
    pooled = per.groupby(level=[*range(len(model_cols)), len(model_cols)], sort=False).mean().unstack("_id")
    for v in (True, False):
        if v not in pooled.columns:
            raise ValueError(f"the grey probe holds no {'training' if v else 'unseen'} rain preset")
    out = pd.DataFrame({"removal": pooled[False], "removal_train": pooled[True]})
    rt = out["removal_train"].to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["removal_ratio"] = np.where(rt > 0, out["removal"].to_numpy(float) / rt, np.nan)
    out["gap"] = out["removal_train"] - out["removal"]
    return out.reset_index()


# --------------------------------------------------------------------------- decomposing whole-image PSNR


def error_share(df: pd.DataFrame) -> pd.Series:
    """Share of each image's whole-image squared error that lies inside the rain mask.

    ``mask_fraction * rain_mse / mse`` with ``mse = 10 ** (-psnr / 10)``: exact, since
    ``rain_mse`` averages the same squared errors over the mask pixels and channels
    (the rest of the error lies in the background region and the dilated margin).
    NaN where there is no rain (``"clean"`` rows) or the PSNR is at the cap.

    Args:
        df: evaluation rows with ``psnr``, ``rain_mse``, ``mask_fraction``.

    Returns:
        Series ``rain_error_share`` aligned with ``df``, in [0, 1].
    """
    missing = [c for c in ("psnr", "rain_mse", "mask_fraction") if c not in df.columns]
    if missing:
        raise ValueError(f"df lacks column(s) {missing}")
    p = pd.to_numeric(df["psnr"], errors="coerce").to_numpy(float)
    mse = np.where(p < metrics.PSNR_CAP, 10.0 ** (-p / 10.0), np.nan)
    share = df["mask_fraction"].to_numpy(float) * df["rain_mse"].to_numpy(float) / mse
    return pd.Series(np.clip(share, 0.0, 1.0), index=df.index, name="rain_error_share")


def _r2(x: np.ndarray, y: np.ndarray) -> float:
    """R^2 of the least-squares fit y ~ 1 + x (x: (n, k), k may be 0)."""
    tss = float(((y - y.mean()) ** 2).sum())
    if tss <= 0:
        return math.nan
    design = np.column_stack([np.ones(len(y)), x]) if x.shape[1] else np.ones((len(y), 1))
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    rss = float(((y - design @ coef) ** 2).sum())
    return max(0.0, 1.0 - rss / tss)


def r2_decomposition(
    df: pd.DataFrame,
    y: str = "psnr",
    predictors: Sequence[str] = ("removal", "bg_psnr"),
    *,
    by: str | Sequence[str] | None = "preset",
) -> pd.DataFrame:
    """How much of the variation of ``y`` linear models on the ``predictors`` explain, per group.

    For each group (rows with all values finite): ``r2`` of ``y ~ 1 + predictors``
    (ordinary least squares); per predictor ``p``: ``r2_alone_<p>`` (``y ~ 1 + p``),
    ``unique_<p>`` (``r2`` minus the R^2 without ``p``: its squared semi-partial
    correlation, the part only it explains) and ``share_<p>``, its Shapley / LMG share
    (the gain in R^2 from adding ``p``, averaged over all orders of entry; the shares
    sum to ``r2``). A group with fewer than ``len(predictors) + 2`` rows, or a constant
    ``y``, gives NaN.

    Args:
        df: one row per observation (e.g. one model x preset, averaged over images).
        y: the response column; predictors: the explaining columns (>= 1, distinct).
        by: grouping column(s); None = one group.

    Returns:
        One row per group: ``by``, ``n``, ``r2``, then the three columns per predictor.
    """
    predictors = list(predictors)
    if not predictors or len(set(predictors)) != len(predictors):
        raise ValueError(f"predictors must be distinct column names (at least one), got {predictors}")
    by_cols = [] if by is None else ([by] if isinstance(by, str) else list(by))
    missing = [c for c in [y, *predictors, *by_cols] if c not in df.columns]
    if missing:
        raise ValueError(f"df lacks column(s) {missing}")
    k = len(predictors)
    groups = df.groupby(by_cols, sort=True) if by_cols else [((), df)]
    rows = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        vals = g[[y, *predictors]].apply(pd.to_numeric, errors="coerce").to_numpy(float)
        vals = vals[np.all(np.isfinite(vals), axis=1)]
        row: dict[str, Any] = dict(zip(by_cols, key))
        row["n"] = int(len(vals))
        r2: dict[frozenset, float] = {}
        if len(vals) >= k + 2:
            yv, xv = vals[:, 0], vals[:, 1:]
            for size in range(k + 1):
                for subset in itertools.combinations(range(k), size):
                    r2[frozenset(subset)] = 0.0 if size == 0 else _r2(xv[:, list(subset)], yv)
        full = r2.get(frozenset(range(k)), math.nan)
        row["r2"] = full
        for j, p in enumerate(predictors):
            if not r2 or math.isnan(full):
                row.update({f"r2_alone_{p}": math.nan, f"unique_{p}": math.nan, f"share_{p}": math.nan})
                continue
            others = [i for i in range(k) if i != j]
            shapley = 0.0
            for size in range(k):
                weight = math.factorial(size) * math.factorial(k - size - 1) / math.factorial(k)
                for subset in itertools.combinations(others, size):
                    s = frozenset(subset)
                    shapley += weight * (r2[s | {j}] - r2[s])
            row[f"r2_alone_{p}"] = r2[frozenset({j})]
            row[f"unique_{p}"] = full - r2[frozenset(others)]
            row[f"share_{p}"] = shapley
        rows.append(row)
    return pd.DataFrame(rows)
