"""ONNX export (ghostdet.deploy.onnx, tools/export_onnx.py): outputs checked with onnxruntime."""

from __future__ import annotations

import builtins
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from ghostdet.deploy.onnx import (
    ExportError,
    export_onnx,
    load_image,
    matched_fraction,
    require_onnx,
    run_onnx,
)
from ghostdet.models import fasterrcnn_ghostnet_320_fpn, ghostnet

ROOT = Path(__file__).resolve().parents[1]
COCO128 = Path(__file__).resolve().parents[2] / "shared/data/coco128"
needs_onnx = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None,
    reason="needs the [export] extra",
)


def _tool():
    spec = importlib.util.spec_from_file_location("export_onnx_tool", ROOT / "tools/export_onnx.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _with_bn_stats(model: torch.nn.Module) -> torch.nn.Module:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


@needs_onnx
def test_classifier_export_matches_unfused_pytorch(tmp_path):
    torch.manual_seed(0)
    model = _with_bn_stats(ghostnet(0.5, num_classes=7))
    path = tmp_path / "cls.onnx"
    report = export_onnx(model, path, image=load_image(None, (160, 200)))
    assert path.is_file() and report["kind"] == "classifier"
    assert len(report["checks"]) == 2 and all(c["max_rel_err"] < 1e-4 for c in report["checks"])
    # independent check against the ORIGINAL eval-mode model, at a size not used during export
    x = torch.rand(3, 3, 96, 128)
    (logits,) = run_onnx(path, [x])
    with torch.no_grad():
        ref = model(x)
    assert logits.shape == (3, 7)
    assert ((logits - ref).abs().max() / ref.abs().max()).item() < 1e-4


@needs_onnx
def test_export_rejects_train_mode(tmp_path):
    with pytest.raises(ExportError, match="eval"):
        export_onnx(ghostnet(0.5, num_classes=3), tmp_path / "x.onnx")


def test_missing_extra_gives_one_line_message(monkeypatch, capsys):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.split(".")[0] in ("onnx", "onnxruntime"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "onnx", raising=False)
    monkeypatch.delitem(sys.modules, "onnxruntime", raising=False)
    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ExportError, match=r"pip install 'ghostdet\[export\]'"):
        require_onnx()
    assert _tool().main(["--model", "classifier", "--out-dir", "unused"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ghostdet[export]" in err[0]


def test_tool_bad_arguments_exit_nonzero(tmp_path):
    tool = _tool()
    with pytest.raises(SystemExit) as e:
        tool.parse_args(["--image", str(tmp_path / "missing.jpg")])
    assert e.value.code != 0
    with pytest.raises(SystemExit):
        tool.parse_args(["--model", "all", "--out", "x.onnx"])
    with pytest.raises(SystemExit):
        tool.parse_args(["--align", "12"])  # not an NCHWc block
    assert tool.parse_args([]).align is None and tool.parse_args(["--align", "16"]).align == 16


def test_matched_fraction():
    ref = {"boxes": torch.tensor([[0.0, 0, 10, 10], [100, 100, 200, 200]]), "labels": torch.tensor([1, 2])}
    same = {"boxes": ref["boxes"].flip(0) + 1e-4, "labels": ref["labels"].flip(0)}
    assert matched_fraction(ref, same) == 1.0
    moved = {"boxes": ref["boxes"] + torch.tensor([[0.0, 0, 0, 0], [0, 0, 1, 0]]), "labels": ref["labels"]}
    assert matched_fraction(ref, moved) == 0.5
    relabelled = {"boxes": ref["boxes"], "labels": torch.tensor([1, 3])}
    assert matched_fraction(ref, relabelled) == 0.5


@needs_onnx
@pytest.mark.slow
def test_fasterrcnn_320_export_on_real_image(tmp_path):
    from ghostdet.deploy.onnx import calibrate_bn, randomize_heads

    images = sorted((COCO128 / "train2017").glob("*.jpg")) if COCO128.is_dir() else []
    img = load_image(images[0] if images else None)
    torch.manual_seed(0)
    model = randomize_heads(fasterrcnn_ghostnet_320_fpn(num_classes=91).eval())
    calibrate_bn(model, img)
    report = export_onnx(model, tmp_path / "det.onnx", image=img)
    assert [c["size"][0] for c in report["checks"]] == [img.shape[1], img.shape[1] * 3 // 4]  # dynamic size
    for c in report["checks"]:
        assert c["num_detections"] > 0 and c["num_detections"] == c["onnx_detections"]
        assert c["matched"] >= 0.98


@needs_onnx
def test_export_writes_an_int8_file_beside_the_fp32_one(tmp_path, capsys):
    """``--int8-calibration DIR``: <model>-int8.onnx, quantized (QDQ nodes), runs in onnxruntime
    and its logits follow the FP32 file's."""
    import numpy as np
    import onnx
    from PIL import Image

    from ghostdet.deploy.runtimes import onnxruntime_runner

    calib = tmp_path / "calib"
    calib.mkdir()
    g = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(g.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(calib / f"{i}.png")
    tool = _tool()
    out = tmp_path / "cls.onnx"
    args = ["--model", "classifier", "--out", str(out), "--no-verify", "--int8-calibration", str(calib)]
    assert tool.main(args) == 0
    q = tmp_path / "cls-int8.onnx"
    lines = capsys.readouterr().out
    assert f"wrote {q} (int8 QDQ, calibrated on 4 input(s) from {calib})" in lines
    ops = {n.op_type for n in onnx.load(str(q)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ghostdet-quantize-")]  # temp removed
    x = (torch.rand(1, 3, 224, 224) - 0.45) / 0.225
    ref = onnxruntime_runner(out, 1)[0](x.numpy())[0]
    got = onnxruntime_runner(q, 1)[0](x.numpy())[0]
    # random weights, random calibration images: int8 follows FP32 closely, not exactly
    assert got.shape == ref.shape and np.corrcoef(got.ravel(), ref.ravel())[0, 1] > 0.9
