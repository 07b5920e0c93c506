from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models.detection import FasterRCNN, RetinaNet
from torchvision.ops import FrozenBatchNorm2d

from ghostdet.errors import CheckpointError
from ghostdet.models import (
    GhostNetFeatures,
    fasterrcnn_ghostnet_320_fpn,
    fasterrcnn_ghostnet_fpn,
    get_model,
    ghostnet,
    ghostnet_fpn_backbone,
    retinanet_ghostnet_fpn,
)
from ghostdet.models.ghostnet import STAGE_BLOCKS

SMALL = {"width": 0.5, "min_size": 128, "max_size": 192}


def _batch() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 120, 160, generator=g), torch.rand(3, 150, 100, generator=g)]
    targets = [
        {
            "boxes": torch.tensor([[10.0, 20.0, 70.0, 90.0], [80.0, 10.0, 150.0, 60.0]]),
            "labels": torch.tensor([1, 2]),
        },
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    return images, targets


def test_feature_taps_are_stage_ends() -> None:
    torch.manual_seed(0)
    net = ghostnet(width=1.0).eval()
    x = torch.randn(1, 3, 256, 320)
    # Reference: run the full network block by block and keep every block's output.
    with torch.no_grad():
        y = net.act1(net.bn1(net.conv_stem(x)))
        per_block = []
        for block in net.blocks:
            y = block(y)
            per_block.append(y)
    body = GhostNetFeatures(net, returned_layers=(2, 3, 4, 5)).eval()
    with torch.no_grad():
        feats = body(x)
    assert list(feats) == ["0", "1", "2", "3"]
    for (name, f), stage, stride, ch in zip(feats.items(), (2, 3, 4, 5), (4, 8, 16, 32), (24, 40, 112, 160)):
        assert f.shape == (1, ch, 256 // stride, 320 // stride), name
        assert torch.equal(f, per_block[STAGE_BLOCKS[stage][-1]])
    assert body.strides == [4, 8, 16, 32] and body.out_channels_list == [24, 40, 112, 160]


def test_fpn_backbone_levels_and_no_unused_parameters() -> None:
    backbone = ghostnet_fpn_backbone(width=1.0)
    assert backbone.out_channels == 256
    names = [n for n, _ in backbone.named_parameters()]
    assert not any(n.startswith(("body.conv_head", "body.classifier", "body.blocks.9")) for n in names)
    feats = backbone(torch.randn(1, 3, 224, 288))
    assert {k: tuple(v.shape[-2:]) for k, v in feats.items()} == {
        "0": (28, 36),
        "1": (14, 18),
        "2": (7, 9),
        "pool": (4, 5),
    }
    sum(f.sum() for f in feats.values()).backward()
    assert all(p.grad is not None for p in backbone.parameters() if p.requires_grad)


@pytest.mark.parametrize("trainable", [0, 1, 3, 5])
def test_trainable_layers_count_from_the_top(trainable: int) -> None:
    backbone = ghostnet_fpn_backbone(width=0.5, trainable_layers=trainable)
    body = backbone.body
    for stage, blocks in STAGE_BLOCKS.items():
        expected = stage > 5 - trainable
        for i in blocks:
            assert all(p.requires_grad == expected for p in body.blocks[i].parameters()), (stage, i)
    assert body.conv_stem.weight.requires_grad == (trainable == 5)
    assert all(p.requires_grad for p in backbone.fpn.parameters())


def test_pretrained_backbone_defaults(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ref = ghostnet(width=0.5)
    torch.save(ref.state_dict(), tmp_path / "g.pth")
    backbone = ghostnet_fpn_backbone(width=0.5, weights=tmp_path / "g.pth")
    body = backbone.body
    assert isinstance(body.bn1, FrozenBatchNorm2d)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in body.modules())
    # default 3 trainable stages: 3, 4, 5
    assert not body.blocks[2][0].ghost1.primary_conv[0].weight.requires_grad
    assert body.blocks[3][0].ghost1.primary_conv[0].weight.requires_grad
    w = body.blocks[8][0].ghost2.primary_conv[0].weight
    torch.testing.assert_close(w, ref.blocks[8][0].ghost2.primary_conv[0].weight)
    torch.testing.assert_close(body.bn1.running_var, ref.bn1.running_var)
    scratch = ghostnet_fpn_backbone(width=0.5)
    assert isinstance(scratch.body.bn1, nn.BatchNorm2d)
    assert all(p.requires_grad for p in scratch.parameters())


def test_bad_backbone_arguments() -> None:
    with pytest.raises(ValueError, match="returned_layers"):
        ghostnet_fpn_backbone(returned_layers=[6])
    with pytest.raises(ValueError, match="returned_layers"):
        ghostnet_fpn_backbone(returned_layers=[])
    with pytest.raises(ValueError, match="trainable_layers"):
        ghostnet_fpn_backbone(trainable_layers=6)
    with pytest.raises(ValueError, match="norm_layer"):
        ghostnet_fpn_backbone(norm_layer=nn.GroupNorm)
    with pytest.raises(ValueError, match="no published GhostNet detector weights"):
        fasterrcnn_ghostnet_fpn(weights="imagenet")


@pytest.mark.parametrize(
    "builder", [fasterrcnn_ghostnet_fpn, fasterrcnn_ghostnet_320_fpn, retinanet_ghostnet_fpn]
)
def test_detector_train_and_eval_modes(builder) -> None:
    torch.manual_seed(0)
    model = builder(num_classes=3, **SMALL)
    images, targets = _batch()
    model.train()
    losses = model(images, targets)
    assert all(torch.isfinite(v) and v.ndim == 0 for v in losses.values())
    expected_keys = (
        {"classification", "bbox_regression"}
        if isinstance(model, RetinaNet)
        else {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    )
    assert set(losses) == expected_keys
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2
    for o, img in zip(out, images):
        assert o["boxes"].shape[1] == 4 and len(o["boxes"]) == len(o["scores"]) == len(o["labels"])
        if len(o["boxes"]):
            assert (o["boxes"][:, 2] <= img.shape[2] + 1e-3).all()
            assert (o["boxes"][:, 3] <= img.shape[1] + 1e-3).all()
            assert o["labels"].min() >= 1 and o["labels"].max() < 3


@pytest.mark.parametrize(
    ("builder", "kwargs"),
    [
        (fasterrcnn_ghostnet_320_fpn, {"rpn_post_nms_top_n_train": 200, "box_batch_size_per_image": 64}),
        (retinanet_ghostnet_fpn, {}),
    ],
)
def test_train_step_reduces_loss(builder, kwargs: dict) -> None:
    torch.manual_seed(0)
    model = builder(num_classes=3, **SMALL, **kwargs)
    model.train()
    images, targets = _batch()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    first = None
    for _ in range(8):
        loss = sum(model(images, targets).values())
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        final = sum(model(images, targets).values()).item()
    assert final < 0.9 * first


def test_presets_and_kwargs_reach_torchvision() -> None:
    m = fasterrcnn_ghostnet_320_fpn(num_classes=5, width=0.5)
    assert isinstance(m, FasterRCNN)
    assert m.transform.min_size == (320,) and m.transform.max_size == 640
    assert m.rpn._pre_nms_top_n["testing"] == 150 and m.rpn._post_nms_top_n["testing"] == 150
    assert m.roi_heads.score_thresh == 0.05
    # light pyramid: stage ends at strides 16/32 + the pooled level, 128 channels, 32-512 px anchors
    assert m.backbone.body.strides == [16, 32] and m.backbone.out_channels == 128
    feats = m.backbone(torch.randn(1, 3, 320, 448))
    assert [tuple(f.shape[1:]) for f in feats.values()] == [(128, 20, 28), (128, 10, 14), (128, 5, 7)]
    assert m.rpn.anchor_generator.sizes == ((32, 64), (96, 192), (256, 512))
    assert m.roi_heads.box_head.fc6.in_features == 128 * 7 * 7
    full = fasterrcnn_ghostnet_320_fpn(num_classes=5, width=0.5, returned_layers=[3, 4, 5], fpn_channels=256)
    assert full.backbone.body.strides == [8, 16, 32] and full.backbone.out_channels == 256
    assert len(full.rpn.anchor_generator.sizes) == 4
    m2 = fasterrcnn_ghostnet_320_fpn(num_classes=5, width=0.5, min_size=256, box_detections_per_img=7)
    assert m2.transform.min_size == (256,) and m2.roi_heads.detections_per_img == 7
    assert m2.roi_heads.box_predictor.cls_score.out_features == 5
    # the preset's light box head: 128 sampled RoIs per image, 256-wide layers
    assert m2.roi_heads.fg_bg_sampler.batch_size_per_image == 128
    fc6 = m2.roi_heads.box_head.fc6
    assert (fc6.in_features, fc6.out_features, m2.roi_heads.box_head.fc7.out_features) == (128 * 49, 256, 256)
    assert m2.roi_heads.box_predictor.cls_score.in_features == 256
    assert m2.roi_heads.box_predictor.bbox_pred.out_features == 5 * 4
    tv = fasterrcnn_ghostnet_fpn(num_classes=5, width=0.5)  # torchvision's 512 RoIs, 1024 wide
    assert tv.roi_heads.fg_bg_sampler.batch_size_per_image == 512
    assert tv.roi_heads.box_head.fc7.out_features == tv.roi_heads.box_predictor.cls_score.in_features == 1024
    wide = fasterrcnn_ghostnet_320_fpn(num_classes=5, width=0.5, representation_size=1024)
    assert wide.roi_heads.box_head.fc6.out_features == 1024
    with pytest.raises(ValueError, match="representation_size"):
        fasterrcnn_ghostnet_320_fpn(num_classes=5, representation_size=0)
    with pytest.raises(ValueError, match="num_classes should be None"):  # torchvision's own check
        fasterrcnn_ghostnet_fpn(num_classes=5, box_predictor=nn.Identity())
    r = retinanet_ghostnet_fpn(width=0.5)
    assert r.anchor_generator.num_anchors_per_location() == [9] * 5
    assert r.head.classification_head.num_classes == 91
    feats = r.backbone(torch.randn(1, 3, 256, 256))
    assert [f.shape[-1] for f in feats.values()] == [32, 16, 8, 4, 2]  # P3..P7


def test_detector_weights_roundtrip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    src = get_model("retinanet_ghostnet_fpn", num_classes=4, width=0.5)
    torch.save({"model": src.state_dict(), "epoch": 1}, tmp_path / "det.pth")
    loaded = get_model("retinanet_ghostnet_fpn", weights=tmp_path / "det.pth", width=0.5)
    assert loaded.head.classification_head.num_classes == 4
    for k, v in src.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    with pytest.raises(CheckpointError, match="has 4 classes, not num_classes 9"):
        get_model("retinanet_ghostnet_fpn", weights=tmp_path / "det.pth", width=0.5, num_classes=9)
    with pytest.raises(ValueError, match="not a checkpoint of this detector"):
        get_model("fasterrcnn_ghostnet_fpn", weights=tmp_path / "det.pth", width=0.5)


def test_fpn_channels_option() -> None:
    r = retinanet_ghostnet_fpn(num_classes=3, width=0.5, fpn_channels=128)
    feats = r.backbone(torch.randn(1, 3, 128, 128))
    assert [f.shape[1] for f in feats.values()] == [128] * 5
    assert r.head.classification_head.conv[0][0].in_channels == 128
    f = fasterrcnn_ghostnet_fpn(num_classes=3, width=0.5, fpn_channels=64)
    assert f.backbone.out_channels == 64 and f.rpn.head.conv[0][0].in_channels == 64
