"""``--backbone`` through the tools: train_det records it, eval_det reads it from the checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_tools_eval import _load_tool, _one_thread  # noqa: F401 (an autouse fixture)

from ghostdet.config.detection import ConfigError, config_from_dict
from ghostdet.data.synthetic import make_synthetic_coco
from ghostdet.engine.checkpoint import checkpoint_backbone
from ghostdet.engine.train import _check_resumable


def test_backbone_key_selects_the_family_variant_and_is_validated() -> None:
    assert config_from_dict({"detector": "fasterrcnn_320", "backbone": "ghostnetv2"}).builder == (
        "fasterrcnn_ghostnetv2_320_fpn"
    )
    assert config_from_dict({"detector": "retinanet"}).builder == "retinanet_ghostnet_fpn"
    with pytest.raises(
        ConfigError, match="backbone: 'resnet50' is not one of ghostnet, ghostnetv2, ghostnetv3"
    ):
        config_from_dict({"backbone": "resnet50"})
    with pytest.raises(ConfigError, match="model_kwargs: must not set backbone"):
        config_from_dict({"model_kwargs": {"backbone": "ghostnetv2"}})


def test_checkpoints_without_a_backbone_are_ghostnet() -> None:
    assert checkpoint_backbone({"detector": "retinanet_ghostnet_fpn"}) == "ghostnet"
    assert checkpoint_backbone({"config": {"backbone": "ghostnetv3"}}) == "ghostnetv3"
    assert checkpoint_backbone({"backbone": "ghostnetv2", "config": {}}) == "ghostnetv2"


def test_resume_refuses_another_backbone(tmp_path: Path) -> None:
    cfg = config_from_dict({"detector": "retinanet"})
    path = tmp_path / "checkpoint.pth"
    _check_resumable({"detector": "retinanet_ghostnet_fpn", "width": 1.0}, cfg, path)  # V1, no backbone
    with pytest.raises(ValueError, match=r"trained with backbone 'ghostnetv2', this run has 'ghostnet'"):
        _check_resumable({"backbone": "ghostnetv2", "width": 1.0}, cfg, path)
    with pytest.raises(ValueError, match=r"trained with backbone 'ghostnet', this run has 'ghostnetv3'"):
        _check_resumable({"width": 1.0}, config_from_dict({"backbone": "ghostnetv3"}), path)


def test_train_det_backbone_round_trip_through_eval_det(tmp_path: Path, capsys) -> None:
    data = make_synthetic_coco(
        tmp_path / "syn", num_train=4, num_val=2, image_size=64, seed=1, object_size=(16, 32)
    )
    out = tmp_path / "run"
    code = _load_tool("train_det").main(
        [
            "--detector", "fasterrcnn_320", "--backbone", "ghostnetv3", "--width", "0.5",
            "--min-size", "64", "--max-size", "64", "--epochs", "1", "--batch-size", "2",
            "--train-images", str(data["train_images"]), "--train-ann", str(data["train_ann"]),
            "--val-images", str(data["val_images"]), "--val-ann", str(data["val_ann"]),
            "--workers", "0", "--warmup-iters", "0", "--weights-backbone", "none",
                "--output-dir", str(out), "--set", "vis_images=0",
        ]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    ckpt = torch.load(out / "checkpoint.pth", weights_only=True)
    assert ckpt["detector"] == "fasterrcnn_ghostnetv3_320_fpn" and ckpt["backbone"] == "ghostnetv3"
    assert ckpt["config"]["backbone"] == "ghostnetv3"
    assert any("primary_rpr_conv" in k for k in ckpt["model"])  # saved in the multi-branch form
    capsys.readouterr()
    code = _load_tool("train_det").main(
        ["--detector", "fasterrcnn_320", "--width", "0.5", "--output-dir", str(out), "--resume", "auto"]
    )
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert (
        "trained with detector 'fasterrcnn_ghostnetv3_320_fpn', this run has 'fasterrcnn_ghostnet_320_fpn'"
        in err
    )
    code = _load_tool("eval_det").main(
        [
            "--checkpoint", str(out / "checkpoint.pth"), "--model", "fasterrcnn_320",
            "--val-images", str(data["val_images"]), "--val-ann", str(data["val_ann"]),
            "--output-dir", str(tmp_path / "eval"), "--workers", "0", "--no-progress", "--device", "cpu",
        ]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "fasterrcnn_ghostnetv3_320_fpn" in captured.out + captured.err
    metrics = json.loads(next((tmp_path / "eval").glob("*.json")).read_text())
    assert metrics
