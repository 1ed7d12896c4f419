"""derain_utils.stats.verdict: the verdict record, its JSON and how an effect is written."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from derain_utils.stats import verdict


def test_format_effect():
    assert verdict.format_effect("rho", -0.81234, [-0.95, -0.6]) == "rho = -0.812 [-0.950, -0.600]"
    assert verdict.format_effect("rho", math.nan, [None, None]) == "rho = nan [nan, nan]"


# --------------------------------------------------------------------------------------
# records
# --------------------------------------------------------------------------------------
def _fields(**over):
    f = dict(notebook="01_set_size", finding="Fewer backgrounds generalise better.", reproduced=np.bool_(True),
             statistic="spearman_rho", effect=np.float32(-0.75), ci95=np.array([-0.9, -0.5]), n_seeds=np.int64(3),
             profile="quick", summary="OOD PSNR falls as the training set grows.", wall_s=12.5,
             verdict="reproduced", p_value=np.float64(0.004), primary_outcome="excess_removal",
             primary_preset="pooled: slanted, long_wide, dense", n_models=np.int64(12))
    f.update(over)
    if "reproduced" in over and "verdict" not in over and over["reproduced"] is False:
        f["verdict"] = "inconclusive"
    return f


def test_verdict_round_trip(tmp_path):
    record = verdict.Verdict.from_dict(_fields(spearman_p=np.float64(0.01), sizes=(4, 16),
                                               secondary={"gap": np.nan, "arr": np.arange(3)}))
    path = record.write(tmp_path / "run")
    assert path == tmp_path / "run" / "verdict.json"
    raw = json.loads(path.read_text())
    assert raw["secondary"] == {"gap": None, "arr": [0, 1, 2]} and raw["sizes"] == [4, 16]
    assert list(raw)[:len(verdict.VERDICT_FIELDS)] == list(verdict.VERDICT_FIELDS)
    v = verdict.read_verdict(tmp_path / "run")
    assert v == verdict.read_verdict(path)
    assert v.reproduced is True and v.n_seeds == 3 and v.effect == pytest.approx(-0.75)
    assert v.ci95 == [-0.9, -0.5] and v.extra["spearman_p"] == 0.01
    assert v.label == "REPRODUCED" and v.result == "spearman_rho = -0.750 [-0.900, -0.500]"


def test_verdict_nan_is_stored_as_null_and_read_back(tmp_path):
    record = verdict.Verdict.from_dict(_fields(effect=math.nan, ci95=[math.nan, math.nan], reproduced=False))
    path = record.write(tmp_path)
    text = path.read_text()
    assert "NaN" not in text and json.loads(text)["ci95"] == [None, None]
    v = verdict.read_verdict(path)
    assert math.isnan(v.effect) and all(math.isnan(b) for b in v.ci95)


@pytest.mark.parametrize("field", list(verdict.VERDICT_FIELDS))
def test_missing_field_is_named(tmp_path, field):
    f = _fields()
    del f[field]
    with pytest.raises(ValueError, match=f"missing required field.*'{field}'"):
        verdict.Verdict.from_dict(f).write(tmp_path)
    assert not (tmp_path / "verdict.json").exists()


@pytest.mark.parametrize("field, value", [
    ("reproduced", "yes"), ("reproduced", 1), ("effect", "large"), ("effect", True), ("ci95", [0.1]),
    ("ci95", "[0, 1]"), ("ci95", [0.5, 0.1]), ("n_seeds", 2.5), ("n_seeds", -1), ("wall_s", -3.0),
    ("wall_s", None), ("finding", ""), ("summary", 3), ("notebook", None), ("profile", ["quick"]),
    ("verdict", "REPRODUCED"), ("verdict", "not reproduced"), ("verdict", "inconclusive"), ("p_value", 1.5),
    ("p_value", "0.01"), ("n_models", -1), ("n_models", 2.5), ("primary_outcome", ""), ("primary_preset", None),
])
def test_wrong_type_is_named(tmp_path, field, value):
    with pytest.raises(ValueError, match=field):
        verdict.Verdict.from_dict(_fields(**{field: value})).write(tmp_path)


def test_unstorable_extra_field_is_named(tmp_path):
    with pytest.raises(ValueError, match="verdict.model"):
        verdict.Verdict.from_dict(_fields(model=object())).write(tmp_path)


def test_read_verdict_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="verdict.json"):
        verdict.read_verdict(tmp_path)
    (tmp_path / "verdict.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        verdict.read_verdict(tmp_path)
    (tmp_path / "verdict.json").write_text(json.dumps({k: v for k, v in verdict.Verdict.from_dict(
        _fields()).to_dict().items() if k != "statistic"}))
    with pytest.raises(ValueError, match="'statistic'"):
        verdict.read_verdict(tmp_path)


def test_the_beyond_fidelity_verdict_is_optional_and_validated(tmp_path):
    v = verdict.Verdict.from_dict(_fields(verdict_beyond_fidelity="inconclusive"))
    v.write(tmp_path)
    back = verdict.read_verdict(tmp_path)
    assert back.verdict_beyond_fidelity == "inconclusive" and "verdict_beyond_fidelity" not in back.extra
    assert "verdict_beyond_fidelity" not in verdict.Verdict.from_dict(_fields()).to_dict()
    with pytest.raises(ValueError, match="verdict_beyond_fidelity"):
        verdict.Verdict.from_dict(_fields(verdict_beyond_fidelity="maybe"))
