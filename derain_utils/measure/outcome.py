"""The primary outcome of the monograph, per trained model, and the rule that says a model stalled.

One outcome for every notebook
------------------------------
All four notebooks ask one question: how much of the rain a network did *not* see in
training does it remove? Raw removal (:func:`derain_utils.measure.metrics.decoupled`) cannot
answer it alone, because it credits blur: a fixed Gaussian or median filter removes
part of any rain, and a network that smooths more removes more, at the cost of the
background (:mod:`derain_utils.measure.baselines` gives the numbers). The primary outcome is
therefore

    **excess removal** of a model on a rain preset = its mean removal over the test
    images minus the removal of the fixed-filter frontier at its mean background PSNR
    over the same images (:meth:`derain_utils.measure.baselines.Frontier.excess`),

averaged over the declared presets (one preset, or the unseen presets pooled with
equal weight). 0 means "no better than the best fixed filter that damages the
background as little"; > 0 means the network removes rain that no fixed filter of
that fidelity removes; < 0 means a fixed filter would do better. A perfect derainer
scores its full removal (1), the identity and any baseline on the frontier 0.

Why this and not the alternatives (issue 12): raw removal rewards blur; the gap
(training-rain removal minus unseen removal) and the ratio (unseen / training
removal) measure *specialisation*, which the paper's account predicts too, but they
move when training-rain removal moves for reasons of its own and are undefined for a
model that learned nothing; background PSNR alone says nothing about rain.
Excess removal is the claim itself (removal of unseen rain), with the one confound
the issue found (blur) taken out at the level where it acts (background fidelity).
The companions are reported next to it, never instead of it:
``removal`` (raw, unseen), ``removal_train`` (the training rain), ``removal_ratio``
(unseen / training), ``bg_psnr`` and ``excess_removal_train``.

Model level
-----------
Every number here is per *trained model*: means over its test images (the images are
nested inside the model: they are the same for every model, and the unit of every
statistic in :mod:`derain_utils.stats.inference` is the model). The frontier is built from
the filters' means over the same images, so a model's mean is compared with means.

Typical use (notebook 01)::

    E = scoring.make_eval_set(split.test_tensor(), PRESETS, seed=PROF.eval_seed)  # the models' test inputs
    FRONT = baselines.frontier_of(E)
    DECL = inference.Declaration("01_set_size", "within_seed_trend", "negative", presets=OOD)
    OUT = outcome.outcome_table(DF, FRONT, presets=DECL.presets, train_presets=IN_DIST,
                                model_cols=("key", "n_train", "seed"))
    STALLS = outcome.stall_report(OUT, "n_train", name_col="key")  # OUT built with fit=sweeps.training_fit(...)
    RES = inference.within_seed_trend(OUT[~OUT["stalled"]], "n_train", DECL.outcome)
    RECORD = inference.decide(RES, DECL, profile=PROFILE)  # RECORD.to_dict() -> verdict.json

Stalled models
--------------
A network that stayed at the identity (its L1 training loss never left that of the
rainy input: the failure that ``warmup_steps`` makes rare, see
:mod:`derain_utils.lab.profiles`) learned nothing about backgrounds or rain and says
nothing about the claim. The rule, declared before training and applied the same way in
every notebook, reads only how the model fits **its own training data**:

    a model is **stalled** when it removes less than :data:`STALL_MIN_FIT` = 0.25 of its
    training rain from its own training tiles (``removal_fit``, from
    :func:`derain_utils.lab.sweeps.training_fit`), or when that cannot be computed.

It never looks at test images or unseen rain, so it cannot exclude a model for the
behaviour a verdict is about (an earlier rule read the training rain on the *test*
images, which dropped small-N networks that had memorised their tiles: the paper's
mechanism itself). Why 0.25: over the 144 quick-profile models of one monograph run
(every notebook, with the real sets), ``removal_fit`` is either below 1e-4 (4 models:
still the identity) or at least 0.47 (the next lowest: manga backgrounds, 0.47-0.58;
the median 0.82); 0.25 lies in the middle of that empty gap, while 0.5 would cut
through the manga cluster of networks that did learn. Stalled models are left out of
the statistics, and :func:`stall_report` lists them per condition (a rate that differs
between conditions is itself a finding and must be shown). Without a training fit
(``fit=None``) no model is called stalled.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from derain_utils.measure import baselines

__all__ = [
    "PRIMARY_OUTCOME",
    "OUTCOME_COLUMNS",
    "STALL_MIN_FIT",
    "model_table",
    "primary_outcome",
    "pooled",
    "outcome_table",
    "is_stalled",
    "stall_report",
]

STALL_MIN_FIT: float = 0.25
"""A model that removes less than this fraction of its training rain from its own training tiles stalled."""
PRIMARY_OUTCOME: str = "excess_removal"
"""Name (and column) of the primary outcome: removal of unseen rain beyond the fixed-filter frontier."""
OUTCOME_COLUMNS: dict[str, str] = {
    "excess_removal": "PRIMARY. mean over the declared presets of (removal - frontier removal at the model's "
                      "background PSNR)",
    "removal": "mean removal of the declared presets' rain (raw; 1 = all removed)",
    "bg_psnr": "mean background PSNR on the declared presets [dB]",
    "removal_train": "mean removal of the training rain",
    "bg_psnr_train": "mean background PSNR on the training rain [dB]",
    "excess_removal_train": "excess removal on the training rain",
    "removal_ratio": "removal / removal_train (NaN when removal_train <= 0)",
    "removal_fit": "removal of the training rain from the model's own training tiles (sweeps.training_fit)",
    "stalled": f"removal_fit < STALL_MIN_FIT ({STALL_MIN_FIT:g}) or NaN: the model did not learn its training data",
}
"""The per-model columns of :func:`outcome_table` and what they mean."""


def _cols(v: Sequence[str] | str, name: str) -> tuple[str, ...]:
    if isinstance(v, str):
        return (v,)
    try:
        out = tuple(v)
    except TypeError:
        raise ValueError(f"{name} must be a column name or a sequence of names, got {v!r}") from None
    if not out or not all(isinstance(c, str) for c in out):
        raise ValueError(f"{name} must name at least one column, got {v!r}")
    return out


def _check(rows: Any, cols: Sequence[str], what: str) -> pd.DataFrame:
    if not isinstance(rows, pd.DataFrame):
        raise ValueError(f"{what} must be a pandas DataFrame, got {type(rows).__name__}")
    missing = [c for c in cols if c not in rows.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; available: {list(rows.columns)}")
    return rows


def model_table(
    rows: pd.DataFrame, frontier: baselines.Frontier, *, model_cols: Sequence[str] | str = ("key",)
) -> pd.DataFrame:
    """One row per (model, frontier group): mean removal and background PSNR, and the excess over the frontier.

    Args:
        rows: evaluation rows of the models (``scoring.evaluate`` / ``experiments``
            tables): one row per (model, preset, image) with ``removal``, ``bg_psnr``
            and the ``frontier.by`` columns. ``preset = "clean"`` rows are ignored.
        frontier: :func:`derain_utils.measure.baselines.frontier` on the same test inputs.
        model_cols: the columns that identify a trained model (e.g. ``"key"``, or
            ``("n_train", "seed")``); carried to the output.

    Returns:
        DataFrame: ``model_cols``, ``frontier.by``, ``removal``, ``bg_psnr`` (means over
        images, NaN skipped), ``n_images``, ``frontier_removal``, ``excess_removal``,
        ``frontier_range`` ("inside", "above", "below"; see :mod:`derain_utils.measure.baselines`),
        and ``in_distribution`` when the rows have it.
    """
    model_cols = _cols(model_cols, "model_cols")
    if not isinstance(frontier, baselines.Frontier):
        raise ValueError(f"frontier must be a baselines.Frontier, got {type(frontier).__name__}")
    by = frontier.by
    _check(rows, [*model_cols, *by, "removal", "bg_psnr"], "rows")
    overlap = set(model_cols) & set(by)
    if overlap:
        raise ValueError(f"model_cols {model_cols} and the frontier's groups {by} share {sorted(overlap)}")
    d = rows[rows["preset"] != "clean"] if "preset" in rows.columns else rows
    if d.empty:
        raise ValueError("rows hold no rainy rows (only 'clean' or none)")
    agg = {"removal": ("removal", "mean"), "bg_psnr": ("bg_psnr", "mean"), "n_images": ("removal", "size")}
    if "in_distribution" in d.columns:
        agg["in_distribution"] = ("in_distribution", "first")
    t = d.groupby([*model_cols, *by], sort=False, dropna=False).agg(**agg).reset_index()
    known = set(frontier.groups())
    keys = list(map(tuple, t[list(by)].itertuples(index=False)))
    absent = sorted({k for k in keys if k not in known}, key=repr)
    if absent:
        raise ValueError(f"the frontier has no group {absent[0]!r} (of {by}); it was built for {sorted(known, key=repr)}. "
                         "Build it from baseline rows of the same presets and test images as the models")
    n_front = {tuple(k): int(n) for *k, n in frontier.points[[*by, "n_images"]].itertuples(index=False)}
    for key, n in zip(keys, t["n_images"].to_numpy()):
        if int(n) != n_front[key]:
            raise ValueError(f"a model has {int(n)} test images for {dict(zip(by, key))} but the frontier was "
                             f"built on {n_front[key]}: build it from the same test images as the models")
    fr = np.full(len(t), np.nan)
    rng = np.empty(len(t), dtype=object)
    for key in dict.fromkeys(keys):
        idx = np.array([k == key for k in keys])
        fr[idx] = frontier.removal_at(key, t.loc[idx, "bg_psnr"].to_numpy(float))
        rng[idx] = frontier.range_of(key, t.loc[idx, "bg_psnr"].to_numpy(float))
    t["frontier_removal"] = fr
    t["excess_removal"] = t["removal"].to_numpy(float) - fr
    t["frontier_range"] = rng
    return t


def _preset_list(presets: Sequence[str] | str, name: str) -> list[str]:
    items = [presets] if isinstance(presets, str) else list(presets)
    if not items or not all(isinstance(p, str) and p for p in items):
        raise ValueError(f"{name} must be a preset name or a non-empty list of names, got {presets!r}")
    if "clean" in items:
        raise ValueError(f"{name}: 'clean' has no rain to remove")
    if len(set(items)) != len(items):
        raise ValueError(f"{name} repeats a preset: {items}")
    return items


def _pooled(table: pd.DataFrame, presets: list[str], keys: list[str], name: str,
            weights: str = "presets") -> pd.DataFrame:
    """Mean over ``presets`` of the per-(model, preset) table, one row per ``keys``: equal weight per preset
    (``weights="presets"``) or per test image (``"images"``: each preset weighs its ``n_images``)."""
    have = set(table["preset"].unique())
    missing = [p for p in presets if p not in have]
    if missing:
        raise ValueError(f"{name}: preset(s) {missing} not in the rows (presets there: {sorted(have)})")
    sub = table[table["preset"].isin(presets)]
    counts = sub.groupby(keys, sort=False, dropna=False)["preset"].nunique()
    short = counts[counts < len(presets)]
    if len(short):
        raise ValueError(f"{name}: {len(short)} model(s) lack some of the presets {presets}, e.g. {short.index[0]!r}")
    cols = ["removal", "bg_psnr", "excess_removal"]
    if weights == "presets":
        return sub.groupby(keys, sort=False, dropna=False)[cols].mean()
    if weights != "images":
        raise ValueError(f"weights must be 'presets' or 'images', got {weights!r}")
    w = sub["n_images"].to_numpy(float)
    weighted = sub[cols].mul(w, axis=0).assign(_w=w, **{k: sub[k] for k in keys})
    sums = weighted.groupby(keys, sort=False, dropna=False)[[*cols, "_w"]].sum()
    return sums[cols].div(sums["_w"], axis=0)


def _model_keys(table: pd.DataFrame, model_cols: tuple[str, ...], by: tuple[str, ...]) -> list[str]:
    return [*model_cols, *(c for c in by if c != "preset")]


def primary_outcome(
    rows: pd.DataFrame,
    frontier: baselines.Frontier,
    presets: Sequence[str] | str,
    *,
    model_cols: Sequence[str] | str = ("key",),
) -> pd.Series:
    """THE primary outcome: excess removal per model, averaged with equal weight over ``presets``.

    Args:
        rows, frontier, model_cols: as in :func:`model_table` (``frontier.by`` must
            include ``"preset"``).
        presets: the declared primary preset, or several (pooled, equal weight).

    Returns:
        Series named :data:`PRIMARY_OUTCOME`, indexed by the model columns (plus any
        other frontier group column, e.g. ``test_set``).
    """
    model_cols = _cols(model_cols, "model_cols")
    if "preset" not in frontier.by:
        raise ValueError(f"the frontier must be grouped by 'preset' (it is grouped by {frontier.by})")
    presets = _preset_list(presets, "presets")
    table = model_table(rows, frontier, model_cols=model_cols)
    keys = _model_keys(table, model_cols, frontier.by)
    return _pooled(table, presets, keys, "presets")["excess_removal"].rename(PRIMARY_OUTCOME)


def pooled(
    rows: pd.DataFrame,
    frontier: baselines.Frontier,
    presets: Sequence[str] | str,
    *,
    model_cols: Sequence[str] | str = ("key",),
    weights: str = "presets",
) -> pd.DataFrame:
    """Raw removal, background PSNR and excess removal per model, pooled over ``presets``.

    ``weights="presets"``: every preset (or paired set) weighs the same (the synthetic pools of
    notebooks 01-03); ``"images"``: every test image (pair) weighs the same, so a set of 2 pairs
    weighs a quarter of a set of 8 (notebook 04's benchmark pools). The excess removal of a set
    is read off that set's frontier at the model's mean background PSNR on the set, then pooled.

    Returns:
        DataFrame indexed by the model columns (and other frontier groups), columns ``removal``,
        ``bg_psnr`` and ``excess_removal``.
    """
    model_cols = _cols(model_cols, "model_cols")
    if "preset" not in frontier.by:
        raise ValueError(f"the frontier must be grouped by 'preset' (it is grouped by {frontier.by})")
    presets = _preset_list(presets, "presets")
    table = model_table(rows, frontier, model_cols=model_cols)
    return _pooled(table, presets, _model_keys(table, model_cols, frontier.by), "presets", weights=weights)


def outcome_table(
    rows: pd.DataFrame,
    frontier: baselines.Frontier,
    *,
    presets: Sequence[str] | str | None = None,
    train_presets: Sequence[str] | str | None = None,
    model_cols: Sequence[str] | str = ("key",),
    fit: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per trained model: the primary outcome, its companions, and whether the model stalled.

    Args:
        rows, frontier, model_cols: as in :func:`model_table`.
        fit: :func:`derain_utils.lab.sweeps.training_fit` of the models (``key`` and
            ``removal_fit``); the stall rule reads it. None: ``removal_fit`` is NaN and no
            model is called stalled.
        presets: the declared presets of the primary outcome; None = every preset
            whose ``in_distribution`` is False in ``rows`` (the unseen rains, pooled).
        train_presets: the training rain; None = every preset whose
            ``in_distribution`` is True.

    Returns:
        DataFrame with the model columns (and other frontier groups) and the columns
        of :data:`OUTCOME_COLUMNS`, plus ``n_images``.
    """
    model_cols = _cols(model_cols, "model_cols")
    if "preset" not in frontier.by:
        raise ValueError(f"the frontier must be grouped by 'preset' (it is grouped by {frontier.by})")
    table = model_table(rows, frontier, model_cols=model_cols)
    if presets is None or train_presets is None:
        if "in_distribution" not in table.columns:
            raise ValueError("rows have no 'in_distribution' column: give presets and train_presets explicitly")
        mixed = table.groupby("preset", sort=False)["in_distribution"].nunique(dropna=False)
        if (mixed > 1).any():
            raise ValueError(f"in_distribution differs between models for preset(s) {list(mixed[mixed > 1].index)} "
                             "(models trained on different rain): give presets and train_presets explicitly")
        flag = table.drop_duplicates("preset").set_index("preset")["in_distribution"]
        if flag.isna().any():
            raise ValueError(f"in_distribution is NA for preset(s) {list(flag[flag.isna()].index)}: "
                             "give presets and train_presets explicitly")
        if presets is None:
            presets = [p for p, v in flag.items() if not bool(v)]
            if not presets:
                raise ValueError("no preset in rows is out of distribution (in_distribution False)")
        if train_presets is None:
            train_presets = [p for p, v in flag.items() if bool(v)]
            if not train_presets:
                raise ValueError("no preset in rows is the training rain (in_distribution True)")
    presets = _preset_list(presets, "presets")
    train_presets = _preset_list(train_presets, "train_presets")
    keys = _model_keys(table, model_cols, frontier.by)
    primary = _pooled(table, presets, keys, "presets")
    own = _pooled(table, train_presets, keys, "train_presets")
    n_images = table.groupby(keys, sort=False, dropna=False)["n_images"].max()
    out = pd.DataFrame({
        "excess_removal": primary["excess_removal"],
        "removal": primary["removal"],
        "bg_psnr": primary["bg_psnr"],
        "removal_train": own["removal"],
        "bg_psnr_train": own["bg_psnr"],
        "excess_removal_train": own["excess_removal"],
    })
    rt = out["removal_train"].to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["removal_ratio"] = np.where(rt > 0, out["removal"].to_numpy(float) / rt, np.nan)
    out["n_images"] = n_images
    out = out.reset_index()
    if fit is None:
        out["removal_fit"] = np.nan
        out["stalled"] = False
        return out
    _check(fit, ["key", "removal_fit"], "fit")
    if "key" not in out.columns:
        raise ValueError(f"a training fit is matched on 'key': model_cols {model_cols} must include it")
    by_key = fit.drop_duplicates("key").set_index("key")["removal_fit"]
    missing = sorted(set(out["key"]) - set(by_key.index))
    if missing:
        raise ValueError(f"fit has no row for {len(missing)} model(s), e.g. key {missing[0]!r}: give the training "
                         "fit of every model (sweeps.training_fit)")
    out["removal_fit"] = out["key"].map(by_key).astype(float)
    out["stalled"] = np.asarray(is_stalled(out["removal_fit"].to_numpy(float)))
    return out


def is_stalled(removal_fit: Any) -> np.ndarray | bool:
    """The stall rule: removal of the training rain from the model's own training tiles below
    :data:`STALL_MIN_FIT`, or NaN (nothing shown learned).

    Accepts a number or anything array-like (a Series gives a bool Series on its index).
    """
    if isinstance(removal_fit, pd.Series):
        v = pd.to_numeric(removal_fit, errors="raise").to_numpy(float)
        return pd.Series(~(v >= STALL_MIN_FIT), index=removal_fit.index, name="stalled")
    if isinstance(removal_fit, (int, float, np.integer, np.floating)) and not isinstance(removal_fit, bool):
        x = float(removal_fit)
        return not (x >= STALL_MIN_FIT)  # NaN compares False: stalled
    v = np.asarray(removal_fit, dtype=float)
    return ~(v >= STALL_MIN_FIT)


def stall_report(
    outcomes: pd.DataFrame, by: Sequence[str] | str, *, name_col: str | None = None
) -> pd.DataFrame:
    """Stall rate per condition (e.g. per ``n_train`` or per ``background``).

    Args:
        outcomes: :func:`outcome_table` output (needs ``stalled``, or ``removal_fit``
            from which the rule is applied).
        by: the condition columns.
        name_col: a column naming each model, listed for the stalled ones (optional).

    Returns:
        DataFrame per condition: ``n_models``, ``n_stalled``, ``stall_rate`` and, with
        ``name_col``, ``stalled_models`` (a list).
    """
    by = _cols(by, "by")
    _check(outcomes, list(by), "outcomes")
    if "stalled" in outcomes.columns:
        stalled = outcomes["stalled"].astype(bool).to_numpy()
    elif "removal_fit" in outcomes.columns:
        stalled = np.asarray(is_stalled(outcomes["removal_fit"].to_numpy(float)))
    else:
        raise ValueError("outcomes need a 'stalled' or a 'removal_fit' column (use outcome_table with fit=)")
    if name_col is not None:
        _check(outcomes, [name_col], "outcomes")
    d = outcomes[list(by)].copy()
    d["_stalled"] = stalled
    if name_col is not None:
        d["_name"] = outcomes[name_col].astype(str).to_numpy()
    g = d.groupby(list(by), sort=True, dropna=False)
    rep = g["_stalled"].agg(n_models="size", n_stalled="sum").reset_index()
    rep["n_stalled"] = rep["n_stalled"].astype(int)
    rep["stall_rate"] = rep["n_stalled"] / rep["n_models"]
    if name_col is not None:
        names = g.apply(lambda x: list(x.loc[x["_stalled"], "_name"]), include_groups=False)
        rep["stalled_models"] = list(names.to_numpy())
    return rep
