"""The training precision is part of an experiment: config field, cache key, provenance, profiles.

A model trained in bfloat16 must never be served for a float32 request (and the other way round):
the precision is resolved when a config is made (never stored as "auto") and hashed into its key.
"""
from __future__ import annotations

import json

import pytest
import torch

from derain_utils.lab import experiments, profiles
from derain_utils.lab.experiments import ExperimentConfig
from derain_utils.nets import training

TINY = dict(arch="resnet", model_size="tiny", model_kwargs={"depth": 2, "width": 4}, background="gradient",
            n_train=2, tile=24, patch=16, steps=4, batch_size=2, eval_presets=("small", "dense"), n_test=2,
            test_size=32, ckpt_every=2, lr=1e-3, warmup_steps=0)


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_config_resolves_auto_and_hashes_the_precision(monkeypatch):
    monkeypatch.delenv(training.PRECISION_ENV, raising=False)
    auto = ExperimentConfig(**TINY)
    assert auto.precision == training.resolve_precision("auto") and auto.precision in training.PRECISIONS
    fp32, bf16 = ExperimentConfig(**TINY, precision="fp32"), ExperimentConfig(**TINY, precision="bf16")
    assert fp32.key() != bf16.key()
    assert auto.key() in (fp32.key(), bf16.key())  # "auto" is never part of a key
    assert fp32.to_dict()["precision"] == "fp32" and ExperimentConfig.from_dict(bf16.to_dict()) == bf16
    assert ExperimentConfig(**TINY, precision="float32") == fp32
    monkeypatch.setenv(training.PRECISION_ENV, "fp32")
    assert ExperimentConfig(**TINY).precision == "fp32"  # the environment decides "auto"
    assert ExperimentConfig(**TINY, precision="bf16").precision == "bf16"  # an explicit field wins
    with pytest.raises(ValueError, match="precision"):
        ExperimentConfig(**TINY, precision="fp16")


def test_profile_precision_field(monkeypatch):
    monkeypatch.delenv(training.PRECISION_ENV, raising=False)
    assert profiles.resolve("quick").precision == "auto"
    prof = profiles.resolve("smoke", precision="fp32")
    assert prof.precision == "fp32" and profiles.experiment(prof).precision == "fp32"
    assert all(c.precision == "bf16" for c in profiles.grid(profiles.resolve("smoke", precision="bf16"),
                                                             seed=[0, 1]))
    assert profiles.experiment("smoke").precision == training.resolve_precision("auto")
    with pytest.raises(ValueError, match="precision"):
        profiles.resolve("smoke", precision="half")


def test_bf16_model_is_never_served_for_fp32(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    calls: list[str] = []
    real = training.train

    def spy(*args, **kwargs):
        calls.append(kwargs["precision"])
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "train", spy)
    bf16 = experiments.run(ExperimentConfig(**TINY, precision="bf16"), cache_root=root, progress=False)
    fp32 = experiments.run(ExperimentConfig(**TINY, precision="fp32"), cache_root=root, progress=False)
    assert calls == ["bf16", "fp32"]  # the fp32 request trained its own model
    assert bf16.key != fp32.key and not bf16.eval.equals(fp32.eval)
    for res, p in ((bf16, "bf16"), (fp32, "fp32")):
        prov = json.loads((root / res.key / "provenance.json").read_text())
        assert prov["precision"] == p and prov["memory_format"] == "channels_last" and "cpu_bf16" in prov
        assert json.loads((root / res.key / "config.json").read_text())["config"]["precision"] == p
    again = experiments.run(ExperimentConfig(**TINY, precision="fp32"), cache_root=root, progress=False)
    assert calls == ["bf16", "fp32"] and again.key == fp32.key  # a verified hit, no training
