"""derain_utils.lab.ladder: the budget ladder's per-model outcomes, rungs trained elsewhere, the gpu rung's command."""
from __future__ import annotations

import pandas as pd
import pytest

from derain_utils.lab import designs, ladder, profiles

TOY_RUNG = "8x24:tiny"  # the gpu rung's path at a toy size: 4 tiny models, 8 steps each


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """The gpu command at a toy size on the CPU (deadleaves backgrounds: the same with and without data)."""
    out = tmp_path_factory.mktemp("gpu") / "gpu_rung.csv"
    mp = pytest.MonkeyPatch()
    mp.setenv("DERAIN_RUNS", str(out.parent / "runs"))
    try:
        code = ladder.main(["gpu", "--out", str(out), "--profile", "smoke", "--rung", TOY_RUNG, "--seeds", "0", "1",
                            "--background", "deadleaves", "--workers", "1", "--device", "cpu"])
    finally:
        mp.undo()
    return code, out


def test_gpu_command_runs_at_a_toy_size_on_the_cpu(toy_run, capsys):
    code, out = toy_run
    assert code == 0 and out.is_file()
    t = pd.read_csv(out)
    assert list(t.columns[:len(ladder.OUTCOME_COLUMNS)]) == list(ladder.OUTCOME_COLUMNS)
    assert profiles.rung(profiles.resolve("smoke"), TOY_RUNG).name == "8x24"
    assert set(t["rung"]) == {"8x24"} and set(t["model_size"]) == {"tiny"} and set(t["steps"]) == {8}
    assert t["key"].nunique() == 4 and set(t["n_train"]) == {2, 8} and set(t["seed"]) == {0, 1}
    assert "synthetic" in set(t["test_set"]) and set(t["device"]) == {"cpu"} and (t["wall_s"] > 0).all()
    assert set(t["background"]) == {"deadleaves"} and '"torch"' in t["versions"].iloc[0]
    assert t["removal_fit"].notna().all() and t["stalled"].isin([True, False]).all()


def test_a_rung_trained_elsewhere_joins_only_a_run_of_its_design(toy_run, tmp_path):
    _, out = toy_run
    smoke = profiles.resolve("smoke")
    t = ladder.read_extra(out, ladder.design_of(smoke, "deadleaves"))
    assert len(t) == len(pd.read_csv(out))
    joined = ladder.extra_rungs(str(out), smoke, background="deadleaves")
    assert set(joined["rung"]) == {"8x24"} and "joined" in joined.attrs["note"]
    assert len(ladder.extra_rungs(str(out), smoke.replace(ladder=(TOY_RUNG,)), background="deadleaves")) == 0
    with pytest.raises(ValueError, match="background"):
        ladder.extra_rungs(str(out), smoke, background="natural")
    with pytest.raises(ValueError, match="n_test"):
        ladder.read_extra(out, ladder.design_of(smoke.replace(n_test=3), "deadleaves"))
    bad = tmp_path / "bad.csv"
    bad.write_text("key,rung\na,b\n")
    with pytest.raises(ValueError, match="bad.csv: not a ladder outcomes file"):
        ladder.read_extra(bad, ladder.design_of(smoke, "deadleaves"))
    with pytest.raises(ValueError, match="missing.csv: cannot read"):
        ladder.read_extra(tmp_path / "missing.csv", ladder.design_of(smoke, "deadleaves"))


def test_extra_rungs_auto_and_none(monkeypatch, tmp_path):
    smoke = profiles.resolve("smoke")
    assert len(ladder.extra_rungs("none", smoke, background="natural")) == 0
    monkeypatch.setattr(ladder, "GPU_OUTCOMES", tmp_path / "absent.csv")
    t = ladder.extra_rungs("auto", smoke, background="natural")
    assert len(t) == 0 and "has not run" in t.attrs["note"]
    (tmp_path / "absent.csv").write_text("key\n")
    t = ladder.extra_rungs("auto", smoke, background="natural")  # auto: a file of another design is skipped
    assert len(t) == 0 and "do not join" in t.attrs["note"]
    with pytest.raises(ValueError, match="LADDER_EXTRA"):
        ladder.extra_rungs(3, smoke, background="natural")


def test_gpu_command_bad_input_is_one_line(capsys, tmp_path):
    assert ladder.main(["gpu", "--out", str(tmp_path / "x.csv"), "--rung", "fast"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ladder: ladder rung 'fast'") and "\n" not in err
    assert ladder.main(["gpu", "--out", str(tmp_path / "x.csv"), "--workers", "0"]) == 2
    assert "--workers must be >= 1" in capsys.readouterr().err


def test_rung_group_and_the_gpu_rung():
    assert ladder.rung_group({"patch": 64, "batch_size": 4, "model_size": "quick"}, "quick") == "4 x 64 px crops"
    assert (ladder.rung_group({"patch": 64, "batch_size": 32, "model_size": "paper"}, "quick")
            == "32 x 64 px crops, paper network")
    long = profiles.resolve(ladder.GPU_PROFILE)
    g = profiles.rung(long, ladder.GPU_RUNG)
    assert (g.steps, g.patch, g.batch_size, g.model_size) == (4000, 64, 32, "paper")  # the paper scale
    configs = designs.budget_ladder(long, "natural", rungs=[ladder.GPU_RUNG])
    assert len(configs) == 16 and {c.n_train for c in configs} == {4, 256}


def test_outcomes_bad_input():
    smoke = profiles.resolve("smoke")
    configs = designs.budget_ladder(smoke, "flat")
    with pytest.raises(ValueError, match="no ladder configs"):
        ladder.outcomes([], smoke, rows=pd.DataFrame(), frontier=None, ood=["dense"], fit=pd.DataFrame())
    with pytest.raises(ValueError, match="no evaluation rows"):
        ladder.outcomes(configs, smoke, rows=pd.DataFrame({"key": ["x"]}), frontier=None, ood=["dense"],
                        fit=pd.DataFrame())


def test_matched_pairs_of_the_development_sets(shared_data):
    pairs = ladder.matched_pairs(data_dir=shared_data)
    assert set(pairs) == set(ladder.PAIRED_SETS)
    assert len(pairs["rain100H_dev"]) == 8 and len(pairs["real_rain_paired_dev"]) == 2
    assert ladder.matched_pairs(["no_such_set"], data_dir=shared_data) == {}


def test_outcomes_need_the_training_fit(toy_run):
    """The stall rule reads only the models' fit to their own training tiles: no fit, no outcomes."""
    _, out = toy_run
    t = pd.read_csv(out)
    smoke = profiles.resolve("smoke").replace(ladder=(TOY_RUNG,))
    configs = designs.budget_ladder(smoke, "deadleaves")
    rows = pd.DataFrame({"key": [c.key() for c in configs]})
    with pytest.raises(ValueError, match="training_fit"):
        ladder.outcomes(configs, smoke, rows=rows, frontier=None, ood=["dense"], fit=pd.DataFrame({"key": []}))
    assert set(t["key"]) == {c.key() for c in configs}  # the command trained exactly the rung's configs
