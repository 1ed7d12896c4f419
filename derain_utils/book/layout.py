"""Figures a reader can read: text that does not overlap, checked when a notebook saves a figure.

A title over an axis label, two point labels on top of each other, a row label running into the next
picture: matplotlib draws them without complaint. :func:`text_overlaps` finds them from the drawn
figure's text boxes (titles, the suptitle, axis labels, tick labels, legend entries, annotations and
free text), and :func:`save` (what the notebooks call instead of ``fig.savefig``) saves the figure,
checks it and keeps what it found in :data:`FOUND`, which :func:`derain_utils.book.notebook.finish`
records in ``verdict.json`` (``figure_overlaps``). The notebook tests require it to be empty.

Two boxes overlap when their intersection is larger than ``min_area`` square pixels at the figure's dpi.
Tick labels of one axis are not compared with each other (matplotlib thins crowded ticks itself), and a
text is never compared with itself.
"""
from __future__ import annotations

import os
import textwrap
import warnings
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.text import Text

__all__ = ["FOUND", "text_overlaps", "save", "wrap", "separate"]

FOUND: dict[str, list[str]] = {}
"""Figure file name -> the overlaps :func:`save` found in it, for the run in progress (cleared by ``start``)."""


def wrap(text: str, width: int = 30) -> str:
    """``text`` broken into lines of at most ``width`` characters (a long axis label that would outgrow its axes)."""
    return "\n".join(textwrap.wrap(text, width)) if len(text) > width else text


def _texts(fig: Figure) -> list[tuple[str, str, Text]]:
    """``(group, name, artist)`` of every visible, non-empty text of ``fig``; tick labels of one axis share a group."""
    out: list[tuple[str, str, Text]] = []

    def add(group: str, name: str, t: Any) -> None:
        if isinstance(t, Text) and t.get_visible() and t.get_text().strip():
            out.append((group, name, t))

    sup = [getattr(fig, attr, None) for attr in ("_suptitle", "_supxlabel", "_supylabel")]
    for attr, t in zip(("suptitle", "supxlabel", "supylabel"), sup):
        add(attr, f"{attr} {t.get_text()!r}" if isinstance(t, Text) else attr, t)
    for i, t in enumerate(fig.texts):
        if not any(t is s for s in sup):  # the suptitle is one of the figure's texts too
            add(f"fig.text{i}", f"text {t.get_text()!r}", t)
    for j, leg in enumerate(fig.legends):
        for t in leg.get_texts():
            add(f"legend{j}:{t.get_text()}", f"legend entry {t.get_text()!r}", t)
    for k, ax in enumerate(a for a in fig.axes if a.get_visible()):
        where = f"panel {k + 1}"
        for t in (ax.title, ax._left_title, ax._right_title):
            add(f"{where}:title{id(t)}", f"{where} title {t.get_text()!r}", t)
        add(f"{where}:xlabel", f"{where} x label {ax.xaxis.label.get_text()!r}", ax.xaxis.label)
        add(f"{where}:ylabel", f"{where} y label {ax.yaxis.label.get_text()!r}", ax.yaxis.label)
        for axis, name in ((ax.xaxis, "x"), (ax.yaxis, "y")):
            lo, hi = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks():  # only the ticks inside the view are drawn
                if lo - 1e-9 * abs(hi - lo) <= tick.get_loc() <= hi + 1e-9 * abs(hi - lo):
                    for t in (tick.label1, tick.label2):
                        add(f"{where}:{name}ticks", f"{where} {name} tick {t.get_text()!r}", t)
        for i, t in enumerate(ax.texts):
            add(f"{where}:text{i}", f"{where} text {t.get_text()!r}", t)
        leg = ax.get_legend()
        if leg is not None and leg.get_visible():
            for t in leg.get_texts():
                add(f"{where}:legend:{t.get_text()}", f"{where} legend entry {t.get_text()!r}", t)
    return out


def text_overlaps(fig: Figure, *, min_area: float = 4.0) -> list[str]:
    """Every pair of texts of ``fig`` whose boxes overlap, one line each (``"A overlaps B"``); empty when none.

    The figure is drawn first (with its own layout engine), so the boxes are the ones a saved figure has.
    """
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    items = [(g, n, t.get_window_extent(renderer)) for g, n, t in _texts(fig)]
    found = []
    for i, (g1, n1, b1) in enumerate(items):
        for g2, n2, b2 in items[i + 1:]:
            if g1 == g2:
                continue
            w = min(b1.x1, b2.x1) - max(b1.x0, b2.x0)
            h = min(b1.y1, b2.y1) - max(b1.y0, b2.y0)
            if w > 0 and h > 0 and w * h > min_area:
                found.append(f"{n1} overlaps {n2}")
    return found


def save(fig: Figure, path: str | os.PathLike, *, dpi: int = 120, **kw: Any) -> None:
    """``fig.savefig(path, dpi=dpi, bbox_inches="tight", **kw)``, then :func:`text_overlaps`: each overlap is a
    warning naming the file, and is kept in :data:`FOUND`. Returns None, as ``savefig`` does (a notebook cell that
    ends with it shows no path)."""
    path = Path(path)
    found = text_overlaps(fig)
    fig.savefig(path, dpi=dpi, bbox_inches=kw.pop("bbox_inches", "tight"), **kw)
    if found:
        FOUND[path.name] = found
        warnings.warn(f"{path.name}: {len(found)} overlapping text(s): {'; '.join(found[:4])}"
                      + (" …" if len(found) > 4 else ""), stacklevel=2)
    else:
        FOUND.pop(path.name, None)


def separate(texts: Any, *, step: float = 11.0, tries: int = 8) -> None:
    """Move point labels (annotations in offset points) apart: each label that overlaps one placed before it goes
    down by ``step`` points, up to ``tries`` times (labels are placed from the top one down)."""
    texts = [t for t in texts if t.get_visible() and t.get_text().strip()]
    if len(texts) < 2:
        return
    fig = texts[0].get_figure()
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    placed = []
    for t in sorted(texts, key=lambda t: -t.get_window_extent(renderer).y0):
        for _ in range(tries):
            box = t.get_window_extent(renderer)
            if not any(box.overlaps(b) for b in placed):
                break
            x, y = t.xyann if hasattr(t, "xyann") else t.get_position()
            if hasattr(t, "xyann"):
                t.xyann = (x, y - step)
            else:  # pragma: no cover - plain text: move in its own coordinates
                t.set_position((x, y - step))
        placed.append(t.get_window_extent(renderer))
