"""Helpers shared by several test modules."""

from __future__ import annotations

import torch
from torch import nn


def randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine parameters (in place), so folding and
    weight loading are exercised; returns ``model`` in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
    return model.eval()


def detection_batch(empty_second: bool = False) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Two random 128x128 images with boxes: two objects in the first, one (or none) in the second."""
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 128, 128, generator=g), torch.rand(3, 128, 128, generator=g)]
    first = {
        "boxes": torch.tensor([[10.0, 20.0, 60.0, 70.0], [70.0, 64.0, 120.0, 110.0]]),
        "labels": torch.tensor([1, 2]),
    }
    if empty_second:
        second = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    else:
        second = {"boxes": torch.tensor([[30.0, 30.0, 90.0, 100.0]]), "labels": torch.tensor([3])}
    return images, [first, second]
