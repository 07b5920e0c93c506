"""Drawing detections onto images: boxes with ``name score`` captions, one colour per label."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

__all__ = ["PALETTE", "draw_detections", "font_path", "text_colour"]


def font_path() -> str | None:
    """A TrueType file of DejaVu Sans (via matplotlib), or ``None`` (PIL's bitmap font is used)."""
    try:
        from matplotlib import font_manager

        return font_manager.findfont("DejaVu Sans", fallback_to_default=False)
    except Exception:
        return None


PALETTE = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40),
]  # fmt: skip
"""Box colours, one per label modulo its length."""


def text_colour(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on light label backgrounds, white on dark ones."""
    luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return (0, 0, 0) if luma > 140 else (255, 255, 255)


def draw_detections(
    image: Tensor,
    boxes: Tensor,
    labels: Sequence[int],
    scores: Sequence[float],
    names: Mapping[int, str] | None = None,
) -> Tensor:
    """Draw boxes with ``name score`` captions (torchvision's ``draw_bounding_boxes``).

    Args:
        image: float image (C, H, W) in [0, 1] or uint8.
        boxes: (N, 4) xyxy pixels.
        labels: model label of each box (its colour and, via ``names``, its caption).
        scores: score of each box.
        names: label -> class name.

    Returns:
        uint8 image tensor (3, H, W).
    """
    from torchvision.utils import draw_bounding_boxes

    img = image if image.dtype == torch.uint8 else (image.clamp(0, 1) * 255).round().to(torch.uint8)
    if len(boxes) == 0:
        return img
    names = names or {}
    captions = [f"{names.get(int(lbl), str(int(lbl)))} {float(s):.2f}" for lbl, s in zip(labels, scores)]
    colors = [PALETTE[int(lbl) % len(PALETTE)] for lbl in labels]
    font = font_path()
    line = max(2, round(min(img.shape[1:]) / 250))
    font_size = max(10, round(min(img.shape[1:]) / 30))
    return draw_bounding_boxes(
        img,
        boxes.float(),
        labels=captions,
        colors=colors,
        width=line,
        font=font,
        font_size=font_size if font else None,
        label_colors=[text_colour(c) for c in colors],
        label_background_colors=colors,
        fill_labels=True,
    )
