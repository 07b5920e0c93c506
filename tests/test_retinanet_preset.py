"""retinanet_ghostnet_320_fpn and the RetinaNet head options (ghostdet.models.retinanet_head)."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch
from helpers import detection_batch
from torch import nn
from torchvision.models.detection import RetinaNet
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.ops import box_iou

from ghostdet.models.atss import ATSSRetinaNet
from ghostdet.models.detection import retinanet_ghostnet_320_fpn, retinanet_ghostnet_fpn
from ghostdet.models.retinanet_head import retinanet_anchors, retinanet_head

SMALL = {"min_size": 128, "max_size": 128}
needs_onnx = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None,
    reason="needs the [export] extra",
)


def _levels(model: RetinaNet, size: int = 128) -> list[torch.Tensor]:
    with torch.no_grad():
        return list(model.backbone(torch.rand(1, 3, size, size)).values())


def test_preset_structure() -> None:
    model = retinanet_ghostnet_320_fpn(num_classes=5)
    assert isinstance(model, RetinaNet)
    assert (model.transform.min_size, model.transform.max_size) == ((320,), 640)
    feats = _levels(model, 256)
    # P3-P5 from the trunk plus one pooled level: strides 8, 16, 32, 64 at 128 channels
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4] and {f.shape[1] for f in feats} == {128}
    head = model.head
    for branch in (head.classification_head, head.regression_head):
        assert len(branch.conv) == 2  # depthwise 3x3, 1x1, GroupNorm(32), ReLU
        assert all(layer[0].groups == 128 and layer[1].kernel_size == (1, 1) for layer in branch.conv)
        assert all(isinstance(layer[2], nn.GroupNorm) and layer[2].num_groups == 32 for layer in branch.conv)
    assert head.regression_head._loss_type == "giou"
    assert head.cls_loss == "qfl" and retinanet_ghostnet_320_fpn(cls_loss="focal").head.cls_loss == "focal"
    assert head.classification_head.cls_logits.bias[0].item() == pytest.approx(-math.log(99), rel=1e-6)
    # ATSS assignment with one square anchor per location, 8x the stride
    assert isinstance(model, ATSSRetinaNet) and model.atss_topk == 9
    assert model.anchor_generator.sizes == ((64,), (128,), (256,), (512,))
    assert model.anchor_generator.aspect_ratios == ((1.0,),) * 4
    # matcher="iou" with the paper's anchors: IoU matching at 0.4 / 0.3
    iou = retinanet_ghostnet_320_fpn(
        num_classes=5, matcher="iou", anchor_scale=4, scales_per_octave=3, aspect_ratios=(0.5, 1.0, 2.0)
    )
    assert type(iou) is RetinaNet
    assert (iou.proposal_matcher.high_threshold, iou.proposal_matcher.low_threshold) == (0.4, 0.3)
    assert iou.anchor_generator.sizes == ((32, 40, 50), (64, 80, 101), (128, 161, 203), (256, 322, 406))
    assert iou.anchor_generator.num_anchors_per_location() == [9] * 4
    with pytest.raises(ValueError, match="anchor_scale"):
        retinanet_ghostnet_320_fpn(anchor_scale=0)


def test_default_retinanet_keeps_the_paper_pyramid() -> None:
    model = retinanet_ghostnet_fpn(num_classes=5)
    feats = _levels(model, 256)
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4, 2] and {f.shape[1] for f in feats} == {256}
    assert len(model.head.classification_head.conv) == 4 and model.head.cls_loss == "focal"
    assert model.anchor_generator.sizes[0] == (32, 40, 50) and model.anchor_generator.sizes[-1][0] == 512


def test_original_head_matches_torchvision() -> None:
    """group_norm=None, head_convs=4, l1: torchvision's v1 head, parameter for parameter."""
    model = retinanet_ghostnet_fpn(num_classes=5, group_norm=None, box_loss="l1")
    ref = RetinaNetHead(256, 9, 5)
    assert {k: v.shape for k, v in model.head.state_dict().items()} == {
        k: v.shape for k, v in ref.state_dict().items()
    }
    assert model.head.regression_head._loss_type == "l1"


def test_checkpoint_of_the_original_head_still_loads(tmp_path) -> None:
    torch.manual_seed(0)
    old = retinanet_ghostnet_fpn(num_classes=4, group_norm=None, box_loss="l1")
    path = tmp_path / "old.pth"
    torch.save({"model": old.state_dict()}, path)
    loaded = retinanet_ghostnet_fpn(weights=path)
    assert loaded.head.classification_head.cls_logits.out_channels == 9 * 4
    assert not any(isinstance(m, nn.GroupNorm) for m in loaded.head.modules())
    for k, v in old.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"separable_head": True}, {"separable_head": True, "group_norm": None}, {"cls_loss": "focal"}],
)
def test_preset_trains_with_every_parameter_receiving_a_gradient(kwargs: dict) -> None:
    torch.manual_seed(0)
    model = retinanet_ghostnet_320_fpn(num_classes=4, **SMALL, **kwargs).train()
    images, targets = detection_batch()
    losses = model(images, targets)
    assert set(losses) == {"classification", "bbox_regression"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert len(trainable) == len(list(model.parameters()))  # from scratch: everything trains
    missing = [
        n for n, p in trainable if p.grad is None or not torch.isfinite(p.grad).all() or not p.grad.any()
    ]
    assert not missing, missing
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    before = model.head.classification_head.cls_logits.weight.detach().clone()
    opt.step()
    assert not torch.equal(before, model.head.classification_head.cls_logits.weight)


def test_preset_inference_outputs() -> None:
    torch.manual_seed(0)
    model = retinanet_ghostnet_320_fpn(num_classes=4, **SMALL).eval()
    images, _ = detection_batch()
    with torch.no_grad():
        out = model([images[0], torch.rand(3, 96, 160)])
    assert len(out) == 2
    for o, (h, w) in zip(out, [(128, 128), (96, 160)]):
        n = len(o["scores"])
        assert o["boxes"].shape == (n, 4) and o["labels"].shape == (n,)
        if n:
            assert (o["scores"] >= 0.05).all() and (o["scores"] <= 1).all()
            assert o["labels"].min() >= 1 and o["labels"].max() < 4
            assert (o["boxes"][:, 2] <= w + 1e-3).all() and (o["boxes"][:, 3] <= h + 1e-3).all()


def test_preset_overrides_and_errors() -> None:
    model = retinanet_ghostnet_320_fpn(
        num_classes=3, extra_levels="none", anchor_sizes=(24, 48, 96), aspect_ratios=(1.0,), head_convs=0,
        group_norm=None, box_loss="l1", **SMALL,
    )  # fmt: skip
    assert len(_levels(model)) == 3
    assert model.anchor_generator.num_anchors_per_location() == [1] * 3
    assert model.anchor_generator.sizes == ((24,), (48,), (96,))
    assert len(model.head.classification_head.conv) == 0
    assert model.head.classification_head.cls_logits.out_channels == 3
    with pytest.raises(ValueError, match="anchor_sizes"):
        retinanet_ghostnet_320_fpn(anchor_sizes=(32, 64))
    with pytest.raises(ValueError, match="extra_levels"):
        retinanet_ghostnet_320_fpn(extra_levels="p6")
    with pytest.raises(ValueError, match="returned_layers"):
        retinanet_ghostnet_320_fpn(returned_layers=[6])


def test_separable_head_layers() -> None:
    head = retinanet_head(64, 3, 7, num_convs=2, group_norm=16, separable=True)
    for branch in (head.classification_head, head.regression_head):
        assert len(branch.conv) == 2
        for layer in branch.conv:
            dw, pw, norm, act = layer
            assert (dw.groups, dw.kernel_size, dw.in_channels, dw.out_channels) == (64, (3, 3), 64, 64)
            assert dw.bias is None and pw.kernel_size == (1, 1) and pw.bias is None  # the norm's bias
            assert isinstance(norm, nn.GroupNorm) and norm.num_groups == 16 and isinstance(act, nn.ReLU)
        # depthwise 9*64 + pointwise 64*64 + GroupNorm 2*64 per layer, then the 3x3 predictor
        per_layer = 9 * 64 + 64 * 64 + 2 * 64
        predictor = branch.cls_logits if branch is head.classification_head else branch.bbox_reg
        assert sum(p.numel() for p in branch.parameters()) == 2 * per_layer + predictor.weight.numel() + (
            predictor.bias.numel()
        )
    plain = retinanet_head(64, 3, 7, num_convs=1, separable=True).classification_head.conv[0]
    assert len(plain) == 3 and plain[1].bias is not None and isinstance(plain[2], nn.ReLU)
    # same function as the layers it is made of
    x = torch.randn(2, 64, 9, 9)
    layer = head.classification_head.conv[0]
    assert torch.allclose(layer(x), torch.relu(layer[2](layer[1](layer[0](x)))))
    # a 5x5 depthwise kernel keeps the map size
    wide = retinanet_head(64, 3, 7, num_convs=2, group_norm=16, separable=True, separable_kernel=5)
    dw = wide.regression_head.conv[1][0]
    assert (dw.kernel_size, dw.padding, dw.groups) == ((5, 5), (2, 2), 64)
    assert wide.regression_head.conv(x).shape == x.shape
    with pytest.raises(ValueError, match="separable_kernel"):
        retinanet_head(64, 3, 7, separable=True, separable_kernel=4)


def test_separable_checkpoints_load_with_or_without_group_norm(tmp_path) -> None:
    for group_norm in (32, None):
        torch.manual_seed(0)
        src = retinanet_ghostnet_320_fpn(num_classes=3, separable_head=True, group_norm=group_norm)
        torch.save({"model": src.state_dict()}, tmp_path / "s.pth")
        loaded = retinanet_ghostnet_320_fpn(weights=tmp_path / "s.pth", separable_head=True)
        assert any(isinstance(m, nn.GroupNorm) for m in loaded.head.modules()) == (group_norm is not None)
        assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in src.state_dict().items())


def test_head_and_anchor_helpers() -> None:
    head = retinanet_head(64, 3, 7, num_convs=1, group_norm=16, box_loss="smooth_l1", prior_probability=0.1)
    assert len(head.classification_head.conv) == len(head.regression_head.conv) == 1
    assert head.classification_head.conv[0][1].num_groups == 16
    assert head.classification_head.cls_logits.bias[0].item() == pytest.approx(-math.log(9), rel=1e-6)
    assert head.regression_head._loss_type == "smooth_l1"
    for bad, match in [
        ({"num_convs": 5}, "num_convs"),
        ({"group_norm": 24}, "divide"),
        ({"box_loss": "iou"}, "box_loss"),
        ({"prior_probability": 1.0}, "prior"),
        ({"cls_loss": "varifocal"}, "cls_loss must be one of focal, qfl"),
    ]:
        with pytest.raises(ValueError, match=match):
            retinanet_head(64, 3, 7, **bad)
    gen = retinanet_anchors((16, 32), scales_per_octave=2, aspect_ratios=(0.5, 1.0))
    assert gen.sizes == ((16, 22), (32, 45)) and gen.num_anchors_per_location() == [4, 4]
    with pytest.raises(ValueError):
        retinanet_anchors(())


@needs_onnx
@pytest.mark.slow
def test_preset_exports_to_onnx(tmp_path) -> None:
    from ghostdet.deploy.onnx import calibrate_bn, export_onnx, load_image, randomize_heads

    img = load_image(None, (240, 320))
    torch.manual_seed(0)
    model = randomize_heads(retinanet_ghostnet_320_fpn(num_classes=5).eval())
    calibrate_bn(model, img)
    report = export_onnx(model, tmp_path / "retina320.onnx", image=img)
    assert (tmp_path / "retina320.onnx").is_file() and report["kind"] == "detector"
    assert len(report["checks"]) == 2
    for c in report["checks"]:
        assert c["num_detections"] > 0 and c["num_detections"] == c["onnx_detections"]
        assert c["matched"] >= 0.98


def _same_structure(a: RetinaNet, b: RetinaNet) -> None:
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}
    assert a.anchor_generator.sizes == b.anchor_generator.sizes
    assert a.head.regression_head._loss_type == b.head.regression_head._loss_type
    assert a.head.cls_loss == b.head.cls_loss
    assert type(a) is type(b)
    if isinstance(a, ATSSRetinaNet):
        assert a.atss_topk == b.atss_topk
    else:
        for attr in ("high_threshold", "low_threshold"):
            assert getattr(a.proposal_matcher, attr) == getattr(b.proposal_matcher, attr)


def test_make_train_recipe_trains_the_preset_structure() -> None:
    from ghostdet.config.detection import CONFIG_DIR, load_config
    from ghostdet.engine.train import build_model

    cfg = load_config(CONFIG_DIR / "retinanet_ghostnet_synthetic.yaml")
    assert cfg.detector == "retinanet"
    model = build_model(cfg, 5)
    _same_structure(model, retinanet_ghostnet_320_fpn(num_classes=5))
    assert (model.transform.min_size, model.transform.max_size) == ((128,), 128)


def test_retinanet_320_recipe() -> None:
    from ghostdet import config
    from ghostdet.engine.train import build_model

    if "retinanet_320" not in config.DETECTORS:
        pytest.skip("the retinanet_320 detector alias is not registered")
    cfg = config.load_config(config.CONFIG_DIR / "retinanet_320_ghostnet_synthetic.yaml")
    _same_structure(build_model(cfg, 5), retinanet_ghostnet_320_fpn(num_classes=5))


def _head_loss_inputs(num_anchors: int = 60, num_classes: int = 5) -> tuple[list, dict, list, list]:
    """Random targets, head outputs, anchors and matches of 4 images (one without boxes)."""
    g = torch.Generator().manual_seed(0)
    targets, anchors, matched = [], [], []
    for n in (3, 0, 1, 2):
        xy = torch.rand(n, 2, generator=g) * 50
        targets.append({"boxes": torch.cat([xy, xy + 5 + 20 * torch.rand(n, 2, generator=g)], 1),
                        "labels": torch.randint(0, num_classes, (n,), generator=g)})  # fmt: skip
        axy = torch.rand(num_anchors, 2, generator=g) * 50
        anchors.append(torch.cat([axy, axy + 8 + 16 * torch.rand(num_anchors, 2, generator=g)], 1))
        # foreground box indices, background (-1) and ignored (-2) anchors
        m = torch.randint(-2, max(n, 1), (num_anchors,), generator=g) if n else torch.full((num_anchors,), -1)
        matched.append(m)
    outputs = {
        "cls_logits": torch.randn(4, num_anchors, num_classes, generator=g, requires_grad=True),
        "bbox_regression": (0.3 * torch.randn(4, num_anchors, 4, generator=g)).requires_grad_(),
    }
    return targets, outputs, anchors, matched


@pytest.mark.parametrize("box_loss", ["giou", "l1", "smooth_l1", "diou", "ciou"])
def test_batched_head_loss_equals_torchvision_per_image_loss(box_loss: str) -> None:
    head = retinanet_head(32, 3, 5, num_convs=1, group_norm=8, box_loss=box_loss)
    targets, outputs, anchors, matched = _head_loss_inputs()
    got = head.compute_loss(targets, outputs, anchors, matched)
    want = RetinaNetHead.compute_loss(head, targets, outputs, anchors, matched)
    for key in ("classification", "bbox_regression"):
        assert torch.allclose(got[key], want[key], rtol=1e-5, atol=1e-6), key
        (g_got,) = torch.autograd.grad(
            got[key], outputs["cls_logits" if key == "classification" else "bbox_regression"]
        )
        (g_want,) = torch.autograd.grad(
            want[key], outputs["cls_logits" if key == "classification" else "bbox_regression"]
        )
        assert torch.allclose(g_got, g_want, rtol=1e-4, atol=1e-7), key


def test_quality_focal_loss_follows_its_definition() -> None:
    head = retinanet_head(32, 3, 5, num_convs=1, group_norm=8, box_loss="giou", cls_loss="qfl")
    targets, outputs, anchors, matched = _head_loss_inputs()
    got = head.compute_loss(targets, outputs, anchors, matched)
    coder, per_image = head.regression_head.box_coder, []
    for i, t in enumerate(targets):  # anchor by anchor: BCE(p, y) * |p - y|^2, y = IoU of the prediction
        logits, regression, m = (
            outputs["cls_logits"][i].detach(),
            outputs["bbox_regression"][i].detach(),
            matched[i],
        )
        total = 0.0
        for a in range(len(m)):
            if m[a] == -2:
                continue
            y = torch.zeros(5)
            if m[a] >= 0:
                pred = coder.decode_single(regression[a : a + 1], anchors[i][a : a + 1])
                y[t["labels"][m[a]]] = box_iou(pred, t["boxes"][m[a] : m[a] + 1])[0, 0]
            p = logits[a].sigmoid()
            bce = -(y * p.log() + (1 - y) * (1 - p).log())
            total += float((bce * (p - y) ** 2).sum())
        per_image.append(total / max(int((m >= 0).sum()), 1))
    assert got["classification"].item() == pytest.approx(sum(per_image) / len(per_image), rel=1e-5)
    # the same box loss as the focal head; the IoU target carries no gradient into the boxes
    focal = retinanet_head(32, 3, 5, num_convs=1, group_norm=8, box_loss="giou")
    assert torch.equal(
        got["bbox_regression"], focal.compute_loss(targets, outputs, anchors, matched)["bbox_regression"]
    )
    (grad,) = torch.autograd.grad(got["classification"], outputs["bbox_regression"], allow_unused=True)
    assert grad is None


def test_batched_head_loss_under_bfloat16_autocast_is_float32() -> None:
    torch.manual_seed(0)
    model = retinanet_ghostnet_320_fpn(num_classes=4, **SMALL).train()
    images, targets = detection_batch()
    reference = model(images, targets)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model(images, targets)
    for key, value in losses.items():
        assert value.dtype == torch.float32 and torch.isfinite(value)
        assert value.item() == pytest.approx(reference[key].item(), rel=0.05), key
    sum(losses.values()).backward()
