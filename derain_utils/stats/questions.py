"""The two declared questions of every notebook: the paper's claim as the paper measured it, and beyond fidelity.

Two declared questions
----------------------
Every notebook asks two questions, both declared before training and both decided by
the same rule (:func:`declare_questions`):

* ``paper``: *the paper's claim as the paper measured it*: the effect on raw removal
  of unseen rain (``removal``), the measure of the paper's figures. This verdict is the
  notebook's ``verdict``, and only it can put "contradicted" in a headline.
* ``beyond_fidelity``: *does the effect survive the fixed-filter control?* The same
  effect on the excess removal over the frontier (``excess_removal``,
  :mod:`derain_utils.measure.outcome`): removal that no blur or median of equal background
  fidelity achieves. This is the project's control, never the paper's measure; its
  verdict is ``verdict_beyond_fidelity``.

:func:`two_questions_headline` says both in plain words ("reproduced as the paper
measured it; not beyond a filter of equal fidelity at this scale").
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd

from derain_utils.measure import outcome
from derain_utils.stats import inference

__all__ = ["QUESTIONS", "declare_questions", "two_questions_headline", "on_pooled_units", "ladder_tests",
           "ladder_reading"]

QUESTIONS: dict[str, str] = {
    "paper": "removal",
    "beyond_fidelity": outcome.PRIMARY_OUTCOME,
}
"""The two declared questions of every notebook and the outcome each is tested on (module docstring)."""
_QUESTION_WORDS = {"paper": "as the paper measured it (raw removal of unseen rain)",
                   "beyond_fidelity": "beyond a fixed filter of equal background fidelity (excess removal)"}


def declare_questions(
    notebook: str, design: str, direction: str, presets: Sequence[str] | str, *,
    exploratory: Sequence[str] | str = (), alpha: float = inference.ALPHA,
) -> dict[str, inference.Declaration]:
    """The two declarations of a notebook: ``{"paper": ..., "beyond_fidelity": ...}`` (:data:`QUESTIONS`).

    Same design, direction, presets and alpha; the paper's question is tested on raw removal
    of unseen rain, the control on excess removal.
    """
    return {q: inference.Declaration(notebook, design, direction, presets, outcome=o, exploratory=exploratory,
                                     alpha=alpha) for q, o in QUESTIONS.items()}


def two_questions_headline(
    paper: inference.VerdictRecord, beyond: inference.VerdictRecord, *, scale: str = "at this scale"
) -> str:
    """Both verdicts in plain words, the paper's first, then the numbers of each.

    "Reproduced as the paper measured it (raw removal of unseen rain); not beyond a fixed
    filter of equal background fidelity (excess removal): inconclusive at this scale."
    Only the paper's own measure can make the headline say "contradicted" first.
    """
    for name, r in (("paper", paper), ("beyond", beyond)):
        if not isinstance(r, inference.VerdictRecord):
            raise ValueError(f"{name} must be an inference.VerdictRecord, got {type(r).__name__}")
    if paper.reason.startswith("plumbing only"):
        return f"Inconclusive (plumbing only): smoke profile. {paper.headline} {beyond.headline}"
    first = f"{paper.verdict.capitalize()} {_QUESTION_WORDS['paper']}"
    words = _QUESTION_WORDS["beyond_fidelity"]
    if beyond.verdict == "reproduced":
        second = f"reproduced {words} too"
    elif beyond.verdict == "contradicted":
        second = f"{words}, the effect goes against the paper (contradicted {scale})"
    else:
        second = f"not shown {words} (inconclusive {scale})"
    joiner = ", and " if paper.verdict == beyond.verdict == "reproduced" else "; "

    def numbers(r: inference.VerdictRecord) -> str:
        p = r.p_value if r.verdict != "contradicted" else r.p_opposite
        side = "against the paper" if r.verdict == "contradicted" else "in the paper's direction"
        return (f"{r.primary_outcome}: {r.statistic} = {inference.format_number(r.effect)} [{inference.format_number(r.ci95[0])}, {inference.format_number(r.ci95[1])}], "
                f"one-sided p = {inference.format_p(p)} {side}")
    return (f"{first}{joiner}{second}. ({numbers(paper)}; {numbers(beyond)}; {paper.n_models} models, "
            f"{paper.n_seeds} seeds, {paper.primary_preset}.)")


def on_pooled_units(result: inference.TestResult, n_models: int, unit: str) -> inference.TestResult:
    """A test whose rows are means over several models (e.g. notebook 02's dose-response: per seed and
    proportion, the mean over the mixes) reports the models behind it, not its rows.

    Returns ``result`` with ``n_models`` set and a note naming the ``unit`` of its rows.
    """
    if not isinstance(result, inference.TestResult):
        raise ValueError(f"result must be an inference.TestResult, got {type(result).__name__}")
    if isinstance(n_models, bool) or not isinstance(n_models, int) or n_models < 0:
        raise ValueError(f"n_models must be an int >= 0, got {n_models!r}")
    return dataclasses.replace(result, n_models=n_models, notes=(*result.notes, f"each value is {unit}"))


LADDER_TEST_COLUMNS: tuple[str, ...] = (
    "rung", "test_set", "question", "outcome", "n_seeds", "n_models", "n_stalled", "difference", "ci_low", "ci_high",
    "p", "p_opposite", "exact", "verdict", "p_holm", "holds_after_holm", "reason")


def ladder_tests(
    table: pd.DataFrame,
    *,
    ood: Sequence[str],
    n_lo: int,
    n_hi: int,
    profile: str,
    synthetic: str = "synthetic",
    seed: int = 0,
    notebook: str = "01_set_size",
) -> pd.DataFrame:
    """Both questions at every rung of a budget ladder, on every test set (notebook 01's declared secondary analysis).

    Per (rung, test set), the per-seed difference of the N = ``n_lo`` model minus the
    N = ``n_hi`` model, on raw removal (the paper's question) and on excess removal (beyond
    fidelity), stalled models and their seed's pair left out; sign-flip test over seeds, one-sided in
    the paper's direction (positive: fewer backgrounds, more removal of unseen rain), decided by
    :func:`inference.decide`. ``p_holm`` adjusts each question's p-values over the rungs of one test
    set (is the effect there at *some* rung?), and ``holds_after_holm`` says whether the cell is
    reproduced with it.

    Args:
        table: one row per (model, test set) (:func:`derain_utils.lab.ladder.outcomes`): ``rung``,
            ``test_set``, ``n_train``, ``seed``, ``stalled``, ``removal``, ``excess_removal``.
        ood: the unseen presets pooled in the ``synthetic`` test set (named in its declaration).

    Returns:
        :data:`LADDER_TEST_COLUMNS`, one row per (rung, test set, question), in the table's order.
    """
    need = ["rung", "test_set", "n_train", "seed", "stalled", *QUESTIONS.values()]
    lack = [c for c in need if c not in table.columns]
    if lack:
        raise ValueError(f"ladder_tests: the table lacks column(s) {lack}")
    if n_lo == n_hi:
        raise ValueError(f"ladder_tests: n_lo and n_hi must differ, got {n_lo}")
    rows = []
    for (rung, test_set), d in table.groupby(["rung", "test_set"], sort=False):
        d = d[d["n_train"].isin([n_lo, n_hi])]
        fit = d[~d["stalled"].astype(bool)].assign(end=lambda x: np.where(x["n_train"] == n_lo, "lo", "hi"))
        presets = list(ood) if test_set == synthetic else [str(test_set)]
        for q, decl in declare_questions(notebook, "paired", "positive", presets).items():
            r = (inference.paired(fit, decl.outcome, "end", "lo", "hi", seed=seed)
                 if set(fit["end"]) == {"lo", "hi"} else None)
            rec = inference.decide(r, decl, profile=profile)
            rows.append({"rung": rung, "test_set": test_set, "question": q, "outcome": decl.outcome,
                         "n_seeds": rec.n_seeds, "n_models": rec.n_models, "n_stalled": int(d["stalled"].sum()),
                         "difference": rec.effect, "ci_low": rec.ci95[0], "ci_high": rec.ci95[1], "p": rec.p_value,
                         "p_opposite": rec.p_opposite, "exact": rec.exact, "verdict": rec.verdict,
                         "reason": rec.reason})
    out = pd.DataFrame(rows, columns=[c for c in LADDER_TEST_COLUMNS if c not in ("p_holm", "holds_after_holm")])
    out["p_holm"] = out.groupby(["question", "test_set"], sort=False)["p"].transform(
        lambda p: pd.Series(inference.holm(list(p)), index=p.index))
    out["holds_after_holm"] = (out["verdict"] == "reproduced") & (out["p_holm"] < inference.ALPHA)
    return out[list(LADDER_TEST_COLUMNS)]


def ladder_reading(tests: pd.DataFrame) -> pd.DataFrame:
    """Per question and test set, where the verdict holds, flips or stays inconclusive along the ladder.

    Returns one row per (question, test set): the verdict at each rung in ladder order
    (``"rung: verdict"``), and ``reading``: ``"holds at every rung"``, ``"contradicted at every rung"``,
    ``"inconclusive at every rung"``, ``"flips"`` (reproduced at some rung and contradicted at another)
    or ``"depends on the rung"`` (reproduced or contradicted at some rungs, inconclusive at others).
    """
    rows = []
    for (q, s), d in tests.groupby(["question", "test_set"], sort=False):
        v = list(d["verdict"])
        kinds = set(v)
        reading = ("holds at every rung" if kinds == {"reproduced"} else
                   "contradicted at every rung" if kinds == {"contradicted"} else
                   "inconclusive at every rung" if kinds == {"inconclusive"} else
                   "flips" if {"reproduced", "contradicted"} <= kinds else "depends on the rung")
        rows.append({"question": q, "test_set": s, "reading": reading,
                     "verdicts": "; ".join(f"{r}: {x}" for r, x in zip(d["rung"], v))})
    return pd.DataFrame(rows, columns=["question", "test_set", "reading", "verdicts"])
