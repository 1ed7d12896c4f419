"""derain_utils.lab.experiments: config identity, the verified cache, resumption, sweeps and executors."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from derain_utils import store
from derain_utils.lab import experiments, profiles, sweeps
from derain_utils.lab.experiments import CacheWarning, ExperimentConfig
from derain_utils.measure import scoring
from derain_utils.nets import models, training
from derain_utils.synth import backgrounds, rain

REPO = Path(__file__).resolve().parents[1]

# A deliberately tiny experiment: 2-layer x 4-channel ResNet, 6 steps on 16 px crops.
TINY = dict(
    arch="resnet",
    model_size="tiny",
    model_kwargs={"depth": 2, "width": 4},
    background="gradient",
    n_train=2,
    tile=24,
    patch=16,
    steps=6,
    batch_size=2,
    lr=1e-3,
    warmup_steps=0,
    eval_presets=("small", "dense"),
    n_test=2,
    test_size=32,
    ckpt_every=3,
)
ROWS_PER_RUN = TINY["n_test"] * (len(TINY["eval_presets"]) + 1)  # presets + "clean"


def tiny(**kw) -> ExperimentConfig:
    return ExperimentConfig(**{**TINY, **kw})


@pytest.fixture
def root(tmp_path) -> Path:
    return tmp_path / "cache"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and lose a lot on a busy machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def golden(tmp_path_factory, _one_thread):
    """One finished run of tiny(), made once per module; tests copy its cache folder."""
    root = tmp_path_factory.mktemp("golden") / "cache"
    calls: list[dict] = []
    real = training.train
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "train", lambda *a, **k: (calls.append(k), real(*a, **k))[1])
        result = experiments.run(tiny(), cache_root=root, progress=False)
    return root, result, calls


def copy_of(golden, dest: Path) -> Path:
    shutil.copytree(golden[0], dest)
    return dest


@pytest.fixture
def count_train(monkeypatch):
    """Counts calls of training.train (the wrapped real function still trains)."""
    calls: list[str] = []
    real = training.train

    def wrapper(*args, **kwargs):
        calls.append(str(kwargs.get("ckpt_dir")))
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "train", wrapper)
    return calls


# --------------------------------------------------------------------------- config identity

# A valid changed value for EVERY field; the test below fails when a field is added without one.
CHANGED = {
    "arch": "unet",
    "model_size": "tiny",
    "model_kwargs": {"depth": 3},
    "predict": "background",
    "background": "flat",
    "n_train": 17,
    "tile": 65,
    "gray": True,
    "train_rain": "dense",
    "steps": 801,
    "batch_size": 17,
    "patch": 47,
    "lr": 5e-4,
    "warmup_steps": 7,
    "seed": 1,
    "eval_presets": ("small",),
    "eval_background": "flat",
    "n_test": 9,
    "test_size": 65,
    "eval_seed": 1,
    "ckpt_every": 101,
    "precision": "fp32" if training.resolve_precision("auto") == "bf16" else "bf16",
}


def test_every_field_changes_the_key():
    base = profiles.experiment("quick")
    assert set(CHANGED) == {f.name for f in dataclasses.fields(ExperimentConfig)}
    keys = {"base": base.key()}
    for name, value in CHANGED.items():
        changed = base.replace(**{name: value})
        assert getattr(changed, name) != getattr(base, name)
        keys[name] = changed.key()
    assert len(set(keys.values())) == len(keys), keys


def test_key_format_and_json_round_trip():
    c = tiny(model_kwargs={"width": 4, "depth": 2})
    k = c.key()
    assert len(k) == 16 and all(ch in "0123456789abcdef" for ch in k)
    back = ExperimentConfig.from_dict(json.loads(json.dumps(c.to_dict())))
    assert back == c and back.key() == k and hash(back) == hash(c)


def test_key_is_the_same_in_another_process():
    c = tiny(lr=3e-4, eval_presets=("dense", "small", "slanted"))
    code = (
        "import json, sys; from derain_utils.lab.experiments import ExperimentConfig as E; "
        "print(E.from_dict(json.loads(sys.argv[1])).key())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(c.to_dict())], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == c.key()


def test_key_is_sha256_of_the_canonical_json():
    c = tiny()
    text = json.dumps(c.canonical(), sort_keys=True, separators=(",", ":"))
    assert c.key() == hashlib.sha256(text.encode()).hexdigest()[:16]
    assert c.canonical()["cache_version"] == experiments.CACHE_VERSION


def test_editing_a_preset_or_a_model_size_changes_the_key(monkeypatch):
    c = tiny()
    k0 = c.key()
    small = rain.PRESETS["small"]
    monkeypatch.setitem(rain.PRESETS, "small", dataclasses.replace(small, intensity=(0.3, 0.7)))
    k_rain = c.key()
    monkeypatch.setitem(rain.PRESETS, "small", small)
    assert c.key() == k0
    dense = rain.PRESETS["dense"]  # an evaluation preset counts too
    monkeypatch.setitem(rain.PRESETS, "dense", dataclasses.replace(dense, density=(0.02, 0.04)))
    k_eval = c.key()
    monkeypatch.setitem(rain.PRESETS, "dense", dense)
    sizes = dict(models.MODEL_SIZES["resnet"])
    monkeypatch.setitem(models.MODEL_SIZES, "resnet", {**sizes, "tiny": {**sizes["tiny"], "block": "residual"}})
    k_model = c.key()
    assert len({k0, k_rain, k_eval, k_model}) == 4


def test_model_kwargs_are_normalised_and_hashable():
    a = tiny(model_kwargs={"width": 4, "depth": 2})
    b = tiny(model_kwargs=(("depth", 2), ("width", 4)))
    assert a == b and a.model_kwargs == (("depth", 2), ("width", 4))
    assert a.resolved_model_kwargs() == {"block": "plain", "depth": 2, "width": 4, "predict": "rain"}
    s = tiny(arch="swinir", model_size="tiny", model_kwargs={"depths": [2, 2], "num_heads": [2, 2]})
    assert s.model_kwargs == (("depths", (2, 2)), ("num_heads", (2, 2)))
    assert len({a, b, s}) == 2


@pytest.mark.parametrize(
    "field, value",
    [
        ("arch", "vgg"),
        ("model_size", "huge"),
        ("train_rain", "drizzle"),
        ("eval_presets", ("small", "drizzle")),
        ("eval_presets", ()),
        ("eval_presets", ("small", "small")),
        ("n_train", 0),
        ("n_train", 2.5),
        ("steps", 0),
        ("batch_size", 0),
        ("patch", 0),
        ("seed", -1),
        ("n_test", 0),
        ("ckpt_every", 0),
        ("lr", 0.0),
        ("lr", float("nan")),
        ("gray", "yes"),
        ("background", ""),
        ("eval_background", ""),
        ("model_kwargs", {"depth": object()}),
        ("model_kwargs", [("depth",)]),
        ("predict", "residual"),
        ("predict", None),
    ],
)
def test_bad_fields_raise_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        tiny(**{field: value})


def test_patch_larger_than_tile_is_rejected():
    with pytest.raises(ValueError, match=r"patch \(25 px\) must be <= tile \(24 px\)"):
        tiny(patch=25)


def test_unknown_fields_are_named():
    with pytest.raises(ValueError, match="stepz"):
        tiny().replace(stepz=3)
    with pytest.raises(ValueError, match="colour"):
        ExperimentConfig.from_dict({**tiny().to_dict(), "colour": True})


def test_sizes_come_from_a_profile_not_from_defaults():
    sizes = ("model_size", "n_train", "tile", "steps", "batch_size", "patch", "lr", "warmup_steps", "n_test",
             "test_size", "ckpt_every")
    no_default = {f.name for f in dataclasses.fields(ExperimentConfig) if f.default is dataclasses.MISSING}
    assert no_default == set(sizes)
    with pytest.raises(TypeError, match="steps"):
        ExperimentConfig(background="natural", n_train=64)
    quick = profiles.resolve("quick")
    c = profiles.experiment(quick, background="natural", n_train=64)
    assert (c.steps, c.patch, c.tile, c.model_size) == (quick.steps, quick.patch, quick.tile, quick.model_size)


def test_name_follows_the_vocabulary():
    assert tiny(background="natural", n_train=64).name() == "resnet_bg-natural_n64_rain-small_s0"
    assert tiny(gray=True, seed=3).name() == "resnet_bg-gradient_n2_rain-small_gray_s3"
    assert tiny(arch="unet", train_rain="mixed").name() == "unet_bg-gradient_n2_rain-mixed_s0"
    assert tiny(background="/data/sets/bg_my_set/").name() == "resnet_bg-bg-my-set_n2_rain-small_s0"
    assert tiny(predict="background", gray=True).name() == "resnet_bg-gradient_n2_rain-small_gray_pred-bg_s0"
    assert tiny(predict="rain").name() == tiny().name()  # the default adds nothing


def test_predict_reaches_the_model_and_the_table(tmp_path):
    c = tiny(predict="background")
    assert c.resolved_model_kwargs()["predict"] == "background" and tiny().resolved_model_kwargs()["predict"] == "rain"
    with pytest.raises(ValueError, match="predict=... instead"):
        tiny(model_kwargs={"depth": 2, "predict": "background"})
    r = experiments.run(c, cache_root=tmp_path, progress=False)
    model = r.load_model()
    assert model.predicts == "background" and model.config["predict"] == "background"
    assert (r.eval["predict"] == "background").all()
    assert list(r.eval.columns[:4]) == ["key", "name", "arch", "model_size"] and "predict" in r.eval.columns
    assert ExperimentConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c


# --------------------------------------------------------------------------- run and the cache


def _files(entry: Path) -> set[str]:
    """The entry's files, without the lock file (which stays, free, once released)."""
    return {p.name for p in entry.iterdir() if p.name != store.LOCK_FILE}


def test_run_writes_a_complete_entry_and_reuses_it(golden, tmp_path, monkeypatch):
    c = tiny()
    _, r, calls = golden
    assert not r.cached and r.dir == golden[0] / c.key() and len(calls) == 1
    assert calls[0]["ckpt_dir"] == r.dir / "ckpt" and calls[0]["ckpt_every"] == 3 and calls[0]["seed"] == 0
    assert _files(r.dir) == {"config.json", "model.pt", "history.csv", "eval.csv", "provenance.json", "manifest.json"}
    manifest = json.loads((r.dir / "manifest.json").read_text())["files"]
    assert set(manifest) == {"config.json", "model.pt", "history.csv", "eval.csv", "provenance.json"}
    for name, digest in manifest.items():
        assert hashlib.sha256((r.dir / name).read_bytes()).hexdigest() == digest
    stored = json.loads((r.dir / "config.json").read_text())
    assert stored["key"] == c.key() and stored["name"] == c.name()
    assert ExperimentConfig.from_dict(stored["config"]) == c
    blob = torch.load(r.dir / "model.pt", weights_only=True)
    assert blob["arch"] == "resnet" and blob["in_channels"] == 3
    assert blob["kwargs"] == {"block": "plain", "depth": 2, "width": 4, "predict": "rain"}

    # eval: one row per test image x (presets + clean), config columns first
    ev = r.eval
    assert len(ev) == ROWS_PER_RUN
    assert list(ev.columns[: len(experiments.CONFIG_COLUMNS)]) == list(experiments.CONFIG_COLUMNS)
    assert sorted(ev["preset"].unique()) == ["clean", "dense", "small"]
    assert (ev["key"] == c.key()).all() and (ev["n_train"] == 2).all() and (ev["steps"] == 6).all()
    assert (ev["eval_background"] == "gradient").all()
    assert list(ev.loc[ev.preset == "small", "image"]) == ["gradient:test:0", "gradient:test:1"]
    assert ev.loc[ev.preset == "small", "in_distribution"].all()
    assert not ev.loc[ev.preset == "dense", "in_distribution"].any()
    assert list(r.history["step"]) == [6]  # log_every 10 > steps: one row, at the last step

    prov = r.provenance
    assert {"git", "packages", "device", "wall_s", "data"} <= set(prov)
    assert prov["device"].startswith("cpu") and prov["resumed_from"] is None
    assert prov["data"]["test_ids"] == ["gradient:test:0", "gradient:test:1"]
    assert prov["data"]["n_train"] == 2 and len(prov["data"]["sha256"]) == 64

    # a second call: no training at all, identical tables
    root = copy_of(golden, tmp_path / "cache")
    monkeypatch.setattr(training, "train", lambda *a, **k: pytest.fail("trained although cached"))
    t0 = time.perf_counter()
    again = experiments.run(c, cache_root=root, progress=False)
    assert again.cached and time.perf_counter() - t0 < 5.0
    pd.testing.assert_frame_equal(again.eval, r.eval)
    pd.testing.assert_frame_equal(again.history, r.history)


def test_provenance_records_the_threads_that_trained_the_model(root):
    # was: run(cfg, threads=2) recorded torch_threads = 1 (read after training had restored the caller's count)
    r = experiments.run(tiny(seed=5), cache_root=root, threads=2)
    assert torch.get_num_threads() == 1  # restored for the caller
    assert json.loads((r.dir / "provenance.json").read_text())["torch_threads"] == 2
    r = experiments.run(tiny(seed=6), cache_root=root)
    assert json.loads((r.dir / "provenance.json").read_text())["torch_threads"] == 1


def test_run_is_deterministic_and_load_model_reproduces_the_eval(golden, tmp_path):
    c = tiny()
    a = golden[1]
    b = experiments.run(c, cache_root=tmp_path / "b", progress=False)
    pd.testing.assert_frame_equal(a.eval, b.eval)
    ma, mb = a.load_model(), b.load_model()
    for (ka, va), (kb, vb) in zip(ma.state_dict().items(), mb.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    # the reloaded model, evaluated afresh on the same test images, gives the stored numbers
    split = backgrounds.draw_split(c.background, c.n_train, c.n_test, tile=c.tile, test_size=c.test_size)
    fresh = scoring.evaluate(
        ma, split.test_tensor(), list(c.eval_presets), seed=c.eval_seed, train_spec=c.train_rain, names=split.test_ids
    )
    for col in ("psnr", "ssim", "removal"):
        pd.testing.assert_series_equal(
            fresh[col].reset_index(drop=True), a.eval[col].reset_index(drop=True), check_names=False
        )
    # a different seed gives a different model
    other = experiments.run(c.replace(seed=1), cache_root=tmp_path / "b", progress=False)
    assert not other.eval["psnr"].equals(a.eval["psnr"])


def test_eval_background_and_gray(tmp_path):
    r = experiments.run(tiny(eval_background="flat", gray=True), cache_root=tmp_path, progress=False)
    ev = r.eval
    assert (ev["background"] == "gradient").all() and (ev["eval_background"] == "flat").all()
    assert sorted(ev["image"].unique()) == ["flat:test:0", "flat:test:1"]
    assert ev["gray"].all() and ev["psnr_y"].isna().all()  # no luma of a luma image
    assert r.provenance["data"]["train_source"] == "gradient" and r.provenance["data"]["test_source"] == "flat"
    assert r.load_model().in_channels == 1
    # 6 steps from a near-zero tail (models.py): still close to the identity on a clean input
    assert (ev.loc[ev.preset == "clean", "psnr"] > 30).all()


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


CORRUPTIONS = {
    "delete history.csv": lambda e: (e / "history.csv").unlink(),
    "flip a byte in model.pt": lambda e: _flip_byte(e / "model.pt"),
    "truncate manifest.json": lambda e: (e / "manifest.json").write_text('{"files": {"conf'),
    "edit eval.csv": lambda e: (e / "eval.csv").write_text((e / "eval.csv").read_text().replace("small", "smalL")),
    "config.json of another config": lambda e: (e / "config.json").write_text(
        json.dumps({"key": tiny(seed=9).key(), "config": tiny(seed=9).to_dict()})
    ),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_corrupt_entries_are_detected_and_recomputed(golden, tmp_path, count_train, corruption):
    c = tiny()
    first = golden[1]
    root = copy_of(golden, tmp_path / "cache")
    CORRUPTIONS[corruption](root / c.key())
    with pytest.warns(CacheWarning, match="not usable"):
        again = experiments.run(c, cache_root=root, progress=False)
    assert not again.cached and len(count_train) == 1
    assert again.provenance["resumed_from"] is None  # retrained from scratch, not resumed
    pd.testing.assert_frame_equal(
        again.eval.drop(columns="key"), first.eval.drop(columns="key"), check_exact=False, rtol=1e-6
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        assert experiments.run(c, cache_root=root, progress=False).cached


def test_unreadable_model_with_valid_checksum_is_not_reused(golden, tmp_path):
    c = tiny()
    root = copy_of(golden, tmp_path / "cache")
    entry = root / c.key()
    (entry / "model.pt").write_bytes(b"not a checkpoint")
    manifest = json.loads((entry / "manifest.json").read_text())
    manifest["files"]["model.pt"] = hashlib.sha256(b"not a checkpoint").hexdigest()
    (entry / "manifest.json").write_text(json.dumps(manifest))
    with pytest.warns(CacheWarning, match="model.pt does not load"):
        again = experiments.run(c, cache_root=root, progress=False)
    assert not again.cached
    assert isinstance(again.load_model(), models.DerainNet)


class Crash(RuntimeError):
    pass


def test_interrupted_run_resumes_from_its_checkpoint(tmp_path):
    c = tiny(steps=8, ckpt_every=3)

    def crash_at_5(step, loss):
        if step == 5:
            raise Crash("simulated crash")

    with pytest.raises(Crash):
        experiments.run(c, cache_root=tmp_path / "a", progress=False, callback=crash_at_5)
    entry = tmp_path / "a" / c.key()
    assert (entry / "ckpt" / training.CHECKPOINT_NAME).is_file() and not (entry / "manifest.json").exists()
    assert not (entry / store.HOLDER_FILE).exists()  # released despite the crash
    free = store.EntryLock(entry)
    assert free.try_acquire()  # ... and free
    free.release()
    with pytest.warns(CacheWarning, match="incomplete.*resume"):
        resumed = experiments.run(c, cache_root=tmp_path / "a", progress=False)
    assert resumed.provenance["resumed_from"] == 3
    assert not (entry / "ckpt").exists()  # checkpoints are dropped once the entry is complete
    straight = experiments.run(c, cache_root=tmp_path / "b", progress=False)
    pd.testing.assert_frame_equal(
        resumed.eval[["psnr", "ssim", "removal"]], straight.eval[["psnr", "ssim", "removal"]]
    )


def test_corrupt_training_checkpoint_restarts_from_scratch(root):
    c = tiny()
    entry = root / c.key()
    (entry / "ckpt").mkdir(parents=True)
    (entry / "ckpt" / training.CHECKPOINT_NAME).write_bytes(b"garbage")
    with pytest.warns(CacheWarning) as record:
        r = experiments.run(c, cache_root=root, progress=False)
    assert any("cannot be resumed" in str(w.message) for w in record)
    assert r.provenance["resumed_from"] is None and not r.cached


def test_force_retrains(golden, tmp_path, count_train):
    root = copy_of(golden, tmp_path / "cache")
    r = experiments.run(tiny(), cache_root=root, progress=False, force=True)
    assert not r.cached and len(count_train) == 1


# --------------------------------------------------------------------------- locking

HOLD = (
    "import sys, time; from derain_utils import store; lock = store.EntryLock(sys.argv[1]); "
    "assert lock.try_acquire(); print('held', flush=True); time.sleep(60)"
)


def test_a_live_lock_blocks_and_times_out_naming_the_holder(root):
    c = tiny()
    entry = root / c.key()
    entry.mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(entry)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(TimeoutError, match=rf"{c.key()} stayed locked .*pid {proc.pid}"):
            experiments.run(c, cache_root=root, progress=False, lock_timeout=0.6)
    finally:
        proc.kill()
        proc.wait()
    r = experiments.run(c, cache_root=root, progress=False, lock_timeout=5)  # the holder died: free at once
    assert not r.cached


def test_a_left_over_lock_of_a_killed_run_does_not_make_anyone_wait(root):
    c = tiny()
    entry = root / c.key()
    entry.mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    (entry / store.LOCK_FILE).write_text("")
    (entry / store.HOLDER_FILE).write_text(json.dumps({"pid": proc.pid, "host": "h", "since": time.time()}))
    t0 = time.perf_counter()
    r = experiments.run(c, cache_root=root, progress=False, lock_timeout=2)
    assert not r.cached and time.perf_counter() - t0 < 60
    assert not (entry / store.HOLDER_FILE).exists()  # released


# --------------------------------------------------------------------------- the store's faults: clear errors


def test_a_cache_root_or_entry_that_is_a_file_is_named(tmp_path):
    c = tiny()
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(store.StoreError, match=rf"cache root {tmp_path / 'file'} cannot be a folder"):
        experiments.run(c, cache_root=tmp_path / "file", progress=False)
    root = tmp_path / "cache"
    root.mkdir()
    (root / c.key()).write_text("debris")
    with pytest.raises(store.StoreError, match=rf"cache entry {root / c.key()} cannot be a folder"):
        experiments.run(c, cache_root=root, progress=False)
    assert (root / c.key()).read_text() == "debris"  # nothing touched


def test_a_ckpt_that_is_a_file_is_named(root):
    c = tiny()
    entry = root / c.key()
    entry.mkdir(parents=True)
    (entry / "ckpt").write_text("debris")
    with pytest.raises(store.StoreError, match=rf"training checkpoint folder {entry / 'ckpt'} cannot be a folder"):
        experiments.run(c, cache_root=root, progress=False)
    assert (entry / "ckpt").read_text() == "debris" and not (entry / store.HOLDER_FILE).exists()


def test_a_read_only_cache_with_an_incomplete_entry_is_a_clear_error(golden, tmp_path, monkeypatch):
    c = tiny()
    root = copy_of(golden, tmp_path / "cache")
    (root / c.key() / "manifest.json").unlink()  # incomplete: it would have to be recomputed

    def read_only(self):
        raise store.StoreError(f"cannot lock cache entry {self.folder}: Permission denied; it would have to be "
                               "(re)computed, which needs a writable cache (read-only location?)")

    monkeypatch.setattr(store.EntryLock, "try_acquire", read_only)
    with pytest.raises(store.StoreError, match=rf"cannot lock cache entry {root / c.key()}.*read-only"):
        experiments.run(c, cache_root=root, progress=False)
    assert _files(root / c.key()) == {"config.json", "model.pt", "history.csv", "eval.csv", "provenance.json"}


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores file permissions")
def test_a_read_only_cache_really_read_only(golden, tmp_path):
    c = tiny()
    root = copy_of(golden, tmp_path / "cache")
    entry = root / c.key()
    assert experiments.run(c, cache_root=root, progress=False).cached  # reading needs no write access ...
    (entry / "manifest.json").unlink()
    os.chmod(entry, 0o555)
    try:
        with pytest.raises(store.StoreError, match=str(entry)):  # ... recomputing does, and says so
            experiments.run(c, cache_root=root, progress=False)
    finally:
        os.chmod(entry, 0o755)


# --------------------------------------------------------------------------- sweep


def four_configs() -> list[ExperimentConfig]:
    return [tiny(n_train=n, seed=s) for n in (1, 2) for s in (0, 1)]


def test_sweep_returns_one_tidy_table_and_reuses_the_cache(root, count_train, monkeypatch):
    configs = four_configs()
    table = sweeps.sweep(configs + [configs[0]], cache_root=root, progress=False)  # a duplicate runs once
    assert len(count_train) == 4
    assert len(table) == 4 * ROWS_PER_RUN
    assert list(table["key"].unique()) == [c.key() for c in configs]  # in the order given
    assert table.groupby(["key", "image", "preset"]).size().eq(1).all()
    per_config = table.groupby(["n_train", "seed"]).size()
    assert per_config.to_dict() == {(1, 0): ROWS_PER_RUN, (1, 1): ROWS_PER_RUN, (2, 0): ROWS_PER_RUN,
                                    (2, 1): ROWS_PER_RUN}
    monkeypatch.setattr(training, "train", lambda *a, **k: pytest.fail("trained although cached"))
    t0 = time.perf_counter()
    again = sweeps.sweep(configs, cache_root=root, progress=False)
    assert time.perf_counter() - t0 < 5.0
    pd.testing.assert_frame_equal(again, table)


def test_a_sweep_keeps_its_progress_file_current(root, monkeypatch, tmp_path):
    """The monograph runner's progress lines read this file (``$DERAIN_PROGRESS_FILE``)."""
    import json

    configs = four_configs()
    seen = []
    real_run = experiments.run
    progress = tmp_path / "progress.json"

    def spy(*a, **k):
        seen.append(json.loads(progress.read_text()))  # the state before each model
        return real_run(*a, **k)

    monkeypatch.setenv(sweeps.PROGRESS_ENV, str(progress))
    sweeps.sweep(configs[:1], cache_root=root, progress=False)  # one cached model before the sweep below
    monkeypatch.setattr(experiments, "run", spy)
    sweeps.sweep(configs, cache_root=root, progress=False)
    assert [(s["done"], s["total"], s["cached"]) for s in seen] == [(1, 4, 1), (2, 4, 1), (3, 4, 1)]
    assert seen[0]["eta_s"] is None and seen[1]["eta_s"] > 0  # an ETA once a model has been trained
    final = json.loads(progress.read_text())
    assert (final["done"], final["total"], final["what"], final["eta_s"]) == (4, 4, "trained", 0.0)
    monkeypatch.setenv(sweeps.PROGRESS_ENV, str(tmp_path / "no" / "such" / "folder" / "p.json"))
    sweeps.sweep(configs, cache_root=root, progress=False)  # an unwritable progress file never stops a sweep


def test_an_interrupted_sweep_finishes_only_the_missing_runs(root, monkeypatch):
    configs = four_configs()
    real = training.train
    calls: list[int] = []

    def crash_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the user stops the sweep during the 3rd run
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "train", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        sweeps.sweep(configs, cache_root=root, progress=False)
    done = [c for c in configs if (root / c.key() / "manifest.json").exists()]
    assert done == configs[:2]
    mtimes = {c.key(): (root / c.key() / "manifest.json").stat().st_mtime_ns for c in done}

    calls.clear()
    monkeypatch.setattr(training, "train", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacheWarning)  # the 3rd entry was left incomplete
        table = sweeps.sweep(configs, cache_root=root, progress=False)
    assert len(calls) == 2 and len(table) == 4 * ROWS_PER_RUN
    assert {k: (root / k / "manifest.json").stat().st_mtime_ns for k in mtimes} == mtimes


def test_sweep_rejects_bad_input(root):
    with pytest.raises(ValueError, match="configs"):
        sweeps.sweep([], cache_root=root)
    with pytest.raises(ValueError, match=r"configs\[1\]"):
        sweeps.sweep([tiny(), {"arch": "resnet"}], cache_root=root)
    with pytest.raises(ValueError, match="workers"):
        sweeps.sweep([tiny()], cache_root=root, workers=0)
    with pytest.raises(ValueError, match="executor"):
        sweeps.sweep([tiny()], cache_root=root, executor="threads")
    with pytest.raises(ValueError, match="threads"):
        sweeps.sweep([tiny()], cache_root=root, threads=0)
    with pytest.raises(ValueError, match="submitit_kwargs"):
        sweeps.sweep([tiny()], cache_root=root, submitit_kwargs={"timeout_min": 1})


def test_sweep_names_the_failed_runs_and_keeps_the_others(root):
    good, bad = tiny(), tiny(model_kwargs={"depth": 2, "width": 4, "colour": 3})
    with pytest.raises(RuntimeError, match=r"1 of 2 runs failed: .*colour"):
        sweeps.sweep([good, bad], cache_root=root, progress=False)
    assert (root / good.key() / "manifest.json").exists()


def test_a_single_worker_sweep_trains_on_one_thread_unless_told(root):
    # was: torch's default threads (2 s per smoke model on a busy machine against 0.5 s on one thread)
    torch.set_num_threads(2)
    try:
        sweeps.sweep([tiny(seed=21)], cache_root=root, progress=False)
        sweeps.sweep([tiny(seed=22)], cache_root=root, progress=False, threads=2)
        assert torch.get_num_threads() == 2  # the caller's count is restored
    finally:
        torch.set_num_threads(1)
    threads = [json.loads((root / tiny(seed=s).key() / "provenance.json").read_text())["torch_threads"]
               for s in (21, 22)]
    assert threads == [1, 2]


def test_process_executor_matches_inline(tmp_path):
    configs = four_configs()[:2]
    inline = sweeps.sweep(configs, cache_root=tmp_path / "a", progress=False)
    par = sweeps.sweep(configs, cache_root=tmp_path / "b", progress=False, workers=2, executor="process")
    cols = ["key", "image", "preset"]
    assert par[cols].equals(inline[cols])
    pd.testing.assert_series_equal(par["psnr"], inline["psnr"], rtol=1e-4)


def test_a_worker_killed_outright_does_not_take_the_other_runs_down(tmp_path):
    # was: "2 of 2 runs failed: BrokenProcessPool" when one of two workers was SIGKILLed mid-run
    import multiprocessing
    import signal
    import threading

    configs = [tiny(steps=3000, seed=s, ckpt_every=50) for s in (11, 12)]
    root = tmp_path / "cache"
    killed: list[int] = []

    def kill_one_worker() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            busy = any((root / c.key() / store.LOCK_FILE).exists() for c in configs)
            workers = [p for p in multiprocessing.active_children() if p.pid]
            if busy and workers:
                os.kill(workers[0].pid, signal.SIGKILL)
                killed.append(workers[0].pid)
            time.sleep(0.02)

    killer = threading.Thread(target=kill_one_worker, daemon=True)
    killer.start()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = sweeps.sweep(configs, cache_root=root, progress=False, workers=2, executor="process")
    killer.join(timeout=5)
    assert killed, "the test never found a busy worker to kill"
    assert set(table["key"]) == {c.key() for c in configs}  # both runs finished, in a fresh pool
    assert any("a sweep worker died" in str(w.message) for w in caught)
    assert sweeps.POOL_ATTEMPTS >= 2


def test_submitit_local_executor(tmp_path):
    pytest.importorskip("submitit")
    configs = four_configs()[:2]
    table = sweeps.sweep(
        configs,
        cache_root=tmp_path / "cache",
        progress=False,
        executor="submitit",
        submitit_kwargs={"cluster": "local", "timeout_min": 10, "folder": tmp_path / "jobs"},
    )
    assert len(table) == 2 * ROWS_PER_RUN and list(table["key"].unique()) == [c.key() for c in configs]
    assert any((tmp_path / "jobs").iterdir())  # the job logs went where we said
    again = sweeps.sweep(configs, cache_root=tmp_path / "cache", progress=False, executor="submitit",
                              submitit_kwargs={"cluster": "local"})
    pd.testing.assert_frame_equal(again, table)


# --------------------------------------------------------------------------- learning curves: scoring during training

POINTS = 3


def test_curve_steps_known_answers_and_bad_input():
    assert experiments.curve_steps(500, 5) == [100, 200, 300, 400, 500]
    assert experiments.curve_steps(7, 3) == [2, 5, 7]
    assert experiments.curve_steps(4, 4) == [1, 2, 3, 4]
    for steps in (10, 33, 1000):
        for points in (1, 3, 10):
            s = experiments.curve_steps(steps, points)
            assert len(s) == points and s[-1] == steps and all(b > a for a, b in zip([0, *s], s))
    with pytest.raises(ValueError, match="points"):
        experiments.curve_steps(5, 6)
    with pytest.raises(ValueError, match="points"):
        experiments.curve_steps(5, 0)
    with pytest.raises(ValueError, match="steps"):
        experiments.curve_steps(True, 1)


def test_curve_key_depends_on_config_points_and_version(monkeypatch):
    k = experiments.curve_key(tiny(), POINTS)
    assert len(k) == 16 and int(k, 16) >= 0 and k == experiments.curve_key(tiny(), POINTS)
    assert k != experiments.curve_key(tiny(), POINTS + 1) and k != experiments.curve_key(tiny(seed=1), POINTS)
    assert k != tiny().key()
    # the key of the former dynamics cache: sha256 of {dynamics_version, points, experiment}
    ident = {"dynamics_version": 1, "points": POINTS, "experiment": tiny().canonical()}
    text = json.dumps(ident, sort_keys=True, separators=(",", ":"), allow_nan=False)
    assert k == hashlib.sha256(text.encode()).hexdigest()[:16]
    monkeypatch.setattr(experiments, "CURVE_VERSION", experiments.CURVE_VERSION + 1)
    assert k != experiments.curve_key(tiny(), POINTS)
    with pytest.raises(ValueError, match="config"):
        experiments.curve_key({"arch": "resnet"}, POINTS)


def test_a_curve_run_trains_the_experiments_model_and_scores_it_with_the_one_scorer(golden, tmp_path, monkeypatch):
    c = tiny()
    root = copy_of(golden, tmp_path / "cache")
    res = experiments.run(c, cache_root=root, progress=False, curve_points=POINTS)
    assert not res.cached and res.dir == root / experiments.CURVES_DIR / res.entry_key
    assert res.entry_key == experiments.curve_key(c, POINTS) and res.key == c.key()
    assert sorted(res.curve["step"].unique()) == [0, *experiments.curve_steps(c.steps, POINTS)]
    assert len(res.curve) == (POINTS + 1) * c.n_test * (len(c.eval_presets) + 1)
    assert list(res.curve.columns) == list(experiments.CURVE_COLUMNS)
    stored = json.loads((res.dir / "config.json").read_text())
    assert stored["eval_steps"] == [0, 2, 4, 6] and stored["experiment_key"] == c.key()
    # scoring during training changes nothing: the model is the experiment's, bitwise
    exp = golden[1]
    a, b = res.load_model().state_dict(), exp.load_model().state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    pd.testing.assert_frame_equal(res.eval.drop(columns="key"), exp.eval.drop(columns="key"))
    last = res.curve[res.curve["step"] == c.steps].reset_index(drop=True)
    for col in ("psnr", "removal", "bg_psnr", "rain_psnr", "mask_fraction"):  # the same scorer as the evaluation
        np.testing.assert_array_equal(last[col].to_numpy(float), exp.eval[col].to_numpy(float), err_msg=col)
    # step 0 is the untrained network; on the "clean" rows only psnr is scored
    first = res.curve[res.curve["step"] == 0]
    assert first.loc[first["preset"] == "clean", "removal"].isna().all()
    # a second call reads the cache and trains nothing
    monkeypatch.setattr(training, "train", lambda *a, **k: pytest.fail("trained again"))
    again = experiments.run(c, cache_root=root, progress=False, curve_points=POINTS)
    assert again.cached
    pd.testing.assert_frame_equal(again.curve, res.curve)
    assert experiments.load(c, cache_root=root, curve_points=POINTS + 1) is None  # other points: another entry


def test_a_damaged_curve_entry_is_recomputed(tmp_path):
    root = tmp_path / "cache"
    c = tiny()
    res = experiments.run(c, cache_root=root, progress=False, curve_points=POINTS)
    curve = res.dir / "curve.csv"
    curve.write_text(curve.read_text().replace("small", "smell", 1))
    with pytest.warns(CacheWarning, match="curve.csv does not match its checksum"):
        assert experiments.load(c, cache_root=root, curve_points=POINTS) is None
    with pytest.warns(CacheWarning):
        redo = experiments.run(c, cache_root=root, progress=False, curve_points=POINTS)
    assert not redo.cached
    pd.testing.assert_frame_equal(redo.curve, res.curve)
    assert not (redo.dir / "ckpt").exists()  # a curve run keeps no checkpoints


def test_a_curve_run_with_more_points_than_steps_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="points"):
        experiments.run(tiny(), cache_root=tmp_path, curve_points=7)


def test_sweep_curves_returns_one_table_and_dedupes(tmp_path):
    root = tmp_path / "cache"
    configs = [tiny(seed=0), tiny(seed=1), tiny(seed=0)]
    df = sweeps.sweep_curves(configs, POINTS, cache_root=root, progress=False)
    assert set(df["seed"]) == {0, 1} and df["key"].nunique() == 2
    assert list(df.columns[:3]) == ["key", "experiment_key", "name"]
    assert set(df["key"]) == {experiments.curve_key(c, POINTS) for c in configs}
    assert set(df["experiment_key"]) == {tiny(seed=0).key(), tiny(seed=1).key()}
    assert len(df) == 2 * (POINTS + 1) * TINY["n_test"] * 3 and df["in_distribution"].dtype == "boolean"
    with pytest.raises(ValueError, match="points"):
        sweeps.sweep_curves(configs, 7, cache_root=root)
    b = sweeps.sweep_curves(configs[:2], POINTS, cache_root=tmp_path / "b", workers=2, progress=False)
    pd.testing.assert_frame_equal(df, b)  # a process pool gives the same curves


# --------------------------------------------------------------------------- one pipeline: held-out inputs, load_entry


def test_held_out_inputs_are_those_the_run_scored(golden):
    c = tiny()
    inputs = experiments.held_out(c)
    assert inputs.names == ["gradient:test:0", "gradient:test:1"] and list(inputs.eval_set) == ["small", "dense"]
    fresh = scoring.evaluate(golden[1].load_model(), inputs.eval_set, train_spec=c.train_rain, names=inputs.names)
    for col in ("psnr", "ssim", "removal", "bg_psnr"):
        np.testing.assert_array_equal(fresh[col].to_numpy(float), golden[1].eval[col].to_numpy(float), err_msg=col)


def test_load_entry_enforces_the_checksums(golden, tmp_path):
    root = copy_of(golden, tmp_path / "cache")
    entry = root / tiny().key()
    r = experiments.load_entry(entry)
    assert r.config == tiny() and r.cached
    assert experiments.entry_config(entry) == (tiny(), None)
    blob = torch.load(entry / "model.pt", weights_only=True)
    name = next(iter(blob["state_dict"]))
    blob["state_dict"][name] = blob["state_dict"][name] + 1e-3  # one weight tensor changed, file still loads
    torch.save(blob, entry / "model.pt")
    with pytest.raises(experiments.CacheError, match=rf"{entry} cannot be trusted: model.pt does not match"):
        experiments.load_entry(entry)
    with pytest.raises(experiments.CacheError, match="not a cache entry"):
        experiments.load_entry(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        experiments.load_entry(tmp_path / "nope")


def test_training_fit_scores_the_models_own_training_tiles(golden, tmp_path):
    from derain_utils.lab import sweeps
    from derain_utils.measure import scoring

    root, res, _ = golden
    cfg = res.config
    fit = sweeps.training_fit([res])
    assert list(fit.columns) == ["key", "name", "removal_fit", "bg_psnr_fit", "n_fit_tiles"]
    assert fit.loc[0, "key"] == cfg.key() and fit.loc[0, "n_fit_tiles"] == min(cfg.n_train, sweeps.FIT_TILES)
    # the same numbers by hand: the first training tiles, the training rain of the salted seed, the one scorer
    tiles = experiments.training_split(cfg).train_tensor()[:sweeps.FIT_TILES]
    inputs = scoring.make_eval_set(tiles, [cfg.train_rain], seed=cfg.eval_seed + sweeps.FIT_SEED_SALT)
    ev = scoring.evaluate(res.load_model(), inputs, train_spec=cfg.train_rain, ssim=False)
    assert fit.loc[0, "removal_fit"] == pytest.approx(ev.loc[ev["preset"] != "clean", "removal"].mean())
    # configs read the cache (never train); a config without an entry is a clear error
    assert sweeps.training_fit([cfg], cache_root=root).equals(fit)
    with pytest.raises(ValueError, match="no finished cache entry"):
        sweeps.training_fit([cfg.replace(seed=cfg.seed + 1)], cache_root=tmp_path)
    with pytest.raises(ValueError, match="n_tiles"):
        sweeps.training_fit([res], n_tiles=0)


def test_a_script_without_a_main_guard_is_told_why_its_workers_died(tmp_path):
    """Spawned workers re-import the calling script; without the guard they die at start, and the error says so."""
    import subprocess
    import sys

    script = tmp_path / "unguarded.py"
    script.write_text(
        "from derain_utils.lab import experiments, sweeps\n"
        f"c = experiments.ExperimentConfig(**{dict(TINY, steps=2, ckpt_every=2)!r})\n"
        f"sweeps.sweep([c, c.replace(seed=1)], cache_root={str(tmp_path / 'cache')!r}, progress=False, workers=2,\n"
        "             executor='process')\n", encoding="utf-8")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "if __name__ == '__main__':" in out.stderr.splitlines()[-1]


def _write_folder(folder: Path, seed: int, n: int = 12) -> None:
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(folder / f"img{i:02d}.png")


def test_stale_folder_background_is_retrained_not_served(tmp_path, root):
    """Issue 23: a folder background whose images were replaced served the stale model (the stored fingerprint was
    never checked). The entry is now compared with the images it names, and retrained when they changed."""
    folder = tmp_path / "bgs"
    _write_folder(folder, 0)
    c = tiny(background=str(folder))
    first = experiments.run(c, cache_root=root, progress=False)
    assert not first.cached and experiments.data_changed(first) is None
    assert experiments.run(c, cache_root=root, progress=False).cached  # unchanged images: served from the cache
    _write_folder(folder, 1)  # same names, other pixels
    hit = experiments.load(c, cache_root=root)
    reason = experiments.data_changed(hit)
    assert reason is not None and "training images" in reason and str(folder) in reason
    with pytest.warns(experiments.CacheWarning, match="is stale: the training images"):
        again = experiments.run(c, cache_root=root, progress=False)
    assert not again.cached
    assert again.provenance["data"]["train_pixels_sha256"] != first.provenance["data"]["train_pixels_sha256"]
    assert experiments.data_changed(again) is None
    with pytest.warns(experiments.CacheWarning, match="is stale"):  # a sweep retrains it too
        _write_folder(folder, 2)
        table = sweeps.sweep([c], cache_root=root, progress=False)
    assert len(table) == ROWS_PER_RUN
    assert experiments.data_changed(experiments.load(c, cache_root=root)) is None


def test_cached_folder_model_loads_without_its_images(tmp_path, root):
    """The key never covers the images, so that a cached result loads where the data are absent: the staleness
    check judges only images it can read."""
    folder = tmp_path / "bgs"
    _write_folder(folder, 0)
    c = tiny(background=str(folder))
    experiments.run(c, cache_root=root, progress=False)
    shutil.rmtree(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert experiments.run(c, cache_root=root, progress=False).cached
