"""Tests for derain_utils.book.report (the report card) and the experiments.load hook it uses.

A tiny model is trained once per module (a few steps on procedural backgrounds, seconds); the
identity network of tests/_identity_model.py must score exactly 0 rain removal everywhere.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from derain_utils.book import report
from derain_utils.lab import experiments
from derain_utils.measure import scoring
from derain_utils.nets import models

IDENTITY = str(Path(__file__).with_name("_identity_model.py"))
SMALL = {"n_test": 2, "test_size": 32, "perspective_size": 48, "presets": ["small", "slanted", "medium"]}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(config, cache root) of one tiny trained model."""
    root = tmp_path_factory.mktemp("cache")
    cfg = experiments.ExperimentConfig(arch="resnet", model_size="tiny", background="blobs", n_train=2, tile=16,
                                       patch=16, steps=3, batch_size=2, lr=1e-3, warmup_steps=0, n_test=2,
                                       test_size=16,
                                       eval_presets=("small",), ckpt_every=3)
    experiments.run(cfg, cache_root=root, progress=False)
    return cfg, root


def _pairs_folder(root: Path, n: int = 2, size=(24, 40)) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        b = rng.random((*size, 3)) * 0.5
        o = b.copy()
        o[:, ::5] += 0.4
        for sub, img in (("target", b), ("input", o)):
            (root / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)).save(root / sub / f"{i}.png")
    return root


# ----------------------------------------------------------------------------------------- experiments.load


def test_experiments_load_returns_cached_or_none(tiny, tmp_path):
    cfg, root = tiny
    hit = experiments.load(cfg, cache_root=root)
    assert hit is not None and hit.cached and hit.config == cfg
    assert experiments.load(cfg.replace(seed=7), cache_root=root) is None  # never trains
    assert not (root / cfg.replace(seed=7).key()).exists()
    with pytest.raises(ValueError, match="ExperimentConfig"):
        experiments.load({"arch": "resnet"}, cache_root=root)
    broken = tmp_path / "broken"
    shutil.copytree(root / cfg.key(), broken / cfg.key())
    (broken / cfg.key() / "eval.csv").write_text("tampered\n")
    with pytest.warns(experiments.CacheWarning, match="checksum"):
        assert experiments.load(cfg, cache_root=broken) is None


# ----------------------------------------------------------------------------------------- loading models


def test_load_model_package_forms(tiny, tmp_path):
    cfg, root = tiny
    entry = root / cfg.key()
    expected = experiments.load(cfg, cache_root=root).load_model().state_dict()
    for spec in (entry, entry / "model.pt", entry / "config.json"):
        m = report.load_model(spec, cache_root=root)
        assert m.config == cfg and m.train_rain == "small" and m.in_channels == 3 and m.name == cfg.name()
        assert all(torch.equal(v, expected[k]) for k, v in m.model.state_dict().items())
        assert m.n_params == models.count_params(m.model) > 0
    bare = tmp_path / "config.json"
    bare.write_text(json.dumps(cfg.replace(seed=3).to_dict()))
    with pytest.raises(FileNotFoundError, match="--train"):
        report.load_model(bare, cache_root=root)
    assert report.load_model(entry, train_rain="dense").train_rain == "dense"


def test_a_tampered_cache_entry_is_refused_by_the_card(tiny, tmp_path, capsys):
    """One weight changed in model.pt: experiments.load rejects the entry, and so does the report card."""
    cfg, root = tiny
    copy = tmp_path / "cache"
    shutil.copytree(root, copy)
    entry = copy / cfg.key()
    blob = torch.load(entry / "model.pt", weights_only=True)
    name = next(iter(blob["state_dict"]))
    blob["state_dict"][name].view(-1)[0] += 0.5
    torch.save(blob, entry / "model.pt")
    with pytest.warns(experiments.CacheWarning, match="model.pt does not match its checksum"):
        assert experiments.load(cfg, cache_root=copy) is None
    for spec in (entry, entry / "model.pt", entry / "config.json"):
        with pytest.raises(experiments.CacheError, match=rf"{entry} cannot be trusted: model.pt does not match"):
            report.load_model(spec)
    assert report.main([str(entry), "--out", str(tmp_path / "card")]) == 2
    err = capsys.readouterr().err
    assert ": error: " in err.splitlines()[0] and str(entry) in err and "Traceback" not in err
    assert not (tmp_path / "card").exists()  # nothing scored, nothing written


def test_load_model_trains_a_bare_config_when_asked(tiny, tmp_path):
    cfg, _ = tiny
    bare = tmp_path / "cfg.json"
    bare.write_text(json.dumps(cfg.to_dict()))
    m = report.load_model(bare, cache_root=tmp_path / "cache", train=True)
    assert m.config == cfg and experiments.load(cfg, cache_root=tmp_path / "cache") is not None


@pytest.mark.parametrize("attr", ["Identity", "make", "identity"])
def test_load_model_module_callable(attr):
    m = report.load_model(f"{IDENTITY}:{attr}")
    assert isinstance(m.model, torch.nn.Module) and m.config is None and m.train_rain == "small"
    x = torch.rand(1, 3, 8, 8)
    assert torch.equal(m.model(x), x)


def test_load_model_dotted_module_path(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    m = report.load_model("_identity_model:make")
    assert m.name == "_identity_model:make"


def test_load_model_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.pt"):
        report.load_model(tmp_path / "nothere.pt")
    with pytest.raises(FileNotFoundError, match="no model.pt"):
        report.load_model(tmp_path)
    with pytest.raises(ValueError, match="no attribute 'nope'"):
        report.load_model(f"{IDENTITY}:nope")
    with pytest.raises(FileNotFoundError, match="missing.py"):
        report.load_model(f"{tmp_path / 'missing.py'}:x")
    with pytest.raises(ValueError, match="cannot import module"):
        report.load_model("no_such_module_xyz:f")
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    return 3\nvalue = 5\ndef g(x):\n    return x\n")
    with pytest.raises(ValueError, match="returned int"):
        report.load_model(f"{bad}:f")
    with pytest.raises(ValueError, match="not an nn.Module or a callable"):
        report.load_model(f"{bad}:value")
    with pytest.raises(ValueError, match="zero-argument"):
        report.load_model(f"{bad}:g")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"m is not a cache entry of this package.*config\.json"):
        report.load_model(tmp_path / "m")  # a model.pt outside a verified cache entry is not scored
    with pytest.raises(ValueError, match="unknown rain preset"):
        report.load_model(f"{IDENTITY}:make", train_rain="drizzle")


# ----------------------------------------------------------------------------------------- scoring


def test_apply_keeps_order_shapes_and_gray():
    rng = np.random.default_rng(0)
    imgs = [rng.random(s, dtype=np.float32) for s in ((8, 8, 3), (6, 10, 3), (8, 8, 3))]
    out = report.apply(torch.nn.Identity(), imgs)
    for a, b in zip(imgs, out):
        np.testing.assert_array_equal(a, b)
    gray = report.apply(torch.nn.Identity(), imgs[:1], in_channels=1)[0]
    assert gray.shape == (8, 8, 1)
    np.testing.assert_allclose(gray[..., 0], imgs[0] @ np.array([0.299, 0.587, 0.114], np.float32), atol=1e-6)
    with pytest.raises(ValueError, match=r"images\[0\]"):
        report.apply(torch.nn.Identity(), [np.zeros((4, 4))])
    with pytest.raises(ValueError, match="in_channels"):
        report.apply(torch.nn.Identity(), imgs, in_channels=2)


def test_synthetic_sets_relations_and_same_rain_as_training():
    imgs = np.random.default_rng(0).random((2, 24, 24, 3), dtype=np.float32)
    sets = report.synthetic_sets(imgs, presets=["small", "medium", "slanted"], seed=5)
    assert list(sets) == ["small", "medium", "slanted", "perspective"]
    assert [sets[p].relation for p in sets] == ["training", "overlap", "OOD", "OOD"]
    assert sets["slanted"].ood_fields == "angles" and sets["perspective"].in_distribution is False
    ref = scoring.make_eval_set(imgs, ["small"], seed=5)["small"]
    np.testing.assert_array_equal(sets["small"].rain, ref.rain[:, 0].numpy())
    unknown = report.synthetic_sets(imgs, presets=["small"], train_rain=None, perspective=False)
    assert list(unknown) == ["small"] and unknown["small"].relation == "unknown"
    with pytest.raises(ValueError, match="names"):
        report.synthetic_sets(imgs, names=["a"])
    with pytest.raises(ValueError, match="test_images"):
        report.synthetic_sets(imgs[0])


def test_paired_rows_identity_zero_and_perfect_one():
    imgs = np.random.default_rng(1).random((2, 24, 24, 3), dtype=np.float32) * 0.6
    s = report.synthetic_sets(imgs, presets=["small"], perspective=False)["small"]
    pairs = list(zip(s.names, s.rainy, s.background))
    ident = report.paired_rows(pairs, list(s.rainy), masks=list(s.mask))
    perfect = report.paired_rows(pairs, list(s.background), masks=list(s.mask))
    assert (ident["removal"] == 0).all() and (perfect["removal"] == 1).all()
    assert (ident["mask_source"] == "given").all()
    np.testing.assert_allclose(ident["psnr_y"], ident["input_psnr_y"])
    est = report.paired_rows(pairs, list(s.rainy))
    assert (est["mask_source"] == "estimated").all() and (est["removal"] == 0).all()
    with pytest.raises(ValueError, match="derained"):
        report.paired_rows(pairs, list(s.rainy)[:1])


def test_mean_ci_and_group_summary():
    m, lo, hi = report.mean_ci([1.0, 2.0, 3.0, 4.0, np.nan])
    assert m == 2.5 and lo < m < hi and 1 <= lo and hi <= 4
    assert math.isnan(report.mean_ci([1.0])[1]) and report.mean_ci([2.0, 2.0]) == (2.0, 2.0, 2.0)
    assert all(math.isnan(v) for v in report.mean_ci([]))
    df = pd.DataFrame({"set": "a", "group": ["x"] * 4 + ["y"] * 4, "seed": [0, 0, 1, 1] * 2,
                       "image": ["i", "j"] * 4, "v": [1.0, 3.0, 3.0, 5.0, 0, 0, 0, 0]})
    s = report.group_summary(df, ["v"])
    assert list(s["group"]) == ["x", "y"] and list(s["n"]) == [2, 2]  # images are the units
    assert s.loc[0, "v"] == 3.0 and s.loc[1, "v"] == 0.0
    assert s.loc[0, "v_lo"] == 2.0 and s.loc[0, "v_hi"] == 4.0  # per-image seed means are 2 and 4
    with pytest.raises(ValueError, match="missing|lacks"):
        report.group_summary(df, ["w"])


# ----------------------------------------------------------------------------------------- the card


def test_identity_scores_zero_removal_everywhere(tmp_path):
    loaded = report.load_model(f"{IDENTITY}:make")
    examples: dict = {}
    df = report.evaluate(loaded, paired=[_pairs_folder(tmp_path / "pairs")], examples=examples, **SMALL)
    rained = df[df["kind"].isin(["preset", "perspective", "paired"])]
    assert set(rained["set"]) == {"small", "slanted", "medium", "perspective", "pairs"}
    assert (rained["removal"] == 0).all()
    assert (df.loc[df["kind"] == "clean", "psnr"] == 100).all()
    assert set(examples) == {"small", "slanted", "medium", "perspective", "pairs"}
    summary = report.summarize(df)
    h = report.headline(summary)
    assert h["id_removal"] == 0 and h["ood_removal"] == 0 and math.isnan(h["retained"])
    paths = report.write_report(df, loaded, tmp_path / "card", examples=examples)
    page = paths["md"].read_text()
    assert "behaves like the identity" in page and "| small | preset | training rain |" in page
    assert "| medium | preset | overlaps the training ranges |" in page
    with Image.open(paths["png"]) as im:
        assert im.format == "PNG" and min(im.size) > 200
    record = json.loads(paths["json"].read_text())
    assert record["headline"]["id_removal"] == 0 and record["model"]["config"] is None
    assert len(pd.read_csv(paths["csv"])) == len(df)


def test_card_of_a_cached_model(tiny, tmp_path):
    cfg, root = tiny
    loaded = report.load_model(root / cfg.key())
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.full((40, 60, 3), 120, np.uint8)).save(photos / "p.png")
    df = report.evaluate(loaded, real=[photos], **SMALL)
    assert df.loc[df["kind"] != "real", "removal"].dropna().between(-5, 1).all()
    real = df[df["kind"] == "real"]
    assert len(real) == 1 and real["removed_rms"].iloc[0] >= 0
    assert set(df.loc[df["kind"] == "preset", "relation"]) == {"training", "overlap", "OOD"}
    paths = report.write_report(df, loaded, tmp_path / "card")
    assert cfg.name() in paths["md"].read_text() and "Real photos without ground truth" in paths["md"].read_text()
    assert json.loads(paths["json"].read_text())["model"]["key"] == cfg.key()


def test_command_line(tmp_path, capsys):
    out = tmp_path / "out"
    code = report.main([f"{IDENTITY}:Identity", "--out", str(out), "--n-test", "2", "--test-size", "32",
                        "--perspective-size", "0", "--presets", "small", "dense",
                        "--data", str(_pairs_folder(tmp_path / "pairs"))])
    assert code == 0
    assert "behaves like the identity" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} >= {"report.md", "report.png", "report.csv", "summary.csv", "report.json"}
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["set"]) == ["small", "dense", "clean", "pairs"]
    assert report.main([str(tmp_path / "none.pt"), "--out", str(out)]) == 2
    assert "none.pt" in capsys.readouterr().err
