"""Fixed-filter baselines and their frontier: how much rain a filter removes at a given background fidelity.

Why baselines
-------------
Rain removal (:func:`derain_utils.measure.metrics.decoupled`) credits *any* change inside the
rain mask that brings the output closer to the background, and a blur does that: on
the 8 held-out natural test crops of the ``quick`` profile (64 px, evaluation seed
1234; run of this module while writing it) a Gaussian blur with sigma = 0.75 px
removes 0.28 of the ``slanted`` rain at 29.3 dB background PSNR, a 7 x 7 median
0.60 at 23.5 dB. A network can therefore look good at removing unseen rain simply by
smoothing. The only fair comparison is at equal background fidelity: how much more
rain does a network remove than the best fixed filter that damages the background as
little as the network does? That is the *excess removal* of
:mod:`derain_utils.measure.outcome`, and this module provides its reference.

The filters
-----------
A :class:`Baseline` is ``D = (1 - t) O + t F(O)``: a fixed filter ``F`` applied to the
rainy input ``O`` and blended with it at weight ``t`` (``t = 1``: the filter alone).
``F`` is the identity, a Gaussian blur (``scipy.ndimage.gaussian_filter``, standard
deviation ``sigma`` px, reflected borders) or a median filter
(``scipy.ndimage.median_filter``, ``size`` x ``size`` window, reflected borders),
per channel. Nothing is learned. :data:`DEFAULT_BASELINES` sweeps sigma in
{0.5, 0.75, 1, 1.5, 2, 3}, size in {3, 5, 7} and the 14 blend weights of
:data:`BLENDS`, plus the identity (127 baselines); :data:`TABLE_BASELINES` holds the
identity and the nine plain filters, the rows that sit in results tables.

Why blends: without them the frontier would jump from the identity (background PSNR
69-80 dB on the crops above: only faint streak edges reach the background region) to
the mildest blur (sigma 0.5: about 36 dB), and a straight line between the two
would be the only filter more faithful than 36 dB, the range where the quick models
live (32-39 dB). Blends fill that range with filters that exist: on ``slanted`` rain
the blend of the identity with a 7 x 7 median at t = 0.25 removes 0.29 at 35.5 dB.

The frontier
------------
For each rain preset (more generally, each group of ``by`` columns) every baseline
gives one point: its *mean* background PSNR and *mean* removal over the test images
(the same images and the same rainy inputs as the models: build both from one
:func:`derain_utils.measure.scoring.make_eval_set`). The frontier at a background PSNR
``b`` is **the best removal of a filter that is at least that faithful**:

    frontier(b) = max { removal(f) : filter f with bg_psnr(f) >= b }

a non-increasing staircase whose treads are the Pareto-optimal filters (no other
filter has both a higher-or-equal background PSNR and a higher-or-equal removal),
read by :meth:`Frontier.removal_at`. Two properties follow from the definition and
are tested: adding a filter can never lower the frontier anywhere (a maximum over more
filters), and every value of the frontier is the removal of a filter that exists and
is at least as faithful (nothing is credited to a point between two filters, which is
what an earlier version did by joining the Pareto points with straight lines: there,
adding a filter could lower the line). Because the treads are actual filters, the
staircase lies below the continuum of all blends; the blend grid :data:`BLENDS` is
fine (14 weights) so that the steps stay small. Beyond the ends:

* above the most faithful filter (normally the identity, removal 0): no filter is that
  faithful; the model is compared with the most faithful one (doing nothing);
* below the least faithful filter: the most any filter removes. No extrapolation.

**The family is declared**: the identity, Gaussian blurs and median filters, each
blended with the input. Gaussians stand for linear smoothing (what a network that
learned only to low-pass does), medians for the classic non-linear rain/impulse
filter; blends fill the range of fidelities between doing nothing and the mildest
filter, where trained models live. :meth:`Frontier.only` restricts a frontier to some
families (Gaussian-only, median-only) so that every notebook can show how its
conclusion moves with the family.

Points outside the frontier's range are flagged (``frontier_range`` = "above" or
"below"; "inside" otherwise) so a table can say so.

Rows for results tables
-----------------------
:func:`baseline_rows` scores the baselines exactly as :func:`derain_utils.measure.scoring.evaluate`
scores a model, with the same columns (:data:`derain_utils.measure.scoring.EVAL_COLUMNS`)
plus ``baseline``, ``family``, ``param`` and ``blend``: the decoupled columns come from
:func:`derain_utils.measure.metrics.decoupled_batch` on the same (background, rainy, mask) and
the whole-image columns from :func:`derain_utils.measure.metrics.evaluate_pair`, whose
whole-image part is the one :func:`~derain_utils.measure.scoring.evaluate` reports. As for
models, one ``preset = "clean"`` row per image holds the filter applied to the
rain-free background (a blur damages clean images too). :func:`as_module` turns a
baseline into a ``torch.nn.Module`` for code that runs models (report cards, real
benchmarks).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from torch import Tensor, nn

from derain_utils.measure import metrics, realscores, scoring
from derain_utils.synth import rain

__all__ = [
    "FAMILIES",
    "BLENDS",
    "GAUSSIAN_SIGMAS",
    "MEDIAN_SIZES",
    "Baseline",
    "IDENTITY",
    "DEFAULT_BASELINES",
    "TABLE_BASELINES",
    "BASELINE_COLUMNS",
    "apply",
    "as_module",
    "baseline_rows",
    "baseline_pair_rows",
    "Frontier",
    "frontier",
    "frontier_of",
]

FAMILIES: tuple[str, ...] = ("identity", "gaussian", "median")
GAUSSIAN_SIGMAS: tuple[float, ...] = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
"""Standard deviations [px] of the Gaussian blurs of :data:`DEFAULT_BASELINES`."""
MEDIAN_SIZES: tuple[int, ...] = (3, 5, 7)
"""Window sides [px] of the median filters of :data:`DEFAULT_BASELINES`."""
BLENDS: tuple[float, ...] = (0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
"""Weights t of the filtered image in ``(1 - t) O + t F(O)`` (1 = the plain filter): fine enough that the
staircase frontier's steps stay small."""
BASELINE_COLUMNS: tuple[str, ...] = ("baseline", "family", "param", "blend")
"""Columns that :func:`baseline_rows` puts before :data:`derain_utils.measure.scoring.EVAL_COLUMNS`."""

_TOL = 1e-9


@dataclass(frozen=True)
class Baseline:
    """A fixed (not learned) derainer ``D = (1 - blend) O + blend F(O)``.

    Attributes:
        family: ``"identity"``, ``"gaussian"`` or ``"median"``.
        param: Gaussian standard deviation [px] (> 0), median window side [px] (odd
            int >= 3), or 0 for the identity.
        blend: weight t of the filtered image, in (0, 1]; 1 for the identity.
    """

    family: str
    param: float = 0.0
    blend: float = 1.0

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"Baseline family must be one of {FAMILIES}, got {self.family!r}")
        if isinstance(self.param, bool) or not isinstance(self.param, (int, float, np.integer, np.floating)):
            raise ValueError(f"Baseline param must be a number, got {self.param!r}")
        if isinstance(self.blend, bool) or not isinstance(self.blend, (int, float, np.integer, np.floating)):
            raise ValueError(f"Baseline blend must be a number in (0, 1], got {self.blend!r}")
        param, blend = float(self.param), float(self.blend)
        if not (math.isfinite(blend) and 0.0 < blend <= 1.0):
            raise ValueError(f"Baseline blend must be in (0, 1], got {self.blend!r}")
        if self.family == "identity":
            if param != 0.0 or blend != 1.0:
                raise ValueError(f"the identity baseline takes param=0 and blend=1, got param={self.param!r}, "
                                 f"blend={self.blend!r}")
        elif self.family == "gaussian":
            if not (math.isfinite(param) and param > 0):
                raise ValueError(f"Gaussian baseline: param (sigma, px) must be > 0, got {self.param!r}")
        elif not (param.is_integer() and param >= 3 and int(param) % 2 == 1):
            raise ValueError(f"median baseline: param (window side, px) must be an odd integer >= 3, "
                             f"got {self.param!r}")
        object.__setattr__(self, "param", param)
        object.__setattr__(self, "blend", blend)

    @property
    def name(self) -> str:
        """``identity``, ``gaussian_s0.75``, ``median_5``, ``median_5_t0.25`` (blend < 1)."""
        if self.family == "identity":
            return "identity"
        base = f"gaussian_s{self.param:g}" if self.family == "gaussian" else f"median_{int(self.param)}"
        return base if self.blend == 1.0 else f"{base}_t{self.blend:g}"

    @property
    def base(self) -> Baseline:
        """The plain filter (blend 1) this baseline blends with the input."""
        return Baseline(self.family, self.param, 1.0)


IDENTITY = Baseline("identity")
TABLE_BASELINES: tuple[Baseline, ...] = (
    IDENTITY,
    *(Baseline("gaussian", s) for s in GAUSSIAN_SIGMAS),
    *(Baseline("median", k) for k in MEDIAN_SIZES),
)
"""The identity and the plain filters (blend 1): the baseline rows of results tables."""
DEFAULT_BASELINES: tuple[Baseline, ...] = (
    IDENTITY,
    *(Baseline(b.family, b.param, t) for b in TABLE_BASELINES[1:] for t in BLENDS),
)
"""Every baseline of the frontier: the identity and each plain filter at every blend of :data:`BLENDS`."""


# --------------------------------------------------------------------------- applying filters
def _filtered(base: Baseline, x: np.ndarray) -> np.ndarray:
    """F(x) for a (N, C, H, W) float64 array (per image and channel)."""
    if base.family == "identity":
        return x
    if base.family == "gaussian":
        return ndimage.gaussian_filter(x, sigma=(0, 0, base.param, base.param), mode="reflect")
    k = int(base.param)
    return ndimage.median_filter(x, size=(1, 1, k, k), mode="reflect")


def _as_images(images: Any, name: str) -> np.ndarray:
    if isinstance(images, Tensor):
        if not images.is_floating_point():
            raise ValueError(f"{name} must hold floats in [0, 1], got dtype {images.dtype}")
        arr = images.detach().to("cpu", torch.float64).numpy()
    elif isinstance(images, np.ndarray):
        if not np.issubdtype(images.dtype, np.floating):
            raise ValueError(f"{name} must hold floats in [0, 1], got dtype {images.dtype}")
        arr = images.astype(np.float64, copy=False)
    else:
        raise ValueError(f"{name} must be a torch.Tensor or numpy array (N, C, H, W), got {type(images).__name__}")
    if arr.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got {tuple(arr.shape)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def apply(baseline: Baseline, images: Tensor | np.ndarray) -> Tensor:
    """``baseline`` applied to a batch: float32 (N, C, H, W) tensor in [0, 1] (clipped), on the CPU."""
    if not isinstance(baseline, Baseline):
        raise ValueError(f"baseline must be a Baseline, got {type(baseline).__name__}")
    x = _as_images(images, "images")
    out = _filtered(baseline.base, x)
    if baseline.blend != 1.0:
        out = (1.0 - baseline.blend) * x + baseline.blend * out
    return torch.from_numpy(np.clip(out, 0.0, 1.0)).float()


class _FixedFilter(nn.Module):
    def __init__(self, baseline: Baseline) -> None:
        super().__init__()
        self.baseline = baseline

    def forward(self, x: Tensor) -> Tensor:
        return apply(self.baseline, x).to(x.device, x.dtype)

    def extra_repr(self) -> str:
        return self.baseline.name


def as_module(baseline: Baseline) -> nn.Module:
    """A parameter-free ``nn.Module`` that applies ``baseline`` (computes on the CPU with scipy)."""
    if not isinstance(baseline, Baseline):
        raise ValueError(f"baseline must be a Baseline, got {type(baseline).__name__}")
    return _FixedFilter(baseline)


# --------------------------------------------------------------------------- scoring
def _check_baselines(baselines: Iterable[Baseline]) -> list[Baseline]:
    try:
        items = list(baselines)
    except TypeError:
        raise ValueError(f"baselines must be a sequence of Baseline, got {baselines!r}") from None
    if not items:
        raise ValueError("baselines is empty; give at least one Baseline (e.g. baselines.TABLE_BASELINES)")
    for i, b in enumerate(items):
        if not isinstance(b, Baseline):
            raise ValueError(f"baselines[{i}] must be a Baseline, got {type(b).__name__}: {b!r}")
    names = [b.name for b in items]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"baselines: duplicate baseline(s) {dup}")
    return items


def _check_eval_set(eval_set: Any) -> dict[str, scoring.EvalInputs]:
    if isinstance(eval_set, scoring.EvalInputs):
        eval_set = {eval_set.spec.name: eval_set}
    if not isinstance(eval_set, Mapping) or not eval_set:
        raise ValueError("eval_set must be the non-empty dict {preset: EvalInputs} of scoring.make_eval_set "
                         f"(or one EvalInputs), got {type(eval_set).__name__}")
    first = None
    for name, e in eval_set.items():
        if not isinstance(e, scoring.EvalInputs):
            raise ValueError(f"eval_set[{name!r}] must be a scoring.EvalInputs, got {type(e).__name__}")
        if name == "clean":
            raise ValueError("eval_set: the preset name 'clean' is reserved for the rain-free rows")
        if first is None:
            first = e
        elif e.background.shape != first.background.shape or not torch.equal(e.background, first.background):
            raise ValueError(f"eval_set[{name!r}] has other background images than the first preset; "
                             "build every preset from one scoring.make_eval_set call")
    return dict(eval_set)


_WHOLE = ("psnr", "ssim", "psnr_y", "ssim_y", "input_psnr", "input_ssim")
_DECOUPLED = tuple(metrics.DECOUPLED_KEYS)


def baseline_rows(
    eval_set: Mapping[str, scoring.EvalInputs] | scoring.EvalInputs,
    baselines: Sequence[Baseline] = DEFAULT_BASELINES,
    *,
    names: Sequence[str] | None = None,
    train_spec: str | rain.RainSpec | None = "small",
    whole_image: bool = True,
    clean: bool = True,
) -> pd.DataFrame:
    """Score fixed-filter baselines on the test inputs of the models, as :func:`scoring.evaluate` scores a model.

    Args:
        eval_set: ``scoring.make_eval_set(test_images, presets, seed=...)`` (the same
            call, hence the same rainy inputs, as the models' evaluation).
        baselines: the baselines to score (default: all of :data:`DEFAULT_BASELINES`;
            :data:`TABLE_BASELINES` for results tables).
        names: one name per test image (default ``img000``, ``img001``, ... as in
            :func:`scoring.evaluate`); pass the same names as the models' rows.
        train_spec: the models' training rain; sets ``in_distribution`` and
            ``ood_fields`` as :func:`scoring.evaluate` does (None: NA).
        whole_image: also compute the whole-image columns (PSNR/SSIM, RGB and Y,
            about 4 ms per image and baseline on 64 px crops); False leaves them NaN
            (enough for :func:`frontier`, and much faster).
        clean: add the ``preset = "clean"`` rows (the baseline on the rain-free images).

    Returns:
        DataFrame with :data:`BASELINE_COLUMNS` then :data:`scoring.EVAL_COLUMNS`: one
        row per (baseline, preset, image) in the given orders, then the clean rows.
    """
    es = _check_eval_set(eval_set)
    items = _check_baselines(baselines)
    if not isinstance(whole_image, bool) or not isinstance(clean, bool):
        raise ValueError(f"whole_image and clean must be bools, got {whole_image!r}, {clean!r}")
    first = next(iter(es.values()))
    n = first.background.shape[0]
    names = scoring.image_names(names, n)
    train = rain.get_spec(train_spec) if train_spec is not None else None
    by_base: dict[Baseline, list[Baseline]] = {}
    for b in items:
        by_base.setdefault(b.base, []).append(b)

    inputs: list[tuple[str, Tensor, Tensor, Tensor | None, Any, Any]] = []
    for pname, e in es.items():
        if train is not None:
            in_dist: Any = bool(rain.overlaps(train, e.spec))
            ood: Any = ",".join(rain.ood_fields(train, e.spec))
        else:
            in_dist, ood = pd.NA, None
        inputs.append((pname, e.background, e.rainy, e.mask, in_dist, ood))
    if clean:
        inputs.append(("clean", first.background, first.background, None, pd.NA, None))

    rows: dict[str, list[dict[str, Any]]] = {b.name: [] for b in items}
    for pname, background, rainy_t, mask, in_dist, ood in inputs:
        x = rainy_t.detach().to("cpu", torch.float64).numpy()
        for base, blends in by_base.items():
            filt = _filtered(base, x)
            outs = [filt if b.blend == 1.0 else (1.0 - b.blend) * x + b.blend * filt for b in blends]
            derained = torch.from_numpy(np.clip(np.concatenate(outs), 0.0, 1.0)).float()
            k = len(blends)
            if mask is not None:  # one decoupled_batch call for every blend of this filter
                dec = {key: v.cpu().tolist() for key, v in metrics.decoupled_batch(
                    background.repeat(k, 1, 1, 1), rainy_t.repeat(k, 1, 1, 1), derained,
                    mask.repeat(k, 1, 1, 1)).items()}
            else:
                dec = {key: [math.nan] * (k * n) for key in _DECOUPLED}
            for j, b in enumerate(blends):
                for i in range(n):
                    d_i = derained[j * n + i]
                    if not whole_image:
                        whole = {key: math.nan for key in _WHOLE}
                    elif mask is None:  # rain-free input: the input is the background itself
                        scores = metrics.evaluate_pair(background[i], background[i], d_i,
                                                       np.zeros(background.shape[-2:], dtype=bool))
                        whole = {key: float(scores[key]) for key in _WHOLE}
                    else:
                        scores = metrics.evaluate_pair(background[i], rainy_t[i], d_i, mask[i])
                        whole = {key: float(scores[key]) for key in _WHOLE}
                    rows[b.name].append({
                        "baseline": b.name, "family": b.family, "param": b.param, "blend": b.blend,
                        "image": names[i], "preset": pname, "in_distribution": in_dist, "ood_fields": ood,
                        **whole, **{key: float(dec[key][j * n + i]) for key in _DECOUPLED}})
    df = pd.DataFrame([r for b in items for r in rows[b.name]],
                      columns=[*BASELINE_COLUMNS, *scoring.EVAL_COLUMNS])
    df["in_distribution"] = df["in_distribution"].astype("boolean")
    return df


def baseline_pair_rows(
    pairs: Sequence[Any],
    baselines: Sequence[Baseline] = DEFAULT_BASELINES,
    *,
    masks: Sequence[np.ndarray] | None = None,
    preset: str | None = None,
    whole_image: bool | Sequence[Baseline] = TABLE_BASELINES,
) -> pd.DataFrame:
    """Score fixed-filter baselines on (rainy, target) pairs of any sizes: the frontier of a paired benchmark.

    Each pair's rainy image is filtered (every plain filter once, its blends from it) and scored as
    :func:`derain_utils.measure.realscores.score_pairs` scores a model's output on the same pairs (same rain
    mask: the pair's true one, ``masks``, or the package's estimate from ``rainy - target``,
    :func:`derain_utils.measure.metrics.estimate_mask`, computed once per pair; the same
    :func:`derain_utils.measure.metrics.decoupled`), so that the two are comparable. About 1 s per 480 x 320
    pair for the 55 default baselines (half of it the median filters).

    Args:
        pairs: :class:`derain_utils.synth.realsets.Pair` records (``set``, ``name``, ``rainy``, ``target``).
        baselines: as :func:`baseline_rows`.
        masks: true rain masks, one bool (H, W) per pair (default: estimated).
        preset: the ``preset`` column of every row (default: the pair's set name), so that
            :func:`frontier` groups by set: ``frontier(rows)`` gives one frontier per set.
        whole_image: which baselines get the whole-image columns (``psnr``, ``psnr_y``; NaN for
            the others): True (all), False (none) or a sequence (default :data:`TABLE_BASELINES`,
            the rows of results tables; the frontier needs only the decoupled columns).

    Returns:
        DataFrame: :data:`BASELINE_COLUMNS`, ``preset``, then :func:`derain_utils.measure.realscores.score_pairs`'s
        columns (``set``, ``image``, :data:`derain_utils.measure.realscores.PAIR_SCORE_KEYS`, ``mask_source``).
    """
    items = _check_baselines(baselines)
    pairs = list(pairs)
    if not pairs:
        raise ValueError("pairs is empty: nothing to score the baselines on")
    if masks is not None and len(masks) != len(pairs):
        raise ValueError(f"masks has {len(masks)} entries for {len(pairs)} pairs")
    if isinstance(whole_image, bool):
        whole = {b.name for b in items} if whole_image else set()
    else:
        whole = {b.name for b in _check_baselines(whole_image)}
    by_base: dict[Baseline, list[Baseline]] = {}
    for b in items:
        by_base.setdefault(b.base, []).append(b)
    rows = []
    for i, p in enumerate(pairs):
        arrs = []
        for what, img in (("rainy", p.rainy), ("target", p.target)):
            a = np.asarray(img, dtype=np.float64)
            if a.ndim != 3:
                raise ValueError(f"pairs[{i}].{what} ({p.set}/{p.name}) must be an (H, W, C) image, got {a.shape}")
            arrs.append(_as_images(a.transpose(2, 0, 1)[None], f"pairs[{i}].{what}"))
        x, bt = arrs
        if x.shape != bt.shape:
            raise ValueError(f"pair {p.set}/{p.name}: rainy {x.shape[1:]} and target {bt.shape[1:]} differ in shape")
        b_img = bt[0].transpose(1, 2, 0)
        outs: dict[str, np.ndarray] = {}
        for base, blends in by_base.items():
            filt = _filtered(base, x)
            for b in blends:
                outs[b.name] = np.clip(filt if b.blend == 1.0 else (1.0 - b.blend) * x + b.blend * filt, 0.0, 1.0)
        m = np.asarray(masks[i], bool) if masks is not None else metrics.estimate_mask(p.rainy, p.target)
        o_img = x[0].transpose(1, 2, 0)
        for b in items:  # numpy, one baseline at a time, as score_pairs scores a model's output
            dec = metrics.decoupled(b_img, o_img, outs[b.name][0].transpose(1, 2, 0), m)
            if b.name in whole:
                d_hwc = outs[b.name][0].transpose(1, 2, 0)
                w = {"psnr": metrics.psnr(b_img, d_hwc), "psnr_y": metrics.psnr(b_img, d_hwc, y_channel=True)}
            else:
                w = {"psnr": math.nan, "psnr_y": math.nan}
            rows.append({"baseline": b.name, "family": b.family, "param": b.param, "blend": b.blend,
                         "preset": p.set if preset is None else preset, "set": p.set, "image": str(p.name),
                         **{key: float(dec[key]) for key in metrics.DECOUPLED_KEYS}, **w,
                         "mask_source": "given" if masks is not None else "estimated"})
    return pd.DataFrame(rows, columns=[*BASELINE_COLUMNS, "preset", "set", "image", *realscores.PAIR_SCORE_KEYS,
                                       "mask_source"])


# --------------------------------------------------------------------------- the frontier
def _envelope(bg: np.ndarray, rm: np.ndarray) -> np.ndarray:
    """Boolean mask of the Pareto-optimal points (maximise both bg and rm)."""
    keep = np.ones(len(bg), dtype=bool)
    for i in range(len(bg)):
        dominated = (bg >= bg[i] - _TOL) & (rm >= rm[i] - _TOL) & ((bg > bg[i] + _TOL) | (rm > rm[i] + _TOL))
        keep[i] = not dominated.any()
    return keep


@dataclass(frozen=True)
class Frontier:
    """The fixed-filter frontier of every group (see the module docstring).

    Attributes:
        by: the group columns (``("preset",)`` by default).
        points: one row per (group, baseline): the group columns, ``baseline``,
            ``bg_psnr`` and ``removal`` (means over the images), ``n_images``,
            ``family`` and ``pareto`` (a tread of the staircase).
    """

    by: tuple[str, ...]
    points: pd.DataFrame

    def groups(self) -> list[tuple]:
        """The group keys (tuples of the ``by`` values), in order of appearance."""
        return list(dict.fromkeys(map(tuple, self.points[list(self.by)].itertuples(index=False))))

    def curve(self, key: Any) -> tuple[np.ndarray, np.ndarray]:
        """(bg_psnr, removal) of the Pareto points of one group, ascending in bg_psnr.

        ``key``: the group's value (a preset name for the default ``by``) or a tuple.
        """
        key = key if isinstance(key, tuple) else (key,)
        if len(key) != len(self.by):
            raise ValueError(f"frontier key {key!r} must give one value per group column {self.by}")
        sel = np.ones(len(self.points), dtype=bool)
        for col, v in zip(self.by, key):
            sel &= (self.points[col] == v).to_numpy()
        pts = self.points[sel & self.points["pareto"].to_numpy()]
        if pts.empty:
            raise ValueError(f"no frontier for {dict(zip(self.by, key))}; the frontier has groups {self.groups()}")
        order = np.argsort(pts["bg_psnr"].to_numpy(), kind="stable")
        return pts["bg_psnr"].to_numpy(float)[order], pts["removal"].to_numpy(float)[order]

    def removal_at(self, key: Any, bg_psnr: Any) -> np.ndarray:
        """The frontier's removal at background PSNR ``bg_psnr`` [dB] (array-like; NaN stays NaN).

        The best removal of a filter at least as faithful (``bg_psnr(filter) >= b``); above
        the most faithful filter, that filter's removal; below the least faithful, the most
        any filter removes (module docstring).
        """
        bg, rm = self.curve(key)
        b = np.asarray(bg_psnr, dtype=float)
        # first Pareto point (ascending bg) with bg >= b: the most removing of those at least as faithful
        idx = np.clip(np.searchsorted(bg, b - _TOL, side="left"), 0, bg.size - 1)
        out = rm[idx]
        return np.where(np.isfinite(b), out, np.nan)

    def range_of(self, key: Any, bg_psnr: Any) -> np.ndarray:
        """``"inside"``, ``"above"`` (more faithful than every baseline) or ``"below"`` per value."""
        bg, _ = self.curve(key)
        b = np.asarray(bg_psnr, dtype=float)
        return np.where(b > bg[-1] + _TOL, "above", np.where(b < bg[0] - _TOL, "below", "inside"))

    def excess(self, key: Any, removal: Any, bg_psnr: Any) -> np.ndarray:
        """``removal - removal_at(key, bg_psnr)``: removal beyond the fixed filters at equal background PSNR."""
        r = np.asarray(removal, dtype=float)
        return r - self.removal_at(key, bg_psnr)

    def table(self) -> pd.DataFrame:
        """The Pareto points, sorted by group and ascending background PSNR (for figures and reports)."""
        pts = self.points[self.points["pareto"]]
        return pts.sort_values([*self.by, "bg_psnr"], kind="stable").reset_index(drop=True)

    def families(self) -> list[str]:
        """The filter families behind the frontier, e.g. ``["identity", "gaussian", "median"]``."""
        return list(dict.fromkeys(self.points["family"]))

    def only(self, families: Sequence[str] | str) -> Frontier:
        """The frontier of some families only (the identity is always kept), e.g. ``only("gaussian")``."""
        fam = (families,) if isinstance(families, str) else tuple(families)
        bad = [f for f in fam if f not in FAMILIES]
        if not fam or bad:
            raise ValueError(f"families must name some of {FAMILIES}, got {families!r}")
        keep = self.points["family"].isin({*fam, "identity"}).to_numpy()
        if not keep.any():
            raise ValueError(f"the frontier holds no baseline of the families {fam}")
        return _build(self.by, self.points[keep].drop(columns="pareto").reset_index(drop=True))


def _family_of(name: str) -> str:
    return "identity" if name == "identity" else name.split("_", 1)[0]


def _build(by: tuple[str, ...], pts: pd.DataFrame) -> Frontier:
    pareto = np.zeros(len(pts), dtype=bool)
    for _, idx in pts.groupby(list(by), sort=False, dropna=False).indices.items():
        pareto[idx] = _envelope(pts["bg_psnr"].to_numpy(float)[idx], pts["removal"].to_numpy(float)[idx])
    pts = pts.assign(pareto=pareto)
    return Frontier(by=by, points=pts)


def frontier(rows: pd.DataFrame, by: Sequence[str] | str = ("preset",)) -> Frontier:
    """The fixed-filter frontier of baseline rows (from :func:`baseline_rows`).

    Args:
        rows: one row per (baseline, group, image) with columns ``baseline``,
            ``removal``, ``bg_psnr`` and the ``by`` columns (``preset = "clean"`` rows
            are ignored).
        by: the columns that define one frontier each (e.g. ``("test_set", "preset")``
            when models are scored on several test sets).

    Means over images skip NaN (as ``DataFrame.mean`` does for the models' rows:
    average both with :mod:`derain_utils.measure.outcome` so that they are comparable).
    """
    by = (by,) if isinstance(by, str) else tuple(by)
    if not by:
        raise ValueError("by must name at least one column (normally 'preset')")
    if not isinstance(rows, pd.DataFrame):
        raise ValueError(f"rows must be a DataFrame from baseline_rows, got {type(rows).__name__}")
    missing = [c for c in ("baseline", "removal", "bg_psnr", *by) if c not in rows.columns]
    if missing:
        raise ValueError(f"rows lack column(s) {missing}; available: {list(rows.columns)}")
    d = rows[rows["preset"] != "clean"] if "preset" in rows.columns else rows
    if d.empty:
        raise ValueError("rows hold no rainy rows (only 'clean' or none): nothing to build a frontier from")
    pts = (d.groupby([*by, "baseline"], sort=False, dropna=False)
            .agg(bg_psnr=("bg_psnr", "mean"), removal=("removal", "mean"), n_images=("removal", "size"))
            .reset_index())
    bad = pts[~np.isfinite(pts["bg_psnr"]) | ~np.isfinite(pts["removal"])]
    if len(bad):
        raise ValueError(f"baseline means are NaN for {len(bad)} (group, baseline) pair(s), e.g. "
                         f"{bad.iloc[0][[*by, 'baseline']].to_dict()}: no image had a rain mask / background region")
    pts["family"] = [_family_of(str(b)) for b in pts["baseline"]]
    return _build(by, pts)


def frontier_of(
    eval_set: Mapping[str, scoring.EvalInputs] | scoring.EvalInputs,
    baselines: Sequence[Baseline] = DEFAULT_BASELINES,
) -> Frontier:
    """The per-preset frontier of ``baselines`` on an eval set (decoupled scores only: fast)."""
    return frontier(baseline_rows(eval_set, baselines, whole_image=False, clean=False, train_spec=None))
