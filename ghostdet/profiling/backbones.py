"""The backbones of the comparison table (``tools/compare_backbones.py``).

:data:`BACKBONES` (classifiers) and :data:`DETECTION_BACKBONES` (body + FPN) map a row name to
a :class:`BackboneSpec`: its label, a builder (random init, no downloads) and, for classifiers,
the published figures from :mod:`ghostdet.profiling.paper_figures`. The rows themselves are the
one table between the ``Rows`` markers below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torchvision
from torch import Tensor, nn
from torchvision.models.detection.backbone_utils import mobilenet_backbone

from ghostdet.models.detection import ghostnet_fpn_backbone
from ghostdet.models.ghostnet import ghostnet
from ghostdet.models.ghostnetv2 import ghostnetv2, ghostnetv2_fpn_backbone
from ghostdet.models.ghostnetv3 import ghostnetv3, ghostnetv3_fpn_backbone, reparameterize
from ghostdet.profiling.paper_figures import IMAGENET_BACKBONES

__all__ = ["BACKBONES", "DETECTION_BACKBONES", "BackboneSpec"]


class _Trunk(nn.Module):
    """Everything of a classifier before global pooling (``forward_features`` or ``features``)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        if hasattr(self.net, "forward_features"):
            return self.net.forward_features(x)
        return self.net.features(x)


@dataclass(frozen=True)
class BackboneSpec:
    """A row of the comparison table.

    Attributes:
        label: display name.
        build: builds the full model (random init, no downloads).
        detection: ``True`` for a detection backbone (body + FPN) that is its own trunk.
        paper_params_m: the paper's parameter count in millions (``None`` if none).
        paper_macs_m: the paper's MACs at 224x224 in millions (``None`` if none).
    """

    label: str
    build: Callable[[], nn.Module]
    detection: bool = False
    paper_params_m: float | None = None
    paper_macs_m: float | None = None

    def trunk(self, model: nn.Module) -> nn.Module:
        """The part run on detection-sized inputs: the model itself for detection backbones,
        otherwise everything before global pooling."""
        return model if self.detection else _Trunk(model)


def _ghostnet(width: float) -> nn.Module:
    return ghostnet(width=width)


def _ghostnetv2(width: float) -> nn.Module:
    return ghostnetv2(width=width)


def _ghostnetv3(width: float) -> nn.Module:
    # the deploy form (one conv per op): what runs at inference
    return ghostnetv3(width=width).eval().reparameterize()


def _torchvision(name: str) -> nn.Module:
    return getattr(torchvision.models, name)(weights=None)


def _ghostnet_fpn(width: float) -> nn.Module:
    return ghostnet_fpn_backbone(width=width, weights=None)


def _ghostnetv2_fpn(width: float) -> nn.Module:
    return ghostnetv2_fpn_backbone(width=width, weights=None)


def _ghostnetv3_fpn(width: float) -> nn.Module:
    return reparameterize(ghostnetv3_fpn_backbone(width=width, weights=None).eval())


def _mobilenet_fpn(name: str) -> nn.Module:
    # torchvision's fasterrcnn_mobilenet_v3_large_fpn backbone (FrozenBatchNorm2d by default).
    return mobilenet_backbone(backbone_name=name, weights=None, fpn=True, trainable_layers=6)


# ---- Rows: name -> (label, builder). ------------------------------------------------------
# The one table of row names; when the model registry exists, its entries can come from there.
_CLASSIFIER_ROWS: dict[str, tuple[str, Callable[[], nn.Module]]] = {
    "ghostnet_050": ("GhostNet 0.5x", partial(_ghostnet, 0.5)),
    "ghostnet_100": ("GhostNet 1.0x", partial(_ghostnet, 1.0)),
    "ghostnet_110": ("GhostNet 1.1x", partial(_ghostnet, 1.1)),
    "ghostnet_130": ("GhostNet 1.3x", partial(_ghostnet, 1.3)),
    "ghostnetv2_100": ("GhostNetV2 1.0x", partial(_ghostnetv2, 1.0)),
    "ghostnetv2_130": ("GhostNetV2 1.3x", partial(_ghostnetv2, 1.3)),
    "ghostnetv2_160": ("GhostNetV2 1.6x", partial(_ghostnetv2, 1.6)),
    "ghostnetv3_100": ("GhostNetV3 1.0x (deploy form)", partial(_ghostnetv3, 1.0)),
    "mobilenet_v2": ("MobileNetV2 1.0x", partial(_torchvision, "mobilenet_v2")),
    "mobilenet_v3_large": ("MobileNetV3-Large 1.0x", partial(_torchvision, "mobilenet_v3_large")),
    "mobilenet_v3_small": ("MobileNetV3-Small 1.0x", partial(_torchvision, "mobilenet_v3_small")),
}
_DETECTION_ROWS: dict[str, tuple[str, Callable[[], nn.Module]]] = {
    "ghostnet_100_fpn": ("GhostNet 1.0x FPN", partial(_ghostnet_fpn, 1.0)),
    "ghostnet_110_fpn": ("GhostNet 1.1x FPN", partial(_ghostnet_fpn, 1.1)),
    "ghostnetv2_100_fpn": ("GhostNetV2 1.0x FPN", partial(_ghostnetv2_fpn, 1.0)),
    "ghostnetv3_100_fpn": ("GhostNetV3 1.0x FPN (deploy form)", partial(_ghostnetv3_fpn, 1.0)),
    "mobilenet_v3_large_fpn": (
        "MobileNetV3-Large FPN (torchvision)",
        partial(_mobilenet_fpn, "mobilenet_v3_large"),
    ),
}
# ---- end of rows --------------------------------------------------------------------------

BACKBONES: dict[str, BackboneSpec] = {
    name: BackboneSpec(label, build, False, *IMAGENET_BACKBONES.get(name, (None, None)))
    for name, (label, build) in _CLASSIFIER_ROWS.items()
}
DETECTION_BACKBONES: dict[str, BackboneSpec] = {
    name: BackboneSpec(label, build, True) for name, (label, build) in _DETECTION_ROWS.items()
}
