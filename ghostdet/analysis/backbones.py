"""The backbones of the comparison table (``tools/compare_backbones.py``).

:data:`BACKBONES` (classifiers) and :data:`DETECTION_BACKBONES` (body + FPN) map a row name to
a :class:`BackboneSpec`: its label, a builder (random init, no downloads) and, for classifiers,
the published figures from :mod:`ghostdet.analysis.paper_figures`.

The ghostdet rows come from the model registry: every classifier and every FPN backbone that
is registered with a backbone family and binds a width (``ghostnet_100``, ``ghostnetv2_100_fpn``,
...) is a row, labelled with the family's title and the width, and built in the family's
inference form (:attr:`~ghostdet.models.family.BackboneFamily.inference_form`, GhostNetV3's
re-parameterisation). Registering a width or a family adds its rows. The torchvision baselines
(MobileNetV2/V3), which are not ghostdet models, are the small table :data:`_BASELINES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torchvision
from torch import Tensor, nn
from torchvision.models.detection.backbone_utils import mobilenet_backbone

from ghostdet.analysis.paper_figures import IMAGENET_BASELINES, IMAGENET_FAMILIES
from ghostdet.models.family import get_family
from ghostdet.models.registry import ModelEntry, list_models, model_entry

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
        family: the backbone family of a ghostdet row (``None`` for a torchvision baseline).
        width: its width multiplier (``None`` for a torchvision baseline).
    """

    label: str
    build: Callable[[], nn.Module]
    detection: bool = False
    paper_params_m: float | None = None
    paper_macs_m: float | None = None
    family: str | None = None
    width: float | None = None

    def trunk(self, model: nn.Module) -> nn.Module:
        """The part run on detection-sized inputs: the model itself for detection backbones,
        otherwise everything before global pooling."""
        return model if self.detection else _Trunk(model)


def _torchvision(name: str) -> nn.Module:
    return getattr(torchvision.models, name)(weights=None)


def _mobilenet_fpn(name: str) -> nn.Module:
    # torchvision's fasterrcnn_mobilenet_v3_large_fpn backbone (FrozenBatchNorm2d by default).
    return mobilenet_backbone(backbone_name=name, weights=None, fpn=True, trainable_layers=6)


#: The torchvision baselines: kind -> row name -> (label, builder).
_BASELINES: dict[str, dict[str, tuple[str, Callable[[], nn.Module]]]] = {
    "classifier": {
        "mobilenet_v2": ("MobileNetV2 1.0x", partial(_torchvision, "mobilenet_v2")),
        "mobilenet_v3_large": ("MobileNetV3-Large 1.0x", partial(_torchvision, "mobilenet_v3_large")),
        "mobilenet_v3_small": ("MobileNetV3-Small 1.0x", partial(_torchvision, "mobilenet_v3_small")),
    },
    "backbone": {
        "mobilenet_v3_large_fpn": (
            "MobileNetV3-Large FPN (torchvision)",
            partial(_mobilenet_fpn, "mobilenet_v3_large"),
        ),
    },
}


def _build_inference_form(entry: ModelEntry) -> nn.Module:
    """``entry`` at random init, in its family's inference form (eval mode) if it has one."""
    model = entry.build(weights=None)
    convert = get_family(entry.family).inference_form
    return model if convert is None else convert(model.eval())


def _rows(kind: str) -> dict[str, BackboneSpec]:
    """The rows of ``kind`` (``classifier`` or ``backbone``): the registered models on a family
    at a bound width, then the torchvision baselines."""
    detection = kind == "backbone"
    rows = {}
    for name in list_models(kind):
        entry = model_entry(name)
        width = entry.defaults.get("width")
        if entry.family is None or width is None:
            continue
        family = get_family(entry.family)
        label = f"{family.title} {width:.1f}x" + (" FPN" if detection else "")
        if family.inference_form is not None:
            label += " (deploy form)"
        figures = IMAGENET_FAMILIES.get((entry.family, float(width)), (None, None))
        build = partial(_build_inference_form, entry)
        rows[name] = BackboneSpec(
            label, build, detection, *((None, None) if detection else figures), entry.family, float(width)
        )
    for name, (label, build) in _BASELINES[kind].items():
        figures = IMAGENET_BASELINES.get(name, (None, None))
        rows[name] = BackboneSpec(label, build, detection, *((None, None) if detection else figures))
    return rows


BACKBONES: dict[str, BackboneSpec] = _rows("classifier")
DETECTION_BACKBONES: dict[str, BackboneSpec] = _rows("backbone")
