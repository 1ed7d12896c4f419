"""What every monograph notebook does at its start and at its end.

A notebook starts by resolving its run folder and recording what it runs with, and ends by
writing its verdict, its tidy results and its provenance, and saying the verdict in one
line. Those steps are the same in every notebook, so they live here::

    NB = notebook.start("01_set_size", FINDING, PROFILE, RUN_DIR, t0=T0, params={...}, models={...})
    RUN = NB.dir                                                    # figures go here
    ...
    RECORD = inference.decide(TEST, DECLARATION, profile=PROFILE)   # the three-way verdict
    notebook.finish(NB, RESULTS, ["seed", "n_train", ...], record=RECORD, summary=SUMMARY, **FACTS)

:func:`finish` writes ``results.csv``, ``verdict.json`` and ``provenance.json`` into the run
folder (atomically) and prints the headline. The verdict record itself is built in ONE
place, :func:`verdict_record`: a new verdict field is a change there.
"""
from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from derain_utils import store
from derain_utils.book import layout, runs
from derain_utils.lab import designs, profiles
from derain_utils.stats import inference, questions, verdict
from derain_utils.synth import rain

__all__ = ["NotebookRun", "start", "profile", "training_background", "rain_roles", "verdict_record", "verdict_box",
           "finish"]

PENDING_BOX = ("**Verdict:** not computed yet. The last cell of this notebook fills this box in: the finding, both "
               "declared verdicts with effect, 95% interval and p, and the number of models.")
"""What the verdict box at the top of a notebook says until :func:`finish` fills it in."""


@dataclass
class NotebookRun:
    """One execution of a notebook: what :func:`start` resolved, what :func:`finish` needs.

    Attributes:
        notebook: the notebook's stem, e.g. ``"01_set_size"``.
        finding: the paper's claim it tests, one sentence.
        profile: the profile it ran with.
        dir: its run folder (figures and tables go here).
        t0: ``time.perf_counter()`` when the notebook started.
        params: its parameters, as given.
        provenance: further facts recorded in ``provenance.json`` (models, data, ...).
    """

    notebook: str
    finding: str
    profile: str
    dir: Path
    t0: float
    params: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    box: Any = None  # the verdict box shown by start (an IPython DisplayHandle), filled in by finish

    @property
    def shown_dir(self) -> str:
        """The run folder as pages show it: relative to the runs root (``<runs>/quick/01_set_size/<stamp>``), so
        that no page carries a path of the machine that ran it; a folder elsewhere shows its name only."""
        try:
            return f"<runs>/{self.dir.resolve().relative_to(store.runs_root().resolve()).as_posix()}"
        except ValueError:
            return f".../{self.dir.name}"

    def write_provenance(self, **more: Any) -> Path:
        """(Re)write ``provenance.json``: the parameters, the device, :attr:`provenance` and ``more``."""
        return runs.write_provenance(self.dir, self.params, **self.provenance, **more)


def start(
    notebook: str,
    finding: str,
    profile: str,
    run_dir: str | Path | None,
    /,
    *,
    t0: float | None = None,
    params: Mapping[str, Any] | None = None,
    **provenance: Any,
) -> NotebookRun:
    """Resolve the run folder (:func:`runs.resolve_run_dir`) and write a first ``provenance.json``.

    Args:
        notebook, finding, profile: as :class:`NotebookRun`.
        run_dir: the notebook's ``RUN_DIR`` parameter ("" in JupyterLab: a fresh folder).
        t0: when the notebook started (default: now).
        params: the notebook's parameters.
        **provenance: more facts for ``provenance.json`` (e.g. ``models={name: key}``).
    """
    folder = runs.resolve_run_dir(run_dir, notebook, profile)
    nb = NotebookRun(notebook=notebook, finding=finding, profile=profile, dir=folder,
                     t0=time.perf_counter() if t0 is None else t0, params=dict(params or {}),
                     provenance=dict(provenance))
    nb.write_provenance()
    nb.box = _show(PENDING_BOX, update=None)
    layout.FOUND.clear()  # the overlaps layout.save finds in this run's figures
    return nb


def _show(text: str, update: Any) -> Any:
    """Markdown in a notebook (a new display, or ``update``'s display updated in place); nothing outside one."""
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:  # pragma: no cover - IPython comes with the notebook tools
        return None
    if get_ipython() is None:
        return None
    if update is not None:
        update.update(Markdown(text))
        return update
    return display(Markdown(text), display_id=True)


def verdict_box(record: verdict.Verdict) -> str:
    """The verdict in plain words (Markdown): the finding, both declared verdicts, models and seeds.

    A smoke run says it is plumbing only and prints no effect or interval.
    """
    from derain_utils.book.publish import verdict_cell

    if record.profile == "smoke":
        return (f"**Verdict: none (smoke run, plumbing only).** The smoke profile checks that the notebook runs end "
                f"to end; its {record.n_models} tiny models are too small and too few for any number in it to mean "
                "anything. Run the quick profile for a verdict.")
    extra = record.extra or {}
    bf = extra.get("beyond_fidelity") or {}
    lines = [f"**Verdict** ({record.profile} profile, {record.n_models} models, {record.n_seeds} seeds). "
             f"*Finding:* {record.finding}",
             f"- **As the paper measured it** ({record.primary_outcome}): "
             + verdict_cell(record.verdict, record.effect, record.ci95, record.p_value, record.statistic,
                            extra.get("p_opposite"))]
    if bf:
        lines.append(f"- **Beyond fidelity** ({bf.get('primary_outcome', 'excess_removal')}): "
                     + verdict_cell(bf.get("verdict", ""), bf.get("effect"), bf.get("ci95"), bf.get("p_value"),
                                    bf.get("statistic", record.statistic), bf.get("p_opposite")))
    return "\n".join(lines)


# --------------------------------------------------------------------------- the design every notebook resolves


def profile(name: str, **knobs: Any) -> profiles.Profile:
    """The profile ``name`` with a notebook's knobs applied; a knob left empty, 0 or False keeps the profile's.

    E.g. ``profile(PROFILE, steps=STEPS, seeds=SEEDS)`` with ``STEPS = 0`` and ``SEEDS = []`` is the
    profile itself (strings from papermill are coerced by :func:`profiles.resolve`).
    """
    return profiles.resolve(name, **{k: v for k, v in knobs.items() if v})


training_background = designs.training_background  # the rule lives with the designs that share models


def rain_roles(prof: profiles.Profile) -> tuple[str, list[str], list[str], list[str]]:
    """``(training rain, evaluated presets, in-distribution presets, out-of-distribution presets)`` of a profile.

    A preset is out-of-distribution when it leaves the training rain's ranges on some field
    (:func:`rain.ood_fields`). Raises ValueError (naming the presets) unless both kinds are present.
    """
    train, presets = prof.train_rain, list(prof.eval_presets)
    ood = [p for p in presets if rain.ood_fields(train, p)]
    in_dist = [p for p in presets if p not in ood]
    if not ood or not in_dist:
        raise ValueError(f"eval_presets {presets} need the training rain {train!r} and at least one OOD rain")
    return train, presets, in_dist, ood


# --------------------------------------------------------------------------- the end of a notebook


def verdict_record(
    nb: NotebookRun,
    *,
    record: inference.VerdictRecord,
    summary: str,
    beyond: inference.VerdictRecord | None = None,
    **extra: Any,
) -> verdict.Verdict:
    """The notebook's verdict record: the ONE place it is built (fields: :data:`verdict.VERDICT_FIELDS`).

    ``record`` is the verdict of the paper's question (:func:`inference.decide` on the paper's
    own measure, :func:`questions.declare_questions`): it gives ``verdict``, ``reproduced``,
    ``statistic``, ``effect``, ``ci95``, ``p_value``, ``n_seeds``, ``n_models``,
    ``primary_outcome`` and ``primary_preset``, and its other fields (the test, its exactness,
    the reason, the headline, ...) are kept too. ``beyond`` is the verdict of the control
    question (the same effect beyond a fixed filter of equal fidelity): it gives
    ``verdict_beyond_fidelity``, its whole record goes to ``beyond_fidelity``, and the
    ``headline`` says both (:func:`questions.two_questions_headline`).
    ``notebook``, ``finding``, ``profile`` and ``wall_s`` come from ``nb``; ``extra`` follows, and
    ``figures`` (the run folder's ``fig_*.png``) comes last.

    """
    if not isinstance(record, inference.VerdictRecord):
        raise ValueError(f"record must be an inference.VerdictRecord (from inference.decide), got {type(record).__name__}")
    if beyond is not None and not isinstance(beyond, inference.VerdictRecord):
        raise ValueError(f"beyond must be an inference.VerdictRecord (from inference.decide), "
                         f"got {type(beyond).__name__}")
    r = record.to_dict()
    fields = {k: r.pop(k) for k in ("verdict", "reproduced", "statistic", "effect", "ci95", "p_value",
                                    "n_seeds", "n_models", "primary_outcome", "primary_preset")}
    r.pop("profile", None)
    fields.update({f"test_{k}" if k in ("exact", "alpha") else k: v for k, v in r.items()})
    if beyond is not None:
        fields["headline_paper"] = fields["headline"]
        fields["headline"] = questions.two_questions_headline(record, beyond)
        fields["verdict_beyond_fidelity"] = beyond.verdict
        fields["beyond_fidelity"] = beyond.to_dict()
    return verdict.Verdict.from_dict({
        "notebook": nb.notebook,
        "finding": nb.finding,
        "profile": nb.profile,
        "summary": summary,
        "wall_s": time.perf_counter() - nb.t0,
        **fields,
        **extra,
        "figures": sorted(p.name for p in nb.dir.glob("fig_*.png")),
    })


def finish(
    nb: NotebookRun,
    results: pd.DataFrame,
    required_columns: Sequence[str],
    *,
    tables: Mapping[str, pd.DataFrame] | None = None,
    **fields: Any,
) -> verdict.Verdict:
    """Write the notebook's outputs into its run folder and print the headline.

    Writes ``results.csv`` (``results``, which must hold ``required_columns``), every table of
    ``tables`` (``{file name: DataFrame}``), ``verdict.json`` (:func:`verdict_record` of
    ``fields``) and ``provenance.json`` (now with the wall time and the outputs), then prints
    one line: the verdict, the effect and its interval, and where the files are.

    Returns:
        The verdict record written.
    """
    runs.write_results(nb.dir, results, required_columns=required_columns)
    for name, table in (tables or {}).items():
        store.write_csv(nb.dir / name, table)
    record = verdict_record(nb, **{"figure_overlaps": dict(layout.FOUND), **fields})
    record.write(nb.dir)
    nb.write_provenance(wall_s=record.wall_s, outputs=sorted(p.name for p in nb.dir.iterdir() if p.is_file()))
    effect = record.result if math.isfinite(record.effect) else f"{record.statistic} = nan"
    p = "" if not math.isfinite(record.p_value) else f", one-sided p = {record.p_value:.2g}"
    beyond = ("" if record.verdict_beyond_fidelity is None else
              f"; beyond fidelity: {record.verdict_beyond_fidelity.upper()}")
    print(f"{nb.notebook} [{nb.profile}]: {record.label} as the paper measured it: {effect}{p} ({record.n_models} "
          f"models, {record.n_seeds} seeds){beyond}; wrote {verdict.VERDICT_FILE}, {runs.RESULTS_FILE} and "
          f"{runs.PROVENANCE_FILE} in {nb.shown_dir}")
    box = verdict_box(record)
    if nb.box is not None:
        _show(box, update=nb.box)  # the box at the top of the notebook
    _show(box, update=None)  # and the same at its end
    return record
