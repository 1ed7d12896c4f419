"""docs/faults.md is the table of the suite's bad-input and fault cases, generated from the collected tests."""
from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location("faults_table", REPO / "tests" / "faults_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_faults_table_is_the_suites_and_lists_at_least_60_cases():
    gen = _generator()
    rows = gen.collect()
    assert len(rows) >= 60
    assert len({r[3] for r in rows}) >= 60  # distinct tests, not only parameters of a few
    surfaces = {r[0] for r in rows}
    assert {"report card", "runner", "bench", "data fetch", "images and folders", "rain presets and specs"} <= surfaces
    committed = gen.DOC.read_text(encoding="utf-8")
    assert committed == gen.markdown(rows), (
        "docs/faults.md differs from the tests it lists: run `python tests/faults_table.py` and commit the result")
