"""Profiles: the one place that says how big the monograph's experiments are.

Every notebook starts from ``PROFILE = "quick"`` and resolves it here, together with the
few knobs a reader turned (``resolve("quick", steps=300)``). A profile holds only *sizes*:
the network, the training budget, the crops, the number of test images, the seeds and the
set sizes. The scientific design (what is compared with what, which rain is unseen) never
depends on the profile. :class:`~derain_utils.lab.experiments.ExperimentConfig` has no sizes of
its own: :func:`experiment` and :func:`grid` fill them in from a profile.

``smoke``
    Seconds in CI; tests the plumbing only, its numbers mean nothing.
``quick``
    Minutes on a laptop CPU, big enough to show the finding: notebook 01's ResNet at every N and the
    two cheapest rungs of its budget ladder; 8 seeds per verdict. Its size is set by the 20-minute
    budget (docs/results.md, *Budget ladder* and the wall time). Each model sees 500 x 16 crops of 32 px. On a
    CPU without native bf16 (fp32 fallback) a quick model takes about 3x longer (docs/performance.md).
``long``
    The quick sizes plus what the 20-minute budget left out of notebook 01: the UNet arm, the
    predict-background ablation and the CPU budget ladder (steps 500, 2000, 8000 at 32 px crops and
    500, 2000 at 64 px); about two hours on 2 cores (docs/ladder.md).
``paper``
    One GPU, approaching the paper's scale.

What each profile sets (:func:`sizes_markdown`; a test keeps this table current):

| profile | network | steps (warm-up) | batch x crop | tiles | test images | seeds | N (notebook 01) | architectures (01) | ablation (01) | budget ladder (01) | N per category (02) | curve points (03) | workers |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
| smoke | resnet tiny (6 conv x 16) | 150 (15) | 4 x 24 px | 32 px | 4 x 48 px | 0, 1 | 2, 8 | resnet, unet | yes | 150x24, 300x32 | 8 | 3 | 1 |
| quick | resnet quick (8 conv x 32) | 500 (100) | 16 x 32 px | 64 px | 8 x 64 px | 0, 1, 2, 3, 4, 5, 6, 7 | 4, 16, 64, 256 | resnet | no | 500x32, 500x64 | 64 | 10 | 2 |
| long | resnet quick (8 conv x 32) | 500 (100) | 16 x 32 px | 64 px | 8 x 64 px | 0, 1, 2, 3, 4, 5, 6, 7 | 4, 16, 64, 256 | resnet, unet | yes | 500x32, 2000x32, 8000x32, 500x64, 2000x64 | 64 | 10 | 2 |
| paper | resnet paper (18 conv x 64, residual) | 4000 (400) | 32 x 64 px | 64 px | 16 x 128 px | 0, 1, 2, 3, 4 | 4, 16, 64, 256, 1024 | resnet, unet | yes | 4000x64 | 256 | 20 | 8 |

Notebooks 02 and 03 (:mod:`derain_utils.lab.designs`) train one model per category and seed at ``category_n``
tiles: (real categories + 4 ladder rungs + 1 negative control) x ``seeds``, plus the dose-response's mixed sets
(2 mixes x 3 proportions with the real sets, 1 x 3 without) x ``seeds``, i.e. 120 quick models with the four
real sets and 64 without; notebook 03 reads the learning curves (``dynamics_points``) of 02's faces, urban,
manga, blobs and noise models and trains nothing of its own. The budget set these choices: one training-set
size per category (the paper profile's earlier second size, 64, is gone), learning curves at that size only,
and four ladder rungs (the fewest that can reach p < 0.05 with the category-level test).

Each profile also sets the peak learning rate (``lr``; Adam with a linear warm-up, then a
cosine decay) and the checkpoint interval (``ckpt_every``); all train on the ``small`` rain
and evaluate on it and on the out-of-distribution presets (the design defaults of
``ExperimentConfig``).

Notebook 01 trains every architecture of ``archs`` at every N of ``n_list`` and seed, and, with
``ablation``, the first architecture predicting the background (the ``predict`` ablation) at the
smallest and the largest N only, every seed (:func:`derain_utils.lab.designs.set_size`): the two ends
carry the ablation's paired test at half the cost of a whole sweep. Its budget ladder
(:func:`derain_utils.lab.designs.budget_ladder`) trains the first architecture at the same two ends
again at each rung of ``ladder`` (:func:`rung`). ``quick``: the ResNet, 4 x 8 = 32 models, and the
ladder's rungs 500x32 (those very models) and 500x64 (16 more), 48 in all; notebook 04 reuses 16 of
them (N = 4 and 256) from the cache. ``long``: ResNet and UNet, 64 models, the ablation's 16 and the
ladder's 64 more, 144 in all. ``paper``: the paper's three architectures.

Data limits: set sizes count distinct ``tile`` x ``tile`` grid tiles of the training
images. At 64 px the embedded ``skimage`` samples hold about 550 tiles and the
256-px category sets of ``DERAIN_DATA`` 670-1000, so ``n = 1024`` needs the
full-resolution sets or a procedural background; and a test crop of 96 px or more
fits only once per test image (17-34 test images per category), hence ``paper``
evaluates 16 crops of 128 px. :func:`backgrounds.draw_split` raises a ValueError
with the available count when a source is too small.

:func:`cached_results` finds every model of the experiments cache that was trained at a profile's
sizes (:func:`matches_profile`), whichever notebook trained it.

Usage::

    prof = resolve("quick", steps=300, seeds="[0, 1]")   # strings from papermill/CLI are coerced
    cfg = experiment(prof, background="natural", n_train=64)
    configs = grid(prof, background="natural", n_train=prof.n_list, seed=prof.seeds)
"""
from __future__ import annotations

import ast
import dataclasses
import itertools
import math
import numbers
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from derain_utils import store
from derain_utils.lab import experiments
from derain_utils.lab.experiments import ExperimentConfig, ExperimentResult, _normalise_kwargs
from derain_utils.nets import models

__all__ = ["PROFILES", "Profile", "Rung", "rung", "resolve", "experiment", "grid", "sizes_markdown", "FREE_FIELDS",
           "matches_profile", "cached_results"]

#: Defaults of the design fields of ExperimentConfig (background, train_rain, eval_presets, gray, eval_seed, ...).
_DESIGN: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(ExperimentConfig)
                           if f.default is not dataclasses.MISSING}


@dataclass(frozen=True)
class Profile:
    """The sizes of one profile (all fields documented; units in brackets).

    Model
        arch: architecture name of ``models.MODEL_SIZES`` (``"resnet"``, ``"unet"``, ``"swinir"``).
        model_size: named size of ``arch`` (``"tiny"``, ``"quick"``, ``"paper"``).
        model_kwargs: overrides of single size entries (e.g. ``{"depth": 3}``);
            stored as a sorted tuple of ``(name, value)`` pairs.
        predict: what the network's body outputs, ``"rain"`` (default) or ``"background"``.
    Training
        background: default training background source (``backgrounds.get_source`` name).
        steps: optimiser steps per trained model.
        batch_size: crops per step.
        patch: crop side [px]; ``patch <= tile``.
        tile: side of the training tiles cut from the background images [px].
        lr: peak Adam learning rate (cosine decay to 0).
        train_rain: the ``rain.PRESETS`` name of the training rain.
        gray: train/evaluate on 1-channel luma instead of RGB.
        ckpt_every: steps between training checkpoints (resume after an interruption).
        warmup_steps: linear learning-rate warm-up steps before the cosine decay. Without
            it, about one run in six of the quick ResNet at lr 1e-3 stalled at the identity
            (loss stuck at the rainy input's L1 error); 100 warm-up steps avoided it.
    Evaluation
        n_test: held-out test images per evaluation.
        test_size: side of the test images [px].
        eval_presets: rain presets each model is evaluated on (training preset first,
            then the out-of-distribution ones).
        eval_seed: seed of the test rain (the same for every model: paired comparisons).
    Experimental design
        seeds: training seeds; every point of every curve is repeated over them.
        n_list: training-set sizes (number of tiles) swept by notebook 01 (ascending).
        archs: the architectures of notebook 01's set-size sweep, each at ``model_size``,
            the first one the primary verdict's (and the networks notebook 04 reuses);
            empty: ``(arch,)``. :func:`derain_utils.lab.designs.set_size` builds the grid.
        category_n: training-set size per background category in notebook 02 (and the
            default ``n_train`` of :func:`experiment`).
        dynamics_points: number of evenly spaced points during training at which
            notebook 03 evaluates the model (the learning dynamics of the decoupled metrics).
        ablation: whether notebook 01 also trains its predict-background ablation.
        ladder: the rungs of notebook 01's budget ladder, each ``"STEPSxPATCH"`` with an
            optional ``"bBATCH"`` and ``":SIZE"`` (:func:`rung`; e.g. ``"2000x64"``,
            ``"4000x64b32:paper"``): the ends of the set-size sweep trained again at each
            rung's budget. A rung without ``b`` keeps the pixels per step of the profile
            (``batch_size x patch**2``); empty (or ``["none"]``): no ladder.
    Execution
        workers: parallel training runs in a sweep (``sweeps.sweep(workers=...)``).
        precision: ``"auto"``, ``"fp32"`` or ``"bf16"``: the training precision of every
            config (``ExperimentConfig.precision`` resolves ``"auto"``).
    """

    name: str
    arch: str
    model_size: str
    steps: int
    batch_size: int
    patch: int
    tile: int
    lr: float
    n_test: int
    test_size: int
    seeds: tuple[int, ...]
    n_list: tuple[int, ...]
    category_n: int
    dynamics_points: int
    workers: int
    ckpt_every: int
    warmup_steps: int = 0
    model_kwargs: tuple[tuple[str, Any], ...] = ()
    archs: tuple[str, ...] = ()
    ablation: bool = True
    ladder: tuple[str, ...] = ()
    # the design fields default to ExperimentConfig's own defaults (one place for each)
    predict: str = _DESIGN["predict"]
    background: str = _DESIGN["background"]
    train_rain: str = _DESIGN["train_rain"]
    eval_presets: tuple[str, ...] = _DESIGN["eval_presets"]
    gray: bool = _DESIGN["gray"]
    eval_seed: int = _DESIGN["eval_seed"]
    precision: str = "auto"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _coerce(f.name, getattr(self, f.name)))
        if not self.name:
            raise ValueError("name must be a non-empty string")
        for fname in ("seeds", "n_list"):
            v = getattr(self, fname)
            if not v:
                raise ValueError(f"{fname} must be non-empty")
            if len(set(v)) != len(v):
                raise ValueError(f"{fname} has repeated values: {v}")
        if any(s < 0 for s in self.seeds):
            raise ValueError(f"seeds must be >= 0, got {self.seeds}")
        if any(n < 1 for n in self.n_list):
            raise ValueError(f"n_list entries must be >= 1, got {self.n_list}")
        if list(self.n_list) != sorted(self.n_list):
            raise ValueError(f"n_list must be ascending, got {self.n_list}")
        if not self.archs:
            object.__setattr__(self, "archs", (self.arch,))
        if len(set(self.archs)) != len(self.archs):
            raise ValueError(f"archs has repeated values: {self.archs}")
        for a in self.archs:
            if a not in models.MODEL_SIZES:
                raise ValueError(f"archs: unknown architecture {a!r}; valid: {', '.join(models.MODEL_SIZES)}")
            if self.model_size not in models.MODEL_SIZES[a]:
                raise ValueError(f"archs: architecture {a!r} has no size {self.model_size!r} (model_size); "
                                 f"valid: {', '.join(models.MODEL_SIZES[a])}")
        for fname in ("category_n", "dynamics_points", "workers"):
            if getattr(self, fname) < 1:
                raise ValueError(f"{fname} must be >= 1, got {getattr(self, fname)}")
        tile_bytes = self.tile * self.tile * (1 if self.gray else 3) * 4  # float32, held by every model
        for fname, n in (("n_list", self.n_list[-1]), ("category_n", self.category_n)):
            if n * tile_bytes > MAX_TRAIN_BYTES:
                raise ValueError(
                    f"{fname}: N = {n} training tiles of {self.tile} px would hold {n * tile_bytes / 2**30:.2f} GiB in "
                    f"memory for every model that trains on them (and be drawn again for each), past the "
                    f"{MAX_TRAIN_BYTES / 2**30:g} GiB limit (profiles.MAX_TRAIN_BYTES); the largest N at this tile is "
                    f"{MAX_TRAIN_BYTES // tile_bytes}")
        experiment(self)  # validates every field shared with ExperimentConfig (errors name the field)
        if self.dynamics_points > self.steps:
            raise ValueError(f"dynamics_points ({self.dynamics_points}) must be <= steps ({self.steps})")
        if len(set(self.ladder)) != len(self.ladder):
            raise ValueError(f"ladder has repeated rungs: {self.ladder}")
        rungs = [rung(self, spec) for spec in self.ladder]  # validates each (errors name the rung)
        if len({r.name for r in rungs}) != len(rungs):
            raise ValueError(f"ladder has rungs that are the same budget: {self.ladder}")

    def replace(self, **overrides: Any) -> Profile:
        """A copy with fields changed (coerced and validated); unknown field -> ValueError."""
        _check_names(overrides)
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (tuples as lists, model_kwargs as a dict) for provenance cells."""
        d = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            d[f.name] = dict(v) if f.name == "model_kwargs" else (list(v) if isinstance(v, tuple) else v)
        return d


# --------------------------------------------------------------------------- rungs of the budget ladder

MAX_TRAIN_BYTES: int = 2**30
"""The most memory one model's training tiles may hold (float32): 1 GiB, i.e. N <= 87,381 RGB tiles of 32 px or
21,845 of 64 px. Issue 23: ``N_LIST='[2, 100000]'`` in the smoke profile spent minutes and 1.2 GB in one cell with no
word; a larger N is refused before any kernel starts, naming the field and the largest N that fits."""

_RUNG = re.compile(r"^(\d+)x(\d+)(?:b(\d+))?(?::([A-Za-z_]\w*))?$")


@dataclass(frozen=True)
class Rung:
    """One training budget of the ladder: steps, crop side, crops per step and network size.

    ``name`` is the canonical spec (``"8000x64"``; ``b`` and ``:size`` only where they differ
    from the profile's defaults), ``label`` the words for tables and figures.
    """

    spec: str
    steps: int
    patch: int
    batch_size: int
    model_size: str
    name: str

    @property
    def label(self) -> str:
        return f"{self.steps} steps x {self.batch_size} crops of {self.patch} px" + (
            f", {self.model_size} network" if ":" in self.name else "")

    def fields(self) -> dict[str, Any]:
        """The :class:`ExperimentConfig` fields this rung sets."""
        return {"steps": self.steps, "patch": self.patch, "batch_size": self.batch_size,
                "model_size": self.model_size}


def rung(prof: Profile, spec: str) -> Rung:
    """Parse one ladder rung of ``prof`` (``"STEPSxPATCH[bBATCH][:SIZE]"``).

    Without ``b`` the rung sees the profile's pixels per step: ``round(batch_size x (patch /
    rung patch)**2)`` crops, at least 1 (the quick profile's 16 crops of 32 px become 4 of
    64 px), so that a rung's crop side changes the context a network sees, not how much of
    the training images it sees per step. Without ``:SIZE`` the network is the profile's.

    Raises:
        ValueError: naming the rung, for a malformed spec, steps or batch < 1, a crop side
            larger than the profile's tile, or a size the profile's architectures lack.
    """
    if not isinstance(spec, str):
        raise ValueError(f"ladder rung must be a string like '2000x64', got {spec!r}")
    m = _RUNG.match(spec.strip())
    if m is None:
        raise ValueError(f"ladder rung {spec!r}: expected STEPSxPATCH with optional bBATCH and :SIZE, "
                         "e.g. '2000x64', '500x32b16' or '4000x64b32:paper'")
    steps, patch = int(m.group(1)), int(m.group(2))
    own = round(prof.batch_size * (prof.patch / patch) ** 2) if patch else 0
    batch = int(m.group(3)) if m.group(3) else max(1, own)
    size = m.group(4) or prof.model_size
    if steps < 1 or patch < 1 or batch < 1:
        raise ValueError(f"ladder rung {spec!r}: steps, crop side and batch must be >= 1")
    if patch > prof.tile:
        raise ValueError(f"ladder rung {spec!r}: crop side {patch} px is larger than the profile's tile "
                         f"({prof.tile} px)")
    for a in prof.archs or (prof.arch,):
        if size not in models.MODEL_SIZES.get(a, {}):
            raise ValueError(f"ladder rung {spec!r}: architecture {a!r} has no size {size!r}; valid: "
                             f"{', '.join(models.MODEL_SIZES.get(a, {}))}")
    name = f"{steps}x{patch}" + (f"b{batch}" if batch != max(1, own) else "") + (
        f":{size}" if size != prof.model_size else "")
    return Rung(spec=spec.strip(), steps=steps, patch=patch, batch_size=batch, model_size=size, name=name)


# --------------------------------------------------------------------------- coercion

_INT = {"steps", "batch_size", "patch", "tile", "n_test", "test_size", "category_n", "dynamics_points",
        "workers", "ckpt_every", "eval_seed", "warmup_steps"}
_FLOAT = {"lr"}
_BOOL = {"gray", "ablation"}
_STR = {"name", "arch", "model_size", "background", "train_rain", "predict", "precision"}
_INT_TUPLE = {"seeds", "n_list"}
_STR_TUPLE = {"eval_presets", "archs", "ladder"}


def _literal(name: str, text: str) -> Any:
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError) as e:
        raise ValueError(f"{name}: cannot parse {text!r}") from e


def _to_int(name: str, v: Any) -> int:
    if isinstance(v, str):
        v = _literal(name, v)
    if isinstance(v, bool):
        raise ValueError(f"{name} must be an integer, got {v!r}")
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real) and math.isfinite(v) and float(v).is_integer():
        return int(v)
    raise ValueError(f"{name} must be an integer, got {v!r}")


def _to_seq(name: str, v: Any) -> list[Any]:
    if isinstance(v, str):
        text = v.strip()
        if text[:1] in "[(":
            v = _literal(name, text)
        else:  # "4, 16, 64" or "small,dense"
            v = [t.strip() for t in text.split(",") if t.strip()]
    if isinstance(v, (list, tuple, range)):
        return list(v)
    if isinstance(v, Iterable) and not isinstance(v, (str, bytes, Mapping)):
        return list(v)
    return [v]


def _coerce(name: str, v: Any) -> Any:
    """Coerce a field value (e.g. a string from papermill or the command line) to its type."""
    if name in _INT:
        return _to_int(name, v)
    if name in _FLOAT:
        if isinstance(v, str):
            v = _literal(name, v)
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number, got {v!r}")
        return float(v)
    if name in _BOOL:
        if isinstance(v, str):
            low = v.strip().lower()
            table = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
            if low not in table:
                raise ValueError(f"{name} must be a bool (true/false), got {v!r}")
            return table[low]
        if isinstance(v, bool) or (isinstance(v, numbers.Integral) and v in (0, 1)):
            return bool(v)
        raise ValueError(f"{name} must be a bool, got {v!r}")
    if name in _STR:
        if not isinstance(v, str):
            raise ValueError(f"{name} must be a string, got {v!r}")
        return v.strip()
    if name in _INT_TUPLE:
        return tuple(_to_int(f"{name}[{i}]", x) for i, x in enumerate(_to_seq(name, v)))
    if name in _STR_TUPLE:
        items = _to_seq(name, v)
        if name == "ladder" and items == ["none"]:  # a notebook's LADDER = ["none"]: no ladder
            return ()
        for i, x in enumerate(items):
            if not isinstance(x, str):
                raise ValueError(f"{name}[{i}] must be a string, got {x!r}")
        return tuple(x.strip() for x in items)
    if name == "model_kwargs":
        if isinstance(v, str):
            v = _literal(name, v)
        return _normalise_kwargs(v)
    raise ValueError(f"unknown Profile field {name!r}")  # pragma: no cover - fields are enumerated above


def _check_names(overrides: Mapping[str, Any]) -> None:
    names = [f.name for f in dataclasses.fields(Profile)]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ValueError(f"unknown profile override(s) {unknown}; valid fields: {', '.join(names)}")


def resolve(profile: str | Profile, **overrides: Any) -> Profile:
    """The named profile with ``overrides`` applied (coerced from strings where needed).

    Args:
        profile: ``"smoke"``, ``"quick"``, ``"paper"`` (or a Profile, returned with overrides).
        **overrides: Profile fields, e.g. ``steps=200`` or ``n_list="[4, 16]"``.

    Raises:
        ValueError: unknown profile (lists the names), unknown override (names it), or a
            value that cannot be coerced / is invalid (names the field).
    """
    if isinstance(profile, Profile):
        base = profile
    elif isinstance(profile, str) and profile.strip().lower() in PROFILES:
        base = PROFILES[profile.strip().lower()]
    else:
        raise ValueError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    if not overrides:
        return base
    return base.replace(**overrides)


def experiment(profile: str | Profile, **fields: Any) -> ExperimentConfig:
    """The base :class:`ExperimentConfig` of a profile, with ``fields`` overriding config fields.

    The base uses the profile's model, training, evaluation and checkpoint sizes,
    ``n_train = profile.category_n`` and ``seed = profile.seeds[0]``.

    Raises:
        ValueError: unknown profile, or an unknown/invalid config field (named).
    """
    prof = resolve(profile) if not isinstance(profile, Profile) else profile
    base = {
        "arch": prof.arch,
        "model_size": prof.model_size,
        "model_kwargs": prof.model_kwargs,
        "predict": prof.predict,
        "background": prof.background,
        "n_train": prof.category_n,
        "tile": prof.tile,
        "gray": prof.gray,
        "train_rain": prof.train_rain,
        "steps": prof.steps,
        "batch_size": prof.batch_size,
        "patch": prof.patch,
        "lr": prof.lr,
        "seed": prof.seeds[0],
        "eval_presets": prof.eval_presets,
        "n_test": prof.n_test,
        "test_size": prof.test_size,
        "eval_seed": prof.eval_seed,
        "precision": prof.precision,
    }
    names = {f.name for f in dataclasses.fields(ExperimentConfig)}
    unknown = sorted(set(fields) - names)
    if unknown:
        raise ValueError(f"unknown ExperimentConfig field(s) {unknown}; valid: {sorted(names)}")
    base.update(fields)
    # checkpoint interval and warm-up follow the final step count (which ``fields`` may override)
    steps = base["steps"]
    if "ckpt_every" not in fields and isinstance(steps, int) and steps >= 1:
        base["ckpt_every"] = min(prof.ckpt_every, steps)
    if "warmup_steps" not in fields and isinstance(steps, int) and steps >= 1:
        base["warmup_steps"] = min(prof.warmup_steps, steps // 4)
    else:
        base.setdefault("warmup_steps", 0)
    base.setdefault("ckpt_every", min(prof.ckpt_every, max(int(steps) if isinstance(steps, int) else 1, 1)))
    return ExperimentConfig(**base)


def grid(profile: str | Profile, **axes: Any) -> list[ExperimentConfig]:
    """Configs over the Cartesian product of ``axes`` (in argument order), on the profile's base.

    A list/tuple/range value is an axis; any other value (a string, a number, None) is
    fixed. E.g. ``grid(p, background="natural", n_train=p.n_list, seed=p.seeds)`` gives
    ``len(p.n_list) * len(p.seeds)`` configs, n_train varying slowest.
    """
    prof = resolve(profile) if not isinstance(profile, Profile) else profile
    fixed = {k: v for k, v in axes.items() if not isinstance(v, (list, tuple, range))}
    varying = {k: list(v) for k, v in axes.items() if isinstance(v, (list, tuple, range))}
    if "eval_presets" in varying:  # a tuple of presets is a value, not an axis
        fixed["eval_presets"] = tuple(varying.pop("eval_presets"))
    if "model_kwargs" in varying:
        fixed["model_kwargs"] = varying.pop("model_kwargs")
    for k, v in varying.items():
        if not v:
            raise ValueError(f"grid axis {k!r} is empty")
    out = []
    for combo in itertools.product(*varying.values()):
        out.append(experiment(prof, **fixed, **dict(zip(varying, combo))))
    return out


# --------------------------------------------------------------------------- the profiles

_QUICK = Profile(
    name="quick",
    arch="resnet",
    model_size="quick",  # 8 conv layers x 32 channels
    steps=500,
    batch_size=16,
    patch=32,
    tile=64,
    lr=1e-3,
    n_test=8,
    test_size=64,
    seeds=tuple(range(8)),  # >= 8 seeds per verdict (issue 12: 80% power needs 7 for notebook 01)
    n_list=(4, 16, 64, 256),
    # notebook 01: the ResNet at every N (32 models) and the two cheapest rungs of the budget ladder (the first is
    # those models' own budget, the second 16 more); the UNet arm and the predict-background ablation are the
    # long profile's (the 20-minute budget)
    archs=("resnet",),
    ablation=False,
    ladder=("500x32", "500x64"),
    category_n=64,
    dynamics_points=10,
    # bench --workers-report on 2 cores, bf16: 2 processes x 1 thread made 114.0 steps/s, 1 x 2 threads
    # 76.5 (28.3 vs 2.6 while other jobs shared the cores)
    workers=2,
    ckpt_every=100,
    warmup_steps=100,
)

PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        arch="resnet",
        # 6 conv layers x 16 channels (ResNet), 2 levels from 16 channels (UNet, its quick size): 150 steps take about a
        # second. Sized so that most smoke models learn their training rain (issue 23: at 30 steps and lr 1e-3,
        # 11 of notebook 01's 12 stalled and every statistic was NaN): at 150 steps, lr 3e-3, warm-up 15, 23 of
        # 24 of its models learn (dead leaves and natural photos, 2026-12-06); numbers, still meaningless
        model_size="tiny",
        steps=150,
        batch_size=4,
        patch=24,
        tile=32,
        lr=3e-3,
        n_test=4,
        test_size=48,
        seeds=(0, 1),
        n_list=(2, 8),
        archs=("resnet", "unet"),  # two, so that the smoke run exercises the per-architecture verdicts
        ablation=True,
        ladder=("150x24", "300x32"),  # two rungs, so that the smoke run exercises the ladder
        category_n=8,
        dynamics_points=3,
        workers=1,
        ckpt_every=50,
        warmup_steps=15,
    ),
    "quick": _QUICK,
    # the quick profile's sizes, with notebook 01's secondary arms (UNet, predict-background ablation) and the CPU
    # budget ladder at the ends N = 4 and 256, 8 seeds: steps {500, 2000, 8000} x 32 px crops and {500, 2000} x 64 px
    # (64 more models than quick's). 8000 x 64 px is left out: the 16 models of 2000 x 64 px took 814 s on this 2-core
    # machine (2026-12-06), so its 16 would take about 54 minutes, past the two-hour budget
    "long": _QUICK.replace(name="long", archs=("resnet", "unet"), ablation=True,
                           ladder=("500x32", "2000x32", "8000x32", "500x64", "2000x64")),
    "paper": Profile(
        name="paper",
        arch="resnet",
        model_size="paper",  # 18 conv layers x 64 channels, residual blocks
        steps=4000,
        batch_size=32,
        patch=64,
        tile=64,
        lr=1e-3,
        n_test=16,  # the shared category sets hold only 17-34 test images of >= 96 px
        test_size=128,
        # 5 seeds: the fewest with which every declared test can reach p < 0.05 (04's sign flips: 2^5);
        # with ResNet + UNet that is 100 models with the real sets (workload.paper_workload), about 49 min
        # on an H200 at the measured 143.5 ResNet steps/s with 8 processes (UNet's cost assumed equal)
        seeds=(0, 1, 2, 3, 4),
        n_list=(4, 16, 64, 256, 1024),
        archs=("resnet", "unet"),  # two of the paper's three; SwinIR (ARCHS=...) did not fit the hour
        # the ladder's gpu rung (python -m derain_utils.lab.ladder gpu) is this profile's own budget
        ladder=("4000x64",),
        category_n=256,
        dynamics_points=20,
        # models trained at once, in processes sharing the GPU: on an H200 (bench --gpu-report), 1/2/4/8
        # processes made 71.7/114.9/136.9/143.5 paper-ResNet steps/s together (bf16, channels-last)
        workers=8,
        ckpt_every=500,
        warmup_steps=400,
    ),
}


def _network(prof: Profile) -> str:
    kw = {**models.model_kwargs(prof.arch, prof.model_size), **dict(prof.model_kwargs)}
    depth, width, block = kw.get("depth"), kw.get("width"), kw.get("block")
    if depth is None or width is None:
        return f"{prof.arch} {prof.model_size}"
    return f"{prof.arch} {prof.model_size} ({depth} conv x {width}{', residual' if block == 'residual' else ''})"


def sizes_markdown(profiles: Mapping[str, Profile] | None = None) -> str:
    """The table of the module docstring: what each profile sets, one row per profile."""
    rows = ["| profile | network | steps (warm-up) | batch x crop | tiles | test images | seeds | N (notebook 01) "
            "| architectures (01) | ablation (01) | budget ladder (01) | N per category (02) | curve points (03) "
            "| workers |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    join = lambda v: ", ".join(str(x) for x in v)  # noqa: E731
    for p in (PROFILES if profiles is None else profiles).values():
        rows.append(f"| {p.name} | {_network(p)} | {p.steps} ({p.warmup_steps}) | {p.batch_size} x {p.patch} px "
                    f"| {p.tile} px | {p.n_test} x {p.test_size} px | {join(p.seeds)} | {join(p.n_list)} "
                    f"| {join(p.archs)} | {'yes' if p.ablation else 'no'} | {join(p.ladder) or 'none'} "
                    f"| {p.category_n} | {p.dynamics_points} | {p.workers} |")
    return "\n".join(rows)


# --------------------------------------------------------------------------- models of a profile in the cache

FREE_FIELDS: tuple[str, ...] = ("background", "n_train", "seed", "train_rain", "eval_background", "eval_presets",
                                "ckpt_every")
"""Config fields :func:`matches_profile` lets vary (what a sweep varies); all others must be the profile's."""


def matches_profile(config: ExperimentConfig, profile: str | Profile,
                    free: Sequence[str] = FREE_FIELDS) -> bool:
    """Was ``config`` trained and evaluated at ``profile``'s sizes (only ``free`` fields may differ)?"""
    if not isinstance(config, ExperimentConfig):
        raise ValueError(f"config must be an ExperimentConfig, got {type(config).__name__}")
    try:
        base = experiment(profile, **{f: getattr(config, f) for f in free})
    except ValueError:
        return False
    return base == config


def cached_results(
    profile: str | Profile,
    *,
    cache_root: str | Path | None = None,
    free: Sequence[str] = FREE_FIELDS,
) -> list[ExperimentResult]:
    """Every verified experiments-cache entry trained at ``profile``'s sizes (:func:`matches_profile`).

    Scans ``<cache_root>/<key>/config.json`` of complete entries (those with a
    ``manifest.json``; folders starting with ``_`` or ``.`` are skipped), keeps the
    configs whose key is still current (an entry of an older ``CACHE_VERSION`` is
    ignored) and that match the profile, and returns their :func:`experiments.load`
    results (which verify checksums), sorted by config name and key.
    """
    root = store.cache_root(cache_root)
    if not root.is_dir():
        return []
    found: list[ExperimentResult] = []
    for entry in sorted(root.iterdir()):
        if not entry.is_dir() or entry.name[:1] in ("_", ".") or not (entry / "manifest.json").is_file():
            continue
        try:
            config, _ = experiments.entry_config(entry)
        except experiments.CacheError:  # not an entry of this code version
            continue
        if config.key() != entry.name or not matches_profile(config, profile, free):
            continue
        res = experiments.load(config, cache_root=root)
        if res is not None:
            found.append(res)
    return sorted(found, key=lambda r: (r.config.name(), r.config.key()))
