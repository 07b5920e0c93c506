"""Deploy (inference) mode for GhostNet classifiers, backbones and detectors.

:func:`fuse` turns an eval-mode model into an inference-only copy that computes the same function
with fewer and cheaper operations on CPU:

* every BatchNorm (``BatchNorm2d`` and ``FrozenBatchNorm2d``) is folded into the convolution
  before it: GhostModule primary and cheap convs, the strided depthwise conv, both shortcut
  convs, the stem and the final 1x1 ``ConvBnAct``;
* each convolution runs as ONE oneDNN primitive with its ReLU (and, for the shortcut's 1x1 conv,
  the residual addition) fused in, on weights that are reordered into oneDNN's blocked layout once
  instead of on every call (``torch.ops.mkldnn._convolution_pointwise``, the kernel PyTorch's own
  compiler emits); activations stay ``channels_last`` so depthwise convs need no layout change;
* 1x1 convolutions on small maps (at most ``GEMM_MAX_PIXELS`` output pixels, 56x56 for one
  image) run as one BLAS GEMM on the channels_last data instead: a oneDNN call has a fixed set-up
  cost of ~25 us, which dominates on 7x7-28x28 maps, a GEMM call costs a few us, and a GEMM can
  write its result into a channel slice of a wider tensor (see the Ghost module below);
* depthwise convolutions (3x3 / 5x5 / 7x7, channels a multiple of 4) run on ghostdet's own
  vectorised C kernel (``ghostdet/csrc/dwconv.c``, compiled for this CPU on first use, see
  ``ghostdet._native``): it has no per-call set-up, where a oneDNN depthwise call costs 30-50 us
  even on a 7x7 map, and it writes the Ghost module's cheap half straight into the module's
  output; on small maps the primary half is written there by its GEMM, so no concatenation
  copy is left. Without a C compiler, oneDNN runs them (``fuse(..., native_kernels=False)``
  or ``GHOSTDET_NATIVE=0`` choose that on purpose);
* bottlenecks with at most ``FUSED_BLOCK_MAX_CHANNELS`` output channels (GhostNet's memory-bound
  blocks on the large maps) run fused on native kernels (``ghostdet/csrc/ghostblock.c``): without
  SE, one call per block, row bands streaming through per-thread scratch so only the block's
  input is read and its output written; with SE (whose gate needs the whole map's mean), a front
  call (ghost1, the strided depthwise conv, channel sums) and a back call (ghost2, residual)
  around the gate;
* the stem (3 input channels) runs on a native direct convolution (``ghostdet/csrc/stemconv.c``);
* whether the fast kernels may be used is decided once per model call, not once per convolution;
* the squeeze-excite block runs its two 1x1 convs on the pooled vector as matrix products, and
  its hard-sigmoid's ``+3`` and ``/6`` are folded into the expand weights (one clamp remains);
  the gate never multiplies a feature map: it scales the input columns of ghost2's 1x1 weight
  instead (``W @ (g * z) = (W * g) @ z``, a few thousand numbers instead of the map);
* the Ghost module's ``[:, :oup]`` slice is skipped when it is a no-op, and the residual is added
  in place into the freshly concatenated output instead of allocating another tensor;
* for torchvision detectors, the remaining convolutions (FPN, RPN / RetinaNet heads) get the
  same prepacked fused treatment; everything else (transform, anchors, RoI heads) is untouched.

When oneDNN cannot be used (another device or dtype, autograd recording, ``torch.jit`` tracing,
ONNX export, ``torch.compile``), every fused convolution falls back to plain ``F.conv2d`` (+ add,
+ ReLU), so deploy models also export to ONNX and run under ``torch.compile``.

Example::

    model = ghostdet.get_model("fasterrcnn_ghostnet_320_fpn").eval()
    fast = ghostdet.deploy.fuse(model)   # new model; ``model`` itself is unchanged
"""

from __future__ import annotations

import copy
import ctypes
import sys
from collections import OrderedDict
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import FrozenBatchNorm2d

from ghostdet import _native
from ghostdet.models.detection import GhostNetFeatures
from ghostdet.models.ghostnet import ConvBnAct, GhostBottleneck, GhostModule, GhostNet, SqueezeExcite

__all__ = [
    "DeployBottleneck",
    "DeployGhostModule",
    "DeployGhostNet",
    "DeployGhostNetFeatures",
    "DeploySqueezeExcite",
    "FusedConv2d",
    "fold_bn",
    "fuse",
    "is_fused",
    "tune_malloc",
]

_BN_TYPES = (nn.BatchNorm2d, FrozenBatchNorm2d)
# FusedConv2d attributes holding weights derived for a backend; never copied or pickled.
_CACHE_SLOTS = ("_packed", "_gemm_weight", "_native_weight")

# 1x1 convolutions whose output has at most this many pixels (N*H*W) run as a GEMM; larger ones
# as a prepacked oneDNN convolution. Measured on a 2-core x86 CPU (benchmarks/bench_cpu.py): with
# the native depthwise kernel, 3136 (56x56) beat 1024 by ~5% at 224x224 and was neutral at 640x640.
GEMM_MAX_PIXELS = 3136
# Bottlenecks without SE (stride 1, or stride 2 with a conv shortcut) with at most this many
# output channels run as one fused native call (ghostdet/csrc/ghostblock.c). Measured against the
# separate ops on a 2-core x86 CPU at 640x640 (224x224): 16 and 24 channels ~0.4x-0.55x,
# 40-channel stride 2 0.72x (0.90x), 80 channels 0.77-0.85x (0.84-0.87x); 160 channels 1.7x
# (2.4x: a 7x7 map is one band, so one thread).
FUSED_BLOCK_MAX_CHANNELS = 80


def fold_bn(conv: nn.Conv2d, bn: nn.Module | None) -> tuple[Tensor, Tensor]:
    """Return ``(weight, bias)`` of a convolution equal to ``bn(conv(x))`` in eval mode.

    Args:
        conv: the convolution (with or without bias).
        bn: a ``BatchNorm2d`` (using its running statistics) or ``FrozenBatchNorm2d``; ``None``
            returns the convolution's own weight and bias (zeros when it has none).
    """
    w = conv.weight.detach()
    b = conv.bias.detach() if conv.bias is not None else w.new_zeros(w.shape[0])
    if bn is None:
        return w.clone(), b.clone()
    if not isinstance(bn, _BN_TYPES):
        raise TypeError(f"cannot fold {type(bn).__name__} into a convolution")
    mean, var = bn.running_mean.detach(), bn.running_var.detach()
    gamma = bn.weight.detach() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.detach() if bn.bias is not None else torch.zeros_like(mean)
    # Compute in float64 so the fold itself adds no measurable error.
    scale = gamma.double() * torch.rsqrt(var.double() + bn.eps)
    weight = (w.double() * scale.reshape(-1, 1, 1, 1)).to(w.dtype)
    bias = ((b.double() - mean.double()) * scale + beta.double()).to(w.dtype)
    return weight, bias


def _mkldnn_ok(x: Tensor) -> bool:
    """Whether the fused oneDNN kernels may run for this input."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.dim() == 4
        and not (torch.is_grad_enabled() and x.requires_grad)
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
        and not torch.jit.is_tracing()
        and not torch.jit.is_scripting()
        and not torch.onnx.is_in_onnx_export()
        and not torch.compiler.is_compiling()
    )


class FusedConv2d(nn.Module):
    """Inference-only Conv2d with a folded bias, optional fused ReLU and optional fused residual add.

    ``forward(x, other=None)`` returns ``relu?(conv(x) + bias [+ other])``. On CPU float32 it
    runs one oneDNN primitive on a weight prepacked on first use (the cache is rebuilt when the
    weight changes and never saved in the state dict).

    Args:
        weight: convolution weight ``(out, in/groups, kh, kw)``.
        bias: bias ``(out,)``.
        stride, padding, dilation, groups: as for ``nn.Conv2d`` (zero padding only).
        relu: apply ReLU to the result.
    """

    def __init__(
        self,
        weight: Tensor,
        bias: Tensor,
        stride: tuple[int, int] = (1, 1),
        padding: tuple[int, int] = (0, 0),
        dilation: tuple[int, int] = (1, 1),
        groups: int = 1,
        relu: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.stride = list(_pair(stride))
        self.padding = list(_pair(padding))
        self.dilation = list(_pair(dilation))
        self.groups = groups
        self.relu = relu
        self.use_mkldnn = True
        self._packed: tuple[tuple, Tensor] | None = None  # oneDNN-layout weight, see _derived_weight
        # A 1x1 convolution on a small map runs as one GEMM: a oneDNN convolution call costs
        # ~25 us of set-up on this kind of CPU however small the map, a BLAS GEMM a few us.
        is_pointwise = (
            weight.shape[-2:] == (1, 1)
            and groups == 1
            and self.stride == [1, 1]
            and self.padding == [0, 0]
            and self.dilation == [1, 1]
        )
        self.gemm_max_pixels = GEMM_MAX_PIXELS if is_pointwise else 0
        self._gemm_weight: tuple[tuple, Tensor] | None = None  # (in, out) weight for the GEMM path
        # Depthwise convolutions run on ghostdet's own kernel (see ghostdet._native) when it is
        # available: no per-call set-up, and it can write into a channel slice of a wider tensor.
        self.is_native_dw = _native.supports(weight, self.stride, self.padding, self.dilation, groups)
        # a dense conv on few input channels (the stem) also runs on a native kernel
        self.is_native_stem = _native.supports_stem(weight, self.stride, self.padding, self.dilation, groups)
        self.use_native = True
        self._native_weight: tuple[tuple, Tensor] | None = None  # (k*k, C) weight for the kernel

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, bn: nn.Module | None = None, relu: bool = False) -> FusedConv2d:
        """Build from an ``nn.Conv2d`` and the BatchNorm that follows it (if any)."""
        if not isinstance(conv.padding, tuple) or conv.padding_mode != "zeros":
            raise ValueError(f"only explicit zero padding can be fused, got {conv}")
        weight, bias = fold_bn(conv, bn)
        return cls(weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups, relu)

    def extra_repr(self) -> str:
        o, i, kh, kw = self.weight.shape
        return (
            f"{i * self.groups}, {o}, kernel_size=({kh}, {kw}), stride={tuple(self.stride)}, "
            f"padding={tuple(self.padding)}, groups={self.groups}, relu={self.relu}"
        )

    def __getstate__(self) -> dict:
        # oneDNN tensors cannot be copied or pickled; the caches are rebuilt on demand.
        state = self.__dict__.copy()
        for slot in _CACHE_SLOTS:
            state[slot] = None
        return state

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        # New weights: drop every derived copy. The version check in _derived_weight sees in-place
        # copies into normal tensors, but inference tensors have no version counter.
        super()._load_from_state_dict(*args, **kwargs)
        for slot in _CACHE_SLOTS:
            setattr(self, slot, None)

    def __setstate__(self, state: dict) -> None:
        state.setdefault("is_native_dw", False)  # pickled before the native kernel existed
        state.setdefault("use_native", True)
        state.setdefault("_native_weight", None)
        state.setdefault("is_native_stem", False)
        self.__dict__.update(state)

    def __deepcopy__(self, memo: dict) -> FusedConv2d:
        new = self.__class__.__new__(self.__class__)
        memo[id(self)] = new
        for key, value in self.__dict__.items():
            new.__dict__[key] = None if key in _CACHE_SLOTS else copy.deepcopy(value, memo)
        return new

    def _derived_weight(self, slot: str, build: Callable[[Tensor], Tensor]) -> Tensor:
        """``build(weight)``, cached in attribute ``slot`` until the weight is replaced or changed
        in place (e.g. by ``load_state_dict``). Inference tensors (made under
        ``torch.inference_mode``) have no version counter: for them only a replacement counts."""
        w = self.weight
        key = (w.data_ptr(), -1 if w.is_inference() else w._version, w.dtype, w.shape)
        cached = getattr(self, slot)
        if cached is None or cached[0] != key:
            cached = (key, build(w.detach()))
            setattr(self, slot, cached)
        return cached[1]

    def _packed_weight(self, x: Tensor) -> Tensor:
        return self._derived_weight(
            "_packed",
            lambda w: torch.ops.mkldnn._reorder_convolution_weight(
                w, self.padding, self.stride, self.dilation, self.groups, list(x.shape)
            ),
        )

    def forward(self, x: Tensor, other: Tensor | None = None) -> Tensor:
        fast = _mkldnn_ok(x) and (other is None or _mkldnn_ok(other))
        return self.apply_conv(x, fast, other)

    def apply_conv(
        self, x: Tensor, fast: bool, other: Tensor | None = None, out: Tensor | None = None
    ) -> Tensor:
        """``forward`` with the fast-path eligibility decided by the caller (checked once per
        model call by the deploy modules instead of once per convolution).

        With ``out`` (e.g. a channel slice of a wider channels_last tensor) the result is
        written there and ``out`` is returned; the native depthwise kernel writes it directly.
        """
        if fast and other is None and self.use_native and (self.is_native_dw or self.is_native_stem):
            wt = self._derived_weight("_native_weight", _flat_t)
            k, s, p = self.weight.shape[-1], self.stride[0], self.padding[0]
            if self.is_native_dw:
                y = _native.dwconv2d(x, wt, self.bias, k, s, p, self.relu, out, trusted_weights=True)
            else:
                y = _native.stem_conv(x, wt, self.bias, k, s, p, self.relu)
                if y is not None and out is not None:
                    y = out.copy_(y)
            if y is not None:
                return y
        if out is not None and other is None and fast and self.use_mkldnn and self.gemm_fits(x):
            return self._gemm(x, None, out)
        y = self._conv(x, fast, other)
        if out is None:
            return y
        return out.copy_(y)

    def gemm_fits(self, x: Tensor) -> bool:
        """Whether this is a 1x1 convolution that runs as a GEMM on input ``x`` (a small map)."""
        return x.shape[0] * x.shape[2] * x.shape[3] <= self.gemm_max_pixels

    def _conv(self, x: Tensor, fast: bool, other: Tensor | None) -> Tensor:
        if not (fast and self.use_mkldnn):
            y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
            if other is not None:
                y = y + other
            return F.relu(y) if self.relu else y
        if self.gemm_fits(x):
            return self._gemm(x, other)
        w = self._packed_weight(x)
        if other is None:
            return torch.ops.mkldnn._convolution_pointwise(
                x, w, self.bias, self.padding, self.stride, self.dilation, self.groups, self._act, [], ""
            )
        return torch.ops.mkldnn._convolution_pointwise.binary(
            x,
            other.contiguous(memory_format=torch.channels_last),
            w,
            self.bias,
            self.padding,
            self.stride,
            self.dilation,
            self.groups,
            "add",
            None,
            self._act if self.relu else None,
            [],
            "",
        )

    def _gemm(self, x: Tensor, other: Tensor | None, out: Tensor | None = None) -> Tensor:
        """The 1x1 convolution as ``(N*H*W, C) @ (C, O)`` on channels_last data (views, no copies).
        ``out`` may be a channel slice of a channels_last tensor: the GEMM writes it in place."""
        wt = self._derived_weight("_gemm_weight", _flat_t)
        n, c, h, width = x.shape
        x2 = x.permute(0, 2, 3, 1).reshape(-1, c)
        if out is not None:
            y = torch.addmm(self.bias, x2, wt, out=out.permute(0, 2, 3, 1).view(-1, wt.shape[1]))
            if self.relu:
                y.relu_()
            return out
        if other is None:
            y = torch.addmm(self.bias, x2, wt)
        else:
            y = torch.addmm(other.permute(0, 2, 3, 1).reshape(-1, wt.shape[1]), x2, wt).add_(self.bias)
        if self.relu:
            y.relu_()
        return y.view(n, h, width, -1).permute(0, 3, 1, 2)

    @property
    def _act(self) -> str:
        return "relu" if self.relu else "none"


def _flat_t(w: Tensor) -> Tensor:
    """A conv weight ``(O, I, kh, kw)`` as a contiguous ``(I*kh*kw, O)``: the GEMM's (in, out)
    for a 1x1 conv, the native kernels' taps-major ``(k*k, C)`` for a depthwise conv and
    ``(Cin*k*k, Cout)`` for the stem."""
    return w.flatten(1).t().contiguous()


def _pair(v: int | tuple[int, ...] | list[int]) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    return (int(v[0]), int(v[1]))


def _has_relu(seq: nn.Sequential) -> bool:
    return any(isinstance(m, nn.ReLU) for m in seq)


class DeployGhostModule(nn.Module):
    """A :class:`GhostModule` with folded BatchNorms and fused ReLUs.

    ``forward(x, residual=None)`` returns ``cat(p, cheap(p))[:, :oup] (+ residual)`` where the
    slice is skipped when it keeps every channel, and the residual is added in place into the
    freshly concatenated tensor (no extra allocation).

    Args:
        module: the eval-mode GhostModule to convert.
    """

    def __init__(self, module: GhostModule) -> None:
        super().__init__()
        relu = _has_relu(module.primary_conv)
        self.primary_conv = FusedConv2d.from_conv(module.primary_conv[0], module.primary_conv[1], relu)
        self.cheap_operation = FusedConv2d.from_conv(
            module.cheap_operation[0], module.cheap_operation[1], _has_relu(module.cheap_operation)
        )
        self.oup = module.oup
        total = self.primary_conv.weight.shape[0] + self.cheap_operation.weight.shape[0]
        self.needs_slice = total != self.oup

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        return self.run(x, _mkldnn_ok(x), residual)

    def run(self, x: Tensor, fast: bool, residual: Tensor | None = None) -> Tensor:
        """``forward`` with oneDNN eligibility decided by the caller."""
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
            return self.concat_parts([x], None, fast)
        p = primary.apply_conv(x, fast)
        out = torch.cat([p, cheap.apply_conv(p, fast)], dim=1)
        return out[:, : self.oup] if self.needs_slice else out

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
        primary, cheap = self.primary_conv, self.cheap_operation
        wt = primary._derived_weight("_gemm_weight", _flat_t)  # (in, out)
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
        cheap.apply_conv(y[:, :m], fast, out=y[:, m:])
        return y[:, : self.oup] if self.needs_slice else y


class DeploySqueezeExcite(nn.Module):
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


class DeployBottleneck(nn.Module):
    """A :class:`GhostBottleneck` in deploy form.

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
    (``ghostdet/csrc/ghostblock.c``) run as one call each.

    Args:
        block: the eval-mode GhostBottleneck to convert.
        split_min_numel: threshold for the split path (``0`` always, a huge number never).
    """

    def __init__(self, block: GhostBottleneck, split_min_numel: int = 200_000) -> None:
        super().__init__()
        self.ghost1 = DeployGhostModule(block.ghost1)
        self.conv_dw = FusedConv2d.from_conv(block.conv_dw, block.bn_dw) if block.stride > 1 else None
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
        """Decide which execution paths fit this block (again on unpickling, so a model saved by
        an older ghostdet gets this version's paths)."""
        self.can_fuse_block = self._fusable()
        self.can_fuse_block_s2 = self._fusable_s2()
        self.can_fuse_block_se = self._fusable_se()
        # ghost2's primary is a 1x1 conv: it can take its input in parts (see concat_parts)
        self.ghost2_by_parts = self.ghost2.primary_conv.gemm_max_pixels > 0
        self.can_split = (
            not self.ghost1.needs_slice
            and self.ghost2_by_parts
            and (self.conv_dw is None or hasattr(self, "conv_dw_a"))
        )

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._plan()

    def forward(self, x: Tensor) -> Tensor:
        return self.run(x, _mkldnn_ok(x))

    def _ghosts_fit(self) -> bool:
        """Whether both Ghost modules fit the native fused kernels (``ghostdet/csrc/ghostblock.c``):
        1x1 primaries and 3x3 depthwise cheap ops (ReLU in ghost1 only), no channel slicing,
        channel counts multiples of 4, and at most ``FUSED_BLOCK_MAX_CHANNELS`` output channels
        (wider blocks are faster as separate GEMMs)."""
        p1, c1 = self.ghost1.primary_conv, self.ghost1.cheap_operation
        p2, c2 = self.ghost2.primary_conv, self.ghost2.cheap_operation
        m1, m2 = p1.weight.shape[0], p2.weight.shape[0]
        return (
            not self.ghost1.needs_slice
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
            and 2 * m2 <= FUSED_BLOCK_MAX_CHANNELS
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
        """The stride-1 fused kernel: no SE, identity shortcut."""
        return self._ghosts_fit() and self.conv_dw is None and self.se is None and self._identity_fits()

    def _fusable_s2(self) -> bool:
        """The stride-2 fused kernel: no SE, a conv shortcut (run separately)."""
        return self._ghosts_fit() and self._dw_fits() and self.se is None and self.shortcut_pw is not None

    def _fusable_se(self) -> bool:
        """The two-pass fused kernels for blocks with SE (front, gate, back), stride 1 or 2."""
        if self.se is None or not self._ghosts_fit():
            return False
        if self.conv_dw is not None:
            return self._dw_fits() and self.shortcut_pw is not None
        return self.shortcut_pw is not None or self._identity_fits()

    def _fused_weights(self) -> list[Tensor]:
        """The fused kernel's weights, from the modules' own derived-weight caches."""
        out = []
        for ghost in (self.ghost1, self.ghost2):
            p, c = ghost.primary_conv, ghost.cheap_operation
            out += [p._derived_weight("_gemm_weight", _flat_t), p.bias]
            out += [c._derived_weight("_native_weight", _flat_t), c.bias]
            if ghost is self.ghost1 and self.conv_dw is not None:
                out += [self.conv_dw._derived_weight("_native_weight", _flat_t), self.conv_dw.bias]
        return out

    def _run_fused_se(self, x: Tensor, fast: bool, band: int = 8) -> Tensor | None:
        """Front kernel (ghost1 [+ strided depthwise] and channel sums), the SE gate folded into
        ghost2's 1x1 weight per image, back kernel (ghost2 + residual); ``band`` rows per task."""
        w = self._fused_weights()
        nf = 4 if self.conv_dw is None else 6  # [w1t, b1, d1, bd1 (, dzt, dz)] | [w2t, b2, d2, bd2]
        k = 3 if self.conv_dw is None else self.conv_dw.weight.shape[-1]
        front = _native.ghost_front(x, w[:nf], 1 if self.conv_dw is None else 2, k, band)
        if front is None:
            return None
        z, sums = front
        gate = self.se.gate(sums / (z.shape[2] * z.shape[3]))
        if self.shortcut_pw is None:
            res = x
        else:
            res = self.shortcut_pw.apply_conv(self.shortcut_dw.apply_conv(x, fast), fast)
        return _native.ghost_back(z, res, [w[nf] * gate[:, :, None], *w[nf + 1 :]], band)

    def run(self, x: Tensor, fast: bool) -> Tensor:
        """``forward`` with oneDNN eligibility decided by the caller."""
        if fast and self.ghost1.cheap_operation.use_native:
            y = None
            if self.can_fuse_block:
                y = _native.ghost_block_s1(x, self._fused_weights())
            elif self.can_fuse_block_s2:
                res = self.shortcut_pw.apply_conv(self.shortcut_dw.apply_conv(x, fast), fast)
                y = _native.ghost_block_s2(x, res, self._fused_weights(), self.conv_dw.weight.shape[-1])
            elif self.can_fuse_block_se:
                y = self._run_fused_se(x, fast)
            if y is not None:
                return y
        # ghost1's primary conv keeps the map size (stride 1, "same" padding)
        # (only on the fast path: a traced/exported graph then has no size-dependent branch)
        split = fast and self.can_split and 2 * self.m * x.shape[2] * x.shape[3] >= self.split_min_numel
        if split:  # ghost1's halves are never concatenated
            a = self.ghost1.primary_conv.apply_conv(x, fast)
            b = self.ghost1.cheap_operation.apply_conv(a, fast)
            if self.conv_dw is not None:
                a, b = self.conv_dw_a.apply_conv(a, fast), self.conv_dw_b.apply_conv(b, fast)
            parts = [a, b]
        else:
            y = self.ghost1.concat(x, fast)
            if self.conv_dw is not None:
                y = self.conv_dw.apply_conv(y, fast)
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
        return self.shortcut_pw.apply_conv(self.shortcut_dw.apply_conv(x, fast), fast, other=out)


def _convert_stage(stage: nn.Module) -> nn.Module:
    layers = []
    for block in stage:
        if isinstance(block, GhostBottleneck):
            layers.append(DeployBottleneck(block))
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
    """Stem + blocks with oneDNN eligibility checked once; returns the last map and the tapped ones."""
    x = _to_channels_last(x)
    fast = _mkldnn_ok(x)
    x = stem.apply_conv(x, fast)
    out: OrderedDict[str, Tensor] = OrderedDict()
    for i, stage in enumerate(blocks):
        for block in stage:
            x = block.run(x, fast) if isinstance(block, DeployBottleneck) else block.apply_conv(x, fast)
        if taps is not None and i in taps:
            out[taps[i]] = x
    return x, out


class DeployGhostNet(nn.Module):
    """A :class:`GhostNet` classifier in deploy form (same outputs as the eval-mode model).

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


class DeployGhostNetFeatures(nn.Module):
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


def _fuse_generic(module: nn.Module) -> None:
    """Fuse Conv2d(+BN)(+ReLU) runs inside Sequentials and wrap lone Conv2d layers, in place."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Sequential):
            _fuse_sequential(child)
        elif isinstance(child, nn.Conv2d) and _fusable_conv(child):
            setattr(module, name, FusedConv2d.from_conv(child))
        elif isinstance(child, _BN_TYPES):
            continue  # a BatchNorm not preceded by a conv in a Sequential: left as is
        else:
            _fuse_generic(child)


def _fusable_conv(conv: nn.Conv2d) -> bool:
    return type(conv) is nn.Conv2d and isinstance(conv.padding, tuple) and conv.padding_mode == "zeros"


def _fuse_sequential(seq: nn.Sequential) -> None:
    keys = list(seq._modules.keys())
    i = 0
    while i < len(keys):
        m = seq._modules[keys[i]]
        if isinstance(m, nn.Conv2d) and _fusable_conv(m):
            j = i + 1
            bn = None
            if j < len(keys) and isinstance(seq._modules[keys[j]], _BN_TYPES):
                bn = seq._modules[keys[j]]
                j += 1
            relu = j < len(keys) and isinstance(seq._modules[keys[j]], nn.ReLU)
            if relu:
                j += 1
            seq._modules[keys[i]] = FusedConv2d.from_conv(m, bn, relu)
            # Keep the indices (and so the module names) of the original Sequential.
            for k in keys[i + 1 : j]:
                seq._modules[k] = nn.Identity()
            i = j
        else:
            if isinstance(m, nn.Sequential):
                _fuse_sequential(m)
            elif not isinstance(m, _BN_TYPES):
                _fuse_generic(m)
            i += 1


def _convert(module: nn.Module) -> nn.Module:
    if isinstance(module, GhostNet):
        return DeployGhostNet(module)
    if isinstance(module, GhostNetFeatures):
        return DeployGhostNetFeatures(module)
    if isinstance(module, GhostBottleneck):
        return DeployBottleneck(module)
    for name, child in list(module.named_children()):
        new = _convert(child)
        if new is not child:
            setattr(module, name, new)
    return module


def tune_malloc(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Keep freed memory in the process heap (glibc only), so big activations are not re-faulted.

    glibc returns large freed blocks to the OS (``mmap`` threshold, heap trimming), and each
    new activation of the next image then costs a page fault per 4 KiB. GhostNet's large
    early maps (e.g. 24 x 320 x 320 floats at 640x640 input) fall just above glibc's adaptive
    thresholds: measured here, ~5700 page faults per 640x640 image and ~25% of the backbone's
    time, while MobileNetV3, whose biggest map is larger, settles at zero. This is the in-process
    equivalent of the allocator advice in PyTorch's CPU performance guide (jemalloc/tcmalloc).
    It is process-wide and opt-in: call it once in an inference process.

    Args:
        mmap_threshold: blocks at least this large are still served by ``mmap`` (glibc's cap is
            32 MiB on 64-bit).
        trim_threshold: free memory kept at the top of the heap before returning it to the OS.

    Returns:
        True when the settings were applied (Linux with glibc), False otherwise.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's <malloc.h>
    return bool(
        mallopt(m_mmap_threshold, int(mmap_threshold)) and mallopt(m_trim_threshold, int(trim_threshold))
    )


def is_fused(model: nn.Module) -> bool:
    """True when ``model`` (or one of its submodules) was produced by :func:`fuse`."""
    return any(isinstance(m, (FusedConv2d, DeployGhostNet, DeployGhostNetFeatures)) for m in model.modules())


def fuse(
    model: nn.Module, inplace: bool = False, fuse_other_convs: bool = True, native_kernels: bool = True
) -> nn.Module:
    """Return a deploy-mode (inference-only) version of a GhostNet model.

    Works on a :class:`~ghostdet.models.GhostNet` classifier, a ``GhostNetFPN`` backbone (or its
    ``GhostNetFeatures`` body), a ``GhostBottleneck``, or any model containing them such as the
    torchvision Faster R-CNN / RetinaNet built by ``ghostdet``. See the module docstring for what
    changes. The result has no BatchNorm left in the GhostNet parts, its parameters do not
    require gradients and it is meant for ``torch.inference_mode()`` / ``torch.no_grad()``.

    Args:
        model: the model, in eval mode (``model.eval()``) — fusing uses BatchNorm running
            statistics, which only describe eval-mode behaviour, so a model (or any submodule)
            in training mode is rejected.
        inplace: by default a deep copy is converted and ``model`` is left untouched (it still
            trains exactly as before). With ``inplace=True`` the model's own submodules are
            replaced (cheaper on memory; the object can no longer be trained as before).
        fuse_other_convs: also fuse the non-GhostNet convolutions (FPN, RPN / RetinaNet heads,
            Conv-BN-ReLU runs in Sequentials) into prepacked oneDNN convs.
        native_kernels: run depthwise convolutions on ghostdet's own kernel (compiled on first
            use, see ``ghostdet._native``); it is built here, so a missing compiler is reported
            now (one warning) and oneDNN is used instead. ``False`` uses oneDNN throughout.

    Returns:
        The deploy model, in eval mode.

    Raises:
        RuntimeError: if ``model`` or one of its submodules is in training mode.
    """
    training = [name or type(model).__name__ for name, m in model.named_modules() if m.training]
    if training:
        raise RuntimeError(
            f"fuse() needs an eval-mode model, but {training[0]!r} is in training mode: call model.eval() "
            "first (BatchNorm folding uses running statistics, which only describe eval mode)"
        )
    if is_fused(model):
        raise RuntimeError("this model is already fused")
    # Build outside inference mode: parameters made inside it would be inference tensors, which
    # track no version, so later in-place weight changes could not be noticed.
    with torch.inference_mode(False):
        if not inplace:
            model = copy.deepcopy(model)
        model = _convert(model)
        if fuse_other_convs and not isinstance(model, (DeployGhostNet, DeployGhostNetFeatures)):
            if isinstance(model, nn.Sequential):
                _fuse_sequential(model)
            elif isinstance(model, nn.Conv2d):
                model = FusedConv2d.from_conv(model)
            else:
                _fuse_generic(model)
    for m in model.modules():
        if isinstance(m, FusedConv2d):
            m.use_native = native_kernels
    if native_kernels and any(
        isinstance(m, FusedConv2d) and (m.is_native_dw or m.is_native_stem) for m in model.modules()
    ):
        _native.load()
    model.eval()
    model.requires_grad_(False)
    return model
