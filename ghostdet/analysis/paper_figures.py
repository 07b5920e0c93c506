"""The published figures our counts are compared with, as data (no code).

Every entry is ``(params in millions, MACs in millions)``, ``None`` where the source gives no
figure. Unless noted, the source is the GhostNet paper (Han et al., CVPR 2020, arXiv:1911.11907).
The models are built and counted in :mod:`ghostdet.analysis.paper` (the paper's tables) and
:mod:`ghostdet.analysis.backbones` (the comparison table).
"""

from __future__ import annotations

from typing import Optional

Figures = tuple[Optional[float], Optional[float]]

# CIFAR-10, 32x32 inputs.
VGG16_CIFAR: Figures = (15, 313)
# Ghost-VGG-16 by ratio s at d=3; s=2 is also the row of the main CIFAR-10 table.
GHOST_VGG16_BY_RATIO: dict[int, Figures] = {2: (7.7, 158), 3: (5.2, 107), 4: (4.0, 80), 5: (3.3, 65)}
# Ghost-VGG-16 by cheap-op kernel d at s=2 (the ablation gives MACs only).
GHOST_VGG16_BY_KERNEL: dict[int, Figures] = {1: (None, 157), 3: (None, 158), 5: (None, 160), 7: (None, 163)}
RESNET56_CIFAR: Figures = (0.85, 125)
GHOST_RESNET56_CIFAR: Figures = (0.43, 63)

# ImageNet, 224x224 inputs.
RESNET50: Figures = (25.6, 4100)
GHOST_RESNET50_BY_RATIO: dict[int, Figures] = {2: (13.0, 2200), 4: (6.5, 1200)}
# The classifiers of ghostdet.analysis.BACKBONES: ghostdet's by (backbone family, width), the
# torchvision baselines by row name. GhostNet 1.1x has no ImageNet row in the paper; its 164M is
# from the COCO table. GhostNetV2 is from its paper (Tang et al., NeurIPS 2022, arXiv:2211.12905);
# GhostNetV3's rows carry no figures. The paper lists MobileNetV2 with 3.4M params (torchvision's
# model has 3.50M). MobileNetV3-Small is from the MobileNetV3 paper.
IMAGENET_FAMILIES: dict[tuple[str, float], Figures] = {
    ("ghostnet", 0.5): (2.6, 42),
    ("ghostnet", 1.0): (5.2, 141),
    ("ghostnet", 1.1): (None, 164),
    ("ghostnet", 1.3): (7.3, 226),
    ("ghostnetv2", 1.0): (6.1, 167),
    ("ghostnetv2", 1.3): (8.9, 271),
    ("ghostnetv2", 1.6): (12.3, 399),
}
IMAGENET_BASELINES: dict[str, Figures] = {
    "mobilenet_v2": (3.4, 300),
    "mobilenet_v3_large": (5.4, 219),
    "mobilenet_v3_small": (2.5, 56),
}
