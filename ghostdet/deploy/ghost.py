"""The Ghost deploy modules: GhostNet's modules with BatchNorms folded and kernels chosen for CPU.

They cover V1 and its variants: GhostNetV2's DFC-gated Ghost modules (:class:`DeployDFCGate`) and
GhostNetV3's bottlenecks once re-parameterised (one biased conv per op, V1's shape).

:class:`DeployGhostModule`, :class:`DeploySqueezeExcite` and :class:`DeployBottleneck` replace
their training-time counterparts; :class:`DeployGhostNet` and :class:`DeployGhostNetFeatures`
are whole trunks that decide once per call whether the fast kernels may run. Every convolution is
a :class:`~ghostdet.deploy.backend.FusedConv2d`; bottlenecks that fit ghostdet's fused native
kernels (``ghostdet/deploy/csrc/ghostblock.c``) run as one or two calls each.

One concept, the deploy form of the Ghost modules, hence ~500 lines: :class:`DeployBottleneck`'s
paths (whole-block and band native kernels, per-op kernels) are most of it; which of them a call
takes is its :class:`~ghostdet.deploy.plan.BlockPlan` (``ghostdet.deploy.plan``: the planner and
the measured thresholds), made from what the block's modules allow.
"""

from __future__ import annotations

import copy
import functools
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ghostdet.deploy import native
from ghostdet.deploy.backend import (
    BN_TYPES,
    DeployModule,
    FusedConv2d,
    check_image_batch,
    fast_path_ok,
    fold_bn,
)
from ghostdet.deploy.conversions import family_converter
from ghostdet.deploy.plan import BlockPath, plan_block
from ghostdet.models.fpn import GhostNetFeatures
from ghostdet.models.ghostnet import ConvBnAct, GhostBottleneck, GhostModule, GhostNet, SqueezeExcite
from ghostdet.models.ghostnetv3 import GhostBottleneckV3, GhostModuleV3

__all__ = [
    "DeployBottleneck",
    "DeployDFCGate",
    "DeployGhostModule",
    "DeployGhostNet",
    "DeployGhostNetFeatures",
    "DeploySqueezeExcite",
]


def _fused_op(seq: nn.Sequential) -> FusedConv2d:
    """``conv [+ BatchNorm] [+ ReLU]`` (V1's ``Conv-BN-act`` or a re-parameterised V3 ``conv-act``)
    as one :class:`FusedConv2d`."""
    bn = seq[1] if len(seq) > 1 and isinstance(seq[1], BN_TYPES) else None
    return FusedConv2d.from_conv(seq[0], bn, any(isinstance(m, nn.ReLU) for m in seq))


class DeployDFCGate(DeployModule):
    """The DFC attention gate of GhostNetV2/V3 (:mod:`ghostdet.models.dfc`) with folded BatchNorms.

    ``forward(out, x, fast)`` returns ``out * nearest_upsample(sigmoid(dfc(avg_pool_2x2(x))))``: the
    projection and the 1x5 / 5x1 depthwise convs each run as one :class:`FusedConv2d` (a GEMM or
    a prepacked oneDNN call on channels_last data at half resolution). On the fast path the
    sigmoid runs in place at half resolution and the native kernel (:func:`native.gate_mul`)
    upsamples and multiplies in one pass over ``out``, in place; the fused bottleneck kernels take
    the same half-resolution gate (:meth:`values`) and apply it as they compute ghost1.

    Args:
        branch: the eval-mode ``short_conv`` branch (:func:`~ghostdet.models.dfc.dfc_branch`).
    """

    def __init__(self, branch: nn.Sequential) -> None:
        super().__init__()
        self.proj = FusedConv2d.from_conv(branch[0], branch[1])
        self.horizontal = FusedConv2d.from_conv(branch[2], branch[3])
        self.vertical = FusedConv2d.from_conv(branch[4], branch[5])
        self.fits_native = self._fits_native()

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self.fits_native = self._fits_native()

    def _fits_native(self) -> bool:
        """Whether :func:`native.dfc_gate` computes this gate: a 1x1 stride-1 projection, the
        1x5 / 5x1 pair with "same" padding, a multiple of 4 channels."""
        p, h, v = self.proj, self.horizontal, self.vertical
        c = p.weight.shape[0]
        return (
            p.gemm_max_pixels > 0
            and not (p.relu or h.relu or v.relu)
            and c % 4 == 0
            and tuple(h.weight.shape) == (c, 1, 1, 5)
            and tuple(v.weight.shape) == (c, 1, 5, 1)
            and (h.stride, h.padding, v.stride, v.padding) == ([1, 1], [0, 2], [1, 1], [2, 0])
            and h.groups == v.groups == c
        )

    def _native_weights(self) -> list[Tensor]:
        """The weights :func:`native.dfc_gate` takes, cached until a conv's weight or bias is
        replaced or changed in place."""
        convs = (self.proj, self.horizontal, self.vertical)
        params = [m._parameters[n] for m in convs for n in ("weight", "bias")]  # (no __getattr__: per call)
        key = tuple((t.data_ptr(), -1 if t.is_inference() else t._version) for t in params)
        cached = self.__dict__.get("_native_cache")
        if cached is None or cached[0] != key:
            cached = (key, [t for m in convs for t in (m.flat_weight(), m.bias.contiguous())])
            self.__dict__["_native_cache"] = cached
        return cached[1]

    def logits(self, x: Tensor, fast: bool) -> Tensor:
        """The gate before its sigmoid, at half the resolution of ``x``."""
        s = F.avg_pool2d(x, kernel_size=2, stride=2)
        return self.vertical.run(self.horizontal.run(self.proj.run(s, fast), fast), fast)

    def values(self, x: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
        """The gate as the native kernels take it (fast path only): ``(g, gy, gx)``, the sigmoid
        values at half resolution and, for each row and column of the ``size`` map it gates, the
        gate row and column nearest upsampling takes."""
        g = native.dfc_gate(x, self._native_weights(), trusted_weights=True) if self.fits_native else None
        if g is None:
            g = self.logits(x, True).sigmoid_()
        gy, gx = (_nearest_index(o, i) for o, i in zip(size, g.shape[-2:]))
        return g, gy, gx

    def forward(self, out: Tensor, x: Tensor, fast: bool = False) -> Tensor:
        """Gate ``out`` (the Ghost module's output, written in place on the fast path) by ``x``."""
        return self.gate_parts([out], x, fast)[0]

    def gate_parts(self, parts: list[Tensor], x: Tensor, fast: bool) -> list[Tensor]:
        """Gate the Ghost module's output given as channel parts (``cat(parts, dim=1)``, e.g. its
        primary and cheap halves), each part in place on the fast path."""
        size = parts[0].shape[-2:]
        if fast and self.horizontal.use_native and native.kernel_pays_off("block"):
            g, gy, gx = self.values(x, size)
            c0 = 0
            for t in parts:
                part = g[:, c0 : c0 + t.shape[1]]
                c0 += t.shape[1]
                if not native.gate_mul(t, part, gy, gx):
                    t.mul_(F.interpolate(part, size=size, mode="nearest"))
            return parts
        gate = F.interpolate(self.logits(x, fast).sigmoid(), size=size, mode="nearest")
        return [t * q for t, q in zip(parts, gate.split([t.shape[1] for t in parts], dim=1))]


@functools.lru_cache(maxsize=256)
def _nearest_index(out_size: int, in_size: int) -> Tensor:
    """The source index of each of ``out_size`` positions in nearest upsampling from ``in_size``,
    as ``F.interpolate(mode="nearest")`` computes it (taken from it, so the two cannot differ);
    int32 for the native kernels."""
    src = torch.arange(in_size, dtype=torch.float32).view(1, 1, in_size)
    return F.interpolate(src, size=out_size, mode="nearest").view(out_size).to(torch.int32)


class DeployGhostModule(DeployModule):
    """A :class:`GhostModule` (V1, V2's gated one, or a re-parameterised V3 one) with folded
    BatchNorms and fused ReLUs.

    ``forward(x, residual=None)`` returns ``cat(p, cheap(p))[:, :oup] (* gate(x)) (+ residual)``
    where the slice is skipped when it keeps every channel, the DFC gate (V2/V3, see
    :class:`DeployDFCGate`) is applied when the module has one, and the residual is added in place
    into the freshly concatenated tensor (no extra allocation).

    Args:
        module: the eval-mode GhostModule to convert (a :class:`GhostModuleV3` is re-parameterised
            first, in place).
    """

    def __init__(self, module: GhostModule | GhostModuleV3) -> None:
        super().__init__()
        if isinstance(module, GhostModuleV3):
            module.reparameterize()
        self.primary_conv = _fused_op(module.primary_conv)
        self.cheap_operation = _fused_op(module.cheap_operation)
        branch = getattr(module, "short_conv", None)
        self.dfc = DeployDFCGate(branch) if branch is not None else None
        self.oup = module.oup
        total = self.primary_conv.weight.shape[0] + self.cheap_operation.weight.shape[0]
        self.needs_slice = total != self.oup

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        return self.run(x, fast_path_ok(x), residual)

    def run(self, x: Tensor, fast: bool, residual: Tensor | None = None) -> Tensor:
        """``forward`` with the fast-path eligibility decided by the caller."""
        out = self.concat(x, fast)
        if self.needs_slice:  # a view of the first oup channels: the sum goes to a new tensor
            return out if residual is None else out + residual
        if residual is not None:
            out.add_(residual)
        return out

    def concat(self, x: Tensor, fast: bool) -> Tensor:
        """The module's output ``cat([p, cheap(p)], dim=1)[:, :oup]`` with ``p = primary(x)``.

        On the fast path, when the primary conv runs as a GEMM (small maps) and the cheap op is
        depthwise, both halves are written straight into one channels_last tensor instead
        (:meth:`concat_parts` with one part): the primary half by the GEMM, the cheap half by
        the native kernel. Otherwise the halves are concatenated (on large maps, copying the
        primary half into a preallocated output and writing the cheap half in place measured no
        faster than ``torch.cat``).
        """
        primary, cheap = self.primary_conv, self.cheap_operation
        if fast and cheap.is_native_dw and cheap.use_native and primary.gemm_fits(x):
            out = self.concat_parts([x], None, fast)
        else:
            p = primary.run(x, fast)
            out = torch.cat([p, cheap.run(p, fast)], dim=1)
            out = out[:, : self.oup] if self.needs_slice else out
        return out if self.dfc is None else self.dfc(out, x, fast)

    def concat_parts(self, parts: list[Tensor], scales: list[Tensor] | None, fast: bool) -> Tensor:
        """``concat`` for the input ``cat(parts, dim=1)``, each part optionally multiplied by
        a per-image, per-channel scale (an SE gate), without building that input.

        The 1x1 primary conv is split by input channels, ``W @ cat(a, b) = W[:, :m] @ a +
        W[:, m:] @ b``, and a scale on an input channel is a scale on that column of ``W``,
        ``W @ (g * a) = (W * g) @ a``: the (small) weight is scaled instead of the feature map.
        The GEMMs accumulate straight into the first half of the output and the cheap op writes
        the second half, so nothing is concatenated. Only for the fast path and a 1x1 primary.

        Args:
            parts: channels_last ``(N, C_i, H, W)`` tensors, ``sum(C_i)`` = the input channels.
            scales: ``None``, or one ``(N, C_i)`` tensor per part.
            fast: the fast-path flag (must be true).
        """
        # A gate needs the whole input: concat() applies it to this result for one part; a
        # gated module is never fed parts (DeployBottleneck.ghost2_by_parts).
        primary, cheap = self.primary_conv, self.cheap_operation
        wt = primary.flat_weight()  # (in, out)
        m, total = wt.shape[1], wt.shape[1] + cheap.weight.shape[0]
        n, _, h, w = parts[0].shape
        y = torch.empty((n, total, h, w), dtype=parts[0].dtype, memory_format=torch.channels_last)
        p2 = y[:, :m].permute(0, 2, 3, 1).view(-1, m)  # rows of `total` floats: p in place
        hw, start = h * w, 0
        for i, part in enumerate(parts):
            c = part.shape[1]
            x2, w_part = part.permute(0, 2, 3, 1).reshape(-1, c), wt[start : start + c]
            start += c
            for j in range(n if scales is not None else 1):
                rows = slice(j * hw, (j + 1) * hw) if scales is not None else slice(None)
                wj = w_part * scales[i][j, :, None] if scales is not None else w_part
                if i == 0:
                    torch.addmm(primary.bias, x2[rows], wj, out=p2[rows])
                else:
                    p2[rows].addmm_(x2[rows], wj)
        if start != wt.shape[0]:
            raise ValueError(f"parts have {start} channels, the primary conv takes {wt.shape[0]}")
        if primary.relu:
            p2.relu_()
        cheap.run(y[:, :m], fast, out=y[:, m:])
        return y[:, : self.oup] if self.needs_slice else y


class DeploySqueezeExcite(DeployModule):
    """:class:`SqueezeExcite` on the pooled vector: two matrix products and one clamp.

    ``hard_sigmoid(z) = clamp(z + 3, 0, 6) / 6 = clamp(z / 6 + 1 / 2, 0, 1)``, so the expand
    weights are divided by 6 and ``1/2`` is added to the bias.

    Args:
        module: the SqueezeExcite to convert.
    """

    def __init__(self, module: SqueezeExcite) -> None:
        super().__init__()
        red, exp = module.conv_reduce, module.conv_expand
        w1, b1 = fold_bn(red, None)
        w2, b2 = fold_bn(exp, None)
        self.reduce_weight = nn.Parameter(w1.flatten(1), requires_grad=False)
        self.reduce_bias = nn.Parameter(b1, requires_grad=False)
        self.expand_weight = nn.Parameter(w2.flatten(1) / 6.0, requires_grad=False)
        self.expand_bias = nn.Parameter(b2 / 6.0 + 0.5, requires_grad=False)

    def native_weights(self) -> list[Tensor]:
        """``[reduce_weight, reduce_bias, expand_weight, expand_bias]``, the native kernels' SE
        arguments, read without ``nn.Module.__getattr__`` (~1.5 us a lookup)."""
        p = self._parameters
        return [p["reduce_weight"], p["reduce_bias"], p["expand_weight"], p["expand_bias"]]  # type: ignore[list-item]

    def gate(self, pooled: Tensor) -> Tensor:
        """The ``(N, C)`` gate from the ``(N, C)`` spatial means."""
        if not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export() and pooled.shape[0] == 1:
            # One image: matrix-vector products, measurably cheaper than 1-row matmuls on CPU.
            s = torch.addmv(self.reduce_bias, self.reduce_weight, pooled[0]).relu_()
            return torch.addmv(self.expand_bias, self.expand_weight, s).clamp_(0.0, 1.0)[None]
        s = F.relu(F.linear(pooled, self.reduce_weight, self.reduce_bias))
        return torch.clamp(F.linear(s, self.expand_weight, self.expand_bias), 0.0, 1.0)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x.mean((2, 3)))[:, :, None, None]


class DeployBottleneck(DeployModule):
    """A :class:`GhostBottleneck` (or a :class:`GhostBottleneckV3`, re-parameterised first, in
    place) in deploy form.

    On large feature maps, ghost1's output is never concatenated: its two halves ``a`` (primary)
    and ``b`` (cheap) go separately through the strided depthwise conv (per-channel, so it splits
    exactly) and SE (the gate is computed from both halves' means), and ghost2 takes them as two
    inputs (:meth:`DeployGhostModule.concat_parts`: its 1x1 primary conv is split by input
    channels and accumulates into its half of the output). This saves a full copy of the widest
    tensor of the block for one extra GEMM call, so it is used only when ghost1's output has at
    least ``split_min_numel`` elements per image (small maps are dominated by per-call overhead).
    The SE gate is never multiplied into a feature map: it scales the columns of ghost2's 1x1
    weight instead. The identity residual is added in place after ghost2; a conv shortcut adds
    ghost2's output inside its 1x1 convolution. Blocks that fit the native fused kernels
    (``ghostdet/deploy/csrc/ghostblock.c``) run as one call each, or as a front and a back call
    around an SE gate or with a DFC-gated ghost1 (V2/V3: the front kernel multiplies ghost1's
    output by the gate as it computes it, before the strided conv). Other DFC-gated blocks run
    ghost1 on the per-op kernels, concatenated, and gate it in one pass.

    Args:
        block: the eval-mode GhostBottleneck to convert.
        split_min_numel: threshold for the split path (``0`` always, a huge number never;
            ``None``: ``THRESHOLDS.split_min_numel``).
    """

    def __init__(
        self, block: GhostBottleneck | GhostBottleneckV3, split_min_numel: int | None = None
    ) -> None:
        super().__init__()
        if isinstance(block, GhostBottleneckV3):
            block.reparameterize()
        self.ghost1 = DeployGhostModule(block.ghost1)
        self.conv_dw = None
        if block.stride > 1:  # V3's re-parameterised conv_dw carries its bias and has no bn_dw
            self.conv_dw = FusedConv2d.from_conv(block.conv_dw, getattr(block, "bn_dw", None))
        self.se = DeploySqueezeExcite(block.se) if block.se is not None else None
        self.ghost2 = DeployGhostModule(block.ghost2)
        if len(block.shortcut) == 0:
            self.shortcut_dw = self.shortcut_pw = None
        else:
            sc = block.shortcut
            self.shortcut_dw = FusedConv2d.from_conv(sc[0], sc[1])
            self.shortcut_pw = FusedConv2d.from_conv(sc[2], sc[3])
        self.split_min_numel = split_min_numel
        self.m = self.ghost1.primary_conv.weight.shape[0]
        if self.conv_dw is not None and not self.ghost1.needs_slice:  # the split path's halves
            m, dw = self.m, self.conv_dw
            geom = (dw.stride, dw.padding, dw.dilation, m)
            self.conv_dw_a = FusedConv2d(dw.weight[:m], dw.bias[:m], *geom)
            self.conv_dw_b = FusedConv2d(dw.weight[m:], dw.bias[m:], *geom)
        self._plan()

    def _plan(self) -> None:
        """Make :attr:`plan` from what the modules allow (again on unpickling, from the modules as
        loaded)."""
        fits = {
            BlockPath.SMALL: self._small_fits(),
            BlockPath.S1: self._fusable(),
            BlockPath.S2: self._fusable_s2(),
            BlockPath.SE: self._fusable_se(),
        }
        # ghost2's primary is a 1x1 conv: it can take its input in parts (see concat_parts)
        # (a gated ghost2 would need its whole input: never in parts; a gated ghost1 gates its halves)
        self.ghost2_by_parts = self.ghost2.primary_conv.gemm_max_pixels > 0 and self.ghost2.dfc is None
        fits[BlockPath.SPLIT] = (
            not self.ghost1.needs_slice
            and self.ghost2_by_parts
            and (self.conv_dw is None or hasattr(self, "conv_dw_a"))
        )
        out_channels = 2 * self.ghost2.primary_conv.weight.shape[0]
        self.plan = plan_block([p for p, ok in fits.items() if ok], out_channels, self.split_min_numel)
        # Plain references for the per-call path (each nn.Module attribute lookup there costs
        # ~1.5 us, and a native block call made ~30), in tuples so that nn.Module does not
        # register them as submodules: the fused kernels' convs in their weight order, and
        # ghost1's DFC gate, the SE module, the shortcut convs and (stride, k) of the strided
        # depthwise conv. Submodules are not replaced after conversion (the flags above assume
        # it too); their weights may be (FusedConv2d reads them per call).
        g1, g2 = self.ghost1, self.ghost2
        dw = () if self.conv_dw is None else (self.conv_dw,)
        self._fused_convs = (g1.primary_conv, g1.cheap_operation, *dw, g2.primary_conv, g2.cheap_operation)
        self._block_extras = (
            g1.dfc,
            self.se,
            None if self.shortcut_pw is None else (self.shortcut_dw, self.shortcut_pw),
            (1, 3) if self.conv_dw is None else (2, self.conv_dw.weight.shape[-1]),
        )

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._plan()

    def forward(self, x: Tensor) -> Tensor:
        return self.run(x, fast_path_ok(x))

    def _ghosts_fit(self) -> bool:
        """Whether both Ghost modules fit the native fused kernels (``csrc/ghostblock.c`` and
        ``csrc/smallblock.c``): 1x1 primaries and 3x3 depthwise cheap ops (ReLU in ghost1 only),
        no channel slicing, channel counts multiples of 4, and no DFC gate on ghost2 (one on
        ghost1 is applied by the kernels). Whether they pay off for a block's width on a given
        map is decided per call (the plan's ``band_min_pixels``)."""
        p1, c1 = self.ghost1.primary_conv, self.ghost1.cheap_operation
        p2, c2 = self.ghost2.primary_conv, self.ghost2.cheap_operation
        m1, m2 = p1.weight.shape[0], p2.weight.shape[0]
        return (
            self.ghost2.dfc is None
            and not self.ghost1.needs_slice
            and not self.ghost2.needs_slice
            and all(pc.gemm_max_pixels > 0 for pc in (p1, p2))  # 1x1, stride 1, no padding
            and all(cc.is_native_dw and cc.weight.shape[-1] == 3 and cc.stride == [1, 1] for cc in (c1, c2))
            and all(cc.padding == [1, 1] for cc in (c1, c2))
            and (p1.relu, c1.relu, p2.relu, c2.relu) == (True, True, False, False)
            and c1.weight.shape[0] == m1
            and c2.weight.shape[0] == m2
            and p2.weight.shape[1] == 2 * m1
            and m1 % 4 == 0
            and m2 % 4 == 0
        )

    def _dw_fits(self) -> bool:
        """Whether the stride-2 depthwise conv fits the fused kernels (3x3 or 5x5, no ReLU)."""
        dw = self.conv_dw
        return (
            dw is not None
            and dw.is_native_dw
            and not dw.relu
            and dw.stride == [2, 2]
            and dw.weight.shape[-1] in (3, 5)
            and dw.padding == [dw.weight.shape[-1] // 2] * 2
            and dw.weight.shape[0] == 2 * self.m
        )

    def _identity_fits(self) -> bool:
        """An identity shortcut (stride 1, as many channels in as out)."""
        p1, p2 = self.ghost1.primary_conv, self.ghost2.primary_conv
        return self.shortcut_pw is None and p1.weight.shape[1] == 2 * p2.weight.shape[0]

    def _fusable(self) -> bool:
        """The stride-1 fused kernel: no SE, identity shortcut (a DFC gate on ghost1 is applied
        by the kernel)."""
        return self._ghosts_fit() and self.conv_dw is None and self.se is None and self._identity_fits()

    def _fusable_s2(self) -> bool:
        """The stride-2 fused kernel: no SE, a conv shortcut (run separately); a DFC gate on
        ghost1 is applied by the kernel."""
        return self._ghosts_fit() and self._dw_fits() and self.se is None and self.shortcut_pw is not None

    def _fusable_se(self) -> bool:
        """The two-pass fused kernels (front, gate, back), stride 1 or 2, for blocks with SE or
        a DFC gate on ghost1."""
        if (self.se is None and self.ghost1.dfc is None) or not self._ghosts_fit():
            return False
        if self.conv_dw is not None:
            return self._dw_fits() and self.shortcut_pw is not None
        return self.shortcut_pw is not None or self._identity_fits()

    def _small_fits(self) -> bool:
        """The whole-block kernel for small maps (``csrc/smallblock.c``): the Ghost modules fit
        (any width), the strided conv fits, the shortcut is an identity or a native depthwise
        conv and a 1x1 conv (no ReLU)."""
        if not self._ghosts_fit() or (self.conv_dw is not None and not self._dw_fits()):
            return False
        if self.shortcut_pw is None:
            return self._identity_fits()
        sdw, spw = self.shortcut_dw, self.shortcut_pw
        k = sdw.weight.shape[-1]
        stride = [1, 1] if self.conv_dw is None else [2, 2]
        return (
            sdw.is_native_dw
            and sdw.stride == stride
            and sdw.padding == [k // 2] * 2
            and spw.gemm_max_pixels > 0
            and not (sdw.relu or spw.relu)
        )

    def _run_small(self, x: Tensor) -> Tensor | None:
        """The whole block in one native call (:attr:`BlockPath.SMALL`)."""
        _, m, short, (stride, k) = self._block_extras
        se = None if m is None else m.native_weights()
        shortcut, sk = None, 3
        if short is not None:
            sdw, spw = short
            shortcut, sk = (
                [sdw.flat_weight(), sdw.bias_t(), spw.flat_weight(), spw.bias_t()],
                sdw.kernel_size(),
            )
        return native.ghost_block_small(
            x,
            self._fused_weights(),
            stride,
            k,
            se,
            shortcut,
            sk,
            gate=self._gate_values(x),
            trusted_weights=True,
        )

    def _gate_values(self, x: Tensor) -> Tensor | None:
        """ghost1's DFC gate on ``x`` at ``x``'s size (what the native kernels multiply by), or None."""
        dfc = self._block_extras[0]
        return None if dfc is None else dfc.values(x, x.shape[-2:])

    def _fused_weights(self) -> list[Tensor]:
        """The fused kernel's weights, from the modules' own derived-weight caches."""
        out = []
        for conv in self._fused_convs:
            out += [conv.flat_weight(), conv.bias_t()]
        return out

    def _run_fused_se(self, x: Tensor, fast: bool, band: int = 8) -> Tensor | None:
        """Front kernel (ghost1 [times its DFC gate] [+ strided depthwise] and channel sums), the
        SE gate (if any) folded into ghost2's 1x1 weight per image, back kernel (ghost2 +
        residual); ``band`` rows per task."""
        w = self._fused_weights()
        stride, k = self._block_extras[3]
        nf = 4 if stride == 1 else 6  # [w1t, b1, d1, bd1 (, dzt, dz)] | [w2t, b2, d2, bd2]
        front = native.ghost_front(x, w[:nf], stride, k, band, self._gate_values(x), trusted_weights=True)
        if front is None:
            return None
        z, sums = front
        w2 = w[nf]
        if self.se is not None:
            w2 = w2 * self.se.gate(sums / (z.shape[2] * z.shape[3]))[:, :, None]
        if self.shortcut_pw is None:
            res = x
        else:
            res = self.shortcut_pw.run(self.shortcut_dw.run(x, fast), fast)
        return native.ghost_back(z, res, [w2, *w[nf + 1 :]], band, trusted_weights=True)

    def block_kernels(self, x: Tensor) -> tuple[str, ...]:
        """The native block kernels a fast-path call on ``x`` tries, in order (the plan's
        :meth:`~ghostdet.deploy.plan.BlockPlan.native_paths`, by name)."""
        return tuple(p.value for p in self.plan.native_paths(x.shape[2] * x.shape[3]))

    def _run_block_kernel(self, path: BlockPath, x: Tensor, fast: bool) -> Tensor | None:
        """One native block kernel of the plan on ``x`` (``None``: it declined)."""
        band = self.plan.band_rows
        if path is BlockPath.SMALL:
            return self._run_small(x)
        if path is BlockPath.SE:
            return self._run_fused_se(x, fast, band)
        if path is BlockPath.S1:
            return native.ghost_block_s1(
                x, self._fused_weights(), band, gate=self._gate_values(x), trusted_weights=True
            )
        res = self.shortcut_pw.run(self.shortcut_dw.run(x, fast), fast)
        k = self._block_extras[3][1]
        return native.ghost_block_s2(
            x, res, self._fused_weights(), k, band, gate=self._gate_values(x), trusted_weights=True
        )

    def run(self, x: Tensor, fast: bool) -> Tensor:
        """``forward`` with the fast-path eligibility decided by the caller."""
        pixels = x.shape[2] * x.shape[3]
        if fast and self._fused_convs[1].use_native and native.kernel_pays_off("block"):
            for path in self.plan.native_paths(pixels):
                y = self._run_block_kernel(path, x, fast)
                if y is not None:
                    return y
        # ghost1's primary conv keeps the map size (stride 1, "same" padding)
        # (only on the fast path: a traced/exported graph then has no size-dependent branch)
        split = fast and self.plan.op_path(2 * self.m * pixels) is BlockPath.SPLIT
        if split:  # ghost1's halves are never concatenated
            a = self.ghost1.primary_conv.run(x, fast)
            b = self.ghost1.cheap_operation.run(a, fast)
            if self.ghost1.dfc is not None:
                a, b = self.ghost1.dfc.gate_parts([a, b], x, fast)
            if self.conv_dw is not None:
                a, b = self.conv_dw_a.run(a, fast), self.conv_dw_b.run(b, fast)
            parts = [a, b]
        else:
            y = self.ghost1.concat(x, fast)
            if self.conv_dw is not None:
                y = self.conv_dw.run(y, fast)
            parts = [y]
        gate = None
        if self.se is not None:
            means = [t.mean((2, 3)) for t in parts]
            gate = self.se.gate(means[0] if len(means) == 1 else torch.cat(means, dim=1))
        if fast and self.ghost2_by_parts and (split or gate is not None):
            scales = None if gate is None else list(gate.split([t.shape[1] for t in parts], dim=1))
            out = self.ghost2.concat_parts(parts, scales, fast)
        else:
            y = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
            if gate is not None:
                y = y * gate[:, :, None, None]
            out = self.ghost2.run(y, fast)
        if self.shortcut_pw is None:
            return out.add_(x) if not self.ghost2.needs_slice else out + x
        return self.shortcut_pw.run(self.shortcut_dw.run(x, fast), fast, other=out)


def _convert_stage(stage: nn.Module) -> nn.Module:
    """One ``blocks`` entry of a trunk: its bottlenecks by the converter their family declares
    (:class:`DeployBottleneck` for GhostNet's), the final 1x1 ``ConvBnAct`` as one fused conv."""
    layers = []
    for block in stage:
        convert = family_converter(block)
        if convert is not None:
            layers.append(convert(block))
        elif isinstance(block, ConvBnAct):
            layers.append(FusedConv2d.from_conv(block.conv, block.bn1, relu=True))
        else:
            raise TypeError(f"unexpected GhostNet block {type(block).__name__}")
    return nn.Sequential(*layers)


def _to_channels_last(x: Tensor) -> Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def _run_trunk(
    stem: FusedConv2d, blocks: nn.Sequential, x: Tensor, taps: dict[int, str] | None = None
) -> tuple[Tensor, OrderedDict[str, Tensor]]:
    """Stem + blocks, the fast-path eligibility checked once; returns the last map and the tapped ones."""
    check_image_batch(x, stem.weight.shape[1] * stem.groups, "the fused GhostNet trunk")
    x = _to_channels_last(x)
    fast = fast_path_ok(x)
    x = stem.run(x, fast)
    out: OrderedDict[str, Tensor] = OrderedDict()
    for i, stage in enumerate(blocks):
        for block in stage:
            x = block.run(x, fast)
        if taps is not None and i in taps:
            out[taps[i]] = x
    return x, out


class DeployGhostNet(DeployModule):
    """A :class:`GhostNet` classifier (V1, V2 or V3) in deploy form (same outputs as the eval-mode
    model; a V3 one is re-parameterised first, in place).

    ``forward_features`` returns the ``channels_last`` 960-channel map; the head runs
    ``conv_head`` on the pooled vector as a matrix product. Dropout is gone (eval mode).

    Args:
        net: the eval-mode GhostNet to convert.
    """

    def __init__(self, net: GhostNet) -> None:
        super().__init__()
        self.width = net.width
        self.num_features = net.num_features
        self.stem = FusedConv2d.from_conv(net.conv_stem, net.bn1, relu=True)
        self.blocks = nn.Sequential(*[_convert_stage(s) for s in net.blocks])
        w, b = fold_bn(net.conv_head, None)
        self.head_weight = nn.Parameter(w.flatten(1), requires_grad=False)
        self.head_bias = nn.Parameter(b, requires_grad=False)
        self.classifier = copy.deepcopy(net.classifier).requires_grad_(False)

    def forward_features(self, x: Tensor) -> Tensor:
        return _run_trunk(self.stem, self.blocks, x)[0]

    def forward(self, x: Tensor) -> Tensor:
        x = self.forward_features(x).mean((2, 3))
        x = F.relu(F.linear(x, self.head_weight, self.head_bias))
        return self.classifier(x)


class DeployGhostNetFeatures(DeployModule):
    """A :class:`GhostNetFeatures` trunk in deploy form; returns the same OrderedDict of maps.

    Args:
        body: the eval-mode feature extractor to convert.
    """

    def __init__(self, body: GhostNetFeatures) -> None:
        super().__init__()
        self.stem = FusedConv2d.from_conv(body.conv_stem, body.bn1, relu=True)
        self.blocks = nn.Sequential(*[_convert_stage(s) for s in body.blocks])
        self.returned_layers = list(body.returned_layers)
        self._taps = dict(body._taps)
        self.out_channels_list = list(body.out_channels_list)
        self.strides = list(body.strides)

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        return _run_trunk(self.stem, self.blocks, x, self._taps)[1]
