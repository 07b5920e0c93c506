"""GhostNet classifiers, GhostNet-FPN detectors and a small name lookup."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from torch import nn

from ghostdet.models.detection import (
    GhostNetFeatures,
    GhostNetFPN,
    fasterrcnn_ghostnet_320_fpn,
    fasterrcnn_ghostnet_fpn,
    ghostnet_fpn_backbone,
    retinanet_ghostnet_fpn,
)
from ghostdet.models.ghostnet import (
    GHOSTNET_CFG,
    ConvBnAct,
    GhostBottleneck,
    GhostModule,
    GhostNet,
    SqueezeExcite,
    ghostnet,
    make_divisible,
)
from ghostdet.models.weights import IMAGENET_URLS, WeightsMismatchError

__all__ = [
    "GHOSTNET_CFG",
    "IMAGENET_URLS",
    "ConvBnAct",
    "GhostBottleneck",
    "GhostModule",
    "GhostNet",
    "GhostNetFPN",
    "GhostNetFeatures",
    "SqueezeExcite",
    "WeightsMismatchError",
    "fasterrcnn_ghostnet_320_fpn",
    "fasterrcnn_ghostnet_fpn",
    "get_model",
    "ghostnet",
    "ghostnet_fpn_backbone",
    "list_models",
    "make_divisible",
    "retinanet_ghostnet_fpn",
]

_MODELS: dict[str, Callable[..., nn.Module]] = {
    "ghostnet_050": partial(ghostnet, width=0.5),
    "ghostnet_100": partial(ghostnet, width=1.0),
    "ghostnet_110": partial(ghostnet, width=1.1),
    "ghostnet_130": partial(ghostnet, width=1.3),
    "fasterrcnn_ghostnet_fpn": fasterrcnn_ghostnet_fpn,
    "fasterrcnn_ghostnet_320_fpn": fasterrcnn_ghostnet_320_fpn,
    "retinanet_ghostnet_fpn": retinanet_ghostnet_fpn,
}


def list_models() -> list[str]:
    """Names accepted by :func:`get_model`, sorted."""
    return sorted(_MODELS)


def get_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a model by name.

    Args:
        name: one of :func:`list_models`.
        **kwargs: passed to the builder (e.g. ``weights``, ``num_classes``, ``width``).
    """
    try:
        builder = _MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}") from None
    return builder(**kwargs)
