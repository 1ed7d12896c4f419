"""The budget ladder: do notebook 01's answers depend on the scale the networks are trained at?

Every verdict of the monograph comes from one training budget per profile. The ladder trains the two
ends of notebook 01's set-size sweep (the smallest and largest N, every seed) again at other budgets,
its *rungs* (:func:`derain_utils.lab.profiles.rung`: steps, crop side, crops per step, network size;
:func:`derain_utils.lab.designs.budget_ladder` builds the configs), and measures the same per-model
outcomes at each rung on every test set:

* ``synthetic``: the held-out images under the unseen rain presets, pooled with equal weights
  (notebook 01's own test inputs; the frontier of the fixed filters on them);
* each paired development set found (:data:`PAIRED_SETS`: Rain100H and the real SPA-Data pairs), at
  the *matched* scale of notebook 04 (:func:`derain_utils.measure.rainmeter.match_scale`), pooled
  over its pairs, against the fixed filters' frontier on the same pairs.

:func:`outcomes` gives one row per (model, test set): raw removal, background PSNR, excess removal
and the stall flag; :func:`derain_utils.stats.questions.ladder_tests` asks both questions of
notebook 01 at each rung (smallest minus largest N, per seed, sign-flip test) and
:func:`derain_utils.book.plotting.ladder` draws the answer against the budget.

The ``gpu`` rung
----------------
:data:`GPU_RUNG` is the paper's scale (ResNet 18 x 64, residual, 4000 steps of 32 crops of 64 px)
on the ``long`` profile's design (N = 4 and 256, 8 seeds, the same test inputs): 16 models, about
7.5 minutes on one H200 at the 143.5 steps/s that 8 processes reached (``bench --gpu-report``). One
command trains them and writes their outcomes (not their weights) to a small CSV that notebook 01's
ladder reads (``LADDER_EXTRA``)::

    python -m derain_utils.lab.ladder gpu --out docs/ladder/gpu_rung.csv --workers 8

The file records the device, the rung and the package versions in its ``device``, ``rung`` and
``versions`` columns. ``--profile smoke --rung 8x24:tiny`` runs the same path at a toy size on a
CPU (the test suite does).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from derain_utils import store
from derain_utils.lab import designs, experiments, profiles, sweeps
from derain_utils.lab.experiments import ExperimentConfig
from derain_utils.measure import baselines, outcome, rainmeter, realscores
from derain_utils.nets import training
from derain_utils.synth import rain, realsets
from derain_utils.synth.data import data_root

__all__ = ["GPU_RUNG", "GPU_PROFILE", "PAIRED_SETS", "SYNTHETIC", "OUTCOME_COLUMNS", "GPU_OUTCOMES", "matched_pairs",
           "pair_rows", "outcomes", "design_of", "read_extra", "extra_rungs", "rung_group", "gpu_rung", "main"]

GPU_RUNG = "4000x64b32:paper"
"""The rung that needs a GPU: the paper profile's network and budget (``4000x64`` there) on the long profile's design."""
GPU_PROFILE = "long"
"""The profile whose design (set sizes, seeds, test inputs) the gpu rung shares, so its outcomes join the CPU ladder."""
PAIRED_SETS: tuple[str, ...] = ("rain100H_dev", "real_rain_paired_dev")
"""The paired development sets the ladder tests on, where the data folder holds them (heavy and real rain)."""
SYNTHETIC = "synthetic"
"""The ``test_set`` name of the held-out images under the unseen presets."""
OUTCOME_COLUMNS: tuple[str, ...] = ("key", "rung", "arch", "model_size", "steps", "patch", "batch_size", "n_train",
                                    "seed", "test_set", "removal", "bg_psnr", "excess_removal", "removal_fit",
                                    "stalled")
"""The columns of :func:`outcomes` (and of the gpu rung's file)."""
GPU_OUTCOMES = Path(__file__).resolve().parents[2] / "docs" / "ladder" / "gpu_rung.csv"
"""Where the repository keeps the gpu rung's outcomes once a device has run it (absent until then)."""


def matched_pairs(
    sets: Sequence[str] = PAIRED_SETS,
    data_dir: str | Path | None = None,
    *,
    train_rain: str = rain.TRAIN_PRESET,
    max_pairs: int | None = None,
) -> dict[str, list[realsets.Pair]]:
    """The pairs of each paired set found, resampled to the training rain's streak width (notebook 04's ``matched``).

    Sets absent from the data folder are left out (with a warning); without a data folder, an empty dict.
    """
    if data_root(data_dir) is None:
        return {}
    found = realsets.paired_sets(list(sets), data_dir, missing="skip")
    if not found:
        return {}
    scales = rainmeter.match_scale(found, train_rain, max_pairs=max_pairs)
    factor = {s: float(f) for s, f in zip(scales["set"], scales["factor"])}
    pairs = realsets.load_pairs(found, max_pairs=max_pairs, factor=factor)
    return {p.name: [q for q in pairs if q.set == p.name] for p in found}


def pair_rows(models: Mapping[str, torch.nn.Module], pairs: Sequence[realsets.Pair], *,
              threads: int | None = 1) -> pd.DataFrame:
    """Every model (key -> network) on whole pairs: one row per (model, pair), ``realscores.score_pairs``."""
    frames = []
    with designs.torch_threads(threads):
        for key, net in models.items():
            out = [training.predict(net, torch.from_numpy(np.ascontiguousarray(p.rainy.transpose(2, 0, 1)[None])))[0]
                   .permute(1, 2, 0).numpy() for p in pairs]
            frames.append(realscores.score_pairs(pairs, out).assign(key=key))
    return pd.concat(frames, ignore_index=True)


def _describe(configs: Sequence[ExperimentConfig], prof: profiles.Profile, rungs: Sequence[str] | None
              ) -> pd.DataFrame:
    return pd.DataFrame([{"key": c.key(), "rung": designs.ladder_rung(c, prof, rungs), "arch": c.arch,
                          "model_size": c.model_size, "steps": c.steps, "patch": c.patch,
                          "batch_size": c.batch_size, "n_train": c.n_train, "seed": c.seed} for c in configs])


def outcomes(
    configs: Sequence[ExperimentConfig],
    prof: profiles.Profile | str,
    *,
    rows: pd.DataFrame,
    frontier: baselines.Frontier,
    ood: Sequence[str],
    fit: pd.DataFrame,
    pairs: Mapping[str, Sequence[realsets.Pair]] | None = None,
    rungs: Sequence[str] | None = None,
    cache_root: str | Path | None = None,
) -> pd.DataFrame:
    """One row per (ladder model, test set): the outcomes both questions are tested on (:data:`OUTCOME_COLUMNS`).

    Args:
        configs: the ladder's models (:func:`designs.budget_ladder`), trained (in the cache).
        prof: the profile whose ladder (or ``rungs``) names their rungs.
        rows: their evaluation rows (``sweeps.sweep``), on the test inputs ``frontier`` was built on.
        frontier: the fixed filters' frontier on those inputs (``baselines.frontier_of``).
        ood: the unseen presets, pooled with equal weights into the ``synthetic`` test set.
        fit: ``sweeps.training_fit`` of the models (the stall rule: it never sees a test image).
        pairs: paired set name -> its pairs (:func:`matched_pairs`); each is a test set.

    Raises:
        ValueError: no configs, or a model without rows or a fit.
    """
    p = profiles.resolve(prof)
    configs = list(configs)
    if not configs:
        raise ValueError("outcomes: no ladder configs")
    info = _describe(configs, p, rungs)
    keys = set(info["key"])
    missing = keys - set(rows["key"])
    if missing:
        raise ValueError(f"outcomes: no evaluation rows for {len(missing)} ladder model(s), e.g. {sorted(missing)[0]}")
    if not {"key", "removal_fit"} <= set(fit.columns):
        raise ValueError("outcomes: fit must be sweeps.training_fit's table (columns key and removal_fit)")
    syn = outcome.pooled(rows[rows["key"].isin(keys)], frontier, list(ood), model_cols=("key",)).reset_index()
    frames = [syn.assign(test_set=SYNTHETIC)]
    if pairs:
        nets = {c.key(): experiments.load(c, cache_root=cache_root).load_model() for c in configs}
        for name, prs in pairs.items():
            prs = list(prs)
            if not prs:
                continue
            scored = pair_rows(nets, prs).assign(preset=name)
            front = baselines.frontier(baselines.baseline_pair_rows(prs, preset=name, whole_image=False),
                                       by=("preset",))
            pooled = outcome.pooled(scored, front, [name], model_cols=("key",), weights="images").reset_index()
            frames.append(pooled.assign(test_set=name))
    out = pd.concat(frames, ignore_index=True)[["key", "test_set", "removal", "bg_psnr", "excess_removal"]]
    f = fit.set_index("key")["removal_fit"]
    if keys - set(f.index):
        raise ValueError(f"outcomes: no training fit for {sorted(keys - set(f.index))[0]} (sweeps.training_fit)")
    out = info.merge(out, on="key").assign(removal_fit=lambda d: d["key"].map(f))
    out["stalled"] = outcome.is_stalled(out["removal_fit"].to_numpy(float))
    return out[list(OUTCOME_COLUMNS)]


def design_of(prof: profiles.Profile, background: str) -> dict[str, Any]:
    """What a rung trained elsewhere must share with a run to join its ladder: backgrounds, rain, test inputs, N."""
    ood = [p for p in prof.eval_presets if rain.ood_fields(prof.train_rain, p)]
    return {"background": background, "train_rain": prof.train_rain, "ood": ",".join(ood), "n_test": prof.n_test,
            "test_size": prof.test_size, "eval_seed": prof.eval_seed,
            "n_list": f"{prof.n_list[0]},{prof.n_list[-1]}"}


def read_extra(path: str | Path, design: Mapping[str, Any]) -> pd.DataFrame:
    """A rung's outcomes file (the gpu rung's), checked against a run's :func:`design_of` before it joins the ladder.

    Raises:
        ValueError: naming the file, when it cannot be read, lacks a column of :data:`OUTCOME_COLUMNS`
            or of the design, or differs from ``design`` (other backgrounds, rain, test inputs or N).
    """
    path = Path(path)
    try:
        t = pd.read_csv(path)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read the rung outcomes ({e})") from e
    lack = [c for c in (*OUTCOME_COLUMNS, *design) if c not in t.columns]
    if lack:
        raise ValueError(f"{path}: not a ladder outcomes file, it lacks column(s) {lack}")
    for k, v in design.items():
        have = set(t[k].astype(str))
        if have != {str(v)}:
            raise ValueError(f"{path}: {k} = {sorted(have)}, this run's is {v!r} (another design: it cannot join)")
    return t


def extra_rungs(choice: str, prof: profiles.Profile, *, background: str) -> pd.DataFrame:
    """The outcomes of rungs trained elsewhere that join a run's ladder (notebook 01's ``LADDER_EXTRA``).

    ``"auto"``: :data:`GPU_OUTCOMES` when it exists and matches the run's design (else nothing, and
    ``attrs["note"]`` says why); ``""`` or ``"none"``: nothing; a path: that file, which must match
    (:func:`read_extra` raises otherwise). Rungs of the run's own ladder are dropped from it.
    """
    empty = pd.DataFrame(columns=list(OUTCOME_COLUMNS))
    if not isinstance(choice, str):
        raise ValueError(f"LADDER_EXTRA must be 'auto', 'none', '' or a path, got {choice!r}")
    if choice.strip().lower() in ("", "none"):
        empty.attrs["note"] = "no rung trained elsewhere (LADDER_EXTRA is empty)"
        return empty
    design = design_of(prof, background)
    if choice.strip().lower() == "auto":
        if not GPU_OUTCOMES.is_file():
            empty.attrs["note"] = (f"the gpu rung ({GPU_RUNG}) has not run: {GPU_OUTCOMES.name} is absent "
                                   "(python -m derain_utils.lab.ladder gpu writes it)")
            return empty
        try:
            t = read_extra(GPU_OUTCOMES, design)
        except ValueError as e:
            empty.attrs["note"] = f"the gpu rung's outcomes do not join this run: {e}"
            return empty
    else:
        t = read_extra(choice, design)
    own = {profiles.rung(prof, spec).name for spec in prof.ladder}
    t = t[~t["rung"].astype(str).isin(own)].reset_index(drop=True)
    t.attrs["note"] = f"joined from elsewhere: rung(s) {sorted(set(t['rung']))} ({len(t)} rows)"
    return t


def rung_group(info: Mapping[str, Any] | pd.Series, base_size: str | None = None) -> str:
    """The line a rung belongs to in the ladder figure: its crops per step and their side, and its network when
    not ``base_size`` (``"4 x 64 px crops"``, ``"32 x 64 px crops, paper network"``)."""
    size = str(info["model_size"])
    return (f"{int(info['batch_size'])} x {int(info['patch'])} px crops"
            + ("" if base_size in (None, size) else f", {size} network"))


def gpu_rung(
    out: str | Path,
    *,
    profile: str = GPU_PROFILE,
    rung: str = GPU_RUNG,
    seeds: Sequence[int] | None = None,
    background: str = "auto",
    data_dir: str | Path | None = None,
    workers: int = 8,
    device: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Train one rung's models (default the gpu rung) and write their outcomes to ``out`` (CSV, no weights).

    Returns the table written: :data:`OUTCOME_COLUMNS` plus the design columns :func:`read_extra`
    checks, ``device``, ``versions`` and ``wall_s``.
    """
    t0 = time.perf_counter()
    over = {"seeds": list(seeds)} if seeds else {}
    prof = profiles.resolve(profile, **over).replace(ladder=(rung,))
    bg = designs.training_background(background, data_dir)
    train_rain = prof.train_rain
    ood = [p for p in prof.eval_presets if rain.ood_fields(train_rain, p)]
    configs = designs.budget_ladder(prof, bg)
    rows = sweeps.sweep(configs, data_dir=data_dir, workers=workers, device=device, progress=progress)
    held = experiments.held_out(configs[0], data_dir=data_dir)
    table = outcomes(configs, prof, rows=rows, frontier=baselines.frontier_of(held.eval_set), ood=ood,
                     fit=sweeps.training_fit(configs, data_dir=data_dir),
                     pairs=matched_pairs(data_dir=data_dir, train_rain=train_rain))
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(0) if dev.startswith("cuda") and torch.cuda.is_available() else dev
    versions = json.dumps({k: v for k, v in store.provenance()["packages"].items() if k in ("torch", "derain_utils")})
    table = table.assign(**design_of(prof, bg), device=name, versions=versions,
                         wall_s=round(time.perf_counter() - t0, 1))
    store.write_text(Path(out), table.to_csv(index=False))
    return table


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m derain_utils.lab.ladder", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    g = sub.add_parser("gpu", help="train one rung (default the gpu rung) and write its models' outcomes")
    g.add_argument("--out", required=True, help="CSV file for the outcomes (no weights are written there)")
    g.add_argument("--profile", default=GPU_PROFILE, help=f"profile whose design it shares (default {GPU_PROFILE})")
    g.add_argument("--rung", default=GPU_RUNG, help=f"STEPSxPATCH[bBATCH][:SIZE] (default {GPU_RUNG})")
    g.add_argument("--seeds", type=int, nargs="*", default=None, help="training seeds (default the profile's)")
    g.add_argument("--background", default="auto", help="training backgrounds (default auto, as notebook 01)")
    g.add_argument("--data", default=None, help="data folder (default $DERAIN_DATA)")
    g.add_argument("--workers", type=int, default=8, help="models trained at once (default 8)")
    g.add_argument("--device", default=None, help="cuda, cpu, ... (default cuda > mps > cpu)")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {args.workers}")
        t = gpu_rung(args.out, profile=args.profile, rung=args.rung, seeds=args.seeds, background=args.background,
                     data_dir=args.data, workers=args.workers, device=args.device)
    except (ValueError, FileNotFoundError) as e:
        print(f"ladder: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ladder: interrupted; finished models are cached, a rerun trains only the rest", file=sys.stderr)
        return 130
    print(f"{t['key'].nunique()} models of rung {args.rung} on {t['device'].iloc[0]} in {t['wall_s'].iloc[0]:.0f} s; "
          f"outcomes on {sorted(set(t['test_set']))} written to {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
