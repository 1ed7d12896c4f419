"""Inference at the level of trained models: permutation tests, model bootstrap, Holm, and the three-way verdict.

The unit is the trained model
-----------------------------
Every statistic here takes one value per trained model (for example the primary
outcome of :func:`derain_utils.measure.outcome.outcome_table`): the test images are nested
inside the models and are never resampled as if they were independent of them.
Each notebook's design fixes what may be exchanged under the null hypothesis, and so
which test is valid:

===================== ======================================= ======================================
design                 null: exchangeable are ...              statistic (effect)
===================== ======================================= ======================================
``within_seed_trend``  the conditions ``x`` of the models of    mean over seeds of the within-seed
(01, set size)         one seed (``x`` shuffled within seed)   Spearman rho(x, y)
``category_trend``     the categories' labels, across           Spearman rho(category complexity,
(02, categories)       categories (K! orderings)               category mean of y)
``two_group``          group labels across the models of        mean(y | a) - mean(y | b)
(03, two sets)         both groups (within strata, if given)
``paired``             the sign of each seed's difference       mean over seeds of y(a) - y(b)
(04, benchmark)        (2^k sign flips)
===================== ======================================= ======================================

Exact where the count allows: the within-seed, stratified two-group and paired
tests are sums of independent per-block statistics, and their exact null
distribution is the convolution of the per-block distributions (enumerated
permutations, combinations or signs) whenever each block is small enough to
enumerate (:data:`MAX_EXACT`); the category test enumerates all K! orderings for
K <= 8. Otherwise a Monte-Carlo test with ``n_permutations`` draws from a seeded
generator, ``p = (1 + #{T* <= T}) / (1 + B)``. Both one-sided p-values are returned
(``p_less``, ``p_greater``).

Ties are kept. A permuted sum that equals the observed one counts in both tails. The
within-seed trend is summed on an integer statistic when every seed shares one
normaliser (the usual case: the same number of models and no tied ranks), because then
the mean rho is a fixed multiple of the sum over seeds of ``4 * sum(rx_c * ry_c)``, an
integer (centred average ranks are multiples of 1/2): those p-values are exactly the
enumeration's. Real-valued statistics (differences of outcomes) are put on a grid of
``scale / 2**40`` and compared with a tolerance of one grid step per block, the most
that rounding each block can move a sum: sums that tie in exact arithmetic stay tied
(:func:`_exact_p`). ``tests/test_inference.py`` checks both against brute-force
enumeration.

Intervals resample models, never images: seeds (blocks of models) for the trend and
the paired designs, models within each category or group (stratified) for the
others. Percentile intervals, ``n_boot`` resamples from a seeded generator. With
few seeds a bootstrap interval is too narrow (a few seed values stand for the whole
seed distribution), which is why the verdict needs the permutation p-value as well.

The verdict
-----------
:func:`decide` applies one rule to a :class:`TestResult` and the notebook's
:class:`Declaration` (written before the run: primary outcome, primary preset or
pooled presets, design, the paper's direction):

* ``reproduced``: one-sided p < alpha (0.05) in the paper's direction AND the 95%
  interval excludes 0 on that side;
* ``contradicted``: the same, in the opposite direction;
* ``inconclusive``: everything else, including fewer than :data:`MIN_SEEDS` replicates
  per condition, an effect, p or interval that could not be computed (NaN), and every
  ``smoke`` run ("plumbing only").

The returned :class:`VerdictRecord` is a plain dataclass (``to_dict()`` gives JSON
types) to merge into ``verdict.json``. Its calibration (false-positive rate at or
below 5% under each notebook's null, for 3 and 8 seeds) is tested with simulations
in ``tests/test_power.py``; :mod:`derain_utils.stats.power` gives power and sample sizes.

Every notebook asks two declared questions of the same models, each decided by :func:`decide`
(:mod:`derain_utils.stats.questions`).

Exploratory presets: the declared primary preset(s) carry the verdict. Any claim
that uses other presets corrects their p-values with :func:`holm` (Holm 1979,
family-wise error rate).
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats

from derain_utils.measure import outcome

__all__ = [
    "ALPHA",
    "MIN_SEEDS",
    "DESIGNS",
    "DIRECTIONS",
    "VERDICTS",
    "MAX_EXACT",
    "TestResult",
    "within_seed_trend",
    "category_trend",
    "two_group",
    "paired",
    "trend_arrays",
    "category_arrays",
    "two_group_arrays",
    "paired_arrays",
    "holm",
    "Declaration",
    "VerdictRecord",
    "decide",
    "decide_jointly",
    "format_number",
    "format_p",
]

ALPHA: float = 0.05
"""One-sided significance level of the verdict."""
MIN_SEEDS: int = 3
"""Fewest replicates (training seeds) per condition for a verdict other than inconclusive."""
DESIGNS: tuple[str, ...] = ("within_seed_trend", "category_trend", "two_group", "paired")
DIRECTIONS: tuple[str, ...] = ("negative", "positive")
VERDICTS: tuple[str, ...] = ("reproduced", "contradicted", "inconclusive")
MAX_EXACT: int = 200_000
"""Largest number of permutations/combinations of one block (or of the K! category orderings) enumerated."""
_MAX_SUPPORT: int = 4_000_000  # largest outer sum built while convolving block distributions
_GRID = 2.0 ** 40  # integer grid of the statistics: values are rounded to |T| scale / 2^40

EXTRA_OUTCOMES: dict[str, str] = {
    "psnr_y": "whole-image PSNR of the luma channel [dB], the number of the deraining tables (benchmarks)",
}
"""Outcomes a :class:`Declaration` may name beyond :data:`derain_utils.measure.outcome.OUTCOME_COLUMNS`."""

STATISTICS: dict[str, str] = {
    "within_seed_trend": "mean within-seed Spearman rho",
    "category_trend": "Spearman rho of category means",
    "two_group": "difference of group means",
    "paired": "mean paired difference",
}


# --------------------------------------------------------------------------- results
@dataclasses.dataclass(frozen=True)
class TestResult:
    """What a model-level test found.

    Attributes:
        design: one of :data:`DESIGNS`.
        statistic: what ``effect`` is (:data:`STATISTICS`).
        effect: the statistic on the data (NaN if it could not be computed).
        ci95: percentile 95% bootstrap interval over models (NaN bounds: none).
        p_less, p_greater: one-sided permutation p-values, P(T* <= T) and P(T* >= T).
        exact: True when the null distribution was enumerated, False for Monte Carlo.
        n_permutations: permutations behind the p-values (enumerated, or drawn).
        min_p: the smallest one-sided p-value this test can give with these counts
            (exact: the mass of the most extreme null value; Monte Carlo: 1 / (B + 1)).
        n_models: models used; n_seeds: replicates per condition (the smallest
            count over conditions; for the trend and paired designs, the seeds used).
        n_units: blocks, categories, models or pairs that the test exchanges.
        n_boot: bootstrap resamples; n_boot_dropped: resamples whose statistic was
            undefined (e.g. constant category means), left out of the interval.
        notes: anything the reader should know (rows dropped, fallbacks).
    """

    design: str
    statistic: str
    effect: float
    ci95: tuple[float, float]
    p_less: float
    p_greater: float
    exact: bool
    n_permutations: int
    min_p: float
    n_models: int
    n_seeds: int
    n_units: int
    n_boot: int
    n_boot_dropped: int = 0
    notes: tuple[str, ...] = ()

    def p_value(self, direction: str) -> float:
        """The one-sided p-value in ``direction`` ("negative": p_less, "positive": p_greater)."""
        _check_direction(direction)
        return self.p_less if direction == "negative" else self.p_greater

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(dataclasses.asdict(self))


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    return v


def _nan_result(design: str, n_models: int, n_seeds: int, n_units: int, n_boot: int, notes: list[str]) -> TestResult:
    return TestResult(design=design, statistic=STATISTICS[design], effect=math.nan, ci95=(math.nan, math.nan),
                      p_less=math.nan, p_greater=math.nan, exact=False, n_permutations=0, min_p=math.nan,
                      n_models=n_models, n_seeds=n_seeds, n_units=n_units, n_boot=n_boot, notes=tuple(notes))


# --------------------------------------------------------------------------- checks
def _check_direction(direction: str) -> str:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    return direction


def _check_int(name: str, v: Any, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {v!r}")
    return int(v)


def _frame(models: Any, cols: Sequence[str], numeric: Sequence[str]) -> tuple[pd.DataFrame, list[str]]:
    """The model table with NaN outcomes dropped (noted); errors name missing/non-numeric columns."""
    if not isinstance(models, pd.DataFrame):
        raise ValueError(f"models must be a pandas DataFrame (one row per trained model), got {type(models).__name__}")
    missing = [c for c in cols if c not in models.columns]
    if missing:
        raise ValueError(f"models lacks column(s) {missing}; available: {list(models.columns)}")
    d = models[list(dict.fromkeys(cols))].copy()
    for c in numeric:
        try:
            d[c] = pd.to_numeric(d[c], errors="raise").astype(float)
        except (TypeError, ValueError):
            raise ValueError(f"column {c!r} must be numeric, got dtype {models[c].dtype}") from None
    notes = []
    bad = ~np.isfinite(d[list(numeric)].to_numpy(float)).all(axis=1)
    if bad.any():
        notes.append(f"{int(bad.sum())} model(s) with a NaN/inf {'/'.join(numeric)} left out")
        d = d[~bad]
    return d.reset_index(drop=True), notes


def _rngs(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent generators of the Monte-Carlo permutations and of the bootstrap, from one seed."""
    seed = _check_int("seed", seed, 0)
    return np.random.default_rng([seed, 1]), np.random.default_rng([seed, 2])


def _check_common(n_permutations: int, n_boot: int, seed: int) -> None:
    _check_int("n_permutations", n_permutations, 1)
    _check_int("n_boot", n_boot, 1)
    _check_int("seed", seed, 0)


# --------------------------------------------------------------------------- null distributions
def _to_grid(v: np.ndarray, scale: float) -> np.ndarray:
    return np.rint(np.asarray(v, dtype=float) / scale * _GRID).astype(np.int64)


def _convolve(blocks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    """Exact null of the sum of independent uniform draws, one from each block's (integer) values.

    Returns sorted unique sums and their probabilities, or None when the support grows too large.
    """
    vals = np.zeros(1, dtype=np.int64)
    probs = np.ones(1)
    for b in blocks:
        u, c = np.unique(b, return_counts=True)
        if vals.size * u.size > _MAX_SUPPORT:
            return None
        s = (vals[:, None] + u[None, :]).ravel()
        p = (probs[:, None] * (c / b.size)[None, :]).ravel()
        vals, inv = np.unique(s, return_inverse=True)
        probs = np.bincount(inv.ravel(), weights=p, minlength=vals.size)
    return vals, probs


def _exact_p(vals: np.ndarray, probs: np.ndarray, obs: int, tol: int = 0) -> tuple[float, float, float]:
    """One-sided p-values of ``obs`` under the null (sorted ``vals``, their ``probs``).

    Values within ``tol`` grid steps of ``obs`` tie with it and count in both tails; the
    smallest attainable p is the mass tied with the most extreme value in either tail.
    """
    p_less = float(probs[vals <= obs + tol].sum())
    p_greater = float(probs[vals >= obs - tol].sum())
    min_p = float(min(probs[vals <= vals[0] + tol].sum(), probs[vals >= vals[-1] - tol].sum()))
    return min(p_less, 1.0), min(p_greater, 1.0), min(min_p, 1.0)


def _mc_p(draws: np.ndarray, obs: int, tol: int = 0) -> tuple[float, float, float]:
    b = draws.size
    return ((1 + int((draws <= obs + tol).sum())) / (b + 1), (1 + int((draws >= obs - tol).sum())) / (b + 1),
            1.0 / (b + 1))


def _sum_test(
    enumerated: list[np.ndarray | None],
    samplers: list[Callable[[np.random.Generator, int], np.ndarray]],
    observed: np.ndarray,
    n_permutations: int,
    rng: np.random.Generator,
    *,
    integer: bool = False,
) -> tuple[float, float, bool, int, float, list[str]]:
    """Permutation test of T = sum of per-block statistics; exact when every block was enumerated.

    ``integer=True``: the blocks' values (and ``observed``) are integers already, compared
    exactly. Otherwise they are put on the grid of :func:`_to_grid` and compared with a
    tolerance of one step per block (rounding moves each block by at most half a step, so
    sums that are equal in exact arithmetic differ by at most that much on the grid).
    """
    if integer:
        obs, tol = int(np.rint(np.asarray(observed, dtype=float)).astype(np.int64).sum()), 0

        def grid(v: np.ndarray) -> np.ndarray:
            return np.rint(np.asarray(v, dtype=float)).astype(np.int64)
    else:
        scale = max(float(np.abs(observed).sum()), *(float(np.abs(e).max()) for e in enumerated if e is not None),
                    1e-12)
        obs, tol = int(_to_grid(observed, scale).sum()), len(enumerated)

        def grid(v: np.ndarray) -> np.ndarray:
            return _to_grid(v, scale)
    notes: list[str] = []
    if all(e is not None for e in enumerated):
        conv = _convolve([grid(e) for e in enumerated])
        if conv is not None:
            p_less, p_greater, min_p = _exact_p(*conv, obs, tol)
            count = math.prod(int(e.size) for e in enumerated)
            return p_less, p_greater, True, count, min_p, notes
        notes.append("null support too large to enumerate: Monte-Carlo permutations")
    else:
        notes.append("a block is too large to enumerate: Monte-Carlo permutations")
    total = np.zeros(n_permutations, dtype=np.int64)
    for e, sample in zip(enumerated, samplers):
        if e is not None:
            total += grid(e)[rng.integers(0, e.size, size=n_permutations)]
        else:
            total += grid(sample(rng, n_permutations))
    p_less, p_greater, min_p = _mc_p(total, obs, tol)
    return p_less, p_greater, False, n_permutations, min_p, notes


def _percentile(dist: np.ndarray) -> tuple[tuple[float, float], int]:
    finite = dist[np.isfinite(dist)]
    dropped = int(dist.size - finite.size)
    if finite.size == 0:
        return (math.nan, math.nan), dropped
    lo, hi = np.quantile(finite, [0.025, 0.975])
    return (float(lo), float(hi)), dropped


def _ranks(v: np.ndarray) -> np.ndarray:
    return scipy.stats.rankdata(v, axis=-1)


def _spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman rho along the last axis (average ranks); NaN where either side is constant."""
    rx = _ranks(x)
    ry = _ranks(y)
    rx = rx - rx.mean(axis=-1, keepdims=True)
    ry = ry - ry.mean(axis=-1, keepdims=True)
    den = np.sqrt((rx * rx).sum(-1) * (ry * ry).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-12, (rx * ry).sum(-1) / den, np.nan)


# --------------------------------------------------------------------------- 01: trend within seeds
@functools.lru_cache(maxsize=16)
def _perm_matrix(k: int) -> np.ndarray:
    out = np.array(list(itertools.permutations(range(k))), dtype=np.int64)
    out.setflags(write=False)
    return out


def trend_arrays(
    xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], *, labels: Sequence[Any] | None = None,
    n_permutations: int = 20_000, n_boot: int = 4000, seed: int = 0, notes: Sequence[str] = (),
) -> TestResult:
    """:func:`within_seed_trend` on arrays: ``xs[j]``, ``ys[j]`` are the conditions and outcomes of seed j's models."""
    notes = list(notes)
    labels = list(range(len(xs))) if labels is None else list(labels)
    if not (len(xs) == len(ys) == len(labels)):
        raise ValueError(f"xs, ys and labels must have one entry per seed, got {len(xs)}, {len(ys)}, {len(labels)}")
    xs = [np.asarray(v, dtype=float).ravel() for v in xs]
    ys = [np.asarray(v, dtype=float).ravel() for v in ys]
    if any(a.size != b.size for a, b in zip(xs, ys)):
        raise ValueError("xs[j] and ys[j] must have equal lengths (one value per model)")
    n_models = int(sum(v.size for v in ys))
    rng_perm, rng_boot = _rngs(seed)
    observed, enumerated, samplers, dens = [], [], [], []
    for lab, xv, yv in zip(labels, xs, ys):
        k = xv.size
        if k < 2 or np.ptp(xv) == 0 or np.ptp(yv) == 0:
            why = "fewer than 2 models" if k < 2 else ("constant x" if np.ptp(xv) == 0 else "constant y")
            notes.append(f"seed {lab!r}: {why}; left out of the trend")
            continue
        rx = _ranks(xv)
        ry = _ranks(yv)
        # centred average ranks are multiples of 1/2: 2 * centred rank is an exact integer
        rxc, ryc = np.rint(2 * (rx - rx.mean())), np.rint(2 * (ry - ry.mean()))
        den = math.sqrt(float((rxc @ rxc) * (ryc @ ryc)))
        dens.append(den)
        observed.append(float(rxc @ ryc))
        if math.factorial(k) <= MAX_EXACT:
            enumerated.append(rxc[_perm_matrix(k)] @ ryc)
            samplers.append(_unused)
        else:
            enumerated.append(None)
            samplers.append(lambda r, n, a=rxc, c=ryc: r.permuted(np.tile(a, (n, 1)), axis=1) @ c)
    used = len(observed)
    if used == 0:
        notes.append("no seed with two or more models and a spread in x and y")
        return _nan_result("within_seed_trend", n_models, 0, 0, n_boot, notes)
    dens_ = np.asarray(dens)
    obs = np.asarray(observed) / dens_  # each seed's Spearman rho
    if np.allclose(dens_, dens_[0], rtol=1e-12, atol=0):  # one normaliser: sum of integers, compared exactly
        p_less, p_greater, exact, count, min_p, more = _sum_test(enumerated, samplers, np.asarray(observed),
                                                                 n_permutations, rng_perm, integer=True)
    else:  # seeds with different counts or tie patterns: rho per seed, on the grid with the tie tolerance
        enum_rho = [None if e is None else e / d for e, d in zip(enumerated, dens_)]
        samp_rho = [_unused if e is not None else (lambda r, n, f=f_, d=d_: f(r, n) / d)
                    for e, f_, d_ in zip(enumerated, samplers, dens_)]
        p_less, p_greater, exact, count, min_p, more = _sum_test(enum_rho, samp_rho, obs, n_permutations, rng_perm)
    ci, dropped = _percentile(obs[rng_boot.integers(0, used, size=(n_boot, used))].mean(axis=1))
    return TestResult(design="within_seed_trend", statistic=STATISTICS["within_seed_trend"], effect=float(obs.mean()),
                      ci95=ci, p_less=p_less, p_greater=p_greater, exact=exact, n_permutations=count, min_p=min_p,
                      n_models=n_models, n_seeds=used, n_units=used, n_boot=n_boot, n_boot_dropped=dropped,
                      notes=tuple(notes + more))


@functools.lru_cache(maxsize=16)
def _combo_matrix(n: int, k: int) -> np.ndarray:
    out = np.array(list(itertools.combinations(range(n), k)), dtype=np.int64).reshape(-1, k)
    out.setflags(write=False)
    return out


def _unused(rng: np.random.Generator, n: int) -> np.ndarray:  # sampler of an enumerated block (never called)
    raise AssertionError("an enumerated block needs no sampler")


def within_seed_trend(
    models: pd.DataFrame,
    x: str,
    y: str,
    *,
    block: str = "seed",
    n_permutations: int = 20_000,
    n_boot: int = 4000,
    seed: int = 0,
) -> TestResult:
    """Trend of ``y`` over ``x`` with ``x`` shuffled within each seed (notebook 01: y over the set size N).

    Statistic: the mean over seeds of the within-seed Spearman rho between ``x`` and
    ``y`` (one value per model). Seed effects (a seed whose models all remove more)
    cancel inside a seed. Null: within every seed the models' ``x`` are exchangeable.
    A seed with fewer than 2 models, or constant ``x`` or ``y``, gives no rho and
    is left out (noted). With 4 set sizes the exact null holds 24^k orderings for k
    seeds. Interval: seeds resampled with replacement. ``n_seeds`` counts the seeds used.

    Args:
        models: one row per trained model.
        x: the condition (e.g. ``"n_train"``); y: the outcome column.
        block: the column of the training seed.
        n_permutations: Monte-Carlo draws when a seed holds more than 8 models.
        n_boot: bootstrap resamples of seeds. seed: seed of both generators.
    """
    _check_common(n_permutations, n_boot, seed)
    d, notes = _frame(models, [block, x, y], [x, y])
    groups = list(d.groupby(block, sort=True))
    return trend_arrays([g[x].to_numpy(float) for _, g in groups], [g[y].to_numpy(float) for _, g in groups],
                        labels=[b for b, _ in groups], n_permutations=n_permutations, n_boot=n_boot, seed=seed,
                        notes=notes)


# --------------------------------------------------------------------------- 02: categories
def category_arrays(
    xc: np.ndarray, ys: Sequence[np.ndarray], *, n_permutations: int = 20_000, n_boot: int = 4000, seed: int = 0,
    notes: Sequence[str] = (),
) -> TestResult:
    """:func:`category_trend` on arrays: ``xc[j]`` the complexity of category j, ``ys[j]`` its models' outcomes."""
    notes = list(notes)
    xc = np.asarray(xc, dtype=float).ravel()
    ys = [np.asarray(v, dtype=float).ravel() for v in ys]
    if xc.size != len(ys) or any(v.size == 0 for v in ys):
        raise ValueError(f"xc needs one complexity per category ({len(ys)}) and every category at least one model")
    rng_perm, rng_boot = _rngs(seed)
    k = len(ys)
    n_models = int(sum(v.size for v in ys))
    n_seeds = int(min(v.size for v in ys)) if k else 0
    if k < 3:
        notes.append(f"{k} categories: a rank correlation needs at least 3")
        return _nan_result("category_trend", n_models, n_seeds, k, n_boot, notes)
    yc = np.array([v.mean() for v in ys])
    effect = float(_spearman_rows(xc, yc))
    if not math.isfinite(effect):
        notes.append("the category complexities or means are all equal: rho undefined")
        return _nan_result("category_trend", n_models, n_seeds, k, n_boot, notes)
    if k <= 8:
        perms = _perm_matrix(k)
        exact, count = True, len(perms)
    else:
        perms = rng_perm.permuted(np.tile(np.arange(k), (n_permutations, 1)), axis=1)
        exact, count = False, n_permutations
    null = _to_grid(_spearman_rows(np.broadcast_to(xc, perms.shape), yc[perms]), 1.0)
    obs = int(_to_grid(np.array([effect]), 1.0)[0])
    if exact:
        vals, cnt = np.unique(null, return_counts=True)
        p_less, p_greater, min_p = _exact_p(vals, cnt / cnt.sum(), obs, tol=1)
    else:
        p_less, p_greater, min_p = _mc_p(null, obs, tol=1)
    n_values = int(np.unique(null).size)  # distinct values rho takes under the null
    means = np.empty((n_boot, k))
    for j, v in enumerate(ys):
        means[:, j] = v[rng_boot.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
    ci, dropped = _percentile(_spearman_rows(np.broadcast_to(xc, means.shape), means))
    if math.isfinite(ci[0]) and ci[0] == ci[1]:
        notes.append(f"the bootstrap interval is a single value ({ci[0]:+.2f}): with {k} categories rho takes "
                     f"only {n_values} values, and resampling models within categories did not reorder their "
                     "means; the exact permutation p-value carries the verdict")
    return TestResult(design="category_trend", statistic=STATISTICS["category_trend"], effect=effect, ci95=ci,
                      p_less=p_less, p_greater=p_greater, exact=exact, n_permutations=count, min_p=min_p,
                      n_models=n_models, n_seeds=n_seeds, n_units=k, n_boot=n_boot, n_boot_dropped=dropped,
                      notes=tuple(notes))


def category_trend(
    models: pd.DataFrame,
    x: str,
    y: str,
    *,
    category: str = "background",
    n_permutations: int = 20_000,
    n_boot: int = 4000,
    seed: int = 0,
) -> TestResult:
    """Category-level trend: Spearman rho between each category's complexity and its mean outcome (notebook 02).

    The categories are the units: their mean ``y`` (over that category's models) is
    correlated with their complexity ``x`` (one value per category; it must be the
    same on every row of a category). Null: the categories' labels are exchangeable,
    so all K! assignments of the means to the complexities are equally likely
    (exact for K <= 8: with 4 categories the smallest one-sided p is 1/24, reached
    only by a perfect ordering). Interval: models resampled within each category
    (stratified); resamples whose category means are all equal are undefined and
    dropped. The interval carries the seed-to-seed noise of the category means, not
    the choice of categories. ``n_seeds`` is the smallest number of models of a category.
    """
    _check_common(n_permutations, n_boot, seed)
    d, notes = _frame(models, [category, x, y], [x, y])
    spread = d.groupby(category, sort=True)[x].agg(lambda v: float(np.ptp(v.to_numpy(float))))
    varying = spread[spread > 1e-12 * max(1.0, float(d[x].abs().max()) if len(d) else 1.0)]
    if len(varying):
        raise ValueError(f"column {x!r} must hold one complexity value per category; it varies within "
                         f"{list(varying.index)}")
    groups = list(d.groupby(category, sort=True))
    xc = np.array([g[x].iloc[0] for _, g in groups], dtype=float)
    return category_arrays(xc, [g[y].to_numpy(float) for _, g in groups], n_permutations=n_permutations,
                           n_boot=n_boot, seed=seed, notes=notes)


# --------------------------------------------------------------------------- 03: two groups
def two_group_arrays(
    yv: np.ndarray, is_a: np.ndarray, strata: np.ndarray | None = None, *, n_permutations: int = 20_000,
    n_boot: int = 4000, seed: int = 0, notes: Sequence[str] = (),
) -> TestResult:
    """:func:`two_group` on arrays: the models' outcomes, whether each is in group a, and stratum labels."""
    notes = list(notes)
    yv = np.asarray(yv, dtype=float).ravel()
    is_a = np.asarray(is_a, dtype=bool).ravel()
    strat = np.zeros(yv.size, dtype=int) if strata is None else np.asarray(strata).ravel()
    if not (yv.size == is_a.size == strat.size):
        raise ValueError(f"yv, is_a and strata must have one entry per model, got {yv.size}, {is_a.size}, {strat.size}")
    rng_perm, rng_boot = _rngs(seed)
    n_a, n_b = int(is_a.sum()), int((~is_a).sum())
    n_models = int(yv.size)
    if n_a == 0 or n_b == 0:
        notes.append("a group has no model")
        return _nan_result("two_group", n_models, 0, n_models, n_boot, notes)
    effect = float(yv[is_a].mean() - yv[~is_a].mean())
    observed, enumerated, samplers = [], [], []
    for s in pd.unique(strat):
        m = strat == s
        v, k_a = yv[m], int(is_a[m].sum())
        observed.append(float(v[is_a[m]].sum()))
        if k_a in (0, v.size):  # a stratum holding one group only carries nothing under the null
            enumerated.append(np.array([observed[-1]]))
            samplers.append(_unused)
        elif math.comb(v.size, k_a) <= MAX_EXACT:
            enumerated.append(v[_combo_matrix(v.size, k_a)].sum(axis=1))
            samplers.append(_unused)
        else:
            enumerated.append(None)
            samplers.append(lambda r, n, vv=v, kk=k_a: r.permuted(np.tile(vv, (n, 1)), axis=1)[:, :kk].sum(axis=1))
    # with fixed group sizes the effect rises with the sum over group a, so its tails are the effect's
    p_less, p_greater, exact, count, min_p, more = _sum_test(enumerated, samplers, np.asarray(observed),
                                                             n_permutations, rng_perm)
    sum_a = np.zeros(n_boot)
    sum_b = np.zeros(n_boot)
    for s in pd.unique(strat):
        for grp, acc in ((True, sum_a), (False, sum_b)):
            v = yv[(strat == s) & (is_a == grp)]
            if v.size:
                acc += v[rng_boot.integers(0, v.size, size=(n_boot, v.size))].sum(axis=1)
    ci, dropped = _percentile(sum_a / n_a - sum_b / n_b)
    return TestResult(design="two_group", statistic=STATISTICS["two_group"], effect=effect, ci95=ci,
                      p_less=p_less, p_greater=p_greater, exact=exact, n_permutations=count, min_p=min_p,
                      n_models=n_models, n_seeds=min(n_a, n_b), n_units=n_models, n_boot=n_boot,
                      n_boot_dropped=dropped, notes=tuple(notes + more))


def two_group(
    models: pd.DataFrame,
    y: str,
    group: str,
    a: Any,
    b: Any,
    *,
    strata: str | None = None,
    n_permutations: int = 20_000,
    n_boot: int = 4000,
    seed: int = 0,
) -> TestResult:
    """Difference of the mean of ``y`` between two groups of models, ``a`` minus ``b`` (notebook 03).

    Null: the group labels are exchangeable across the models (within each stratum
    when ``strata`` names a column, e.g. ``n_train``). Exact when every stratum's
    C(n, n_a) label assignments can be enumerated (:data:`MAX_EXACT`): with 3 models
    per group the smallest one-sided p is 1/20 = 0.05, so a verdict needs at least 4.
    Interval: models resampled within each (group, stratum) cell. Rows of other
    groups are ignored. ``n_seeds`` is the size of the smaller group.
    """
    _check_common(n_permutations, n_boot, seed)
    cols = [group, y] + ([strata] if strata is not None else [])
    d, notes = _frame(models, cols, [y])
    _check_groups(d, group, a, b)
    d = d[d[group].isin([a, b])].reset_index(drop=True)
    return two_group_arrays(d[y].to_numpy(float), (d[group] == a).to_numpy(),
                            d[strata].to_numpy() if strata is not None else None, n_permutations=n_permutations,
                            n_boot=n_boot, seed=seed, notes=notes)


def _check_groups(d: pd.DataFrame, group: str, a: Any, b: Any) -> None:
    present = set(d[group].unique().tolist())
    for name, v in (("a", a), ("b", b)):
        if v not in present:
            raise ValueError(f"{name}={v!r} is not a value of column {group!r}; values: {sorted(map(str, present))}")
    if a == b:
        raise ValueError(f"a and b must differ, both are {a!r}")


# --------------------------------------------------------------------------- 04: paired
def paired_arrays(
    diffs: np.ndarray, *, n_permutations: int = 20_000, n_boot: int = 4000, seed: int = 0, notes: Sequence[str] = (),
) -> TestResult:
    """:func:`paired` on the per-seed differences ``y(a) - y(b)``."""
    notes = list(notes)
    diffs = np.asarray(diffs, dtype=float).ravel()
    rng_perm, rng_boot = _rngs(seed)
    k = int(diffs.size)
    if k == 0:
        notes.append("no complete pair")
        return _nan_result("paired", 0, 0, 0, n_boot, notes)
    enumerated = [np.array([v, -v]) for v in diffs]
    p_less, p_greater, exact, count, min_p, more = _sum_test(enumerated, [_unused] * k, diffs, n_permutations,
                                                             rng_perm)
    ci, dropped = _percentile(diffs[rng_boot.integers(0, k, size=(n_boot, k))].mean(axis=1))
    return TestResult(design="paired", statistic=STATISTICS["paired"], effect=float(diffs.mean()), ci95=ci,
                      p_less=p_less, p_greater=p_greater, exact=exact, n_permutations=count, min_p=min_p,
                      n_models=2 * k, n_seeds=k, n_units=k, n_boot=n_boot, n_boot_dropped=dropped,
                      notes=tuple(notes + more))


def paired(
    models: pd.DataFrame,
    y: str,
    group: str,
    a: Any,
    b: Any,
    *,
    pair: str = "seed",
    n_permutations: int = 20_000,
    n_boot: int = 4000,
    seed: int = 0,
) -> TestResult:
    """Paired difference ``y(a) - y(b)`` over seeds, sign-flip test (notebook 04: two set sizes per seed).

    Each value of ``pair`` (a training seed) must hold one model of group ``a`` and
    one of ``b``; incomplete pairs are left out (noted). Null: each seed's difference
    is as likely to have either sign; exact over the 2^k sign patterns (by
    convolution, up to about k = 20 seeds): with 4 seeds the smallest one-sided p is
    1/16, with 5 it is 1/32. Interval: seeds resampled with replacement.
    """
    _check_common(n_permutations, n_boot, seed)
    d, notes = _frame(models, [pair, group, y], [y])
    _check_groups(d, group, a, b)
    d = d[d[group].isin([a, b])]
    counts = d.groupby([pair, group]).size()
    if (counts > 1).any():
        raise ValueError(f"pair column {pair!r}: {counts[counts > 1].index[0]} holds more than one model; "
                         "give one model per (pair, group)")
    wide = d.pivot(index=pair, columns=group, values=y)
    complete = wide.dropna()
    if len(complete) < len(wide):
        notes.append(f"{len(wide) - len(complete)} seed(s) without both groups left out")
    return paired_arrays((complete[a] - complete[b]).to_numpy(float), n_permutations=n_permutations,
                         n_boot=n_boot, seed=seed, notes=notes)


# --------------------------------------------------------------------------- multiplicity
def holm(p_values: Mapping[Any, float] | Sequence[float]) -> dict[Any, float] | list[float]:
    """Holm's step-down adjusted p-values (family-wise error rate), same shape as the input.

    ``p_adj(i) = max over j <= i of min(1, (m - j + 1) p(j))`` for the p-values sorted
    ascending; ``m`` counts every hypothesis given, NaN ones included (conservative),
    and a NaN p-value stays NaN.
    """
    if isinstance(p_values, Mapping):
        keys = list(p_values)
        vals = [p_values[k] for k in keys]
    else:
        keys = None
        vals = list(p_values)
    arr = np.empty(len(vals))
    for i, v in enumerate(vals):
        if v is None or isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise ValueError(f"holm: p-value {i} must be a number in [0, 1] or NaN, got {v!r}")
        arr[i] = float(v)
        if math.isfinite(arr[i]) and not 0.0 <= arr[i] <= 1.0:
            raise ValueError(f"holm: p-value {i} must lie in [0, 1], got {v!r}")
    m = arr.size
    out = np.full(m, np.nan)
    finite = np.flatnonzero(np.isfinite(arr))
    order = finite[np.argsort(arr[finite], kind="stable")]
    running = 0.0
    for j, i in enumerate(order):
        running = max(running, min(1.0, (m - j) * arr[i]))
        out[i] = running
    res = [float(v) for v in out]
    return dict(zip(keys, res)) if keys is not None else res


# --------------------------------------------------------------------------- declaration & verdict
@dataclasses.dataclass(frozen=True)
class Declaration:
    """What a notebook tests, written down before it runs.

    Attributes:
        notebook: the notebook's stem, e.g. ``"01_set_size"``.
        design: one of :data:`DESIGNS` (which test is valid).
        direction: the paper's direction of the effect: ``"negative"`` (e.g. the
            outcome falls with N) or ``"positive"`` (e.g. simple minus complex > 0).
        presets: the primary rain preset, or several pooled with equal weight.
        outcome: the outcome column (default the primary outcome,
            :data:`derain_utils.measure.outcome.PRIMARY_OUTCOME`).
        exploratory: other presets reported as exploratory (Holm-corrected if a
            claim uses them).
        alpha: one-sided significance level.
    """

    notebook: str
    design: str
    direction: str
    presets: tuple[str, ...]
    outcome: str = outcome.PRIMARY_OUTCOME
    exploratory: tuple[str, ...] = ()
    alpha: float = ALPHA

    def __post_init__(self) -> None:
        if not isinstance(self.notebook, str) or not self.notebook.strip():
            raise ValueError(f"Declaration.notebook must be a non-empty string, got {self.notebook!r}")
        if self.design not in DESIGNS:
            raise ValueError(f"Declaration.design must be one of {DESIGNS}, got {self.design!r}")
        _check_direction(self.direction)
        presets = (self.presets,) if isinstance(self.presets, str) else tuple(self.presets)
        if not presets or not all(isinstance(p, str) and p for p in presets):
            raise ValueError(f"Declaration.presets must name at least one rain preset, got {self.presets!r}")
        if len(set(presets)) != len(presets):
            raise ValueError(f"Declaration.presets repeats a preset: {presets}")
        exploratory = (self.exploratory,) if isinstance(self.exploratory, str) else tuple(self.exploratory)
        both = sorted(set(presets) & set(exploratory))
        if both:
            raise ValueError(f"Declaration: preset(s) {both} cannot be both primary and exploratory")
        valid = [c for c in outcome.OUTCOME_COLUMNS if c not in ("stalled", "removal_fit")] + list(EXTRA_OUTCOMES)
        if self.outcome not in valid:
            raise ValueError(f"Declaration.outcome must be one of {valid}, got {self.outcome!r}")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not 0 < self.alpha < 0.5:
            raise ValueError(f"Declaration.alpha must be in (0, 0.5), got {self.alpha!r}")
        object.__setattr__(self, "presets", presets)
        object.__setattr__(self, "exploratory", exploratory)
        object.__setattr__(self, "alpha", float(self.alpha))

    @property
    def preset_label(self) -> str:
        """``long_wide``, or ``pooled: slanted, long_wide, dense``."""
        return self.presets[0] if len(self.presets) == 1 else "pooled: " + ", ".join(self.presets)

    def to_dict(self) -> dict[str, Any]:
        return {**_jsonable(dataclasses.asdict(self)), "preset_label": self.preset_label}


@dataclasses.dataclass(frozen=True)
class VerdictRecord:
    """The three-way verdict of a notebook, ready to merge into ``verdict.json`` (:meth:`to_dict`).

    ``reproduced`` is True only for ``verdict == "reproduced"``; ``p_value`` is the
    one-sided p in the paper's direction, ``p_opposite`` the other one.
    """

    verdict: str
    reproduced: bool
    p_value: float
    p_opposite: float
    effect: float
    ci95: tuple[float, float]
    statistic: str
    test: str
    exact: bool
    n_permutations: int
    min_p: float
    primary_outcome: str
    primary_preset: str
    direction: str
    alpha: float
    n_models: int
    n_seeds: int
    profile: str
    reason: str
    headline: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (NaN as None, the interval as a list)."""
        return _jsonable(dataclasses.asdict(self))


def format_number(v: float, digits: int = 2) -> str:
    """``v`` with ``digits`` decimals, ``nan`` for a NaN (headlines)."""
    return "nan" if not math.isfinite(v) else f"{v:.{digits}f}"


def format_p(p: float) -> str:
    """A p-value as headlines write it: two significant digits, scientific below 0.001."""
    if not math.isfinite(p):
        return "nan"
    return f"{p:.2g}" if p >= 0.001 else f"{p:.1e}"


def decide(
    result: TestResult | None,
    declaration: Declaration,
    *,
    profile: str,
    n_seeds: int | None = None,
) -> VerdictRecord:
    """The verdict rule (module docstring): reproduced, contradicted or inconclusive.

    Args:
        result: the declared design's test on the declared outcome (None: nothing
            could be computed; inconclusive).
        declaration: the notebook's :class:`Declaration`.
        profile: the run's profile; ``"smoke"`` is always inconclusive ("plumbing only").
        n_seeds: replicates per condition (default ``result.n_seeds``).
    """
    if not isinstance(declaration, Declaration):
        raise ValueError(f"declaration must be an inference.Declaration, got {type(declaration).__name__}")
    if result is not None and not isinstance(result, TestResult):
        raise ValueError(f"result must be an inference.TestResult or None, got {type(result).__name__}")
    if not isinstance(profile, str) or not profile.strip():
        raise ValueError(f"profile must be a non-empty string (smoke, quick, long, paper), got {profile!r}")
    if result is not None and result.design != declaration.design:
        raise ValueError(f"the test's design {result.design!r} is not the declared design {declaration.design!r}")
    alpha, direction = declaration.alpha, declaration.direction
    if result is None:
        effect, ci, p, p_opp = math.nan, (math.nan, math.nan), math.nan, math.nan
        statistic, exact, count, min_p, n_models = STATISTICS[declaration.design], False, 0, math.nan, 0
        seeds = 0 if n_seeds is None else _check_int("n_seeds", n_seeds, 0)
    else:
        effect, ci = result.effect, (float(result.ci95[0]), float(result.ci95[1]))
        p = result.p_value(direction)
        p_opp = result.p_value("positive" if direction == "negative" else "negative")
        statistic, exact, count, min_p, n_models = (result.statistic, result.exact, result.n_permutations,
                                                    result.min_p, result.n_models)
        seeds = result.n_seeds if n_seeds is None else _check_int("n_seeds", n_seeds, 0)
    lo, hi = ci
    expected_side = (hi < 0) if direction == "negative" else (lo > 0)
    other_side = (lo > 0) if direction == "negative" else (hi < 0)
    finite = all(math.isfinite(v) for v in (effect, lo, hi, p, p_opp))
    numbers = f"{statistic} = {format_number(effect)} [{format_number(lo)}, {format_number(hi)}], one-sided p = {format_p(p)}"
    scope = (f"{n_models} models, {seeds} seeds; {declaration.outcome} on {declaration.preset_label}")
    if profile.strip().lower() == "smoke":
        verdict, reason = "inconclusive", "plumbing only: a smoke run tests the code, its numbers mean nothing"
    elif result is None or not finite:
        verdict, reason = "inconclusive", "the effect, its interval or its p-value could not be computed"
    elif seeds < MIN_SEEDS:
        verdict, reason = "inconclusive", f"fewer than {MIN_SEEDS} seeds per condition ({seeds})"
    elif p < alpha and expected_side:
        verdict, reason = "reproduced", f"p < {alpha:g} in the paper's direction and the interval excludes 0"
    elif p_opp < alpha and other_side:
        verdict, reason = "contradicted", (f"p < {alpha:g} against the paper's direction and the interval "
                                           "excludes 0 on that side")
    else:
        verdict = "inconclusive"
        if math.isfinite(min_p) and min_p >= alpha:
            reason = (f"this design cannot reach p < {alpha:g} with these counts (smallest attainable p = "
                      f"{format_p(min_p)}): add seeds")
        elif p < alpha or p_opp < alpha:
            reason = f"p < {alpha:g} but the 95% interval includes 0"
        else:
            reason = f"not significant at {alpha:g} in either direction"
    label = {"reproduced": "Reproduced", "contradicted": "Contradicted",
             "inconclusive": "Inconclusive"}[verdict]
    if verdict == "inconclusive" and reason.startswith("plumbing only"):
        headline = f"Inconclusive (plumbing only): smoke profile; {numbers} ({scope})."
    elif verdict == "inconclusive":
        headline = f"Inconclusive ({reason}): {numbers} ({scope})."
    else:
        headline = f"{label}: {numbers} in the paper's direction ({direction}) ({scope})."
        if verdict == "contradicted":
            headline = (f"{label}: {statistic} = {format_number(effect)} [{format_number(lo)}, {format_number(hi)}], one-sided p = "
                        f"{format_p(p_opp)} against the paper's direction ({direction}) ({scope}).")
    return VerdictRecord(verdict=verdict, reproduced=verdict == "reproduced", p_value=p, p_opposite=p_opp,
                         effect=effect, ci95=ci, statistic=statistic, test=declaration.design, exact=exact,
                         n_permutations=count, min_p=min_p, primary_outcome=declaration.outcome,
                         primary_preset=declaration.preset_label, direction=direction, alpha=alpha,
                         n_models=n_models, n_seeds=seeds, profile=profile, reason=reason, headline=headline)


def decide_jointly(records: Mapping[str, VerdictRecord], *, primary: str) -> VerdictRecord:
    """One verdict from co-primary tests: reproduced only when every one of them is (intersection-union).

    A claim with several declared consequences (notebook 03: less excess removal of unseen
    rain on real backgrounds *and* less removal of unseen rain from a flat grey image) is
    reproduced when each test is reproduced at ``alpha`` on its own; the intersection-union
    test needs no multiplicity correction, because the claim is only accepted when every
    null is rejected (its p-value is the largest of the p-values). Contradicted when every
    test is contradicted; inconclusive otherwise (the reason says which test fell short).

    Args:
        records: test name -> the :func:`decide` record of each co-primary test (same profile).
        primary: the name of the test whose effect, interval, outcome and counts the joint
            record reports (the others are kept by the notebook beside it).

    Returns:
        A :class:`VerdictRecord` with the primary's numbers, ``p_value`` and ``p_opposite``
        the largest over the tests, ``min_p`` the largest attainable, and the joint verdict.
    """
    if not isinstance(records, Mapping) or not records:
        raise ValueError("records must be a non-empty mapping {test name: VerdictRecord}")
    for name, r in records.items():
        if not isinstance(r, VerdictRecord):
            raise ValueError(f"records[{name!r}] must be an inference.VerdictRecord, got {type(r).__name__}")
    if primary not in records:
        raise ValueError(f"primary={primary!r} is not one of the tests {list(records)}")
    profiles_ = {r.profile for r in records.values()}
    if len(profiles_) > 1:
        raise ValueError(f"the records come from different profiles {sorted(profiles_)}")
    main = records[primary]
    verdicts = {n: r.verdict for n, r in records.items()}
    if all(v == "reproduced" for v in verdicts.values()):
        verdict = "reproduced"
    elif all(v == "contradicted" for v in verdicts.values()):
        verdict = "contradicted"
    else:
        verdict = "inconclusive"

    def worst(values: list[float]) -> float:
        return math.nan if any(not math.isfinite(v) for v in values) else max(values)

    p = worst([r.p_value for r in records.values()])
    p_opp = worst([r.p_opposite for r in records.values()])
    min_p = worst([r.min_p for r in records.values()])
    parts = "; ".join(f"{n}: {r.verdict} ({r.reason})" for n, r in records.items())
    if main.reason.startswith("plumbing only"):
        reason = main.reason
    elif verdict != "inconclusive":
        reason = f"every co-primary test {verdict}: {parts}"
    elif all(v == "inconclusive" for v in verdicts.values()):
        reason = f"no co-primary test is conclusive: {parts}"
    else:
        reason = f"the co-primary tests differ: {parts}"
    label = {"reproduced": "Reproduced", "contradicted": "Contradicted", "inconclusive": "Inconclusive"}[verdict]
    numbers = "; ".join(
        f"{n}: {r.statistic} = {format_number(r.effect)} [{format_number(r.ci95[0])}, {format_number(r.ci95[1])}], one-sided p = "
        f"{format_p(r.p_value)} ({r.primary_outcome} on {r.primary_preset}, {r.n_models} models)"
        for n, r in records.items())
    if main.reason.startswith("plumbing only"):
        headline = f"Inconclusive (plumbing only): smoke profile; {numbers}."
    elif verdict == "inconclusive":
        headline = f"Inconclusive (co-primary tests: {', '.join(f'{n} {v}' for n, v in verdicts.items())}): {numbers}."
    else:
        joint = format_p(p if verdict == "reproduced" else p_opp)
        headline = f"{label} (every co-primary test; intersection-union p = {joint}): {numbers}."
    return dataclasses.replace(main, verdict=verdict, reproduced=verdict == "reproduced", p_value=p,
                               p_opposite=p_opp, min_p=min_p, reason=reason, headline=headline)
