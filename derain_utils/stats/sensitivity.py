"""How a verdict moves when a choice changes: per-preset results and the sensitivity table of every notebook.

Each notebook decides its two declared questions (:func:`derain_utils.stats.questions.declare_questions`)
on the unseen presets pooled with equal weight and, for the control question, against the declared
frontier family (identity, Gaussian and median filters and their blends,
:mod:`derain_utils.measure.baselines`). Those are choices. :func:`sensitivity` repeats the
declared test under the alternatives a reader would ask about, with the same rule, and returns one
tidy table:

============================ ============================================================ ==========
variant                      what changes                                                 questions
============================ ============================================================ ==========
``declared``                 nothing: the notebook's verdicts                             both
``<preset> alone``           one unseen preset instead of the pool (per-preset results)   both
``without <preset>``         leave one preset out of the pool                             both
``Gaussian-only frontier``   the frontier of the identity and the Gaussian blurs only     control
``median-only frontier``     the frontier of the identity and the median filters only     control
============================ ============================================================ ==========

The frontier families do not touch the paper's question (raw removal has no frontier), so those
rows exist for the control question only. Every row is exploratory except ``declared``: the
per-preset rows of each question carry Holm-adjusted p-values (``p_holm``, over the presets), and
nothing here changes a verdict. A conclusion that holds in every row is robust to these choices; one
that flips with a single preset or family says which choice it rests on.

The stall rule is the same in every row (it reads only the models' fit to their own training data,
:mod:`derain_utils.measure.outcome`), so every row tests the same models.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from derain_utils.measure import baselines, outcome
from derain_utils.stats import inference, questions

__all__ = ["SENSITIVITY_COLUMNS", "sensitivity", "per_preset"]

SENSITIVITY_COLUMNS: tuple[str, ...] = (
    "question", "variant", "presets", "frontier", "outcome", "effect", "ci_low", "ci_high", "p_value", "p_opposite",
    "p_holm", "verdict", "n_models", "n_seeds",
)
"""Columns of :func:`sensitivity` (``p_value`` in the paper's direction; ``p_holm`` on the per-preset rows)."""

_FAMILY_VARIANTS: dict[str, tuple[str, ...]] = {
    "Gaussian-only frontier": ("gaussian",),
    "median-only frontier": ("median",),
}


def _variants(presets: tuple[str, ...]) -> list[tuple[str, tuple[str, ...], str]]:
    """(name, presets, frontier family label) of every variant, the declared one first."""
    out = [("declared", presets, "declared")]
    if len(presets) > 1:
        out += [(f"{p} alone", (p,), "declared") for p in presets]
        out += [(f"without {p}", tuple(q for q in presets if q != p), "declared") for p in presets]
    out += [(name, presets, name) for name in _FAMILY_VARIANTS]
    return out


def sensitivity(
    rows: pd.DataFrame,
    frontier: baselines.Frontier,
    declarations: Mapping[str, inference.Declaration],
    test: Callable[[pd.DataFrame, str], inference.TestResult | None],
    *,
    train_presets: Sequence[str] | str | None = None,
    model_cols: Sequence[str] | str = ("key",),
    fit: pd.DataFrame | None = None,
    select: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    profile: str,
    outcomes: Callable[[baselines.Frontier, list[str]], pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """The declared tests of both questions under every variant (module docstring), one row each.

    Args:
        rows: the models' evaluation rows (as for :func:`derain_utils.measure.outcome.outcome_table`).
        frontier: the declared frontier (all families) on the same test inputs.
        declarations: :func:`questions.declare_questions` of the notebook (``paper`` and
            ``beyond_fidelity``; their presets are the declared pool).
        test: ``test(models, y)``: the notebook's declared test of outcome column ``y`` on a
            table of models (one row per model, stalled ones already left out); None when it
            cannot be computed.
        train_presets, model_cols, fit: passed to ``outcome_table`` (``fit``: the training fit
            that the stall rule reads).
        select: keeps the models of the verdict (e.g. one architecture), applied after the
            stall rule; default all.
        profile: the run's profile (a smoke run is always inconclusive).
        outcomes: ``outcomes(frontier, presets)``: the per-model table of a frontier and a
            preset pool (one row per model, the outcome columns and ``stalled``), for pools
            that :func:`outcome.outcome_table` does not build (notebook 04 pools benchmark
            pairs with image weights); default ``outcome_table(rows, frontier, presets=...,
            train_presets=..., model_cols=..., fit=...)``.

    Returns:
        DataFrame with :data:`SENSITIVITY_COLUMNS`.
    """
    missing = [q for q in questions.QUESTIONS if q not in declarations]
    if missing:
        raise ValueError(f"declarations lack question(s) {missing}: use questions.declare_questions")
    if not callable(test):
        raise ValueError(f"test must be callable(models, y), got {test!r}")
    if outcomes is None:
        if train_presets is None:
            raise ValueError("give train_presets (for outcome.outcome_table) or an outcomes(frontier, presets) "
                             "function")

        def outcomes(front: baselines.Frontier, presets: list[str]) -> pd.DataFrame:
            return outcome.outcome_table(rows, front, presets=presets, train_presets=train_presets,
                                         model_cols=model_cols, fit=fit)
    base = declarations["paper"]
    if tuple(declarations["beyond_fidelity"].presets) != tuple(base.presets):
        raise ValueError("the two declarations must pool the same presets")
    out: list[dict[str, Any]] = []
    fronts = {"declared": frontier, **{n: frontier.only(f) for n, f in _FAMILY_VARIANTS.items()}}
    for name, presets, front_name in _variants(tuple(base.presets)):
        table = outcomes(fronts[front_name], list(presets))
        table = table[~table["stalled"].astype(bool)]
        if select is not None:
            table = select(table)
        for q, decl in declarations.items():
            if q == "paper" and front_name != "declared":
                continue  # raw removal has no frontier
            d = inference.Declaration(decl.notebook, decl.design, decl.direction, presets, outcome=decl.outcome,
                                      alpha=decl.alpha)
            res = test(table, decl.outcome) if len(table) else None
            rec = inference.decide(res, d, profile=profile)
            out.append({"question": q, "variant": name, "presets": ", ".join(presets),
                        "frontier": "none (raw removal)" if q == "paper" else
                        ("identity, Gaussian, median (declared)" if front_name == "declared" else front_name),
                        "outcome": decl.outcome, "effect": rec.effect, "ci_low": rec.ci95[0], "ci_high": rec.ci95[1],
                        "p_value": rec.p_value, "p_opposite": rec.p_opposite, "p_holm": math.nan,
                        "verdict": rec.verdict, "n_models": rec.n_models, "n_seeds": rec.n_seeds})
    df = pd.DataFrame(out, columns=list(SENSITIVITY_COLUMNS))
    alone = df["variant"].str.endswith(" alone")
    for q in df["question"].unique():
        idx = df.index[alone & (df["question"] == q)]
        if len(idx):
            df.loc[idx, "p_holm"] = inference.holm([float(v) for v in df.loc[idx, "p_value"]])
    return df


def per_preset(table: pd.DataFrame) -> pd.DataFrame:
    """The per-preset rows of a :func:`sensitivity` table (and the declared pool), wide: one row per
    preset, the effect, interval and p of each question side by side."""
    if not isinstance(table, pd.DataFrame) or not set(SENSITIVITY_COLUMNS) <= set(table.columns):
        raise ValueError("per_preset takes the table of sensitivity()")
    d = table[(table["variant"] == "declared") | table["variant"].str.endswith(" alone")]
    d = d[d["frontier"].isin(["none (raw removal)", "identity, Gaussian, median (declared)"])]
    wide = d.pivot_table(index="presets", columns="question", values=["effect", "ci_low", "ci_high", "p_value"],
                         aggfunc="first", sort=False)
    wide.columns = [f"{v} ({q})" for v, q in wide.columns]
    return wide.reset_index().rename(columns={"presets": "presets (pooled: equal weights)"})
