"""Looking at a dataset's labels: :func:`browse_dataset` draws images with their ground truth.

Wrong labels cost more than any model choice: boxes shifted by a bad conversion, swapped class
names, a YOLO file normalised to the wrong size. :func:`browse_dataset` draws a random sample of
a split with its boxes and class names as the training reads them (COCO JSON, YOLO or Pascal
VOC, through :mod:`ghostdet.data.coco` and :mod:`ghostdet.data.formats`), and optionally after
the training augmentation (:func:`ghostdet.data.transforms.build_transforms`), so the labels can
be checked by eye before a long run.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from ghostdet.data.coco import CocoDetection, resolve_coco_paths
from ghostdet.data.formats import detect_format, read_split
from ghostdet.data.transforms import AugConfig, build_transforms
from ghostdet.errors import ArgumentError, InputError
from ghostdet.predict.drawing import PALETTE, font_path, text_colour
from ghostdet.predict.infer import check_output_dir
from ghostdet.utils.files import atomic_write_bytes

__all__ = ["browse_dataset", "draw_ground_truth", "load_split"]


def draw_ground_truth(
    image: Tensor, boxes: Tensor, labels: Sequence[int], names: Mapping[int, str] | None = None
) -> Tensor:
    """Draw ground-truth boxes with their class names (one colour per label, as predictions are drawn).

    Args:
        image: float image ``(3, H, W)`` in ``[0, 1]`` or uint8.
        boxes: ``(N, 4)`` xyxy pixels.
        labels: the label of each box (its colour :data:`~ghostdet.predict.drawing.PALETTE`
            ``[label % len]`` and, through ``names``, its caption).
        names: label -> class name.

    Returns:
        uint8 image tensor ``(3, H, W)``.
    """
    from torchvision.utils import draw_bounding_boxes

    img = image if image.dtype == torch.uint8 else (image.clamp(0, 1) * 255).round().to(torch.uint8)
    if len(boxes) == 0:
        return img
    names = names or {}
    colors = [PALETTE[int(lbl) % len(PALETTE)] for lbl in labels]
    font = font_path()
    side = min(img.shape[1:])
    return draw_bounding_boxes(
        img,
        boxes.float(),
        labels=[names.get(int(lbl), str(int(lbl))) for lbl in labels],
        colors=colors,
        width=max(2, round(side / 250)),
        font=font,
        font_size=max(10, round(side / 30)) if font else None,
        label_colors=[text_colour(c) for c in colors],
        label_background_colors=colors,
        fill_labels=True,
    )


def load_split(
    data_path: str | PathLike | None = None,
    split: str = "train",
    *,
    images: str | PathLike | None = None,
    ann_file: str | PathLike | None = None,
    data_format: str | None = None,
    difficult: str = "crowd",
    transforms: Any = None,
) -> CocoDetection:
    """One split of a dataset as the training reads it.

    Args:
        data_path: a COCO root (``train2017/`` + ``annotations/instances_train2017.json``, or the
            synthetic layout), a YOLO ``data.yaml`` (or its folder) or a VOC root.
        split: ``train`` or ``val`` (YOLO also ``test``; VOC also ``trainval``, ``test``).
        images: a COCO image folder (with ``ann_file``, instead of ``data_path``).
        ann_file: its COCO instances JSON.
        data_format: ``"coco"``, ``"yolo"`` or ``"voc"``; ``None`` detects it.
        difficult: VOC ``difficult`` objects: ``"crowd"`` or ``"object"``.
        transforms: the dataset's transform (``None``: the image as it is).

    Raises:
        InputError: missing paths, or both or neither of ``data_path`` and ``images``/``ann_file``.
        DataError: a malformed dataset.
    """
    if (images is None) != (ann_file is None):
        raise InputError("give both the image folder and its annotation file", argument="train_ann")
    if images is not None:
        if data_path is not None:
            raise InputError(
                "give data_path or an image folder with its annotations, not both", argument="data_path"
            )
        return CocoDetection(images, ann_file, transforms)
    if data_path is None:
        raise InputError("give data_path, or an image folder with its annotation file", argument="data_path")
    fmt = data_format or detect_format(data_path)
    if fmt == "coco":
        if split not in ("train", "val"):
            raise ArgumentError(
                f"a COCO dataset has the splits train and val, not {split!r}", argument="split"
            )
        paths = resolve_coco_paths(data_path)
        return CocoDetection(paths[f"{split}_images"], paths[f"{split}_ann"], transforms)
    kwargs = {"difficult": difficult} if fmt == "voc" else {}
    return CocoDetection(None, None, transforms, source=read_split(data_path, split, fmt, **kwargs))


def browse_dataset(
    data_path: str | PathLike | None = None,
    output_dir: str | PathLike = "runs/browse",
    num_images: int = 16,
    augmented: bool = False,
    seed: int = 0,
    *,
    split: str = "train",
    train_images: str | PathLike | None = None,
    train_ann: str | PathLike | None = None,
    augment: AugConfig | Mapping[str, Any] | None = None,
    data_format: str | None = None,
    difficult: str = "crowd",
    log: Callable[[str], Any] | None = print,
) -> list[Path]:
    """Draw a random sample of a dataset's images with their ground-truth boxes and class names.

    Each drawn image is written as ``output_dir/NNNN_STEM.png`` (``NNNN``: its position in the
    split). The images and boxes are those training reads: invalid annotations are left out as
    validation leaves them out, and unreadable images are skipped with a warning.

    Args:
        data_path: the dataset: a COCO root, a YOLO ``data.yaml`` (or its folder) or a VOC root
            (see :func:`load_split`).
        output_dir: where the drawings go (created; it may not hold the dataset's images).
        num_images: how many images to draw (the whole split if it has fewer).
        augmented: draw them after the training augmentation (random flips, crops, scale and
            colour jitter), as the detector sees them.
        seed: chooses the images and the augmentation's random draws.
        split: the split to draw from.
        train_images: a COCO image folder (with ``train_ann``, instead of ``data_path``).
        train_ann: its COCO instances JSON.
        augment: the augmentation settings (:class:`~ghostdet.data.transforms.AugConfig` or a
            recipe's ``augment`` mapping); default: the training defaults.
        data_format: ``"coco"``, ``"yolo"`` or ``"voc"``; ``None`` detects it.
        difficult: VOC ``difficult`` objects: ``"crowd"`` (left out, as training does) or
            ``"object"``.
        log: printer of the closing line; ``None``: silent.

    Returns:
        The PNG files written, in split order.

    Raises:
        InputError: missing dataset paths.
        DataError: a malformed dataset.
        OutputError: ``output_dir`` holds (or is) an image of the sample, or is a file.
        ArgumentError: ``num_images`` below 1.
    """
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
        raise ArgumentError(f"num_images must be an integer >= 1, got {num_images!r}", argument="num_images")
    transforms = build_transforms(True, augment, seed=seed) if augmented else None
    ds = load_split(
        data_path, split, images=train_images, ann_file=train_ann, data_format=data_format,
        difficult=difficult, transforms=transforms,
    )  # fmt: skip
    if len(ds) == 0:
        raise InputError(f"{ds.ann_file}: the {split} split has no images", argument="data_path")
    chosen = sorted(random.Random(seed).sample(range(len(ds)), min(num_images, len(ds))))
    protected = check_output_dir(output_dir, [ds.image_path(i) for i in chosen])
    out_dir = Path(output_dir).expanduser()
    written: list[Path] = []
    n_boxes = 0
    for index in chosen:
        item = ds[index]  # None (and a warning) for an unreadable image
        if item is None:
            continue
        image, target = item
        drawn = draw_ground_truth(image, target["boxes"], target["labels"].tolist(), ds.category_names)
        buf = io.BytesIO()
        Image.fromarray(drawn.permute(1, 2, 0).numpy()).save(buf, "PNG")
        target_path = out_dir / f"{index:04d}_{ds.image_path(index).stem}.png"
        protected.check(target_path)
        written.append(atomic_write_bytes(target_path, buf.getvalue()))
        n_boxes += len(target["boxes"])
    if log is not None:
        how = " after augmentation" if augmented else ""
        skipped = len(chosen) - len(written)
        note = f" ({skipped} unreadable image(s) skipped)" if skipped else ""
        log(
            f"drew {len(written)} of {len(ds)} image(s) of {ds.ann_file} with {n_boxes} ground-truth box(es)"
            f"{how} into {out_dir}{note}"
        )
    return written
