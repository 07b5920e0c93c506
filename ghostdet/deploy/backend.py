"""The deploy convolution backend: :class:`FusedConv2d` and BatchNorm folding.

A :class:`FusedConv2d` is an inference-only convolution with its BatchNorm folded in, an optional
fused ReLU and an optional fused residual add. On CPU float32 it picks the cheapest kernel for its
shape: a prepacked oneDNN primitive, a BLAS GEMM for 1x1 convolutions on small maps, or one of
ghostdet's native kernels (:mod:`ghostdet.deploy.native`) for depthwise convolutions and the stem
(each kind where it beats oneDNN on this CPU: :func:`~ghostdet.deploy.native.kernel_pays_off`).
Weights derived for a kernel (oneDNN's blocked layout, the flattened ``(in, out)`` matrix) are
cached on the module behind :meth:`FusedConv2d.flat_weight` and rebuilt when the weight changes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import FrozenBatchNorm2d

from ghostdet.deploy import native
from ghostdet.deploy.plan import THRESHOLDS

__all__ = [
    "BN_TYPES",
    "DeployModule",
    "FusedConv2d",
    "check_image_batch",
    "fast_path_ok",
    "fold_bn",
]

BN_TYPES = (nn.BatchNorm2d, FrozenBatchNorm2d)
# FusedConv2d attributes holding weights derived for a kernel; never copied or pickled.
_CACHE_SLOTS = ("_packed", "_flat")


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
    if not isinstance(bn, BN_TYPES):
        raise TypeError(f"cannot fold {type(bn).__name__} into a convolution")
    mean, var = bn.running_mean.detach(), bn.running_var.detach()
    gamma = bn.weight.detach() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.detach() if bn.bias is not None else torch.zeros_like(mean)
    # Compute in float64 so the fold itself adds no measurable error.
    scale = gamma.double() * torch.rsqrt(var.double() + bn.eps)
    weight = (w.double() * scale.reshape(-1, 1, 1, 1)).to(w.dtype)
    bias = ((b.double() - mean.double()) * scale + beta.double()).to(w.dtype)
    return weight, bias


def fast_path_ok(x: Tensor) -> bool:
    """Whether the fast kernels (oneDNN, GEMM, native) may run for this input: a 4-d float32 CPU
    tensor outside autograd, tracing, scripting, ONNX export and ``torch.compile``."""
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


def _flat_t(w: Tensor) -> Tensor:
    """A conv weight ``(O, I, kh, kw)`` as a contiguous ``(I*kh*kw, O)``."""
    return w.flatten(1).t().contiguous()


def _pair(v: int | tuple[int, ...] | list[int]) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    return (int(v[0]), int(v[1]))


class DeployModule(nn.Module):
    """Base of the deploy modules: inference only, so ``.train()`` is refused (``.eval()`` is fine).

    Their BatchNorms are folded away and their parameters need no gradient: a fused model put in
    training mode would return losses and train nothing.
    """

    def train(self, mode: bool = True) -> DeployModule:
        if mode:
            raise RuntimeError(
                f"{type(self).__name__} is a deploy-mode (fused, inference-only) module and cannot train: "
                "train the eager model, then ghostdet.deploy.fuse() it again"
            )
        return super().train(False)


def check_image_batch(x: Tensor, channels: int, name: str) -> None:
    """Refuse an input that is not a 4-D ``(N, channels, H, W)`` batch, like the eager model's conv would.

    Args:
        x: the input.
        channels: the channels the first convolution takes.
        name: the model's name for the message.

    Raises:
        ValueError: naming the expected and the given shape.
    """
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} expects a tensor (N, {channels}, H, W), got a {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != channels:
        hint = " (add a batch dimension: x.unsqueeze(0))" if x.dim() == 3 and x.shape[0] == channels else ""
        raise ValueError(
            f"{name} expects a 4-D input (N, {channels}, H, W), got shape {tuple(x.shape)}{hint}"
        )


class FusedConv2d(DeployModule):
    """Inference-only Conv2d with a folded bias, optional fused ReLU and optional fused residual add.

    ``forward(x, other=None)`` returns ``relu?(conv(x) + bias [+ other])``. On CPU float32 it
    runs one oneDNN primitive on a weight prepacked on first use, a GEMM (1x1 convolutions on
    small maps) or a native kernel (depthwise convolutions, the stem); the derived weights are
    rebuilt when the weight changes and never saved in the state dict.

    Args:
        weight: convolution weight ``(out, in/groups, kh, kw)``.
        bias: bias ``(out,)``.
        stride: as for ``nn.Conv2d``.
        padding: as for ``nn.Conv2d`` (zero padding only).
        dilation: as for ``nn.Conv2d``.
        groups: as for ``nn.Conv2d``.
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
        self._packed: tuple[tuple, Tensor] | None = None  # oneDNN-layout weight, see _derived_weight
        self._flat: tuple[tuple, Tensor] | None = None  # see flat_weight
        # A 1x1 convolution on a small map runs as one GEMM: a oneDNN convolution call costs
        # ~25 us of set-up on this kind of CPU however small the map, a BLAS GEMM a few us.
        is_pointwise = (
            weight.shape[-2:] == (1, 1)
            and groups == 1
            and self.stride == [1, 1]
            and self.padding == [0, 0]
            and self.dilation == [1, 1]
        )
        self.gemm_max_pixels = THRESHOLDS.gemm_max_pixels if is_pointwise else 0
        # Depthwise convolutions run on ghostdet's own kernel (see ghostdet.deploy.native) when it
        # is available: no per-call set-up, and it can write into a channel slice of a wider tensor.
        self.is_native_dw = native.supports(weight, self.stride, self.padding, self.dilation, groups)
        # a dense conv on few input channels (the stem) also runs on a native kernel
        # (each kind only where it pays off on this CPU: native.kernel_pays_off, asked per call)
        self.is_native_stem = native.supports_stem(weight, self.stride, self.padding, self.dilation, groups)
        self.use_native = True

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
        w = self._parameters["weight"]  # = self.weight, without nn.Module.__getattr__ (~1.5 us)
        key = (w.data_ptr(), -1 if w.is_inference() else w._version, w.dtype, w.shape)
        cached = getattr(self, slot)
        if cached is None or cached[0] != key:
            cached = (key, build(w.detach()))
            setattr(self, slot, cached)
        return cached[1]

    def bias_t(self) -> Tensor:
        """``self.bias`` for the per-call path: the same tensor, without the ~1.5 us that
        ``nn.Module.__getattr__`` takes to find a parameter."""
        return self._parameters["bias"]  # type: ignore[return-value]

    def kernel_size(self) -> int:
        """The (square) kernel's size, ``weight.shape[-1]``."""
        return self._parameters["weight"].shape[-1]  # type: ignore[union-attr]

    def flat_weight(self) -> Tensor:
        """The weight ``(O, I, kh, kw)`` as a contiguous ``(I*kh*kw, O)``, cached: the GEMM's
        (in, out) matrix for a 1x1 conv, the native kernels' taps-major ``(k*k, C)`` for a
        depthwise conv and ``(Cin*k*k, Cout)`` for the stem."""
        return self._derived_weight("_flat", _flat_t)

    def _packed_weight(self, x: Tensor) -> Tensor:
        return self._derived_weight(
            "_packed",
            lambda w: torch.ops.mkldnn._reorder_convolution_weight(
                w, self.padding, self.stride, self.dilation, self.groups, list(x.shape)
            ),
        )

    def forward(self, x: Tensor, other: Tensor | None = None) -> Tensor:
        fast = fast_path_ok(x) and (other is None or fast_path_ok(other))
        return self.run(x, fast, other)

    def run(self, x: Tensor, fast: bool, other: Tensor | None = None, out: Tensor | None = None) -> Tensor:
        """``forward`` with the fast-path eligibility decided by the caller (checked once per
        model call by the deploy modules instead of once per convolution).

        With ``out`` (e.g. a channel slice of a wider channels_last tensor) the result is
        written there and ``out`` is returned; the native depthwise kernel writes it directly.
        """
        if (
            fast
            and other is None
            and self.use_native
            and (self.is_native_dw or self.is_native_stem)
            and native.kernel_pays_off(*self._native_call(x))
        ):
            wt, bias = self.flat_weight(), self.bias_t()
            k, s, p = self.kernel_size(), self.stride[0], self.padding[0]
            if self.is_native_dw:
                y = native.dwconv2d(x, wt, bias, k, s, p, self.relu, out, trusted_weights=True)
            else:
                y = native.stem_conv(x, wt, bias, k, s, p, self.relu)
                if y is not None and out is not None:
                    y = out.copy_(y)
            if y is not None:
                return y
        if out is not None and other is None and fast and self.gemm_fits(x):
            return self._gemm(x, None, out)
        y = self._conv(x, fast, other)
        if out is None:
            return y
        return out.copy_(y)

    def _native_call(self, x: Tensor) -> tuple[str, int]:
        """The native kernel kind of this conv and the multiply-adds of its call on ``x``."""
        n, c, h, w = x.shape
        k, s, p = self.kernel_size(), self.stride[0], self.padding[0]
        oh, ow = native.conv_out_size(h, k, s, p), native.conv_out_size(w, k, s, p)
        if self.is_native_dw:
            return "dwconv", n * oh * ow * c * k * k
        return "stem", n * oh * ow * c * k * k * self.bias_t().shape[0]

    def gemm_fits(self, x: Tensor) -> bool:
        """Whether this is a 1x1 convolution that runs as a GEMM on input ``x`` (a small map)."""
        return x.shape[0] * x.shape[2] * x.shape[3] <= self.gemm_max_pixels

    def _conv(self, x: Tensor, fast: bool, other: Tensor | None) -> Tensor:
        if not fast:
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
        wt, bias = self.flat_weight(), self.bias_t()
        n, c, h, width = x.shape
        x2 = x.permute(0, 2, 3, 1).reshape(-1, c)
        if out is not None:
            y = torch.addmm(bias, x2, wt, out=out.permute(0, 2, 3, 1).view(-1, wt.shape[1]))
            if self.relu:
                y.relu_()
            return out
        if other is None:
            y = torch.addmm(bias, x2, wt)
        else:
            y = torch.addmm(other.permute(0, 2, 3, 1).reshape(-1, wt.shape[1]), x2, wt).add_(bias)
        if self.relu:
            y.relu_()
        return y.view(n, h, width, -1).permute(0, 3, 1, 2)

    @property
    def _act(self) -> str:
        return "relu" if self.relu else "none"
