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

from derain_utils.measure import outcome
from derain_utils.stats import inference

__all__ = ["QUESTIONS", "declare_questions", "two_questions_headline", "on_pooled_units"]

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
