"""Generic conv/BatchNorm fusion for the torchvision parts of a model (FPN, RPN / RetinaNet heads).

Every ``Conv2d`` (+ ``BatchNorm2d`` / ``FrozenBatchNorm2d``) (+ ``ReLU``) run inside an
``nn.Sequential`` becomes one :class:`~ghostdet.deploy.backend.FusedConv2d`, the fused layers'
slots becoming ``nn.Identity`` so module names are kept; lone convolutions are wrapped as they are.
"""

from __future__ import annotations

from torch import nn

from ghostdet.deploy.backend import BN_TYPES, FusedConv2d

__all__ = ["fuse_convs"]


def fuse_convs(module: nn.Module) -> nn.Module:
    """Fuse the convolutions of ``module`` in place (see the module docstring) and return it; a
    lone ``Conv2d`` is returned as a new :class:`FusedConv2d`.

    Args:
        module: an eval-mode module; its BatchNorms' running statistics are folded.
    """
    if isinstance(module, nn.Sequential):
        _fuse_sequential(module)
    elif isinstance(module, nn.Conv2d):
        return FusedConv2d.from_conv(module)  # raises for a conv it cannot fuse
    else:
        _fuse_children(module)
    return module


def _fuse_children(module: nn.Module) -> None:
    """Fuse Conv2d(+BN)(+ReLU) runs inside Sequentials and wrap lone Conv2d layers, in place."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Sequential):
            _fuse_sequential(child)
        elif isinstance(child, nn.Conv2d) and _fusable_conv(child):
            setattr(module, name, FusedConv2d.from_conv(child))
        elif isinstance(child, BN_TYPES):
            continue  # a BatchNorm not preceded by a conv in a Sequential: left as is
        else:
            _fuse_children(child)


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
            if j < len(keys) and isinstance(seq._modules[keys[j]], BN_TYPES):
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
            elif not isinstance(m, BN_TYPES):
                _fuse_children(m)
            i += 1
