"""RetinaNet head, anchors and extra FPN levels with the options that matter on small inputs.

torchvision's :class:`~torchvision.models.detection.retinanet.RetinaNetHead` always stacks four
3x3 convs per branch and runs them on every pyramid level; at 128-320 px inputs that shared head,
not the trunk, is most of the detector's compute. :func:`retinanet_head` builds the same module
(same parameter names, so checkpoints and ONNX export work unchanged) with a chosen depth,
optional GroupNorm (as torchvision's ``retinanet_resnet50_fpn_v2``), optionally depthwise-separable
convs, the box loss, the classification loss and the classification prior.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.ops import (
    complete_box_iou_loss,
    distance_box_iou_loss,
    generalized_box_iou_loss,
    sigmoid_focal_loss,
)
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock

from ghostdet.errors import ArgumentError

__all__ = [
    "BOX_LOSSES",
    "CLS_LOSSES",
    "BatchedLossHead",
    "NoExtraLevels",
    "retinanet_anchors",
    "retinanet_head",
]

#: box regression losses of torchvision's RetinaNet (``_box_loss``).
BOX_LOSSES = ("l1", "smooth_l1", "giou", "ciou", "diou")

#: classification losses of :class:`BatchedLossHead`: ``focal`` (the RetinaNet paper's, on 0/1
#: targets) or ``qfl``, the quality focal loss of GFL (Li et al., NeurIPS 2020), whose target
#: for a foreground anchor's class is the IoU of its predicted box with its object.
CLS_LOSSES = ("focal", "qfl")


def retinanet_head(
    in_channels: int,
    num_anchors: int,
    num_classes: int,
    num_convs: int = 4,
    group_norm: int | None = None,
    box_loss: str = "l1",
    prior_probability: float = 0.01,
    separable: bool = False,
    separable_kernel: int = 3,
    cls_loss: str = "focal",
) -> RetinaNetHead:
    """A torchvision RetinaNet head with ``num_convs`` convs per branch.

    Args:
        in_channels: FPN channels.
        num_anchors: anchors per location.
        num_classes: classes of the classification branch.
        num_convs: 3x3 conv + ReLU layers before each branch's predictor (0-4; torchvision: 4).
        group_norm: GroupNorm groups after each of those convs (torchvision's v2 head: 32);
            ``None`` for none (the original head).
        box_loss: one of :data:`BOX_LOSSES` (torchvision's v1 head: ``"l1"``, v2: ``"giou"``).
        prior_probability: initial foreground probability of every anchor (the focal loss
            paper: 0.01); sets the classification bias.
        separable: each of the ``num_convs`` layers is a depthwise 3x3 conv followed by a 1x1
            conv (then the norm and ReLU) instead of a full 3x3 conv: ~1/8 of the multiply-adds
            at 128 channels. The predictors (``cls_logits``, ``bbox_reg``) stay 3x3 convs.
        separable_kernel: kernel of those depthwise convs (odd; 5 widens each branch's receptive
            field for a few more multiply-adds).
        cls_loss: one of :data:`CLS_LOSSES` (see :class:`BatchedLossHead`).
    """
    if not 0 <= num_convs <= 4:
        raise ArgumentError(f"num_convs must be in 0..4, got {num_convs}", argument="num_convs")
    if box_loss not in BOX_LOSSES:
        raise ArgumentError(
            f"box_loss must be one of {', '.join(BOX_LOSSES)}, got {box_loss!r}", argument="box_loss"
        )
    if not 0.0 < prior_probability < 1.0:
        raise ArgumentError(
            f"prior_probability must be in (0, 1), got {prior_probability}", argument="prior_probability"
        )
    if separable_kernel < 1 or separable_kernel % 2 == 0:
        raise ArgumentError(
            f"separable_kernel must be odd and >= 1, got {separable_kernel}", argument="separable_kernel"
        )
    if group_norm is not None and (group_norm < 1 or in_channels % group_norm):
        raise ArgumentError(
            f"group_norm={group_norm} groups do not divide in_channels={in_channels}", argument="group_norm"
        )
    norm_layer = None if group_norm is None else partial(nn.GroupNorm, group_norm)
    head = BatchedLossHead(in_channels, num_anchors, num_classes, norm_layer=norm_layer, cls_loss=cls_loss)
    for branch in (head.classification_head, head.regression_head):
        branch.conv = branch.conv[:num_convs]
        if separable:
            layers = [_separable_layer(in_channels, norm_layer, separable_kernel) for _ in range(num_convs)]
            branch.conv = nn.Sequential(*layers)
    nn.init.constant_(
        head.classification_head.cls_logits.bias, -math.log((1 - prior_probability) / prior_probability)
    )
    head.regression_head._loss_type = box_loss
    return head


class BatchedLossHead(RetinaNetHead):
    """torchvision's RetinaNet head with its training loss computed for the whole batch at once.

    torchvision's head loops over the images, building a zero target of every anchor and class
    and a focal loss per image; this computes the same two losses (each image's sum over its
    foreground anchors' count, averaged over the images) in a few batched ops, ~3x faster at
    batch 8. Same modules and parameter names as :class:`RetinaNetHead`; ``forward`` is its own.

    Args:
        *args, **kwargs: as for :class:`RetinaNetHead`.
        cls_loss: ``"focal"`` (torchvision's sigmoid focal loss, alpha 0.25, gamma 2, on 0/1
            targets) or ``"qfl"``: the quality focal loss ``BCE(p, y) * |p - y| ** 2`` whose target
            ``y`` is, for a foreground anchor's class, the IoU of its predicted box with its
            object (no gradient through that IoU) and 0 elsewhere, so the score ranks boxes by
            their localisation as well as their class (GFL, Li et al., NeurIPS 2020). Either is
            summed over the non-ignored anchors and divided by the image's foreground count.
    """

    def __init__(self, *args: Any, cls_loss: str = "focal", **kwargs: Any) -> None:
        if cls_loss not in CLS_LOSSES:
            raise ArgumentError(
                f"cls_loss must be one of {', '.join(CLS_LOSSES)}, got {cls_loss!r}", argument="cls_loss"
            )
        super().__init__(*args, **kwargs)
        self.cls_loss = cls_loss

    def compute_loss(
        self,
        targets: list[dict[str, Tensor]],
        head_outputs: dict[str, Tensor],
        anchors: list[Tensor],
        matched_idxs: list[Tensor],
    ) -> dict[str, Tensor]:
        cls_logits, bbox_regression = head_outputs["cls_logits"], head_outputs["bbox_regression"]
        matched = torch.stack(matched_idxs)  # (B, N): box index, -1 background, -2 ignored
        num_images = matched.shape[0]
        per_image = [len(t["boxes"]) for t in targets]
        offsets = torch.tensor([0, *per_image[:-1]], device=matched.device).cumsum(0)
        img, anchor = torch.nonzero(matched >= 0, as_tuple=True)
        box = matched[img, anchor] + offsets[img]  # index into the batch's boxes
        # float32 sums and counts, also when autocast gives bfloat16/float16 outputs
        num_fg = torch.bincount(img, minlength=num_images).clamp(min=1).float()

        fg_anchors = torch.stack(anchors)[img, anchor]
        gt_boxes = torch.cat([t["boxes"] for t in targets])[box]
        fg_regression = bbox_regression[img, anchor].float()
        target = torch.zeros_like(cls_logits, dtype=torch.float32)
        logits = cls_logits.float()
        labels = torch.cat([t["labels"] for t in targets])[box]
        if self.cls_loss == "qfl":
            with torch.no_grad():
                decoded = self.regression_head.box_coder.decode_single(fg_regression, fg_anchors)
                target[img, anchor, labels] = _paired_iou(decoded, gt_boxes)
            prob = logits.sigmoid()
            per_logit = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
            per_logit = per_logit * (prob - target).abs().pow(2)
        else:
            target[img, anchor, labels] = 1.0
            per_logit = sigmoid_focal_loss(logits, target, reduction="none")
        valid = (matched != self.classification_head.BETWEEN_THRESHOLDS).unsqueeze(-1)
        cls_loss = (per_logit * valid).sum(dim=(1, 2)) / num_fg

        box_loss = self._box_loss_per_anchor(fg_anchors, gt_boxes, fg_regression)
        box_sums = box_loss.new_zeros(num_images).index_add(0, img, box_loss)
        return {"classification": cls_loss.mean(), "bbox_regression": (box_sums / num_fg).mean()}

    def _box_loss_per_anchor(self, anchors: Tensor, gt_boxes: Tensor, regression: Tensor) -> Tensor:
        """The regression head's box loss of each foreground anchor (torchvision's ``_box_loss``)."""
        loss_type, coder = self.regression_head._loss_type, self.regression_head.box_coder
        if loss_type in ("l1", "smooth_l1"):
            target = coder.encode_single(gt_boxes, anchors)
            if loss_type == "l1":
                return F.l1_loss(regression, target, reduction="none").sum(dim=1)
            return F.smooth_l1_loss(regression, target, reduction="none", beta=1.0).sum(dim=1)
        iou_loss = {
            "giou": generalized_box_iou_loss,
            "ciou": complete_box_iou_loss,
            "diou": distance_box_iou_loss,
        }[loss_type]
        return iou_loss(coder.decode_single(regression, anchors), gt_boxes, reduction="none", eps=1e-7)


def _paired_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of ``a[i]`` with ``b[i]`` (boxes x1y1x2y2), 0 for degenerate pairs."""
    wh = (torch.min(a[:, 2:], b[:, 2:]) - torch.max(a[:, :2], b[:, :2])).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(dim=1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(dim=1)
    return inter / (area_a + area_b - inter).clamp(min=1e-7)


def _separable_layer(
    channels: int, norm_layer: Callable[..., nn.Module] | None, kernel: int = 3
) -> nn.Sequential:
    """Depthwise KxK conv, 1x1 conv, optional norm, ReLU (indices 0, 1, [2,] last)."""
    depthwise = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels, bias=False)
    pointwise = nn.Conv2d(channels, channels, 1, bias=norm_layer is None)
    nn.init.normal_(pointwise.weight, std=0.01)  # torchvision's head init; the depthwise keeps its own
    if pointwise.bias is not None:
        nn.init.zeros_(pointwise.bias)
    norm = [] if norm_layer is None else [norm_layer(channels)]
    return nn.Sequential(depthwise, pointwise, *norm, nn.ReLU(inplace=True))


def retinanet_anchors(
    sizes: Sequence[int],
    scales_per_octave: int = 3,
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
) -> AnchorGenerator:
    """RetinaNet anchors: per level, ``scales_per_octave`` sizes ``s * 2**(k / n)`` x ``aspect_ratios``.

    Args:
        sizes: the base anchor size of each pyramid level (e.g. 32-512 for P3-P7).
        scales_per_octave: anchor sizes per level (the paper: 3, i.e. ``s, 1.26 s, 1.59 s``).
        aspect_ratios: height / width ratios, the same on every level.
    """
    if scales_per_octave < 1 or not sizes or not aspect_ratios:
        raise ValueError("need at least one size, one scale per octave and one aspect ratio")
    per_level = tuple(
        tuple(int(s * 2 ** (k / scales_per_octave)) for k in range(scales_per_octave)) for s in sizes
    )
    return AnchorGenerator(per_level, (tuple(aspect_ratios),) * len(sizes))


class NoExtraLevels(ExtraFPNBlock):
    """An FPN "extra block" that adds nothing: the pyramid is the trunk's taps only."""

    def forward(
        self, results: list[Tensor], x: list[Tensor], names: list[str]
    ) -> tuple[list[Tensor], list[str]]:
        return results, names
