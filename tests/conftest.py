"""Shared fixtures.

Real image sets come from ``DERAIN_DATA`` (CONVENTIONS.md). In development and CI
that is ``../shared/data``; when neither is present, tests that need it skip with
a reason instead of failing.
"""
from __future__ import annotations

import os
from pathlib import Path

# The suite trains tiny models: one torch thread each is as fast as two on a quiet 2-core
# machine and many times faster on a busy one. Set before torch is imported; notebook
# kernels started by the smoke tests inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib  # noqa: E402
import pytest  # noqa: E402

matplotlib.use("Agg")

REPO = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path | None:
    env = os.environ.get("DERAIN_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "data")
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    return None


SHARED_DATA = _shared_data_dir()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real image sets; skips the test where it is absent."""
    if SHARED_DATA is None:
        pytest.skip("real image sets not available: set DERAIN_DATA or place ../shared/data beside the repo")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _isolated_runs(tmp_path_factory, monkeypatch):
    """Keep every test's cache and run folders out of the working tree."""
    monkeypatch.setenv("DERAIN_RUNS", str(tmp_path_factory.mktemp("runs")))
