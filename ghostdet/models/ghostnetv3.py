"""GhostNetV3 (Liu et al., 2024, arXiv:2404.11202).

GhostNetV3 keeps GhostNet's block table, stem and head and trains every convolution of the
bottlenecks as a sum of parallel re-parameterisable branches:

* the primary 1x1 conv of each Ghost module: three Conv-BN branches;
* the cheap depthwise conv: three kxk Conv-BN branches, a 1x1 Conv-BN "scale" branch and an
  identity BatchNorm;
* the strided depthwise conv of a bottleneck: three kxk Conv-BN branches and a 1x1 Conv-BN scale
  branch.

From the third bottleneck on (:data:`ATTENTION_FROM`) ``ghost1`` is gated by DFC attention
(:mod:`ghostdet.models.dfc`), as in GhostNetV2. :meth:`GhostNetV3.reparameterize` folds every
set of branches into one biased conv (the deploy form, same eval-mode outputs).

Names follow timm's ``ghostnetv3_050/100/130/160`` in both forms: training form
``ghost1.primary_rpr_conv.I.{conv,bn1}``, ``cheap_rpr_conv.I``, ``cheap_rpr_scale``,
``cheap_rpr_skip``, ``short_conv``, ``dw_rpr_conv.I``, ``dw_rpr_scale``; deploy form
``ghost1.primary_conv.0``, ``ghost1.cheap_operation.0``, ``conv_dw``. The authors' release
names the branch BatchNorms ``bn`` instead of ``bn1``; :func:`rename_release_keys` maps them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from os import PathLike
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ghostdet.errors import ArgumentError
from ghostdet.models.arguments import check_builder_args
from ghostdet.models.dfc import dfc_branch, dfc_gate
from ghostdet.models.family import BackboneFamily, PretrainedWeights, register_family
from ghostdet.models.fpn import GhostNetFPN, ghostnet_fpn_backbone
from ghostdet.models.ghostnet import GHOSTNET, GHOSTNET_CFG, GhostNet, SqueezeExcite, ghost_cat
from ghostdet.models.registry import register_model
from ghostdet.models.weights import load_ghostnet_weights

__all__ = [
    "ATTENTION_FROM",
    "GHOSTNETV3",
    "GHOSTNETV3_CFG",
    "GHOSTNETV3_URLS",
    "NUM_BRANCHES",
    "ConvBn",
    "GhostBottleneckV3",
    "GhostModuleV3",
    "GhostNetV3",
    "fuse_branches",
    "ghostnetv3",
    "ghostnetv3_fpn_backbone",
    "rename_release_keys",
    "reparameterize",
]

# The block table of V1, ``(k, t, c, se_ratio, s)`` rows; its stride column gives the stages.
GHOSTNETV3_CFG = GHOSTNET_CFG

# Index (counted over all bottlenecks, from 0) of the first bottleneck with DFC attention.
ATTENTION_FROM = 2

# Parallel kxk Conv-BN branches per re-parameterisable op.
NUM_BRANCHES = 3


class ConvBn(nn.Module):
    """Conv2d (no bias) + BatchNorm2d: one branch of a re-parameterisable op.

    Args:
        in_chs: input channels.
        out_chs: output channels.
        kernel_size: square, odd kernel size (padding ``kernel_size // 2``).
        stride: convolution stride.
        groups: convolution groups (``in_chs`` for a depthwise branch).
    """

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_chs, out_chs, kernel_size, stride, kernel_size // 2, groups=groups, bias=False
        )
        self.bn1 = nn.BatchNorm2d(out_chs)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn1(self.conv(x))


def _sum_branches(
    x: Tensor, convs: Sequence[nn.Module], scale: nn.Module | None = None, skip: nn.Module | None = None
) -> Tensor:
    out = convs[0](x)
    for branch in [*convs[1:], scale, skip]:
        if branch is not None:
            out = out + branch(x)
    return out


def _fold(weight: Tensor, bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return weight * scale.reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * scale


@torch.no_grad()
def fuse_branches(
    convs: Sequence[ConvBn], scale: ConvBn | None = None, skip: nn.BatchNorm2d | None = None
) -> nn.Conv2d:
    """One biased conv equal, in eval mode, to the sum of the branches.

    Args:
        convs: kxk Conv-BN branches of the same geometry; the result takes theirs.
        scale: a 1x1 Conv-BN branch with the same stride and groups (zero-padded to kxk).
        skip: an identity BatchNorm branch (needs equal input and output channels, stride 1).
    """
    ref = convs[0].conv
    weight = torch.zeros_like(ref.weight)
    bias = torch.zeros(ref.out_channels, dtype=weight.dtype, device=weight.device)
    terms = [(c.conv.weight, c.bn1) for c in convs]
    center = ref.kernel_size[0] // 2
    if scale is not None:
        terms.append((F.pad(scale.conv.weight, [center] * 4), scale.bn1))
    if skip is not None:
        if ref.in_channels != ref.out_channels or ref.stride != (1, 1):
            raise ValueError("an identity branch needs equal in/out channels and stride 1")
        identity = torch.zeros_like(ref.weight)
        rows = torch.arange(ref.out_channels)
        identity[rows, rows % identity.shape[1], center, center] = 1.0
        terms.append((identity, skip))
    for w, bn in terms:
        fw, fb = _fold(w, bn)
        weight += fw
        bias += fb
    fused = nn.Conv2d(
        ref.in_channels,
        ref.out_channels,
        ref.kernel_size,
        ref.stride,
        ref.padding,
        groups=ref.groups,
        bias=True,
        device=weight.device,
        dtype=weight.dtype,
    )
    fused.weight.copy_(weight)
    fused.bias.copy_(bias)
    return fused


class GhostModuleV3(nn.Module):
    """Ghost module (ratio 2) with re-parameterisable primary and cheap operations.

    Training form: the primary 1x1 conv is :data:`NUM_BRANCHES` Conv-BN branches summed; the
    cheap depthwise conv is as many kxk Conv-BN branches plus a 1x1 Conv-BN and an identity
    BatchNorm. After :meth:`reparameterize` each is one biased conv (``primary_conv.0``,
    ``cheap_operation.0``).

    Args:
        inp: input channels.
        oup: output channels (``ceil(oup / 2)`` intrinsic maps, as many ghost maps).
        relu: apply ReLU after the primary and the cheap operation.
        attention: gate the output by DFC attention (:mod:`ghostdet.models.dfc`).
        dw_size: kernel of the cheap depthwise operation (odd).
        num_branches: parallel kxk branches per operation.
    """

    def __init__(
        self,
        inp: int,
        oup: int,
        relu: bool = True,
        attention: bool = False,
        dw_size: int = 3,
        num_branches: int = NUM_BRANCHES,
    ) -> None:
        super().__init__()
        if dw_size < 1 or dw_size % 2 == 0:
            raise ArgumentError(
                f"GhostModuleV3 dw_size must be an odd positive integer, got {dw_size!r}", argument="dw_size"
            )
        if num_branches < 1:
            raise ArgumentError(
                f"GhostModuleV3 needs at least one branch, got {num_branches}", argument="num_branches"
            )
        self.oup = oup
        init = math.ceil(oup / 2)
        self.primary_rpr_conv = nn.ModuleList(ConvBn(inp, init, 1) for _ in range(num_branches))
        self.primary_activation = nn.ReLU(inplace=True) if relu else nn.Identity()
        self.cheap_rpr_skip = nn.BatchNorm2d(init)
        self.cheap_rpr_conv = nn.ModuleList(
            ConvBn(init, init, dw_size, groups=init) for _ in range(num_branches)
        )
        self.cheap_rpr_scale = ConvBn(init, init, 1, groups=init)
        self.cheap_activation = nn.ReLU(inplace=True) if relu else nn.Identity()
        self.short_conv = dfc_branch(inp, oup) if attention else None
        self.reparameterized = False

    def forward(self, x: Tensor) -> Tensor:
        if self.reparameterized:
            x1 = self.primary_conv(x)
            x2 = self.cheap_operation(x1)
        else:
            x1 = self.primary_activation(_sum_branches(x, self.primary_rpr_conv))
            x2 = _sum_branches(x1, self.cheap_rpr_conv, self.cheap_rpr_scale, self.cheap_rpr_skip)
            x2 = self.cheap_activation(x2)
        out = ghost_cat(x1, x2, self.oup)
        if self.short_conv is not None:
            out = dfc_gate(out, self.short_conv, x)
        return out

    def reparameterize(self) -> None:
        """Fold the branches into ``primary_conv`` / ``cheap_operation`` (uses BN running stats)."""
        if self.reparameterized:
            return
        self.primary_conv = nn.Sequential(fuse_branches(self.primary_rpr_conv), self.primary_activation)
        self.cheap_operation = nn.Sequential(
            fuse_branches(self.cheap_rpr_conv, self.cheap_rpr_scale, self.cheap_rpr_skip),
            self.cheap_activation,
        )
        # The activations now live in the Sequentials; the branches are gone.
        del self.primary_rpr_conv, self.primary_activation
        del self.cheap_rpr_conv, self.cheap_rpr_scale, self.cheap_rpr_skip, self.cheap_activation
        self.reparameterized = True
        self.train(self.training)  # the new convs take this module's mode (eval stays eval)


class GhostBottleneckV3(nn.Module):
    """GhostNetV3 bottleneck: ghost1 (ReLU) -> [strided re-param depthwise] -> [SE] -> ghost2.

    Args:
        in_chs: input channels.
        mid_chs: hidden (expansion) channels.
        out_chs: output channels.
        dw_kernel_size: kernel of the strided depthwise conv and of the shortcut's depthwise conv.
        stride: 1 or 2.
        se_ratio: squeeze-excite ratio; 0 disables SE.
        attention: DFC attention on ghost1.
        num_branches: parallel kxk branches per re-parameterisable op.
    """

    def __init__(
        self,
        in_chs: int,
        mid_chs: int,
        out_chs: int,
        dw_kernel_size: int = 3,
        stride: int = 1,
        se_ratio: float = 0.0,
        attention: bool = False,
        num_branches: int = NUM_BRANCHES,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ArgumentError(f"GhostBottleneckV3 stride must be 1 or 2, got {stride}", argument="stride")
        self.stride = stride
        self.ghost1 = GhostModuleV3(
            in_chs, mid_chs, relu=True, attention=attention, num_branches=num_branches
        )
        if stride > 1:
            self.dw_rpr_conv = nn.ModuleList(
                ConvBn(mid_chs, mid_chs, dw_kernel_size, stride, groups=mid_chs) for _ in range(num_branches)
            )
            self.dw_rpr_scale = ConvBn(mid_chs, mid_chs, 1, stride, groups=mid_chs)
        self.conv_dw: nn.Conv2d | None = None
        self.se = SqueezeExcite(mid_chs, se_ratio=se_ratio) if se_ratio and se_ratio > 0 else None
        self.ghost2 = GhostModuleV3(mid_chs, out_chs, relu=False, num_branches=num_branches)
        if in_chs == out_chs and stride == 1:
            self.shortcut = nn.Sequential()
        else:
            pad = dw_kernel_size // 2
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_chs, in_chs, dw_kernel_size, stride, pad, groups=in_chs, bias=False),
                nn.BatchNorm2d(in_chs),
                nn.Conv2d(in_chs, out_chs, 1, 1, 0, bias=False),
                nn.BatchNorm2d(out_chs),
            )

    def forward(self, x: Tensor) -> Tensor:
        residual = x
        x = self.ghost1(x)
        if self.conv_dw is not None:
            x = self.conv_dw(x)
        elif self.stride > 1:
            x = _sum_branches(x, self.dw_rpr_conv, self.dw_rpr_scale)
        if self.se is not None:
            x = self.se(x)
        x = self.ghost2(x)
        return x + self.shortcut(residual)

    def reparameterize(self) -> None:
        """Fold all branches (ghost1, ghost2, strided depthwise) into single convs."""
        self.ghost1.reparameterize()
        self.ghost2.reparameterize()
        if self.stride > 1 and self.conv_dw is None:
            self.conv_dw = fuse_branches(self.dw_rpr_conv, self.dw_rpr_scale)
            del self.dw_rpr_conv, self.dw_rpr_scale
        self.train(self.training)


class GhostNetV3(GhostNet):
    """GhostNetV3 classifier: :class:`GhostNet`'s stem, table and head with V3 bottlenecks.

    ``blocks``, ``conv_stem``, ``bn1``, ``act1`` and ``stage_channels`` are laid out as in V1,
    so :class:`~ghostdet.models.GhostNetFeatures` takes the same stage taps.

    Args:
        cfgs: block table, one list of ``(k, t, c, se_ratio, s)`` rows per ``blocks`` entry.
        num_classes: classifier outputs.
        width: width multiplier (any positive float; the authors publish 1.0).
        dropout: dropout before the classifier.
        attention_from: first bottleneck (counted over all stages, from 0) with DFC attention.
        num_branches: parallel kxk branches per re-parameterisable op.
    """

    def __init__(
        self,
        cfgs: Sequence[Sequence[tuple[int, int, int, float, int]]] = GHOSTNETV3_CFG,
        num_classes: int = 1000,
        width: float = 1.0,
        dropout: float = 0.2,
        attention_from: int = ATTENTION_FROM,
        num_branches: int = NUM_BRANCHES,
    ) -> None:
        super().__init__(cfgs, num_classes=num_classes, width=width, dropout=dropout)
        layer = 0
        for stage, rows in zip(self.blocks, cfgs):
            for j, (k, _, _, se_ratio, s) in enumerate(rows):
                v1 = stage[j]
                stage[j] = GhostBottleneckV3(
                    v1.ghost1.primary_conv[0].in_channels,
                    v1.ghost1.oup,
                    v1.ghost2.oup,
                    k,
                    s,
                    se_ratio=se_ratio,
                    attention=layer >= attention_from,
                    num_branches=num_branches,
                )
                layer += 1

    def reparameterize(self) -> GhostNetV3:
        """Switch to the deploy form in place: one conv per op. Returns ``self``.

        Uses BatchNorm running statistics, so the result equals the eval-mode model.
        """
        return reparameterize(self)


def reparameterize(module: nn.Module) -> nn.Module:
    """Switch every :class:`GhostBottleneckV3` inside ``module`` (a classifier, a feature trunk, a
    detector) to the deploy form in place; returns ``module``. Uses BatchNorm running statistics.

    Args:
        module: any module; modules without V3 bottlenecks are returned unchanged.
    """
    for m in module.modules():
        if isinstance(m, GhostBottleneckV3):
            m.reparameterize()
    return module


def rename_release_keys(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Map the authors' GhostNetV3 release names to ours: branch BatchNorms ``bn`` -> ``bn1``.

    Args:
        state_dict: a GhostNetV3 state dict; keys already named ``bn1`` are left as they are.
    """
    out = {}
    for k, v in state_dict.items():
        if "_rpr_" in k:
            k = k.replace(".bn.", ".bn1.")
        out[k] = v
    return out


@register_model("ghostnetv3", kind="classifier", family="ghostnetv3")
@register_model("ghostnetv3_050", kind="classifier", family="ghostnetv3", width=0.5)
@register_model("ghostnetv3_100", kind="classifier", family="ghostnetv3", width=1.0)
@register_model("ghostnetv3_130", kind="classifier", family="ghostnetv3", width=1.3)
@register_model("ghostnetv3_160", kind="classifier", family="ghostnetv3", width=1.6)
def ghostnetv3(
    width: float = 1.0,
    num_classes: int = 1000,
    weights: str | PathLike | None = None,
    progress: bool = True,
    dropout: float = 0.2,
) -> GhostNetV3:
    """Build a GhostNetV3 classifier (training form), optionally with pretrained weights.

    Call :meth:`GhostNetV3.reparameterize` on the eval-mode model for the deploy form.

    Args:
        width: width multiplier. The authors publish 1.0 (timm also lists 0.5, 1.3, 1.6).
        num_classes: number of classifier outputs. With ``weights`` and a ``num_classes``
            other than the checkpoint's, the classifier is left freshly initialised.
        weights: ``None``, ``"imagenet"`` (the authors' checkpoint, see
            :data:`GHOSTNETV3`'s weights), an http(s) URL or a local file (timm's ``ghostnetv3_*``
            training-form state dicts load too). Loading is strict: any missing, unexpected
            or shape-mismatched key is an error.
        progress: show a progress bar while downloading.
        dropout: dropout before the classifier.
    """
    check_builder_args(
        "ghostnetv3",
        width=width,
        num_classes=num_classes,
        weights=weights,
        progress=progress,
        dropout=dropout,
    )
    model = GhostNetV3(GHOSTNETV3_CFG, num_classes=num_classes, width=width, dropout=dropout)
    if weights is not None:
        load_ghostnet_weights(model, weights, width=width, progress=progress, family="ghostnetv3")
    return model


#: GhostNetV3 as a backbone family (trained in the multi-branch form): the authors' ImageNet
#: checkpoint at 1.0x, whose branch BatchNorms are renamed on loading (:func:`rename_release_keys`).
#: Top-1 77.1% is the GhostNetV3 paper's (arXiv 2404.11202) for 1.0x; its params count the
#: training form the file holds (6,147,588 once re-parameterised), its MACs the inference form.
#: The release states no licence (``license`` is ``None``).
GHOSTNETV3 = register_family(
    BackboneFamily(
        name="ghostnetv3",
        title="GhostNetV3",
        cfg=GHOSTNETV3_CFG,
        build_trunk=GhostNetV3,
        weights={
            1.0: PretrainedWeights(
                "https://github.com/huawei-noah/Efficient-AI-Backbones/releases/download/GhostNetV3/"
                "ghostnetv3-1.0.pth.tar",
                top1=77.1,
                params=8_129_028,
                macs=167_048_288,
                source="https://github.com/huawei-noah/Efficient-AI-Backbones/tree/master/ghostnetv3_pytorch",
            ),
        },
        rename=rename_release_keys,
        inference_form=reparameterize,
        # V1's conversion (its deploy trunks re-parameterise V3 first) and the V3 bottleneck
        deploy={**GHOSTNET.deploy, GhostBottleneckV3: "ghostdet.deploy.ghost:DeployBottleneck"},
    )
)

#: The published checkpoints by width (a view of :data:`GHOSTNETV3`).
GHOSTNETV3_URLS: dict[float, str] = {w: p.url for w, p in GHOSTNETV3.weights.items()}


@register_model("ghostnetv3_fpn", kind="backbone", family="ghostnetv3")
@register_model("ghostnetv3_100_fpn", kind="backbone", family="ghostnetv3", width=1.0)
def ghostnetv3_fpn_backbone(**kwargs: Any) -> GhostNetFPN:
    """GhostNetV3 trunk (multi-branch form) + FPN: :func:`~ghostdet.models.ghostnet_fpn_backbone`
    with ``family="ghostnetv3"`` (same arguments; ``weights`` takes GhostNetV3 classifier files)."""
    return ghostnet_fpn_backbone(**kwargs, family="ghostnetv3")
