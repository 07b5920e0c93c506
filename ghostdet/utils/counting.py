"""Parameter and multiply-add (MAC) counting.

Two MAC conventions are reported, because they disagree:

* **paper convention** (:func:`count_macs`): only the multiply-adds of convolutions and fully
  connected layers, the way the GhostNet paper, the MobileNet papers and torchvision's weight
  metadata count "FLOPs". ``Conv2d``: ``output elements * (in_channels / groups) * kh * kw``;
  ``Linear``: ``output elements * in_features``. Bias adds, BatchNorm, activations, pooling,
  SE gating products and residual additions are not counted.
* **thop** (:func:`thop_macs`): the ``thop`` package counts the same conv/linear MACs plus
  BatchNorm (2 ops per element), average pooling and a few others, so its number is higher.
  thop registers ``total_ops``/``total_params`` buffers on the modules it profiles and does not
  remove all of them; it is therefore always run on a deep copy, and the caller's model (and
  its ``state_dict``) is left untouched.

Counts are for one forward pass of an input of the given size (batch included; the default
batch is 1). Operations called through ``torch.nn.functional`` instead of a module are not seen
by the hooks and are not counted.

This is the lowest layer of :mod:`ghostdet.analysis`: it imports nothing of ghostdet, so
model transforms such as :func:`ghostdet.ghostify` can count with it.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, Union

import torch
from torch import Tensor, nn

from ghostdet.errors import ArgumentError

__all__ = [
    "InputSize",
    "Profile",
    "count_macs",
    "count_params",
    "input_shape",
    "layer_macs",
    "profile",
    "split_macs",
    "thop_macs",
]

InputSize = Union[int, Sequence[int]]


def input_shape(input_size: InputSize) -> tuple[int, int, int, int]:
    """Normalise an input size to ``(N, C, H, W)``.

    Args:
        input_size: ``S`` (a 1x3xSxS image), ``(H, W)`` (1x3xHxW), ``(C, H, W)`` or
            ``(N, C, H, W)``. All entries must be positive integers.
    """
    if isinstance(input_size, bool):
        raise ArgumentError(
            f"input_size must be an int or a sequence of ints, got {input_size!r}", argument="input_size"
        )
    if isinstance(input_size, int):
        dims: tuple[int, ...] = (1, 3, input_size, input_size)
    else:
        try:
            dims = tuple(input_size)
        except TypeError:
            raise ArgumentError(
                f"input_size must be an int or a sequence of ints, got {input_size!r}", argument="input_size"
            ) from None
        if len(dims) == 2:
            dims = (1, 3, *dims)
        elif len(dims) == 3:
            dims = (1, *dims)
        elif len(dims) != 4:
            raise ArgumentError(
                f"input_size must have 1, 2, 3 or 4 entries, got {input_size!r}", argument="input_size"
            )
    if not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims):
        raise ArgumentError(
            f"input_size entries must be positive integers, got {input_size!r}", argument="input_size"
        )
    return dims  # type: ignore[return-value]


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (shared parameters counted once; buffers are not parameters).

    Args:
        model: any module.
        trainable_only: count only parameters with ``requires_grad``.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _module_macs(module: nn.Module, inp: Tensor, out: Tensor) -> int:
    """Paper-convention multiply-adds of one call of a conv/linear module."""
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        # Every input element is multiplied with (out_channels / groups) * prod(kernel) weights.
        return inp.numel() * (module.out_channels // module.groups) * math.prod(module.kernel_size)
    if isinstance(module, nn.modules.conv._ConvNd):
        return out.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    raise TypeError(f"no MAC rule for {type(module).__name__}")


_COUNTED = (nn.modules.conv._ConvNd, nn.Linear)


def _make_input(model: nn.Module, input_size: InputSize) -> Tensor:
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    gen = torch.Generator().manual_seed(0)
    return torch.randn(input_shape(input_size), generator=gen).to(device=device, dtype=dtype)


def _run_eval(model: nn.Module, x: Tensor) -> Any:
    """Forward ``x`` in eval mode without gradients, restoring every module's training flag."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            return model(x)
    finally:
        for m, training in flags:
            m.training = training


def layer_macs(
    model: nn.Module, input_size: InputSize = (1, 3, 224, 224), inputs: Any = None
) -> OrderedDict[str, int]:
    """Paper-convention MACs of every conv/linear module, keyed by module name.

    The model is run once in eval mode under ``torch.no_grad()`` (BatchNorm statistics are not
    updated; each module's training flag is restored afterwards). Forward hooks are removed
    before returning, so the model is unchanged. A module called several times is summed;
    modules that are never called are absent.

    Args:
        model: the network; its forward must accept one ``(N, C, H, W)`` tensor (or ``inputs``).
        input_size: see :func:`input_shape`.
        inputs: what to call the model with instead of a random ``input_size`` tensor, e.g. a
            detector's list of CHW images (its own transform then sets the size).
    """
    counts: OrderedDict[str, int] = OrderedDict()
    handles = []

    def hook(name: str, module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        counts[name] = counts.get(name, 0) + _module_macs(module, args[0], out)

    for name, module in model.named_modules():
        if isinstance(module, _COUNTED):
            handles.append(module.register_forward_hook(partial(hook, name)))
    try:
        _run_eval(model, _make_input(model, input_size) if inputs is None else inputs)
    finally:
        for h in handles:
            h.remove()
    return counts


def count_macs(model: nn.Module, input_size: InputSize = (1, 3, 224, 224), inputs: Any = None) -> int:
    """Paper-convention multiply-adds (conv + linear only) of one forward pass.

    Args:
        model: the network; its forward must accept one ``(N, C, H, W)`` tensor (or ``inputs``).
        input_size: see :func:`input_shape`; default one 224x224 RGB image.
        inputs: what to call the model with instead (see :func:`layer_macs`).
    """
    return sum(layer_macs(model, input_size, inputs).values())


def split_macs(
    model: nn.Module, input_size: InputSize, parts: Sequence[str] = ("body", "fpn")
) -> dict[str, int]:
    """Paper-convention MACs split by top-level submodule, e.g. a detection backbone's body/fpn.

    Works for :class:`ghostdet.models.GhostNetFPN` and torchvision's ``BackboneWithFPN`` (both
    have ``.body`` and ``.fpn``).

    Args:
        model: the network.
        input_size: see :func:`input_shape`.
        parts: submodule names; MACs of layers outside them go to ``"other"``.

    Returns:
        ``{part: macs, ..., "other": macs, "total": macs}``.
    """
    for part in parts:
        if not isinstance(getattr(model, part, None), nn.Module):
            raise ArgumentError(f"{type(model).__name__} has no submodule {part!r}", argument="parts")
    result = dict.fromkeys(parts, 0)
    result["other"] = 0
    for name, macs in layer_macs(model, input_size).items():
        top = name.split(".", 1)[0]
        result[top if top in parts else "other"] += macs
    result["total"] = sum(result.values())
    return result


def thop_macs(model: nn.Module, input_size: InputSize = (1, 3, 224, 224)) -> int:
    """MACs as counted by ``thop.profile`` (conv/linear plus BatchNorm, pooling and a few more).

    thop is run on a deep copy, so the ``total_ops``/``total_params`` buffers it registers never
    reach ``model`` (or a ``state_dict`` saved from it).

    Args:
        model: the network (not modified).
        input_size: see :func:`input_shape`.
    """
    shadow = copy.deepcopy(model)
    x = _make_input(shadow, input_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # thop's own distutils deprecation warnings
        try:
            import thop
        except ImportError as e:  # pragma: no cover - thop is a hard dependency
            raise ImportError("thop is required for thop_macs: pip install thop") from e
        macs, _ = thop.profile(shadow, inputs=(x,), verbose=False)
    return round(float(macs))


@dataclass(frozen=True)
class Profile:
    """Static cost of a model for one input size.

    Attributes:
        input_size: ``(N, C, H, W)`` that was profiled.
        params: number of parameters.
        macs: paper-convention multiply-adds (conv + linear).
        thop_macs: thop's count (also BN, pooling, ...), or ``None`` if not computed.
    """

    input_size: tuple[int, int, int, int]
    params: int
    macs: int
    thop_macs: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def profile(model: nn.Module, input_size: InputSize = (1, 3, 224, 224), with_thop: bool = True) -> Profile:
    """Parameters, paper-convention MACs and (optionally) thop MACs of ``model``.

    Args:
        model: the network (not modified).
        input_size: see :func:`input_shape`.
        with_thop: also run thop (on a copy).
    """
    shape = input_shape(input_size)
    return Profile(
        input_size=shape,
        params=count_params(model),
        macs=count_macs(model, shape),
        thop_macs=thop_macs(model, shape) if with_thop else None,
    )
