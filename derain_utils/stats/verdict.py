"""Verdicts: did a notebook's finding reproduce, by how much, and how sure are we?

Every notebook of the monograph ends the same way. It reduces its results to one
number (an *effect*: a Spearman correlation, a difference in PSNR, ...), puts an
interval around it, decides whether the paper's claim held, and writes that down
as ``verdict.json`` next to a tidy ``results.csv`` and a ``provenance.json``.
This module holds the statistics and the records for that last step.

Why a *cluster* bootstrap
-------------------------
The rows of a results table are not independent. A tidy table holds one row per
(training seed, test image, rain preset, ...). All rows from one seed share one
trained network; all rows of one test image share that image's difficulty.
Resampling rows as if they were independent pretends we ran as many experiments
as we have rows, and gives intervals that are far too narrow. The experimental
unit is the training run, so we resample *clusters*:

1. draw ``K`` clusters (one cluster = one value of ``cluster_cols``, normally one
   training ``seed``) with replacement from the ``K`` observed ones;
2. optionally, inside every drawn cluster, draw its units (``within_cols``,
   normally the test ``image``) with replacement, keeping *all* rows of a drawn
   unit together (every training-set size, every preset of that image);
3. pool the drawn rows (duplicates included) and recompute the statistic.

Repeating this ``n_resamples`` times gives the bootstrap distribution; the
interval is its percentile interval. With ``crossed=True`` step 2 draws one set
of images shared by all drawn seeds (the two-way bootstrap for a design in which
every seed is evaluated on the same test images); the default (nested) draws
images afresh inside every drawn seed.

Few clusters make the interval optimistic: a bootstrap over K seeds sees only K
values of the seed effect. In a simulation of pure noise (40 rows per cluster,
150-400 data sets each), the 95% interval contained 0 in about 86% of data sets
with K = 5 clusters, 92% with K = 10 or 20, and 94% for the row bootstrap of
independent rows. Read a verdict from 3-5 seeds as indicative, not conclusive.

A resample can be degenerate (all its ``x`` equal, so Spearman's rho is
undefined). Such resamples are dropped and counted (``n_dropped``); the interval
is then conditional on a defined statistic. With fewer than two clusters there is
nothing to resample: the functions warn (:class:`DegenerateBootstrapWarning`)
and return a NaN interval rather than a falsely precise one. A ``smoke`` run with
one seed therefore reports its effect with an unknown interval, and
:func:`reproduced_from_ci` answers ``False``.

Where the records go
--------------------
A notebook writes its verdict into its run folder (:mod:`derain_utils.runs`) through
:func:`derain_utils.notebook.finish`, which also writes ``results.csv`` and
``provenance.json`` and prints the headline. This module holds only the statistics and
the record; files are written atomically by :mod:`derain_utils.store`.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats

from derain_utils import store
from derain_utils.store import to_jsonable

__all__ = [
    "DegenerateBootstrapWarning",
    "bootstrap_ci",
    "spearman_bootstrap",
    "mean_diff_bootstrap",
    "reproduced_from_ci",
    "format_effect",
    "Verdict",
    "VERDICT_FIELDS",
    "VERDICT_FILE",
    "write_verdict",
    "read_verdict",
]

VERDICT_FILE = "verdict.json"


def _scipy_rng_kw(rng: np.random.Generator) -> dict[str, Any]:
    """scipy >= 1.15 takes ``rng=``; older releases ``random_state=``."""
    params = inspect.signature(scipy.stats.bootstrap).parameters
    return {"rng": rng} if "rng" in params else {"random_state": rng}


# Cap on (resamples x pooled rows) materialised at once by the vectorised bootstrap.
_MAX_CHUNK_ELEMENTS = 4_000_000


class DegenerateBootstrapWarning(RuntimeWarning):
    """The bootstrap could not give an interval, or dropped many undefined resamples."""


# --------------------------------------------------------------------------------------
# cluster resampling machinery
# --------------------------------------------------------------------------------------
def _codes(df: pd.DataFrame, cols: Sequence[str]) -> np.ndarray:
    """Integer code (0..K-1, in sorted order of the values) per row for the combination of ``cols``."""
    return df.groupby(list(cols), sort=True, dropna=False).ngroup().to_numpy(dtype=np.int64)


class _Design:
    """Row indices organised as clusters (and optionally units within clusters).

    ``draw(B, rng)`` yields chunks of resampled row indices: a 2-D int array
    ``(b, n_pooled)`` when the design is balanced (every cluster has the same
    number of units and every cell the same number of rows, so every resample has
    the same size), else a list of 1-D arrays (one per resample).
    """

    def __init__(self, outer: np.ndarray, inner: np.ndarray | None, crossed: bool) -> None:
        self.n_rows = len(outer)
        self.n_clusters = int(outer.max()) + 1 if len(outer) else 0
        self.crossed = crossed
        self.has_inner = inner is not None
        self.cells: np.ndarray | None = None  # balanced: (K, r) or (K, U, r) row indices
        K = self.n_clusters
        if inner is None:
            order = np.argsort(outer, kind="stable")
            counts = np.bincount(outer, minlength=K)
            self.groups = np.split(order, np.cumsum(counts)[:-1])
            if np.all(counts == counts[0]):
                self.cells = order.reshape(K, counts[0])
            return
        # unit_cells[k][u] = rows of cluster k and its u-th unit
        n_inner = int(inner.max()) + 1
        cell = outer * n_inner + inner
        sizes = np.bincount(cell, minlength=K * n_inner).reshape(K, n_inner)
        order = np.argsort(cell, kind="stable")
        flat = np.split(order, np.cumsum(sizes.ravel())[:-1])
        if crossed:  # units are global (the same images in every cluster); absent cells stay empty
            self.n_units = n_inner
            self.unit_cells = [flat[k * n_inner:(k + 1) * n_inner] for k in range(K)]
            if np.all(sizes == sizes[0, 0]):
                self.cells = order.reshape(K, n_inner, sizes[0, 0])
        else:  # units are local to their cluster: keep the non-empty cells
            self.unit_cells = [[flat[k * n_inner + u] for u in np.flatnonzero(sizes[k])] for k in range(K)]
            present = sizes[sizes > 0]
            per_cluster = (sizes > 0).sum(axis=1)
            if np.all(per_cluster == per_cluster[0]) and np.all(present == present[0]):
                self.cells = np.stack([np.stack(c) for c in self.unit_cells])

    @property
    def balanced(self) -> bool:
        return self.cells is not None

    def draw(self, n_resamples: int, rng: np.random.Generator) -> Iterator[np.ndarray | list[np.ndarray]]:
        K = self.n_clusters
        if self.cells is not None:
            per = int(np.prod(self.cells.shape))  # pooled rows per resample
            chunk = max(1, min(n_resamples, _MAX_CHUNK_ELEMENTS // max(per, 1)))
            done = 0
            while done < n_resamples:
                b = min(chunk, n_resamples - done)
                ci = rng.integers(0, K, size=(b, K))
                if not self.has_inner:
                    idx = self.cells[ci]  # (b, K, r)
                else:
                    U = self.cells.shape[1]
                    if self.crossed:
                        ui = np.broadcast_to(rng.integers(0, U, size=(b, 1, U)), (b, K, U))
                    else:
                        ui = rng.integers(0, U, size=(b, K, U))
                    idx = self.cells[ci[:, :, None], ui]  # (b, K, U, r)
                yield idx.reshape(b, -1)
                done += b
            return
        # unbalanced: one resample at a time
        out: list[np.ndarray] = []
        for _ in range(n_resamples):
            ci = rng.integers(0, K, size=K)
            if not self.has_inner:
                parts = [self.groups[k] for k in ci]
            elif self.crossed:
                ui = rng.integers(0, self.n_units, size=self.n_units)
                parts = [self.unit_cells[k][u] for k in ci for u in ui]
            else:
                parts = []
                for k in ci:
                    cells = self.unit_cells[k]
                    parts.extend(cells[u] for u in rng.integers(0, len(cells), size=len(cells)))
            out.append(np.concatenate(parts) if parts else np.empty(0, dtype=np.int64))
            if len(out) == 256:
                yield out
                out = []
        if out:
            yield out


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
    n_clusters: int,
    what: str,
    return_distribution: bool,
    method: str = "percentile",
    ci: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Drop undefined resamples, compute the percentile interval, assemble the result dict."""
    finite = dist[np.isfinite(dist)]
    n_dropped = int(dist.size - finite.size)
    if n_clusters < 2:
        warnings.warn(
            f"{what}: only {n_clusters} cluster(s); a cluster bootstrap needs at least 2, "
            "so the interval is NaN (run more seeds, or resample rows with cluster_cols=())",
            DegenerateBootstrapWarning,
            stacklevel=3,
        )
        ci = (math.nan, math.nan)
    elif finite.size == 0:
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
        "n_clusters": int(n_clusters),
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
    groups: Sequence[Any] | np.ndarray | None = None,
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
        groups: ``None`` for independent observations (``scipy.stats.bootstrap``,
            which also offers ``method="BCa"``/``"basic"``); or one cluster label per
            observation, in which case whole clusters are drawn with replacement
            and the statistic is computed on the pooled rows (percentile interval).
        method: ``"percentile"`` (default, also the only choice with ``groups``),
            ``"BCa"`` or ``"basic"``.
        return_distribution: also return the bootstrap distribution (``n_resamples`` floats).

    Returns:
        dict with ``estimate`` (statistic on the full data), ``ci`` = [low, high]
        (``ci95`` too when ``confidence`` is 0.95), ``confidence``, ``method``,
        ``n`` (observations), ``n_clusters`` (observations when ``groups`` is None),
        ``n_resamples``, ``n_dropped`` (resamples whose statistic was NaN, excluded).
    """
    n_resamples = _check_n_resamples(n_resamples)
    confidence = _check_confidence(confidence)
    if method not in ("percentile", "BCa", "basic"):
        raise ValueError(f"method must be 'percentile', 'BCa' or 'basic', got {method!r}")
    arrays = _as_arrays(data)
    n = len(arrays[0])
    estimate = float(statistic(*arrays))
    rng = np.random.default_rng(seed)
    if groups is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # degenerate distributions are handled by _finish
            res = scipy.stats.bootstrap(
                tuple(arrays), statistic, n_resamples=n_resamples, paired=len(arrays) > 1,
                vectorized=False, confidence_level=confidence, method=method, **_scipy_rng_kw(rng),
            )
        dist = np.asarray(res.bootstrap_distribution, dtype=float)
        ci = (float(res.confidence_interval.low), float(res.confidence_interval.high))
        out = _finish(estimate, dist, confidence=confidence, n_resamples=n_resamples, n_clusters=n,
                      what="bootstrap_ci", return_distribution=return_distribution, method=method,
                      ci=ci if np.all(np.isfinite(ci)) else None)
    else:
        if method != "percentile":
            raise ValueError(f"method={method!r} is not available with groups (cluster bootstrap); use 'percentile'")
        labels = np.asarray(groups)
        if labels.shape != (n,):
            raise ValueError(f"groups must hold one label per observation ({n}), got shape {labels.shape}")
        outer = pd.factorize(labels, sort=True)[0].astype(np.int64)
        design = _Design(outer, None, crossed=False)
        vals: list[float] = []
        for chunk in design.draw(n_resamples, rng):
            for idx in chunk:
                vals.append(float(statistic(*(a[idx] for a in arrays))))
        out = _finish(estimate, np.asarray(vals), confidence=confidence, n_resamples=n_resamples,
                      n_clusters=design.n_clusters, what="bootstrap_ci", return_distribution=return_distribution)
    out["n"] = n
    return out


# ------------------------------------------------------------------ Spearman & differences
def _spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho along the last axis: Pearson correlation of average ranks. NaN where a row is constant."""
    rx = scipy.stats.rankdata(x, axis=-1)
    ry = scipy.stats.rankdata(y, axis=-1)
    rx -= rx.mean(axis=-1, keepdims=True)
    ry -= ry.mean(axis=-1, keepdims=True)
    num = (rx * ry).sum(axis=-1)
    den = np.sqrt((rx * rx).sum(axis=-1) * (ry * ry).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = num / den
    return np.where(den > 0, rho, np.nan)


def _check_columns(df: Any, cols: Sequence[str], role: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    for c in cols:
        if c not in df.columns:
            raise ValueError(f"{role}: column {c!r} not in df; available columns: {list(df.columns)}")


def _numeric_column(df: pd.DataFrame, col: str) -> np.ndarray:
    try:
        v = df[col].to_numpy(dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"column {col!r} must be numeric: {err}") from None
    bad = int(np.count_nonzero(~np.isfinite(v)))
    if bad:
        raise ValueError(f"column {col!r} has {bad} NaN/inf value(s); drop or fill them before bootstrapping")
    return v


def _normalise_cols(cols: Sequence[str] | str | None, name: str) -> tuple[str, ...]:
    if cols is None:
        return ()
    if isinstance(cols, str):
        return (cols,)
    try:
        return tuple(cols)
    except TypeError:
        raise ValueError(f"{name} must be a column name or a sequence of column names, got {cols!r}") from None


def _design_for(
    df: pd.DataFrame, cluster_cols: tuple[str, ...], within_cols: tuple[str, ...], crossed: bool
) -> _Design:
    if within_cols and not cluster_cols:
        raise ValueError("within_cols needs cluster_cols (units are resampled inside clusters); "
                         f"to resample only {list(within_cols)}, pass them as cluster_cols")
    outer = _codes(df, cluster_cols) if cluster_cols else np.arange(len(df), dtype=np.int64)
    if within_cols:
        if crossed:
            inner = _codes(df, within_cols)
        else:
            inner = _codes(df, (*cluster_cols, *within_cols)) if cluster_cols else _codes(df, within_cols)
    else:
        if crossed:
            raise ValueError("crossed=True needs within_cols (the units crossed with the clusters, e.g. 'image')")
        inner = None
    return _Design(outer, inner, crossed)


def spearman_bootstrap(
    df: pd.DataFrame,
    x: str,
    y: str,
    *,
    cluster_cols: Sequence[str] | str | None = ("seed",),
    within_cols: Sequence[str] | str | None = None,
    crossed: bool = False,
    aggregate: str | None = None,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    return_distribution: bool = False,
) -> dict[str, Any]:
    """Spearman's rho between columns ``x`` and ``y`` of a tidy table, with a cluster-bootstrap interval.

    ``rho`` is ``scipy.stats.spearmanr`` on all rows (after aggregation, if any).
    The interval comes from resampling (module docstring):

    * ``cluster_cols`` (default ``("seed",)``): one cluster = one value of these
      columns, normally one training seed. The ``K`` clusters are drawn with
      replacement; ``None``/``()`` makes every row its own cluster (ordinary
      bootstrap, only right for independent rows).
    * ``within_cols`` (e.g. ``"image"``): additionally draw, inside every drawn
      cluster, its units with replacement; all rows of a drawn unit travel together.
      ``crossed=True`` draws one set of units for all clusters of a resample.
    * ``aggregate="mean"`` (or ``"median"``): first reduce ``y`` to one value per
      ``(x, *cluster_cols)`` (e.g. the mean PSNR of a seed's model at each training
      size) and correlate those points; image-level noise is averaged out and only
      clusters are resampled (``within_cols`` is then not allowed).

    Args:
        df: tidy results, one row per observation. ``x`` and ``y`` must be numeric
            and finite (NaN/inf -> ValueError naming the column).
        n_resamples, seed, confidence: as in :func:`bootstrap_ci`; deterministic for a seed.
        return_distribution: also return the bootstrap distribution of rho.

    Returns:
        dict: ``rho``, ``ci95`` = [low, high] (``ci`` for other confidences),
        ``n`` (points correlated), ``n_clusters``, ``n_resamples``, ``n_dropped``
        (resamples whose rho was undefined, e.g. a constant ``x``; excluded from the
        interval), ``confidence``, ``method``, ``aggregate``. With fewer than two
        clusters the interval is NaN and a :class:`DegenerateBootstrapWarning` is issued.
    """
    n_resamples = _check_n_resamples(n_resamples)
    confidence = _check_confidence(confidence)
    cluster_cols = _normalise_cols(cluster_cols, "cluster_cols")
    within_cols = _normalise_cols(within_cols, "within_cols")
    _check_columns(df, [x, y], "x/y")
    _check_columns(df, cluster_cols, "cluster_cols")
    _check_columns(df, within_cols, "within_cols")
    if aggregate not in (None, "mean", "median"):
        raise ValueError(f"aggregate must be None, 'mean' or 'median', got {aggregate!r}")
    _numeric_column(df, x)
    _numeric_column(df, y)
    if aggregate is not None:
        if within_cols:
            raise ValueError("within_cols cannot be combined with aggregate: aggregation already averages over them")
        keys = [x, *cluster_cols]
        df = df.groupby(keys, sort=True, as_index=False)[y].agg(aggregate)
    if len(df) < 3:
        raise ValueError(f"spearman_bootstrap needs at least 3 points, got {len(df)}")
    xv, yv = df[x].to_numpy(dtype=float), df[y].to_numpy(dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input: scipy warns and returns nan
        rho = float(scipy.stats.spearmanr(xv, yv).statistic)
    design = _design_for(df, cluster_cols, within_cols, crossed)
    rng = np.random.default_rng(seed)
    dist = np.concatenate([
        _spearman_rows(xv[c], yv[c]) if isinstance(c, np.ndarray)
        else np.array([_spearman_rows(xv[i], yv[i]) for i in c])
        for c in design.draw(n_resamples, rng)
    ])
    out = _finish(rho, dist, confidence=confidence, n_resamples=n_resamples, n_clusters=design.n_clusters,
                  what=f"spearman_bootstrap({x!r}, {y!r})", return_distribution=return_distribution)
    out = {"rho": out.pop("estimate"), **out}
    out["n"] = int(len(df))
    out["aggregate"] = aggregate
    out["cluster_cols"] = list(cluster_cols)
    out["within_cols"] = list(within_cols)
    return out


def mean_diff_bootstrap(
    df: pd.DataFrame,
    value: str,
    group_col: str,
    a: Any,
    b: Any,
    *,
    cluster_cols: Sequence[str] | str | None = ("seed",),
    within_cols: Sequence[str] | str | None = None,
    crossed: bool = False,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    return_distribution: bool = False,
) -> dict[str, Any]:
    """Effect "group ``a`` minus group ``b``" of the mean of ``value``, with a cluster-bootstrap interval.

    ``effect = mean(value | group_col == a) - mean(value | group_col == b)`` over the
    rows of the two groups (rows of other groups are ignored). Clusters (and units
    within them) are resampled exactly as in :func:`spearman_bootstrap`; since a
    seed's rows for both groups travel together, paired designs keep their pairing.
    A resample that lacks one of the groups is undefined and dropped.

    Returns:
        dict: ``effect``, ``ci95`` (``ci``), ``mean_a``, ``mean_b``, ``n_a``, ``n_b``,
        ``n_clusters``, ``n_resamples``, ``n_dropped``, ``confidence``, ``method``.
    """
    n_resamples = _check_n_resamples(n_resamples)
    confidence = _check_confidence(confidence)
    cluster_cols = _normalise_cols(cluster_cols, "cluster_cols")
    within_cols = _normalise_cols(within_cols, "within_cols")
    _check_columns(df, [value, group_col], "value/group_col")
    _check_columns(df, cluster_cols, "cluster_cols")
    _check_columns(df, within_cols, "within_cols")
    present = set(df[group_col].unique().tolist())
    for name, g in (("a", a), ("b", b)):
        if g not in present:
            raise ValueError(f"{name}={g!r} is not a value of column {group_col!r}; "
                             f"values: {sorted(map(str, present))}")
    if a == b:
        raise ValueError(f"a and b must differ, both are {a!r}")
    df = df[df[group_col].isin([a, b])].reset_index(drop=True)
    v = _numeric_column(df, value)
    is_a = (df[group_col] == a).to_numpy()
    is_b = ~is_a
    mean_a, mean_b = float(v[is_a].mean()), float(v[is_b].mean())

    def diff(idx: np.ndarray) -> np.ndarray:
        va, ia, ib = v[idx], is_a[idx], is_b[idx]
        with np.errstate(invalid="ignore", divide="ignore"):
            return (va * ia).sum(-1) / ia.sum(-1) - (va * ib).sum(-1) / ib.sum(-1)

    design = _design_for(df, cluster_cols, within_cols, crossed)
    rng = np.random.default_rng(seed)
    dist = np.concatenate([
        diff(c) if isinstance(c, np.ndarray) else np.array([diff(i) for i in c])
        for c in design.draw(n_resamples, rng)
    ])
    out = _finish(mean_a - mean_b, dist, confidence=confidence, n_resamples=n_resamples,
                  n_clusters=design.n_clusters, what=f"mean_diff_bootstrap({value!r}: {a!r} - {b!r})",
                  return_distribution=return_distribution)
    out = {"effect": out.pop("estimate"), **out}
    out.update(mean_a=mean_a, mean_b=mean_b, n_a=int(is_a.sum()), n_b=int(is_b.sum()),
               cluster_cols=list(cluster_cols), within_cols=list(within_cols))
    return out


def reproduced_from_ci(ci: Sequence[float], expected_sign: str | int, *, null: float = 0.0) -> bool:
    """Does the interval lie entirely on the expected side of ``null``?

    ``expected_sign``: ``"negative"``/``-1`` (claim: effect < null) or
    ``"positive"``/``+1`` (effect > null). A NaN bound gives ``False``: an unknown
    interval does not reproduce anything.
    """
    signs = {"negative": -1, "positive": 1, -1: -1, 1: 1}
    if expected_sign not in signs:
        raise ValueError(f"expected_sign must be 'negative', 'positive', -1 or 1, got {expected_sign!r}")
    lo, hi = _pair(ci, "ci")
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return False
    return bool(hi < null) if signs[expected_sign] < 0 else bool(lo > null)


def format_effect(statistic: str, effect: float, ci: Sequence[float] | None, digits: int = 3) -> str:
    """``"spearman_rho = -0.812 [-0.950, -0.600]"``; NaN shows as ``nan``."""
    def f(v: float | None) -> str:
        return "nan" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"

    text = f"{statistic} = {f(effect)}"
    if ci is not None:
        lo, hi = _pair(ci, "ci")
        text += f" [{f(lo)}, {f(hi)}]"
    return text


# --------------------------------------------------------------------------------------
# records
# --------------------------------------------------------------------------------------
def _pair(v: Any, field: str) -> tuple[float, float]:
    """Two floats (None -> NaN) from a length-2 sequence; ValueError naming ``field`` otherwise."""
    if isinstance(v, (str, bytes)) or not hasattr(v, "__len__") or len(v) != 2:
        raise ValueError(f"{field} must be a pair [low, high], got {v!r}")
    out = []
    for b in v:
        if b is None:
            out.append(math.nan)
        elif isinstance(b, (bool, np.bool_)) or not isinstance(b, (int, float, np.integer, np.floating)):
            raise ValueError(f"{field} bounds must be numbers (or null), got {b!r}")
        else:
            out.append(float(b))
    lo, hi = out
    if math.isfinite(lo) and math.isfinite(hi) and lo > hi:
        raise ValueError(f"{field} must satisfy low <= high, got [{lo}, {hi}]")
    return lo, hi


VERDICT_FIELDS: dict[str, str] = {
    "notebook": "notebook stem, e.g. '01_set_size'",
    "finding": "the paper's claim this notebook tests, one sentence",
    "reproduced": "bool computed from the results, e.g. reproduced_from_ci(ci95, 'negative')",
    "statistic": "name of the effect statistic, e.g. 'spearman_rho'",
    "effect": "value of the statistic on all data (float; NaN allowed, stored as null)",
    "ci95": "[low, high] 95% interval of the effect (NaN bounds allowed, stored as null)",
    "n_seeds": "number of training seeds behind the effect (int >= 0)",
    "profile": "profile the run used: smoke, quick or paper",
    "summary": "one plain sentence for a reader: what came out",
    "wall_s": "wall-clock time of the notebook run, seconds (float >= 0)",
    "verdict": "reproduced, contradicted or inconclusive (inference.decide; reproduced is true only for reproduced)",
    "p_value": "one-sided p-value of the declared test in the paper's direction (NaN allowed, stored as null)",
    "primary_outcome": "the outcome column the verdict tests (outcome.PRIMARY_OUTCOME unless declared otherwise)",
    "primary_preset": "the declared rain preset(s) of the verdict, e.g. 'pooled: slanted, long_wide, dense'",
    "n_models": "trained models behind the verdict (int >= 0)",
}

#: The three verdicts (:func:`derain_utils.inference.decide`), and their labels in summaries.
VERDICTS: tuple[str, ...] = ("reproduced", "contradicted", "inconclusive")


def _text(v: Any, field: str) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError(f"verdict field {field!r} must be a non-empty string, got {v!r}")
    return v.strip()


def _number(v: Any, field: str, *, minimum: float | None = None) -> float:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating, type(None))):
        raise ValueError(f"verdict field {field!r} must be a number, got {type(v).__name__} {v!r}")
    x = math.nan if v is None else float(v)
    if minimum is not None and not (x >= minimum):
        raise ValueError(f"verdict field {field!r} must be a number >= {minimum}, got {v!r}")
    return x


@dataclasses.dataclass
class Verdict:
    """What a notebook concluded. Fields are described in :data:`VERDICT_FIELDS`;
    ``extra`` holds anything else (secondary statistics, parameters, ...)."""

    notebook: str
    finding: str
    reproduced: bool
    statistic: str
    effect: float
    ci95: list[float]
    n_seeds: int
    profile: str
    summary: str
    wall_s: float
    verdict: str
    p_value: float
    primary_outcome: str
    primary_preset: str
    n_models: int
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.notebook = _text(self.notebook, "notebook")
        self.finding = _text(self.finding, "finding")
        self.statistic = _text(self.statistic, "statistic")
        self.profile = _text(self.profile, "profile")
        self.summary = _text(self.summary, "summary")
        if not isinstance(self.reproduced, (bool, np.bool_)):
            raise ValueError(f"verdict field 'reproduced' must be a bool, got {type(self.reproduced).__name__} "
                             f"{self.reproduced!r}")
        self.reproduced = bool(self.reproduced)
        self.effect = _number(self.effect, "effect")
        self.ci95 = list(_pair(self.ci95, "ci95"))
        if isinstance(self.n_seeds, (bool, np.bool_)) or not isinstance(self.n_seeds, (int, np.integer)) \
                or self.n_seeds < 0:
            raise ValueError(f"verdict field 'n_seeds' must be an integer >= 0, got {self.n_seeds!r}")
        self.n_seeds = int(self.n_seeds)
        self.wall_s = _number(self.wall_s, "wall_s", minimum=0.0)
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict field 'verdict' must be one of {VERDICTS}, got {self.verdict!r}")
        if self.reproduced != (self.verdict == "reproduced"):
            raise ValueError(f"verdict fields disagree: reproduced={self.reproduced} but verdict={self.verdict!r} "
                             "(reproduced is true exactly when the verdict is 'reproduced')")
        self.p_value = _number(self.p_value, "p_value")
        if math.isfinite(self.p_value) and not 0.0 <= self.p_value <= 1.0:
            raise ValueError(f"verdict field 'p_value' must lie in [0, 1], got {self.p_value!r}")
        self.primary_outcome = _text(self.primary_outcome, "primary_outcome")
        self.primary_preset = _text(self.primary_preset, "primary_preset")
        if isinstance(self.n_models, (bool, np.bool_)) or not isinstance(self.n_models, (int, np.integer)) \
                or self.n_models < 0:
            raise ValueError(f"verdict field 'n_models' must be an integer >= 0, got {self.n_models!r}")
        self.n_models = int(self.n_models)
        if not isinstance(self.extra, Mapping):
            raise ValueError(f"verdict 'extra' must be a mapping, got {type(self.extra).__name__}")
        clash = set(self.extra) & set(VERDICT_FIELDS)
        if clash:
            raise ValueError(f"verdict extra fields {sorted(clash)} clash with required fields")
        self.extra = to_jsonable(dict(self.extra), where="verdict")

    @property
    def label(self) -> str:
        """``"REPRODUCED"``, ``"CONTRADICTED"`` or ``"INCONCLUSIVE"``."""
        return self.verdict.upper()

    @property
    def result(self) -> str:
        """``"statistic = effect [low, high]"``."""
        return format_effect(self.statistic, self.effect, self.ci95)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe dict: required fields first, then the extra ones (NaN -> None)."""
        d = {k: getattr(self, k) for k in VERDICT_FIELDS}
        d.update(self.extra)
        return to_jsonable(d, where="verdict")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Verdict":
        """Build and validate from a dict of fields; missing fields -> ValueError naming them."""
        if not isinstance(d, Mapping):
            raise ValueError(f"a verdict must be a mapping of fields, got {type(d).__name__}")
        missing = [k for k in VERDICT_FIELDS if k not in d]
        if missing:
            raise ValueError(f"verdict is missing required field(s) {missing}; required: {list(VERDICT_FIELDS)}")
        extra = {k: v for k, v in d.items() if k not in VERDICT_FIELDS}
        return cls(**{k: d[k] for k in VERDICT_FIELDS}, extra=extra)

    def write(self, run_dir: str | Path) -> Path:
        """Write ``verdict.json`` into ``run_dir`` (created if needed); returns its path."""
        folder = store.ensure_dir(run_dir, "run folder")
        return store.write_json(folder / VERDICT_FILE, self.to_dict(), what="verdict")


def write_verdict(run_dir: str | Path, **fields: Any) -> Path:
    """Validate the verdict ``fields`` and write ``<run_dir>/verdict.json``; returns its path.

    Required fields and their types are in :data:`VERDICT_FIELDS`; a missing field
    or a wrong type raises ValueError naming the field. Extra keyword fields are
    kept (converted with :func:`to_jsonable`; NaN -> null).
    """
    return Verdict.from_dict(fields).write(run_dir)


def read_verdict(path: str | Path) -> Verdict:
    """Read and validate ``verdict.json`` (``path`` is the file or the run folder holding it)."""
    p = Path(path)
    if p.is_dir():
        p = p / VERDICT_FILE
    if not p.is_file():
        raise FileNotFoundError(f"no verdict file at {p}")
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{p} is not valid JSON: {err}") from None
    try:
        return Verdict.from_dict(d)
    except ValueError as err:
        raise ValueError(f"{p}: {err}") from None
