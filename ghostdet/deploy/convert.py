"""The public entry of deploy mode: :func:`fuse` walks a model and converts its parts.

The parts the backbone families declare convertible (``BackboneFamily.deploy``, see
:mod:`ghostdet.deploy.conversions`: GhostNet V1/V2/V3 classifiers, feature trunks and
bottlenecks) become the modules their family names (those of :mod:`ghostdet.deploy.ghost`); the
remaining torchvision convolutions are fused by :mod:`ghostdet.deploy.convfuse`; the native
kernels are built here when the model uses them.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ghostdet.deploy import native
from ghostdet.deploy.backend import FusedConv2d
from ghostdet.deploy.conversions import family_converter
from ghostdet.deploy.convfuse import fuse_convs
from ghostdet.deploy.ghost import DeployGhostNet, DeployGhostNetFeatures

__all__ = ["fuse", "is_fused"]


def _convert(module: nn.Module) -> nn.Module:
    """``module`` converted by the converter its family declares, else with its children converted."""
    convert = family_converter(module)
    if convert is not None:
        return convert(module)
    for name, child in list(module.named_children()):
        new = _convert(child)
        if new is not child:
            setattr(module, name, new)
    return module


def is_fused(model: nn.Module) -> bool:
    """True when ``model`` (or one of its submodules) was produced by :func:`fuse`."""
    return any(isinstance(m, (FusedConv2d, DeployGhostNet, DeployGhostNetFeatures)) for m in model.modules())


def fuse(
    model: nn.Module,
    inplace: bool = False,
    fuse_other_convs: bool = True,
    native_kernels: bool | None = None,
) -> nn.Module:
    """Return a deploy-mode (inference-only) version of a GhostNet model.

    Works on a :class:`~ghostdet.models.GhostNet` classifier (or a GhostNetV2 / GhostNetV3 one), a
    ``GhostNetFPN`` backbone (or its ``GhostNetFeatures`` body), a ``GhostBottleneck`` (or a V3
    one), or any model containing them such as the torchvision Faster R-CNN / RetinaNet built by
    ``ghostdet``. GhostNetV3's branches are re-parameterised into one conv per op (the copy's,
    or with ``inplace=True`` the model's own) and then run on V1's deploy path; GhostNetV2/V3's
    DFC gates run with folded BatchNorms. The package docstring
    (:mod:`ghostdet.deploy`) says what changes. The result has no BatchNorm left in the GhostNet
    parts, its parameters do not require gradients and it is meant for
    ``torch.inference_mode()`` / ``torch.no_grad()``.

    Args:
        model: the model, in eval mode (``model.eval()``) — fusing uses BatchNorm running
            statistics, which only describe eval-mode behaviour, so a model (or any submodule)
            in training mode is rejected.
        inplace: by default a deep copy is converted and ``model`` is left untouched (it still
            trains exactly as before). With ``inplace=True`` the model's own submodules are
            replaced (cheaper on memory; the object can no longer be trained as before).
        fuse_other_convs: also fuse the non-GhostNet convolutions (FPN, RPN / RetinaNet heads,
            Conv-BN-ReLU runs in Sequentials) into prepacked oneDNN convs.
        native_kernels: run depthwise convolutions, the stem and the narrow bottlenecks on
            ghostdet's own kernels (compiled on first use, see :mod:`ghostdet.deploy.native`);
            they are built here, so a missing compiler is reported now (one warning) and oneDNN
            is used instead. ``False`` uses oneDNN throughout. ``None`` (default) or ``True``:
            each kind of kernel where it pays off on this CPU
            (:func:`ghostdet.deploy.native.kernel_choice`: all of them with AVX-512; with AVX2 the
            fused blocks and the smaller depthwise calls, the stem and large depthwise calls stay
            on oneDNN); ``GHOSTDET_NATIVE=1`` forces every kind on, ``GHOSTDET_NATIVE=0`` off.

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
            model = fuse_convs(model)
    if native_kernels is None:
        native_kernels = native.pays_off()
    for m in model.modules():
        if isinstance(m, FusedConv2d):
            m.use_native = native_kernels
    if native_kernels and any(
        isinstance(m, FusedConv2d) and (m.is_native_dw or m.is_native_stem) for m in model.modules()
    ):
        native.load()
    model.eval()
    model.requires_grad_(False)
    return model
