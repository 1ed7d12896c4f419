"""Run the whole monograph: every notebook, in order, through papermill.

The monograph is a sequence of notebooks ``notebooks/NN_*.ipynb``, one finding
each. This command line executes them with a chosen profile and reports, in one
table, which findings reproduced::

    python -m derain_utils.book.monograph list
    python -m derain_utils.book.monograph run --profile quick
    python -m derain_utils.book.monograph run --profile smoke --only 01 03 --html
    python -m derain_utils.book.monograph run --param SEEDS='[0, 1, 2]' --param STEPS=200
    python -m derain_utils.book.monograph run -f params.yaml
    python -m derain_utils.book.monograph html --profile smoke --no-input

What ``run`` does
-----------------
* Checks every ``--param`` against the parameters cell of the selected notebooks
  (``papermill.inspect_notebook``) *before* executing anything. A name no selected
  notebook declares is an error; a name declared by some notebooks goes to those
  only. Values are parsed as JSON, then YAML, so ``STEPS=200`` is an int,
  ``LR=1e-3`` a float, ``SIZES='[4, 16]'`` a list (quote lists for the shell) and
  anything else a string. ``-f/--params-file`` reads a YAML mapping (the file
  ``papermill -f`` takes); ``--param`` overrides it. ``RUN_DIR`` is set by the
  runner (an empty one in the file is ignored); a ``PROFILE`` in the file picks the
  profile unless ``--profile`` is given, and the two must then agree. A NaN value
  is refused (it compares false with everything).
  Notebook authors: papermill skips any parameters-cell line holding more than
  one ``=`` (one in the trailing comment counts), which hides that parameter;
  ``list`` and ``run`` warn about such lines.
* Executes each notebook with ``kernel_name="python3"`` into a fresh folder
  ``<runs>/<profile>/<stem>/<UTC stamp>/<stem>.ipynb`` (``<runs>`` = ``--runs-dir``,
  ``$DERAIN_RUNS`` or ``<repo>/runs``), passing ``PROFILE`` and ``RUN_DIR``. A run
  never writes over an older one. ``runner.json`` is written into the folder first,
  with status ``running`` (and the runner's host and pid), and rewritten at the end:
  ``completed``, ``failed`` or ``interrupted`` (SIGINT or SIGTERM: the kernel is shut
  down and the runner exits with 130 or 143). A run killed outright (SIGKILL) keeps
  ``running`` with a dead pid, which :func:`run_status` reads as ``killed``; its
  kernel exits with it. After a notebook *completes*, ``latest`` points at its
  folder unless a completed run that *started* later is there already (runs may
  overlap). A failed or interrupted run keeps its partial notebook; ``latest``, the
  summary and the index never show an incomplete run as a result, and note the
  incomplete runs newer than the one shown. A rerun starts a fresh folder and
  reuses every model that finished (the model cache).
* Stops at the first failing notebook, prints the failing cell's exception and
  the path of the partially executed notebook, and exits with status 1. Results of
  notebooks that finished are kept.
* Prints a summary (notebook, finding, verdict, effect [95% interval], wall time)
  from each run's ``verdict.json``, and writes ``<runs>/<profile>/summary.csv``:
  the ``latest`` completed run of every notebook (its ``run`` column relative to
  ``<runs>/<profile>``), i.e. the current state of the monograph for that profile.
  ``--html`` also exports the executed notebooks to self-contained pages
  (nbconvert's ``lab`` template without its CDN scripts: figures embedded, widget
  outputs as text; :func:`export_html`) and writes ``<runs>/<profile>/index.html``;
  ``--no-input`` writes reader pages without code cells (``<stem>.reader.html``).
  ``html`` (re)exports the latest runs without running anything.
* Talks while it works: a line when each notebook starts and ends, and one per model its sweeps finish
  (``01_set_size: trained 37/72 models, ETA 4 min``, from the run folder's ``progress.json``, which the
  kernel's sweeps keep current); ``--no-progress`` silences them.
* ``--log-output`` streams what the cells print, and their progress bars as text
  lines (the kernels get ``DERAIN_PROGRESS=text``), to the terminal.

Executing one notebook (parameters, kernel, run folder, ``runner.json``) is
:mod:`derain_utils.book.runner`; this module is the command line, the summary and the HTML pages.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import html
import json
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from derain_utils import store
from derain_utils.book import runs
from derain_utils.book.runner import (
    INCOMPLETE,
    RUNNER_FILE,
    RUNNER_PARAMS,
    NotebookInfo,
    RunRecord,
    _Param,
    _sigterm_raises,
    _stamp_key,
    _Terminated,
    default_notebooks_dir,
    discover_notebooks,
    ensure_python3_kernel,
    execute,
    load_params_file,
    notebook_info,
    parse_header,
    parse_param,
    preflight,
    require_notebook_tools,
    resolve_parameters,
    run_folders,
    run_status,
    select_notebooks,
)
from derain_utils.lab import profiles
from derain_utils.stats import verdict as _verdict

__all__ = [
    "export_html",
    "offline_notebook",
    "summary_table",
    "write_index",
    "main",
]

PROFILES = tuple(profiles.PROFILES)  # smoke, quick, long, paper
DEFAULT_PROFILE = "quick"
# --------------------------------------------------------------------------------------
# html pages
# --------------------------------------------------------------------------------------
OFFLINE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{#- nbconvert's lab page without what it loads from CDNs: require.js, MathJax, mermaid and the
    widget manager. Figures and styles are embedded in the page already. -#}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""
"""Jinja template of :func:`export_html`: the ``lab`` template minus every script it fetches online."""

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = "(an interactive widget: open the notebook in JupyterLab to use it)"


def offline_notebook(nb: Any) -> Any:
    """A copy of an executed notebook that renders without a widget manager.

    Widget views (progress bars, explorers) keep their text: their ``text/plain`` fallback, or
    :data:`WIDGET_NOTE`; the saved widget state is dropped.
    """
    import copy

    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data")
            if data and WIDGET_MIME in data:
                del data[WIDGET_MIME]
                plain = data.get("text/plain", "")
                if not plain or plain.startswith(("HBox(", "VBox(", "FloatProgress(", "IntProgress(")):
                    data["text/plain"] = WIDGET_NOTE
    return nb


def export_html(notebook: str | Path, *, no_input: bool = False, dest: str | Path | None = None,
                transform: Callable[[Any], Any] | None = None) -> Path:
    """Export an executed notebook to a self-contained HTML page beside it; returns the path.

    nbconvert's ``lab`` template without the scripts it loads from CDNs (:data:`OFFLINE_TEMPLATE`):
    the page, its styles and its figures (embedded PNGs) work offline. Widget outputs become text
    (:func:`offline_notebook`). ``no_input=True`` is the reader's page: no code cells, no prompts,
    only the text, the figures and the printed results; it is written to ``<stem>.reader.html``
    (the full page goes to ``<stem>.html``). ``dest``: write the page there instead; ``transform``:
    a function applied to the notebook before export (``publish`` leaves pictures of real images out).
    """
    import jinja2
    import nbformat
    from nbconvert import HTMLExporter

    src = Path(notebook)
    if not src.is_file():
        raise FileNotFoundError(f"notebook {src} does not exist")
    exporter = HTMLExporter(
        template_name="lab", template_file="offline.html.j2",
        extra_loaders=[jinja2.DictLoader({"offline.html.j2": OFFLINE_TEMPLATE})],
        exclude_input=no_input, exclude_input_prompt=no_input, exclude_output_prompt=no_input,
    )
    nb = nbformat.read(src, as_version=4)
    first = next((c.source for c in nb.cells if c.cell_type == "markdown"), "")
    title = parse_header(first)[0] or src.stem  # the page's <title>: the notebook's own title, not "Notebook"
    nb = offline_notebook(nb)
    if transform is not None:
        nb = transform(nb)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    dst = Path(dest) if dest is not None else src.with_name(src.stem + (".reader.html" if no_input else ".html"))
    store.write_text(dst, body, what="page")
    return dst


# --------------------------------------------------------------------------------------
# summary
# --------------------------------------------------------------------------------------
#: CSS class of each verdict in ``index.html``: three colours (green, red, amber).
VERDICT_CLASSES: dict[str, str] = {"REPRODUCED": "yes", "CONTRADICTED": "no", "INCONCLUSIVE": "maybe"}


def _row(rec: RunRecord) -> dict[str, Any]:
    finding, label, result, n_seeds, p_value, n_models = rec.info.finding, "no verdict", "", None, None, None
    beyond = ""
    if rec.status in INCOMPLETE:
        label = rec.status.upper()
    elif rec.status == "not run":
        label = "not run"
    if rec.folder is not None and (rec.folder / _verdict.VERDICT_FILE).is_file():
        try:
            v = _verdict.read_verdict(rec.folder)
        except ValueError as err:
            label = f"invalid verdict ({err})" if rec.status == "completed" else label
        else:
            finding = v.finding or finding
            result, n_seeds, n_models = v.result, v.n_seeds, v.n_models
            if not math.isfinite(v.effect):  # no "nan [nan, nan]" in a table a reader reads
                result = "no effect computed" + (" (smoke run: plumbing only)" if v.profile == "smoke" else "")
            p_value = None if not math.isfinite(v.p_value) else float(f"{v.p_value:.3g}")
            if rec.status == "completed":
                label = v.label
                beyond = (v.verdict_beyond_fidelity or "").upper()
    return {
        "notebook": rec.info.stem,
        "finding": finding,
        "verdict": label,
        "beyond_fidelity": beyond,
        "result": result,
        "p_value": p_value,
        "n_models": n_models,
        "n_seeds": n_seeds,
        "wall_s": None if not math.isfinite(rec.wall_s) else round(rec.wall_s, 1),
        "run": "" if rec.folder is None else str(rec.folder),
        "incomplete": "; ".join(f"{f.name} {st}" for f, st in rec.incomplete),
    }


def summary_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """One row per record: notebook, finding, verdict (the paper's question, as the paper measured it:
    REPRODUCED, CONTRADICTED, INCONCLUSIVE, or the run's status), beyond_fidelity (the control question's
    verdict, the same effect on excess removal), result (effect and interval), p_value (one-sided, in the
    paper's direction), n_models,
    n_seeds, wall_s, run folder, and ``incomplete``: the run folders newer than ``run`` that did not
    complete (name and status)."""
    cols = ["notebook", "finding", "verdict", "beyond_fidelity", "result", "p_value", "n_models", "n_seeds",
            "wall_s", "run", "incomplete"]
    return pd.DataFrame([_row(r) for r in records], columns=cols)


#: ANSI colours of the verdicts in the terminal summary (green, red, amber), used on a terminal only.
_ANSI = {"REPRODUCED": "\033[1;32m", "CONTRADICTED": "\033[1;31m", "INCONCLUSIVE": "\033[1;33m"}


def _use_colour(stream: Any = None) -> bool:
    """Colour on a terminal, unless ``NO_COLOR`` is set (https://no-color.org)."""
    stream = sys.stdout if stream is None else stream
    return hasattr(stream, "isatty") and stream.isatty() and not os.environ.get("NO_COLOR")


def _format_table(df: pd.DataFrame, width: int = 60, colour: bool = False) -> str:
    """Plain-text, left-aligned rendering of :func:`summary_table` (without the run folder); with
    ``colour``, the verdicts in three ANSI colours."""
    def cell(col: str, v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        if col == "wall_s":
            return f"{float(v):.1f}"
        if col in ("n_seeds", "n_models"):
            return str(int(v))
        if col == "p_value":
            return f"{float(v):.2g}"
        text = str(v)
        return text if len(text) <= width else text[: width - 1] + "…"

    cols = [c for c in df.columns if c not in ("run", "incomplete")]
    rows = [[cell(c, r[c]) for c in cols] for _, r in df.iterrows()]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(cols)]

    def show(col: str, v: str, w: int) -> str:
        text = v.ljust(w)
        if colour and col in ("verdict", "beyond_fidelity") and v in _ANSI:
            return f"{_ANSI[v]}{v}\033[0m" + " " * (w - len(v))
        return text

    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(show(c, v, w) for c, v, w in zip(cols, r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def latest_records(infos: Sequence[NotebookInfo], profile: str, runs_dir: Path) -> list[RunRecord]:
    """The latest completed run of each notebook, with the newer run folders that did not complete.

    A notebook without a completed run gets its newest incomplete run (status ``failed``,
    ``interrupted``, ``killed`` or ``running``; see :func:`run_status`), or ``not run``.
    """
    out = []
    for info in infos:
        folder = runs.latest_run(info.stem, profile, runs_dir)
        every = run_folders(info.stem, profile, runs_dir)
        status = {f: run_status(f, mark=True) for f in every}  # a run killed outright is marked so in its folder
        newer = [f for f in every if folder is None or _stamp_key(f.name) > _stamp_key(folder.name)]
        incomplete = [(f, status[f]) for f in newer if status[f] in INCOMPLETE]
        outside = [f for f in newer if (f / runs.OUTSIDE_FILE).is_file()]
        if folder is None:
            if incomplete:
                last, status = incomplete[-1]
                out.append(RunRecord(info=info, status=status, folder=last, output=last / f"{info.stem}.ipynb",
                                     incomplete=incomplete, outside=outside))
            else:
                out.append(RunRecord(info=info, status="not run", outside=outside))
            continue
        wall = math.nan
        runner = folder / RUNNER_FILE
        if runner.is_file():
            try:
                wall = float(json.loads(runner.read_text(encoding="utf-8")).get("wall_s") or math.nan)
            except (ValueError, TypeError):
                pass
        nb_html = folder / f"{info.stem}.html"
        out.append(RunRecord(info=info, status="completed", folder=folder, output=folder / f"{info.stem}.ipynb",
                             wall_s=wall, html=nb_html if nb_html.is_file() else None, incomplete=incomplete,
                             outside=outside))
    return out


def write_index(records: Sequence[RunRecord], profile: str, runs_dir: Path) -> Path:
    """``<runs>/<profile>/index.html``: the summary table linking each notebook's HTML export."""
    root = runs_dir / profile
    table = summary_table(records)
    rows = []
    for rec, (_, r) in zip(records, table.iterrows()):
        name = html.escape(r["notebook"])
        if rec.html is not None and rec.html.is_file():
            name = f'<a href="{html.escape(os.path.relpath(rec.html, root))}">{name}</a>'
        cls = VERDICT_CLASSES.get(r["verdict"], "other")
        seeds = "" if pd.isna(r["n_seeds"]) else str(int(r["n_seeds"]))
        pval = "" if pd.isna(r["p_value"]) else f'{float(r["p_value"]):.2g}'
        nmod = "" if pd.isna(r["n_models"]) else str(int(r["n_models"]))
        wall = "" if pd.isna(r["wall_s"]) else f'{float(r["wall_s"]):.1f}'
        note = ""
        if rec.incomplete and rec.status == "completed":
            note = ('<br><span class="other">newer run(s) did not complete: '
                    + html.escape(", ".join(f"{f.name} ({st})" for f, st in rec.incomplete)) + "</span>")
        if rec.outside:
            note += ('<br><span class="other">newer run(s) outside the runner (JupyterLab or papermill), not shown: '
                     + html.escape(", ".join(f.name for f in rec.outside)) + "</span>")
        bcls = VERDICT_CLASSES.get(r["beyond_fidelity"], "other")
        cells = [name, html.escape(str(r["finding"] or "")),
                 f'<span class="{cls}">{html.escape(r["verdict"])}</span>{note}',
                 f'<span class="{bcls}">{html.escape(r["beyond_fidelity"])}</span>',
                 html.escape(r["result"] or ""), pval, nmod, seeds, wall]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    written = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>slacking-off monograph: {html.escape(profile)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 70em; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: .3em .6em; vertical-align: top; }}
.yes {{ color: #1a7f37; font-weight: bold; }} .no {{ color: #cf222e; font-weight: bold; }}
.maybe {{ color: #9a6700; font-weight: bold; }} .other {{ color: #6e7781; }}
</style></head><body>
<h1>Networks are slacking off: reproduction ({html.escape(profile)} profile)</h1>
<p>Latest completed run of each notebook (runs that were interrupted, killed, failed or are still
running are never shown as results, only noted); written {html.escape(written)}.</p>
<p>Two declared questions per notebook: <em>verdict</em>, the paper's claim as the paper measured it (raw
removal of unseen rain), and <em>beyond fidelity</em>, the same effect on removal beyond a fixed filter of
equal background fidelity (this project's control). <span class="yes">REPRODUCED</span>: the paper's
direction, one-sided p &lt; 0.05 and a 95% interval that excludes 0; <span class="no">CONTRADICTED</span>:
the same, against the paper; <span class="maybe">INCONCLUSIVE</span>: anything else (smoke runs always).
Effect and p are the paper's question's.</p>
<table><thead><tr><th>notebook</th><th>finding</th><th>verdict</th><th>beyond fidelity</th><th>effect [95% CI]</th>
<th>p (one-sided)</th><th>models</th><th>seeds</th><th>wall (s)</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table></body></html>
"""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "index.html"
    store.write_text(path, page, what="page")
    return path


# --------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="derain-monograph" if Path(sys.argv[0]).name.startswith("derain-monograph")
        else "python -m derain_utils.book.monograph",
        description="Run the slacking-off monograph's notebooks through papermill and summarise their verdicts.",
    )
    sub = ap.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--notebooks-dir", type=Path, default=None,
                       help="folder holding NN_*.ipynb (default: <repo>/notebooks)")

    run = sub.add_parser("run", help="execute notebooks and summarise their verdicts")
    common(run)
    run.add_argument("--profile", choices=PROFILES, default=None,
                     help="smoke: seconds, plumbing only; quick: minutes on a CPU; paper: one GPU (default: "
                          "PROFILE from --params-file, else quick)")
    run.add_argument("--only", nargs="+", metavar="NN", help="run only these notebooks (numbers like 01, or stems)")
    run.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE",
                     help="override a notebook parameter; values parse as JSON/YAML, so lists go as "
                          "KEY='[4, 16]' (repeatable)")
    run.add_argument("--params-file", "-f", type=Path, default=None,
                     help="YAML file with a mapping of parameters, as for papermill -f (overridden by --param); "
                          "its PROFILE picks the profile unless --profile says otherwise (a conflict is an error)")
    run.add_argument("--runs-dir", type=Path, default=None,
                     help="root of run folders (default: $DERAIN_RUNS or <repo>/runs)")
    run.add_argument("--html", action="store_true",
                     help="export executed notebooks to self-contained HTML and write index.html")
    run.add_argument("--no-input", action="store_true",
                     help="with --html: reader pages without code cells (<stem>.reader.html), linked from the index")
    run.add_argument("--no-progress", action="store_true",
                     help="no progress lines (by default: one line per model a notebook trains, with an ETA)")
    run.add_argument("--log-output", action="store_true",
                     help="stream the notebooks' printed output and progress lines to the terminal (stderr)")

    ls = sub.add_parser("list", help="show the notebooks, their findings and parameters")
    common(ls)

    ex = sub.add_parser("html", help="(re)export the latest completed runs to HTML and write index.html")
    common(ex)
    ex.add_argument("--profile", choices=PROFILES, default=None,
                    help="profile (default: the one with the newest completed run)")
    ex.add_argument("--runs-dir", type=Path, default=None,
                    help="root of run folders (default: $DERAIN_RUNS or <repo>/runs)")
    ex.add_argument("--no-input", action="store_true", help="reader pages without code cells")

    pub = sub.add_parser("publish", help="write the results page (Markdown, figures, reader pages) of the latest "
                                         "completed runs into a folder to commit, e.g. docs/results/quick")
    common(pub)
    pub.add_argument("dest", type=Path, help="folder to (re)write, e.g. docs/results/quick")
    pub.add_argument("--profile", choices=PROFILES, default=DEFAULT_PROFILE, help="profile (default quick)")
    pub.add_argument("--runs-dir", type=Path, default=None,
                     help="root of run folders (default: $DERAIN_RUNS or <repo>/runs)")
    return ap


def _load_infos(notebooks_dir: Path | None) -> list[NotebookInfo]:
    paths = discover_notebooks(notebooks_dir)
    if not paths:
        folder = notebooks_dir or default_notebooks_dir()
        raise FileNotFoundError(f"no notebooks named NN_*.ipynb in {folder}")
    return [notebook_info(p) for p in paths]


def _cmd_list(args: argparse.Namespace) -> int:
    for info in _load_infos(args.notebooks_dir):
        print(f"{info.stem}  --  {info.title}")
        print(f"  finding: {info.finding or '(no **Finding.** line in the first markdown cell)'}")
        for problem in info.problems:
            print(f"  warning: {problem}")
        if not info.parameters:
            print("  parameters: (no cell tagged 'parameters')")
        else:
            print("  parameters:")
            for name, p in info.parameters.items():
                hint = p.get("inferred_type_name") or ""
                hint = "" if hint == "None" else f": {hint}"
                comment = f"  # {p['help']}" if p.get("help") else ""
                print(f"    {name}{hint} = {p.get('default')}{comment}")
        print()
    return 0


def _checked_runs_dir(runs_dir: Path, option: str = "--runs-dir") -> Path:
    """The runs root, or a ValueError when it (or a folder above it) is a file, or cannot be written."""
    probe = runs_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        what = "is a file" if probe == runs_dir else f"cannot be created: {str(probe)!r} is a file"
        raise ValueError(f"{option} {str(runs_dir)!r} {what}, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {str(runs_dir)!r}: {str(probe)!r} is not writable")
    return runs_dir


def _profile_from(args: argparse.Namespace, given: list[_Param]) -> tuple[str, list[_Param]]:
    """The profile: ``--profile``, else ``PROFILE`` from the params file or a --param, else quick.

    A ``params.yaml`` written for ``papermill -f`` may set ``PROFILE`` (and an empty ``RUN_DIR``);
    they are accepted. ``--profile`` and a different ``PROFILE`` are a conflict (ValueError).
    """
    chosen = args.profile
    rest = []
    for p in given:
        if p.name == "PROFILE":
            if p.value not in PROFILES:
                raise ValueError(f"PROFILE={p.value!r} ({p.origin}) is not a profile; valid: {', '.join(PROFILES)}")
            if args.profile is not None and p.value != args.profile:
                raise ValueError(f"--profile {args.profile} contradicts PROFILE={p.value!r} ({p.origin}); "
                                 "drop one of them")
            chosen = p.value
        elif p.name == "RUN_DIR" and p.value in ("", None):
            continue  # papermill's "a fresh folder" default: the runner makes one anyway
        else:
            rest.append(p)
    return chosen or DEFAULT_PROFILE, rest


class _OutputFormatter(logging.Formatter):
    """papermill's cell-output log records as plain lines (carriage-return updates on lines of their own)."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage().replace("\r", "\n")
        return "\n".join(line.rstrip() for line in text.splitlines() if line.strip())


_PAPERMILL_CHATTER = re.compile(r"^\s*((Executing|Ending) Cell \d+-*|(Input|Output) Notebook:|Working directory:|"
                                r"Executing notebook with kernel:)")


def _cell_output_only(record: logging.LogRecord) -> bool:
    """Keep the cells' output; drop papermill's own status lines (the progress bar shows the cells)."""
    message = record.getMessage()
    return bool(message.strip()) and not _PAPERMILL_CHATTER.match(message)


@contextlib.contextmanager
def _stream_cell_output(enabled: bool) -> Iterator[None]:
    """With ``--log-output``: papermill's logger (stdout of cells at INFO, stderr at WARNING) to stderr."""
    if not enabled:
        yield
        return
    logger = logging.getLogger("papermill")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OutputFormatter())
    handler.addFilter(_cell_output_only)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "unknown time"
    m, sec = divmod(round(seconds), 60)
    return f"{m} min {sec} s" if m else f"{sec} s"


def _cmd_run(args: argparse.Namespace) -> int:
    runs_dir = _checked_runs_dir(store.runs_root(args.runs_dir))
    _checked_runs_dir(store.cache_root(), "the model cache ($DERAIN_RUNS/cache or <repo>/runs/cache)")  # the kernels'
    infos = _load_infos(args.notebooks_dir)
    selected = select_notebooks(infos, args.only)
    given: list[_Param] = []
    if args.params_file is not None:
        given += [_Param(k, v, None, f"from {args.params_file}") for k, v in load_params_file(args.params_file).items()]
    for text in args.param:
        k, v = parse_param(text)
        given = [p for p in given if p.name != k] + [_Param(k, v, text.split("=", 1)[1].strip(), f"--param {text}")]
    args.profile, given = _profile_from(args, given)
    args.html = args.html or args.no_input
    per_notebook = resolve_parameters(selected, given)
    for info in selected:  # bad values fail here, in one line, not in a kernel after a traceback
        preflight(info, args.profile, per_notebook[info.stem])
    for info in selected:
        for problem in info.problems:
            print(f"warning: {info.stem}: {problem}", file=sys.stderr)
        missing = [n for n in RUNNER_PARAMS if n not in info.parameters]
        if missing:
            print(f"warning: {info.stem} declares no {', '.join(missing)} in its parameters cell; "
                  "papermill injects them anyway", file=sys.stderr)

    try:
        print(ensure_python3_kernel(), file=sys.stderr)
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    records: list[RunRecord] = []
    failed: RunRecord | None = None
    stopped: BaseException | None = None
    with _sigterm_raises(), _stream_cell_output(args.log_output):
        for info in selected:
            if failed is not None or stopped is not None:
                records.append(RunRecord(info=info, status="not run"))
                continue
            print(f"== {info.stem} [{args.profile}] ({selected.index(info) + 1} of {len(selected)} notebooks)",
                  file=sys.stderr)
            try:
                rec = execute(info, args.profile, runs_dir, per_notebook[info.stem],
                              progress=not args.no_progress, log_output=args.log_output)
                print(f"== {info.stem}: {rec.status} in {_duration(rec.wall_s)}", file=sys.stderr)
            except (KeyboardInterrupt, _Terminated) as err:
                stopped = err
                records.append(getattr(err, "run_record", None) or RunRecord(info=info, status="interrupted"))
                continue
            if args.html and rec.output is not None and rec.output.is_file():
                try:
                    rec.html = export_html(rec.output, no_input=args.no_input)
                except Exception as err:  # an export problem must not hide the run's outcome
                    print(f"warning: HTML export of {rec.output} failed: {err}", file=sys.stderr)
            records.append(rec)
            if rec.status == "failed":
                failed = rec

    table = summary_table(records)
    print(f"\nSummary ({args.profile} profile, runs in {runs_dir / args.profile}):")
    print(_format_table(table, colour=_use_colour()))
    state = _write_state(infos, args.profile, runs_dir, html=args.html, no_input=args.no_input)
    for rec in state:
        if rec.incomplete and rec.status == "completed":
            print(f"note: {rec.info.stem}: newer run(s) did not complete and are not shown: "
                  + ", ".join(f"{f} ({st})" for f, st in rec.incomplete))
    if stopped is not None:
        rec = records[-1] if records else None
        sig = "SIGTERM" if isinstance(stopped, _Terminated) else "SIGINT"
        where = f" {rec.folder} is marked interrupted;" if rec is not None and rec.folder is not None else ""
        print(f"\nINTERRUPTED by {sig}:{where} rerun to finish (finished models are reused from the cache)",
              file=sys.stderr)
        return 143 if sig == "SIGTERM" else 130
    if failed is not None:
        print(f"\nFAILED: {failed.info.stem}\n{failed.error}\n"
              f"partially executed notebook: {failed.output}", file=sys.stderr)
        print(f"\nFAILED: {failed.info.stem} (see {failed.output})")
        return 1
    return 0


def _write_state(infos: Sequence[NotebookInfo], profile: str, runs_dir: Path, *, html: bool,
                 no_input: bool = False) -> list[RunRecord]:
    """``<runs>/<profile>/summary.csv`` (and with ``html`` the pages and ``index.html``): the latest
    completed run of every notebook, and the newer runs that did not complete."""
    state = latest_records(infos, profile, runs_dir)
    root = runs_dir / profile
    root.mkdir(parents=True, exist_ok=True)
    state_table = summary_table(state)
    state_table["run"] = [os.path.relpath(r, root) if r else "" for r in state_table["run"]]
    store.write_csv(root / "summary.csv", state_table, what="summary table")  # atomic; no temporary file left
    print(f"\nsummary of the latest run of every notebook: {root / 'summary.csv'}")
    for rec in state:
        if rec.outside:
            print(f"warning: {rec.info.stem}: {len(rec.outside)} newer run(s) outside the runner (JupyterLab, or "
                  f"papermill without RUN_DIR) are not shown: {', '.join(f.name for f in rec.outside)}; run it with "
                  f"`monograph run --only {rec.info.number}` to make a run the latest", file=sys.stderr)
    if html:
        for rec in state:
            if rec.status != "completed" or rec.output is None or not rec.output.is_file():
                continue
            page = rec.output.with_name(rec.output.stem + (".reader.html" if no_input else ".html"))
            if page.is_file() and page.stat().st_mtime >= rec.output.stat().st_mtime:
                rec.html = page
                continue
            try:
                rec.html = export_html(rec.output, no_input=no_input)
            except Exception as err:  # noqa: BLE001 - the index still links the other pages
                print(f"warning: HTML export of {rec.output} failed: {err}", file=sys.stderr)
        print(f"HTML index: {write_index(state, profile, runs_dir)}")
    return state


def newest_profile(runs_dir: Path) -> str | None:
    """The profile whose newest completed run is the most recent (None without any completed run)."""
    best: tuple[str, str] | None = None
    for name in PROFILES:
        for folder in (runs_dir / name).glob("*/*") if (runs_dir / name).is_dir() else ():
            if folder.is_dir() and not folder.is_symlink() and run_status(folder) == "completed":
                key = (_stamp_key(folder.name), name)
                best = key if best is None or key > best else best
    return None if best is None else best[1]


def _cmd_html(args: argparse.Namespace) -> int:
    runs_dir = store.runs_root(args.runs_dir)
    if args.profile is None:
        args.profile = newest_profile(runs_dir)
        if args.profile is None:
            raise FileNotFoundError(f"no completed runs in {runs_dir}: run the monograph first")
        print(f"profile {args.profile}: the newest completed runs in {runs_dir}")
    if not (runs_dir / args.profile).is_dir():
        raise FileNotFoundError(f"no runs of profile {args.profile} in {runs_dir}")
    state = _write_state(_load_infos(args.notebooks_dir), args.profile, runs_dir, html=True, no_input=args.no_input)
    return 0 if any(r.status == "completed" for r in state) else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 ok, 1 a notebook failed, 2 bad usage,
    130/143 interrupted by SIGINT/SIGTERM)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        require_notebook_tools()
        if args.command == "list":
            return _cmd_list(args)
        if args.command == "html":
            return _cmd_html(args)
        if args.command == "publish":
            from derain_utils.book import publish

            index = publish.publish(args.dest, args.profile, runs_dir=args.runs_dir,
                                    notebooks=_load_infos(args.notebooks_dir))
            print(f"results page: {index}")
            return 0
        return _cmd_run(args)
    except (ValueError, OSError, ImportError) as err:  # OSError: FileNotFoundError, unwritable or full disks
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, _Terminated):
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
