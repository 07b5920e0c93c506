"""GhostNetV2 (Tang et al., NeurIPS 2022, arXiv:2211.12905).

GhostNetV2 is GhostNet (:mod:`ghostdet.models.ghostnet`) with the DFC attention gate
(:mod:`ghostdet.models.dfc`) on the expansion Ghost module (``ghost1``) of every bottleneck
from the third one on (:data:`ATTENTION_FROM`); stem, block table, head and channel rounding are
V1's. Module and parameter names follow the authors' checkpoints and timm's
``ghostnetv2_100/130/160``, so their state dicts load with ``strict=True``; the extra names are
``blocks.S.B.ghost1.short_conv.{0..5}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from typing import Any

from torch import Tensor

from ghostdet.models.arguments import check_builder_args
from ghostdet.models.dfc import dfc_branch, dfc_gate
from ghostdet.models.family import BackboneFamily, PretrainedWeights, register_family
from ghostdet.models.fpn import GhostNetFPN, ghostnet_fpn_backbone
from ghostdet.models.ghostnet import GHOSTNET, GHOSTNET_CFG, GhostBottleneck, GhostModule, GhostNet
from ghostdet.models.registry import register_model
from ghostdet.models.weights import load_ghostnet_weights

__all__ = [
    "ATTENTION_FROM",
    "GHOSTNETV2",
    "GHOSTNETV2_CFG",
    "GHOSTNETV2_URLS",
    "GhostModuleV2",
    "GhostNetV2",
    "ghostnetv2",
    "ghostnetv2_fpn_backbone",
]

# The block table of V1, ``(k, t, c, se_ratio, s)`` rows; its stride column gives the stages.
GHOSTNETV2_CFG = GHOSTNET_CFG

# Index (counted over all bottlenecks, from 0) of the first bottleneck with DFC attention.
ATTENTION_FROM = 2


class GhostModuleV2(GhostModule):
    """A Ghost module whose output is gated by DFC attention computed from its input.

    Args:
        inp: input channels.
        oup: output channels.
        kernel_size: kernel of the primary convolution (and of the attention projection).
        ratio: the paper's ``s``; ``oup / ratio`` maps come from the primary conv.
        dw_size: kernel of the cheap depthwise operation.
        stride: stride of the primary convolution (and of the attention projection).
        relu: apply ReLU after the primary and cheap BatchNorms (not in the attention branch).
    """

    def __init__(
        self,
        inp: int,
        oup: int,
        kernel_size: int = 1,
        ratio: int = 2,
        dw_size: int = 3,
        stride: int = 1,
        relu: bool = True,
    ) -> None:
        super().__init__(inp, oup, kernel_size, ratio, dw_size, stride, relu)
        self.short_conv = dfc_branch(inp, oup, kernel_size, stride)

    def forward(self, x: Tensor) -> Tensor:
        return dfc_gate(super().forward(x), self.short_conv, x)


class GhostNetV2(GhostNet):
    """GhostNetV2 classifier: :class:`GhostNet` with DFC attention in ``ghost1``.

    ``blocks``, ``conv_stem``, ``bn1``, ``act1`` and ``stage_channels`` are laid out as in V1,
    so :class:`~ghostdet.models.GhostNetFeatures` takes the same stage taps.

    Args:
        cfgs: block table, one list of ``(k, t, c, se_ratio, s)`` rows per ``blocks`` entry.
        num_classes: classifier outputs.
        width: width multiplier (1.0, 1.3 and 1.6 in the paper; any positive float works).
        dropout: dropout before the classifier.
        attention_from: first bottleneck (counted over all stages, from 0) with DFC attention.
    """

    def __init__(
        self,
        cfgs: Sequence[Sequence[tuple[int, int, int, float, int]]] = GHOSTNETV2_CFG,
        num_classes: int = 1000,
        width: float = 1.0,
        dropout: float = 0.2,
        attention_from: int = ATTENTION_FROM,
    ) -> None:
        super().__init__(cfgs, num_classes=num_classes, width=width, dropout=dropout)
        bottlenecks = [b for stage in self.blocks for b in stage if isinstance(b, GhostBottleneck)]
        for block in bottlenecks[attention_from:]:
            ghost = block.ghost1
            block.ghost1 = GhostModuleV2(ghost.primary_conv[0].in_channels, ghost.oup, relu=True)


@register_model("ghostnetv2", kind="classifier", family="ghostnetv2")
@register_model("ghostnetv2_100", kind="classifier", family="ghostnetv2", width=1.0)
@register_model("ghostnetv2_130", kind="classifier", family="ghostnetv2", width=1.3)
@register_model("ghostnetv2_160", kind="classifier", family="ghostnetv2", width=1.6)
def ghostnetv2(
    width: float = 1.0,
    num_classes: int = 1000,
    weights: str | PathLike | None = None,
    progress: bool = True,
    dropout: float = 0.2,
) -> GhostNetV2:
    """Build a GhostNetV2 classifier, optionally with pretrained weights.

    Args:
        width: width multiplier. The authors publish 1.0, 1.3 and 1.6.
        num_classes: number of classifier outputs. With ``weights`` and a ``num_classes``
            other than the checkpoint's, the classifier is left freshly initialised.
        weights: ``None``, ``"imagenet"`` (the authors' checkpoint for ``width``, see
            :data:`GHOSTNETV2`'s weights), an http(s) URL or a local file (timm's
            ``ghostnetv2_*`` state dicts load too). Loading is strict: any missing, unexpected
            or shape-mismatched key is an error.
        progress: show a progress bar while downloading.
        dropout: dropout before the classifier.
    """
    check_builder_args(
        "ghostnetv2",
        width=width,
        num_classes=num_classes,
        weights=weights,
        progress=progress,
        dropout=dropout,
    )
    model = GhostNetV2(GHOSTNETV2_CFG, num_classes=num_classes, width=width, dropout=dropout)
    if weights is not None:
        load_ghostnet_weights(model, weights, width=width, progress=progress, family="ghostnetv2")
    return model


_RELEASE = "https://github.com/huawei-noah/Efficient-AI-Backbones/releases/download/GhostNetV2"
_SOURCE = "https://github.com/huawei-noah/Efficient-AI-Backbones/tree/master/ghostnetv2_pytorch"

#: GhostNetV2 as a backbone family: the authors' ImageNet checkpoints at 1.0x, 1.3x and 1.6x (top-1
#: from the GhostNetV2 paper, NeurIPS 2022, as the release's README plots them; the release states
#: no licence, so ``license`` is ``None``).
GHOSTNETV2 = register_family(
    BackboneFamily(
        name="ghostnetv2",
        title="GhostNetV2",
        cfg=GHOSTNETV2_CFG,
        build_trunk=GhostNetV2,
        weights={
            1.0: PretrainedWeights(
                f"{_RELEASE}/ck_ghostnetv2_10.pth.tar",
                top1=75.3,
                params=6_156_908,
                macs=167_048_288,
                source=_SOURCE,
            ),
            1.3: PretrainedWeights(
                f"{_RELEASE}/ck_ghostnetv2_13.pth.tar",
                top1=76.9,
                params=8_960_404,
                macs=269_322_976,
                source=_SOURCE,
            ),
            1.6: PretrainedWeights(
                f"{_RELEASE}/ck_ghostnetv2_16.pth.tar",
                top1=77.8,
                params=12_392_698,
                macs=398_607_224,
                source=_SOURCE,
            ),
        },
        # the trunk and the bottlenecks are V1's classes (the DFC gate is converted with them)
        deploy=GHOSTNET.deploy,
    )
)

#: The published checkpoints by width (a view of :data:`GHOSTNETV2`).
GHOSTNETV2_URLS: dict[float, str] = {w: p.url for w, p in GHOSTNETV2.weights.items()}


@register_model("ghostnetv2_fpn", kind="backbone", family="ghostnetv2")
@register_model("ghostnetv2_100_fpn", kind="backbone", family="ghostnetv2", width=1.0)
def ghostnetv2_fpn_backbone(**kwargs: Any) -> GhostNetFPN:
    """GhostNetV2 trunk + FPN: :func:`~ghostdet.models.ghostnet_fpn_backbone` with
    ``family="ghostnetv2"`` (same arguments; ``weights`` takes GhostNetV2 classifier checkpoints)."""
    return ghostnet_fpn_backbone(**kwargs, family="ghostnetv2")
