"""derain_utils.lab.bench: the suite's records, the GPU report's CPU fallback, the workload count, and the
detailed one-model benchmark. Timings themselves are not asserted (the machine may be busy); the
structure, the arithmetic between fields and the known answers are."""
from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from derain_utils.lab import bench, designs, profiles, workload
from derain_utils.nets import models, training

REPO = Path(__file__).resolve().parents[1]
TINY = bench.BenchCase("resnet", "tiny", 16, 4)


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_bench_model_record():
    r = bench.bench_model(TINY, steps=2, warmup=1)
    assert tuple(r) == bench.RECORD_KEYS
    assert r["model"] == "resnet/tiny" and (r["patch"], r["batch"], r["threads"]) == (16, 4, 1)
    assert r["speedup"] == pytest.approx(r["baseline_ms"] / r["fast_ms"], rel=1e-2)
    assert r["overhead_ratio"] == pytest.approx(r["full_step_ms"] / r["fast_ms"], rel=1e-2)
    mode = training.resolve_mode(device="cpu")
    assert (r["precision"], r["memory_format"]) == (mode.precision, mode.memory_format)
    flops = models.count_flops(models.build_model("resnet", size="tiny"), 16, batch=4)
    assert r["forward_gflop"] == pytest.approx(flops / 1e9, rel=1e-3)
    forced = bench.bench_model(TINY, steps=1, warmup=0, fast=training.StepMode("fp32", "contiguous"))
    assert forced["precision"] == "fp32" and forced["memory_format"] == "contiguous"


def test_suite_command_line_writes_one_record_per_model(tmp_path):
    out = tmp_path / "bench.json"
    records = bench.main(["--json", str(out), "--models", "resnet/quick", "--steps", "1", "--warmup", "0",
                          "--synth-n", "8", "--synth-size", "32"])
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(records))
    assert [r["model"] for r in written] == ["resnet/quick", "training", "synthesis"]
    rate = written[1]  # models per minute, one at a time and stacked, and the default path
    assert rate["one_at_a_time_per_min"] > 0 and rate["stacked_per_min"] > 0 and rate["steps_per_model"] == 500
    assert rate["stacked_per_min"] == pytest.approx(rate["one_at_a_time_per_min"] * rate["ratio"])
    assert rate["default"] == ("stacked" if rate["ratio"] >= bench.STACK_ADOPT else "one at a time")
    quick = written[0]
    assert (quick["patch"], quick["batch"], quick["threads"]) == (48, 16, 1)
    assert set(bench.RECORD_KEYS) <= set(quick) and quick["baseline_ms"] > 0 and quick["fast_ms"] > 0
    synth = written[2]
    assert tuple(synth) == bench.SYNTH_KEYS and synth["images_per_s"] > 0 and synth["size"] == 32
    alb = synth["albumentations_ms_per_image"]
    assert alb is None or alb > 0
    table = bench.format_suite(written)
    assert "| resnet/quick | 48 px x 16 |" in table and "rain synthesis" in table and "models/min one at a" in table
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--models", "vgg/huge"])
    assert exit_info.value.code == 2


def test_suite_cases_are_the_issue_sizes():
    assert [(c.name, c.patch, c.batch) for c in bench.SUITE] == [
        ("resnet/quick", 48, 16), ("unet/quick", 48, 16), ("swinir/tiny", 48, 16), ("resnet/paper", 64, 32)]


def test_paper_workload_known_answers():
    w = workload.paper_workload("paper")
    p = profiles.resolve("paper")
    s, n, a = len(p.seeds), len(p.n_list), len(p.archs)
    assert w["new_models"]["01_set_size"] == a * n * s + 2 * s  # every architecture at every N + the ablation
    n_cats = len(designs.REAL) + len(designs.LADDER_RUNGS)  # at category_n tiles, + one control per seed
    shared = s if p.category_n in p.n_list else 0  # natural at category_n: notebook 01's models
    n_mixed = len(designs.REAL_MIXES) * (len(designs.MIX_PROPORTIONS) - 2)  # the dose-response's mixed sets
    assert w["new_models"]["02_category_complexity"] == n_cats * s + s - shared + n_mixed * s
    assert w["new_models"]["03_decoupled_metrics"] == 0  # 02's curve runs, from the cache
    assert w["curve_models"]["02_category_complexity"] == 5 * s  # faces, urban, manga + blobs, noise
    assert w["new_models"]["04_real_rain"] == 0  # notebook 01's models, from the cache
    assert w["total_models"] == sum(w["new_models"].values()) and w["steps"] == p.steps
    assert w["background"] == "natural" and w["archs"] == list(p.archs)
    smoke = workload.paper_workload("smoke", real_categories=0)  # offline: the ladder only, nothing cached
    assert smoke["background"] == "deadleaves"
    # notebook 01: 2 architectures x 2 N x 2 seeds, the ablation, and the ladder's rung 300x32 (150x24 is its own budget)
    assert smoke["new_models"] == {"01_set_size": 2 * 2 * 2 + 2 * 2 + 2 * 2, "02_category_complexity": 4 * 2 + 2 + 3 * 2,
                                   "03_decoupled_metrics": 0, "04_real_rain": 0}
    assert smoke["curve_models"] == {"02_category_complexity": 2 * 2}  # blobs and noise
    with pytest.raises(ValueError, match="real_categories"):
        workload.paper_workload("smoke", real_categories=2)


def test_paper_workload_counts_the_designs_union(monkeypatch):
    """A notebook that reuses another's models adds nothing; one with models of its own adds exactly those."""
    p = profiles.resolve("smoke")
    extra = designs.set_size(p, "deadleaves", archs=["resnet"], ablation=False)[:1]
    extra = extra + [dataclasses.replace(extra[0], seed=99)]  # one reused model, one new
    monkeypatch.setitem(designs.NOTEBOOK_DESIGNS, "04_real_rain", lambda prof, bg: extra)
    assert workload.paper_workload("smoke", real_categories=0)["new_models"]["04_real_rain"] == 1


def test_estimate_arithmetic():
    counted = {"total_models": 10, "steps": 100, "dynamics_points": 5,
               "curve_models": {"02_category_complexity": 2}}
    conc = [{"processes": 1, "steps_per_s": 10.0}, {"processes": 4, "steps_per_s": 20.0}]
    est = workload._estimate(counted, conc, overhead_s=2.0, dynamics_eval_s=1.0)
    one, four = est["per_k"]
    assert one["per_model_train_s"] == 10.0 and one["wall_s"] == pytest.approx(10 * 12 + 2 * 5)
    assert four["per_model_train_s"] == 20.0 and four["wall_s"] == pytest.approx((10 * 22 + 10) / 4)
    assert est["best"] == four


def test_gpu_report_runs_on_the_cpu(tmp_path):
    """The command the lead runs on a GPU, with --device cpu --tiny: every section, in seconds."""
    out = tmp_path / "gpu.json"
    report = bench.main(["--gpu-report", str(out), "--device", "cpu", "--tiny"])
    written = json.loads(out.read_text())
    assert written["finished"] and written["tiny"]
    for name in ("environment", "steps", "synthesis", "concurrency", "end_to_end", "workload", "estimate",
                 "compile"):
        assert name in written and "error" not in written[name], (name, written[name])
    assert [c["processes"] for c in written["concurrency"]] == [1, 2]
    assert all(c["steps_per_s"] > 0 for c in written["concurrency"])
    assert written["end_to_end"]["precision"] in training.PRECISIONS
    assert written["estimate"]["best"]["wall_s"] > 0
    assert written["environment"]["torch"] == torch.__version__
    assert report["steps"][0]["model"] == "resnet/tiny"


@pytest.mark.gpu
def test_gpu_report_tiny_on_cuda(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    rep = workload.gpu_report(tmp_path / "gpu.json", device="cuda", tiny=True, progress=lambda msg: None)
    assert rep["finished"] and "error" not in rep["steps"] and rep["steps"][0]["device"].startswith("cuda")
    assert "error" not in rep["concurrency"] and "error" not in rep["end_to_end"]


def test_workers_report_alternates_layouts_and_takes_medians(tmp_path, monkeypatch):
    """The layouts alternate round by round (a drifting machine hits both); the summary is the median.
    (The processes themselves are exercised by the GPU report's CPU run above.)"""
    calls = []
    rates = iter([1.0, 5.0, 3.0, 4.0, 2.0, 6.0])

    def fake(case, layouts, **kw):
        calls.append(tuple(layouts))
        return [{"processes": k, "threads": t, "steps_per_s": next(rates)} for k, t in layouts]

    monkeypatch.setattr(bench, "measure_concurrency", fake)
    out = tmp_path / "workers.json"
    rep = workload.workers_report(out, case=TINY, seconds=0.3, rounds=3, progress=None)
    assert calls == [((1, 2), (2, 1))] * 3
    assert [(s["processes"], s["threads"], s["steps_per_s_median"]) for s in rep["summary"]] == [
        (1, 2, 2.0), (2, 1, 5.0)]
    assert json.loads(out.read_text())["summary"] == rep["summary"]


def test_bench_imports_without_notebook_packages():
    """The GPU machine has torch, numpy, pandas, scipy, scikit-image, tqdm, pyyaml, filelock only."""
    code = ("import sys\n"
            "for m in ('pooch', 'papermill', 'jupytext', 'ipykernel', 'nbformat', 'ipywidgets', 'matplotlib',\n"
            "          'seaborn', 'submitit', 'albumentations'):\n"
            "    sys.modules[m] = None  # importing it raises ImportError\n"
            "import derain_utils.lab.bench, derain_utils.lab.workload, derain_utils.lab.profiles\n"
            "import derain_utils.lab.experiments\n"
            "print(derain_utils.lab.workload.paper_workload()['total_models'])\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip()) > 0


def test_run_bench_one_model_in_detail(tmp_path):
    out = tmp_path / "one.json"
    result = bench.main(["--arch", "resnet", "--size", "tiny", "--batch", "2", "--patch", "16", "--steps", "2",
                         "--warmup", "1", "--synth-n", "4", "--synth-size", "32", "--threads", "1",
                         "--precision", "fp32", "--json", str(out)])
    assert set(result) == set(bench.BENCH_KEYS) == set(json.loads(out.read_text()))
    assert result["precision"] == "fp32" and result["memory_format"] == "channels_last"
    assert result["params"] == models.count_params(models.build_model("resnet", size="tiny"))
    assert result["train_gflop_per_step"] == pytest.approx(3 * result["forward_gflop_per_batch"])
    assert result["ratio"] > 0 and result["synth_images_per_s"] > 0
    assert "ratio full/bare" in bench.format_report(result)


def test_precision_check_on_the_smoke_profile(tmp_path):
    out = tmp_path / "precision.json"
    rep = workload.precision_check(profile="smoke", seeds=(0, 1), background="blobs", cache_root=tmp_path / "cache",
                                   workers=1, path=out)
    assert json.loads(out.read_text())["compare"].keys() == rep["compare"].keys()
    for p in training.PRECISIONS:
        assert rep["per_precision"][p]["final_loss"]["values"] and len(rep["keys"][p]) == 2
    assert rep["keys"]["fp32"] != rep["keys"]["bf16"]  # two sets of models
    c = rep["compare"]["final_loss"]
    f, b = rep["per_precision"]["fp32"]["final_loss"], rep["per_precision"]["bf16"]["final_loss"]
    assert c["bf16_minus_fp32"] == pytest.approx(b["mean"] - f["mean"])
    assert c["within_spread"] == (abs(c["bf16_minus_fp32"]) <= c["pooled_seed_sd"])
    assert rep["loss_curve"]["max_gap_between_precision_means"] >= 0


def test_quick_timing_on_the_smoke_profile(tmp_path):
    rep = workload.quick_timing(profile="smoke", background="blobs", rounds=1, sweep_models=2, workers=1,
                                path=tmp_path / "t.json", progress=None)
    assert rep["paths"]["old_fp32_nchw"]["precision"] == "fp32"
    assert rep["paths"]["old_fp32_nchw"]["memory_format"] == "contiguous"
    assert rep["speedup"] == pytest.approx(
        rep["paths"]["old_fp32_nchw"]["model_s"] / rep["paths"]["default"]["model_s"], rel=0.02)
    assert rep["sweep"]["models"] == 2 and rep["sweep"]["models_per_minute"] > 0


@pytest.mark.parametrize("argv, message", [
    (["--steps", "0"], r"--steps must be >= 1 \(timed steps\), got 0"),  # was: 30 steps, silently
    (["--steps", "-3"], r"--steps must be >= 1"),
    (["--threads", "-2"], r"--threads must be >= 1"),
    (["--warmup", "-1"], r"--warmup must be >= 0"),
    (["--arch", "resnet", "--size", "huge"], r"--size must be a size of resnet \(tiny, quick, paper\), got 'huge'"),
    (["--batch", "0"], r"--batch must be >= 1"),
    (["--precision", "fp8"], r"--precision must be one of auto, fp32, bf16, got 'fp8'"),
    (["--memory-format", "nhwc"], r"--memory-format must be one of auto, channels_last, contiguous"),
    (["--rain", "nope"], r"--rain must be a rain preset \(small, "),
    (["--seeds", "a,b", "--precision-check", "p.json"], r"--seeds must be integers separated by commas"),
    (["--workers-report", "w.json", "--seconds", "-1"], r"--seconds must be > 0"),  # was: wrote a report
    (["--models", "vgg/huge"], r"--models: unknown model 'vgg/huge'"),
])
def test_bad_options_are_one_line_before_anything_is_measured(argv, message, tmp_path, capsys, monkeypatch):
    # was: raw ValueError tracebacks (or silently wrong runs) from deep inside the measurements
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        bench.main(argv)
    out, err = capsys.readouterr()
    assert exit_info.value.code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("python -m derain_utils.lab.bench: error: ") and re.search(message, err), err
    assert not list(tmp_path.iterdir())  # no report, no JSON


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
@pytest.mark.parametrize("argv, what", [(["--device", "cuda"], "--device cuda"),
                                        (["--gpu-report", "g.json"], "--gpu-report (on its default device, cuda)")])
def test_cuda_without_cuda_is_one_line(argv, what, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        bench.main(argv)
    assert exit_info.value.code == 2 and f"{what} needs CUDA" in capsys.readouterr().err


def test_stacked_models_compute_what_the_single_models_compute():
    # the stacked variants are fair: the same k networks, the same outputs (fp32), one Adam per model
    torch.manual_seed(0)
    nets = [models.build_model("resnet", size="tiny") for _ in range(3)]
    x = torch.rand(3, 2, 3, 16, 16)  # (k, batch, C, H, W)
    grouped = bench._grouped_resnet(nets)
    out = grouped(x.transpose(0, 1).reshape(2, 9, 16, 16)).reshape(2, 3, 3, 16, 16).transpose(0, 1)
    for i, net in enumerate(nets):
        torch.testing.assert_close(x[i] - out[i], net(x[i]), rtol=1e-5, atol=1e-6)
    assert bench._grouped_resnet([models.build_model("unet", size="tiny")]) is None


def test_stacked_timing_reports_a_ratio_per_variant_and_a_decision(tmp_path):
    out = bench.stacked_timing("resnet", "tiny", ks=(2,), batch=2, patch=16, steps=2, warmup=1, threads=1)
    methods = [r["method"] for r in out["rows"]]
    assert methods == ["one model", "2 stacked (vmap)", "2 stacked (groups)"]
    assert out["rows"][0]["models_per_minute_ratio"] == 1.0
    assert all(r["step_ms"] > 0 and r["models_per_minute_ratio"] > 0 for r in out["rows"])
    assert out["adopt"] == (out["best_ratio"] >= bench.STACK_ADOPT)
    assert "train one model at a time" in bench.format_stacked(out) or "adopt stacking" in bench.format_stacked(out)
    result = bench.main(["--stacked-report", str(tmp_path / "s.json"), "--size", "tiny", "--patch", "16",
                         "--batch", "2", "--steps", "1", "--warmup", "0"])
    assert json.loads((tmp_path / "s.json").read_text())["rows"][0]["method"] == "one model" and result["rows"]
    with pytest.raises(ValueError, match="k must be"):
        bench.stacked_timing(ks=(1,))
