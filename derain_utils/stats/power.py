"""Calibration and power of the verdict rule, by simulating each notebook's design.

The verdict rule of :mod:`derain_utils.stats.inference` must not say "reproduced" more
than 5% of the time when nothing is there, and should say it when the effect the
quick runs measured is there. Both are checked by simulating data sets with each
notebook's design and running the *same* test functions and rule on each
(:func:`rates`), vectorised enough to run thousands of data sets in seconds.

The simulated data
------------------
One outcome value per (model, test image, preset), for ``n_seeds`` training seeds
and the design's conditions (:data:`CONDITIONS`), made of

* the condition's mean (the effect, below);
* a seed effect shared by the models of one seed (``sd_seed``; cancels in the
  within-seed and paired designs);
* a model effect, one per trained model (``sd_model``: the model-to-model sd that
  the quick runs put at about 0.07 for removal of unseen rain; may be a sequence, one
  sd per condition, for unequal variances);
* an image effect shared by every model (``sd_image``) and a model x image residual
  (``sd_resid``), over ``n_images`` test images and ``n_presets`` presets.

Each model's outcome is its mean over images and presets, as in
:mod:`derain_utils.measure.outcome`. ``effect`` is the size of the paper's effect, positive
in the paper's direction, on the scale of the outcome:

* ``set_size``: the mean falls linearly in log N by ``effect`` from the smallest to
  the largest N (``sizes``, default 4, 16, 64, 256); within-seed trend, negative;
* ``category``: the mean falls linearly in the complexity rank by ``effect`` from the
  simplest to the most complex of ``n_categories``; category trend, negative;
* ``two_group``: group ``a`` (e.g. simple backgrounds) exceeds ``b`` by ``effect``;
  ``n_seeds`` models per group; two-group test, positive;
* ``paired``: per seed, the model of condition ``a`` exceeds that of ``b`` by
  ``effect``; sign-flip test, positive. Its ``n_images`` are the benchmark's pairs.

:func:`power` and :func:`seeds_for_power` give the rate of "reproduced" at an effect
and the seeds that reach 80%; :func:`pairs_for_power` the number of benchmark pairs
a paired verdict needs, from model-level and image-level variance components that
:func:`variance_components` estimates from an evaluation table.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from derain_utils.stats import inference

__all__ = [
    "SIM_DESIGNS",
    "CONDITIONS",
    "SET_SIZES",
    "simulate",
    "verdicts",
    "rates",
    "power",
    "seeds_for_power",
    "pairs_for_power",
    "paired_power",
    "variance_components",
]

SIM_DESIGNS: dict[str, str] = {
    "set_size": "within_seed_trend",
    "category": "category_trend",
    "two_group": "two_group",
    "paired": "paired",
}
"""Simulated design -> the test of :mod:`derain_utils.stats.inference` that analyses it."""
DIRECTION: dict[str, str] = {"set_size": "negative", "category": "negative", "two_group": "positive",
                             "paired": "positive"}
SET_SIZES: tuple[int, ...] = (4, 16, 64, 256)
CONDITIONS = {"set_size": "one per set size", "category": "one per category", "two_group": "a, b", "paired": "a, b"}


def _check_design(design: str) -> str:
    if design not in SIM_DESIGNS:
        raise ValueError(f"design must be one of {list(SIM_DESIGNS)}, got {design!r}")
    return design


def _pos_int(name: str, v: Any, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {v!r}")
    return int(v)


def _nonneg(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not (v >= 0) \
            or not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    return float(v)


def _means(design: str, effect: float, n_conditions: int, sizes: Sequence[int]) -> np.ndarray:
    if design == "set_size":
        logn = np.log(np.asarray(sizes, dtype=float))
        return -effect * (logn - logn[0]) / (logn[-1] - logn[0])
    if design == "category":
        return -effect * np.arange(n_conditions) / (n_conditions - 1)
    return np.array([effect, 0.0])


def simulate(
    design: str,
    n_sims: int,
    n_seeds: int,
    *,
    effect: float = 0.0,
    sd_model: float | Sequence[float] = 0.07,
    sd_seed: float = 0.0,
    sd_image: float = 0.1,
    sd_resid: float = 0.1,
    n_images: int = 8,
    n_presets: int = 3,
    sizes: Sequence[int] = SET_SIZES,
    n_categories: int = 4,
    seed: int = 0,
) -> np.ndarray:
    """Model-level outcomes of ``n_sims`` simulated experiments: array (n_sims, n_seeds, n_conditions).

    See the module docstring for the model; ``seed`` seeds the numpy generator.
    """
    _check_design(design)
    n_sims, n_seeds = _pos_int("n_sims", n_sims), _pos_int("n_seeds", n_seeds)
    n_images, n_presets = _pos_int("n_images", n_images), _pos_int("n_presets", n_presets)
    if isinstance(effect, bool) or not isinstance(effect, (int, float, np.integer, np.floating)) \
            or not math.isfinite(effect):
        raise ValueError(f"effect must be a finite number, got {effect!r}")
    sizes = tuple(sizes)
    if design == "set_size" and (len(sizes) < 2 or any(s < 1 for s in sizes) or list(sizes) != sorted(set(sizes))):
        raise ValueError(f"sizes must be >= 2 distinct ascending positive set sizes, got {sizes}")
    if design == "category":
        _pos_int("n_categories", n_categories, 3)
    n_cond = {"set_size": len(sizes), "category": n_categories}.get(design, 2)
    sdm = np.asarray(sd_model, dtype=float)
    if sdm.ndim == 0:
        sdm = np.full(n_cond, float(sdm))
    if sdm.shape != (n_cond,) or not np.all(np.isfinite(sdm)) or np.any(sdm < 0):
        raise ValueError(f"sd_model must be a number >= 0 or one per condition ({n_cond}), got {sd_model!r}")
    sd_seed, sd_image, sd_resid = _nonneg("sd_seed", sd_seed), _nonneg("sd_image", sd_image), \
        _nonneg("sd_resid", sd_resid)
    rng = np.random.default_rng(_pos_int("seed", seed, 0))
    mu = _means(design, float(effect), n_cond, sizes)
    shape = (n_sims, n_seeds, n_cond)
    y = mu + sd_seed * rng.standard_normal((n_sims, n_seeds, 1)) + sdm * rng.standard_normal(shape)
    m = n_images * n_presets
    # image effects are shared by every model of a simulated experiment; residuals are per model and image
    y = y + sd_image * rng.standard_normal((n_sims, 1, 1, m)).mean(-1)
    if m <= 64:
        y = y + sd_resid * rng.standard_normal((*shape, m)).mean(-1)
    else:  # the mean of m iid normals, drawn directly
        y = y + sd_resid / math.sqrt(m) * rng.standard_normal(shape)
    return y


def _analyse(design: str, y: np.ndarray, sizes: Sequence[int], n_boot: int, seed: int) -> inference.TestResult:
    """The test of ``design`` on one simulated experiment (n_seeds, n_conditions), by inference's array functions."""
    kw = dict(n_permutations=2000, n_boot=n_boot, seed=seed)
    n_seeds, n_cond = y.shape
    if design == "set_size":
        return inference.trend_arrays([np.asarray(sizes, dtype=float)] * n_seeds, list(y), **kw)
    if design == "category":
        return inference.category_arrays(np.arange(n_cond, dtype=float), list(y.T), **kw)
    if design == "two_group":
        return inference.two_group_arrays(np.concatenate([y[:, 0], y[:, 1]]),
                                          np.r_[np.ones(n_seeds, bool), np.zeros(n_seeds, bool)], **kw)
    return inference.paired_arrays(y[:, 0] - y[:, 1], **kw)


def verdicts(
    design: str, data: np.ndarray, *, sizes: Sequence[int] = SET_SIZES, n_boot: int = 1000, seed: int = 0,
    profile: str = "quick",
) -> list[inference.VerdictRecord]:
    """The verdict of every simulated experiment of ``data`` (from :func:`simulate`), by the notebooks' rule."""
    _check_design(design)
    data = np.asarray(data, dtype=float)
    if data.ndim != 3:
        raise ValueError(f"data must be (n_sims, n_seeds, n_conditions) from simulate(), got shape {data.shape}")
    decl = inference.Declaration(notebook=f"simulated_{design}", design=SIM_DESIGNS[design],
                                 direction=DIRECTION[design], presets=("simulated",))
    out = []
    for i, y in enumerate(data):
        res = _analyse(design, y, sizes, n_boot, seed + i)
        out.append(inference.decide(res, decl, profile=profile))
    return out


def rates(
    design: str,
    n_seeds: int,
    *,
    effect: float = 0.0,
    n_sims: int = 1000,
    n_boot: int = 1000,
    seed: int = 0,
    **noise: Any,
) -> dict[str, Any]:
    """How often the rule says each verdict in ``n_sims`` simulated experiments.

    Args:
        design: ``set_size``, ``category``, ``two_group`` or ``paired``.
        n_seeds: seeds (models per condition).
        effect: size in the paper's direction (0 = the null).
        n_sims: simulated experiments; n_boot: bootstrap resamples per experiment.
        seed: seeds the simulation (and, offset, each experiment's test).
        **noise: passed to :func:`simulate` (``sd_model``, ``sd_seed``, ``sd_image``,
            ``sd_resid``, ``n_images``, ``n_presets``, ``sizes``, ``n_categories``).

    Returns:
        dict: ``reproduced``, ``contradicted``, ``inconclusive`` (rates), ``mc_se`` (the
        Monte-Carlo standard error of the reproduced rate), ``min_p`` (smallest
        attainable p of the design at these counts), and the inputs.
    """
    data = simulate(design, n_sims, n_seeds, effect=effect, seed=seed, **noise)
    sizes = noise.get("sizes", SET_SIZES)
    vs = verdicts(design, data, sizes=sizes, n_boot=_pos_int("n_boot", n_boot), seed=seed + 7919)
    counts = {v: sum(r.verdict == v for r in vs) for v in inference.VERDICTS}
    rep = counts["reproduced"] / n_sims
    return {
        "design": design, "n_seeds": int(n_seeds), "effect": float(effect), "n_sims": int(n_sims),
        **{v: c / n_sims for v, c in counts.items()},
        "mc_se": math.sqrt(max(rep * (1 - rep), 1e-12) / n_sims),
        "min_p": float(np.nanmin([r.min_p for r in vs])),
        "noise": {k: (list(v) if isinstance(v, (tuple, list, np.ndarray)) else v) for k, v in noise.items()},
    }


def power(design: str, n_seeds: int, effect: float, **kw: Any) -> float:
    """The rate of ``reproduced`` at ``effect`` (see :func:`rates` for the arguments)."""
    return float(rates(design, n_seeds, effect=effect, **kw)["reproduced"])


def seeds_for_power(
    design: str,
    effect: float,
    *,
    target: float = 0.8,
    max_seeds: int = 20,
    min_seeds: int = inference.MIN_SEEDS,
    **kw: Any,
) -> dict[str, Any]:
    """The fewest seeds whose simulated power reaches ``target`` (scans ``min_seeds`` .. ``max_seeds``).

    Returns:
        dict: ``seeds_needed`` (None if ``max_seeds`` does not reach the target),
        ``curve`` ({n_seeds: power} of the seed counts tried), ``target``, ``effect``.
    """
    if not (isinstance(target, (int, float)) and 0 < target < 1):
        raise ValueError(f"target must be in (0, 1), got {target!r}")
    max_seeds = _pos_int("max_seeds", max_seeds)
    curve: dict[int, float] = {}
    needed = None
    for n in range(_pos_int("min_seeds", min_seeds), max_seeds + 1):
        curve[n] = power(design, n, effect, **kw)
        if curve[n] >= target:
            needed = n
            break
    return {"design": design, "effect": float(effect), "target": float(target), "seeds_needed": needed,
            "curve": curve}


def _paired_power(effect: float, tau: float, z: np.ndarray, n_boot: int, seed: int) -> float:
    """Power of the paired rule when each seed's difference is effect + tau z (z: (n_sims, k))."""
    decl = inference.Declaration(notebook="pairs_for_power", design="paired", direction="positive",
                                 presets=("benchmark",))
    hits = 0
    for i, row in enumerate(effect + tau * z):
        res = _analyse("paired", np.stack([row, np.zeros_like(row)], axis=1), SET_SIZES, n_boot, seed + i)
        hits += inference.decide(res, decl, profile="quick").verdict == "reproduced"
    return hits / len(z)


def paired_power(
    effect: float, sd_diff: float, n_seeds: int, *, n_sims: int = 1000, n_boot: int = 1000, seed: int = 0,
) -> float:
    """Power of the paired verdict when each seed's difference is ``effect + sd_diff * z`` (z standard normal).

    ``sd_diff`` is the seed-to-seed sd of the per-seed differences as measured (for example
    ``np.std(d, ddof=1)`` of notebook 04's per-seed differences on its own pairs): it holds the
    model-to-model and the pair-sampling noise at the pairs used, so it needs no variance
    components (which clip at 0 when a mean square falls below the residual's).
    """
    if isinstance(effect, bool) or not isinstance(effect, (int, float, np.integer, np.floating)) \
            or not math.isfinite(effect):
        raise ValueError(f"effect must be a finite number, got {effect!r}")
    sd_diff = _nonneg("sd_diff", sd_diff)
    n_seeds = _pos_int("n_seeds", n_seeds)
    z = np.random.default_rng(_pos_int("seed", seed, 0)).standard_normal((_pos_int("n_sims", n_sims), n_seeds))
    if sd_diff == 0:
        return 1.0 if effect > 0 and n_seeds >= inference.MIN_SEEDS and 0.5 ** n_seeds < inference.ALPHA else 0.0
    return _paired_power(float(effect), sd_diff, z, _pos_int("n_boot", n_boot), seed)


def pairs_for_power(
    effect: float,
    sd_model: float,
    sd_resid: float,
    n_seeds: int,
    *,
    target: float = 0.8,
    max_pairs: int = 100_000,
    n_sims: int = 1000,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """How many benchmark pairs (test images) a paired verdict needs for ``target`` power.

    A paired verdict (notebook 04) compares, per seed, the model of one condition with
    that of the other on the same ``n`` benchmark pairs. Per seed the difference of
    the two models' mean outcomes is ``effect + e`` with
    ``var(e) = 2 sd_model^2 + 2 sd_resid^2 / n`` (the pairs' own difficulty is common to
    both models and cancels). More pairs shrink only the second term: with few seeds
    even infinitely many pairs may not reach the target, and the answer is then "add
    seeds". The rule (sign-flip p and seed bootstrap) is simulated with common random
    numbers for every ``n``; the smallest ``n`` that reaches the target is found by
    bisection.

    Args:
        effect: expected difference (paper's direction positive), e.g. 0.13 for removal.
        sd_model: model-to-model sd of a model's mean outcome within a condition
            (:func:`variance_components` ``sd_model``).
        sd_resid: model x image residual sd of the per-image outcome (``sd_resid``).
        n_seeds: seeds (pairs of models).

    Returns:
        dict: ``pairs_needed`` (None if unreachable), ``power`` at that count,
        ``power_limit`` (with infinitely many pairs), ``n_seeds``, ``effect``,
        ``sd_model``, ``sd_resid``, ``target`` and ``reason``.
    """
    for name, v in (("effect", effect),):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number, got {v!r}")
    sd_model, sd_resid = _nonneg("sd_model", sd_model), _nonneg("sd_resid", sd_resid)
    n_seeds = _pos_int("n_seeds", n_seeds)
    max_pairs = _pos_int("max_pairs", max_pairs)
    if not (isinstance(target, (int, float)) and 0 < target < 1):
        raise ValueError(f"target must be in (0, 1), got {target!r}")
    base = {"effect": float(effect), "sd_model": sd_model, "sd_resid": sd_resid, "n_seeds": n_seeds,
            "target": float(target)}

    def tau(n: float) -> float:
        return math.sqrt(2 * sd_model ** 2 + (2 * sd_resid ** 2 / n if math.isfinite(n) else 0.0))

    def pw(n: float) -> float:  # the same seed gives every n the same normal draws (common random numbers)
        return paired_power(effect, tau(n), n_seeds, n_sims=n_sims, n_boot=n_boot, seed=seed)

    if 0.5 ** n_seeds >= inference.ALPHA:
        return {**base, "pairs_needed": None, "power": None, "power_limit": 0.0,
                "reason": (f"a sign-flip test over {n_seeds} seeds cannot reach p < {inference.ALPHA:g} (smallest "
                           f"p = 1/{2 ** n_seeds}), whatever the number of pairs: add seeds (5 at least)")}
    limit = pw(math.inf)
    if limit < target:
        return {**base, "pairs_needed": None, "power": None, "power_limit": limit,
                "reason": (f"with {n_seeds} seeds even infinitely many pairs give power {limit:.2f} < {target:g}: "
                           "the model-to-model spread dominates; add seeds")}
    if pw(max_pairs) < target:
        return {**base, "pairs_needed": None, "power": None, "power_limit": limit,
                "reason": f"more than max_pairs={max_pairs} pairs needed"}
    lo, hi = 0, max_pairs  # pw(hi) >= target; pw(lo) treated as < target
    cache: dict[int, float] = {}
    while hi - lo > 1:
        mid = (lo + hi) // 2
        cache[mid] = pw(mid)
        if cache[mid] >= target:
            hi = mid
        else:
            lo = mid
    return {**base, "pairs_needed": hi, "power": cache.get(hi, pw(hi)), "power_limit": limit,
            "reason": f"{hi} pairs reach power {cache.get(hi, pw(hi)):.2f} with {n_seeds} seeds"}


def variance_components(
    rows: pd.DataFrame, value: str, *, model: str = "key", image: str = "image", group: str | None = None
) -> dict[str, Any]:
    """Model-level and image-level variance components of a per-(model, image) outcome.

    Two-way decomposition without replication (method of moments, balanced data):
    within each ``group`` (condition; the whole table when None),
    ``y[m, i] = mu + model[m] + image[i] + resid[m, i]``; the mean squares are pooled
    over groups by their degrees of freedom. ``sd_model^2 = (MS_model - MS_resid) / n_images``
    (clipped at 0) is the model-to-model variance of a model's mean beyond what its
    images' residuals contribute; ``sd_resid^2 = MS_resid``.

    Args:
        rows: one row per (model, image) (e.g. one preset's rows of an evaluation
            table); every model of a group must have the same images.
        value: the outcome column (e.g. ``removal``).
        model, image: the columns naming models and images. group: the condition column.

    Returns:
        dict: ``sd_model``, ``sd_resid``, ``sd_image`` (the image main effect's sd),
        ``sd_model_clipped`` / ``sd_image_clipped`` (True when the component's mean square is
        below the residual's, so its estimate is negative and reported as 0: **not** a
        measured zero; size power from the measured spread instead, :func:`paired_power`),
        the mean squares ``ms_model``, ``ms_image``, ``ms_resid``, and ``n_models``,
        ``n_images``, ``n_groups``.
    """
    if not isinstance(rows, pd.DataFrame):
        raise ValueError(f"rows must be a DataFrame, got {type(rows).__name__}")
    cols = [model, image, value] + ([group] if group is not None else [])
    missing = [c for c in cols if c not in rows.columns]
    if missing:
        raise ValueError(f"rows lack column(s) {missing}; available: {list(rows.columns)}")
    d = rows[cols].copy()
    d[value] = pd.to_numeric(d[value], errors="coerce")
    if not np.isfinite(d[value].to_numpy(float)).all():
        raise ValueError(f"column {value!r} has NaN/inf values; drop those images for every model first")
    ss_m = ss_i = ss_r = 0.0
    df_m = df_i = df_r = 0
    n_models = n_groups = 0
    n_images_all = set()
    for _, g in (d.groupby(group, sort=False) if group is not None else [(None, d)]):
        if g.duplicated([model, image]).any():
            raise ValueError(f"rows hold more than one value per ({model}, {image}); select one preset first")
        w = g.pivot(index=model, columns=image, values=value)
        if w.isna().any().any():
            raise ValueError("unbalanced table: every model of a group needs a value for the same images")
        y = w.to_numpy(float)
        nm, ni = y.shape
        if nm < 2 or ni < 2:
            raise ValueError(f"each group needs at least 2 models and 2 images, got {nm} x {ni}")
        mu = y.mean()
        rm, ci = y.mean(axis=1, keepdims=True), y.mean(axis=0, keepdims=True)
        ss_m += ni * float(((rm - mu) ** 2).sum())
        ss_i += nm * float(((ci - mu) ** 2).sum())
        ss_r += float(((y - rm - ci + mu) ** 2).sum())
        df_m += nm - 1
        df_i += ni - 1
        df_r += (nm - 1) * (ni - 1)
        n_models += nm
        n_groups += 1
        n_images_all.add(ni)
    ni = int(round(np.mean(sorted(n_images_all))))
    nm_mean = n_models / n_groups
    ms_m, ms_i, ms_r = ss_m / df_m, ss_i / df_i, ss_r / df_r
    return {
        "sd_model": math.sqrt(max(0.0, (ms_m - ms_r) / ni)),
        "sd_resid": math.sqrt(ms_r),
        "sd_image": math.sqrt(max(0.0, (ms_i - ms_r) / nm_mean)),
        "sd_model_clipped": bool(ms_m < ms_r),
        "sd_image_clipped": bool(ms_i < ms_r),
        "ms_model": ms_m,
        "ms_image": ms_i,
        "ms_resid": ms_r,
        "n_models": n_models,
        "n_images": ni,
        "n_groups": n_groups,
    }
