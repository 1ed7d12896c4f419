"""Published networks: PReNet's weights load strictly, reproduce the published table, and reach the report card.

The tests that read the weights or the development pairs skip cleanly without ``../shared/data``.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import color
from skimage import metrics as skm

from derain_utils.book import report, zoo
from derain_utils.measure import metrics
from derain_utils.nets import models, published
from derain_utils.synth import data

DOCS = Path(__file__).resolve().parents[1] / "docs" / "published.md"


@pytest.fixture(autouse=True)
def _two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------- registry and names


def test_every_published_network_is_in_the_registry_and_known_to_the_card():
    reg = data.load_registry()
    for net in published.PUBLISHED.values():
        row = reg[(reg["set"] == net.set) & (reg["file"] == net.file)]
        assert len(row) == 1, net.name
        assert row["url"].iloc[0].startswith("https://raw.githubusercontent.com/csdwren/PReNet/")
        assert net.set in data.SETS and net.citation
        assert net.dev_pairs is None or net.dev_pairs in set(reg["set"])
    assert report._parser().parse_args(["prenet:rain100H"]).model == "prenet:rain100H"
    assert [r["network"] for r in published.published_table()] == list(published.PUBLISHED)


def test_split_spec():
    assert published.split_spec("pkg.mod:Net@w/x.pth") == ("pkg.mod:Net", "w/x.pth")
    assert published.split_spec("pkg.mod:Net") == ("pkg.mod:Net", None)
    for bad in ("@x.pth", "pkg:Net@"):
        with pytest.raises(ValueError, match="module:callable@"):
            published.split_spec(bad)


def test_missing_weights_name_the_file_and_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.delenv(data.ENV_DATA, raising=False)
    with pytest.raises(FileNotFoundError, match=r"checkpoints_prenet/rain100H/net_latest\.pth.*DERAIN_DATA.*fetch"):
        published.load("prenet:rain100H")
    with pytest.raises(FileNotFoundError, match=r"rain100L/net_latest\.pth' does not exist.*fetch checkpoints_prenet"):
        published.load("prenet:rain100L", tmp_path)
    with pytest.raises(ValueError, match="unknown published network 'prenet:rain200'.*prenet:rain100L"):
        published.weights_file("prenet:rain200", tmp_path)


def test_the_card_without_data_fails_with_one_line_naming_the_file(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(data.ENV_DATA, raising=False)
    assert report.main(["prenet:rain100H", "--data", "rain100H_dev", "--out", str(tmp_path / "card")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "checkpoints_prenet/rain100H/net_latest.pth" in err and "DERAIN_DATA" in err
    assert not (tmp_path / "card").exists()


# --------------------------------------------------------------------------- any network, any weights


def _tiny_file(tmp_path: Path) -> Path:
    src = tmp_path / "tiny_net.py"
    src.write_text("from derain_utils.nets import models\n\n"
                   "def build():\n    return models.build_model('prenet', size='tiny')\n")
    return src


def test_weights_of_any_network_load_strictly_and_bad_files_are_named(tmp_path):
    torch.manual_seed(3)
    trained = models.build_model("prenet", size="tiny")
    good = tmp_path / "w.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in trained.state_dict().items()}}, good)  # DataParallel
    model = models.build_model("prenet", size="tiny")
    rec = published.load_weights(model, good)
    assert rec["sha256"] == data.sha256_file(good) and rec["bytes"] == good.stat().st_size
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), trained.state_dict().values()))
    other = tmp_path / "other.pth"
    torch.save(models.build_model("prenet", size="tiny", width=4).state_dict(), other)
    with pytest.raises(ValueError, match=r"other\.pth.*does not fit PReNetDerain: shapes differ"):
        published.load_weights(models.build_model("prenet", size="tiny"), other)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"junk\.pth.*cannot be read"):
        published.load_weights(model, junk)
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ValueError, match=r"list\.pth.*holds no state dict"):
        published.load_weights(model, tmp_path / "list.pth")
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        published.load_weights(model, tmp_path / "absent.pth")
    # the notebook's list form and the card's --weights take the same file
    spec = f"{_tiny_file(tmp_path)}:build@{good}"
    net, record = zoo.load_network(spec)
    assert record["sha256"] == rec["sha256"] and isinstance(net, models.PReNetDerain)
    loaded = report.load_model(f"{_tiny_file(tmp_path)}:build", weights=good)
    assert loaded.weights["sha256"] == rec["sha256"]
    with pytest.raises(ValueError, match="no weights given"):
        zoo.load_network(f"{_tiny_file(tmp_path)}:build")


# --------------------------------------------------------------------------- the published weights


@pytest.mark.shared_data
def test_build_model_prenet_loads_all_three_published_state_dicts_strictly(shared_data):
    for name, net in published.PUBLISHED.items():
        sd = torch.load(shared_data / net.set / net.file, map_location="cpu", weights_only=True)
        models.build_model("prenet").load_state_dict(sd, strict=True)
        model, record = published.load(name, shared_data)
        assert record["sha256"] == record["registry_sha256"] and record["url"].endswith("/PReNet6/net_latest.pth")
        assert not model.training and models.count_params(model) == 168_963


@pytest.mark.shared_data
def test_a_file_that_is_not_the_published_one_is_refused(shared_data, tmp_path):
    fake = tmp_path / "checkpoints_prenet" / "rain100H"
    fake.mkdir(parents=True)
    shutil.copy(shared_data / "checkpoints_prenet" / "rain100L" / "net_latest.pth", fake / "net_latest.pth")
    with pytest.raises(ValueError, match=r"net_latest\.pth' does not match the registry's sha256"):
        published.load("prenet:rain100H", tmp_path)


def _independent(target: np.ndarray, derained: np.ndarray) -> tuple[float, float]:
    """scikit-image on MATLAB's uint8 Y: rgb2ycbcr of the 8-bit images, rounded; PSNR and SSIM on 0..255."""
    t8 = np.round(np.asarray(target, np.float64) * 255).astype(np.uint8)
    d8 = np.floor(np.clip(np.asarray(derained, np.float64), 0, 1) * 255).astype(np.uint8)
    ty, dy = (np.round(color.rgb2ycbcr(a)[..., 0]) for a in (t8, d8))
    return (skm.peak_signal_noise_ratio(ty, dy, data_range=255),
            skm.structural_similarity(ty, dy, data_range=255, gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False))


@pytest.mark.shared_data
def test_published_table_is_reproduced_and_agrees_with_an_independent_computation(shared_data, monkeypatch):
    seen = []
    real = metrics.table_scores

    def spy(target, derained, **kw):
        if kw.get("quantize", "floor") == "floor":
            seen.append((target, derained))
        return real(target, derained, **kw)

    monkeypatch.setattr(zoo.metrics, "table_scores", spy)
    per_pair = zoo.reproduce(data_dir=shared_data)
    assert len(per_pair) == 16 and len(seen) == 16
    ind = np.array([_independent(t, d) for t, d in seen])
    np.testing.assert_allclose(per_pair["psnr_y"], ind[:, 0], atol=0.01)  # per pair, to 0.01 dB
    np.testing.assert_allclose(per_pair["ssim_y"], ind[:, 1], atol=1e-4)
    table = zoo.reproduction_table(per_pair)
    for r in table.itertuples():
        assert r.psnr_y_lo <= r.published_psnr_y <= r.psnr_y_hi, r.network  # the sample explains the gap
        assert abs(r.ssim_y - r.published_ssim_y) < 0.01, r.network
    # the figures the docs state are the ones computed here
    assert zoo.reproduction_markdown(table) in DOCS.read_text(encoding="utf-8"), "update docs/published.md"


@pytest.mark.shared_data
def test_the_card_takes_a_published_network_by_name(shared_data, tmp_path):
    root = tmp_path / "data"
    (root / "rain100H_dev").mkdir(parents=True)
    (root / "checkpoints_prenet").symlink_to(shared_data / "checkpoints_prenet")
    for sub in ("input", "target"):  # two pairs keep the test short
        (root / "rain100H_dev" / sub).mkdir()
        for k in ("16", "28"):
            shutil.copy(shared_data / "rain100H_dev" / sub / f"{k}.png", root / "rain100H_dev" / sub)
    out = tmp_path / "card"
    argv = ["prenet:rain100H", "--data", "rain100H_dev", "--data-dir", str(root), "--out", str(out),
            "--n-test", "2", "--presets", "small", "dense", "--perspective-size", "0"]
    assert report.main(argv) == 0
    rec = json.loads((out / "report.json").read_text())
    w = rec["model"]["weights"]
    assert w["sha256"] == w["registry_sha256"] == data.load_registry().set_index("file").loc[
        "rain100H/net_latest.pth", "sha256"]
    assert rec["model"]["train_rain"] is None and rec["model"]["n_params"] == 168_963
    page = (out / "report.md").read_text()
    assert re.search(r"sha256 `127c0098", page) and "raw.githubusercontent.com/csdwren/PReNet" in page
    assert "Its training rain is unknown to the card (none of the presets); on the synthetic presets it removes" in page
    paired = rec["summary"]
    assert any(s["set"] == "rain100H_dev" and s["removal"] > 0.5 for s in paired)


def test_lens_markdown_pools_the_presets_and_keeps_every_set():
    import pandas as pd

    t = pd.DataFrame({"network": ["prenet:rain100L"] * 3 + ["m:Net@w.pth"] * 2,
                      "kind": ["synthetic", "synthetic", "paired", "synthetic", "paired"],
                      "preset": ["small", "dense", "rain100H_dev", "small", "rain100H_dev"],
                      "removal": [0.8, 0.4, 0.6, 0.1, 0.2], "excess_removal": [0.5, 0.1, 0.4, -0.2, 0.0]})
    lines = zoo.lens_markdown(t).splitlines()
    assert lines[0].endswith("| synthetic presets (mean) | rain100H_dev |")
    assert lines[2] == "| `prenet:rain100L` | 200 / 200 | 0.60 (+0.30) | 0.60 (+0.40) |"
    assert lines[3] == "| `m:Net@w.pth` | unknown | 0.10 (-0.20) | 0.20 (+0.00) |"
    rain = zoo.training_rain(["prenet:rain1400", "m:Net@w.pth"], None)
    assert rain["measured_on"].str.startswith("not measured").all() and rain["pairs"].iloc[0] == 12600
