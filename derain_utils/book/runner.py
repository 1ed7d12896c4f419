"""Executing one notebook of the monograph with papermill, into a fresh run folder.

:func:`execute` runs a notebook with ``kernel_name="python3"`` into
``<runs>/<profile>/<stem>/<UTC stamp>/<stem>.ipynb``, passing ``PROFILE`` and ``RUN_DIR`` and any
parameters checked against the notebook's parameters cell (:func:`resolve_parameters`). It writes
``runner.json`` first (status ``running``, host and pid) and rewrites it at the end (``completed``,
``failed`` or ``interrupted``); :func:`run_status` reads a run killed outright as ``killed``.
``latest`` moves to a completed run unless a later-started one completed already. The command line
around it (``run``, ``list``, ``html``), the summary and the HTML pages are
:mod:`derain_utils.book.monograph`.

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

import contextlib
import datetime as _dt
import json
import keyword
import math
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

import yaml

from derain_utils import store
from derain_utils.book import runs

__all__ = [
    "NotebookInfo",
    "RunRecord",
    "discover_notebooks",
    "notebook_info",
    "parse_param",
    "load_params_file",
    "resolve_parameters",
    "preflight",
    "ensure_python3_kernel",
    "execute",
    "run_status",
    "run_folders",
]

KERNEL_NAME = "python3"


RUNNER_FILE = "runner.json"


RUNNER_PARAMS = ("PROFILE", "RUN_DIR")


INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
"""The matplotlib backend of the kernels the runner starts (figures go into the notebook), whatever
``MPLBACKEND`` says in the runner's own environment (``.ci/run`` sets ``Agg``)."""


FOLDER_ENV: tuple[str, ...] = ("DERAIN_RUNS", "DERAIN_DATA")
"""Environment variables naming folders, made absolute for the kernels (:func:`_kernel_environment`)."""
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
    profile_knobs: dict[str, str] = field(default_factory=dict)  # notebook.profile(...) keyword -> parameter


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
                        problems=parameter_cell_problems(nb, params), profile_knobs=_profile_knobs(nb))


def _profile_knobs(nb: Any) -> dict[str, str]:
    """``{profile field: parameter name}`` of the notebook's ``notebook.profile(PROFILE, field=NAME, ...)`` call."""
    import ast

    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:  # magics and other non-Python lines
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "profile"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "notebook"):
                return {k.arg: k.value.id for k in node.keywords if k.arg and isinstance(k.value, ast.Name)}
    return {}


def preflight(info: NotebookInfo, profile: str, values: Mapping[str, Any]) -> None:
    """What a notebook's first cells would refuse, checked in the runner before any kernel starts.

    The profile with the notebook's knobs (``STEPS``, ``SEEDS``, ``N_LIST``, ... as its
    ``notebook.profile`` call maps them), ``DATA_DIR`` (or ``$DERAIN_DATA``), a ``BACKGROUND``
    other than ``auto``, and ``$DERAIN_PRECISION``. Raises ValueError (or OSError) naming the
    notebook and the parameter; a kernel would print the same message after a traceback.
    """
    from derain_utils.book import notebook as book_notebook  # noqa: PLC0415 - the notebooks' own helper
    from derain_utils.nets import training  # noqa: PLC0415
    from derain_utils.synth import backgrounds, data  # noqa: PLC0415

    given = {k: p for k, p in info.profile_knobs.items() if p in values}
    try:
        book_notebook.profile(profile, **{k: values[p] for k, p in given.items()})
    except (ValueError, TypeError) as err:
        names = ", ".join(f"{p}={values[p]!r}" for p in given.values()) or f"profile {profile!r}"
        raise ValueError(f"{info.stem}: {names}: {err}") from None
    try:
        data_dir = values.get("DATA_DIR") or None
        data.data_root(data_dir)
        background = values.get("BACKGROUND")
        if isinstance(background, str) and background not in ("", "auto"):
            backgrounds.get_source(background, data_dir)
        training.resolve_precision("auto")
    except (ValueError, FileNotFoundError, NotADirectoryError) as err:
        raise ValueError(f"{info.stem}: {err}") from None


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


NOTEBOOK_TOOLS: tuple[str, ...] = ("papermill", "nbformat", "nbconvert", "jupytext", "ipykernel")
"""The modules the runner and the HTML pages need (the ``notebooks`` extra)."""


def require_notebook_tools() -> None:
    """Raise ImportError, naming the extra to install, when a notebook tool is missing."""
    import importlib.util

    missing = [m for m in NOTEBOOK_TOOLS if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"the notebook tools are not installed ({', '.join(missing)} missing): "
                          "pip install -e '.[notebooks]' (make install installs them)")


PROGRESS_FILE = "progress.json"
"""The sweeps' progress in a run folder (``$DERAIN_PROGRESS_FILE`` of its kernel), read by :class:`_ProgressLines`."""


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


class _ProgressLines:
    """Prints a line to stderr whenever a running notebook's sweep finishes a model.

    ``01_set_size: trained 37/72 models, ETA 4 min`` (the ETA at the rate of the models trained so far; models
    read from the cache count as done at once). A thread polls the run folder's :data:`PROGRESS_FILE` every
    ``interval`` seconds; it stops with the notebook.
    """

    def __init__(self, stem: str, path: Path, interval: float = 2.0, stream: Any = None) -> None:
        import threading

        self.stem, self.path, self.interval = stem, path, interval
        self.stream = stream if stream is not None else sys.stderr
        self.last: tuple[Any, ...] | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=f"progress-{stem}", daemon=True)

    def __enter__(self) -> _ProgressLines:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self.poll()  # the last state, if the final update came between two polls

    def _loop(self) -> None:
        while not self.stop.wait(self.interval):
            self.poll()

    def poll(self) -> str | None:
        """Print (and return) the progress line when the file says something new."""
        try:
            rec = json.loads(self.path.read_text(encoding="utf-8"))
            key = (rec["what"], int(rec["done"]), int(rec["total"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if key == self.last:
            return None
        self.last = key
        eta = rec.get("eta_s")
        tail = (", all done" if key[1] >= key[2] else
                f", ETA {_minutes(float(eta))}" if isinstance(eta, (int, float)) else "")
        cached = f" ({rec['cached']} from the cache)" if rec.get("cached") else ""
        line = f"{self.stem}: {key[0]} {key[1]}/{key[2]} models{cached}{tail}"
        print(line, file=self.stream, flush=True)
        return line


@contextlib.contextmanager
def _kernel_environment() -> Iterator[None]:
    """The environment the runner's kernels start in, restored afterwards.

    * the folder holding this ``derain_utils`` is prepended to ``PYTHONPATH``;
    * the folders of :data:`FOLDER_ENV` (``DERAIN_RUNS``, ``DERAIN_DATA``) made absolute, since the
      kernel runs in the notebooks' folder;
    * :data:`KERNEL_ENV`: matplotlib's inline backend (figures are saved into the executed
      notebook even when the runner runs with ``MPLBACKEND=Agg``), and text progress bars
      (``DERAIN_PROGRESS=text``) that ``--log-output`` streams to the terminal.
    """
    root = str(store.repo_root())
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "JPY_PARENT_PID", *FOLDER_ENV, *KERNEL_ENV)}
    old = saved["PYTHONPATH"]
    parts = [root] + ([p for p in old.split(os.pathsep) if p and p != root] if old else [])
    os.environ["PYTHONPATH"] = os.pathsep.join(parts)
    for key in FOLDER_ENV:  # the kernel starts in notebooks/: a relative folder would name another place there
        if saved[key]:
            os.environ[key] = str(Path(saved[key]).expanduser().absolute())
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


@contextlib.contextmanager
def _progress_env(path: Path) -> Iterator[None]:
    """``$DERAIN_PROGRESS_FILE`` = ``path`` for the kernel started inside (restored afterwards)."""
    from derain_utils.lab.sweeps import PROGRESS_ENV

    saved = os.environ.get(PROGRESS_ENV)
    os.environ[PROGRESS_ENV] = str(path)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(PROGRESS_ENV, None)
        else:
            os.environ[PROGRESS_ENV] = saved


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
    outside: list[Path] = field(default_factory=list)  # newer run folders made outside the runner (not shown)


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


def _mark_killed(folder: Path, record: dict[str, Any], why: str) -> None:
    """Write ``status: killed`` into a run folder whose runner is gone, with when and how it was found
    (best effort: a folder that cannot be written keeps its record and is still read as killed)."""
    record = {**record, "status": "killed", "killed_found_utc": store.utc_stamp(), "error": why}
    with contextlib.suppress(OSError):  # store.write_json is atomic and leaves no temporary file
        store.write_json(folder / RUNNER_FILE, record, strict=False, what="run record")


def run_status(folder: str | Path, *, mark: bool = False) -> str:
    """What a run folder's ``runner.json`` says, checked against the process that wrote it.

    ``completed``, ``failed``, ``interrupted`` (SIGTERM, SIGINT) or ``killed`` as recorded; ``running``
    while the runner that writes it is alive (or on another host, where that cannot be checked);
    ``killed`` when it says running but its process is gone (SIGKILL, power loss, out of memory);
    ``unmarked`` without a readable ``runner.json`` (a folder made by an interactive run, or by a
    runner before 2026-12). With ``mark``, a run found killed is marked so in its ``runner.json``
    (``status``, ``killed_found_utc`` and the reason in ``error``), so the folder tells the truth to
    anyone who reads it; the summary, ``list`` and ``html`` mark what they find.
    """
    folder = Path(folder)
    path = folder / RUNNER_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        status = str(record.get("status", ""))
    except (OSError, ValueError, AttributeError):
        # an empty folder is a run killed between creating its folder and marking it
        if folder.is_dir() and not any(folder.iterdir()):
            if mark:
                _mark_killed(folder, {"notebook": folder.parent.name, "started_utc": None},
                             "killed before its runner wrote anything (the folder was empty)")
            return "killed"
        return "unmarked"
    if status != "running":
        return status or "unmarked"
    if record.get("host") != socket.gethostname() or not isinstance(record.get("pid"), int):
        return "running"
    pid = record["pid"]
    why = None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        why = f"its runner (pid {pid} on {record.get('host')}) was gone: killed outright (SIGKILL, power loss)"
    except PermissionError:
        pass  # alive, another user's
    started = record.get("pid_start")
    if why is None and started is not None and _process_start(pid) not in (None, started):
        why = f"its runner (pid {pid}) was gone and the pid belongs to another process now"
    if why is None:
        return "running"
    if mark:
        _mark_killed(folder, record, why)
    return "killed"


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

    for earlier in run_folders(info.stem, profile, runs_dir):  # earlier runs killed outright say so from now on
        run_status(earlier, mark=True)
    folder = runs.new_run_dir(info.stem, profile, runs_dir)
    output = folder / f"{info.stem}.ipynb"
    parameters = {"PROFILE": profile, "RUN_DIR": str(folder), **params}
    rec = RunRecord(info=info, status="running", folder=folder, output=output, parameters=parameters)
    started = store.utc_stamp()
    _write_runner_json(rec, profile, started)  # marks the folder before anything else is written into it
    rec.status = "failed"
    t0 = time.perf_counter()
    lines = _ProgressLines(info.stem, folder / PROGRESS_FILE) if progress and not log_output else None
    try:
        with _kernel_environment(), _progress_env(folder / PROGRESS_FILE), lines or contextlib.nullcontext():
            papermill.execute_notebook(
                str(info.path), str(output), parameters=parameters, kernel_name=KERNEL_NAME,
                cwd=str(info.path.parent), progress_bar=False, log_output=log_output,
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
