"""benchmarks/learn_budget.py plumbing: specs, arguments, a 10-second run. No timings asserted."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "learn_budget.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("learn_budget", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_model_specs(bench) -> None:
    assert bench.parse_model_spec("tv_frcnn_mnv3_320") == ("tv_frcnn_mnv3_320", {})
    name, kw = bench.parse_model_spec(
        "retinanet_ghostnet_320_fpn:fpn_channels=96,anchor_sizes=[32,64,128],group_norm=None,extra_levels=none"
    )
    assert name == "retinanet_ghostnet_320_fpn"
    assert kw == {
        "fpn_channels": 96,
        "anchor_sizes": [32, 64, 128],
        "group_norm": None,
        "extra_levels": "none",
    }
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        bench.parse_model_spec("nope")
    with pytest.raises(ValueError, match="key=value"):
        bench.parse_model_spec("retinanet_ghostnet_fpn:fpn_channels")
    assert set(bench.DEFAULT_MODELS) >= {
        "tv_frcnn_mnv3_320", "tv_retinanet_mnv3_fpn", "fasterrcnn_ghostnet_320_fpn", "retinanet_ghostnet_fpn",
        "retinanet_ghostnet_320_fpn",
    }  # fmt: skip


def test_variants(bench) -> None:
    spec = "retinanet_ghostnet_320_fpn+ema+ms:fpn_channels=96"
    assert bench.parse_variants(spec) == ("retinanet_ghostnet_320_fpn:fpn_channels=96", {"ema", "ms"})
    assert bench.parse_model_spec(spec) == ("retinanet_ghostnet_320_fpn", {"fpn_channels": 96})
    with pytest.raises(ValueError, match="unknown variant 'swa'"):
        bench.parse_model_spec("retinanet_ghostnet_320_fpn+swa")
    # 0.75-1.25 x in steps of 32, the scoring size last (torchvision scores at min_size[-1])
    assert bench.multi_scale_sizes(256) == (192, 224, 288, 320, 256)
    assert bench.multi_scale_sizes(128) == (96, 160, 128)
    plain = bench.build_model("retinanet_ghostnet_320_fpn", 5, 128)
    multi = bench.build_model("retinanet_ghostnet_320_fpn+ms", 5, 128)
    assert (plain.transform.min_size, plain.transform.max_size) == ((128,), 128)
    assert (multi.transform.min_size, multi.transform.max_size) == ((96, 160, 128), 160)
    multi.eval()
    with torch.no_grad():  # scored at the last size: a 128 px image is not resized
        images, _ = multi.transform([torch.rand(3, 128, 128)])
    assert images.image_sizes == [(128, 128)]


def test_parse_args(bench, capsys) -> None:
    args = bench.parse_args([])
    assert (args.budget, args.threads, args.batch, args.lr, args.size, args.val) == (480, 1, 8, 1e-3, 256, 50)
    assert args.specs == bench.DEFAULT_MODELS and not args.concurrent and args.clock == "wall"
    assert not args.channels_last and bench.parse_args(["--channels-last"]).channels_last
    assert args.jobs == len(os.sched_getaffinity(0)) == bench.default_jobs(1)
    assert bench.parse_args(["--threads", "2"]).jobs == max(1, len(os.sched_getaffinity(0)) // 2)
    assert bench.parse_args(["--jobs", "3"]).jobs == 3
    bad_args = (["--budget", "0"], ["--threads", "0"], ["--jobs", "0"], ["--models", "resnet"])
    bad_args += (["--clock", "gpu"], ["--ema-decay", "1"], ["--models", "tv_frcnn_mnv3_320+swa"])
    for bad in bad_args:
        with pytest.raises(SystemExit):
            bench.parse_args(bad)
    assert "resnet" in capsys.readouterr().err


def test_waves_give_each_model_its_own_cores(bench, monkeypatch) -> None:
    monkeypatch.setattr(bench.os, "sched_getaffinity", lambda pid: {5, 1, 3}, raising=False)
    specs = ["a", "b", "c", "d", "e"]
    waves = bench.plan_waves(specs, jobs=2)
    assert waves == [[("a", [1]), ("b", [3])], [("c", [1]), ("d", [3])], [("e", [1])]]
    assert bench.plan_waves(specs, jobs=3) == [[("a", [1]), ("b", [3]), ("c", [5])], [("d", [1]), ("e", [3])]]
    # two threads each: one model per wave fits on two of the three cores, two do not (no pinning)
    assert bench.plan_waves(["a", "b"], jobs=1, threads=2) == [[("a", [1, 3])], [("b", [1, 3])]]
    assert bench.plan_waves(["a", "b"], jobs=2, threads=2) == [[("a", None), ("b", None)]]
    assert bench.default_jobs(1) == 3 and bench.default_jobs(2) == 1 and bench.default_jobs(4) == 1
    assert bench.format_waves(waves[1:]).splitlines() == [
        "wave 1/2: c (cores 1), d (cores 3)",
        "wave 2/2: e (cores 1)",
    ]
    with pytest.raises(ValueError, match="jobs"):
        bench.plan_waves(specs, jobs=0)


def test_hflip_and_lr_schedule(bench) -> None:
    img = torch.arange(2 * 3 * 10, dtype=torch.float32).reshape(2, 3, 10)
    tgt = {"boxes": torch.tensor([[1.0, 0.0, 4.0, 2.0]]), "labels": torch.tensor([2])}
    flipped, ftgt = bench.hflip(img, tgt)
    assert torch.equal(flipped[:, :, 0], img[:, :, 9])
    assert ftgt["boxes"].tolist() == [[6.0, 0.0, 9.0, 2.0]] and torch.equal(ftgt["labels"], tgt["labels"])
    assert torch.equal(bench.hflip(*bench.hflip(img, tgt))[1]["boxes"], tgt["boxes"])
    assert bench._lr_factor(0, 0.0) == pytest.approx(0.01)
    assert bench._lr_factor(100, 0.0) == pytest.approx(1.0)
    assert bench._lr_factor(100, 0.5) == pytest.approx(0.05 + 0.95 * 0.5)
    assert bench._lr_factor(100, 1.0) == pytest.approx(0.05)


def test_builders_match_their_names(bench) -> None:
    from torchvision.models.detection import FasterRCNN, RetinaNet

    for name in bench.DEFAULT_MODELS:
        model = bench.MODELS[name](5, 128)
        assert isinstance(model, RetinaNet if "retinanet" in name else FasterRCNN), name
        assert (model.transform.min_size, model.transform.max_size) == ((128,), 128)
        assert all(p.requires_grad for p in model.parameters()), name  # from scratch: all trainable
    mnv3 = bench.MODELS["tv_retinanet_mnv3_fpn"](5, 128)
    with torch.no_grad():
        levels = mnv3.backbone(torch.rand(1, 3, 128, 128))
    assert len(levels) == len(mnv3.anchor_generator.sizes) == 4


def test_ten_second_budget_end_to_end(bench, tmp_path, capsys) -> None:
    out = tmp_path / "res.json"
    specs = ["tv_frcnn_mnv3_320", "retinanet_ghostnet_320_fpn+ema+ms:head_convs=1"]
    argv = ["--budget", "10", "--models", *specs, "--ema-decay", "0.9", "--ema-warmup", "0"]
    argv += [
        "--size",
        "128",
        "--num-train",
        "16",
        "--val",
        "4",
        "--batch",
        "2",
        "--data",
        str(tmp_path / "d"),
    ]
    assert bench.main([*argv, "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| tv_frcnn_mnv3_320 |" in text and f"| {specs[1]} |" in text
    assert "| CPU-s (train) |" in text and "one after another" in text and "wave" not in text
    assert "EMA decay 0.9 (warm-up 0)" in text
    results = json.loads(out.read_text())
    assert [r["model"] for r in results] == specs
    # the +ema row scores the EMA and also the raw weights; the plain row only its weights
    assert "ap_raw" not in results[0] and 0 <= results[1]["ap_raw"] <= results[1]["ap50_raw"] <= 1
    for r in results:
        assert r["iters"] >= 1 and r["train_s"] >= 10 and 0 <= r["ap"] <= r["ap50"] <= 1
        assert r["cpu_s"] > 0
    ref = results[0]["ap"]
    assert results[0]["ratio"] == (1.0 if ref else None)
    # the data set is generated once and reused
    manifest = json.loads((tmp_path / "d" / "ghostdet_synthetic.json").read_text())
    assert manifest["seed"] == bench.DATA_OPTIONS["seed"] and manifest["image_size"] == [128, 128]


@pytest.mark.slow
def test_concurrent_mode_runs_models_in_waves_of_jobs(bench, tmp_path) -> None:
    out = tmp_path / "res.json"
    specs = ["retinanet_ghostnet_320_fpn:head_convs=0", "retinanet_ghostnet_320_fpn:head_convs=1"]
    cmd = [sys.executable, str(BENCH), "--concurrent", "--jobs", "1", "--budget", "10", "--clock", "cpu"]
    cmd += ["--models", *specs, "--size", "96", "--num-train", "8", "--val", "2", "--batch", "2"]
    cmd += ["--data", str(tmp_path / "d"), "--channels-last"]
    proc = subprocess.run([*cmd, "--json", str(out)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    core = min(os.sched_getaffinity(0))
    assert f"wave 1/2: {specs[0]} (cores {core})" in proc.stdout
    assert f"wave 2/2: {specs[1]} (cores {core})" in proc.stdout
    assert "concurrently in waves of 1, 1 thread(s) each" in proc.stdout and "channels_last" in proc.stdout
    results = json.loads(out.read_text())
    assert [r["model"] for r in results] == specs
    # the CPU clock counts the budget: each model's own training CPU time is at least the budget
    assert all(r["iters"] >= 1 and r["ratio"] is None and r["cpu_s"] >= 10 for r in results)
    with pytest.raises(ValueError, match="clock"):
        bench.run(specs, 1.0, tmp_path / "d", clock="gpu")
