"""One table of every metric the monograph reports: its key, name, unit, direction and meaning.

A metric has ONE key everywhere: the column of a results table (``bg_psnr``), the key of a
verdict field built from it, the axis of a figure. Its words come from here too, so a figure,
a notebook sentence, the report card and the docs call it the same thing::

    >>> METRICS["bg_psnr"].name
    'background PSNR'
    >>> METRICS["bg_psnr"].label
    'background PSNR (dB)'
    >>> METRICS["bg_psnr"].higher_is_better
    True

``higher_is_better`` is None where "better" has no meaning (a property of the input, or a
complexity measure: higher = more complex for all of them). ``bounds`` are the values a
metric can take (PSNRs are capped at ``metrics.PSNR_CAP`` = 100 dB); interval bands are
clipped to them. :func:`markdown` renders the table for docs/method.md (a test keeps that copy
current).
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Metric", "METRICS", "GROUPS", "metric", "label", "name", "title", "bounds", "describe", "markdown"]


@dataclass(frozen=True)
class Metric:
    """One metric.

    Attributes:
        key: its column name everywhere (``"bg_psnr"``).
        name: its name in prose and legends (``"background PSNR"``).
        unit: ``"dB"``, ``"ratio"``, ``"bits/px"``... or ``""``.
        higher_is_better: True, False, or None (no direction: an input property, a complexity measure).
        description: what it measures, one sentence.
        title: panel title of a figure (default: ``name`` capitalised).
        note: reading aid appended to the axis label (e.g. ``"1 = all removed"``).
        bounds: (low, high) values it can take.
        group: ``"evaluation"``, ``"learning curve"``, ``"outcome"``, ``"complexity"`` or ``"real photos"``.
    """

    key: str
    name: str
    unit: str
    higher_is_better: bool | None
    description: str
    title: str = ""
    note: str = ""
    bounds: tuple[float, float] = (-math.inf, math.inf)
    group: str = "evaluation"

    @property
    def label(self) -> str:
        """Axis label: ``name (unit[, note])``."""
        inside = ", ".join(x for x in (self.unit, self.note) if x)
        return f"{self.name} ({inside})" if inside else self.name

    @property
    def header(self) -> str:
        """Table column header: ``name`` with its unit (``"background PSNR (dB)"``; ratios and pure numbers bare)."""
        return f"{self.name} ({self.unit})" if self.unit and self.unit != "ratio" else self.name

    @property
    def heading(self) -> str:
        """Panel title (``title``, else the capitalised name)."""
        return self.title or self.name[:1].upper() + self.name[1:]

    @property
    def direction(self) -> str:
        """``"higher"``, ``"lower"`` or ``""`` (which way is better)."""
        return {True: "higher", False: "lower", None: ""}[self.higher_is_better]


_PSNR = (0.0, 100.0)
_INF = math.inf

_ALL = [
    # evaluation of a model (scoring.EVAL_COLUMNS, report card)
    Metric("removal", "rain removal", "ratio", True,
           "share of the rain's squared error inside the rain mask that the network removed (1 = all, 0 = none: "
           "the identity, < 0 = worse than the input)", "Rain removal (decoupled)", "1 = all removed", (-_INF, 1.0)),
    Metric("bg_psnr", "background PSNR", "dB", True,
           "PSNR outside the rain mask dilated by 1 px: how much the network changed what was never rainy",
           "Background fidelity (decoupled)", bounds=_PSNR),
    Metric("rain_psnr", "rain-region PSNR", "dB", True,
           "PSNR inside the rain mask: how well the pixels under the rain were restored", "Rain region (decoupled)",
           bounds=_PSNR),
    Metric("psnr", "whole-image PSNR", "dB", True,
           "PSNR of the output against the clean background over all pixels and channels, what deraining "
           "tables report", "Whole-image PSNR", bounds=_PSNR),
    Metric("ssim", "whole-image SSIM", "", True, "structural similarity of the output and the clean background",
           "Whole-image SSIM", bounds=(-1.0, 1.0)),
    Metric("psnr_y", "PSNR-Y", "dB", True, "whole-image PSNR on the BT.601 luma (the deraining-table convention)",
           "Whole-image PSNR (Y)", bounds=_PSNR),
    Metric("ssim_y", "SSIM-Y", "", True, "whole-image SSIM on the BT.601 luma", "Whole-image SSIM (Y)",
           bounds=(-1.0, 1.0)),
    Metric("input_psnr", "input PSNR", "dB", None, "PSNR of the rainy input itself (how much rain there is)",
           bounds=_PSNR),
    Metric("input_ssim", "input SSIM", "", None, "SSIM of the rainy input itself", bounds=(-1.0, 1.0)),
    Metric("input_psnr_y", "input PSNR-Y", "dB", None, "PSNR-Y of the rainy input itself", bounds=_PSNR),
    Metric("rain_mse", "rain-region MSE", "", False, "mean squared error inside the rain mask", bounds=(0.0, _INF)),
    Metric("bg_mse", "background MSE", "", False, "mean squared error in the background region",
           bounds=(0.0, _INF)),
    Metric("mask_fraction", "rain-mask fraction", "", None, "share of the pixels the rain mask covers",
           bounds=(0.0, 1.0)),
    Metric("rain_error_share", "rain share of the error", "", None,
           "share of an image's whole-image squared error that lies inside the rain mask", bounds=(0.0, 1.0)),
    # per-model learning curves (dynamics.model_curves)
    Metric("removal_id", "removal of the training rain", "ratio", True,
           "rain removal on the in-distribution presets (the training rain)", "Removal of the training rain",
           bounds=(-_INF, 1.0), group="learning curve"),
    Metric("removal_ood", "removal of unseen rain", "ratio", True,
           "rain removal on the out-of-distribution presets, pooled", "Removal of unseen rain (OOD)",
           bounds=(-_INF, 1.0), group="learning curve"),
    Metric("clean_psnr", "PSNR on a clean input", "dB", True,
           "PSNR of the output for a rain-free input against that input (100 = untouched)",
           "Output on a clean input", bounds=_PSNR, group="learning curve"),
    # per-model outcomes (outcome.outcome_table; the control question's outcome first)
    Metric("excess_removal", "excess removal over the filters", "", True,
           "removal of unseen rain beyond the fixed-filter frontier at the model's background PSNR (the control "
           "question's outcome; 0 = no better than a blur or median as faithful to the background)",
           "Excess removal of unseen rain", bounds=(-_INF, 1.0), group="outcome"),
    Metric("removal_train", "removal of the training rain", "ratio", True,
           "mean removal of the training rain", "Removal of the training rain", bounds=(-_INF, 1.0),
           group="outcome"),
    Metric("removal_ratio", "removal ratio unseen / training", "", True,
           "removal of unseen rain over removal of the training rain (NaN when the latter is <= 0)",
           "Unseen over training removal", group="outcome"),
    Metric("excess_removal_train", "excess removal of the training rain", "", True,
           "removal of the training rain beyond the fixed-filter frontier", bounds=(-_INF, 1.0), group="outcome"),
    # complexity of background sets (complexity.ALL_MEASURES; higher = more complex for all)
    Metric("png_bpp", "PNG bits per pixel", "bits/px", None, "lossless compressed size: information a predictor "
           "cannot remove", group="complexity"),
    Metric("jpeg_bpp", "JPEG bits per pixel (q 75)", "bits/px", None, "lossy compressed size at quality 75",
           group="complexity"),
    Metric("grad_mean", "mean Sobel gradient (luma)", "", None, "mean gradient magnitude of the luma",
           group="complexity"),
    Metric("grad_entropy", "gradient entropy", "bits", None, "entropy of the gradient-magnitude histogram",
           group="complexity"),
    Metric("spectral_slope", "spectral slope (log-log)", "", None, "slope of the log power spectrum against log frequency (closer to 0 = more fine detail)",
           group="complexity"),
    Metric("ae_loss", "autoencoder held-out L1", "", None,
           "held-out reconstruction error of a tiny autoencoder: what a small network finds hard to fit",
           group="complexity"),
    # real photos without ground truth (realscores.PROXY_KEYS)
    Metric("removed_rms", "removed RMS (luma)", "", None, "how much the network changed (0 = nothing)",
           group="real photos"),
    Metric("brightening_share", "brightening share of removed energy", "", None,
           "share of the removed energy that was brightness (rain adds light)", bounds=(0.0, 1.0),
           group="real photos"),
    Metric("coherence", "local orientation coherence", "", None,
           "whether each neighbourhood of the removed layer is one oriented stroke", bounds=(0.0, 1.0),
           group="real photos"),
    Metric("global_coherence", "global orientation coherence", "", None,
           "whether the removed layer is made of strokes of one orientation, as rain in one photo is",
           bounds=(0.0, 1.0), group="real photos"),
    Metric("angle_deg", "dominant streak angle", "deg", None, "dominant orientation of the removed layer",
           group="real photos"),
    Metric("rainfree_change", "RMS change in rain-free pixels", "", False,
           "RMS luma change where the photo has no rain-like structure", bounds=(0.0, _INF), group="real photos"),
    Metric("rainfree_fraction", "rain-free fraction", "", None, "share of the pixels judged free of rain",
           bounds=(0.0, 1.0), group="real photos"),
]

METRICS: dict[str, Metric] = {m.key: m for m in _ALL}
"""Every metric, by key, in table order."""

GROUPS: dict[str, tuple[str, ...]] = {
    g: tuple(m.key for m in _ALL if m.group == g) for g in dict.fromkeys(m.group for m in _ALL)
}
"""Keys of each group, in table order."""


def metric(key: str) -> Metric:
    """The :class:`Metric` of ``key``; an unknown key raises ValueError listing the known ones."""
    try:
        return METRICS[key]
    except KeyError:
        raise ValueError(f"unknown metric {key!r}; known: {', '.join(METRICS)}") from None


def label(key: str) -> str:
    """Axis label of ``key`` (the key itself when it is not in the table)."""
    return METRICS[key].label if key in METRICS else key


def name(key: str) -> str:
    """Prose name of ``key`` (the key itself when it is not in the table)."""
    return METRICS[key].name if key in METRICS else key


def title(key: str) -> str:
    """Panel title of ``key`` (the key itself when it is not in the table)."""
    return METRICS[key].heading if key in METRICS else key


def bounds(key: str) -> tuple[float, float]:
    """Values ``key`` can take ((-inf, inf) when it is not in the table)."""
    return METRICS[key].bounds if key in METRICS else (-math.inf, math.inf)


def describe(key: str, value: float) -> str:
    """``"background PSNR 31.2 dB"``, ``"rain removal 0.42"``: a value with its metric's name and unit."""
    m = metric(key)
    unit = f" {m.unit}" if m.unit and m.unit != "ratio" else ""
    return f"{m.name} {value:.{1 if m.unit == 'dB' else 2}f}{unit}"


def markdown(keys: Iterable[str] | None = None) -> str:
    """A Markdown table (key, name, unit, better, what it measures) of ``keys`` (default: all)."""
    rows = ["| key | name | unit | better | what it measures |", "| --- | --- | --- | --- | --- |"]
    for k in (list(METRICS) if keys is None else list(keys)):
        m = metric(k)
        rows.append(f"| `{m.key}` | {m.name} | {m.unit or '-'} | {m.direction or '-'} | {m.description} |")
    return "\n".join(rows)
