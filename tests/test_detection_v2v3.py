"""GhostNetV2/V3 as detection backbones: registered detectors, strides, weights_backbone, deploy.fuse."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import randomise_bn
from test_deploy import _check_detections
from torch import nn
from torchvision.models.detection import FasterRCNN, RetinaNet
from torchvision.ops import FrozenBatchNorm2d

from ghostdet.deploy import DeployDFCGate, fuse
from ghostdet.deploy.onnx import randomize_heads
from ghostdet.models import (
    GHOSTNETV2,
    GHOSTNETV3,
    WeightsMismatchError,
    get_family,
    get_model,
    ghostnetv2,
    ghostnetv2_fpn_backbone,
    ghostnetv3,
    ghostnetv3_fpn_backbone,
    model_entry,
)
from ghostdet.models.ghostnetv3 import ConvBn
from ghostdet.models.registry import family_variant

SMALL = {"width": 0.5, "min_size": 96, "max_size": 128}
DETECTORS = {
    "fasterrcnn_ghostnetv2_fpn": ("ghostnetv2", FasterRCNN),
    "fasterrcnn_ghostnetv2_320_fpn": ("ghostnetv2", FasterRCNN),
    "retinanet_ghostnetv2_fpn": ("ghostnetv2", RetinaNet),
    "retinanet_ghostnetv2_320_fpn": ("ghostnetv2", RetinaNet),
    "fasterrcnn_ghostnetv3_fpn": ("ghostnetv3", FasterRCNN),
    "fasterrcnn_ghostnetv3_320_fpn": ("ghostnetv3", FasterRCNN),
    "retinanet_ghostnetv3_fpn": ("ghostnetv3", RetinaNet),
    "retinanet_ghostnetv3_320_fpn": ("ghostnetv3", RetinaNet),
}


@pytest.fixture(autouse=True)
def _torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def _batch() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 96, 128, generator=g), torch.rand(3, 110, 80, generator=g)]
    targets = [
        {
            "boxes": torch.tensor([[8.0, 16.0, 60.0, 80.0], [70.0, 8.0, 120.0, 50.0]]),
            "labels": torch.tensor([1, 2]),
        },
        {"boxes": torch.tensor([[5.0, 5.0, 40.0, 60.0]]), "labels": torch.tensor([1])},
    ]
    return images, targets


def test_families_and_registry_entries() -> None:
    assert get_family("ghostnetv2") is GHOSTNETV2 and get_family("ghostnetv3") is GHOSTNETV3
    assert {w: p.top1 for w, p in GHOSTNETV2.weights.items()} == {1.0: 75.3, 1.3: 76.9, 1.6: 77.8}
    assert {w: p.top1 for w, p in GHOSTNETV3.weights.items()} == {1.0: 77.1}
    for fam in (GHOSTNETV2, GHOSTNETV3):  # stages derived from the stride column: V1's taps
        assert fam.stage_strides == {1: 2, 2: 4, 3: 8, 4: 16, 5: 32}
        assert fam.stage_blocks == get_family("ghostnet").stage_blocks
    for name, width in [("ghostnetv2_130", 1.3), ("ghostnetv3_050", 0.5), ("ghostnetv3_160", 1.6)]:
        entry = model_entry(name)
        assert entry.kind == "classifier" and entry.defaults == {"width": width}
    for name, (family, _) in DETECTORS.items():
        assert model_entry(name).family == family
        v1 = name.replace(family, "ghostnet")
        assert family_variant(v1, family) == name and family_variant(name, "ghostnet") == v1
    assert family_variant("retinanet", "ghostnetv3") == "retinanet_ghostnetv3_fpn"
    with pytest.raises(
        ValueError, match=r"ghostnet_050 has no variant on backbone 'ghostnetv2'.*ghostnetv2_130"
    ):
        family_variant("ghostnet_050", "ghostnetv2")


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.slow) if n.startswith("fasterrcnn") and "320" not in n else n
        for n in DETECTORS
    ],
)
def test_detector_trains_one_step_with_every_parameter_and_infers(name: str) -> None:
    family, cls = DETECTORS[name]
    torch.manual_seed(0)
    model = get_model(name, num_classes=3, **SMALL)
    assert isinstance(model, cls)
    body = model.backbone.body
    assert body.strides == ([16, 32] if name.startswith("fasterrcnn") and "320" in name else [8, 16, 32])
    if family == "ghostnetv3":  # trained in the multi-branch form
        assert any(isinstance(m, ConvBn) for m in body.modules())
    images, targets = _batch()
    model.train()
    losses = model(images, targets)
    sum(losses.values()).backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert len(trainable) == len(list(model.parameters()))
    no_grad = [n for n, p in trainable if p.grad is None or not torch.isfinite(p.grad).all()]
    assert no_grad == []
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2 and set(out[0]) == {"boxes", "labels", "scores"}


@pytest.mark.parametrize("builder", [ghostnetv2_fpn_backbone, ghostnetv3_fpn_backbone])
def test_fpn_levels_and_strides(builder) -> None:
    """P3-P5 at strides 8/16/32 (+ the pooled level), and P6/P7 for RetinaNet."""
    x = torch.rand(1, 3, 128, 192)
    bb = builder(width=0.5).eval()
    with torch.no_grad():
        feats = bb(x)
    assert {k: tuple(v.shape[-2:]) for k, v in feats.items()} == {
        "0": (16, 24),
        "1": (8, 12),
        "2": (4, 6),
        "pool": (2, 3),
    }
    family = "ghostnetv2" if builder is ghostnetv2_fpn_backbone else "ghostnetv3"
    retina = get_model(f"retinanet_{family}_fpn", num_classes=3, width=0.5, fpn_channels=64).eval()
    with torch.no_grad():
        levels = retina.backbone(x)
    assert [tuple(v.shape[-2:]) for v in levels.values()] == [(16, 24), (8, 12), (4, 6), (2, 3), (1, 2)]
    assert list(levels) == ["0", "1", "2", "p6", "p7"]


def test_weights_backbone_takes_a_classifier_checkpoint_strictly(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cls = randomise_bn(ghostnetv2(width=0.5, num_classes=10))
    path = tmp_path / "v2.pth"
    torch.save(cls.state_dict(), path)
    model = get_model("fasterrcnn_ghostnetv2_320_fpn", num_classes=3, width=0.5, weights_backbone=path)
    body = model.backbone.body
    # the classifier is not loaded; everything else is, BatchNorms frozen with the file's statistics
    gate_bn = body.blocks[6][0].ghost1.short_conv[5]
    assert isinstance(gate_bn, FrozenBatchNorm2d)
    torch.testing.assert_close(gate_bn.running_var, cls.blocks[6][0].ghost1.short_conv[5].running_var)
    torch.testing.assert_close(body.conv_stem.weight, cls.conv_stem.weight)
    # a V1 or V3 file is refused with the key list
    torch.save(ghostnetv3(width=0.5).state_dict(), path)
    with pytest.raises(
        WeightsMismatchError, match=r"(?s)missing \(\d+\):.*unexpected \(\d+\):.*primary_rpr_conv"
    ):
        get_model("retinanet_ghostnetv2_fpn", width=0.5, weights_backbone=path)


def test_v3_weights_backbone_renames_the_release_names(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cls = randomise_bn(ghostnetv3(width=0.5))
    release = {k.replace(".bn1.", ".bn.") if "_rpr_" in k else k: v for k, v in cls.state_dict().items()}
    path = tmp_path / "v3_release.pth"
    torch.save({"state_dict": release}, path)
    bb = ghostnetv3_fpn_backbone(width=0.5, weights=path)
    got = bb.body.blocks[3][0].dw_rpr_conv[1].bn1
    torch.testing.assert_close(got.running_mean, cls.blocks[3][0].dw_rpr_conv[1].bn1.running_mean)
    # its branches' FrozenBatchNorms re-parameterise in deploy.fuse like BatchNorms
    x = torch.randn(1, 3, 96, 128)
    with torch.inference_mode():
        ref, got_maps = bb.eval()(x), fuse(bb)(x)
    assert all(_rel_err(ref[k], got_maps[k]) < 1e-4 for k in ref)


def test_weights_backbone_imagenet_reads_the_published_v2_file(_torch_home: Path) -> None:
    torch.manual_seed(0)
    cls = randomise_bn(ghostnetv2(width=1.3))
    cache = _torch_home / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(cls.state_dict(), cache / GHOSTNETV2.url(1.3).rsplit("/", 1)[1])
    bb = ghostnetv2_fpn_backbone(width=1.3, weights="imagenet")
    torch.testing.assert_close(
        bb.body.blocks[8][3].ghost2.primary_conv[0].weight, cls.blocks[8][3].ghost2.primary_conv[0].weight
    )
    with pytest.raises(ValueError, match=r"GhostNetV3 width 1\.3 \(published: 1\)"):
        ghostnetv3_fpn_backbone(width=1.3, weights="imagenet")


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / a.abs().max()).item()


@pytest.mark.parametrize("build", [ghostnetv2, ghostnetv3])
@pytest.mark.parametrize("native", [True, False])
def test_fused_classifier_equals_eager(build, native: bool) -> None:
    torch.manual_seed(0)
    model = randomise_bn(build(width=1.0, num_classes=10))
    fused = fuse(model, native_kernels=native)
    assert not any(isinstance(m, (nn.BatchNorm2d, ConvBn)) for m in fused.modules())
    assert sum(isinstance(m, DeployDFCGate) for m in fused.modules()) == 14  # bottlenecks 2..15
    x = torch.randn(2, 3, 96, 128)
    with torch.inference_mode():
        assert _rel_err(model(x), fused(x)) < 1e-4
    assert any(isinstance(m, ConvBn) for m in model.modules()) == (build is ghostnetv3)  # copy fused


@pytest.mark.parametrize("build", [ghostnetv2, ghostnetv3])
def test_fused_v2_v3_are_inference_only_and_check_their_input(build) -> None:
    torch.manual_seed(0)
    fused = fuse(build(width=0.5, num_classes=10).eval())
    gate = next(m for m in fused.modules() if isinstance(m, DeployDFCGate))
    for module in (fused, gate):
        with pytest.raises(RuntimeError, match="cannot train"):
            module.train()
    assert not any(m.training for m in fused.modules())
    with torch.inference_mode(), pytest.raises(ValueError, match=r"\(3, 64, 64\) \(add a batch dimension"):
        fused(torch.zeros(3, 64, 64))
    seen = []
    fused.apply(seen.append)  # nn.Module.apply reaches the gates (their call is forward, not apply)
    assert sum(isinstance(m, DeployDFCGate) for m in seen) == 14
    with torch.inference_mode():
        assert fused(torch.zeros(1, 3, 64, 64)).shape == (1, 10)


@pytest.mark.parametrize("build", [ghostnetv2, ghostnetv3], ids=["ghostnetv2", "ghostnetv3"])
def test_fused_state_dict_holds_each_tensor_once(build) -> None:
    """The deploy blocks' per-call references (their convs, DFC gate, SE module) are not
    registered as submodules again: every state_dict entry is its own tensor."""
    sd = fuse(build(width=0.5).eval()).state_dict()
    assert not [k for k in sd if "._" in k]  # no private attribute registered as a module
    assert len({v.data_ptr() for v in sd.values()}) == len(sd)


def test_fused_v3_equals_timms_reparameterized_model(tmp_path: Path) -> None:
    timm = pytest.importorskip("timm")
    from timm.models import reparameterize_model

    torch.manual_seed(0)
    ref = randomise_bn(timm.create_model("ghostnetv3_050"), seed=3)
    path = tmp_path / "v3.pth"
    torch.save(ref.state_dict(), path)
    fused = fuse(ghostnetv3(width=0.5, weights=path).eval())
    x = torch.randn(1, 3, 128, 128)
    with torch.inference_mode():
        want = reparameterize_model(ref)(x)
        assert _rel_err(want, fused(x)) < 1e-4


@pytest.mark.parametrize("builder", [ghostnetv2_fpn_backbone, ghostnetv3_fpn_backbone])
def test_fused_fpn_backbone_equals_eager(builder) -> None:
    torch.manual_seed(0)
    bb = randomise_bn(builder(width=1.0, returned_layers=[2, 3, 4, 5]))
    fused = fuse(bb)
    x = torch.randn(1, 3, 160, 224)
    with torch.inference_mode():
        ref, got = bb(x), fused(x)
    assert list(ref) == list(got)
    for k in ref:
        assert ref[k].shape == got[k].shape and _rel_err(ref[k], got[k]) < 1e-4


@pytest.mark.parametrize(
    ("name", "kw"),
    [
        ("fasterrcnn_ghostnetv2_320_fpn", {"box_score_thresh": 0.0, "width": 0.5}),
        ("retinanet_ghostnetv3_fpn", {"score_thresh": 0.0, "min_size": 192, "max_size": 256, "width": 0.5}),
        ("retinanet_ghostnetv2_320_fpn", {"score_thresh": 0.0, "width": 0.5}),
    ],
)
def test_fused_detector_equals_eager(name: str, kw: dict) -> None:
    torch.manual_seed(0)
    # spread-out head logits: a random RetinaNet scores every box ~0.01, so ties would decide
    model = randomize_heads(randomise_bn(get_model(name, num_classes=5, **kw), seed=1))
    fused = fuse(model)
    imgs = [torch.rand(3, 240, 320), torch.rand(3, 100, 90)]
    with torch.inference_mode():
        ref, got = model(imgs), fused(imgs)
    limit = model.roi_heads.detections_per_img if isinstance(model, FasterRCNN) else model.detections_per_img
    _check_detections(ref, got, limit)
