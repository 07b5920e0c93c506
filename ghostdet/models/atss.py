"""Adaptive training sample selection (ATSS) for torchvision's RetinaNet.

RetinaNet labels an anchor foreground when its IoU with a ground-truth box passes one fixed
threshold (0.5, torchvision's ``fg_iou_thresh``). Small or thin objects then get one or two
positives and large ones dozens. ATSS (Zhang et al., CVPR 2020, "Bridging the Gap Between
Anchor-based and Anchor-free Detection via Adaptive Training Sample Selection", arXiv
1912.02424) picks each object's positives from its own statistics instead: on every pyramid
level the ``topk`` anchors whose centres lie nearest the box centre are candidates; the candidates
whose IoU reaches the mean plus the standard deviation of the candidates' IoUs, and whose centre
lies inside the box, are positives; an anchor claimed by several boxes goes to the one it
overlaps most. Everything else is background (no ignored band). The paper's RetinaNet with
ATSS and one anchor per location matches or beats the nine-anchor RetinaNet.

:class:`ATSSRetinaNet` is torchvision's :class:`~torchvision.models.detection.RetinaNet` with
that assignment: same modules and parameter names (checkpoints load either way), same inference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models.detection import RetinaNet
from torchvision.ops import box_iou

from ghostdet.errors import ArgumentError

__all__ = ["ATSSRetinaNet", "atss_match"]


def atss_match(boxes: Tensor, anchors: Tensor, anchors_per_level: Sequence[int], topk: int = 9) -> Tensor:
    """ATSS assignment of ``anchors`` to ground-truth ``boxes``.

    Args:
        boxes: ``(M, 4)`` ground-truth boxes, ``x1, y1, x2, y2``.
        anchors: ``(N, 4)`` anchors of one image, the pyramid levels one after another.
        anchors_per_level: how many of ``anchors`` each level holds (they sum to ``N``).
        topk: candidates per level and box, by distance between centres (the paper: 9).

    Returns:
        ``(N,)`` int64: the index of the matched box for foreground anchors, -1 for background
        (torchvision's ``Matcher.BELOW_LOW_THRESHOLD``).
    """
    if sum(anchors_per_level) != anchors.shape[0]:
        raise ValueError(
            f"anchors_per_level sums to {sum(anchors_per_level)}, but there are {anchors.shape[0]} anchors"
        )
    if topk < 1:
        raise ArgumentError(f"topk must be >= 1, got {topk}", argument="topk")
    matched = torch.full((anchors.shape[0],), -1, dtype=torch.int64, device=anchors.device)
    if boxes.shape[0] == 0 or anchors.shape[0] == 0:
        return matched
    iou = box_iou(boxes, anchors)  # (M, N)
    anchor_centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    dist = torch.cdist((boxes[:, :2] + boxes[:, 2:]) / 2, anchor_centres)  # (M, N)
    candidates, start = [], 0
    for count in anchors_per_level:
        if count:
            nearest = dist[:, start : start + count].topk(min(topk, count), dim=1, largest=False).indices
            candidates.append(nearest + start)
        start += count
    cand = torch.cat(candidates, dim=1)  # (M, C)
    cand_iou = iou.gather(1, cand)
    spread = cand_iou.std(dim=1, keepdim=True) if cand.shape[1] > 1 else torch.zeros_like(cand_iou[:, :1])
    positive = cand_iou >= cand_iou.mean(dim=1, keepdim=True) + spread
    cx, cy = anchor_centres[cand, 0], anchor_centres[cand, 1]
    positive &= (cx > boxes[:, 0:1]) & (cx < boxes[:, 2:3]) & (cy > boxes[:, 1:2]) & (cy < boxes[:, 3:4])
    # an anchor claimed by several boxes goes to the one it overlaps most
    claimed = torch.full_like(iou, -1.0)
    rows = torch.arange(boxes.shape[0], device=boxes.device)[:, None].expand_as(cand)
    claimed[rows[positive], cand[positive]] = cand_iou[positive]
    best_iou, best_box = claimed.max(dim=0)
    return torch.where(best_iou >= 0, best_box, matched)


class ATSSRetinaNet(RetinaNet):
    """torchvision's RetinaNet trained with ATSS assignment (:func:`atss_match`).

    Args:
        *args: as for :class:`~torchvision.models.detection.RetinaNet`.
        atss_topk: candidate anchors per level and box (the paper: 9).
        **kwargs: as for :class:`~torchvision.models.detection.RetinaNet` (``fg_iou_thresh`` and
            ``bg_iou_thresh`` are unused: ATSS sets each box's threshold itself).
    """

    def __init__(self, *args: Any, atss_topk: int = 9, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if atss_topk < 1:
            raise ArgumentError(f"atss_topk must be >= 1, got {atss_topk}", argument="atss_topk")
        self.atss_topk = atss_topk
        self._grid_sizes: list[tuple[int, int]] = []
        self.head.register_forward_pre_hook(self._record_grid_sizes)

    def _record_grid_sizes(self, module: nn.Module, args: tuple[list[Tensor]]) -> None:
        self._grid_sizes = [tuple(f.shape[-2:]) for f in args[0]]

    def compute_loss(
        self, targets: list[dict[str, Tensor]], head_outputs: dict[str, Tensor], anchors: list[Tensor]
    ) -> dict[str, Tensor]:
        per_location = self.anchor_generator.num_anchors_per_location()
        counts = [h * w * a for (h, w), a in zip(self._grid_sizes, per_location)]
        matched_idxs = [
            atss_match(t["boxes"], anchors_per_image, counts, self.atss_topk)
            for anchors_per_image, t in zip(anchors, targets)
        ]
        return self.head.compute_loss(targets, head_outputs, anchors, matched_idxs)
