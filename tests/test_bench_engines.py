"""benchmarks/bench_engines.py: the summary ratio, and (slow) a whole run on tiny settings."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_engines", REPO / "benchmarks" / "bench_engines.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_summary_is_the_fastest_ghostdet_engine_over_the_counterparts_fastest():
    cell = {
        "GhostNet 1.0x": {"eager": 30.0, "deploy": 12.0, "onnxruntime": 9.0},
        "MobileNetV3-L": {"eager": 20.0, "onnxruntime": 10.0, "openvino": 12.0},
        "FRCNN-320 GhostNet": {"eager": 200.0},
    }
    assert _bench()._summary(cell) == {"GhostNet 1.0x": pytest.approx(0.9)}  # no counterpart: no ratio
    # int8 engines are not in the FP32 summary; the same-engine ratios pair each engine
    cell["GhostNet 1.0x"]["onnxruntime-int8"] = 1.0
    cell["MobileNetV3-L"]["onnxruntime-int8"] = 4.0
    assert _bench()._summary(cell) == {"GhostNet 1.0x": pytest.approx(0.9)}
    assert _bench()._same_engine(cell) == {
        "GhostNet 1.0x": {"eager": 1.5, "onnxruntime": 0.9, "onnxruntime-int8": 0.25}
    }


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime not installed")
def test_a_tiny_int8_run_prints_same_engine_ratios(tmp_path):
    from PIL import Image

    (tmp_path / "calib").mkdir()
    for i in range(2):
        Image.new("RGB", (80, 60), (40 * i, 90, 200)).save(tmp_path / "calib" / f"{i}.png")
    cmd = [sys.executable, str(REPO / "benchmarks" / "bench_engines.py"), "--threads", "1", "--sizes", "64"]
    cmd += ["--sections", "backbones", "--reps", "1", "--warmup", "0", "--engines", "onnxruntime"]
    cmd += ["onnxruntime-int8", "--calibration", str(tmp_path / "calib")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "| onnxruntime | onnxruntime-int8 |" in r.stdout
    assert (
        "GhostNet 1.0x / MobileNetV3-L, same engine: onnxruntime " in r.stdout
        and ", onnxruntime-int8 " in r.stdout
    )
    no_calib = subprocess.run(cmd[: cmd.index("--calibration")], capture_output=True, text=True, check=False)
    assert no_calib.returncode == 2 and "need --calibration" in no_calib.stderr


@pytest.mark.slow
def test_a_tiny_run_prints_every_engine_row(tmp_path):
    cmd = [sys.executable, str(REPO / "benchmarks" / "bench_engines.py"), "--threads", "1", "--sizes", "64"]
    cmd += ["--sections", "backbones", "--reps", "1", "--warmup", "0", "--json", str(tmp_path / "r.json")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "| GhostNet 1.0x |" in r.stdout and "| MobileNetV3-L |" in r.stdout and "share of peak" in r.stdout
    assert (tmp_path / "r.json").is_file()


def test_engine_filter_builds_only_the_named_engines(tmp_path):
    """``--engines deploy deploy-onednn``: GhostNet's deploy mode with and without the native
    kernels (both computing the eval model's output), MobileNetV3 by its eager call only."""
    import torch

    from ghostdet.models import ghostnet

    bench = _bench()
    cases = bench.backbone_cases(64, 1, tmp_path, ("deploy", "deploy-onednn"))
    assert {k: set(v) for k, v in cases.items()} == {
        "GhostNet 1.0x": {"deploy", "deploy-onednn"},
        "MobileNetV3-L": {"eager"},
    }
    assert not list(tmp_path.iterdir())  # no ONNX file exported for engines not asked for
    torch.manual_seed(0)  # as backbone_cases: the input, then the model
    x = torch.rand(1, 3, 64, 64)
    ref = ghostnet(1.0).eval()
    with torch.inference_mode():
        want = ref(x)
        for engine in ("deploy", "deploy-onednn"):
            torch.testing.assert_close(cases["GhostNet 1.0x"][engine](), want, rtol=1e-3, atol=1e-3)


def test_profile_conv_classes_and_their_multiply_adds():
    spec = importlib.util.spec_from_file_location(
        "profile_engines", REPO / "benchmarks" / "profile_engines.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    def args(weight, out, op="Conv"):
        x = {"float": [1, weight[1] * 1, out[2], out[3]]}
        return {
            "op_name": op,
            "input_type_shape": [x, {"float": weight}],
            "output_type_shape": [{"float": out}],
        }

    # depthwise 3x3 on 32 channels, 10x10 output: 32 * 9 * 100
    assert mod._conv_kind(args([32, 1, 3, 3], [1, 32, 10, 10])) == ("conv: depthwise", 28800)
    # 1x1, 16 -> 96 channels on 8x8, batch 2
    assert mod._conv_kind(args([96, 16, 1, 1], [2, 96, 8, 8])) == (
        "conv: 1x1, > 64 out channels",
        2 * 64 * 96 * 16,
    )
    assert mod._conv_kind(args([48, 16, 1, 1], [1, 48, 4, 4]))[0] == "conv: 1x1, <= 64 out channels"
    assert mod._conv_kind(args([16, 3, 3, 3], [1, 16, 4, 4]))[0] == "conv: other"
    assert mod._conv_kind(args([16, 3, 3, 3], [1, 16, 4, 4], op="Gemm")) == (None, 0)


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_profile_parts_are_the_scopes_of_the_exported_names():
    part = _load("profile_engines")._part
    assert part("/backbone/body/blocks.3/conv/Conv") == "part: backbone/body"
    assert part("/backbone/fpn/layer_blocks.0/Conv") == "part: backbone/fpn"
    assert part("/head/classification_head/conv.0/Conv") == "part: head"
    assert part("/TopK_3") == "part: (top)"
    assert part("Conv_12") == "part: (top)"  # an engine's own node name, outside every scope


def test_paired_top1_change_and_its_interval():
    import torch

    before = torch.tensor([1, 1, 0, 0, 1, 0, 1, 1, 1, 0], dtype=torch.bool)
    after = torch.tensor([1, 0, 1, 0, 1, 0, 0, 1, 1, 1], dtype=torch.bool)
    got = _load("int8_accuracy").paired_change(before, after)
    d = after.float() - before.float()  # per image: +1 fixed, -1 broken
    half = 1.96 * d.std(unbiased=False).item() / len(d) ** 0.5
    assert (got["fixed"], got["broken"]) == (2, 2)
    assert got["change"] == pytest.approx(after.float().mean().item() - before.float().mean().item())
    assert got["ci95"] == pytest.approx((d.mean().item() - half, d.mean().item() + half))
