"""GhostNet (V1, V2, V3) classifiers, GhostNet-FPN detectors, CIFAR baselines and the model registry.

Importing this package imports every model module, which registers its builders (see
:mod:`ghostdet.models.registry`) and its backbone family (see :mod:`ghostdet.models.family`).
"""

from __future__ import annotations

from ghostdet.models.cifar import resnet56_cifar, vgg16_cifar
from ghostdet.models.detection import (
    fasterrcnn_ghostnet_320_fpn,
    fasterrcnn_ghostnet_fpn,
    fasterrcnn_ghostnetv2_320_fpn,
    fasterrcnn_ghostnetv2_fpn,
    fasterrcnn_ghostnetv3_320_fpn,
    fasterrcnn_ghostnetv3_fpn,
    retinanet_ghostnet_320_fpn,
    retinanet_ghostnet_fpn,
    retinanet_ghostnetv2_320_fpn,
    retinanet_ghostnetv2_fpn,
    retinanet_ghostnetv3_320_fpn,
    retinanet_ghostnetv3_fpn,
)
from ghostdet.models.family import (
    BackboneFamily,
    PretrainedWeights,
    get_family,
    list_families,
    register_family,
)
from ghostdet.models.fpn import GhostNetFeatures, GhostNetFPN, ghostnet_fpn_backbone
from ghostdet.models.ghostnet import (
    GHOSTNET,
    GHOSTNET_CFG,
    IMAGENET_URLS,
    ConvBnAct,
    GhostBottleneck,
    GhostModule,
    GhostNet,
    SqueezeExcite,
    ghost_cat,
    ghostnet,
    make_divisible,
)
from ghostdet.models.ghostnetv2 import (
    GHOSTNETV2,
    GhostNetV2,
    ghostnetv2,
    ghostnetv2_fpn_backbone,
)
from ghostdet.models.ghostnetv3 import (
    GHOSTNETV3,
    GhostNetV3,
    ghostnetv3,
    ghostnetv3_fpn_backbone,
)
from ghostdet.models.registry import ModelEntry, get_model, list_models, model_entry, register_model
from ghostdet.models.weights import WeightsMismatchError

__all__ = [
    "GHOSTNET",
    "GHOSTNETV2",
    "GHOSTNETV3",
    "GHOSTNET_CFG",
    "IMAGENET_URLS",
    "BackboneFamily",
    "ConvBnAct",
    "GhostBottleneck",
    "GhostModule",
    "GhostNet",
    "GhostNetFPN",
    "GhostNetFeatures",
    "GhostNetV2",
    "GhostNetV3",
    "ModelEntry",
    "PretrainedWeights",
    "SqueezeExcite",
    "WeightsMismatchError",
    "fasterrcnn_ghostnet_320_fpn",
    "fasterrcnn_ghostnet_fpn",
    "fasterrcnn_ghostnetv2_320_fpn",
    "fasterrcnn_ghostnetv2_fpn",
    "fasterrcnn_ghostnetv3_320_fpn",
    "fasterrcnn_ghostnetv3_fpn",
    "get_family",
    "get_model",
    "ghost_cat",
    "ghostnet",
    "ghostnet_fpn_backbone",
    "ghostnetv2",
    "ghostnetv2_fpn_backbone",
    "ghostnetv3",
    "ghostnetv3_fpn_backbone",
    "list_families",
    "list_models",
    "make_divisible",
    "model_entry",
    "register_family",
    "register_model",
    "resnet56_cifar",
    "retinanet_ghostnet_320_fpn",
    "retinanet_ghostnet_fpn",
    "retinanet_ghostnetv2_320_fpn",
    "retinanet_ghostnetv2_fpn",
    "retinanet_ghostnetv3_320_fpn",
    "retinanet_ghostnetv3_fpn",
    "vgg16_cifar",
]
