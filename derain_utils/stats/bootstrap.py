"""A bootstrap interval of any statistic of independent observations, with its degenerate cases explicit.

:func:`bootstrap_ci` wraps ``scipy.stats.bootstrap`` (percentile, BCa or basic interval): the same
seed gives the same interval; resamples whose statistic is undefined (NaN) are dropped and counted,
with a :class:`DegenerateBootstrapWarning` when they are many or all; fewer than two observations are
refused. :func:`mean_ci` and :func:`group_summary` use it for means over test images (the report
card's and notebook 04's real photos). The notebooks' verdicts do not: they rest on the
model-level tests of :mod:`derain_utils.stats.inference`, whose unit is the trained model.
"""
from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats

__all__ = ["DegenerateBootstrapWarning", "bootstrap_ci", "mean_ci", "group_summary"]


def _scipy_rng_kw(rng: np.random.Generator) -> dict[str, Any]:
    """scipy >= 1.15 takes ``rng=``; older releases ``random_state=``."""
    params = inspect.signature(scipy.stats.bootstrap).parameters
    return {"rng": rng} if "rng" in params else {"random_state": rng}


class DegenerateBootstrapWarning(RuntimeWarning):
    """The bootstrap could not give an interval, or dropped many undefined resamples."""


def _percentile_ci(dist: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(dist, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def _check_confidence(confidence: float) -> float:
    if not (isinstance(confidence, (int, float)) and 0.0 < float(confidence) < 1.0):
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return float(confidence)


def _check_n_resamples(n_resamples: int) -> int:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    return int(n_resamples)


def _finish(
    estimate: float,
    dist: np.ndarray,
    *,
    confidence: float,
    n_resamples: int,
    what: str,
    return_distribution: bool,
    method: str = "percentile",
    ci: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Drop undefined resamples, compute the percentile interval, assemble the result dict."""
    finite = dist[np.isfinite(dist)]
    n_dropped = int(dist.size - finite.size)
    if finite.size == 0:
        warnings.warn(
            f"{what}: all {dist.size} bootstrap resamples gave an undefined statistic; interval is NaN",
            DegenerateBootstrapWarning,
            stacklevel=3,
        )
        ci = (math.nan, math.nan)
    else:
        if n_dropped > 0.1 * dist.size:
            warnings.warn(
                f"{what}: dropped {n_dropped} of {dist.size} resamples with an undefined statistic; "
                "the interval is conditional on the rest",
                DegenerateBootstrapWarning,
                stacklevel=3,
            )
        if ci is None or n_dropped:
            ci = _percentile_ci(finite, confidence)
            method = "percentile"
    out: dict[str, Any] = {
        "estimate": float(estimate),
        "ci": [float(ci[0]), float(ci[1])],
        "confidence": confidence,
        "method": method,
        "n_resamples": n_resamples,
        "n_dropped": n_dropped,
    }
    if math.isclose(confidence, 0.95):
        out["ci95"] = list(out["ci"])
    if return_distribution:
        out["distribution"] = dist
    return out


def _as_arrays(data: Any) -> list[np.ndarray]:
    """``data`` as a list of equal-length 1-D float arrays (one array, or several paired ones)."""
    if isinstance(data, pd.DataFrame):
        arrays = [data[c].to_numpy() for c in data.columns]
    elif isinstance(data, (list, tuple)) and data and all(np.ndim(a) == 1 for a in data) and not np.isscalar(data[0]):
        arrays = [np.asarray(a) for a in data]
    else:
        arrays = [np.asarray(data)]
    for i, a in enumerate(arrays):
        if a.ndim != 1:
            raise ValueError(f"data[{i}] must be 1-D (one value per observation), got shape {a.shape}")
    n = {len(a) for a in arrays}
    if len(n) != 1:
        raise ValueError(f"data arrays must have equal lengths (paired observations), got lengths {sorted(n)}")
    if arrays[0].size < 2:
        raise ValueError(f"data needs at least 2 observations, got {arrays[0].size}")
    return arrays


def bootstrap_ci(
    data: Any,
    statistic: Callable[..., float],
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    method: str = "percentile",
    return_distribution: bool = False,
) -> dict[str, Any]:
    """Bootstrap confidence interval of ``statistic(*data)``.

    Args:
        data: a 1-D array of ``n`` observations, or a sequence of equal-length 1-D
            arrays (paired observations, resampled together; e.g. ``(x, y)``), or a
            DataFrame (its columns, paired).
        statistic: called as ``statistic(*arrays)`` on the full data and on every
            resample; returns a float (NaN marks an undefined resample).
        n_resamples: number of bootstrap resamples.
        seed: seed of the numpy Generator; the same seed gives the same interval.
        confidence: coverage of the two-sided interval, in (0, 1).
        method: ``"percentile"`` (default), ``"BCa"`` or ``"basic"`` (``scipy.stats.bootstrap``).
        return_distribution: also return the bootstrap distribution (``n_resamples`` floats).

    Returns:
        dict with ``estimate`` (statistic on the full data), ``ci`` = [low, high]
        (``ci95`` too when ``confidence`` is 0.95), ``confidence``, ``method``,
        ``n`` (observations), ``n_resamples``, ``n_dropped`` (resamples whose statistic was NaN, excluded).
    """
    n_resamples = _check_n_resamples(n_resamples)
    confidence = _check_confidence(confidence)
    if method not in ("percentile", "BCa", "basic"):
        raise ValueError(f"method must be 'percentile', 'BCa' or 'basic', got {method!r}")
    arrays = _as_arrays(data)
    n = len(arrays[0])
    estimate = float(statistic(*arrays))
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate distributions are handled by _finish
        res = scipy.stats.bootstrap(
            tuple(arrays), statistic, n_resamples=n_resamples, paired=len(arrays) > 1,
            vectorized=False, confidence_level=confidence, method=method, **_scipy_rng_kw(rng),
        )
    dist = np.asarray(res.bootstrap_distribution, dtype=float)
    ci = (float(res.confidence_interval.low), float(res.confidence_interval.high))
    out = _finish(estimate, dist, confidence=confidence, n_resamples=n_resamples,
                  what="bootstrap_ci", return_distribution=return_distribution, method=method,
                  ci=ci if np.all(np.isfinite(ci)) else None)
    out["n"] = n
    return out


# --------------------------------------------------------------------------- means over test images
def mean_ci(values: Any, *, n_resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of the finite ``values`` and its 95% percentile-bootstrap interval over them.

    The values are treated as independent units (one per test image, each already averaged over
    whatever else, e.g. seeds). Fewer than 2 finite values give a NaN interval.
    """
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    if v.size < 2 or np.all(v == v[0]):
        return float(v.mean()), (math.nan if v.size < 2 else float(v[0])), (math.nan if v.size < 2 else float(v[0]))
    r = bootstrap_ci(v, np.mean, n_resamples=n_resamples, seed=seed)
    return float(v.mean()), float(r["ci95"][0]), float(r["ci95"][1])


def group_summary(
    df: pd.DataFrame,
    metrics_: Sequence[str],
    *,
    by: Sequence[str] = ("set", "group"),
    unit: str = "image",
    seed: int = 0,
) -> pd.DataFrame:
    """Means with 95% intervals per group, treating test images as the sampling units.

    Each metric is first averaged over everything else within one (``by``, ``unit``) cell (e.g.
    over training seeds: a seed-averaged score per image), then :func:`mean_ci` bootstraps those
    per-image values. Rows follow the order of first appearance of the ``by`` levels.

    Returns:
        One row per ``by`` combination: the ``by`` columns, ``n`` (units), and per metric
        ``<m>``, ``<m>_lo``, ``<m>_hi``.
    """
    missing = [c for c in (*by, unit, *metrics_) if c not in df.columns]
    if missing:
        raise ValueError(f"df lacks column(s) {missing}; it has {list(df.columns)}")
    per_unit = df.groupby([*by, unit], sort=False)[list(metrics_)].mean().reset_index()
    rows = []
    for key, g in per_unit.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(by, key))
        row["n"] = len(g)
        for m in metrics_:
            row[m], row[f"{m}_lo"], row[f"{m}_hi"] = mean_ci(g[m], seed=seed)
        rows.append(row)
    return pd.DataFrame(rows)
