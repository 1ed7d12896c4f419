"""Run the whole monograph: every notebook, in order, through papermill.

The monograph is a sequence of notebooks ``notebooks/NN_*.ipynb``, one finding
each. This command line executes them with a chosen profile and reports, in one
table, which findings reproduced::

    python -m derain_utils.monograph list
    python -m derain_utils.monograph run --profile quick
    python -m derain_utils.monograph run --profile smoke --only 01 03 --html
    python -m derain_utils.monograph run --param SEEDS='[0, 1, 2]' --param STEPS=200
    python -m derain_utils.monograph run -f params.yaml

What ``run`` does
-----------------
* Checks every ``--param`` against the parameters cell of the selected notebooks
  (``papermill.inspect_notebook``) *before* executing anything. A name no selected
  notebook declares is an error; a name declared by some notebooks goes to those
  only. Values are parsed as JSON, then YAML, so ``STEPS=200`` is an int,
  ``LR=1e-3`` a float, ``SIZES='[4, 16]'`` a list (quote lists for the shell) and
  anything else a string. ``-f/--params-file`` reads a YAML mapping;
  ``--param`` overrides it. ``PROFILE`` and ``RUN_DIR`` are set by the runner.
  Notebook authors: papermill skips any parameters-cell line holding more than
  one ``=`` (one in the trailing comment counts), which hides that parameter;
  ``list`` and ``run`` warn about such lines.
* Executes each notebook with ``kernel_name="python3"`` into a fresh folder
  ``<runs>/<profile>/<stem>/<UTC stamp>/<stem>.ipynb`` (``<runs>`` = ``--runs-dir``,
  ``$DERAIN_RUNS`` or ``<repo>/runs``), passing ``PROFILE`` and ``RUN_DIR``. A run
  never writes over an older one. After a notebook *completes*, ``latest`` in its
  folder points at the new run; a failed run keeps its partial notebook but does
  not move ``latest``. ``runner.json`` beside it records parameters, timing, status.
* Stops at the first failing notebook, prints the failing cell's exception and
  the path of the partially executed notebook, and exits with status 1. Results of
  notebooks that finished are kept.
* Prints a summary (notebook, finding, verdict, effect [95% interval], wall time)
  from each run's ``verdict.json``, and writes ``<runs>/<profile>/summary.csv``:
  the ``latest`` completed run of every notebook (its ``run`` column relative to
  ``<runs>/<profile>``), i.e. the current state of the monograph for that profile.
  ``--html`` also exports the executed notebooks (nbconvert, ``lab`` template;
  export works offline, though MathJax and require.js are linked from a CDN and
  only render online) and writes ``<runs>/<profile>/index.html``.

The kernel
----------
Notebooks must run in this environment (the same ``derain_utils``, torch, ...).
``ensure_python3_kernel`` checks that the ``python3`` kernelspec launches this
interpreter (a spec whose command is plain ``python`` does: jupyter_client
substitutes ``sys.executable``); if it is missing or points elsewhere it installs
one into ``sys.prefix`` (``ipykernel install --sys-prefix``; ``--user`` when
``sys.prefix`` is not writable). The kernel also gets the folder holding this
``derain_utils`` prepended to ``PYTHONPATH``, so a source checkout that was never
``pip install``-ed runs too.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import html
import json
import keyword
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from derain_utils import runs, store
from derain_utils import verdict as _verdict

__all__ = [
    "NotebookInfo",
    "RunRecord",
    "discover_notebooks",
    "notebook_info",
    "parse_param",
    "load_params_file",
    "resolve_parameters",
    "ensure_python3_kernel",
    "execute",
    "export_html",
    "summary_table",
    "write_index",
    "main",
]

KERNEL_NAME = "python3"
RUNNER_FILE = "runner.json"
RUNNER_PARAMS = ("PROFILE", "RUN_DIR")
PROFILES = ("smoke", "quick", "paper")
NOTEBOOK_PATTERN = re.compile(r"^(\d{2})_[A-Za-z0-9_\-]+\.ipynb$")


def default_notebooks_dir() -> Path:
    """``<repo>/notebooks`` (the repository root is the folder holding the package)."""
    return store.repo_root() / "notebooks"


# --------------------------------------------------------------------------------------
# notebooks
# --------------------------------------------------------------------------------------
@dataclass
class NotebookInfo:
    """A monograph notebook: its file, title, finding and declared parameters."""

    path: Path
    stem: str
    number: str
    title: str
    finding: str
    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)  # papermill.inspect_notebook
    problems: list[str] = field(default_factory=list)  # parameters-cell lines papermill cannot read


def discover_notebooks(notebooks_dir: str | Path | None = None) -> list[Path]:
    """The notebooks ``NN_*.ipynb`` in ``notebooks_dir``, sorted by name (so by number)."""
    folder = Path(notebooks_dir) if notebooks_dir is not None else default_notebooks_dir()
    if not folder.is_dir():
        raise FileNotFoundError(f"notebooks folder {folder} does not exist")
    return sorted(p for p in folder.iterdir() if p.is_file() and NOTEBOOK_PATTERN.match(p.name))


def _first_markdown(nb: Any) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            return cell.source if isinstance(cell.source, str) else "".join(cell.source)
    return ""


def parse_header(markdown: str) -> tuple[str, str]:
    """Title and finding from a notebook's first markdown cell.

    Convention: the cell starts with a ``# NN · Title`` heading and holds a
    paragraph starting with ``**Finding.**``. Returns ``(title, finding)``: the
    heading text (``""`` without one) and that paragraph without its label, on
    one line (``""`` without one).
    """
    title = ""
    lines = markdown.splitlines()
    for line in lines:
        m = re.match(r"^\s*#\s+(.+?)\s*#*\s*$", line)
        if m:
            title = m.group(1)
            break
    finding_lines: list[str] = []
    for i, line in enumerate(lines):
        m = re.match(r"^\s*\*\*Finding\.?\*\*\s*(.*)$", line)
        if m:
            finding_lines.append(m.group(1))
            for nxt in lines[i + 1:]:
                if not nxt.strip() or re.match(r"^\s*(#|\*\*[A-Z][^*]*\*\*)", nxt):
                    break
                finding_lines.append(nxt.strip())
            break
    finding = " ".join(s.strip() for s in finding_lines if s.strip())
    return title, finding


def parameter_cell_problems(nb: Any, parameters: Mapping[str, Any]) -> list[str]:
    """Lines of the ``parameters`` cell that assign a name papermill's inspection did not see.

    papermill skips any line holding more than one ``=`` (a ``=`` in the trailing
    comment or in a string default counts), so such a parameter cannot be checked
    or documented; ``--param`` then rejects its name.
    """
    cell = next((c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if cell is None:
        return []
    out = []
    for i, line in enumerate(cell.source.splitlines(), 1):
        m = re.match(r"^([A-Za-z_]\w*)\s*(?::[^=]*)?=", line)
        if m and m.group(1) not in parameters:
            out.append(f"parameters cell line {i} ({line.strip()!r}) is invisible to papermill's inspection "
                       "(it allows exactly one '=' per line, comments included)")
    return out


def notebook_info(path: str | Path) -> NotebookInfo:
    """Read a notebook's header and its parameters (papermill's view of the ``parameters`` cell)."""
    import nbformat
    import papermill

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"notebook {path} does not exist")
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as err:  # nbformat raises several types for unreadable files
        raise ValueError(f"notebook {path} cannot be read: {err}") from None
    title, finding = parse_header(_first_markdown(nb))
    params = papermill.inspect_notebook(str(path))
    m = NOTEBOOK_PATTERN.match(path.name)
    return NotebookInfo(path=path, stem=path.stem, number=m.group(1) if m else "",
                        title=title or path.stem, finding=finding, parameters=params,
                        problems=parameter_cell_problems(nb, params))


def select_notebooks(infos: Sequence[NotebookInfo], only: Sequence[str] | None) -> list[NotebookInfo]:
    """Keep the notebooks named in ``only`` (numbers like ``1``/``01`` or stems), in monograph order."""
    if not only:
        return list(infos)
    wanted: list[NotebookInfo] = []
    for token in only:
        tok = str(token).strip()
        if tok.endswith(".ipynb"):
            tok = tok[: -len(".ipynb")]
        hits = [i for i in infos if tok == i.stem or (tok.isdigit() and int(tok) == int(i.number or -1))]
        if not hits:
            valid = ", ".join(i.stem for i in infos) or "(none found)"
            raise ValueError(f"--only {token!r} matches no notebook; notebooks: {valid}")
        wanted.extend(h for h in hits if h not in wanted)
    return [i for i in infos if i in wanted]


# --------------------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------------------
@dataclass
class _Param:
    name: str
    value: Any
    raw: str | None  # the text as typed (None when it came from a YAML file)
    origin: str


def _parse_value(text: str) -> Any:
    """JSON first (so ``1e-3`` is a float), then YAML (``[4, 16]``, ``{a: 1}``), else the raw string.

    YAML 1.1's ``yes``/``no``/``on``/``off`` booleans are not honoured: only
    ``true``/``false`` (any case) become bools, the rest stay strings.
    """
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, bool) and text.strip().lower() not in ("true", "false"):
        return text
    if value is None and text.strip().lower() not in ("null", "~", "none", ""):
        return text
    if isinstance(value, (_dt.date, _dt.datetime)):
        return text
    return value


def _check_param_name(name: str, where: str) -> str:
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(f"{where}: parameter name {name!r} is not a Python identifier")
    return name


def parse_param(text: str) -> tuple[str, Any]:
    """``"KEY=VALUE"`` -> ``(KEY, parsed VALUE)``; see :func:`_parse_value` for the value rules."""
    if "=" not in text:
        raise ValueError(f"--param {text!r} must look like KEY=VALUE")
    key, raw = text.split("=", 1)
    key = key.strip()
    return _check_param_name(key, f"--param {text!r}"), _parse_value(raw.strip())


def load_params_file(path: str | Path) -> dict[str, Any]:
    """Parameters from a YAML (or JSON) file holding one mapping ``NAME: value``."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"params file {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"params file {p} is not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"params file {p} must hold a mapping NAME: value, got {type(data).__name__}")
    for k in data:
        _check_param_name(str(k), f"params file {p}")
    return {str(k): v for k, v in data.items()}


def _coerce(p: _Param, hint: str | None, notebook: str) -> Any:
    """Check ``p.value`` against a notebook's simple type hint (int, float, str, bool, list...)."""
    if not hint or hint == "None":
        return p.value
    base = hint.replace(" ", "").split("[", 1)[0].lower()
    v = p.value

    def bad(kind: str) -> ValueError:
        return ValueError(f"parameter {p.name} ({p.origin}) of notebook {notebook} is declared {hint}, "
                          f"but got {type(v).__name__} {v!r}; expected {kind}")

    if "|" in hint or base in ("optional", "union", "any"):
        return v
    if base == "int":
        if isinstance(v, bool) or not isinstance(v, int):
            raise bad("an integer")
    elif base == "float":
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise bad("a number")
        return float(v)
    elif base == "bool":
        if not isinstance(v, bool):
            raise bad("true or false")
    elif base == "str":
        if not isinstance(v, str):
            if p.raw is not None and not isinstance(v, (list, dict)):
                return p.raw  # e.g. DATA_DIR=2024 stays the string "2024"
            raise bad("a string")
    elif base in ("list", "tuple", "sequence"):
        if not isinstance(v, list):
            raise bad("a list, e.g. --param NAME='[1, 2]'")
    elif base in ("dict", "mapping"):
        if not isinstance(v, dict):
            raise bad("a mapping, e.g. --param NAME='{a: 1}'")
    return v


def resolve_parameters(
    notebooks: Sequence[NotebookInfo], params: Sequence[_Param]
) -> dict[str, dict[str, Any]]:
    """User parameters per notebook stem, checked against each notebook's parameters cell.

    Raises ValueError, before anything runs, for a runner-owned name
    (``PROFILE``, ``RUN_DIR``), for a name that no selected notebook declares
    (naming the parameter and listing each notebook's valid names), or for a value
    that contradicts a notebook's type hint.
    """
    out: dict[str, dict[str, Any]] = {nb.stem: {} for nb in notebooks}
    for p in params:
        if p.name in RUNNER_PARAMS:
            hint = "use --profile" if p.name == "PROFILE" else "the runner creates a fresh run folder"
            raise ValueError(f"parameter {p.name} ({p.origin}) is set by the runner; {hint}")
        takers = [nb for nb in notebooks if p.name in nb.parameters]
        if not takers:
            listing = "; ".join(
                f"{nb.stem}: {', '.join(n for n in nb.parameters if n not in RUNNER_PARAMS) or '(none)'}"
                for nb in notebooks
            )
            names = ", ".join(nb.stem for nb in notebooks)
            raise ValueError(f"unknown parameter {p.name} ({p.origin}): not in the parameters cell of "
                             f"{names}. Valid parameters -- {listing}")
        for nb in takers:
            out[nb.stem][p.name] = _coerce(p, nb.parameters[p.name].get("inferred_type_name"), nb.stem)
    return out


# --------------------------------------------------------------------------------------
# kernel
# --------------------------------------------------------------------------------------
def _interpreter_prefix(executable: str) -> str | None:
    """``sys.prefix`` of another interpreter, or None when it cannot be run."""
    try:
        res = subprocess.run([executable, "-c", "import sys; print(sys.prefix)"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def _runs_this_interpreter(argv: Sequence[str]) -> bool:
    """Does a kernelspec command line start this Python (same environment)?"""
    if not argv:
        return False
    exe = argv[0]
    # jupyter_client replaces these bare names with sys.executable when it launches a kernel.
    if exe in {"python", f"python{sys.version_info[0]}", f"python{sys.version_info[0]}.{sys.version_info[1]}"}:
        return True
    if os.path.isabs(exe) and os.path.abspath(exe) == os.path.abspath(sys.executable):
        return True
    prefix = _interpreter_prefix(exe)
    return prefix is not None and os.path.realpath(prefix) == os.path.realpath(sys.prefix)


def _kernel_spec_manager() -> Any:
    from jupyter_client.kernelspec import KernelSpecManager

    return KernelSpecManager()


def _find_spec(kernel_name: str) -> Any | None:
    from jupyter_client.kernelspec import NoSuchKernel

    try:
        return _kernel_spec_manager().get_kernel_spec(kernel_name)
    except NoSuchKernel:
        return None


def _install_kernelspec(kernel_name: str) -> str:
    """``ipykernel install --sys-prefix`` (``--user`` if ``sys.prefix`` is read-only); returns the folder."""
    from ipykernel import kernelspec

    if os.access(sys.prefix, os.W_OK):
        return kernelspec.install(kernel_name=kernel_name, prefix=sys.prefix)
    return kernelspec.install(kernel_name=kernel_name, user=True)


def ensure_python3_kernel(kernel_name: str = KERNEL_NAME) -> str:
    """Make sure the ``kernel_name`` kernelspec launches this interpreter; returns what was found or done.

    Raises RuntimeError when, even after installing one into ``sys.prefix``, a spec
    for another interpreter takes precedence (e.g. one in the user's Jupyter folder).
    """
    spec = _find_spec(kernel_name)
    if spec is not None and _runs_this_interpreter(spec.argv):
        return f"kernel {kernel_name}: {spec.resource_dir} ({spec.argv[0]})"
    why = "missing" if spec is None else f"{spec.resource_dir} runs {spec.argv[0]}, not {sys.executable}"
    where = _install_kernelspec(kernel_name)
    spec = _find_spec(kernel_name)
    if spec is None or not _runs_this_interpreter(spec.argv):
        found = "none" if spec is None else f"{spec.resource_dir} ({spec.argv[0]})"
        raise RuntimeError(
            f"installed kernel {kernel_name!r} for {sys.executable} into {where}, but Jupyter still resolves "
            f"{found}. Remove the other spec (jupyter kernelspec remove {kernel_name}) or set "
            "JUPYTER_PREFER_ENV_PATH=1, then rerun."
        )
    return f"kernel {kernel_name} was {why}; installed {where} for {sys.executable}"


@contextlib.contextmanager
def _kernel_environment() -> Iterator[None]:
    """Prepend the folder holding this ``derain_utils`` to ``PYTHONPATH`` while kernels start."""
    root = str(store.repo_root())
    old = os.environ.get("PYTHONPATH")
    parts = [root] + ([p for p in old.split(os.pathsep) if p and p != root] if old else [])
    os.environ["PYTHONPATH"] = os.pathsep.join(parts)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


# --------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------
@dataclass
class RunRecord:
    """One notebook's run in this invocation (or its latest completed one, for the summary)."""

    info: NotebookInfo
    status: str  # "completed", "failed", "interrupted", "not run"
    folder: Path | None = None
    output: Path | None = None
    wall_s: float = math.nan
    parameters: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    html: Path | None = None


def _write_runner_json(rec: RunRecord, profile: str, started: str) -> None:
    import papermill

    assert rec.folder is not None
    record = {
        "notebook": rec.info.stem,
        "source": str(rec.info.path),
        "profile": profile,
        "status": rec.status,
        "started_utc": started,
        "wall_s": rec.wall_s,
        "parameters": rec.parameters,
        "kernel": KERNEL_NAME,
        "papermill": papermill.__version__,
        "python": sys.executable,
        "error": rec.error,
    }
    (rec.folder / RUNNER_FILE).write_text(
        json.dumps(store.to_jsonable(record, strict=False), indent=2) + "\n", encoding="utf-8")


def execute(
    info: NotebookInfo,
    profile: str,
    runs_dir: Path,
    params: Mapping[str, Any],
    *,
    progress: bool = True,
    log_output: bool = False,
) -> RunRecord:
    """Execute one notebook into a fresh run folder; never raises for a notebook error.

    Returns a :class:`RunRecord` whose ``status`` is ``"completed"`` (``latest``
    updated) or ``"failed"`` (``error`` holds the failing cell's exception; the
    partially executed notebook is at ``output``).
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError, strip_color

    folder = runs.new_run_dir(info.stem, profile, runs_dir)
    output = folder / f"{info.stem}.ipynb"
    parameters = {"PROFILE": profile, "RUN_DIR": str(folder), **params}
    rec = RunRecord(info=info, status="failed", folder=folder, output=output, parameters=parameters)
    started = store.utc_stamp()
    t0 = time.perf_counter()
    try:
        with _kernel_environment():
            papermill.execute_notebook(
                str(info.path), str(output), parameters=parameters, kernel_name=KERNEL_NAME,
                cwd=str(info.path.parent), progress_bar=progress, log_output=log_output,
            )
        rec.status = "completed"
    except KeyboardInterrupt:
        rec.status, rec.error, rec.wall_s = "interrupted", "KeyboardInterrupt", time.perf_counter() - t0
        _write_runner_json(rec, profile, started)
        raise
    except PapermillExecutionError as err:
        rec.error = (f"cell {err.cell_index} (In [{err.exec_count}]) raised {err.ename}: {err.evalue}\n"
                     + strip_color("\n".join(err.traceback)))
    except Exception as err:  # kernel death, timeouts, unreadable notebooks: report, do not crash the run
        rec.error = f"{type(err).__name__}: {err}"
    rec.wall_s = time.perf_counter() - t0
    _write_runner_json(rec, profile, started)
    if rec.status == "completed":
        runs.update_latest(folder)
    return rec


def export_html(notebook: str | Path) -> Path:
    """Export an executed notebook to HTML beside it (nbconvert, ``lab`` template); returns the path."""
    from nbconvert import HTMLExporter

    src = Path(notebook)
    if not src.is_file():
        raise FileNotFoundError(f"notebook {src} does not exist")
    body, _ = HTMLExporter(template_name="lab").from_filename(str(src))
    dst = src.with_suffix(".html")
    dst.write_text(body, encoding="utf-8")
    return dst


# --------------------------------------------------------------------------------------
# summary
# --------------------------------------------------------------------------------------
def _row(rec: RunRecord) -> dict[str, Any]:
    finding, label, result, n_seeds = rec.info.finding, "no verdict", "", None
    if rec.status == "failed":
        label = "FAILED"
    elif rec.status == "not run":
        label = "not run"
    if rec.folder is not None and (rec.folder / _verdict.VERDICT_FILE).is_file():
        try:
            v = _verdict.read_verdict(rec.folder)
        except ValueError as err:
            label = f"invalid verdict ({err})" if rec.status == "completed" else label
        else:
            finding = v.finding or finding
            result, n_seeds = v.result, v.n_seeds
            if rec.status == "completed":
                label = v.label
    return {
        "notebook": rec.info.stem,
        "finding": finding,
        "verdict": label,
        "result": result,
        "n_seeds": n_seeds,
        "wall_s": None if not math.isfinite(rec.wall_s) else round(rec.wall_s, 1),
        "run": "" if rec.folder is None else str(rec.folder),
    }


def summary_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """One row per record: notebook, finding, verdict, result, n_seeds, wall_s, run folder."""
    cols = ["notebook", "finding", "verdict", "result", "n_seeds", "wall_s", "run"]
    return pd.DataFrame([_row(r) for r in records], columns=cols)


def _format_table(df: pd.DataFrame, width: int = 60) -> str:
    """Plain-text, left-aligned rendering of :func:`summary_table` (without the run folder)."""
    def cell(col: str, v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        if col == "wall_s":
            return f"{float(v):.1f}"
        if col == "n_seeds":
            return str(int(v))
        text = str(v)
        return text if len(text) <= width else text[: width - 1] + "…"

    cols = [c for c in df.columns if c != "run"]
    rows = [[cell(c, r[c]) for c in cols] for _, r in df.iterrows()]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def latest_records(infos: Sequence[NotebookInfo], profile: str, runs_dir: Path) -> list[RunRecord]:
    """The latest completed run of each notebook (``not run`` where there is none)."""
    out = []
    for info in infos:
        folder = runs.latest_run(info.stem, profile, runs_dir)
        if folder is None:
            out.append(RunRecord(info=info, status="not run"))
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
                             wall_s=wall, html=nb_html if nb_html.is_file() else None))
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
        cls = {"REPRODUCED": "yes", "NOT REPRODUCED": "no"}.get(r["verdict"], "other")
        seeds = "" if pd.isna(r["n_seeds"]) else str(int(r["n_seeds"]))
        wall = "" if pd.isna(r["wall_s"]) else f'{float(r["wall_s"]):.1f}'
        cells = [name, html.escape(str(r["finding"] or "")),
                 f'<span class="{cls}">{html.escape(r["verdict"])}</span>',
                 html.escape(r["result"] or ""), seeds, wall]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    written = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>slacking-off monograph: {html.escape(profile)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 70em; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: .3em .6em; vertical-align: top; }}
.yes {{ color: #1a7f37; font-weight: bold; }} .no {{ color: #cf222e; font-weight: bold; }} .other {{ color: #6e7781; }}
</style></head><body>
<h1>Networks are slacking off: reproduction ({html.escape(profile)} profile)</h1>
<p>Latest completed run of each notebook; written {html.escape(written)}.</p>
<table><thead><tr><th>notebook</th><th>finding</th><th>verdict</th><th>effect [95% CI]</th>
<th>seeds</th><th>wall (s)</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table></body></html>
"""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m derain_utils.monograph",
        description="Run the slacking-off monograph's notebooks through papermill and summarise their verdicts.",
    )
    sub = ap.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--notebooks-dir", type=Path, default=None,
                       help="folder holding NN_*.ipynb (default: <repo>/notebooks)")

    run = sub.add_parser("run", help="execute notebooks and summarise their verdicts")
    common(run)
    run.add_argument("--profile", choices=PROFILES, default="quick",
                     help="smoke: seconds, plumbing only; quick: minutes on a CPU; paper: one GPU (default quick)")
    run.add_argument("--only", nargs="+", metavar="NN", help="run only these notebooks (numbers like 01, or stems)")
    run.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE",
                     help="override a notebook parameter; values parse as JSON/YAML, so lists go as "
                          "KEY='[4, 16]' (repeatable)")
    run.add_argument("--params-file", "-f", type=Path, default=None,
                     help="YAML file with a mapping of parameters (overridden by --param)")
    run.add_argument("--runs-dir", type=Path, default=None,
                     help="root of run folders (default: $DERAIN_RUNS or <repo>/runs)")
    run.add_argument("--html", action="store_true", help="export executed notebooks to HTML and write index.html")
    run.add_argument("--no-progress", action="store_true", help="hide papermill's per-cell progress bar")
    run.add_argument("--log-output", action="store_true", help="stream the notebooks' cell outputs to the log")

    ls = sub.add_parser("list", help="show the notebooks, their findings and parameters")
    common(ls)
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


def _cmd_run(args: argparse.Namespace) -> int:
    runs_dir = store.runs_root(args.runs_dir)
    infos = _load_infos(args.notebooks_dir)
    selected = select_notebooks(infos, args.only)
    given: list[_Param] = []
    if args.params_file is not None:
        given += [_Param(k, v, None, f"from {args.params_file}") for k, v in load_params_file(args.params_file).items()]
    for text in args.param:
        k, v = parse_param(text)
        given = [p for p in given if p.name != k] + [_Param(k, v, text.split("=", 1)[1].strip(), f"--param {text}")]
    per_notebook = resolve_parameters(selected, given)
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
    for info in selected:
        if failed is not None:
            records.append(RunRecord(info=info, status="not run"))
            continue
        print(f"== {info.stem} [{args.profile}]", file=sys.stderr)
        rec = execute(info, args.profile, runs_dir, per_notebook[info.stem],
                      progress=not args.no_progress, log_output=args.log_output)
        if args.html and rec.output is not None and rec.output.is_file():
            try:
                rec.html = export_html(rec.output)
            except Exception as err:  # an export problem must not hide the run's outcome
                print(f"warning: HTML export of {rec.output} failed: {err}", file=sys.stderr)
        records.append(rec)
        if rec.status == "failed":
            failed = rec

    table = summary_table(records)
    print(f"\nSummary ({args.profile} profile, runs in {runs_dir / args.profile}):")
    print(_format_table(table))
    state = latest_records(infos, args.profile, runs_dir)
    root = runs_dir / args.profile
    root.mkdir(parents=True, exist_ok=True)
    state_table = summary_table(state)
    state_table["run"] = [os.path.relpath(r, root) if r else "" for r in state_table["run"]]
    state_table.to_csv(root / "summary.csv", index=False)
    print(f"\nsummary of the latest run of every notebook: {root / 'summary.csv'}")
    if args.html:
        for rec in state:
            if rec.status == "completed" and rec.html is None and rec.output is not None and rec.output.is_file():
                with contextlib.suppress(Exception):
                    rec.html = export_html(rec.output)
        print(f"HTML index: {write_index(state, args.profile, runs_dir)}")
    if failed is not None:
        print(f"\nFAILED: {failed.info.stem}\n{failed.error}\n"
              f"partially executed notebook: {failed.output}", file=sys.stderr)
        print(f"\nFAILED: {failed.info.stem} (see {failed.output})")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 ok, 1 a notebook failed, 2 bad usage)."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "list":
            return _cmd_list(args)
        return _cmd_run(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
