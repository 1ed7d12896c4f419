"""derain_utils.store: roots, folders, atomic writes, JSON, checksums, manifests, locks, provenance.

Bad inputs and faults are answered by a clear error naming the path (never a raw traceback
from deep inside), and nothing already stored is touched.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from derain_utils import store
from derain_utils.synth import data

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- roots and folders


def test_roots_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("DERAIN_RUNS", str(tmp_path / "runs"))
    assert store.runs_root() == tmp_path / "runs" and store.cache_root() == tmp_path / "runs" / "cache"
    assert store.runs_root(tmp_path / "x") == tmp_path / "x" and store.cache_root(tmp_path / "c") == tmp_path / "c"
    monkeypatch.delenv("DERAIN_RUNS")
    assert store.runs_root() == REPO / "runs" and store.cache_root() == REPO / "runs" / "cache"
    assert store.repo_root() == REPO


def test_ensure_dir_names_a_file_in_the_way(tmp_path):
    assert store.ensure_dir(tmp_path / "a" / "b", "cache root").is_dir()
    (tmp_path / "f").write_text("x")
    with pytest.raises(store.StoreError, match=rf"cache root {tmp_path / 'f'} cannot be a folder.*is a file"):
        store.ensure_dir(tmp_path / "f", "cache root")
    with pytest.raises(store.StoreError, match=rf"its parent {tmp_path / 'f'} is a file"):
        store.ensure_dir(tmp_path / "f" / "deeper", "cache entry")
    assert (tmp_path / "f").read_text() == "x"  # untouched
    assert isinstance(store.StoreError("x"), OSError)


# --------------------------------------------------------------------------- atomic writes and JSON


def test_atomic_writes_replace_whole_files_and_leave_no_temporary(tmp_path):
    p = tmp_path / "t.json"
    store.write_json(p, {"a": np.float32(1.5), "b": float("nan"), "c": (1, 2), "d": Path("/x")})
    assert p.read_text().endswith("\n") and json.loads(p.read_text()) == {"a": 1.5, "b": None, "c": [1, 2], "d": "/x"}
    store.write_text(p, "new")
    assert p.read_text() == "new"
    df = pd.DataFrame({"x": [1, 2], "y": [0.5, np.nan]})
    store.write_csv(tmp_path / "t.csv", df)
    assert (tmp_path / "t.csv").read_text() == df.to_csv(index=False)
    assert sorted(q.name for q in tmp_path.iterdir()) == ["t.csv", "t.json"]


def test_a_write_that_fails_names_the_path_and_keeps_the_old_file(tmp_path, monkeypatch):
    (tmp_path / "folder").mkdir()
    with pytest.raises(store.StoreError, match=rf"cannot write results table {tmp_path / 'folder'}"):
        store.write_text(tmp_path / "folder", "x", what="results table")
    p = store.write_text(tmp_path / "keep.txt", "old")

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(store.StoreError, match=r"keep\.txt: No space left"):
        store.write_text(p, "new")
    assert p.read_text() == "old" and sorted(q.name for q in tmp_path.iterdir()) == ["folder", "keep.txt"]


def test_read_json_names_the_file(tmp_path):
    with pytest.raises(ValueError, match=r"config .*nope\.json does not exist"):
        store.read_json(tmp_path / "nope.json", "config")
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(ValueError, match=r"bad\.json is not valid JSON"):
        store.read_json(tmp_path / "bad.json")


def test_to_jsonable_handles_tensors_and_rejects_the_unknown():
    import torch

    converted = store.to_jsonable({"t": torch.tensor([1.5, float("nan")]), "s": torch.tensor(2)})
    assert converted == {"t": [1.5, None], "s": 2}
    with pytest.raises(ValueError, match=r"value\.k"):
        store.to_jsonable({"k": object()})
    assert store.to_jsonable({"k": object()}, strict=False)["k"].startswith("<object")


# --------------------------------------------------------------------------- checksums and manifests


def test_one_checksum_for_the_package(tmp_path):
    p = tmp_path / "blob.bin"
    p.write_bytes(os.urandom(3000))
    assert store.file_hash(p) == hashlib.sha256(p.read_bytes()).hexdigest()
    assert data.sha256_file is store.file_hash  # data's checksum is the store's


def test_manifest_detects_every_kind_of_damage(tmp_path):
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text(name)
    assert store.check_manifest(tmp_path, ["a.txt", "b.txt"]).startswith("incomplete (no manifest.json")
    store.write_manifest(tmp_path, ["a.txt", "b.txt"], key="k")
    assert json.loads((tmp_path / "manifest.json").read_text())["key"] == "k"
    assert store.check_manifest(tmp_path, ["a.txt", "b.txt"]) is None
    assert store.check_manifest(tmp_path, ["a.txt", "c.txt"]) == "manifest.json does not list c.txt"
    (tmp_path / "a.txt").write_text("A")
    assert store.check_manifest(tmp_path, ["a.txt"]) == "a.txt does not match its checksum"
    (tmp_path / "b.txt").unlink()
    assert store.check_manifest(tmp_path, []) in ("a.txt does not match its checksum", "b.txt is missing")
    (tmp_path / "manifest.json").write_text("{")
    assert store.check_manifest(tmp_path, []).startswith("manifest.json is unreadable")


# --------------------------------------------------------------------------- locks

HOLD = textwrap.dedent("""
    import sys, time
    from derain_utils import store
    lock = store.EntryLock(sys.argv[1])
    assert lock.try_acquire()
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
""")


def _holder(folder: Path, seconds: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), str(seconds)], stdout=subprocess.PIPE,
                            text=True, env=env)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_left_over_empty_lock_file_does_not_block(tmp_path):
    (tmp_path / store.LOCK_FILE).write_text("")  # e.g. left by a killed run
    lock = store.EntryLock(tmp_path)
    t0 = time.monotonic()
    assert lock.acquire(timeout=5) is None and lock.held
    assert time.monotonic() - t0 < 2.0
    info = lock.holder()
    assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
    lock.release()
    assert not lock.held and lock.holder() is None


def test_lock_is_exclusive_within_one_process(tmp_path):
    a, b = store.EntryLock(tmp_path), store.EntryLock(tmp_path)
    assert a.try_acquire() and not b.try_acquire()
    a.release()
    assert b.try_acquire()
    b.release()


def test_a_waiting_process_says_what_it_waits_for_and_times_out(tmp_path, caplog):
    proc = _holder(tmp_path, 30)
    try:
        lock = store.EntryLock(tmp_path, what="cache entry")
        with caplog.at_level(logging.WARNING, logger="derain_utils.store"):
            with pytest.raises(TimeoutError, match=rf"cache entry {tmp_path} stayed locked .* by pid {proc.pid}"):
                lock.acquire(timeout=1.0, poll=0.1)
        assert any(str(tmp_path) in r.getMessage() and f"pid {proc.pid} on host" in r.getMessage()
                   for r in caplog.records), "waited without saying for what"
        # `done` ends the wait as soon as the other process's work is there
        assert lock.acquire(timeout=5, poll=0.1, done=lambda: "finished elsewhere") == "finished elsewhere"
        assert not lock.held
    finally:
        proc.kill()
        proc.wait()


def test_the_lock_of_a_dead_process_is_free_at_once(tmp_path):
    proc = _holder(tmp_path, 30)
    proc.kill()
    proc.wait()
    lock = store.EntryLock(tmp_path)
    assert "not running" in lock.describe_holder()  # the dead holder's record is still there
    t0 = time.monotonic()
    assert lock.acquire(timeout=5) is None and time.monotonic() - t0 < 2.0
    assert lock.holder()["pid"] == os.getpid()
    lock.release()


def test_a_lock_that_cannot_be_created_is_a_clear_error(tmp_path, monkeypatch):
    lock = store.EntryLock(tmp_path)

    def read_only(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(lock._lock, "acquire", read_only)
    with pytest.raises(store.StoreError, match=rf"cannot lock cache entry {tmp_path}: Permission denied.*read-only"):
        lock.try_acquire()
    with pytest.raises(store.StoreError, match="is not a folder"):
        store.EntryLock(tmp_path / "missing").try_acquire()


# --------------------------------------------------------------------------- provenance


def test_provenance_records_code_environment_device_and_params():
    p = store.provenance({"sizes": np.array([4, 16])}, device="cpu", key="abc")
    assert {"timestamp_utc", "git", "python", "platform", "packages", "device", "params", "key"} <= set(p)
    assert p["device"].startswith("cpu (") and p["params"] == {"sizes": [4, 16]} and p["key"] == "abc"
    json.dumps(p, allow_nan=False)  # JSON-safe as it is
