"""DFC attention, the long-range gate of GhostNetV2 (Tang et al., NeurIPS 2022, arXiv:2211.12905).

A Ghost module's output is multiplied by a gate computed at half resolution: the input is
average-pooled 2x2, sent through the module's own 1x1 projection and a decoupled fully connected
(DFC) pair of depthwise convs (1x5 along the width, then 5x1 along the height), squashed by a
sigmoid and upsampled (nearest) back to the output size. GhostNetV3 reuses the same gate.

The branch is a plain ``nn.Sequential`` stored as ``short_conv`` on its Ghost module, so the
parameter names are those of the authors' checkpoints: ``short_conv.0`` (projection),
``short_conv.2`` (1x5), ``short_conv.4`` (5x1) and BatchNorms at ``.1``, ``.3``, ``.5``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DFC_KERNEL", "dfc_branch", "dfc_gate"]

# Length of the horizontal and vertical depthwise kernels.
DFC_KERNEL = 5


def dfc_branch(in_chs: int, out_chs: int, kernel_size: int = 1, stride: int = 1) -> nn.Sequential:
    """The attention branch: projection conv + BN, 1xK depthwise + BN, Kx1 depthwise + BN.

    Args:
        in_chs: channels of the Ghost module's input.
        out_chs: channels of the Ghost module's output (the gate has one value per channel).
        kernel_size: kernel of the projection, the Ghost module's primary kernel.
        stride: stride of the projection, the Ghost module's primary stride.
    """
    k, p = DFC_KERNEL, DFC_KERNEL // 2
    return nn.Sequential(
        nn.Conv2d(in_chs, out_chs, kernel_size, stride, kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_chs),
        nn.Conv2d(out_chs, out_chs, (1, k), 1, (0, p), groups=out_chs, bias=False),
        nn.BatchNorm2d(out_chs),
        nn.Conv2d(out_chs, out_chs, (k, 1), 1, (p, 0), groups=out_chs, bias=False),
        nn.BatchNorm2d(out_chs),
    )


def dfc_gate(out: Tensor, branch: nn.Module, x: Tensor) -> Tensor:
    """Multiply a Ghost module's output by the DFC gate computed from its input.

    Args:
        out: the Ghost module's output, ``(N, out_chs, H, W)``.
        branch: the module's :func:`dfc_branch`.
        x: the Ghost module's input.
    """
    gate = torch.sigmoid(branch(F.avg_pool2d(x, kernel_size=2, stride=2)))
    return out * F.interpolate(gate, size=out.shape[-2:], mode="nearest")
