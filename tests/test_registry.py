"""The model registry, the backbone family interface and the CLI's detector name resolution."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models.detection import FasterRCNN, RetinaNet

from ghostdet.config.detection import DETECTORS
from ghostdet.errors import InputError
from ghostdet.models import (
    GHOSTNET_CFG,
    IMAGENET_URLS,
    BackboneFamily,
    GhostNet,
    get_family,
    get_model,
    ghostnet_fpn_backbone,
    list_models,
    model_entry,
    register_model,
)
from ghostdet.models import family as family_module
from ghostdet.models.ghostnet import STAGE_BLOCKS, STAGE_STRIDES
from ghostdet.models.registry import resolve_detector_name

DETECTOR_NAMES = [
    "fasterrcnn_ghostnet_320_fpn",
    "fasterrcnn_ghostnet_fpn",
    "retinanet_ghostnet_320_fpn",
    "retinanet_ghostnet_fpn",
]
# the same detectors on GhostNetV2 and V3 (built and trained in tests/test_detection_v2v3.py)
VARIANT_NAMES = [n.replace("ghostnet", f"ghostnet{v}") for v in ("v2", "v3") for n in DETECTOR_NAMES]


def test_kinds_partition_the_names() -> None:
    assert list_models("detector") == sorted(DETECTOR_NAMES + VARIANT_NAMES)
    classifiers = list_models("classifier")
    assert {"ghostnet", "ghostnet_050", "ghostnet_130", "vgg16_cifar", "resnet56_cifar"} <= set(classifiers)
    assert {"ghostnet_fpn", "ghostnet_100_fpn", "ghostnet_110_fpn"} <= set(list_models("backbone"))
    by_kind = sorted(n for k in ("classifier", "detector", "backbone") for n in list_models(k))
    assert by_kind == list_models()
    with pytest.raises(ValueError, match="kind must be one of classifier, detector, backbone"):
        list_models("segmenter")


def test_aliases_and_defaults() -> None:
    assert DETECTORS == {
        "fasterrcnn": "fasterrcnn_ghostnet_fpn",
        "fasterrcnn_320": "fasterrcnn_ghostnet_320_fpn",
        "retinanet": "retinanet_ghostnet_fpn",
        "retinanet_320": "retinanet_ghostnet_320_fpn",
    }
    for alias, name in DETECTORS.items():
        entry = model_entry(alias)
        assert entry.name == name and alias in entry.aliases and entry.family == "ghostnet"
    assert model_entry("ghostnet_050").defaults == {"width": 0.5}
    assert get_model("ghostnet_050", num_classes=3).width == 0.5
    assert get_model("ghostnet_050", width=1.3, num_classes=3).width == 1.3  # a default is overridable
    assert model_entry("vgg16_cifar").build(num_classes=7)(torch.zeros(2, 3, 32, 32)).shape == (2, 7)
    assert model_entry("resnet56_cifar").kind == "classifier"


def test_unknown_name_lists_names_and_aliases() -> None:
    with pytest.raises(
        ValueError, match=r"unknown model 'resnet'; available: .*ghostnet_050.*vgg16_cifar.*retinanet"
    ):
        get_model("resnet")


def test_register_rejects_bad_kind_and_taken_names() -> None:
    before = list_models()
    with pytest.raises(ValueError, match="kind must be one of"):
        register_model("x_model", kind="segmenter")
    with pytest.raises(ValueError, match="'ghostnet_100' is already registered"):
        register_model("ghostnet_100", kind="classifier")(GhostNet)
    with pytest.raises(ValueError, match="'retinanet' is already registered"):
        register_model("another_retinanet", kind="detector", aliases=("retinanet",))(GhostNet)
    assert list_models() == before


@pytest.mark.parametrize("name", DETECTOR_NAMES)
def test_every_detector_builds_and_its_class_key_counts_classes(name: str) -> None:
    entry = model_entry(name)
    model = entry.build(num_classes=5, width=0.5)
    assert isinstance(model, (FasterRCNN, RetinaNet))
    weight = model.state_dict()[entry.class_key]
    anchors = model.anchor_generator.num_anchors_per_location()[0] if isinstance(model, RetinaNet) else 1
    assert weight.shape[0] == 5 * anchors


def test_resolve_detector_name() -> None:
    assert resolve_detector_name("retinanet") == "retinanet_ghostnet_fpn"
    assert resolve_detector_name("fasterrcnn_ghostnet_320_fpn") == "fasterrcnn_ghostnet_320_fpn"
    msg = (
        r"unknown detector 'ghostnet_100'; choose from fasterrcnn, fasterrcnn_320, retinanet, retinanet_320, "
        r"fasterrcnn_ghostnet_320_fpn, fasterrcnn_ghostnet_fpn, fasterrcnn_ghostnetv2_320_fpn, .*, "
        r"retinanet_ghostnetv3_fpn$"
    )
    with pytest.raises(InputError, match=msg):
        resolve_detector_name("ghostnet_100")  # registered, but not a detector


def test_ghostnet_stages_are_derived_from_the_cfg_stride_column() -> None:
    fam = get_family("ghostnet")
    assert fam.cfg is GHOSTNET_CFG
    expected = {1: (0,), 2: (1, 2), 3: (3, 4), 4: (5, 6), 5: (7, 8)}
    assert fam.stage_blocks == STAGE_BLOCKS == expected
    assert fam.stage_strides == STAGE_STRIDES == {1: 2, 2: 4, 3: 8, 4: 16, 5: 32}
    # Independent check: the product of all strides up to each stage's last entry.
    for stage, ids in expected.items():
        stride = 2
        for rows in GHOSTNET_CFG[: ids[-1] + 1]:
            for row in rows:
                stride *= row[4]
        assert stride == 2**stage


def test_stage_derivation_of_other_tables() -> None:
    # A strided first entry leaves no stage at the stem's stride; the stride may sit in any column.
    rows = [[(2, 8)], [(1, 8)], [(2, 16)], [(1, 16), (2, 24)], [(1, 24)]]
    fam = BackboneFamily("t", "T", rows, GhostNet, stride_column=0, stem_stride=4)
    assert fam.stage_blocks == {1: (0, 1), 2: (2,), 3: (3, 4)}
    assert fam.stage_strides == {1: 8, 2: 16, 3: 32}
    assert fam.num_stages == 3


def test_weights_table() -> None:
    fam = get_family("ghostnet")
    assert fam.url(1.0) == IMAGENET_URLS[1.0] and fam.weights[1.0].top1 == pytest.approx(73.98)
    with pytest.raises(
        ValueError, match=r"no published ImageNet weights for GhostNet width 0\.5 \(published: 1\)"
    ):
        fam.url(0.5)
    with pytest.raises(ValueError, match="unknown backbone family 'ghostnetv9'; available: ghostnet"):
        get_family("ghostnetv9")


# A second family: GhostNet's first six block entries (strides 2-16, four stages).
SHORT_CFG = GHOSTNET_CFG[:6]


def _short_trunk(width: float = 1.0) -> nn.Module:
    return GhostNet(SHORT_CFG, width=width)


def test_fpn_backbone_and_detectors_take_another_family(monkeypatch: pytest.MonkeyPatch) -> None:
    fam = BackboneFamily("short", "Short GhostNet", SHORT_CFG, _short_trunk)
    monkeypatch.setitem(family_module._FAMILIES, "short", fam)
    assert fam.stage_blocks == {1: (0,), 2: (1, 2), 3: (3, 4), 4: (5,)}
    backbone = ghostnet_fpn_backbone(0.5, returned_layers=[3, 4], family="short").eval()
    assert backbone.body.strides == [8, 16] and len(backbone.body.blocks) == 6
    with torch.no_grad():
        maps = backbone.body(torch.zeros(1, 3, 64, 64))
    assert [tuple(m.shape[-2:]) for m in maps.values()] == [(8, 8), (4, 4)]
    with pytest.raises(ValueError, match=r"subset of 1\.\.4"):
        ghostnet_fpn_backbone(0.5, returned_layers=[5], family="short")
    with pytest.raises(ValueError, match="no published ImageNet weights for Short GhostNet"):
        ghostnet_fpn_backbone(0.5, weights="imagenet", family="short")
    det = get_model("fasterrcnn", backbone="short", width=0.5, num_classes=3, returned_layers=[3, 4])
    assert det.backbone.body.strides == [8, 16]
    with pytest.raises(ValueError, match="unknown backbone family 'nope'"):
        get_model("retinanet", backbone="nope")


def test_export_names_come_from_the_registry() -> None:
    from ghostdet.deploy.onnx import build_for_export, export_names

    assert export_names() == (
        "classifier",
        "backbone",
        "fasterrcnn",
        "fasterrcnn_320",
        "retinanet",
        "retinanet_320",
    )
    with pytest.raises(
        ValueError, match="unknown model 'ghostnet_100'; choose from classifier, backbone, fasterrcnn"
    ):
        build_for_export("ghostnet_100", None, 1.0, None)
    assert isinstance(build_for_export("retinanet_ghostnet_fpn", None, 0.5, 4), RetinaNet)
