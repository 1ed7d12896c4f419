"""Published deraining networks under the study's lens, and their published table reproduced.

Two uses, one module:

* :func:`reproduce` scores published networks on the development pairs of their own benchmark the way
  their authors did (clamp, 8-bit output, MATLAB Y channel: :func:`~derain_utils.measure.metrics.table_scores`),
  and :func:`reproduction_table` sets the means next to the published full-test-set figures. The 8 pairs
  are a sample of the 100: the table also gives the rainy inputs' PSNR-Y on the same 8 pairs and on all 100
  (:data:`FULL_SET_INPUT_PSNR_Y`), so that a reader sees how much of the gap the sample's difficulty explains.
  ``python -m derain_utils.book.zoo`` prints the table (``docs/published.md`` holds it; a test recomputes it).
* :func:`load_network`, :func:`lens_rows`, :func:`lens_frontier`, :func:`lens_table` and
  :func:`training_rain` ask the
  study's question of published networks in notebook 04: how much unseen rain each removes, beyond what a
  fixed filter as faithful to the background removes. A network is named in a list
  (``"prenet:rain100H"``, or ``"module:callable@weights.pth"`` for any other), so adding one is one line.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from derain_utils.measure import baselines, metrics, outcome, realscores, scoring
from derain_utils.nets import published, training
from derain_utils.stats.bootstrap import mean_ci
from derain_utils.synth import realsets

__all__ = [
    "FULL_SET_INPUT_PSNR_Y",
    "LENS_COLUMNS",
    "REPRODUCED",
    "reproduce",
    "reproduction_table",
    "reproduction_markdown",
    "load_network",
    "derain",
    "lens_rows",
    "lens_frontier",
    "lens_table",
    "lens_markdown",
    "training_rain",
    "main",
]

FULL_SET_INPUT_PSNR_Y: dict[str, tuple[str, float]] = {
    "rain100L_dev": ("Rain100L", 26.90),
    "rain100H_dev": ("Rain100H", 13.55),
}
"""Development pair set -> (its benchmark, the rainy inputs' PSNR-Y on all 100 test pairs), as measured on the
whole test sets by the data's curators (``PROVENANCE.md`` of each set; they match the published values)."""

LENS_COLUMNS: tuple[str, ...] = ("network", "kind", "preset", "n_images", "removal", "bg_psnr", "frontier_removal",
                                 "excess_removal")
"""Columns of :func:`lens_table`: one row per network and test set."""

REPRODUCED: tuple[str, ...] = ("prenet:rain100L", "prenet:rain100H")
"""The published networks whose benchmark has development pairs here (Rain1400's test set has none)."""


def _hwc(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.permute(1, 2, 0).numpy())


def derain(model: nn.Module, images: Sequence[np.ndarray], *, device: str | torch.device | None = None
           ) -> list[np.ndarray]:
    """``model`` on whole images of any sizes, one at a time (float32 (H, W, 3) in and out, clamped to [0, 1])."""
    return [_hwc(training.predict(model, torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1)[None])),
                                  device=device)[0]) for im in images]


# --------------------------------------------------------------------------- the published table


def reproduce(
    names: Sequence[str] = REPRODUCED,
    data_dir: str | os.PathLike | None = None,
    *,
    quantize: str = "floor",
    max_pairs: int | None = None,
) -> pd.DataFrame:
    """Each published network on the development pairs of its benchmark, scored as its authors scored it.

    Returns:
        One row per (network, pair): ``network``, ``set``, ``image``, ``psnr_y``/``ssim_y`` (the table
        convention of :func:`metrics.table_scores`), ``input_psnr_y``/``input_ssim_y`` (the rainy input, the
        same way), ``sha256`` of the weights.

    Raises:
        ValueError: a network without development pairs of its benchmark (``dev_pairs`` None).
        FileNotFoundError: weights or pairs missing under the data root (named).
    """
    rows = []
    for name in names:
        model, record = published.load(name, data_dir)
        dev = published.PUBLISHED[name].dev_pairs
        if dev is None:
            raise ValueError(f"{name}: its benchmark has no development pairs here; reproducible: {REPRODUCED}")
        pairs = realsets.load_pairs(dev, data_dir, max_pairs=max_pairs)
        for p, out in zip(pairs, derain(model, [p.rainy for p in pairs])):
            net = metrics.table_scores(p.target, out, quantize=quantize)
            raw = metrics.table_scores(p.target, p.rainy, quantize="round")  # the input is 8-bit already
            rows.append({"network": name, "set": dev, "image": p.name, **net,
                         "input_psnr_y": raw["psnr_y"], "input_ssim_y": raw["ssim_y"], "sha256": record["sha256"]})
    return pd.DataFrame(rows)


def reproduction_table(per_pair: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """Per network: the mean over the pairs with a 95% bootstrap interval, next to the published figures.

    Columns: ``network``, ``benchmark``, ``pairs``, ``psnr_y`` (``_lo``, ``_hi``), ``ssim_y``,
    ``published_psnr_y``, ``published_ssim_y``, ``gap_db`` (here minus published), ``input_psnr_y`` (these
    pairs), ``full_input_psnr_y`` (all 100), ``gain_db`` (output minus input PSNR-Y on these pairs) and
    ``published_gain_db`` (published output minus the full set's input PSNR-Y).
    """
    rows = []
    for name, g in per_pair.groupby("network", sort=False):
        bench, full_input = FULL_SET_INPUT_PSNR_Y.get(str(g["set"].iloc[0]), ("", np.nan))
        pub_psnr, pub_ssim = published.PUBLISHED[name].published.get(bench, (np.nan, np.nan))
        m, lo, hi = mean_ci(g["psnr_y"], seed=seed)
        inp = float(g["input_psnr_y"].mean())
        rows.append({"network": name, "benchmark": bench, "pairs": len(g), "psnr_y": m, "psnr_y_lo": lo,
                     "psnr_y_hi": hi, "ssim_y": float(g["ssim_y"].mean()), "published_psnr_y": pub_psnr,
                     "published_ssim_y": pub_ssim, "gap_db": m - pub_psnr, "input_psnr_y": inp,
                     "full_input_psnr_y": full_input, "gain_db": m - inp, "published_gain_db": pub_psnr - full_input})
    return pd.DataFrame(rows)


def reproduction_markdown(table: pd.DataFrame) -> str:
    """The table of :func:`reproduction_table` as markdown (the one in ``docs/published.md``)."""
    head = ("| network | benchmark | pairs | PSNR-Y here [95% CI] | SSIM-Y here | published (100 pairs) | "
            "input PSNR-Y here / all 100 | gain here / published |")
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        lines.append(f"| `{r.network}` | {r.benchmark} | {r.pairs} | {r.psnr_y:.2f} [{r.psnr_y_lo:.2f}, "
                     f"{r.psnr_y_hi:.2f}] | {r.ssim_y:.3f} | {r.published_psnr_y:.2f} / {r.published_ssim_y:.3f} | "
                     f"{r.input_psnr_y:.2f} / {r.full_input_psnr_y:.2f} | {r.gain_db:+.2f} / "
                     f"{r.published_gain_db:+.2f} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the study's lens


def load_network(spec: str, data_dir: str | os.PathLike | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """A published network by name (:data:`published.PUBLISHED`) or ``module:callable@weights``.

    Returns ``(model, record)`` (the record: where the weights came from, their sha256, what it was
    trained on where known). Errors name the spec and the missing file.
    """
    if published.is_published(spec):
        return published.load(spec, data_dir)
    target, weights = published.split_spec(spec)
    if weights is None:
        raise ValueError(f"published network {spec!r}: not a known name ({', '.join(published.PUBLISHED)}) and "
                         "no weights given; use 'module:callable@path/to/weights'")
    model, _ = published.import_model(target)
    return model.eval(), {"name": spec, **published.load_weights(model, weights)}


def lens_rows(
    model: nn.Module,
    network: str,
    *,
    eval_set: Mapping[str, scoring.EvalInputs],
    names: Sequence[str],
    pairs: Sequence[realsets.Pair] = (),
    perspective: Sequence[realsets.Pair] = (),
    perspective_masks: Sequence[np.ndarray] | None = None,
) -> pd.DataFrame:
    """One published network on a notebook's test inputs: one row per (test set, image).

    ``eval_set``/``names``: the held-out synthetic presets (:func:`scoring.evaluate`, decoupled scores, no
    training rain: every preset is unseen by a published network); ``pairs``: whole paired images, the rain
    mask estimated from ``rainy - target``; ``perspective``: synthetic perspective rain with its true masks.
    Columns: ``network``, ``kind`` (``synthetic`` / ``paired`` / ``perspective``), ``preset`` (the preset or
    the set), ``image``, ``removal``, ``bg_psnr`` and whole-image ``psnr`` (paired and perspective rows).
    Both are scored as :mod:`derain_utils.measure.baselines` scores the fixed filters, so a frontier applies.
    """
    frames = [scoring.evaluate(model, eval_set, train_spec=None, names=list(names), ssim=False)
              .query("preset != 'clean'").assign(kind="synthetic")]
    if pairs:
        frames.append(realscores.score_pairs(pairs, derain(model, [p.rainy for p in pairs]))
                      .assign(kind="paired", preset=lambda d: d["set"]))
    if perspective:
        masks = list(perspective_masks) if perspective_masks is not None else None
        frames.append(realscores.score_pairs(perspective, derain(model, [p.rainy for p in perspective]), masks=masks)
                      .assign(kind="perspective", preset="perspective"))
    rows = pd.concat(frames, ignore_index=True).assign(network=network)
    lead = ["network", "kind", "preset", "image", "removal", "bg_psnr"]
    return rows[lead + [c for c in ("psnr",) if c in rows.columns]]


def lens_frontier(eval_set: Mapping[str, scoring.EvalInputs], pair_rows: pd.DataFrame | None = None
                  ) -> baselines.Frontier:
    """One fixed-filter frontier per test set: the presets of ``eval_set`` and the sets of ``pair_rows``
    (:func:`baselines.baseline_pair_rows` of the same pairs, ``preset`` naming the set), grouped by ``preset``."""
    rows = [baselines.baseline_rows(eval_set, baselines.DEFAULT_BASELINES, whole_image=False, clean=False,
                                    train_spec=None)]
    if pair_rows is not None and len(pair_rows):
        rows.append(pair_rows)
    return baselines.frontier(pd.concat(rows, ignore_index=True), by="preset")


def lens_table(rows: pd.DataFrame, frontier: baselines.Frontier) -> pd.DataFrame:
    """Per network and test set: removal, background PSNR, the frontier's removal there and the excess over it
    (:func:`outcome.model_table` with the network as the model)."""
    return outcome.model_table(rows, frontier, model_cols=("network", "kind"))[list(LENS_COLUMNS)]


def lens_markdown(table: pd.DataFrame) -> str:
    """:func:`lens_table` as markdown: one row per network, one column per test set, ``removal (excess)``; the
    synthetic presets pooled with equal weights (their mean) in the first column."""
    syn = table[table["kind"] == "synthetic"].groupby("network", sort=False)[["removal", "excess_removal"]].mean()
    sets = list(dict.fromkeys(table.loc[table["kind"] != "synthetic", "preset"]))
    cell = lambda r: f"{r['removal']:.2f} ({r['excess_removal']:+.2f})"  # noqa: E731
    lines = ["| network | training pairs / backgrounds | synthetic presets (mean) | " + " | ".join(sets) + " |",
             "|---|---|---|" + "---|" * len(sets)]
    for name in dict.fromkeys(table["network"]):
        net = published.PUBLISHED.get(name)
        size = f"{net.train_pairs:,} / {net.train_backgrounds:,}" if net else "unknown"
        rows = table[table["network"] == name].set_index("preset")
        lines.append(f"| `{name}` | {size} | {cell(syn.loc[name]) if name in syn.index else '–'} | " + " | ".join(
            cell(rows.loc[s]) if s in rows.index else "–" for s in sets) + " |")
    return "\n".join(lines)


def training_rain(networks: Sequence[str], placed: pd.DataFrame | None) -> pd.DataFrame:
    """What each published network was trained on, and its training rain as measured here where possible.

    ``placed``: :func:`derain_utils.measure.rainmeter.rain_placement` of the development pairs (a row per set).
    A network whose benchmark has development pairs gets that set's measured rain (``measured_on``); the
    others (``module:callable`` networks, Rain1400) say it was not measured.
    """
    rows = []
    have = set(placed["set"]) if placed is not None and len(placed) else set()
    for spec in networks:
        net = published.PUBLISHED.get(spec)
        row: dict[str, Any] = {"network": spec, "trained_on": net.trained_on if net else "unknown",
                               "pairs": net.train_pairs if net else np.nan,
                               "backgrounds": net.train_backgrounds if net else np.nan,
                               "rain_as_published": net.rain if net else "unknown"}
        dev = net.dev_pairs if net else None
        if dev in have:
            rec = placed[placed["set"] == dev].iloc[0].to_dict()
            row.update(measured_on=f"{dev} (development pairs of the same benchmark; test rain, not the "
                                   "training files)",
                       **{k: v for k, v in rec.items() if k not in ("set", "kind")})
        else:
            row["measured_on"] = ("not measured: no development pairs of its benchmark here" if net else
                                  "not measured: unknown training set")
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m derain_utils.book.zoo [--data-dir DIR]``: the reproduction table, in markdown."""
    ap = argparse.ArgumentParser(prog="python -m derain_utils.book.zoo",
                                 description="Score the published networks on their benchmark's development pairs "
                                             "as their authors did, next to the published figures.")
    ap.add_argument("--data-dir", default=None, help="data root (default $DERAIN_DATA)")
    args = ap.parse_args(argv)
    try:
        per_pair = reproduce(data_dir=args.data_dir)
    except (ValueError, OSError) as err:
        print(f"{ap.prog}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    print(reproduction_markdown(reproduction_table(per_pair)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
