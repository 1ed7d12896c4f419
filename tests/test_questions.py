"""The two declared questions: declarations, the headline in plain words, tests on pooled units."""
from __future__ import annotations

import numpy as np
import pytest

from derain_utils.stats import inference, questions

UNSEEN = ("slanted", "dense")


def _record(slope: float, outcome: str, profile: str = "quick") -> inference.VerdictRecord:
    """A within-seed trend over 4 levels and 8 seeds whose outcome moves by ``slope`` per level."""
    rng = np.random.default_rng(0)
    xs = [np.arange(4.0)] * 8
    ys = [slope * np.arange(4.0) + rng.normal(0, 0.001, 4) for _ in range(8)]
    decls = questions.declare_questions("01_set_size", "within_seed_trend", "negative", UNSEEN)
    decl = next(d for d in decls.values() if d.outcome == outcome)
    return inference.decide(inference.trend_arrays(xs, ys, seed=0), decl, profile=profile)


def test_two_declarations_differ_only_in_their_outcome():
    decls = questions.declare_questions("02_category_complexity", "category_trend", "negative", UNSEEN)
    assert {q: d.outcome for q, d in decls.items()} == questions.QUESTIONS == {
        "paper": "removal", "beyond_fidelity": "excess_removal"}
    a, b = decls["paper"], decls["beyond_fidelity"]
    assert (a.design, a.direction, tuple(a.presets), a.alpha) == (b.design, b.direction, tuple(b.presets), b.alpha)


@pytest.mark.parametrize("paper, beyond, start, middle", [
    (-0.1, -0.1, "Reproduced as the paper measured it", ", and reproduced beyond a fixed filter"),
    (-0.1, +0.1, "Reproduced as the paper measured it", "the effect goes against the paper (contradicted"),
    (+0.1, 0.0, "Contradicted as the paper measured it", "not shown beyond a fixed filter"),
    (0.0, -0.1, "Inconclusive as the paper measured it", "reproduced beyond"),
])
def test_headline_says_both_verdicts_the_papers_first(paper, beyond, start, middle):
    text = questions.two_questions_headline(_record(paper, "removal"), _record(beyond, "excess_removal"))
    assert text.startswith(start) and middle in text
    assert "32 models, 8 seeds" in text


def test_only_the_papers_measure_can_open_with_contradicted_and_smoke_is_plumbing():
    text = questions.two_questions_headline(_record(-0.1, "removal"), _record(+0.1, "excess_removal"))
    assert not text.startswith("Contradicted") and "against the paper" in text
    smoke = questions.two_questions_headline(_record(-0.1, "removal", "smoke"), _record(-0.1, "excess_removal", "smoke"))
    assert smoke.startswith("Inconclusive (plumbing only)")
    with pytest.raises(ValueError, match="paper must be an inference.VerdictRecord"):
        questions.two_questions_headline("reproduced", _record(0.0, "excess_removal"))


def test_a_test_on_pooled_units_reports_the_models_behind_them():
    res = inference.trend_arrays([np.arange(5.0)] * 8, [-np.arange(5.0)] * 8, seed=0)
    assert res.n_models == 40
    pooled = questions.on_pooled_units(res, 69, "the mean over the mixes of one seed's models at one proportion")
    assert pooled.n_models == 69 and pooled.effect == res.effect and pooled.p_less == res.p_less
    assert pooled.notes[-1] == "each value is the mean over the mixes of one seed's models at one proportion"
    decl = questions.declare_questions("02_category_complexity", "within_seed_trend", "negative", UNSEEN)["paper"]
    assert "69 models, 8 seeds" in inference.decide(pooled, decl, profile="quick").headline
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="n_models"):
            questions.on_pooled_units(res, bad, "x")
    with pytest.raises(ValueError, match="TestResult"):
        questions.on_pooled_units({"effect": 1}, 3, "x")


def _ladder_table(effects: dict[str, float], sets=("synthetic", "rain100H_dev"), n_seeds: int = 8, stalled=()):
    """Per-model outcomes of a ladder: at rung r the N = 4 model beats the N = 256 one by effects[r] (+ small noise)."""
    import pandas as pd

    rng = np.random.default_rng(1)
    rows = []
    for rung, e in effects.items():
        for s in sets:
            for seed in range(n_seeds):
                base = rng.normal(0.3, 0.05)
                for n, shift in ((4, e), (256, 0.0)):
                    y = base + shift + rng.normal(0, 0.002)
                    rows.append({"rung": rung, "test_set": s, "n_train": n, "seed": seed, "removal": y,
                                 "excess_removal": y - 0.3, "stalled": (rung, n, seed) in stalled})
    return pd.DataFrame(rows)


def test_ladder_tests_decide_each_rung_and_set():
    table = _ladder_table({"500x32": 0.05, "2000x32": 0.0, "8000x32": -0.05})
    t = questions.ladder_tests(table, ood=UNSEEN, n_lo=4, n_hi=256, profile="quick")
    assert list(t.columns) == list(questions.LADDER_TEST_COLUMNS) and len(t) == 3 * 2 * 2
    v = t.set_index(["rung", "test_set", "question"])["verdict"]
    assert set(v.loc["500x32"]) == {"reproduced"} and set(v.loc["8000x32"]) == {"contradicted"}
    assert set(v.loc["2000x32"]) <= {"inconclusive", "reproduced", "contradicted"}
    # 8 seeds, all positive: the exact sign-flip p is 1/256, equal to enumeration; Holm over 3 rungs triples it
    row = t[(t["rung"] == "500x32") & (t["test_set"] == "synthetic") & (t["question"] == "paper")].iloc[0]
    assert row["p"] == pytest.approx(1 / 256) and row["exact"] and row["n_seeds"] == 8
    assert row["p_holm"] == pytest.approx(3 / 256) and row["holds_after_holm"]
    assert row["difference"] == pytest.approx(0.05, abs=0.003) and row["ci_low"] > 0
    reading = questions.ladder_reading(t).set_index(["question", "test_set"])
    assert set(reading["reading"]) == {"flips"}
    assert reading.loc[("paper", "synthetic"), "verdicts"].startswith("500x32: reproduced; 2000x32: ")


def test_ladder_tests_leave_stalled_models_out_and_smoke_is_inconclusive():
    table = _ladder_table({"500x32": 0.05}, sets=("synthetic",), stalled={("500x32", 4, 0), ("500x32", 256, 3)})
    t = questions.ladder_tests(table, ood=UNSEEN, n_lo=4, n_hi=256, profile="quick")
    assert set(t["n_seeds"]) == {6} and set(t["n_stalled"]) == {2} and set(t["n_models"]) == {12}
    smoke = questions.ladder_tests(table, ood=UNSEEN, n_lo=4, n_hi=256, profile="smoke")
    assert set(smoke["verdict"]) == {"inconclusive"}
    all_stalled = table.assign(stalled=True)
    t = questions.ladder_tests(all_stalled, ood=UNSEEN, n_lo=4, n_hi=256, profile="quick")
    assert t["difference"].isna().all() and set(t["verdict"]) == {"inconclusive"}
    assert set(questions.ladder_reading(t)["reading"]) == {"inconclusive at every rung"}


def test_ladder_tests_bad_input():
    table = _ladder_table({"500x32": 0.05}, sets=("synthetic",))
    with pytest.raises(ValueError, match="lacks column"):
        questions.ladder_tests(table.drop(columns="stalled"), ood=UNSEEN, n_lo=4, n_hi=256, profile="quick")
    with pytest.raises(ValueError, match="must differ"):
        questions.ladder_tests(table, ood=UNSEEN, n_lo=4, n_hi=4, profile="quick")
