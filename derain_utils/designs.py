"""Designs: the grid of models each notebook trains, in one place.

A notebook's design (which models are compared with which) is a function of its profile and
its training backgrounds; the notebook calls it, and so does :func:`derain_utils.bench.paper_workload`
(which counts the models a profile trains), so the two cannot drift apart. Every function returns
plain :class:`~derain_utils.experiments.ExperimentConfig` lists built with
:func:`derain_utils.profiles.grid`: the same config, hence the same cache key, wherever it is built,
so a notebook that needs another notebook's models finds them in the cache.

:data:`NOTEBOOK_DESIGNS` maps each notebook to its design function (called as
``design(profile, background)``).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

from derain_utils import models
from derain_utils.experiments import ExperimentConfig
from derain_utils.profiles import Profile, grid, resolve

__all__ = [
    "NOTEBOOK_DESIGNS",
    "set_size",
    "set_size_arm",
    "ablation_sizes",
    "real_rain",
]


def _profile(prof: Profile | str) -> Profile:
    return prof if isinstance(prof, Profile) else resolve(prof)


def _background(background: str) -> str:
    if not isinstance(background, str) or not background.strip():
        raise ValueError(f"background must be a non-empty source name, got {background!r}")
    return background


# =========================================================================== notebooks 01 and 04 (nb14)


def ablation_sizes(prof: Profile | str) -> tuple[int, ...]:
    """The set sizes of notebook 01's predict-background ablation: the smallest and the largest N.

    Two sizes are enough to show whether the effect between the ends of the sweep depends on what
    the network predicts (a paired test per seed), at half the cost of the whole sweep.
    """
    p = _profile(prof)
    return tuple(dict.fromkeys((p.n_list[0], p.n_list[-1])))


def set_size(
    prof: Profile | str,
    background: str,
    *,
    archs: Sequence[str] | None = None,
    ablation: bool = True,
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
        ablation: add the predict-background models.
    """
    p = _profile(prof)
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
        out += grid(p, arch=a, predict="rain", background=bg, n_train=list(p.n_list), seed=list(p.seeds))
    if ablation:
        out += grid(p, arch=archs[0], predict="background", background=bg, n_train=list(ablation_sizes(p)),
                    seed=list(p.seeds))
    return out


def set_size_arm(config: ExperimentConfig) -> str:
    """The arm of notebook 01 a model belongs to: its architecture, with ``", predicts background"`` for the ablation."""
    return config.arch if config.predict == "rain" else f"{config.arch}, predicts {config.predict}"


def real_rain(prof: Profile | str, background: str, *, arch: str | None = None) -> list[ExperimentConfig]:
    """Notebook 04's models: notebook 01's primary networks at its smallest and largest N, every seed.

    They are exactly notebook 01's configs (same cache keys), so notebook 04 trains nothing when 01
    ran first with the same profile. ``arch`` (default ``prof.archs[0]``) picks another architecture
    of notebook 01.
    """
    p = _profile(prof)
    a = p.archs[0] if arch is None else arch
    lo, hi = p.n_list[0], p.n_list[-1]
    return [c for c in set_size(p, background, archs=[a], ablation=False) if c.n_train in (lo, hi)]


# =========================================================================== registry

NOTEBOOK_DESIGNS: dict[str, Callable[[Profile, str], list[ExperimentConfig]]] = {
    "01_set_size": set_size,
    "04_real_rain": real_rain,
}
"""Notebook -> design function ``(profile, training background) -> configs`` (what the notebook trains)."""
