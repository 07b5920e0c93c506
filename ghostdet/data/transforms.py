"""Detection transforms: bbox-aware albumentations training augmentation, plain eval conversion.

Both transforms are callables ``(image, boxes, labels, indices) -> (image_tensor, boxes,
labels, indices)`` as :class:`ghostdet.data.coco.CocoDetection` expects: ``image`` is an
``(H, W, 3)`` uint8 RGB array, ``boxes`` ``(N, 4)`` float32 ``x1, y1, x2, y2`` pixels inside the
image, ``labels`` ``(N,)`` int64 and ``indices`` ``(N,)`` int64 identifying each input box (the
dataset uses them to rescale ``area``). The output image is a float32 ``(3, H', W')`` tensor in
``[0, 1]``; boxes and labels of objects that augmentation removed (cropped away, or less than
``min_visibility`` of them left) are dropped together, and the remaining boxes are clipped to the
output image with sides of at least ``min_box_size`` pixels.

The training pipeline (:class:`AugConfig` controls every step; a probability of 0 disables it):

1. ``BBoxSafeRandomCrop`` (``crop_prob``): a random crop that keeps every box whole, i.e. a
   zoom-in once the detector resizes the crop back to its input size;
2. ``Affine`` scale jitter (``scale_prob``, ``scale_range``, ``translate``): zoom in/out and shift
   on a fixed canvas, borders filled with ``fill``; boxes partly pushed out are clipped;
3. ``HorizontalFlip`` (``hflip_prob``);
4. ``ColorJitter`` (``color_prob``, ``color_jitter`` = brightness, contrast, saturation, hue).

Randomness: albumentations 2.x keeps its own generators, which DataLoader worker processes
would inherit identically. :class:`DetectionTransform` therefore reseeds itself inside each
worker from ``torch.utils.data.get_worker_info().seed`` (different per worker and per epoch,
reproducible under ``torch.manual_seed``), and in the main process from ``seed`` (or
``torch.initial_seed()`` when ``seed`` is None).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from types import ModuleType
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor

from ghostdet.errors import ArgumentError

__all__ = ["AugConfig", "DetectionTransform", "ToTensorTransform", "build_transforms", "clip_boxes"]


def _albumentations() -> ModuleType:
    """Import albumentations on first use, without its import-time PyPI version check.

    albumentations asks PyPI for a newer release when it is first imported unless
    ``NO_ALBUMENTATIONS_UPDATE`` is set; training must not touch the network (and offline the
    check only warns). The variable is set (unless the user set it) right before that import.
    """
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations

    return albumentations


@dataclass
class AugConfig:
    """Training augmentation settings (see the module docstring for the order of the steps).

    Args:
        hflip_prob: probability of a horizontal flip.
        crop_prob: probability of a box-preserving random crop.
        crop_erosion: fraction by which the crop may cut into the union of boxes (0 keeps all).
        scale_prob: probability of the affine scale/translate jitter.
        scale_range: ``(min, max)`` zoom factor of the affine jitter.
        translate: largest shift as a fraction of the image size.
        color_prob: probability of colour jitter.
        color_jitter: ``(brightness, contrast, saturation, hue)`` strengths; factors are drawn from
            ``[1 - s, 1 + s]`` and the hue shift from ``[-hue, hue]`` (hue <= 0.5).
        fill: grey level of borders exposed by the affine jitter.
        min_visibility: a box keeping less than this fraction of its area is dropped.
        min_area: a box smaller than this many square pixels after augmentation is dropped.
        min_box_size: a box narrower or shorter than this many pixels is dropped.
    """

    hflip_prob: float = 0.5
    crop_prob: float = 0.3
    crop_erosion: float = 0.0
    scale_prob: float = 0.5
    scale_range: tuple[float, float] = (0.75, 1.25)
    translate: float = 0.1
    color_prob: float = 0.8
    color_jitter: tuple[float, float, float, float] = field(default=(0.25, 0.25, 0.25, 0.03))
    fill: int = 114
    min_visibility: float = 0.3
    min_area: float = 4.0
    min_box_size: float = 1.0

    def __post_init__(self) -> None:
        for name in ("hflip_prob", "crop_prob", "scale_prob", "color_prob", "min_visibility"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ArgumentError(f"AugConfig.{name} must be in [0, 1], got {v}", argument=name)
        self.scale_range = tuple(float(v) for v in self.scale_range)  # type: ignore[assignment]
        self.color_jitter = tuple(float(v) for v in self.color_jitter)  # type: ignore[assignment]
        lo, hi = self.scale_range
        if not 0.0 < lo <= hi:
            raise ArgumentError(
                f"AugConfig.scale_range must be (min, max) with 0 < min <= max, got {self.scale_range}"
            )
        if len(self.color_jitter) != 4 or min(self.color_jitter) < 0 or self.color_jitter[3] > 0.5:
            raise ArgumentError(
                f"AugConfig.color_jitter must be 4 values >= 0 with hue <= 0.5, got {self.color_jitter}"
            )

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> AugConfig:
        """Build from a plain dict (e.g. a YAML section); unknown keys are an error naming the key."""
        d = dict(d or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ArgumentError(
                f"unknown augmentation option(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})"
            )
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (lists instead of tuples), e.g. for a saved config."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def clip_boxes(
    boxes: np.ndarray, width: int, height: int, min_box_size: float, *extra: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Clip xyxy ``boxes`` to the image and drop those with a side below ``min_box_size``.

    ``extra`` arrays (labels, indices, ...) are filtered alongside; returns ``(boxes, *extra)``.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).copy()
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    keep = ((boxes[:, 2] - boxes[:, 0]) >= min_box_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_box_size)
    return (boxes[keep], *(np.asarray(e)[keep] for e in extra))


def _to_tensor(image: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)


class ToTensorTransform:
    """Evaluation transform: the image becomes a ``[0, 1]`` tensor, boxes are left unchanged."""

    def __call__(
        self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, indices: np.ndarray
    ) -> tuple[Tensor, np.ndarray, np.ndarray, np.ndarray]:
        return _to_tensor(image), boxes, labels, indices

    def __repr__(self) -> str:
        return "ToTensorTransform()"


class DetectionTransform:
    """Training transform: an albumentations pipeline built from an :class:`AugConfig`.

    Args:
        cfg: augmentation settings (defaults when None).
        seed: seed of the main-process generators (workers reseed themselves, see module doc).
    """

    def __init__(self, cfg: AugConfig | None = None, seed: int | None = None):
        self.cfg = cfg or AugConfig()
        self.seed = seed
        self._seed_key: tuple | None = None
        A = _albumentations()
        c = self.cfg
        b, ct, s, h = c.color_jitter
        steps: list[Any] = []
        if c.crop_prob > 0:
            steps.append(A.BBoxSafeRandomCrop(erosion_rate=c.crop_erosion, p=c.crop_prob))
        if c.scale_prob > 0:
            steps.append(
                A.Affine(
                    scale=c.scale_range,
                    translate_percent=(-c.translate, c.translate),
                    border_mode=cv2.BORDER_CONSTANT,
                    fill=c.fill,
                    p=c.scale_prob,
                )
            )
        if c.hflip_prob > 0:
            steps.append(A.HorizontalFlip(p=c.hflip_prob))
        if c.color_prob > 0:
            steps.append(
                A.ColorJitter(
                    brightness=(max(0.0, 1 - b), 1 + b),
                    contrast=(max(0.0, 1 - ct), 1 + ct),
                    saturation=(max(0.0, 1 - s), 1 + s),
                    hue=(-h, h),
                    p=c.color_prob,
                )
            )
        self.pipeline = A.Compose(
            steps,
            bbox_params=A.BboxParams(
                format="pascal_voc",
                label_fields=["labels", "indices"],
                min_area=c.min_area,
                min_visibility=c.min_visibility,
                min_width=c.min_box_size,
                min_height=c.min_box_size,
                clip=True,
            ),
        )

    def _maybe_reseed(self) -> None:
        info = torch.utils.data.get_worker_info()
        key = (os.getpid(), info.seed if info is not None else None)
        if key == self._seed_key:
            return
        self._seed_key = key
        if info is not None:
            seed = info.seed
        else:
            seed = self.seed if self.seed is not None else torch.initial_seed()
        self.pipeline.set_random_seed(int(seed) % (2**63))

    def __call__(
        self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, indices: np.ndarray
    ) -> tuple[Tensor, np.ndarray, np.ndarray, np.ndarray]:
        self._maybe_reseed()
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        out = self.pipeline(
            image=image,
            bboxes=boxes,
            labels=np.asarray(labels, dtype=np.int64),
            indices=np.asarray(indices, dtype=np.int64),
        )
        img = out["image"]
        h, w = img.shape[:2]
        new_boxes, new_labels, new_idx = clip_boxes(
            np.asarray(out["bboxes"], dtype=np.float32),
            w,
            h,
            self.cfg.min_box_size,
            np.asarray(out["labels"], dtype=np.int64).reshape(-1),
            np.asarray(out["indices"], dtype=np.int64).reshape(-1),
        )
        return _to_tensor(img), new_boxes, new_labels, new_idx

    def __repr__(self) -> str:
        return f"DetectionTransform({self.cfg})"


def build_transforms(
    train: bool, cfg: AugConfig | dict[str, Any] | None = None, seed: int | None = None
) -> DetectionTransform | ToTensorTransform:
    """The dataset transform for training (augmentation) or evaluation (tensor conversion only).

    Args:
        train: build the augmentation pipeline; otherwise only convert to a tensor.
        cfg: :class:`AugConfig` or a dict of its fields (ignored when ``train`` is False).
        seed: main-process seed of the training pipeline (see :class:`DetectionTransform`).
    """
    if not train:
        return ToTensorTransform()
    if not isinstance(cfg, AugConfig):
        cfg = AugConfig.from_dict(cfg)
    return DetectionTransform(cfg, seed=seed)
