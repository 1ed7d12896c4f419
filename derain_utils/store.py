"""The store: where the monograph keeps what it computed, and how it writes it.

Every file the package leaves on disk (cache entries of trained models, run folders of the
notebooks, report cards) goes through this module, so that the rules below hold everywhere.

Roots
    :func:`runs_root` is ``base`` (an explicit argument) > ``$DERAIN_RUNS`` > ``<repo>/runs``;
    :func:`cache_root` is ``root`` > ``$DERAIN_RUNS/cache`` > ``<repo>/runs/cache``. Nothing
    else reads ``DERAIN_RUNS``.
Folders
    :func:`ensure_dir` creates a folder or says, naming the path, why it cannot: a file in
    its place, or no permission to write (:class:`StoreError`, an ``OSError``).
Atomic writes
    :func:`write_bytes`, :func:`write_text`, :func:`write_json` and :func:`write_csv` write
    a temporary file beside the target, flush it to disk and rename it over the target, so a
    reader sees the old file or the whole new one, never a half-written one.
JSON
    :func:`to_jsonable` turns numpy, pandas, paths, dataclasses and NaN (-> ``null``) into
    plain JSON types; :func:`write_json` uses it, with ``indent=2`` and no NaN.
Checksums and manifests
    :func:`file_hash` is the sha256 of a file (``pooch.file_hash``). A folder whose files must
    be trusted later gets a ``manifest.json`` (:func:`write_manifest`, written last) listing
    the checksum of every file; :func:`check_manifest` says why a folder cannot be trusted,
    or None.
Locks
    :class:`EntryLock` keeps two processes from computing the same folder. It is a
    ``filelock.FileLock`` (``flock``): the operating system releases the lock of a process
    that dies, so a dead holder never blocks anyone and a left-over empty ``.lock`` file is
    free. The holder writes who it is (pid, host, start time) beside the lock; a waiting
    process logs the path and the holder when it starts waiting and every 30 s after, and
    never waits silently.
Provenance
    :func:`provenance` records what made a result: time, git commit (and whether the tree
    was dirty), Python, platform, package versions, device and parameters.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import errno
import importlib.metadata
import json
import logging
import math
import os
import platform
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from derain_utils import __version__

__all__ = [
    "RUNS_ENV",
    "MANIFEST",
    "LOCK_FILE",
    "HOLDER_FILE",
    "StoreError",
    "repo_root",
    "runs_root",
    "cache_root",
    "ensure_dir",
    "write_bytes",
    "write_text",
    "write_json",
    "write_csv",
    "read_json",
    "to_jsonable",
    "file_hash",
    "write_manifest",
    "check_manifest",
    "EntryLock",
    "describe_device",
    "provenance",
    "utc_stamp",
]

log = logging.getLogger(__name__)

RUNS_ENV = "DERAIN_RUNS"
"""Environment variable naming the root of run folders and of the model cache."""
MANIFEST = "manifest.json"
"""File listing the checksum of every file of a folder; written last, it marks the folder complete."""
LOCK_FILE = ".lock"
"""The lock file of a folder (:class:`EntryLock`)."""
HOLDER_FILE = ".lock.holder"
"""Beside the lock: who holds it (pid, host, since), for the messages of a waiting process."""

T = TypeVar("T")


class StoreError(OSError):
    """A file or folder of the store cannot be used (a file where a folder belongs, no permission, ...).

    The message names the path and says what to do; nothing already stored is touched.
    """


# --------------------------------------------------------------------------- roots


def repo_root() -> Path:
    """The folder holding the ``derain_utils`` package (the repository root in a checkout)."""
    return Path(__file__).resolve().parent.parent


def runs_root(base: str | os.PathLike | None = None) -> Path:
    """Root of all run folders: ``base`` > ``$DERAIN_RUNS`` > ``<repo>/runs``, as an absolute path
    (a relative one is taken from the current folder now, so it names the same folder after a
    ``chdir``, e.g. in a notebook kernel that papermill starts in ``notebooks/``)."""
    if base is not None and str(base) != "":
        return Path(base).expanduser().absolute()
    env = os.environ.get(RUNS_ENV)
    if env:
        return Path(env).expanduser().absolute()
    return repo_root() / "runs"


def cache_root(root: str | os.PathLike | None = None) -> Path:
    """The model cache: explicit ``root`` > ``$DERAIN_RUNS/cache`` > ``<repo>/runs/cache``."""
    if root is not None and str(root) != "":
        return Path(root).expanduser()
    return runs_root() / "cache"


# --------------------------------------------------------------------------- folders


def _blocking_file(path: Path) -> Path | None:
    """``path`` or its nearest ancestor that exists but is not a folder (None when there is none)."""
    for p in (path, *path.parents):
        if p.exists() or p.is_symlink():
            return None if p.is_dir() else p
    return None


def ensure_dir(path: str | os.PathLike, what: str = "folder") -> Path:
    """Create the folder ``path`` (and its parents) if needed; return it.

    Raises:
        StoreError: a file stands where the folder (or one of its parents) belongs, or the
            folder cannot be created (no permission, read-only file system); ``what``
            (e.g. ``"cache root"``) and the path are named.
    """
    p = Path(path)
    blocker = _blocking_file(p)
    if blocker is not None:
        where = "" if blocker == p else f" (its parent {blocker} is a file)"
        raise StoreError(f"{what} {p} cannot be a folder{where}: {blocker} is a file; move it away or "
                         "choose another location")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"cannot create {what} {p}: {e.strerror or e}; is the location read-only?") from e
    return p


def write_error(path: str | os.PathLike, what: str, err: OSError) -> StoreError:
    """The :class:`StoreError` for ``err`` raised while writing ``what`` at ``path``: it names the path and, for
    a read-only location or a full disk, says so."""
    reason = err.strerror or str(err)
    hint = (" (read-only location?)" if isinstance(err, PermissionError) or err.errno == errno.EROFS else
            " (is the disk full?)" if err.errno == errno.ENOSPC else "")
    return StoreError(f"cannot write {what} {path}: {reason}{hint}")


# --------------------------------------------------------------------------- atomic writes


def write_bytes(path: str | os.PathLike, data: bytes, *, what: str = "file") -> Path:
    """Write ``data`` to ``path`` atomically (readers see the old file or the whole new one).

    The parent folder must exist. Raises :class:`StoreError` naming the path when it cannot
    be written (no permission, a folder in the way, ...); no temporary file is left behind.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise write_error(path, what, e) from e
    return path


def write_text(path: str | os.PathLike, text: str, *, what: str = "file") -> Path:
    """:func:`write_bytes` of ``text`` in UTF-8."""
    return write_bytes(path, text.encode("utf-8"), what=what)


def write_json(path: str | os.PathLike, obj: Any, *, sort_keys: bool = False, strict: bool = True,
               what: str = "file") -> Path:
    """Write ``obj`` as JSON (``indent=2``, NaN -> null, trailing newline), atomically.

    ``obj`` goes through :func:`to_jsonable` first (``strict``: an object it cannot store
    raises ValueError naming its location; else it is stored as its repr).
    """
    text = json.dumps(to_jsonable(obj, where=Path(path).name, strict=strict), indent=2, sort_keys=sort_keys,
                      allow_nan=False)
    return write_text(path, text + "\n", what=what)


def write_csv(path: str | os.PathLike, df: pd.DataFrame, *, what: str = "table") -> Path:
    """Write ``df`` as CSV without its index, atomically."""
    return write_text(path, df.to_csv(index=False), what=what)


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    """Parse the JSON file ``path``; a missing, unreadable or malformed file raises ValueError naming it."""
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{what} {p} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{what} {p} cannot be read: {e}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{what} {p} is not valid JSON: {e}") from None


# --------------------------------------------------------------------------- JSON


def to_jsonable(obj: Any, *, where: str = "value", strict: bool = True) -> Any:
    """Convert ``obj`` into plain JSON types.

    numpy scalars/arrays -> Python numbers/lists; NaN and +-inf -> ``None``;
    tuples/sets -> lists; ``Path`` -> str; datetimes -> ISO strings; dataclasses and
    objects with ``to_dict()`` -> dicts; pandas Series/DataFrame -> lists/records.
    Anything else raises ValueError naming ``where`` (its location) when ``strict``,
    else becomes ``repr(obj)``.
    """
    if obj is None or isinstance(obj, (str, bool)):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (_dt.datetime, _dt.date)):
        return obj.isoformat()
    if isinstance(obj, np.ndarray):
        return [to_jsonable(v, where=f"{where}[{i}]", strict=strict) for i, v in enumerate(obj.tolist())]
    if isinstance(obj, pd.DataFrame):
        return to_jsonable(obj.to_dict(orient="records"), where=where, strict=strict)
    if isinstance(obj, pd.Series):
        return to_jsonable(obj.tolist(), where=where, strict=strict)
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v, where=f"{where}.{k}", strict=strict) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v, where=f"{where}[{i}]", strict=strict) for i, v in enumerate(obj)]
    if isinstance(obj, (set, frozenset)):
        return [to_jsonable(v, where=where, strict=strict) for v in sorted(obj, key=repr)]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj), where=where, strict=strict)
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return to_jsonable(obj.to_dict(), where=where, strict=strict)
    if hasattr(obj, "tolist") and callable(obj.tolist):  # torch tensors and other array types
        try:
            return to_jsonable(obj.tolist(), where=where, strict=strict)
        except (TypeError, ValueError, RuntimeError):
            pass
    if hasattr(obj, "item") and callable(obj.item):  # 0-d tensors and the like
        try:
            return to_jsonable(obj.item(), where=where, strict=strict)
        except (TypeError, ValueError, RuntimeError):
            pass
    if strict:
        raise ValueError(f"{where}: cannot store a {type(obj).__name__} in JSON ({obj!r:.80})")
    return repr(obj)


# --------------------------------------------------------------------------- checksums and manifests


def file_hash(path: str | os.PathLike) -> str:
    """Hex sha256 of a file (``pooch.file_hash``)."""
    import pooch

    return pooch.file_hash(str(path), alg="sha256")


def write_manifest(folder: str | os.PathLike, files: Iterable[str], **fields: Any) -> Path:
    """Write ``<folder>/manifest.json``: ``fields`` and the sha256 of every file named in ``files``.

    Write it LAST: its presence marks the folder complete.
    """
    folder = Path(folder)
    record = {**fields, "files": {name: file_hash(folder / name) for name in files}}
    return write_json(folder / MANIFEST, record, sort_keys=True, what="manifest")


def check_manifest(folder: str | os.PathLike, files: Iterable[str]) -> str | None:
    """None when ``folder`` holds a manifest listing every name of ``files``, each present and unchanged.

    Otherwise the reason it cannot be trusted, in words (``"no manifest.json"``,
    ``"model.pt does not match its checksum"``, ...).
    """
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        present = sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []
        return f"incomplete (no {MANIFEST}; present: {present or 'nothing'})"
    try:
        listed = json.loads(path.read_text(encoding="utf-8"))["files"]
        if not isinstance(listed, dict):
            raise TypeError("files is not a mapping")
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"{MANIFEST} is unreadable ({e})"
    for name in files:
        if name not in listed:
            return f"{MANIFEST} does not list {name}"
    for name, digest in listed.items():
        p = folder / name
        if not p.is_file():
            return f"{name} is missing"
        try:
            if file_hash(p) != digest:
                return f"{name} does not match its checksum"
        except OSError as e:
            return f"{name} cannot be read ({e.strerror or e})"
    return None


# --------------------------------------------------------------------------- locks


def _pid_alive(pid: int) -> bool | None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return None  # exists (another user's) or cannot be asked
    return True


class EntryLock:
    """An exclusive lock on one folder of the store, e.g. a cache entry being computed.

    ``<folder>/.lock`` is a ``filelock.FileLock`` (``flock``): a process that dies releases it,
    so only a *living* process can make another wait, and a left-over ``.lock`` file is free.
    The holder records itself in ``<folder>/.lock.holder`` (pid, host, start time) so that a
    waiting process can say whom it is waiting for.

    Usage::

        lock = EntryLock(entry, what="cache entry")
        done = lock.acquire(done=lambda: cached_result_or_None())   # waits, with messages
        if done is not None: ...                                      # another process finished it
        try: ... finally: lock.release()
    """

    def __init__(self, folder: str | os.PathLike, *, what: str = "cache entry") -> None:
        import filelock

        self.folder = Path(folder)
        self.what = what
        self.path = self.folder / LOCK_FILE
        self.holder_path = self.folder / HOLDER_FILE
        self._lock = filelock.FileLock(str(self.path))
        self._timeout = filelock.Timeout

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return bool(self._lock.is_locked)

    def holder(self) -> dict[str, Any] | None:
        """Who holds (or last held) the lock, from the holder file: ``pid``, ``host``, ``since``; None if unknown."""
        try:
            info = json.loads(self.holder_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) else None

    def describe_holder(self) -> str:
        """``"pid 123 on host h since 12:00:01 UTC"`` (``"(not running)"`` when that pid is gone on this host)."""
        info = self.holder()
        if not info:
            return "a process that left no holder record"
        pid, host, since = info.get("pid"), info.get("host"), info.get("since")
        text = f"pid {pid} on host {host}"
        if isinstance(since, (int, float)):
            text += " since " + time.strftime("%H:%M:%S UTC", time.gmtime(since))
        if host == socket.gethostname() and isinstance(pid, int) and _pid_alive(pid) is False:
            text += " (not running: the lock is held by a process it started, or is being released)"
        return text

    def try_acquire(self) -> bool:
        """Take the lock if it is free (no waiting); True on success.

        Raises:
            StoreError: the lock file cannot be created or opened (read-only cache, a folder
                in its place); the message names the folder.
        """
        if not self.folder.is_dir():
            raise StoreError(f"{self.what} {self.folder} is not a folder: cannot lock it")
        try:
            self._lock.acquire(timeout=0)
        except self._timeout:
            return False
        except OSError as e:
            raise StoreError(f"cannot lock {self.what} {self.folder}: {e.strerror or e}; it would have to be "
                             "(re)computed, which needs a writable cache (read-only location?)") from e
        try:
            write_json(self.holder_path, {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()},
                       what="lock holder record")
        except StoreError:
            self._lock.release()
            raise
        return True

    def acquire(
        self,
        *,
        timeout: float | None = None,
        poll: float = 0.5,
        notify_every: float = 30.0,
        done: Callable[[], T | None] | None = None,
    ) -> T | None:
        """Wait until the lock is ours; return None then (the caller must :meth:`release` it).

        While another process holds it, a warning names the folder and the holder when the
        wait starts and every ``notify_every`` seconds. ``done`` (optional) is asked after
        every failed attempt whether the work is already finished; a non-None answer ends
        the wait and is returned (the lock is then NOT held).

        Raises:
            TimeoutError: still held by another process after ``timeout`` seconds (None =
                wait as long as the holder lives); the message names the folder and holder.
            StoreError: see :meth:`try_acquire`.
        """
        t0 = time.monotonic()
        last_note: float | None = None
        while not self.try_acquire():
            if done is not None:
                result = done()
                if result is not None:
                    return result
            now = time.monotonic()
            waited = now - t0
            if last_note is None or now - last_note >= notify_every:
                log.warning("waiting for %s %s: it is being computed by %s (waited %.0f s so far)",
                            self.what, self.folder, self.describe_holder(), waited)
                last_note = now
            if timeout is not None and waited >= timeout:
                raise TimeoutError(f"{self.what} {self.folder} stayed locked for {timeout:g} s by "
                                   f"{self.describe_holder()}; stop that process, or wait for it")
            time.sleep(poll)
        return None

    def release(self) -> None:
        """Let go of the lock (its file stays; a dead holder's lock is released by the OS anyway)."""
        if self.held:
            try:
                self.holder_path.unlink(missing_ok=True)
            except OSError:
                pass
            self._lock.release()

    def __enter__(self) -> EntryLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


# --------------------------------------------------------------------------- provenance

PROVENANCE_PACKAGES = ("torch", "numpy", "scipy", "pandas", "scikit-image", "matplotlib", "seaborn", "papermill")
"""Packages whose versions :func:`provenance` records (plus ``derain_utils``)."""


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        res = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def _git_info() -> dict[str, Any] | None:
    """Commit and dirty flag of the git work tree that holds this package's source; None if there is none.

    A package installed inside an (ignored) virtual environment that happens to sit in a
    repository is not that repository's source, so it reports None.
    """
    pkg = Path(__file__).resolve().parent
    top = _git(["rev-parse", "--show-toplevel"], pkg)
    if top is None:
        return None
    if _git(["check-ignore", "-q", str(pkg / "__init__.py")], pkg) is not None:
        return None  # git check-ignore exits 0 when ignored
    commit = _git(["rev-parse", "HEAD"], pkg)  # None before the first commit
    status = _git(["status", "--porcelain", "--untracked-files=no"], pkg)
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def _package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PROVENANCE_PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    out["derain_utils"] = __version__
    return out


def describe_device(device: Any = None) -> str:
    """``"cuda:0 (NVIDIA ...)"``, ``"mps"`` or ``"cpu (N threads, M cores)"``; None = the best available."""
    import torch

    if device is None:
        if torch.cuda.is_available():
            device = torch.device("cuda", torch.cuda.current_device())
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            device = torch.device("mps")
        else:
            device = torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    if dev.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads, {os.cpu_count()} cores)"
    return str(dev)


def provenance(params: Mapping[str, Any] | None = None, device: Any = None, **extra: Any) -> dict[str, Any]:
    """What made a result: code version, environment, device, parameters (a JSON-safe dict).

    Keys: ``timestamp_utc`` (ISO 8601), ``git`` (``{"commit", "dirty"}`` of the repository
    holding the package, or None outside a git work tree), ``python``, ``implementation``,
    ``platform``, ``packages`` (versions of :data:`PROVENANCE_PACKAGES` and derain_utils;
    None when absent), ``device`` (:func:`describe_device`), ``params`` (converted with
    :func:`to_jsonable`, unknown objects kept as their repr), then ``extra``. No user names.
    """
    if params is not None and not isinstance(params, Mapping):
        raise ValueError(f"params must be a mapping of parameter names to values, got {type(params).__name__}")
    record = {
        "timestamp_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git": _git_info(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "packages": _package_versions(),
        "device": describe_device(device),
        "params": to_jsonable(dict(params or {}), where="params", strict=False),
    }
    record.update(to_jsonable(extra, where="provenance", strict=False))
    return record


def utc_stamp(when: _dt.datetime | None = None) -> str:
    """UTC time stamp used as a folder name, e.g. ``20261126T123456Z`` (sorts chronologically)."""
    when = when or _dt.datetime.now(_dt.timezone.utc)
    return when.astimezone(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
