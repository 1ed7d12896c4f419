"""The experimental designs of the notebooks: which models each one trains, on which test inputs.

A notebook's grid of configurations lives here, one function per notebook, so that the
notebook and :func:`derain_utils.lab.workload.paper_workload` count the same models, and so that
notebooks that share models build them with the same configurations (hence the same cache
keys) and each model is trained once.

Notebooks 02 and 03: one set of models, read twice
--------------------------------------------------
Notebook 02 trains one model per (background category, seed) at the profile's
``category_n`` tiles: the real categories found in the data folder (:data:`REAL`) and the
procedural rungs of :data:`LADDER_RUNGS`, plus a negative control (the most complex
category trained on the wide ``mixed`` rain). Notebook 03 needs the *learning curves* of
some of the same models: those of its declared contrast (:data:`REAL_CONTRAST`, faces
against urban and manga) and of the procedural illustration (:data:`PROCEDURAL_CONTRAST`,
blobs against noise). Those models are curve runs (``experiments.run(config,
curve_points=P)``, bitwise the same network as a plain run, cached under their curve key);
:func:`category_complexity` lists them as ``curve_configs`` and :func:`decoupled_metrics`
lists the same configs, so 03 reads their curves from the cache that 02 filled. The other
models of 02 (the natural scenes, the other rungs, the control) are plain runs: the natural
ones are notebook 01's models at the same size when 01 trains on natural scenes.

Notebook 02's dose-response (:data:`MIX_PROPORTIONS`, :data:`REAL_MIXES`) adds training sets
that mix the simplest category with a complex one (``backgrounds.mix_name``): the models of
the proportions strictly between 0 and 1 are ``mix_configs``; the ends are the pure
categories' models above, so they are not trained twice.

Budget (quick profile, measured on 2 busy cores for this module, see docs/results.md): one
model trains and evaluates in about 10 s on one thread whether or not it is scored at
the 10 curve points, and a sweep with 2 workers makes about 12 models a minute; 4 real
categories + 4 rungs + the control at 8 seeds are 72 models, about 6 minutes. The
dose-response's 2 mixes x 3 proportions x 8 seeds are 48 more: 500 s, trained and scored,
in one quick run on the same 2 busy cores (2026-12-06).

Notebooks 01 and 04
-------------------
Notebook 01 trains every architecture of the profile's ``archs`` at every N of ``n_list``
and every seed, predicting the rain layer (the paper's networks), plus the
predict-background ablation of the first architecture at the smallest and largest N.
Notebook 04 applies notebook 01's primary networks at the two ends of the sweep: the
same configs, so it trains nothing when 01 ran first with the same profile.

:data:`NOTEBOOK_DESIGNS` maps each notebook to ``design(profile, training background)``
-> configs, the list :func:`derain_utils.lab.workload.paper_workload` counts.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from derain_utils.lab import experiments, profiles, sweeps
from derain_utils.lab.experiments import ExperimentConfig, ExperimentResult
from derain_utils.measure import baselines, scoring
from derain_utils.nets import models
from derain_utils.synth import backgrounds, procedural

__all__ = [
    "NOTEBOOK_DESIGNS",
    "training_background",
    "set_size",
    "set_size_arm",
    "ablation_sizes",
    "budget_ladder",
    "ladder_rung",
    "real_rain",
    "REAL",
    "LADDER_RUNGS",
    "CONTROL_RAIN",
    "REAL_CONTRAST",
    "PROCEDURAL_CONTRAST",
    "MIX_PROPORTIONS",
    "REAL_MIXES",
    "PROCEDURAL_MIXES",
    "CategoryDesign",
    "ContrastDesign",
    "category_complexity",
    "decoupled_metrics",
    "Trained",
    "train",
    "training_tiles",
    "common_test",
    "torch_threads",
    "score_on",
    "test_frontier",
    "own_test_frontier",
    "RESULT_COLUMNS",
    "results_table",
]

# =========================================================================== 01 and 04


def _background(background: str) -> str:
    if not isinstance(background, str) or not background.strip():
        raise ValueError(f"background must be a non-empty source name, got {background!r}")
    return background


# =========================================================================== notebooks 01 and 04 (nb14)


def training_background(choice: str, data_dir: str | Path | None) -> str:
    """The training backgrounds of notebooks 01, 03 and 04, so that they share their models.

    ``"auto"``: natural photos (``bg_natural``) when the data folder holds them, else dead leaves
    (``"deadleaves"``: unlimited distinct procedural images with natural-image statistics, disjoint
    training and test streams; :func:`procedural.dead_leaves`), so that a fresh clone without data
    still trains on as many distinct images as N asks for. The scikit-image photos (``"skimage"``,
    about 550 tiles of 64 px from 10 training photos) are for illustration only. Anything other than
    ``"auto"`` is the source name given.
    """
    if choice != "auto":
        return choice
    return "natural" if "natural" in backgrounds.available_categories(data_dir) else "deadleaves"


def ablation_sizes(prof: profiles.Profile | str) -> tuple[int, ...]:
    """The set sizes of notebook 01's predict-background ablation: the smallest and the largest N.

    Two sizes are enough to show whether the effect between the ends of the sweep depends on what
    the network predicts (a paired test per seed), at half the cost of the whole sweep.
    """
    p = profiles.resolve(prof)
    return tuple(dict.fromkeys((p.n_list[0], p.n_list[-1])))


def set_size(
    prof: profiles.Profile | str,
    background: str,
    *,
    archs: Sequence[str] | None = None,
    ablation: bool | None = None,
) -> list[ExperimentConfig]:
    """Notebook 01's models: every architecture at every N, and the predict-background ablation.

    * For each architecture of ``archs`` (default ``prof.archs``; the first is the primary
      one), one model per (N in ``prof.n_list``, seed in ``prof.seeds``), predicting the rain
      layer (``predict="rain"``, the paper's networks), at the profile's ``model_size``.
    * With ``ablation``, the first architecture predicting the background instead
      (``predict="background"``) at :func:`ablation_sizes` (smallest and largest N), every seed.

    Order: architecture, then N, then seed; the ablation last.

    Args:
        prof: the (resolved) profile, or its name.
        background: the training background source (``notebook.training_background``).
        archs: override of ``prof.archs`` (non-empty, distinct, each with a ``model_size``).
        ablation: add the predict-background models (None: the profile's ``ablation``).
    """
    p = profiles.resolve(prof)
    ablation = p.ablation if ablation is None else ablation
    bg = _background(background)
    archs = tuple(p.archs if archs is None else archs)
    if not archs or len(set(archs)) != len(archs):
        raise ValueError(f"archs must name at least one architecture, each once, got {archs!r}")
    for a in archs:
        if a not in models.MODEL_SIZES or p.model_size not in models.MODEL_SIZES[a]:
            raise ValueError(f"archs: {a!r} is not an architecture with a {p.model_size!r} size; valid: "
                             f"{', '.join(a for a, s in models.MODEL_SIZES.items() if p.model_size in s)}")
    out: list[ExperimentConfig] = []
    for a in archs:
        out += profiles.grid(p, arch=a, predict="rain", background=bg, n_train=list(p.n_list), seed=list(p.seeds))
    if ablation:
        out += profiles.grid(p, arch=archs[0], predict="background", background=bg, n_train=list(ablation_sizes(p)),
                    seed=list(p.seeds))
    return out


def budget_ladder(
    prof: profiles.Profile | str,
    background: str,
    *,
    rungs: Sequence[str] | None = None,
    arch: str | None = None,
) -> list[ExperimentConfig]:
    """Notebook 01's budget ladder: the ends of the set-size sweep trained again at each rung's budget.

    For each rung of ``rungs`` (default ``prof.ladder``; :func:`profiles.rung`), one model per
    (N in the smallest and largest of ``prof.n_list``, seed), of the primary architecture (or
    ``arch``) predicting the rain, with the rung's steps, crop side, crops per step and network
    size. Every rung has its own learning-rate schedule (warm-up, then a cosine decay to 0 at its
    last step): a 2000-step model is not the 2000th step of an 8000-step run. A rung equal to the
    profile's own budget gives notebook 01's models themselves (the same cache keys). Order: rung,
    then N, then seed.
    """
    p = profiles.resolve(prof)
    bg = _background(background)
    a = p.archs[0] if arch is None else arch
    specs = tuple(p.ladder if rungs is None else rungs)
    out: list[ExperimentConfig] = []
    for spec in specs:
        r = profiles.rung(p, spec)
        out += profiles.grid(p, arch=a, predict="rain", background=bg, n_train=list(ablation_sizes(p)),
                             seed=list(p.seeds), **r.fields())
    return out


def ladder_rung(config: ExperimentConfig, prof: profiles.Profile | str, rungs: Sequence[str] | None = None) -> str:
    """The name of the rung of ``prof``'s ladder (or ``rungs``) whose budget trained ``config``.

    Raises:
        ValueError: naming the config, when no rung has its steps, crop side, batch and size.
    """
    p = profiles.resolve(prof)
    for spec in (p.ladder if rungs is None else rungs):
        r = profiles.rung(p, spec)
        if all(getattr(config, k) == v for k, v in r.fields().items()):
            return r.name
    raise ValueError(f"{config.name()}: no rung of the ladder {list(p.ladder if rungs is None else rungs)} "
                     f"trained it ({config.steps} steps, {config.patch} px, batch {config.batch_size}, "
                     f"{config.model_size})")


def set_size_arm(config: ExperimentConfig) -> str:
    """The arm of notebook 01 a model belongs to: its architecture, with ``", predicts background"`` for the ablation."""
    return config.arch if config.predict == "rain" else f"{config.arch}, predicts {config.predict}"


def real_rain(prof: profiles.Profile | str, background: str, *, arch: str | None = None) -> list[ExperimentConfig]:
    """Notebook 04's models: notebook 01's primary networks at its smallest and largest N, every seed.

    They are exactly notebook 01's configs (same cache keys), so notebook 04 trains nothing when 01
    ran first with the same profile. ``arch`` (default ``prof.archs[0]``) picks another architecture
    of notebook 01.
    """
    p = profiles.resolve(prof)
    a = p.archs[0] if arch is None else arch
    lo, hi = p.n_list[0], p.n_list[-1]
    return [c for c in set_size(p, background, archs=[a], ablation=False) if c.n_train in (lo, hi)]


# =========================================================================== 02 and 03
REAL: tuple[str, ...] = tuple(backgrounds.CATEGORIES)
"""The real background categories (faces, natural, urban, manga), in the paper's order simple to complex."""
LADDER_RUNGS: tuple[str, ...] = ("blobs", "shapes", "noise", "texture")
"""The procedural rungs notebook 02 trains (four: the fewest with which the exact category-level test can
reach p < 0.05, 1/24, and only by a perfect ordering; three rungs could never go below 1/6). They include
both backgrounds of :data:`PROCEDURAL_CONTRAST`, so notebook 03 reads their curves."""
CONTROL_RAIN: str = "mixed"
"""Training rain of notebook 02's negative control: the wide range that covers every evaluated preset."""
REAL_CONTRAST: dict[str, tuple[str, ...]] = {"simple": ("faces",), "complex": ("urban", "manga")}
"""Notebook 03's declared contrast on real data: faces against urban and manga pooled."""
PROCEDURAL_CONTRAST: dict[str, tuple[str, ...]] = {"simple": ("blobs",), "complex": ("noise",)}
"""Notebook 03's procedural contrast: the illustration when real data exist, the verdict otherwise."""
MIX_PROPORTIONS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
"""Notebook 02's dose-response: shares of complex tiles in a training set (the ends are the pure categories).
Five levels give 5! = 120 orderings per seed, so the exact within-seed trend test over 8 seeds can reach
p far below 0.05 without a perfect ordering in every seed."""
REAL_MIXES: tuple[tuple[str, str], ...] = (("faces", "urban"), ("faces", "manga"))
"""The dose-response on real data: faces (the simplest category) mixed with each complex one."""
PROCEDURAL_MIXES: tuple[tuple[str, str], ...] = (("blobs", "noise"),)
"""The dose-response without real data: notebook 03's procedural pair."""


def _names(v: Sequence[str] | str | None, name: str, valid: Sequence[str]) -> tuple[str, ...]:
    items = (v,) if isinstance(v, str) else tuple(v or ())
    bad = [x for x in items if x not in valid]
    if bad:
        raise ValueError(f"{name}: unknown background(s) {bad}; valid: {list(valid)}")
    if len(set(items)) != len(items):
        raise ValueError(f"{name} repeats a background: {list(items)}")
    return items


def _real(real: Sequence[str] | str | None, data_dir: str | Path | None) -> tuple[str, ...]:
    """The real categories: those given, or (None) those found in the data folder, in :data:`REAL` order."""
    if real is None:
        return tuple(backgrounds.available_categories(data_dir))
    return _names(real, "real", REAL)


def _points(prof: profiles.Profile, points: int | None) -> int:
    p = prof.dynamics_points if points is None else points
    experiments.curve_steps(prof.steps, p)  # validates against the steps (error names both)
    return int(p)


def _grid(prof: profiles.Profile, cats: Sequence[str], **fixed: Any) -> list[ExperimentConfig]:
    return profiles.grid(prof, background=list(cats), n_train=prof.category_n, seed=list(prof.seeds), **fixed) \
        if cats else []


@dataclasses.dataclass(frozen=True)
class ContrastDesign:
    """Notebook 03: the models of one declared two-group contrast and of the procedural illustration.

    Attributes:
        source: ``"real"`` (the verdict contrasts real categories) or ``"procedural"``
            (no real data: the verdict contrasts procedural backgrounds).
        groups: ``{"simple": backgrounds, "complex": backgrounds}`` of the verdict.
        illustration: the procedural pair shown beside a real verdict (None when the
            verdict itself is procedural).
        curve_points: evaluations during training (``experiments.curve_steps``).
        configs: every model, all of them curve runs.
    """

    source: str
    groups: dict[str, tuple[str, ...]]
    illustration: dict[str, tuple[str, ...]] | None
    curve_points: int
    configs: tuple[ExperimentConfig, ...]

    @property
    def group_of(self) -> dict[str, str]:
        """Background -> ``"simple"`` or ``"complex"`` (verdict and illustration backgrounds)."""
        out = {bg: g for g, bgs in self.groups.items() for bg in bgs}
        for g, bgs in (self.illustration or {}).items():
            out.update({bg: g for bg in bgs})
        return out

    @property
    def verdict_backgrounds(self) -> tuple[str, ...]:
        return (*self.groups["simple"], *self.groups["complex"])

    @property
    def n_models(self) -> int:
        return len({c.key() for c in self.configs})


def decoupled_metrics(
    prof: profiles.Profile | str,
    *,
    real: Sequence[str] | str | None = None,
    data_dir: str | Path | None = None,
    points: int | None = None,
) -> ContrastDesign:
    """The models of notebook 03 (all curve runs at ``category_n`` tiles, one per background and seed).

    With faces and at least one of urban and manga among ``real`` (None: the categories
    in the data folder), the verdict contrasts :data:`REAL_CONTRAST` (the complex
    categories present) and the procedural pair is the illustration; otherwise the
    verdict contrasts :data:`PROCEDURAL_CONTRAST` and there is no illustration.
    """
    prof = profiles.resolve(prof)
    cats = _real(real, data_dir)
    complex_real = tuple(c for c in REAL_CONTRAST["complex"] if c in cats)
    if all(c in cats for c in REAL_CONTRAST["simple"]) and complex_real:
        source, groups = "real", {"simple": REAL_CONTRAST["simple"], "complex": complex_real}
        illustration: dict[str, tuple[str, ...]] | None = dict(PROCEDURAL_CONTRAST)
    else:
        source, groups, illustration = "procedural", dict(PROCEDURAL_CONTRAST), None
    bgs = [*groups["simple"], *groups["complex"], *((*illustration["simple"], *illustration["complex"])
                                                    if illustration else ())]
    return ContrastDesign(source=source, groups=groups, illustration=illustration, curve_points=_points(prof, points),
                          configs=tuple(_grid(prof, bgs)))


@dataclasses.dataclass(frozen=True)
class CategoryDesign:
    """Notebook 02: one model per (category, seed), and the negative control.

    Attributes:
        real: the real categories trained (may be empty: no data folder).
        ladder: the procedural rungs trained.
        verdict_group: ``"real"`` when at least 3 real categories are trained (the
            verdict's categories), else ``"procedural"`` (the ladder carries the verdict).
        control_category: the category of the negative control (None: no control).
        curve_points: evaluations during training of the curve runs.
        curve_configs: models trained as curve runs (notebook 03 reads their curves).
        plain_configs: the other main models.
        control_configs: the control: ``control_category`` trained on :data:`CONTROL_RAIN`.
        mixes: the (simple, complex) pairs of the dose-response (empty: none).
        proportions: the shares of complex tiles of the dose-response, 0 and 1 included.
        mix_configs: the dose-response's new models, at the proportions strictly between 0 and
            1 (``backgrounds.mix_name``); the ends are the pure categories' main models.
    """

    real: tuple[str, ...]
    ladder: tuple[str, ...]
    verdict_group: str
    control_category: str | None
    curve_points: int
    curve_configs: tuple[ExperimentConfig, ...]
    plain_configs: tuple[ExperimentConfig, ...]
    control_configs: tuple[ExperimentConfig, ...]
    mixes: tuple[tuple[str, str], ...] = ()
    proportions: tuple[float, ...] = MIX_PROPORTIONS
    mix_configs: tuple[ExperimentConfig, ...] = ()

    @property
    def categories(self) -> tuple[str, ...]:
        return (*self.real, *self.ladder)

    @property
    def dose_cells(self) -> pd.DataFrame:
        """The dose-response's training sets: one row per (mix, proportion) with its ``background``.

        ``mix`` is ``"<simple>-><complex>"``; at proportion 0 every mix names the same simple category
        (one set of models shared by the mixes), at 1 its complex category.
        """
        rows = [{"mix": f"{a}->{b}", "proportion": float(p),
                 "background": a if p == 0 else b if p == 1 else backgrounds.mix_name(a, b, p)}
                for a, b in self.mixes for p in self.proportions]
        return pd.DataFrame(rows, columns=["mix", "proportion", "background"])

    def dose_rows(self, models: pd.DataFrame) -> pd.DataFrame:
        """Per-model rows of the dose-response: ``models`` (one row per model, with ``background``)
        joined to :attr:`dose_cells`, so a model at proportion 0 appears once per mix."""
        if "background" not in models.columns:
            raise ValueError(f"dose_rows: the table has no 'background' column (columns {list(models.columns)})")
        return self.dose_cells.merge(models, on="background", how="inner")

    def dose_by_seed(self, models: pd.DataFrame, outcomes: Sequence[str]) -> pd.DataFrame:
        """The dose-response's declared unit: per (seed, proportion), the mean of ``outcomes`` over the mixes.

        ``models``: one row per model with ``background``, ``seed``, the ``outcomes`` and
        ``stalled``; stalled models are left out first (a level whose every model stalled is
        missing for that seed). Returns ``seed``, ``proportion``, the outcomes and ``n_models``
        (the models averaged; the shared simple category counts once per mix).
        """
        need = ["seed", "stalled", *outcomes]
        missing = [c for c in need if c not in models.columns]
        if missing:
            raise ValueError(f"dose_by_seed: the table lacks the column(s) {missing}")
        rows = self.dose_rows(models[~models["stalled"].astype(bool)])
        out = rows.groupby(["seed", "proportion"], sort=True)[list(outcomes)].mean()
        return out.assign(n_models=rows.groupby(["seed", "proportion"]).size()).reset_index()

    @property
    def kind(self) -> dict[str, str]:
        """Category -> ``"real"`` or ``"procedural"``."""
        return {**{c: "real" for c in self.real}, **{c: "procedural" for c in self.ladder}}

    @property
    def main_configs(self) -> tuple[ExperimentConfig, ...]:
        """The main models (training rain of the profile), in category order."""
        order = {c: i for i, c in enumerate(self.categories)}
        both = [*self.curve_configs, *self.plain_configs]
        return tuple(sorted(both, key=lambda c: (order[c.background], c.seed)))

    @property
    def configs(self) -> tuple[ExperimentConfig, ...]:
        return (*self.main_configs, *self.control_configs, *self.mix_configs)

    @property
    def n_models(self) -> int:
        return len({c.key() for c in self.configs})


def _mixes(dose: bool | Sequence[tuple[str, str]], group: str, trained: Sequence[str]) -> tuple[tuple[str, str], ...]:
    if dose is False or dose is None:
        return ()
    if dose is True:
        pairs = REAL_MIXES if group == "real" else PROCEDURAL_MIXES
        return tuple((a, b) for a, b in pairs if a in trained and b in trained)
    out = tuple((str(a), str(b)) for a, b in dose)
    bad = [pair for pair in out if pair[0] not in trained or pair[1] not in trained or pair[0] == pair[1]]
    if bad:
        raise ValueError(f"dose: the mixes {bad} must pair two different trained categories of {list(trained)}")
    return out


def category_complexity(
    prof: profiles.Profile | str,
    *,
    real: Sequence[str] | str | None = None,
    ladder: Sequence[str] | str = LADDER_RUNGS,
    control: bool | str = True,
    data_dir: str | Path | None = None,
    points: int | None = None,
    dose: bool | Sequence[tuple[str, str]] = True,
    proportions: Sequence[float] = MIX_PROPORTIONS,
) -> CategoryDesign:
    """The models of notebook 02.

    Args:
        prof: the profile (its ``category_n`` tiles, ``seeds``, sizes).
        real: real categories to train (None: those found in ``data_dir`` /
            ``$DERAIN_DATA``; ``()``: none).
        ladder: procedural rungs of :data:`procedural.LADDER`.
        control: the negative control's category (a trained category), True for the
            last category of the verdict group as listed (the notebook passes the one
            its complexity measure ranks highest; the count is the same), False for none.
        points: curve points (default the profile's ``dynamics_points``).
        dose: the (simple, complex) mixes of the dose-response: True for :data:`REAL_MIXES`
            when the real categories carry the verdict, else :data:`PROCEDURAL_MIXES` (the pairs
            whose two categories are trained); False for none.
        proportions: the shares of complex tiles, ascending, starting at 0 and ending at 1.

    Raises:
        ValueError: unknown or repeated categories or rungs, no category at all, a
            control category that is not trained, a mix of untrained categories, bad proportions.
    """
    prof = profiles.resolve(prof)
    cats = _real(real, data_dir)
    rungs = _names(ladder, "ladder", procedural.LADDER)
    if not cats and not rungs:
        raise ValueError("category_complexity needs at least one real category or ladder rung")
    group = "real" if len(cats) >= 3 else "procedural"
    verdict_cats = cats if group == "real" else rungs
    if len(verdict_cats) < 3:
        raise ValueError(f"a category-level test needs at least 3 categories: real {list(cats)} (3 or more carry the "
                         f"verdict), ladder {list(rungs)}; add ladder rungs or real categories")
    if control is True:
        ctrl: str | None = verdict_cats[-1] if verdict_cats else None
    elif control is False or control is None:
        ctrl = None
    else:
        if control not in (*cats, *rungs):
            raise ValueError(f"control={control!r} is not one of the trained categories {[*cats, *rungs]}")
        ctrl = str(control)
    p = _points(prof, points)
    curved = set(decoupled_metrics(prof, real=cats, points=p).group_of)
    all_cats = [*cats, *rungs]
    mixes = _mixes(dose, group, all_cats)
    props = tuple(float(x) for x in proportions)
    if len(props) < 3 or props[0] != 0.0 or props[-1] != 1.0 or any(b <= a for a, b in zip(props, props[1:])):
        raise ValueError(f"proportions must ascend strictly from 0 to 1 with at least one level between, got {props}")
    mixed = [backgrounds.mix_name(a, b, x) for a, b in mixes for x in props[1:-1]]
    return CategoryDesign(
        real=cats, ladder=rungs, verdict_group=group, control_category=ctrl, curve_points=p,
        curve_configs=tuple(_grid(prof, [c for c in all_cats if c in curved])),
        plain_configs=tuple(_grid(prof, [c for c in all_cats if c not in curved])),
        control_configs=tuple(_grid(prof, [ctrl], train_rain=CONTROL_RAIN)) if ctrl else (),
        mixes=mixes, proportions=props, mix_configs=tuple(_grid(prof, mixed)))


# --------------------------------------------------------------------------- training and reading back
@dataclasses.dataclass
class Trained:
    """The trained models of a design, read back from the cache.

    Attributes:
        results: experiment key -> the verified :class:`ExperimentResult` (a curve run's
            result for a curve config).
        eval: every model's evaluation on its own held-out test inputs (``eval.csv``),
            one table; ``key`` is the experiment key.
        curves: the learning curves of the curve runs (:func:`sweeps.sweep_curves`;
            ``key`` is the curve key, ``experiment_key`` the model's key), or None.
    """

    results: dict[str, ExperimentResult]
    eval: pd.DataFrame
    curves: pd.DataFrame | None


def train(
    curve_configs: Sequence[ExperimentConfig],
    plain_configs: Sequence[ExperimentConfig] = (),
    *,
    points: int,
    data_dir: str | Path | None = None,
    workers: int = 1,
    progress: bool = True,
    cache_root: str | Path | None = None,
) -> Trained:
    """Train what the cache lacks (curve runs with ``points``, plain runs) and read every model back.

    ``cache_root`` as :func:`derain_utils.store.cache_root` (default: ``$DERAIN_RUNS/cache``).
    """
    curve_configs, plain_configs = list(curve_configs), list(plain_configs)
    if not curve_configs and not plain_configs:
        raise ValueError("train: no configs")
    kw = dict(data_dir=data_dir, workers=workers, progress=progress, cache_root=cache_root)
    if plain_configs:  # trains what the cache lacks; the models are read back below
        sweeps.sweep(plain_configs, **kw)
    curves = sweeps.sweep_curves(curve_configs, points, **kw) if curve_configs else None
    results: dict[str, ExperimentResult] = {}
    for c, pts in [*((c, points) for c in curve_configs), *((c, None) for c in plain_configs)]:
        res = experiments.load(c, curve_points=pts, cache_root=cache_root)
        if res is None:  # pragma: no cover - the sweep just verified it
            raise RuntimeError(f"{c.name()} [{c.key()}] is not in the cache after its sweep")
        results[c.key()] = res
    frames = [r.eval for r in results.values()]
    return Trained(results=results, eval=pd.concat(frames, ignore_index=True), curves=curves)


def training_tiles(configs: Sequence[ExperimentConfig], data_dir: str | Path | None = None
                   ) -> dict[str, tuple[list[str], np.ndarray]]:
    """The training tiles the models of each background saw: background -> (tile ids, (n, H, W, C) array).

    The union over the configs (seeds) of each background, each tile once, in order of
    first appearance (real categories draw their tiles from one pool of images, so seeds
    overlap; procedural rungs draw new images per seed).
    """
    out: dict[str, dict[str, np.ndarray]] = {}
    for c in configs:
        split = backgrounds.draw_split(c.background, c.n_train, 0, tile=c.tile, seed=c.seed, gray=c.gray,
                                       data_dir=data_dir)
        tiles = out.setdefault(c.background, {})
        tiles.update({i: t for i, t in zip(split.train_ids, split.train) if i not in tiles})
    return {bg: (list(t), np.stack(list(t.values()))) for bg, t in out.items()}


def common_test(prof: profiles.Profile | str, source: str, data_dir: str | Path | None = None
                ) -> experiments.HeldOut:
    """The common test inputs of notebook 02: the held-out images of ``source`` under the profile's rain.

    Exactly the inputs on which a model trained on ``source`` is evaluated
    (:func:`experiments.held_out`), so such a model scores the same on both.
    """
    return experiments.held_out(profiles.experiment(prof, background=source), data_dir=data_dir)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Torch CPU threads inside the block (None: unchanged). Scoring small models on small images and
    the fixed filters' metrics ran 4-7x slower with 2 threads than with 1 on a busy 2-core machine."""
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def score_on(
    results: Mapping[str, ExperimentResult] | Sequence[ExperimentResult],
    test: experiments.HeldOut,
    *,
    threads: int | None = 1,
) -> pd.DataFrame:
    """Every model of ``results`` scored on the test inputs ``test`` (``scoring.evaluate``, SSIM included).

    Returns one table like the models' own ``eval.csv``: :data:`experiments.CONFIG_COLUMNS`
    (``eval_background`` = ``test.source``) then the evaluation columns. ``threads``: torch
    threads while scoring (1: small models on small images are fastest on one thread).
    """
    items = list(results.values()) if isinstance(results, Mapping) else list(results)
    if not items:
        raise ValueError("score_on: no models")
    frames = []
    with torch_threads(threads):
        for r in items:
            ev = scoring.evaluate(r.load_model(), test.eval_set, train_spec=r.config.train_rain, names=test.names)
            cols = {**experiments.config_columns(r.config), "eval_background": test.source}
            frames.append(ev.assign(**cols)[[*experiments.CONFIG_COLUMNS, *ev.columns]])
    return pd.concat(frames, ignore_index=True)


def test_frontier(
    test: experiments.HeldOut,
    *,
    train_rain: str,
    table: Sequence[baselines.Baseline] = baselines.TABLE_BASELINES,
    threads: int | None = 1,
) -> tuple[baselines.Frontier, pd.DataFrame]:
    """The fixed-filter frontier of one set of test inputs (by preset), and the baselines' rows for results tables.

    The frontier scores every baseline of :data:`baselines.DEFAULT_BASELINES` (decoupled
    scores only); the rows are ``table``'s baselines with every column of
    ``scoring.evaluate`` (``train_rain`` sets ``in_distribution``), on ``test.names``.
    """
    with torch_threads(threads):
        front = baselines.frontier_of(test.eval_set)
        rows = baselines.baseline_rows(test.eval_set, table, names=test.names, train_spec=train_rain)
    return front, rows.assign(eval_background=test.source)


def own_test_frontier(
    configs: Sequence[ExperimentConfig],
    data_dir: str | Path | None = None,
    *,
    table: Sequence[baselines.Baseline] = baselines.TABLE_BASELINES,
    threads: int | None = 1,
) -> tuple[baselines.Frontier, pd.DataFrame]:
    """The fixed-filter frontier of each background's own held-out test inputs, and the baselines' table rows.

    One :func:`experiments.held_out` per background (the test inputs are the same for
    every seed), so the frontier is grouped by ``("background", "preset")``: a model's
    excess removal (:mod:`derain_utils.measure.outcome`) is then measured against the filters
    on its own test images. The second value holds ``table``'s rows (identity, Gaussian
    and median; every column of ``scoring.evaluate``) with ``background`` and
    ``eval_background`` naming the images' category, for results tables.
    """
    seen: dict[str, ExperimentConfig] = {}
    for c in configs:
        seen.setdefault(c.background, c)
    if not seen:
        raise ValueError("own_test_frontier: no configs")
    front, rows = [], []
    with torch_threads(threads):
        for bg, c in seen.items():
            test = experiments.held_out(c, data_dir=data_dir)
            front.append(baselines.baseline_rows(test.eval_set, whole_image=False, clean=False, train_spec=None)
                         .assign(background=bg))
            rows.append(baselines.baseline_rows(test.eval_set, table, names=test.names, train_spec=c.train_rain)
                        .assign(background=bg, eval_background=test.source))
    return (baselines.frontier(pd.concat(front, ignore_index=True), by=("background", "preset")),
            pd.concat(rows, ignore_index=True))


RESULT_COLUMNS: tuple[str, ...] = (
    "key", "name", "background", "kind", "role", "baseline", "seed", "train_rain", "test_set", "eval_background",
    "image", "preset", "in_distribution", "rain_kind", "stalled", "removal", "bg_psnr", "rain_psnr", "psnr", "ssim",
)
"""Columns every :func:`results_table` has (then any per-background columns given)."""


def results_table(
    models: Mapping[str, pd.DataFrame],
    baseline_rows: Mapping[str, pd.DataFrame],
    *,
    kind: Mapping[str, str],
    stalled: Mapping[str, bool],
    train_rain: str,
    per_background: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One tidy results table: trained models and fixed-filter baselines, on each test set.

    Args:
        models: test set name -> evaluation rows of the models (``eval.csv`` /
            :func:`score_on`: config columns and ``scoring.EVAL_COLUMNS``).
        baseline_rows: test set name -> the baselines' rows on the same inputs, with
            ``eval_background`` (:func:`test_frontier`, :func:`own_test_frontier`).
        kind: background -> its kind (e.g. ``"real"``, ``"procedural"``, ``"simple"``).
        stalled: experiment key -> whether the model stalled (:func:`outcome.is_stalled`).
        train_rain: the main training rain (other training rains are ``role = "control"``).
        per_background: optional table indexed by background whose columns (e.g. the
            complexity measures) are added to the model rows.

    Returns:
        :data:`RESULT_COLUMNS` (+ the ``per_background`` columns): ``role`` is ``main``,
        ``control`` or ``baseline``; ``baseline`` names the filter (empty for models);
        ``rain_kind`` is ``in_distribution``, ``ood`` or ``none`` (clean input).
    """
    frames = []
    for test_set, rows in models.items():
        d = rows.assign(test_set=test_set, baseline="", kind=rows["background"].map(kind),
                        role=np.where(rows["train_rain"] == train_rain, "main", "control"),
                        stalled=rows["key"].map(stalled))
        if d["stalled"].isna().any():
            raise ValueError(f"results_table: no stall flag for model(s) {sorted(set(d.loc[d['stalled'].isna(), 'key']))}")
        if per_background is not None:
            d = d.join(per_background, on="background")
        frames.append(d)
    for test_set, rows in baseline_rows.items():
        if "eval_background" not in rows.columns:
            raise ValueError(f"results_table: the baseline rows of {test_set!r} lack 'eval_background' (the source of "
                             "their test images; test_frontier and own_test_frontier add it)")
        frames.append(rows.assign(test_set=test_set, key="", name=rows["baseline"], background="", kind="baseline",
                                  role="baseline", seed=-1, train_rain=train_rain, stalled=False))
    out = pd.concat(frames, ignore_index=True)
    flag = out["in_distribution"].astype("boolean")
    out["rain_kind"] = np.select([out["preset"].isin(["clean", "none"]).to_numpy(), flag.fillna(False).to_numpy(bool)],
                                 ["none", "in_distribution"], "ood")
    extra = [c for c in (per_background.columns if per_background is not None else []) if c not in RESULT_COLUMNS]
    return out[[*RESULT_COLUMNS, *extra]]


# =========================================================================== registry


def _real_for(background: str) -> tuple[str, ...]:
    """The real categories notebooks 02 and 03 train when notebooks 01 and 04 train on ``background``.

    ``notebook.training_background`` picks ``natural`` when the data folder holds the real
    categories and ``deadleaves`` when it does not; the counting in ``bench`` follows that rule.
    """
    return REAL if background in REAL else ()


def _category_configs(prof: profiles.Profile, background: str) -> list[ExperimentConfig]:
    return list(category_complexity(prof, real=_real_for(background)).configs)


def _decoupled_configs(prof: profiles.Profile, background: str) -> list[ExperimentConfig]:
    return list(decoupled_metrics(prof, real=_real_for(background)).configs)


def _set_size_configs(prof: profiles.Profile, background: str) -> list[ExperimentConfig]:
    out = {c.key(): c for c in set_size(prof, background)}
    for c in budget_ladder(prof, background):
        out.setdefault(c.key(), c)
    return list(out.values())


NOTEBOOK_DESIGNS: dict[str, Callable[[profiles.Profile, str], list[ExperimentConfig]]] = {
    "01_set_size": _set_size_configs,
    "02_category_complexity": _category_configs,
    "03_decoupled_metrics": _decoupled_configs,
    "04_real_rain": real_rain,
}
"""Notebook -> design function ``(profile, training background of 01/04) -> configs`` (what it trains)."""
