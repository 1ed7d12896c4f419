"""Run the whole monograph: every notebook, in order, through papermill.

The monograph is a sequence of notebooks ``notebooks/NN_*.ipynb``, one finding
each. This command line executes them with a chosen profile and reports, in one
table, which findings reproduced::

    python -m derain_utils.monograph list
    python -m derain_utils.monograph run --profile quick
    python -m derain_utils.monograph run --profile smoke --only 01 03 --html
    python -m derain_utils.monograph run --param SEEDS='[0, 1, 2]' --param STEPS=200
    python -m derain_utils.monograph run -f params.yaml
    python -m derain_utils.monograph html --profile smoke --no-input

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
* ``--log-output`` streams what the cells print, and their progress bars as text
  lines (the kernels get ``DERAIN_PROGRESS=text``), to the terminal.

The kernel
----------
Notebooks must run in this environment (the same ``derain_utils``, torch, ...).
The kernel process's own messages go to ``kernel.log`` in the run folder, not to
the terminal. The runner starts kernels with matplotlib's inline backend whatever ``MPLBACKEND``
says (figures land in the executed notebook and its HTML page), with text progress
bars, with CurveZMQ transport encryption where the kernel supports it (so ipykernel
does not warn about plain-text TCP), and with ``JPY_PARENT_PID`` set so that a
kernel exits when its runner dies (:func:`_kernel_environment`, :func:`_client_config`).
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
import logging
import os
import re
import signal
import socket
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
    "offline_notebook",
    "run_status",
    "run_folders",
    "summary_table",
    "write_index",
    "main",
]

KERNEL_NAME = "python3"
RUNNER_FILE = "runner.json"
RUNNER_PARAMS = ("PROFILE", "RUN_DIR")
PROFILES = ("smoke", "quick", "paper")
DEFAULT_PROFILE = "quick"
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
"""The matplotlib backend of the kernels the runner starts (figures go into the notebook), whatever
``MPLBACKEND`` says in the runner's own environment (``.ci/run`` sets ``Agg``)."""
KERNEL_ENV = {
    "MPLBACKEND": INLINE_BACKEND,
    "DERAIN_PROGRESS": "text",  # derain_utils draws text progress bars: --log-output shows them
    "TQDM_MININTERVAL": "1",  # at most one progress line per second and bar
}
"""Environment variables set for the kernels the runner starts (and only for them)."""
INCOMPLETE = ("running", "killed", "interrupted", "failed")
"""Statuses of a run folder that did not complete (see :func:`run_status`)."""
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


def _has_nan(v: Any) -> bool:
    """Whether a parameter value is, or holds, a float NaN (JSON's ``NaN`` parses to one)."""
    if isinstance(v, float):
        return math.isnan(v)
    if isinstance(v, (list, tuple)):
        return any(_has_nan(x) for x in v)
    if isinstance(v, dict):
        return any(_has_nan(x) for x in v.values())
    return False


def _coerce(p: _Param, hint: str | None, notebook: str) -> Any:
    """Check ``p.value`` against a notebook's simple type hint (int, float, str, bool, list...)."""
    if not hint or hint == "None":
        return p.value
    base = hint.replace(" ", "").split("[", 1)[0].lower()
    v = p.value

    def bad(kind: str) -> ValueError:
        return ValueError(f"parameter {p.name} ({p.origin}) of notebook {notebook} is declared {hint}, "
                          f"but got {type(v).__name__} {v!r}; expected {kind}")

    if _has_nan(v):
        raise ValueError(f"parameter {p.name} ({p.origin}) of notebook {notebook} is NaN; give a number "
                         "(NaN compares false with everything, so a NaN threshold silently drops every model)")
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
    """The environment the runner's kernels start in, restored afterwards.

    * the folder holding this ``derain_utils`` is prepended to ``PYTHONPATH``;
    * :data:`KERNEL_ENV`: matplotlib's inline backend (figures are saved into the executed
      notebook even when the runner runs with ``MPLBACKEND=Agg``), and text progress bars
      (``DERAIN_PROGRESS=text``) that ``--log-output`` streams to the terminal.
    """
    root = str(store.repo_root())
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "JPY_PARENT_PID", *KERNEL_ENV)}
    old = saved["PYTHONPATH"]
    parts = [root] + ([p for p in old.split(os.pathsep) if p and p != root] if old else [])
    os.environ["PYTHONPATH"] = os.pathsep.join(parts)
    os.environ.update(KERNEL_ENV)
    os.environ["JPY_PARENT_PID"] = str(os.getpid())  # ipykernel exits when this runner dies (even by SIGKILL)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


KERNEL_LOG = "kernel.log"
"""What a run's kernel process itself prints (its log: warnings, crashes), kept in the run folder
so that it does not clutter the runner's terminal. The notebook's outputs are not in it."""


#: Kernel managers started by this runner (the SIGTERM handler stops their kernels).
_LIVE_KERNELS: list[Any] = []


def _stop_live_kernels() -> bool:
    """Kill the kernels this runner started; True when one was still running."""
    stopped = False
    while _LIVE_KERNELS:
        manager = _LIVE_KERNELS.pop()
        pid = getattr(getattr(manager, "provisioner", None), "pid", None)
        if isinstance(pid, int):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                stopped = True
    return stopped


def _kernel_manager_class(log_path: Path) -> type:
    """A jupyter_client kernel manager whose kernel writes its own stdout/stderr to ``log_path``."""
    from jupyter_client.manager import AsyncKernelManager

    class LoggedKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw: Any) -> None:  # type: ignore[override]
            with open(log_path, "ab") as log:  # Popen keeps its own copy of the descriptor
                kw.setdefault("stdout", log)
                kw.setdefault("stderr", log)
                await super().start_kernel(**kw)
            _LIVE_KERNELS.append(self)

    return LoggedKernelManager


def _client_config() -> Any:
    """nbclient configuration of the runner: CurveZMQ transport encryption where the kernel supports it.

    ipykernel >= 7 warns "Kernel is running over TCP without encryption" at every start unless
    the kernel manager provisions CurveZMQ keys; ``transport_encryption = "auto"`` does so when the
    kernelspec declares support (ipykernel's does), and changes nothing otherwise.
    """
    from jupyter_client.manager import KernelManager
    from traitlets.config import Config

    config = Config()
    if KernelManager.class_traits().get("transport_encryption") is not None:
        import zmq

        if zmq.has("curve"):
            config.KernelManager.transport_encryption = "auto"
    return config


# --------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------
@dataclass
class RunRecord:
    """One notebook's run in this invocation (or its latest completed one, for the summary)."""

    info: NotebookInfo
    status: str  # "completed", "failed", "interrupted", "not run" (+ "running", "killed" when read back)
    folder: Path | None = None
    output: Path | None = None
    wall_s: float = math.nan
    parameters: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    html: Path | None = None
    incomplete: list[tuple[Path, str]] = field(default_factory=list)  # newer run folders that did not complete


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (Linux: ``/proc/<pid>/stat`` field 22), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def _write_runner_json(rec: RunRecord, profile: str, started: str) -> None:
    """``runner.json`` of a run folder, replaced atomically. Written at the START of a run with
    status ``running`` (and the runner's host, pid and process start), and again at its end."""
    import papermill

    assert rec.folder is not None
    record = {
        "notebook": rec.info.stem,
        "source": str(rec.info.path),
        "profile": profile,
        "status": rec.status,
        "started_utc": started,
        "finished_utc": None if rec.status == "running" else store.utc_stamp(),
        "wall_s": rec.wall_s,
        "parameters": rec.parameters,
        "kernel": KERNEL_NAME,
        "papermill": papermill.__version__,
        "python": sys.executable,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "pid_start": _process_start(os.getpid()),
        "error": rec.error,
    }
    path = rec.folder / RUNNER_FILE
    tmp = rec.folder / f".{RUNNER_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(store.to_jsonable(record, strict=False), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def run_status(folder: str | Path) -> str:
    """What a run folder's ``runner.json`` says, checked against the process that wrote it.

    ``completed``, ``failed`` or ``interrupted`` (SIGTERM, SIGINT) as recorded; ``running`` while the
    runner that writes it is alive (or on another host, where that cannot be checked); ``killed``
    when it says running but its process is gone (SIGKILL, power loss); ``unmarked`` without a
    readable ``runner.json`` (a folder made by an interactive run, or by a runner before 2026-12).
    """
    path = Path(folder) / RUNNER_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        status = str(record.get("status", ""))
    except (OSError, ValueError, AttributeError):
        # an empty folder is a run killed between creating its folder and marking it
        return "killed" if Path(folder).is_dir() and not any(Path(folder).iterdir()) else "unmarked"
    if status != "running":
        return status or "unmarked"
    if record.get("host") != socket.gethostname() or not isinstance(record.get("pid"), int):
        return "running"
    pid = record["pid"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "killed"
    except PermissionError:
        pass  # alive, another user's
    started = record.get("pid_start")
    if started is not None and _process_start(pid) not in (None, started):
        return "killed"  # the pid now belongs to another process
    return "running"


def _stamp_key(name: str) -> tuple[str, int]:
    """Sort key of a run-folder name ``<UTC stamp>[-k]``: by stamp, then by k (so -10 after -9)."""
    stamp, _, k = name.partition("-")
    return stamp, int(k) if k.isdigit() else 1


def run_folders(stem: str, profile: str, runs_dir: Path) -> list[Path]:
    """Every run folder of a notebook and profile, oldest first (by the start stamp in its name)."""
    parent = runs_dir / profile / stem
    if not parent.is_dir():
        return []
    return sorted((p for p in parent.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")),
                  key=lambda p: _stamp_key(p.name))


def _update_latest_if_newest(folder: Path) -> bool:
    """Point ``latest`` at ``folder`` unless it already names a completed run that started later.

    Overlapping runs finish in any order; ``latest`` must name the newest completed run, not the
    last to finish. A lock beside the folders makes the compare-and-swap safe between runners.
    """
    from filelock import FileLock

    parent = folder.parent
    with FileLock(str(parent / ".latest.lock")):
        current = runs.latest_run(parent.name, parent.parent.name, parent.parent.parent)
        if (current is not None and current.resolve() != folder.resolve()
                and _stamp_key(current.name) > _stamp_key(folder.name) and run_status(current) == "completed"):
            return False
        runs.update_latest(folder)
        return True


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
    rec = RunRecord(info=info, status="running", folder=folder, output=output, parameters=parameters)
    started = store.utc_stamp()
    _write_runner_json(rec, profile, started)  # marks the folder before anything else is written into it
    rec.status = "failed"
    t0 = time.perf_counter()
    try:
        with _kernel_environment():
            papermill.execute_notebook(
                str(info.path), str(output), parameters=parameters, kernel_name=KERNEL_NAME,
                cwd=str(info.path.parent), progress_bar=progress, log_output=log_output,
                config=_client_config(), coalesce_streams=True,
                kernel_manager_class=_kernel_manager_class(folder / KERNEL_LOG),
            )
        _LIVE_KERNELS.clear()  # papermill shut its kernel down: nothing for SIGTERM to stop
        rec.status = "completed"
    except (KeyboardInterrupt, _Terminated) as err:
        rec.status, rec.wall_s = "interrupted", time.perf_counter() - t0
        rec.error = "SIGTERM" if isinstance(err, _Terminated) else "KeyboardInterrupt (SIGINT)"
        _write_runner_json(rec, profile, started)
        err.run_record = rec  # type: ignore[attr-defined]  # for the command line's summary
        raise
    except PapermillExecutionError as err:
        rec.error = (f"cell {err.cell_index} (In [{err.exec_count}]) raised {err.ename}: {err.evalue}\n"
                     + strip_color("\n".join(err.traceback)))
    except Exception as err:  # kernel death, timeouts, unreadable notebooks: report, do not crash the run
        rec.error = f"{type(err).__name__}: {err}"
        log = folder / KERNEL_LOG
        if log.is_file() and log.stat().st_size:
            rec.error += f" (the kernel's own log: {log})"
    _LIVE_KERNELS.clear()
    if _TERMINATING:  # SIGTERM stopped the kernel (see _sigterm_raises): an interruption, not a failure
        term = _Terminated()
        rec.status, rec.wall_s, rec.error = "interrupted", time.perf_counter() - t0, "SIGTERM"
        _write_runner_json(rec, profile, started)
        term.run_record = rec  # type: ignore[attr-defined]  # for the command line's summary
        raise term
    rec.wall_s = time.perf_counter() - t0
    _write_runner_json(rec, profile, started)
    if rec.status == "completed":
        _update_latest_if_newest(folder)
    return rec


#: Set by the SIGTERM handler: an error that follows it is part of the interruption, not a failure.
_TERMINATING = False


class _Terminated(BaseException):
    """Raised in the runner by SIGTERM (see :func:`_sigterm_raises`), like KeyboardInterrupt for SIGINT."""


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While running notebooks, SIGTERM unwinds like Ctrl-C: the kernel is shut down and the run
    folder is marked ``interrupted``. (SIGKILL cannot be caught: its folder stays ``running`` in
    ``runner.json``, which :func:`run_status` reads as ``killed`` once the runner is gone.)"""
    def handler(signum: int, frame: Any) -> None:
        global _TERMINATING
        _TERMINATING = True
        # Raising inside nbclient's event loop can leave it waiting forever; stopping the kernel makes
        # papermill return at once (the kernel died), and execute() then marks the run interrupted.
        if not _stop_live_kernels():
            raise _Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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


def export_html(notebook: str | Path, *, no_input: bool = False) -> Path:
    """Export an executed notebook to a self-contained HTML page beside it; returns the path.

    nbconvert's ``lab`` template without the scripts it loads from CDNs (:data:`OFFLINE_TEMPLATE`):
    the page, its styles and its figures (embedded PNGs) work offline. Widget outputs become text
    (:func:`offline_notebook`). ``no_input=True`` is the reader's page: no code cells, no prompts,
    only the text, the figures and the printed results; it is written to ``<stem>.reader.html``
    (the full page goes to ``<stem>.html``).
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
    body, _ = exporter.from_notebook_node(offline_notebook(nbformat.read(src, as_version=4)))
    dst = src.with_name(src.stem + (".reader.html" if no_input else ".html"))
    _write_text_atomic(dst, body)
    return dst


# --------------------------------------------------------------------------------------
# summary
# --------------------------------------------------------------------------------------
#: CSS class of each verdict in ``index.html``: three colours (green, red, amber).
VERDICT_CLASSES: dict[str, str] = {"REPRODUCED": "yes", "CONTRADICTED": "no", "INCONCLUSIVE": "maybe"}


def _row(rec: RunRecord) -> dict[str, Any]:
    finding, label, result, n_seeds, p_value, n_models = rec.info.finding, "no verdict", "", None, None, None
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
            p_value = None if not math.isfinite(v.p_value) else float(f"{v.p_value:.3g}")
            if rec.status == "completed":
                label = v.label
    return {
        "notebook": rec.info.stem,
        "finding": finding,
        "verdict": label,
        "result": result,
        "p_value": p_value,
        "n_models": n_models,
        "n_seeds": n_seeds,
        "wall_s": None if not math.isfinite(rec.wall_s) else round(rec.wall_s, 1),
        "run": "" if rec.folder is None else str(rec.folder),
        "incomplete": "; ".join(f"{f.name} {st}" for f, st in rec.incomplete),
    }


def summary_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """One row per record: notebook, finding, verdict (REPRODUCED, CONTRADICTED, INCONCLUSIVE, or the run's
    status), result (effect and interval), p_value (one-sided, in the paper's direction), n_models,
    n_seeds, wall_s, run folder, and ``incomplete``: the run folders newer than ``run`` that did not
    complete (name and status)."""
    cols = ["notebook", "finding", "verdict", "result", "p_value", "n_models", "n_seeds", "wall_s", "run",
            "incomplete"]
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
        if colour and col == "verdict" and v in _ANSI:
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
        newer = [f for f in run_folders(info.stem, profile, runs_dir)
                 if folder is None or _stamp_key(f.name) > _stamp_key(folder.name)]
        incomplete = [(f, st) for f in newer if (st := run_status(f)) in INCOMPLETE]
        if folder is None:
            if incomplete:
                last, status = incomplete[-1]
                out.append(RunRecord(info=info, status=status, folder=last, output=last / f"{info.stem}.ipynb",
                                     incomplete=incomplete))
            else:
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
                             wall_s=wall, html=nb_html if nb_html.is_file() else None, incomplete=incomplete))
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
        cells = [name, html.escape(str(r["finding"] or "")),
                 f'<span class="{cls}">{html.escape(r["verdict"])}</span>{note}',
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
<p><span class="yes">REPRODUCED</span>: the paper's direction, one-sided p &lt; 0.05 and a 95% interval
that excludes 0; <span class="no">CONTRADICTED</span>: the same, against the paper;
<span class="maybe">INCONCLUSIVE</span>: anything else (smoke runs always).</p>
<table><thead><tr><th>notebook</th><th>finding</th><th>verdict</th><th>effect [95% CI]</th>
<th>p (one-sided)</th><th>models</th><th>seeds</th><th>wall (s)</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table></body></html>
"""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "index.html"
    _write_text_atomic(path, page)
    return path


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# --------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="derain-monograph" if Path(sys.argv[0]).name.startswith("derain-monograph")
        else "python -m derain_utils.monograph",
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
    run.add_argument("--no-progress", action="store_true", help="hide papermill's per-cell progress bar")
    run.add_argument("--log-output", action="store_true",
                     help="stream the notebooks' printed output and progress lines to the terminal (stderr)")

    ls = sub.add_parser("list", help="show the notebooks, their findings and parameters")
    common(ls)

    ex = sub.add_parser("html", help="(re)export the latest completed runs to HTML and write index.html")
    common(ex)
    ex.add_argument("--profile", choices=PROFILES, default=DEFAULT_PROFILE, help="profile (default quick)")
    ex.add_argument("--runs-dir", type=Path, default=None,
                    help="root of run folders (default: $DERAIN_RUNS or <repo>/runs)")
    ex.add_argument("--no-input", action="store_true", help="reader pages without code cells")
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


def _cmd_run(args: argparse.Namespace) -> int:
    runs_dir = _checked_runs_dir(store.runs_root(args.runs_dir))
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
            print(f"== {info.stem} [{args.profile}]", file=sys.stderr)
            try:
                rec = execute(info, args.profile, runs_dir, per_notebook[info.stem],
                              progress=not args.no_progress, log_output=args.log_output)
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
    tmp = root / f".summary.csv.{os.getpid()}.tmp"
    state_table.to_csv(tmp, index=False)
    os.replace(tmp, root / "summary.csv")
    print(f"\nsummary of the latest run of every notebook: {root / 'summary.csv'}")
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


def _cmd_html(args: argparse.Namespace) -> int:
    runs_dir = store.runs_root(args.runs_dir)
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
        if args.command == "list":
            return _cmd_list(args)
        if args.command == "html":
            return _cmd_html(args)
        return _cmd_run(args)
    except (ValueError, OSError) as err:  # OSError: FileNotFoundError, unwritable or full disks
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, _Terminated):
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
