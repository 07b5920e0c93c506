"""GhostNet (Han et al., CVPR 2020, arXiv:1911.11907).

Module and parameter names follow the authors' released PyTorch checkpoint (and timm's
``ghostnet_100``), so ImageNet weights load with ``strict=True``:

``conv_stem``, ``bn1``, ``blocks.S.B.ghost1.primary_conv.0.weight``,
``blocks.S.B.ghost1.cheap_operation.1.running_var``, ``conv_dw``, ``bn_dw``,
``se.conv_reduce``, ``se.conv_expand``, ``shortcut.N``, ``blocks.9.0.conv``,
``blocks.9.0.bn1``, ``conv_head``, ``classifier``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from os import PathLike

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ghostdet.errors import ArgumentError
from ghostdet.models.arguments import check_builder_args
from ghostdet.models.family import BackboneFamily, PretrainedWeights, register_family
from ghostdet.models.fpn import GhostNetFeatures
from ghostdet.models.registry import register_model

__all__ = [
    "GHOSTNET",
    "GHOSTNET_CFG",
    "IMAGENET_URLS",
    "ConvBnAct",
    "GhostBottleneck",
    "GhostModule",
    "GhostNet",
    "SqueezeExcite",
    "ghost_cat",
    "ghostnet",
    "hard_sigmoid",
    "make_divisible",
]

# One row per GhostBottleneck: kernel k of the depthwise convs, expansion (hidden) size t,
# output channels c, SE ratio, stride s. Each inner list is one entry of ``GhostNet.blocks``
# (the grouping of the official implementation, which the checkpoint names depend on).
GHOSTNET_CFG: list[list[tuple[int, int, int, float, int]]] = [
    # stride 2
    [(3, 16, 16, 0.0, 1)],
    # stride 4
    [(3, 48, 24, 0.0, 2)],
    [(3, 72, 24, 0.0, 1)],
    # stride 8
    [(5, 72, 40, 0.25, 2)],
    [(5, 120, 40, 0.25, 1)],
    # stride 16
    [(3, 240, 80, 0.0, 2)],
    [
        (3, 200, 80, 0.0, 1),
        (3, 184, 80, 0.0, 1),
        (3, 184, 80, 0.0, 1),
        (3, 480, 112, 0.25, 1),
        (3, 672, 112, 0.25, 1),
    ],
    # stride 32
    [(5, 672, 160, 0.25, 2)],
    [
        (5, 960, 160, 0.0, 1),
        (5, 960, 160, 0.25, 1),
        (5, 960, 160, 0.0, 1),
        (5, 960, 160, 0.25, 1),
    ],
]


def make_divisible(v: float, divisor: int = 4, min_value: int | None = None) -> int:
    """Round ``v`` to the nearest multiple of ``divisor`` without going below 90% of ``v``.

    Args:
        v: the value to round (e.g. a channel count times a width multiplier).
        divisor: the multiple to round to.
        min_value: lower bound of the result (defaults to ``divisor``).
    """
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def hard_sigmoid(x: Tensor, inplace: bool = False) -> Tensor:
    """``relu6(x + 3) / 6``, the gate GhostNet's SE modules use."""
    if inplace:
        return x.add_(3.0).clamp_(0.0, 6.0).div_(6.0)
    return F.relu6(x + 3.0) / 6.0


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation with a hard-sigmoid gate.

    Args:
        in_chs: channels of the input (and output).
        se_ratio: reduction ratio; the reduced width is ``make_divisible(in_chs * se_ratio, 4)``.
        divisor: rounding divisor of the reduced width.
    """

    def __init__(self, in_chs: int, se_ratio: float = 0.25, divisor: int = 4) -> None:
        super().__init__()
        reduced_chs = make_divisible(in_chs * se_ratio, divisor)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_reduce = nn.Conv2d(in_chs, reduced_chs, 1, bias=True)
        self.act1 = nn.ReLU(inplace=True)
        self.conv_expand = nn.Conv2d(reduced_chs, in_chs, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        s = self.avg_pool(x)
        s = self.conv_expand(self.act1(self.conv_reduce(s)))
        return x * hard_sigmoid(s)


class ConvBnAct(nn.Module):
    """Conv2d (no bias) + BatchNorm2d + ReLU with 'same' padding.

    Args:
        in_chs: input channels.
        out_chs: output channels.
        kernel_size: square kernel size.
        stride: convolution stride.
    """

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, kernel_size // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.act1 = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act1(self.bn1(self.conv(x)))


def _is_channels_last(t: Tensor) -> bool:
    return t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)


def ghost_cat(x1: Tensor, x2: Tensor, oup: int) -> Tensor:
    """A ghost module's output: ``cat([x1, x2], 1)[:, :oup]``.

    In training, autograd hands ``x2`` its gradient as a channel slice of the output's gradient.
    BatchNorm's backward on CPU runs 2-9x slower on such a strided gradient than on a dense one
    (measured at 8x24x64x64 to 8x128x16x16, more so in channels_last), so a hook makes it dense
    first in channels_last training; ``x1``'s gradient is already a dense sum of its two uses.
    Nothing changes in contiguous training, inference, tracing, scripting or export.

    Args:
        x1: the primary convolution's maps.
        x2: the cheap operation's (ghost) maps.
        oup: output channels to keep.
    """
    if (
        isinstance(x2, Tensor)
        and x2.requires_grad
        and not torch.jit.is_scripting()
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
        and _is_channels_last(x2)  # contiguous training keeps its numerics (tests tuned on them)
    ):
        # in x2's own layout (a gradient can arrive in another one, e.g. zero-padded for an odd oup)
        x2.register_hook(lambda grad: grad.contiguous(memory_format=torch.channels_last))
    return torch.cat([x1, x2], dim=1)[:, :oup]


def _act(relu: bool) -> nn.Module:
    # An empty Sequential keeps the official module indices (and thus checkpoint names).
    return nn.ReLU(inplace=True) if relu else nn.Sequential()


class GhostModule(nn.Module):
    """Ghost module: a few intrinsic maps from an ordinary conv, the rest from cheap depthwise ops.

    The primary convolution produces ``m = ceil(oup / ratio)`` intrinsic maps; a depthwise
    ``dw_size x dw_size`` convolution turns each of them into ``ratio - 1`` ghost maps. Both
    are concatenated and the first ``oup`` channels are kept.

    Args:
        inp: input channels.
        oup: output channels.
        kernel_size: kernel of the primary convolution.
        ratio: the paper's ``s``; ``oup / ratio`` maps come from the primary conv. Integer >= 2.
        dw_size: the paper's ``d``, kernel of the cheap depthwise operation. Odd integer >= 1.
        stride: stride of the primary convolution.
        relu: apply ReLU after each BatchNorm.
        padding: padding of the primary conv (default ``kernel_size // 2``).
        dilation: dilation of the primary conv.
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
        padding: int | None = None,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        if isinstance(ratio, bool) or not isinstance(ratio, int) or ratio < 2:
            raise ArgumentError(f"GhostModule ratio must be an integer >= 2, got {ratio!r}", argument="ratio")
        if isinstance(dw_size, bool) or not isinstance(dw_size, int) or dw_size < 1 or dw_size % 2 == 0:
            raise ArgumentError(
                f"GhostModule dw_size must be an odd positive integer, got {dw_size!r}", argument="dw_size"
            )
        if inp < 1 or oup < 1:
            raise ArgumentError(f"GhostModule channels must be positive, got inp={inp}, oup={oup}")
        self.oup = oup
        self.ratio = ratio
        init_channels = math.ceil(oup / ratio)
        new_channels = init_channels * (ratio - 1)
        if padding is None:
            padding = (kernel_size // 2) * dilation
        self.primary_conv = nn.Sequential(
            nn.Conv2d(inp, init_channels, kernel_size, stride, padding, dilation=dilation, bias=False),
            nn.BatchNorm2d(init_channels),
            _act(relu),
        )
        self.cheap_operation = nn.Sequential(
            nn.Conv2d(
                init_channels, new_channels, dw_size, 1, dw_size // 2, groups=init_channels, bias=False
            ),
            nn.BatchNorm2d(new_channels),
            _act(relu),
        )

    def forward(self, x: Tensor) -> Tensor:
        x1 = self.primary_conv(x)
        x2 = self.cheap_operation(x1)
        return ghost_cat(x1, x2, self.oup)


class GhostBottleneck(nn.Module):
    """Ghost bottleneck (paper Fig. 3): ghost1 (ReLU) -> [strided depthwise] -> [SE] -> ghost2.

    Args:
        in_chs: input channels.
        mid_chs: hidden (expansion) channels.
        out_chs: output channels.
        dw_kernel_size: kernel of the strided depthwise conv and of the shortcut's depthwise conv.
        stride: 1 or 2.
        se_ratio: squeeze-excite ratio; 0 disables SE.
    """

    def __init__(
        self,
        in_chs: int,
        mid_chs: int,
        out_chs: int,
        dw_kernel_size: int = 3,
        stride: int = 1,
        se_ratio: float = 0.0,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ArgumentError(f"GhostBottleneck stride must be 1 or 2, got {stride}", argument="stride")
        self.stride = stride
        pad = (dw_kernel_size - 1) // 2
        self.ghost1 = GhostModule(in_chs, mid_chs, relu=True)
        if stride > 1:
            self.conv_dw = nn.Conv2d(
                mid_chs, mid_chs, dw_kernel_size, stride, pad, groups=mid_chs, bias=False
            )
            self.bn_dw = nn.BatchNorm2d(mid_chs)
        self.se = SqueezeExcite(mid_chs, se_ratio=se_ratio) if se_ratio and se_ratio > 0 else None
        self.ghost2 = GhostModule(mid_chs, out_chs, relu=False)
        if in_chs == out_chs and stride == 1:
            self.shortcut = nn.Sequential()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_chs, in_chs, dw_kernel_size, stride, pad, groups=in_chs, bias=False),
                nn.BatchNorm2d(in_chs),
                nn.Conv2d(in_chs, out_chs, 1, 1, 0, bias=False),
                nn.BatchNorm2d(out_chs),
            )

    def forward(self, x: Tensor) -> Tensor:
        residual = x
        x = self.ghost1(x)
        if self.stride > 1:
            x = self.bn_dw(self.conv_dw(x))
        if self.se is not None:
            x = self.se(x)
        x = self.ghost2(x)
        return x + self.shortcut(residual)


class GhostNet(nn.Module):
    """GhostNet classifier.

    Args:
        cfgs: block table, one list of ``(k, t, c, se_ratio, s)`` rows per ``blocks`` entry.
        num_classes: classifier outputs.
        width: width multiplier (0.5, 1.0, 1.1, 1.3 in the paper; any positive float works).
        dropout: dropout before the classifier.
    """

    def __init__(
        self,
        cfgs: Sequence[Sequence[tuple[int, int, int, float, int]]] = GHOSTNET_CFG,
        num_classes: int = 1000,
        width: float = 1.0,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if not width > 0:
            raise ArgumentError(f"width must be a positive number, got {width!r}", argument="width")
        if num_classes < 1:
            raise ArgumentError(f"num_classes must be >= 1, got {num_classes}", argument="num_classes")
        self.width = width
        self.dropout = dropout
        out_chs = make_divisible(16 * width, 4)
        self.conv_stem = nn.Conv2d(3, out_chs, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.act1 = nn.ReLU(inplace=True)
        in_chs = out_chs
        stages: list[nn.Module] = []
        self.stage_channels: list[int] = []
        exp_size = 16
        for cfg in cfgs:
            layers = []
            for k, exp_size, c, se_ratio, s in cfg:
                out_chs = make_divisible(c * width, 4)
                mid_chs = make_divisible(exp_size * width, 4)
                layers.append(GhostBottleneck(in_chs, mid_chs, out_chs, k, s, se_ratio=se_ratio))
                in_chs = out_chs
            stages.append(nn.Sequential(*layers))
            self.stage_channels.append(in_chs)
        out_chs = make_divisible(exp_size * width, 4)
        stages.append(nn.Sequential(ConvBnAct(in_chs, out_chs, 1)))
        self.blocks = nn.Sequential(*stages)
        self.num_features = out_chs
        self.global_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.conv_head = nn.Conv2d(out_chs, 1280, 1, 1, 0, bias=True)
        self.act2 = nn.ReLU(inplace=True)
        self.classifier = nn.Linear(1280, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.act1(self.bn1(self.conv_stem(x)))
        return self.blocks(x)

    def forward(self, x: Tensor) -> Tensor:
        x = self.forward_features(x)
        x = self.act2(self.conv_head(self.global_pool(x)))
        x = torch.flatten(x, 1)
        if self.dropout > 0.0:
            x = F.dropout(x, p=self.dropout, training=self.training)
        return self.classifier(x)


@register_model("ghostnet", kind="classifier", family="ghostnet")
@register_model("ghostnet_050", kind="classifier", family="ghostnet", width=0.5)
@register_model("ghostnet_100", kind="classifier", family="ghostnet", width=1.0)
@register_model("ghostnet_110", kind="classifier", family="ghostnet", width=1.1)
@register_model("ghostnet_130", kind="classifier", family="ghostnet", width=1.3)
def ghostnet(
    width: float = 1.0,
    num_classes: int = 1000,
    weights: str | PathLike | None = None,
    progress: bool = True,
    dropout: float = 0.2,
) -> GhostNet:
    """Build a GhostNet classifier, optionally with pretrained weights.

    Args:
        width: width multiplier. The paper uses 0.5, 1.0 and 1.3 (1.1 for detection).
        num_classes: number of classifier outputs. With ``weights`` and a ``num_classes``
            other than the checkpoint's, the classifier is left freshly initialised.
        weights: ``None``, ``"imagenet"`` (the authors' 1.0x checkpoint), an http(s) URL or a
            local ``.pth``/``.pt``/``.bin``/``.safetensors`` file. Loading is strict: any
            missing, unexpected or shape-mismatched key is an error.
        progress: show a progress bar while downloading.
        dropout: dropout before the classifier.
    """
    from ghostdet.models.weights import load_ghostnet_weights

    check_builder_args(
        "ghostnet", width=width, num_classes=num_classes, weights=weights, progress=progress, dropout=dropout
    )
    model = GhostNet(GHOSTNET_CFG, num_classes=num_classes, width=width, dropout=dropout)
    if weights is not None:
        load_ghostnet_weights(model, weights, width=width, progress=progress)
    return model


_DEPLOY = "ghostdet.deploy.ghost"

#: GhostNet V1 as a backbone family: the authors' published checkpoint at 1.0x (top-1 73.98%, the
#: figure their README gives for this file; the paper's 0.5x and 1.3x have no published weights).
#: Its deploy conversion covers the classifier, the FPN body of every family's trunk
#: (``GhostNetFeatures``) and the bottlenecks.
GHOSTNET = register_family(
    BackboneFamily(
        name="ghostnet",
        title="GhostNet",
        cfg=GHOSTNET_CFG,
        build_trunk=GhostNet,
        weights={
            1.0: PretrainedWeights(
                "https://github.com/huawei-noah/CV-backbones/releases/download/ghostnet_pth/ghostnet_1x.pth",
                top1=73.98,
                params=5_182_508,
                macs=141_150_512,
                source="https://github.com/huawei-noah/Efficient-AI-Backbones/tree/master/ghostnet_pytorch",
                license="Apache-2.0",
            ),
        },
        deploy={
            GhostNet: f"{_DEPLOY}:DeployGhostNet",
            GhostNetFeatures: f"{_DEPLOY}:DeployGhostNetFeatures",
            GhostBottleneck: f"{_DEPLOY}:DeployBottleneck",
        },
    )
)

# Derived views of GHOSTNET: the ``blocks`` entries of each output-stride stage (stage 1 also owns
# the stem; ``blocks.9``, the 1x1 ConvBnAct, only feeds the classifier), their strides, and the
# published checkpoints by width.
STAGE_BLOCKS: dict[int, tuple[int, ...]] = GHOSTNET.stage_blocks
STAGE_STRIDES: dict[int, int] = GHOSTNET.stage_strides
IMAGENET_URLS: dict[float, str] = {w: p.url for w, p in GHOSTNET.weights.items()}
