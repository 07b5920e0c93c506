"""ONNX export of GhostNetV2/V3 classifiers, backbones and detectors, checked with onnxruntime."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import randomise_bn
from test_export import _tool, needs_onnx

from ghostdet.deploy.onnx import build_for_export, export_onnx, load_image, run_onnx
from ghostdet.models import get_model, ghostnetv2, ghostnetv3


@needs_onnx
@pytest.mark.parametrize("build", [ghostnetv2, ghostnetv3])
def test_classifier_export_matches_the_eager_model(build, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = randomise_bn(build(width=0.5, num_classes=7))
    path = tmp_path / "cls.onnx"
    report = export_onnx(model, path, image=load_image(None, (160, 200)))
    assert report["kind"] == "classifier" and all(c["max_rel_err"] < 1e-4 for c in report["checks"])
    # against the ORIGINAL eval-mode model (V3: its multi-branch form), at another size and batch
    x = torch.rand(3, 3, 96, 128)
    (logits,) = run_onnx(path, [x])
    with torch.no_grad():
        ref = model(x)
    assert logits.shape == (3, 7) and ((logits - ref).abs().max() / ref.abs().max()).item() < 1e-4


@needs_onnx
def test_v3_fpn_backbone_export(tmp_path: Path) -> None:
    torch.manual_seed(0)
    bb = randomise_bn(build_for_export("backbone", None, 0.5, None, "ghostnetv3"))
    report = export_onnx(bb, tmp_path / "bb.onnx", image=load_image(None, (128, 160)))
    assert report["kind"] == "backbone" and all(c["max_rel_err"] < 1e-4 for c in report["checks"])


def test_build_for_export_takes_the_backbone_from_the_name_or_the_checkpoint(tmp_path: Path) -> None:
    assert type(build_for_export("classifier", None, 0.5, 3, "ghostnetv2")).__name__ == "GhostNetV2"
    det = get_model("fasterrcnn_ghostnetv3_320_fpn", num_classes=3, width=0.5)
    name = "fasterrcnn_ghostnetv3_320_fpn"
    ckpt = {"model": det.state_dict(), "detector": name, "backbone": "ghostnetv3", "width": 0.5}
    path = tmp_path / "ckpt.pth"
    torch.save(ckpt, path)
    # --model fasterrcnn_320 with a V3 checkpoint: the checkpoint's backbone is used
    got = build_for_export("fasterrcnn_320", str(path), 0.5, None)
    got_state = got.state_dict()
    for k, v in det.state_dict().items():
        assert torch.equal(got_state[k], v), k


@needs_onnx
@pytest.mark.slow
@pytest.mark.parametrize("name", ["fasterrcnn_320", "retinanet"])
@pytest.mark.parametrize("backbone", ["ghostnetv2", "ghostnetv3"])
def test_detector_export_through_the_tool(name: str, backbone: str, tmp_path: Path, capsys) -> None:
    argv = ["--model", name, "--backbone", backbone, "--width", "0.5", "--out", str(tmp_path / "d.onnx")]
    assert _tool().main(argv) == 0
    out = capsys.readouterr().out
    assert "onnxruntime matches PyTorch" in out and "% matched" in out
