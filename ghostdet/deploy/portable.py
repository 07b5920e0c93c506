"""The portable form of a GhostNet: a plain-conv graph that onnxruntime runs fast.

onnxruntime's CPU provider runs convolutions in a blocked channel layout (NCHWc, 8 channels per
block with AVX2, 16 with AVX-512) and converts tensors in and out of it around any node it
cannot run blocked, such as a channel ``Slice``, a ``ReduceMean`` or a ``Concat`` of channel
counts that are not multiples of the block. A GhostNet exported as written is full of these:
every Ghost module concatenates its two halves (often 12, 20, 36 or 60 channels) and slices the
result, and the SE gate averages with ``ReduceMean``. Profiled on a 2-core AVX2 machine, the
reorders, concats and slices took a quarter to a third of its onnxruntime time.

:func:`portable_model` rebuilds an eval-mode GhostNet (V1 or V2) as a graph with none of them. A
feature map travels as a list of *parts*, each padded with zero channels to a multiple of
``align``, and is never concatenated: a Ghost module's output is its primary part and its cheap
part; a convolution reading several parts is one convolution per part, summed (onnxruntime fuses
the sum into the convolution); depthwise convolutions, SE gates and residual additions work part
by part; the SE average is a global average pool and its gate a ``HardSigmoid``. BatchNorms are
folded. The padding channels are exactly zero all the way (zero weights, zero bias, and ReLU or
a residual of zeros keeps them zero), so the outputs equal the model's up to float rounding.

Where both halves of a Ghost module fit in the padded width of its primary half alone (8 + 8
channels with ``align`` 16), its output is one part instead: the primary conv writes its
channels twice, and the depthwise conv passes the first copy through (a centre tap of 1) and
makes the cheap half from the second. That costs no extra channel and halves the nodes that read
the map. On an AVX-512 VM it joined GhostNet 1.0x's stem and first block into one part each, and
took the trunk to 0.84-0.95x its onnxruntime time at 640x640 and 0.94-0.97x at 224x224.

The best ``align`` is onnxruntime's NCHWc block on the machine that runs the model:
:func:`nchwc_block` gives it for this machine, and it is the default. On a 2-core AVX-512 VM
(README, *Benchmark*), padding to 16 instead of 8 took GhostNet 1.0x from 1.02-1.16x
MobileNetV3's onnxruntime time to 0.94-0.99x (1 thread, A/B runs in one process).

V2's DFC gate runs part by part too (pool, projection, depthwise pair, sigmoid, upsampling,
product). Only the ratio-2 Ghost modules of GhostNet V1/V2 (all of their published widths) are
supported; anything else (GhostNetV3's modules, other ratios) is refused with a ``ValueError``,
and :func:`ghostdet.deploy.onnx.export_onnx` exports it fused instead.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from copy import deepcopy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ghostdet.deploy.backend import fold_bn
from ghostdet.deploy.native import _cpu_flags
from ghostdet.errors import ArgumentError
from ghostdet.models.fpn import GhostNetFeatures
from ghostdet.models.ghostnet import ConvBnAct, GhostBottleneck, GhostModule, GhostNet
from ghostdet.models.ghostnetv2 import GhostModuleV2, GhostNetV2

__all__ = ["PortableFeatures", "PortableGhostNet", "nchwc_block", "portable_ghostnet", "portable_model"]

Parts = list[Tensor]

#: the classifiers :class:`PortableGhostNet` takes (their subclasses add modules it does not know)
PORTABLE_CLASSIFIERS = (GhostNet, GhostNetV2)


@dataclass(frozen=True)
class Part:
    """One part of a feature map: ``real`` channels followed by zero channels up to ``padded``."""

    real: int
    padded: int


Layout = tuple[Part, ...]


def nchwc_block() -> int:
    """onnxruntime's NCHWc channel block on this machine's CPU: 16 floats with AVX-512F, else 8
    (its AVX2 block; on other CPUs 8 too, not measured there). Read from ``/proc/cpuinfo``."""
    return 16 if "avx512f" in _cpu_flags() else 8


def _resolve_align(align: int | None) -> int:
    if align is None:
        return nchwc_block()
    if isinstance(align, bool) or not isinstance(align, int) or align < 1:
        raise ArgumentError(
            f"align must be an int >= 1 or None (this machine's NCHWc block), got {align!r}", argument="align"
        )
    return align


def _pad(channels: int, align: int) -> int:
    return -(-channels // align) * align


def ghost_layout(channels: int, align: int) -> Layout:
    """The layout of a ratio-2 Ghost module's output: primary half, then cheap half, as two
    parts; or as one part when both halves fit in the padded width of the primary half alone
    (e.g. 8 + 8 channels with ``align`` 16), where joining them costs no extra channel."""
    init = math.ceil(channels / 2)
    padded = _pad(init, align)
    if _pad(channels, align) <= padded:
        return (Part(channels, padded),)
    return (Part(init, padded), Part(channels - init, padded))


def _offsets(layout: Layout) -> list[int]:
    starts, total = [], 0
    for part in layout:
        starts.append(total)
        total += part.real
    return starts


class _Dense(nn.Module):
    """A dense convolution from one layout to another: one conv per (output, input) part pair,
    the input parts' results summed, then an optional ReLU."""

    def __init__(
        self,
        weight: Tensor,
        bias: Tensor,
        layout_in: Layout,
        layout_out: Layout,
        stride: int = 1,
        padding: int = 0,
        relu: bool = False,
    ) -> None:
        super().__init__()
        shape = (sum(p.real for p in layout_out), sum(p.real for p in layout_in))
        if tuple(weight.shape[:2]) != shape:
            raise ValueError(f"weight {tuple(weight.shape)} does not fit {layout_in} -> {layout_out}")
        self.relu = relu
        self.layout = layout_out
        k = weight.shape[-1]
        self.convs = nn.ModuleList()
        for po, so in zip(layout_out, _offsets(layout_out)):
            row = nn.ModuleList()
            for pi, si in zip(layout_in, _offsets(layout_in)):
                conv = nn.Conv2d(pi.padded, po.padded, k, stride, padding, bias=not row)
                w = weight.new_zeros(po.padded, pi.padded, k, k)
                w[: po.real, : pi.real] = weight[so : so + po.real, si : si + pi.real]
                conv.weight.data.copy_(w)
                if conv.bias is not None:
                    b = bias.new_zeros(po.padded)
                    b[: po.real] = bias[so : so + po.real]
                    conv.bias.data.copy_(b)
                row.append(conv)
            self.convs.append(row)

    def forward(self, parts: Parts) -> Parts:
        out = []
        for row in self.convs:
            y = row[0](parts[0])
            for conv, x in zip(row[1:], parts[1:]):
                y = y + conv(x)
            out.append(F.relu(y) if self.relu else y)
        return out


class _Depthwise(nn.Module):
    """A depthwise convolution applied part by part (the layout's padded sizes are kept)."""

    def __init__(
        self, weight: Tensor, bias: Tensor, layout: Layout, stride: int = 1, relu: bool = False
    ) -> None:
        super().__init__()
        self.relu = relu
        kh, kw = weight.shape[-2:]
        self.convs = nn.ModuleList()
        for part, start in zip(layout, _offsets(layout)):
            conv = nn.Conv2d(
                part.padded, part.padded, (kh, kw), stride, (kh // 2, kw // 2), groups=part.padded
            )
            w = weight.new_zeros(part.padded, 1, kh, kw)
            b = bias.new_zeros(part.padded)
            w[: part.real] = weight[start : start + part.real]
            b[: part.real] = bias[start : start + part.real]
            conv.weight.data.copy_(w)
            conv.bias.data.copy_(b)
            self.convs.append(conv)

    def forward(self, parts: Parts) -> Parts:
        out = [conv(x) for conv, x in zip(self.convs, parts)]
        return [F.relu(y) for y in out] if self.relu else out


class _DFCGate(nn.Module):
    """GhostNetV2's DFC gate (:mod:`ghostdet.models.dfc`) part by part: average pool, the
    projection into the output's layout, the 1x5 and 5x1 depthwise convs, sigmoid, nearest
    upsampling, product. A padding channel's gate is 0.5 on a zero channel, so it stays zero."""

    def __init__(self, branch: nn.Sequential, layout_in: Layout, layout_out: Layout) -> None:
        super().__init__()
        w, b = fold_bn(branch[0], branch[1])
        self.proj = _Dense(w, b, layout_in, layout_out, branch[0].stride[0], branch[0].padding[0])
        w, b = fold_bn(branch[2], branch[3])
        self.horizontal = _Depthwise(w, b, layout_out)
        w, b = fold_bn(branch[4], branch[5])
        self.vertical = _Depthwise(w, b, layout_out)

    def forward(self, out: Parts, x: Parts) -> Parts:
        gate = self.vertical(self.horizontal(self.proj([F.avg_pool2d(p, 2, 2) for p in x])))
        size = out[0].shape[-2:]
        return [o * F.interpolate(g.sigmoid(), size=size, mode="nearest") for o, g in zip(out, gate)]


class _Ghost(nn.Module):
    """A ratio-2 Ghost module: the primary conv writes the first part, the cheap depthwise conv
    (run on that part) the second; nothing is concatenated or sliced. GhostNetV2's gated module
    multiplies both parts by its DFC gate."""

    def __init__(self, module: GhostModule, layout_in: Layout, align: int) -> None:
        super().__init__()
        if type(module) not in (GhostModule, GhostModuleV2):
            raise ValueError(f"the portable form supports V1/V2 Ghost modules, not {type(module).__name__}")
        if module.ratio != 2:
            raise ValueError(f"the portable form supports Ghost modules of ratio 2, not {module.ratio}")
        self.layout = ghost_layout(module.oup, align)
        primary, cheap = module.primary_conv[0], module.cheap_operation[0]
        relu = isinstance(module.primary_conv[2], nn.ReLU)
        if primary.stride != (1, 1) or primary.dilation != (1, 1):
            raise ValueError("the portable form supports stride-1, undilated primary convs only")
        w, b = fold_bn(primary, module.primary_conv[1])
        wc, bc = fold_bn(cheap, module.cheap_operation[1])
        init = w.shape[0]
        n = module.oup - init  # the cheap channels the slice keeps
        # channel c of the cheap half is computed from channel c of the primary half
        self.joined = len(self.layout) == 1
        if self.joined:
            # one tensor: the primary conv writes its channels twice, and the depthwise conv passes
            # the first copy through (a centre tap of 1) and makes the cheap half from the second
            self.primary = _Dense(torch.cat([w, w[:n]]), torch.cat([b, b[:n]]), layout_in, self.layout,
                                  1, primary.padding[0], relu)  # fmt: skip
            ident = torch.zeros(init, 1, *wc.shape[-2:])
            ident[:, :, wc.shape[-2] // 2, wc.shape[-1] // 2] = 1
            self.cheap = _Depthwise(torch.cat([ident, wc[:n]]), torch.cat([b.new_zeros(init), bc[:n]]),
                                    self.layout, relu=relu)  # fmt: skip
        else:
            self.primary = _Dense(w, b, layout_in, self.layout[:1], 1, primary.padding[0], relu)
            self.cheap = _Depthwise(wc[:n], bc[:n], (Part(n, self.layout[0].padded),), relu=relu)
        self.gate = (
            _DFCGate(module.short_conv, layout_in, self.layout) if type(module) is GhostModuleV2 else None
        )

    def forward(self, parts: Parts) -> Parts:
        p = self.primary(parts)
        out = self.cheap(p) if self.joined else [p[0], self.cheap(p)[0]]
        return out if self.gate is None else self.gate(out, parts)


class _Bottleneck(nn.Module):
    def __init__(self, block: GhostBottleneck, layout_in: Layout, align: int) -> None:
        super().__init__()
        self.ghost1 = _Ghost(block.ghost1, layout_in, align)
        mid = self.ghost1.layout
        self.conv_dw = None
        if block.stride > 1:
            w, b = fold_bn(block.conv_dw, block.bn_dw)
            self.conv_dw = _Depthwise(w, b, mid, block.stride)
        self.se_reduce = self.se_expand = None
        if block.se is not None:
            se = block.se
            reduced = (Part(se.conv_reduce.out_channels, _pad(se.conv_reduce.out_channels, align)),)
            w, b = fold_bn(se.conv_reduce, None)
            self.se_reduce = _Dense(w, b, mid, reduced, relu=True)
            w, b = fold_bn(se.conv_expand, None)
            self.se_expand = _Dense(w, b, reduced, mid)
        self.ghost2 = _Ghost(block.ghost2, mid, align)
        self.layout = self.ghost2.layout
        self.identity = len(block.shortcut) == 0
        if self.identity:
            if layout_in != self.layout:
                raise ValueError(f"identity shortcut between layouts {layout_in} and {self.layout}")
        else:
            w, b = fold_bn(block.shortcut[0], block.shortcut[1])
            self.short_dw = _Depthwise(w, b, layout_in, block.stride)
            w, b = fold_bn(block.shortcut[2], block.shortcut[3])
            self.short_pw = _Dense(w, b, layout_in, self.layout)

    def forward(self, parts: Parts) -> Parts:
        h = self.ghost1(parts)
        if self.conv_dw is not None:
            h = self.conv_dw(h)
        if self.se_reduce is not None:
            gate = self.se_expand(self.se_reduce([F.adaptive_avg_pool2d(x, 1) for x in h]))
            h = [x * F.hardsigmoid(g) for x, g in zip(h, gate)]
        out = self.ghost2(h)
        short = parts if self.identity else self.short_pw(self.short_dw(parts))
        return [o + s for o, s in zip(out, short)]


class _Trunk(nn.Module):
    """Stem and blocks of a V1/V2 trunk in the portable form; ``forward`` returns the parts after
    each stage (one list per ``stages`` entry) and the layout after each is in ``layouts``."""

    def __init__(self, conv_stem: nn.Conv2d, bn1: nn.Module, stages: Sequence[nn.Module], align: int) -> None:
        super().__init__()
        first = stages[0][0]
        c = conv_stem.out_channels
        layout = ghost_layout(c, align)
        if type(first) is not GhostBottleneck or len(first.shortcut) != 0:  # the stem feeds a projection
            layout = (Part(c, _pad(c, align)),)
        w, b = fold_bn(conv_stem, bn1)
        self.stem = _Dense(w, b, (Part(conv_stem.in_channels, conv_stem.in_channels),), layout,
                           conv_stem.stride[0], conv_stem.padding[0], relu=True)  # fmt: skip
        self.stages = nn.ModuleList()
        self.layouts: list[Layout] = []
        for stage in stages:
            blocks = nn.ModuleList()
            for block in stage:
                if type(block) is GhostBottleneck:
                    blocks.append(_Bottleneck(block, layout, align))
                elif type(block) is ConvBnAct:
                    w, b = fold_bn(block.conv, block.bn1)
                    c = block.conv.out_channels
                    blocks.append(_Dense(w, b, layout, (Part(c, c),), 1, block.conv.padding[0], relu=True))
                else:
                    raise ValueError(f"the portable form does not know {type(block).__name__}")
                layout = blocks[-1].layout
            self.stages.append(blocks)
            self.layouts.append(layout)

    def forward(self, x: Tensor) -> list[Parts]:
        parts = self.stem([x])
        outs = []
        for stage in self.stages:
            for block in stage:
                parts = block(parts)
            outs.append(parts)
        return outs


def _check_eval(model: nn.Module) -> None:
    if any(m.training for m in model.modules()):
        raise ValueError("the portable form needs an eval-mode model: call model.eval() first")


class PortableGhostNet(nn.Module):
    """A GhostNet V1 or V2 classifier as a concat-free plain-conv graph (see the module docstring).

    ``forward`` and ``forward_features`` compute what the source model's do.

    Args:
        model: an eval-mode :class:`~ghostdet.models.GhostNet` or ``GhostNetV2`` (any width).
        align: channels per part are padded to a multiple of this: onnxruntime's NCHWc block, 8
            floats with AVX2 and 16 with AVX-512. ``None`` (the default): the block of this
            machine (:func:`nchwc_block`); pass the target's when exporting for another CPU. The
            model is correct with any value; only its speed depends on it. Kept as ``align``.
    """

    def __init__(self, model: GhostNet, align: int | None = None) -> None:
        super().__init__()
        if type(model) not in PORTABLE_CLASSIFIERS:
            raise ValueError(
                f"the portable form supports GhostNet V1/V2 classifiers, not {type(model).__name__}"
            )
        _check_eval(model)
        self.align = _resolve_align(align)
        self.trunk = _Trunk(model.conv_stem, model.bn1, list(model.blocks), self.align)
        self.global_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.conv_head = deepcopy(model.conv_head)
        self.classifier = deepcopy(model.classifier)
        self.eval()
        self.requires_grad_(False)

    def forward_features(self, x: Tensor) -> Tensor:
        return _join(self.trunk(x)[-1], self.trunk.layouts[-1])

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.conv_head(self.global_pool(self.forward_features(x))))
        return self.classifier(torch.flatten(x, 1))


class PortableFeatures(nn.Module):
    """A V1/V2 :class:`~ghostdet.models.GhostNetFeatures` (the detectors' trunk) in the portable
    form: the same stage-end maps, each joined into one tensor only where it is returned.

    Args:
        features: the eval-mode trunk (BatchNorm2d or FrozenBatchNorm2d).
        align: see :class:`PortableGhostNet`.
    """

    def __init__(self, features: GhostNetFeatures, align: int | None = None) -> None:
        super().__init__()
        if type(features) is not GhostNetFeatures:
            raise ValueError(f"the portable form supports GhostNetFeatures, not {type(features).__name__}")
        _check_eval(features)
        self.align = _resolve_align(align)
        self.trunk = _Trunk(features.conv_stem, features.bn1, list(features.blocks), self.align)
        self.taps = dict(features._taps)
        self.eval()
        self.requires_grad_(False)

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        stages = self.trunk(x)
        out: OrderedDict[str, Tensor] = OrderedDict()
        for i, name in sorted(self.taps.items()):
            out[name] = _join(stages[i], self.trunk.layouts[i])
        return out


def _join(parts: Sequence[Tensor], layout: Layout) -> Tensor:
    """The real channels of ``parts`` as one tensor (no copy for a single unpadded part)."""
    if len(parts) == 1 and layout[0].real == layout[0].padded:
        return parts[0]
    return torch.cat([x[:, : p.real] for x, p in zip(parts, layout)], dim=1)


def portable_model(model: nn.Module, align: int | None = None) -> nn.Module:
    """A copy of ``model`` whose GhostNet V1/V2 parts are in the portable form.

    ``model`` is a GhostNet V1/V2 classifier (returned as :class:`PortableGhostNet`) or contains
    V1/V2 :class:`~ghostdet.models.GhostNetFeatures` trunks, as the GhostNet-FPN backbones and
    detectors do (each replaced by a :class:`PortableFeatures`; everything else is a deep copy).
    ``align``: see :class:`PortableGhostNet`.

    Raises:
        ValueError: nothing in ``model`` has a portable form (e.g. a GhostNetV3 model).
    """
    if type(model) in PORTABLE_CLASSIFIERS:
        return PortableGhostNet(model, align)
    _check_eval(model)
    found = [name for name, m in model.named_modules() if type(m) is GhostNetFeatures]
    if not found:
        raise ValueError(f"{type(model).__name__} has no GhostNet V1/V2 trunk with a portable form")
    portable = {name: PortableFeatures(model.get_submodule(name), align) for name in found}
    copy = deepcopy(model)
    for name, new in portable.items():
        parent, _, child = name.rpartition(".")
        setattr(copy.get_submodule(parent) if parent else copy, child, new)
    return copy


def portable_ghostnet(model: GhostNet, align: int | None = None) -> PortableGhostNet:
    """Return the portable (onnxruntime-friendly) form of an eval-mode GhostNet V1/V2 classifier.

    Args:
        model: the classifier, in eval mode; it is not modified.
        align: see :class:`PortableGhostNet`.
    """
    return PortableGhostNet(model, align)
