"""``ghostify``: swap the ordinary convolutions of any network for Ghost modules.

This is how the paper builds Ghost-VGG-16, Ghost-ResNet-56 and Ghost-ResNet-50 (Sec. 4.1):
each ordinary convolution becomes a :class:`~ghostdet.models.ghostnet.GhostModule` with the
same input/output channels, kernel, stride, padding and dilation, so the network's shapes and
everything around the convolutions stay as they were.

Design decisions:

* **Linear Ghost modules** (``relu=False``). A convolution is a linear map; its BatchNorm and
  activation follow it in the host network and are kept there. The replacement must therefore
  be linear too, or the host would get an extra nonlinearity per layer.
* **The Ghost module's own BatchNorms are kept.** The Ghost module of the reference
  implementation normalises the intrinsic maps (after the primary conv) and the ghost maps
  (after the cheap depthwise op) separately; this is part of the module, not of the host, so a
  converted ``conv -> BN -> ReLU`` becomes ``GhostModule(conv, BN | dwconv, BN) -> BN -> ReLU``.
  At inference all three BatchNorms fold into the convolutions. They add ``2 x out_channels``
  parameters per replaced layer. A replaced conv's bias is dropped: the inner BatchNorms' shifts
  give every output channel a bias already.
* **What is replaced**: modules whose type is exactly ``nn.Conv2d`` with ``groups == 1``.
  Grouped and depthwise convs (already cheap), ``nn.Conv2d`` subclasses (custom forward), convs
  with a ``padding_mode`` other than ``"zeros"``, and convs that already belong to a Ghost
  module are left alone; ``GhostifySummary.skipped`` says why for each. Non-square kernels,
  strides, paddings and dilations are supported (passed to the primary conv as tuples).
* **New weights**: the Ghost modules are freshly initialised; a pretrained conv's weights
  cannot be mapped onto them. Train (or fine-tune) the converted network.
* **Default skip list: none** — the paper says it replaces all convolutional layers, and its
  Ghost-VGG-16 figures are matched with everything replaced (see ``tools/paper_tables.py``).
  Its Ghost-ResNet-50 figures (13.0M / 2.2G at s=2) are only reproduced with the 7x7 stem kept
  dense (``skip="conv1"``) and the fc layer converted as well (as a 1x1 conv, see
  :func:`ghostdet.analysis.paper.fc_as_conv`); that is reported, not made the default. Pass e.g.
  ``skip=("conv1", "*.downsample.0")`` to keep the stem and the projection shortcuts dense.
  ``nn.Linear`` layers are never touched.
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Union

from torch import nn

from ghostdet.errors import ArgumentError
from ghostdet.models.ghostnet import GhostModule
from ghostdet.utils.counting import InputSize, count_macs, count_params, input_shape

__all__ = ["GhostifySummary", "ghostify", "is_replaceable"]

SkipSpec = Union[str, Sequence[str], None]


@dataclass
class GhostifySummary:
    """What :func:`ghostify` did.

    Attributes:
        replaced: names of the convolutions that became Ghost modules, in module order.
        skipped: name -> reason for every ``nn.Conv2d`` (or subclass) left as it was.
        params_before / params_after: parameter counts of the original and converted model.
        macs_before / macs_after: paper-convention MACs at ``input_size`` (``None`` when
            ``input_size`` was ``None``).
        input_size: the ``(N, C, H, W)`` the MACs are for.
    """

    replaced: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    params_before: int = 0
    params_after: int = 0
    macs_before: int | None = None
    macs_after: int | None = None
    input_size: tuple[int, ...] | None = None

    @property
    def num_replaced(self) -> int:
        return len(self.replaced)

    def __str__(self) -> str:
        lines = [
            f"replaced {self.num_replaced} conv layers, skipped {len(self.skipped)}",
            f"params: {self.params_before / 1e6:.3f}M -> {self.params_after / 1e6:.3f}M",
        ]
        if self.macs_before is not None and self.macs_after is not None:
            lines.append(
                f"MACs @ {'x'.join(map(str, self.input_size or ()))}: "
                f"{self.macs_before / 1e6:.1f}M -> {self.macs_after / 1e6:.1f}M"
            )
        lines += [f"  kept {name}: {why}" for name, why in self.skipped.items()]
        return "\n".join(lines)


def _pair_or_int(v: int | tuple[int, ...]) -> int | tuple[int, ...]:
    if isinstance(v, tuple):
        return v[0] if all(x == v[0] for x in v) else v
    return v


def is_replaceable(conv: nn.Module) -> str | None:
    """``None`` if ``conv`` can become a Ghost module, otherwise the reason why not."""
    if type(conv) is not nn.Conv2d:
        if isinstance(conv, nn.Conv2d):
            return f"{type(conv).__name__} is a Conv2d subclass with its own forward"
        return "not an nn.Conv2d"
    if conv.groups != 1:
        kind = "depthwise" if conv.groups == conv.in_channels else "grouped"
        return f"{kind} conv (groups={conv.groups})"
    if conv.padding_mode != "zeros":
        return f"padding_mode={conv.padding_mode!r} (Ghost modules pad with zeros)"
    return None


def _matches(name: str, pattern: str) -> bool:
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(name, pattern)
    return name == pattern or name.startswith(pattern + ".")


def _ghost_from_conv(conv: nn.Conv2d, ratio: int, dw_size: int) -> GhostModule:
    padding = conv.padding if isinstance(conv.padding, str) else _pair_or_int(conv.padding)
    module = GhostModule(
        conv.in_channels,
        conv.out_channels,
        kernel_size=_pair_or_int(conv.kernel_size),  # type: ignore[arg-type]
        ratio=ratio,
        dw_size=dw_size,
        stride=_pair_or_int(conv.stride),  # type: ignore[arg-type]
        relu=False,
        padding=padding,  # type: ignore[arg-type]
        dilation=_pair_or_int(conv.dilation),  # type: ignore[arg-type]
    )
    module.to(device=conv.weight.device, dtype=conv.weight.dtype)
    module.train(conv.training)
    return module


def ghostify(
    model: nn.Module,
    ratio: int = 2,
    dw_size: int = 3,
    skip: SkipSpec = (),
    inplace: bool = False,
    input_size: InputSize | None = None,
) -> tuple[nn.Module, GhostifySummary]:
    """Replace every plain ``nn.Conv2d`` (``groups == 1``) of ``model`` with a linear GhostModule.

    Args:
        model: any network.
        ratio: the paper's ``s`` (integer >= 2): ``1/s`` of the output maps come from the
            primary conv, the rest from cheap depthwise ops.
        dw_size: the paper's ``d`` (odd integer >= 1), kernel of the cheap depthwise ops.
        skip: module names to keep dense. An entry matches a conv whose name equals it or
            starts with ``entry + "."`` (a prefix of whole name components, e.g. ``"layer1"``),
            or, if it contains ``*``, ``?`` or ``[``, as an ``fnmatch`` pattern (e.g.
            ``"*.downsample.0"``). Every entry must match at least one module name.
        inplace: convert ``model`` itself; by default a deep copy is converted and ``model``
            is left untouched.
        input_size: if given, the summary reports MACs before/after at this input size (see
            :func:`ghostdet.utils.counting.input_shape`, e.g. ``32`` or ``(1, 3, 224, 224)``).

    Returns:
        ``(converted_model, summary)``.

    Raises:
        ValueError: bad ``ratio``/``dw_size``, ``skip`` entries that match no module, or a
            ``skip`` that is not a string or a sequence of strings.
        TypeError: ``model`` is not an ``nn.Module``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"ghostify expects an nn.Module, got {type(model).__name__}")
    if isinstance(ratio, bool) or not isinstance(ratio, int) or ratio < 2:
        raise ArgumentError(f"ratio must be an integer >= 2, got {ratio!r}", argument="ratio")
    if isinstance(dw_size, bool) or not isinstance(dw_size, int) or dw_size < 1 or dw_size % 2 == 0:
        raise ArgumentError(f"dw_size must be an odd positive integer, got {dw_size!r}", argument="dw_size")
    if skip is None:
        skip = ()
    elif isinstance(skip, str):
        skip = (skip,)
    skip = tuple(skip)
    if not all(isinstance(s, str) and s for s in skip):
        raise ArgumentError(
            f"skip must be a module name/pattern or a sequence of them, got {skip!r}", argument="skip"
        )
    all_names = [n for n, _ in model.named_modules() if n]
    unmatched = [s for s in skip if not any(_matches(n, s) for n in all_names)]
    if unmatched:
        raise ArgumentError(
            f"skip entries match no module of {type(model).__name__}: {unmatched}", argument="skip"
        )

    summary = GhostifySummary(params_before=count_params(model))
    if input_size is not None:
        summary.input_size = input_shape(input_size)
        summary.macs_before = count_macs(model, input_size)
    target = model if inplace else copy.deepcopy(model)

    inside_ghost: set[str] = set()
    for name, module in target.named_modules():
        if isinstance(module, GhostModule):
            inside_ghost.update(f"{name}.{sub}" if name else sub for sub, _ in module.named_modules() if sub)

    to_replace: list[tuple[str, nn.Conv2d]] = []
    for name, module in target.named_modules():
        if not isinstance(module, nn.Conv2d):
            continue
        reason = is_replaceable(module)
        if reason is None and name in inside_ghost:
            reason = "already part of a GhostModule"
        if reason is None and any(_matches(name, s) for s in skip):
            reason = "in skip list"
        if reason is None:
            to_replace.append((name, module))
        else:
            summary.skipped[name] = reason

    for name, conv in to_replace:
        ghost = _ghost_from_conv(conv, ratio, dw_size)
        if not name:  # the model is itself a single conv
            target = ghost
        else:
            parent_name, _, attr = name.rpartition(".")
            setattr(target.get_submodule(parent_name) if parent_name else target, attr, ghost)
        summary.replaced.append(name)

    summary.params_after = count_params(target)
    if input_size is not None:
        summary.macs_after = count_macs(target, input_size)
    return target, summary
