"""The FPN backbone of any backbone family: the trunk's stage-end maps and torchvision's FPN.

:class:`GhostNetFeatures` runs a family's trunk without its classification head and returns the
output of the last block of each requested stage; :class:`GhostNetFPN` puts torchvision's
``FeaturePyramidNetwork`` on it (``body``/``fpn`` like torchvision's backbones);
:func:`ghostnet_fpn_backbone` builds one with optional ImageNet weights, frozen BatchNorm and
torchvision's trainable-layer count. The detectors of :mod:`ghostdet.models.detection` take it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from os import PathLike

from torch import Tensor, nn
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, FeaturePyramidNetwork, LastLevelMaxPool

from ghostdet.errors import ArgumentError
from ghostdet.models.arguments import check_builder_args
from ghostdet.models.family import BackboneFamily, get_family
from ghostdet.models.registry import register_model
from ghostdet.models.weights import load_ghostnet_weights

__all__ = ["DEFAULT_RETURNED_LAYERS", "GhostNetFPN", "GhostNetFeatures", "ghostnet_fpn_backbone"]


#: The stages the detectors' FPNs take by default (strides 8/16/32 on GhostNet).
DEFAULT_RETURNED_LAYERS = (3, 4, 5)


class GhostNetFeatures(nn.Module):
    """A family's trunk without its classification head, returning stage-end feature maps.

    Each tap is the output of the LAST block of a stage (one stage per output stride), not the
    first block at a new stride. Blocks after the family's cfg (GhostNet's ``blocks.9``, the 1x1
    conv to 960 channels), ``conv_head`` and ``classifier`` only feed classification and are not
    kept. Parameter names are the checkpoint's (``conv_stem``, ``bn1``, ``blocks.S.B...``).

    Args:
        net: a trunk of ``family`` whose stem and blocks are taken over (not copied).
        returned_layers: stages to return (GhostNet: 1-5 for strides 2, 4, 8, 16, 32).
        family: the backbone family of ``net`` (name or :class:`BackboneFamily`).
    """

    def __init__(
        self,
        net: nn.Module,
        returned_layers: Sequence[int] = DEFAULT_RETURNED_LAYERS,
        family: str | BackboneFamily = "ghostnet",
    ) -> None:
        super().__init__()
        fam = get_family(family) if isinstance(family, str) else family
        stage_blocks = fam.stage_blocks
        returned_layers = sorted(set(returned_layers))
        self.conv_stem = net.conv_stem
        self.bn1 = net.bn1
        self.act1 = net.act1
        last_stage = returned_layers[-1]
        last_block = stage_blocks[last_stage][-1]
        self.blocks = net.blocks[: last_block + 1]
        self.returned_layers = returned_layers
        self.stage_blocks = stage_blocks
        self._taps = {stage_blocks[s][-1]: str(i) for i, s in enumerate(returned_layers)}
        self.out_channels_list = [net.stage_channels[stage_blocks[s][-1]] for s in returned_layers]
        self.strides = [fam.stage_strides[s] for s in returned_layers]

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        x = self.act1(self.bn1(self.conv_stem(x)))
        out: OrderedDict[str, Tensor] = OrderedDict()
        for i, block in enumerate(self.blocks):
            x = block(x)
            name = self._taps.get(i)
            if name is not None:
                out[name] = x
        return out


class GhostNetFPN(nn.Module):
    """GhostNet trunk + torchvision FeaturePyramidNetwork (``body``/``fpn`` like torchvision).

    Args:
        body: the feature extractor.
        out_channels: FPN channels.
        extra_blocks: extra FPN levels (default: a max-pooled level, as Faster R-CNN expects).
    """

    def __init__(
        self, body: GhostNetFeatures, out_channels: int = 256, extra_blocks: ExtraFPNBlock | None = None
    ) -> None:
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(
            body.out_channels_list, out_channels, extra_blocks=extra_blocks or LastLevelMaxPool()
        )
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        return self.fpn(self.body(x))


def _to_frozen_bn(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d in ``module`` by a FrozenBatchNorm2d with the same statistics."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            frozen.weight.copy_(child.weight.detach())
            frozen.bias.copy_(child.bias.detach())
            frozen.running_mean.copy_(child.running_mean)
            frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            _to_frozen_bn(child)
    return module


@register_model("ghostnet_fpn", kind="backbone", family="ghostnet")
@register_model("ghostnet_100_fpn", kind="backbone", family="ghostnet", width=1.0)
@register_model("ghostnet_110_fpn", kind="backbone", family="ghostnet", width=1.1)
def ghostnet_fpn_backbone(
    width: float = 1.0,
    weights: str | PathLike | None = None,
    trainable_layers: int | None = None,
    returned_layers: Sequence[int] | None = None,
    extra_blocks: ExtraFPNBlock | None = None,
    norm_layer: Callable[..., nn.Module] | None = None,
    progress: bool = True,
    out_channels: int = 256,
    family: str = "ghostnet",
) -> GhostNetFPN:
    """A backbone family's trunk (GhostNet by default) + FPN, for torchvision detectors.

    Args:
        width: width multiplier of the trunk.
        weights: ImageNet weights for the trunk: ``"imagenet"``, a URL or a local file. The
            classifier head is not loaded (and not built into the backbone).
        trainable_layers: number of stages (GhostNet: 1-5, counted from the top, stage 1 includes
            the stem) left trainable. Defaults to 3 with ``weights`` and all without.
        returned_layers: stages feeding the FPN (GhostNet: 1-5 for strides 2, 4, 8, 16, 32).
            Default: the last three, for GhostNet ``[3, 4, 5]``: strides 8/16/32 (40/112/160
            channels at width 1.0).
        extra_blocks: extra FPN levels; default ``LastLevelMaxPool``.
        norm_layer: normalisation of the trunk: ``nn.BatchNorm2d`` or ``FrozenBatchNorm2d``.
            Defaults to FrozenBatchNorm2d with ``weights`` and BatchNorm2d without.
        progress: show a download progress bar.
        out_channels: FPN output channels.
        family: backbone family of the trunk (see :mod:`ghostdet.models.family`).
    """
    fam = get_family(family)
    num_stages = fam.num_stages
    check_builder_args(
        "ghostnet_fpn_backbone", num_stages, width=width, weights=weights, trainable_layers=trainable_layers,
        progress=progress, out_channels=out_channels,
    )  # fmt: skip
    if returned_layers is None:
        returned_layers = range(max(1, num_stages - 2), num_stages + 1)
    returned_layers = list(returned_layers)
    if not returned_layers or any(s not in fam.stage_blocks for s in returned_layers):
        raise ArgumentError(
            f"returned_layers must be a non-empty subset of 1..{num_stages}, got {returned_layers}",
            argument="returned_layers",
        )
    if trainable_layers is None:
        trainable_layers = 3 if weights is not None else num_stages
    if not 0 <= trainable_layers <= num_stages:
        raise ArgumentError(
            f"trainable_layers must be in [0, {num_stages}], got {trainable_layers}",
            argument="trainable_layers",
        )
    if norm_layer is None:
        norm_layer = FrozenBatchNorm2d if weights is not None else nn.BatchNorm2d
    if norm_layer not in (nn.BatchNorm2d, FrozenBatchNorm2d):
        raise ArgumentError(
            f"norm_layer must be nn.BatchNorm2d or FrozenBatchNorm2d, got {norm_layer}", argument="norm_layer"
        )

    net = fam.build_trunk(width=width)
    if weights is not None:
        load_ghostnet_weights(
            net, weights, width=width, progress=progress, skip_classifier=True, family=fam.name
        )
    body = GhostNetFeatures(net, returned_layers, fam)
    if norm_layer is FrozenBatchNorm2d:
        _to_frozen_bn(body)

    trainable_stages = set(range(num_stages, num_stages - trainable_layers, -1))
    for stage, block_ids in fam.stage_blocks.items():
        train = stage in trainable_stages
        mods: list[nn.Module] = [body.blocks[i] for i in block_ids if i < len(body.blocks)]
        if stage == 1:
            mods += [body.conv_stem, body.bn1]
        for m in mods:
            m.requires_grad_(train)
    return GhostNetFPN(body, out_channels=out_channels, extra_blocks=extra_blocks)
