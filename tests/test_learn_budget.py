"""benchmarks/learn_budget.py plumbing: specs, arguments, a 10-second run. No timings asserted."""

from __future__ import annotations

import importlib.util
import json
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


def test_parse_args(bench, capsys) -> None:
    args = bench.parse_args([])
    assert (args.budget, args.threads, args.batch, args.lr, args.size, args.val) == (480, 1, 8, 1e-3, 256, 50)
    assert args.specs == bench.DEFAULT_MODELS and not args.concurrent and args.clock == "wall"
    for bad in (["--budget", "0"], ["--threads", "0"], ["--models", "resnet"], ["--clock", "gpu"]):
        with pytest.raises(SystemExit):
            bench.parse_args(bad)
    assert "resnet" in capsys.readouterr().err


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
    argv = ["--budget", "10", "--models", "tv_frcnn_mnv3_320", "retinanet_ghostnet_320_fpn:head_convs=1"]
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
    assert "| tv_frcnn_mnv3_320 |" in text and "| retinanet_ghostnet_320_fpn:head_convs=1 |" in text
    results = json.loads(out.read_text())
    assert [r["model"] for r in results] == ["tv_frcnn_mnv3_320", "retinanet_ghostnet_320_fpn:head_convs=1"]
    for r in results:
        assert r["iters"] >= 1 and r["train_s"] >= 10 and 0 <= r["ap"] <= r["ap50"] <= 1
    ref = results[0]["ap"]
    assert results[0]["ratio"] == (1.0 if ref else None)
    # the data set is generated once and reused
    manifest = json.loads((tmp_path / "d" / "ghostdet_synthetic.json").read_text())
    assert manifest["seed"] == bench.DATA_OPTIONS["seed"] and manifest["image_size"] == [128, 128]


@pytest.mark.slow
def test_concurrent_mode_runs_each_model_in_its_own_process(bench, tmp_path) -> None:
    out = tmp_path / "res.json"
    specs = ["retinanet_ghostnet_320_fpn:head_convs=0", "retinanet_ghostnet_320_fpn:head_convs=1"]
    cmd = [sys.executable, str(BENCH), "--concurrent", "--budget", "2", "--clock", "cpu", "--models", *specs]
    cmd += ["--size", "96", "--num-train", "8", "--val", "2", "--batch", "2", "--data", str(tmp_path / "d")]
    proc = subprocess.run([*cmd, "--json", str(out)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert "concurrently, 1 thread(s) each" in proc.stdout
    results = json.loads(out.read_text())
    assert [r["model"] for r in results] == specs
    assert all(r["iters"] >= 1 and r["ratio"] is None for r in results)
    with pytest.raises(ValueError, match="clock"):
        bench.run(specs, 1.0, tmp_path / "d", clock="gpu")
