"""The verdict record: what a notebook concluded, as ``verdict.json``.

Every notebook of the monograph ends the same way. It declares its tests before training, runs them
on its per-model outcomes (:mod:`derain_utils.stats.inference`: model-level permutation tests, the
three-way rule ``reproduced`` / ``contradicted`` / ``inconclusive``), and writes the result down as
``verdict.json`` next to a tidy ``results.csv`` and a ``provenance.json``. This module holds that
record: :class:`Verdict` (its fields and their meaning in :data:`VERDICT_FIELDS`, validated on
construction), its JSON (:meth:`Verdict.write`, :func:`read_verdict`) and how an effect is written
(:func:`format_effect`).

Where the records go
--------------------
A notebook writes its verdict into its run folder (:mod:`derain_utils.book.runs`) through
:func:`derain_utils.book.notebook.finish`, which builds the record from the decision
(:func:`derain_utils.book.notebook.verdict_record`, the one place it is built) and also writes
``results.csv`` and ``provenance.json``. Files are written atomically by :mod:`derain_utils.store`.
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from derain_utils import store
from derain_utils.store import to_jsonable

__all__ = [
    "format_effect",
    "Verdict",
    "VERDICT_FIELDS",
    "OPTIONAL_FIELDS",
    "VERDICT_FILE",
    "read_verdict",
]

VERDICT_FILE = "verdict.json"


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
    "reproduced": "bool: true exactly when verdict is 'reproduced' (inference.decide)",
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

OPTIONAL_FIELDS: dict[str, str] = {
    "verdict_beyond_fidelity": "reproduced, contradicted or inconclusive: the same declared effect on excess removal "
                               "(beyond a fixed filter of equal background fidelity); 'verdict' is the paper's measure",
}
"""Validated when present; every notebook of the monograph writes them (``beyond_fidelity`` holds the record)."""

#: The three verdicts (:func:`derain_utils.stats.inference.decide`), and their labels in summaries.
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
    verdict_beyond_fidelity: str | None = None
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
        if self.verdict_beyond_fidelity is not None and self.verdict_beyond_fidelity not in VERDICTS:
            raise ValueError(f"verdict field 'verdict_beyond_fidelity' must be one of {VERDICTS} (or absent), got "
                             f"{self.verdict_beyond_fidelity!r}")
        if not isinstance(self.extra, Mapping):
            raise ValueError(f"verdict 'extra' must be a mapping, got {type(self.extra).__name__}")
        clash = set(self.extra) & (set(VERDICT_FIELDS) | set(OPTIONAL_FIELDS))
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
        d.update({k: getattr(self, k) for k in OPTIONAL_FIELDS if getattr(self, k) is not None})
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
        extra = {k: v for k, v in d.items() if k not in VERDICT_FIELDS and k not in OPTIONAL_FIELDS}
        optional = {k: d[k] for k in OPTIONAL_FIELDS if k in d}
        return cls(**{k: d[k] for k in VERDICT_FIELDS}, **optional, extra=extra)

    def write(self, run_dir: str | Path) -> Path:
        """Write ``verdict.json`` into ``run_dir`` (created if needed); returns its path."""
        folder = store.ensure_dir(run_dir, "run folder")
        return store.write_json(folder / VERDICT_FILE, self.to_dict(), what="verdict")


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
