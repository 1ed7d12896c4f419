"""Results a reader can see without running anything: ``python -m derain_utils.book.monograph publish DEST``.

From the latest completed run of each notebook of a profile (the runs ``monograph html`` would show), it writes
into ``DEST``:

* ``index.md``: which profile made the results, then one section per notebook: its finding, both declared
  verdicts with effect, 95% interval, one-sided p, models and seeds (from the run's ``verdict.json``), its
  figures, a link to its reader page, and where the numbers come from (run, commit, machine, torch, device,
  wall time, real data or the embedded default);
* ``<notebook>/fig_*.png``: the run's figures, scaled down to at most :data:`MAX_WIDTH` px wide;
* ``<notebook>/<notebook>.reader.html``: the offline reader page (no code cells; figures embedded).

**Pictures of real images are never published.** The real development sets (``DERAIN_DATA``) keep their own
terms (several are research-only, with no redistribution), and a figure that shows their images, or a page that
embeds such figures, would redistribute them. For a run that used real data (:func:`uses_real_data`, read from its
provenance), the figures named in :data:`PICTURES` are left out, and the page says so; the data plots (curves,
frontiers, intervals), which show numbers only, are published, and its reader page is published with every
picture replaced by a line saying why (:func:`strip_pictures`). A run on the embedded default (procedural images,
dead leaves, scikit-image's sample photographs) is published whole.

The folder is written whole: staged beside ``DEST`` and then swapped in, so a failure leaves the old one. Run
it after ``make monograph`` and commit ``DEST`` (``docs/results/quick`` holds the committed quick-profile
results) so that the figures show on the repository page.
"""
from __future__ import annotations

import fnmatch
import json
import math
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from derain_utils import store
from derain_utils.stats import verdict as _verdict

__all__ = ["LEFT_OUT", "MAX_WIDTH", "PICTURES", "figure_globs", "strip_pictures", "uses_real_data", "publish", "verdict_cell"]

PICTURES: tuple[str, ...] = ("fig_backgrounds", "fig_examples", "fig_rain", "fig_regions", "fig_probes",
                             "fig_equal_psnr", "fig_perspective", "fig_paired_example", "fig_real_*")
"""Figures (glob patterns of their stems) that show images: backgrounds, rainy inputs, outputs, photos."""

MAX_WIDTH = 1100
"""Widest published figure, in px (wider run figures are scaled down, aspect kept)."""

_MARK = {"REPRODUCED": "🟢 reproduced", "CONTRADICTED": "🔴 contradicted", "INCONCLUSIVE": "🟡 inconclusive"}


def _p(p: Any) -> str:
    return "–" if p is None or not math.isfinite(float(p)) else f"{float(p):.2g}"


def verdict_cell(label: str, effect: Any, ci: Any, p: Any, statistic: str, p_against: Any = None) -> str:
    """One verdict as a reader reads it: ``🟢 reproduced: <statistic> = +0.16 [+0.12, +0.20], p = 0.0039``.

    A contradicted verdict gives the one-sided p against the paper's direction (``p_against``) when it is known."""
    mark = _MARK.get(str(label).upper(), str(label))
    if effect is None or not math.isfinite(float(effect)):
        return f"{mark}: no effect computed"
    lo, hi = (ci or [math.nan, math.nan])[:2]
    interval = f" [{lo:+.2f}, {hi:+.2f}]" if all(isinstance(v, (int, float)) and math.isfinite(v) for v in (lo, hi)) \
        else ""
    against = str(label).upper() == "CONTRADICTED" and p_against is not None
    p_txt = f"one-sided p = {_p(p_against)} against the paper's direction" if against else f"one-sided p = {_p(p)}"
    return f"{mark}: {statistic} = {float(effect):+.2f}{interval}, {p_txt}"


def _figure(src: Path, dst: Path) -> None:
    from PIL import Image

    with Image.open(src) as im:
        if im.width > MAX_WIDTH:
            im = im.resize((MAX_WIDTH, round(im.height * MAX_WIDTH / im.width)), Image.LANCZOS)
        im.save(dst, optimize=True)


def _provenance(folder: Path) -> dict[str, Any]:
    path = folder / "provenance.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except ValueError:
        return {}


def uses_real_data(prov: dict[str, Any]) -> bool:
    """Whether a run's provenance shows real images: a data folder, a real background category, paired sets or
    photo folders (the embedded default uses procedural images, dead leaves and scikit-image's samples only)."""
    from derain_utils.synth import backgrounds

    if (prov.get("params") or {}).get("DATA_DIR") or prov.get("paired_sets") or prov.get("real_sets"):
        return True
    named = json.dumps([prov.get(k) for k in ("background", "categories", "design")])
    return any(f'"{c}"' in named for c in backgrounds.CATEGORIES)


def _is_picture(name: str) -> bool:
    return any(fnmatch.fnmatch(Path(name).stem, pat) for pat in PICTURES)


_FIGURE_NAME = re.compile(r"(fig_[\w{}]*)\.png")
LEFT_OUT = ("[A figure was left out of this published page: it shows images of the real development sets, whose "
            "terms do not allow redistribution. Run the notebook to see it.]\n")
"""What the published reader page of a real-data run shows in place of a picture."""


def figure_globs(source: str) -> list[str]:
    """The figure files a cell's source saves, as globs: ``fig_<name>.png``, an f-string field read as ``*``."""
    return [re.sub(r"\{[^}]*\}", "*", name) + ".png" for name in _FIGURE_NAME.findall(source)]


def strip_pictures(nb: Any, saved: Sequence[str]) -> int:
    """Leave every picture of real images out of an executed notebook, in place; returns how many outputs went.

    A code cell's images are kept only when its source names the figures it saves (``fig_<name>.png``, an
    f-string field read as a wildcard), those names match figures of the run (``saved``, file names) and none of
    them is a picture (:data:`PICTURES`). Every other image output (PNG, JPEG, SVG, or HTML embedding an image) is
    replaced by :data:`LEFT_OUT`: a cell that shows an image without saving a data plot loses it, so nothing
    unknown is published.
    """
    import nbformat

    gone = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        globs = figure_globs(cell.source)
        matched = [f for f in saved if any(fnmatch.fnmatch(f, g) for g in globs)]
        safe = bool(matched) and not any(_is_picture(f) for f in matched)
        outputs = []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            image = any(k.startswith("image/") for k in data) or "data:image" in str(data.get("text/html", ""))
            if image and not safe:
                gone += 1
                if not outputs or outputs[-1].get("text") != LEFT_OUT:
                    outputs.append(nbformat.v4.new_output("stream", name="stdout", text=LEFT_OUT))
                continue
            outputs.append(out)
        cell.outputs = outputs
    return gone


def _without_pictures(saved: Sequence[str]) -> Any:
    def transform(nb: Any) -> Any:
        strip_pictures(nb, saved)
        return nb
    return transform


def _section(stem: str, folder: Path, out: Path, wall_s: float) -> list[str]:
    """The notebook's section of index.md; copies its figures and reader page into ``out / stem``."""
    from derain_utils.book import monograph

    v = _verdict.read_verdict(folder)
    bf = (v.extra or {}).get("beyond_fidelity") or {}
    target = out / stem
    target.mkdir()
    prov = _provenance(folder)
    real = uses_real_data(prov)
    every = sorted(folder.glob("fig_*.png"))
    figures = [f for f in every if not (real and _is_picture(f.name))]
    for f in figures:
        _figure(f, target / f.name)
    names = [f.name for f in every]
    page = monograph.export_html(folder / f"{stem}.ipynb", no_input=True, dest=target / f"{stem}.reader.html",
                                 transform=_without_pictures(names) if real else None)
    git = prov.get("git") or {}
    commit = (git.get("commit") or "unknown")[:7] + (" (uncommitted changes)" if git.get("dirty") else "")
    packages = prov.get("packages") or {}
    data = "the real development sets (DERAIN_DATA)" if real else "the embedded default (no real images)"
    lines = [f"## {stem}", "", f"**Finding.** {v.finding}", "",
             "| question | verdict |", "|---|---|",
             f"| as the paper measured it ({v.primary_outcome}) | "
             f"{verdict_cell(v.verdict, v.effect, v.ci95, v.p_value, v.statistic, (v.extra or {}).get('p_opposite'))} |"]
    if bf:
        cell = verdict_cell(bf.get("verdict", ""), bf.get("effect"), bf.get("ci95"), bf.get("p_value"),
                            bf.get("statistic", v.statistic), bf.get("p_opposite"))
        lines.append(f"| beyond fidelity ({bf.get('primary_outcome', 'excess_removal')}) | {cell} |")
    left_out = [f.stem for f in every if f not in figures]
    page_txt = f"Reader page (no code): [{page.name}]({stem}/{page.name})."
    if real:
        page_txt += (" Left out of the page and of this folder, because they show images of the real sets, whose "
                     f"terms do not allow redistribution: {', '.join(left_out) or 'no figure'}. Run the notebook to "
                     "see them.")
    lines += ["", f"{v.n_models} models, {v.n_seeds} seeds; {v.primary_preset}. {page_txt}", ""]
    lines += [f"![{f.stem}]({stem}/{f.name})" for f in figures]
    lines += ["", f"Run `{folder.name}`, commit `{commit}`, {prov.get('platform', 'unknown platform')}, "
                  f"{prov.get('device', 'unknown device')}, torch {packages.get('torch', '?')}, "
                  f"{'%.0f s' % wall_s if math.isfinite(wall_s) else 'wall time unknown'}"
                  + (f"; data: {data}" if data else "") + ".", ""]
    return lines


def publish(dest: str | os.PathLike, profile: str, *, runs_dir: str | os.PathLike | None = None,
            notebooks: Sequence[Any] | None = None) -> Path:
    """Write the results page of ``profile``'s latest completed runs into ``dest`` (see the module docstring).

    Args:
        dest: the folder to (re)write, e.g. ``docs/results/quick``.
        profile: the profile whose runs are published.
        runs_dir: root of the run folders (default ``$DERAIN_RUNS`` or ``<repo>/runs``).
        notebooks: :class:`~derain_utils.book.runner.NotebookInfo` records (default: the repository's notebooks).

    Returns:
        ``dest / "index.md"``.

    Raises:
        FileNotFoundError: no completed run of ``profile`` (names the runs folder).
        ValueError: ``dest`` is a file.
    """
    from derain_utils.book import monograph

    final = Path(dest)
    if final.exists() and not final.is_dir():
        raise ValueError(f"publish destination {str(final)!r} is a file, not a folder")
    root = store.runs_root(runs_dir)
    infos = list(notebooks) if notebooks is not None else monograph._load_infos(None)
    records = [r for r in monograph.latest_records(infos, profile, root) if r.status == "completed"]
    if not records:
        raise FileNotFoundError(f"no completed run of profile {profile!r} in {root}: run the monograph first "
                                f"(python -m derain_utils.book.monograph run --profile {profile})")
    final.parent.mkdir(parents=True, exist_ok=True)
    staged = final.parent / f".{final.name}.partial-{os.getpid()}"
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir()
    try:
        missing = [i.stem for i in infos if i.stem not in {r.info.stem for r in records}]
        lines = [f"# Results of the `{profile}` profile", "",
                 f"Written by `python -m derain_utils.book.monograph publish` from the latest completed run of each "
                 f"notebook of the `{profile}` profile. Each section gives the two declared verdicts as that run's "
                 "`verdict.json` records them, its figures, its reader page, and the commit and machine that made it.",
                 ""]
        if missing:
            lines += [f"Not published (no completed `{profile}` run): {', '.join(missing)}.", ""]
        for rec in records:
            lines += _section(rec.info.stem, rec.folder, staged, rec.wall_s)
        index = staged / "index.md"
        store.write_text(index, "\n".join(lines).rstrip() + "\n", what="results page")
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        if final.exists():
            os.rename(final, old)
        os.rename(staged, final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return final / "index.md"
