"""Run folders: where one execution of a notebook (or a report card) puts its outputs.

Outputs go to ``<runs>/<profile>/<notebook>/<UTC stamp>/`` where ``<runs>`` is
:func:`derain_utils.store.runs_root` (``$DERAIN_RUNS`` or ``<repo>/runs``). A run never
writes over an older one: each run gets a fresh folder, and ``latest`` (a relative
symlink, or ``latest.txt`` where symlinks are unavailable) names the newest complete one.
The monograph runner (``python -m derain_utils.book.monograph``) creates the folder and hands it
to the notebook as the papermill parameter ``RUN_DIR``; a notebook opened in JupyterLab (or run with
papermill directly) has ``RUN_DIR = ""`` and :func:`resolve_run_dir` makes its own. Only the runner moves
``latest``: a run outside it leaves ``latest`` where it was (its folder holds no executed notebook for the
index to show) and marks its folder with :data:`OUTSIDE_FILE`; the summary and ``monograph html`` list such
runs with a warning.

A finished run folder holds the executed notebook, ``results.csv`` (:func:`write_results`,
a tidy table), ``provenance.json`` (:func:`write_provenance`), ``verdict.json``
(:mod:`derain_utils.stats.verdict`) and the figures ``fig_*.png``. Every file is written
atomically (:mod:`derain_utils.store`).
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from derain_utils import store

__all__ = [
    "OUTSIDE_FILE",
    "RESULTS_FILE",
    "PROVENANCE_FILE",
    "LATEST",
    "LATEST_TXT",
    "new_run_dir",
    "update_latest",
    "latest_run",
    "run_dir",
    "resolve_run_dir",
    "write_results",
    "write_provenance",
]

RESULTS_FILE = "results.csv"
PROVENANCE_FILE = "provenance.json"
OUTSIDE_FILE = "outside_runner.json"
"""Marks a run folder made outside the monograph runner (JupyterLab, papermill without ``RUN_DIR``)."""

LATEST = "latest"
LATEST_TXT = "latest.txt"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def _check_name(value: Any, field: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value) or value in (LATEST, LATEST_TXT):
        raise ValueError(f"{field} must be a plain folder name (letters, digits, '_', '-', '.'), got {value!r}")
    return value


def new_run_dir(notebook: str, profile: str, base: str | Path | None = None, *, stamp: str | None = None) -> Path:
    """Create and return a fresh ``<runs>/<profile>/<notebook>/<UTC stamp>`` folder.

    Never reuses a folder: when the stamp exists already (two runs within one
    second) a suffix ``-2``, ``-3``, ... is added. Does not move ``latest``.

    Raises:
        ValueError: a name that is not a plain folder name.
        StoreError: the runs folder cannot be created (a file in its place, read-only); named.
    """
    parent = store.runs_root(base) / _check_name(profile, "profile") / _check_name(notebook, "notebook")
    store.ensure_dir(parent, "runs folder")
    stamp = _check_name(stamp, "stamp") if stamp is not None else store.utc_stamp()
    for k in range(1, 10_000):
        folder = parent / (stamp if k == 1 else f"{stamp}-{k}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        except OSError as e:
            raise store.StoreError(f"cannot create run folder {folder}: {e.strerror or e}") from e
        return folder
    raise RuntimeError(f"could not create a fresh run folder under {parent}")  # pragma: no cover


def update_latest(folder: str | Path) -> Path:
    """Point ``<folder's parent>/latest`` at ``folder``; returns the pointer's path.

    The pointer is a relative symlink (so the runs tree can be moved), swapped in
    atomically. Where symlinks are unavailable it is a ``latest.txt`` file holding
    the folder name instead. A real file or folder named ``latest`` is a StoreError
    (it was silently bypassed by ``latest.txt``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"run folder {folder} does not exist")
    link = folder.parent / LATEST
    if link.exists() and not link.is_symlink():
        raise store.StoreError(
            f"{str(link)!r} is a real {'folder' if link.is_dir() else 'file'}, not the pointer to the newest run "
            f"that this name is kept for; move it away (run folders are named by their UTC start stamp)")
    tmp = folder.parent / f".{LATEST}.{os.getpid()}.tmp"
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(folder.name, tmp, target_is_directory=True)
        os.replace(tmp, link)
    except OSError:
        if tmp.is_symlink():
            tmp.unlink()
        return store.write_text(folder.parent / LATEST_TXT, folder.name + "\n", what="latest-run pointer")
    stale = folder.parent / LATEST_TXT
    if stale.exists():
        stale.unlink()
    return link


def latest_run(notebook: str, profile: str, base: str | Path | None = None) -> Path | None:
    """The folder ``latest`` points at for this notebook and profile, or None when there is none."""
    parent = store.runs_root(base) / _check_name(profile, "profile") / _check_name(notebook, "notebook")
    link = parent / LATEST
    if link.is_symlink() and link.resolve().is_dir():
        return parent / os.readlink(link)
    txt = parent / LATEST_TXT
    if txt.is_file():
        target = parent / txt.read_text(encoding="utf-8").strip()
        if target.is_dir():
            return target
    return None


def run_dir(notebook: str, profile: str, base: str | Path | None = None) -> Path:
    """A fresh run folder for a run outside the runner, marked with :data:`OUTSIDE_FILE`; ``latest`` stays put."""
    import datetime as _dt
    import socket

    folder = new_run_dir(notebook, profile, base)
    store.write_json(folder / OUTSIDE_FILE, {
        "notebook": notebook, "profile": profile, "pid": os.getpid(), "host": socket.gethostname(),
        "started_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "note": "run outside the monograph runner (JupyterLab, or papermill without RUN_DIR): latest was not moved",
    }, what="outside-runner marker")
    return folder


def resolve_run_dir(RUN_DIR: str | Path | None, notebook: str, profile: str, base: str | Path | None = None) -> Path:
    """The folder a notebook writes into.

    Under the runner ``RUN_DIR`` is the folder it created (returned, created if
    missing). In JupyterLab ``RUN_DIR`` is ``""``/None: a fresh folder is made with
    :func:`run_dir` under ``<runs>/<profile>/<notebook>/``, marked as a run outside the runner (``latest``
    is the runner's alone).
    """
    if RUN_DIR is not None and str(RUN_DIR).strip():
        return store.ensure_dir(Path(RUN_DIR).expanduser(), "run folder")
    return run_dir(notebook, profile, base)


def write_results(
    run_dir: str | Path, df: pd.DataFrame, required_columns: Sequence[str] | None = None
) -> Path:
    """Write the tidy results table ``<run_dir>/results.csv`` (no index), atomically; returns its path.

    ``df`` must be a non-empty DataFrame with unique string column names holding
    every name in ``required_columns`` (else ValueError naming the missing ones).
    """
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    if df.empty:
        raise ValueError("df is empty: a results table needs at least one row")
    cols = list(df.columns)
    if not all(isinstance(c, str) for c in cols) or len(set(cols)) != len(cols):
        raise ValueError(f"results columns must be unique strings (a tidy table), got {cols}")
    missing = [c for c in (required_columns or []) if c not in cols]
    if missing:
        raise ValueError(f"results table lacks required column(s) {missing}; it has {cols}")
    folder = store.ensure_dir(run_dir, "run folder")
    return store.write_csv(folder / RESULTS_FILE, df, what="results table")


def write_provenance(
    run_dir: str | Path, params: Mapping[str, Any] | None = None, device: Any = None, **extra: Any
) -> Path:
    """Write :func:`store.provenance` (plus ``extra`` keys) to ``<run_dir>/provenance.json``; returns its path."""
    record = store.provenance(params, device, **extra)
    folder = store.ensure_dir(run_dir, "run folder")
    return store.write_json(folder / PROVENANCE_FILE, record, what="provenance record")
