"""COCO-format detection dataset read with pycocotools.

:class:`CocoDetection` turns a folder of images plus a COCO ``instances`` JSON into torchvision
detection samples ``(image, target)``:

* ``image``: float32 tensor ``(3, H, W)`` in ``[0, 1]``, RGB. Grayscale, RGBA, palette, CMYK and
  16-bit images are converted to 8-bit RGB (alpha is dropped).
* ``target``: ``boxes`` float32 ``(N, 4)`` absolute ``x1, y1, x2, y2`` pixels; ``labels`` int64
  contiguous ``1..K`` (0 is background); ``image_id`` (int, the COCO image id); ``area`` float32
  (the annotation's ``area``, scaled by how much augmentation changed the box); ``iscrowd`` int64
  (all 0).

Validation: loading checks every image and annotation entry with
:func:`ghostdet.data.validation.read_annotations` and keeps what it skipped, counted by class of
problem, in the dataset's :class:`DataReport` (``report``; ``report.summary()`` is logged at the
start of training). Skipped images stay out of the dataset; images that lost all their boxes stay
in it as negatives. Crowd and tiny boxes stay in ``coco`` for evaluation; the other skipped
annotations are left out of ``coco`` too. ``strict=True`` makes invalid entries a
:class:`DataError` and requires every image file to exist.

Box filtering (the same rule is used for ``drop_empty`` and in :func:`count_valid_boxes`):
``[x, y, w, h]`` becomes ``[x, y, x + w, y + h]``, is clipped to the image, and is kept only when
it is not a crowd annotation (``iscrowd`` 0, false or absent; any other value than 0, 1 or a
bool makes the annotation malformed) and both sides of the clipped box are at
least ``min_box_size`` pixels (default 1.0). Images left without a box are kept as negatives
unless ``drop_empty=True``.

Labels: category ids sorted ascending map to ``1..K`` (``cat_id_to_label`` / ``label_to_cat_id``);
``category_names`` maps label -> name. Evaluation converts back with ``label_to_cat_id`` so
results carry the dataset's real category ids.

Image files are opened by :func:`ghostdet.data.images.open_rgb` (the same function evaluation
uses, so training and evaluation see the same pixels). EXIF orientation: the orientation whose
size is the JSON's ``width``/``height`` is used: the displayed (EXIF-applied) image when its
size matches (also when both match: 180-degree and mirror tags, square images), else the stored
pixels with a warning naming the file; an image whose size matches neither is skipped as below.

Unreadable images: a missing, truncated or non-image file, one above the pixel limit
(:func:`ghostdet.data.images.pixel_limit`, PIL's decompression-bomb threshold) or one whose
size is not the JSON's never stops training (``strict`` only checks at start-up that every file
exists; decoding is left to loading). ``__getitem__`` warns (:class:`BadImageWarning`, naming the
file), increments the dataset's process-local ``skipped`` counter and returns ``None``. PIL's
global ``LOAD_TRUNCATED_IMAGES`` is never touched. The collate functions drop ``None`` items and
report how many they dropped, which is the reliable count when the DataLoader uses worker
processes (each worker has its own copy of the dataset, so ``dataset.skipped`` in the main
process stays 0 there):

* :func:`collate_fn` returns a :class:`Batch`, a ``tuple`` ``(images, targets)`` (so
  ``images, targets = batch`` works) with an extra ``.skipped`` attribute. Note that
  ``DataLoader(pin_memory=True)`` rebuilds tuples as lists and loses the attribute;
* :func:`collate_with_skips` returns a plain ``(images, targets, n_skipped)`` triple that
  survives pinning; this is the one a trainer should sum over an epoch.

If every item of a batch was unreadable both return empty ``images``/``targets`` tuples; skip
such a batch.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from torch import Tensor

from ghostdet.data.formats import SplitSource, detect_format, read_split
from ghostdet.data.images import ImageReadError, read_rgb_array
from ghostdet.data.validation import LENIENT_PROBLEMS, PROBLEMS, DataError, DataReport, read_annotations
from ghostdet.errors import InputError

__all__ = [
    "COCO_LAYOUT_HINT",
    "LENIENT_PROBLEMS",
    "PROBLEMS",
    "BadImageWarning",
    "Batch",
    "CocoDetection",
    "DataError",
    "DataReport",
    "build_coco_datasets",
    "collate_fn",
    "collate_with_skips",
    "count_valid_boxes",
    "load_rgb_image",
    "resolve_coco_paths",
]

COCO_LAYOUT_HINT = (
    "for a COCO 2017 root give data_path with train2017/, val2017/ and "
    "annotations/instances_{train,val}2017.json; for any other COCO-format set give "
    "train_images, train_ann, val_images and val_ann"
)

# transforms(image HWC uint8, boxes (N,4) float32 xyxy, labels (N,) int64, indices (N,) int64)
#   -> (image CHW float tensor, boxes, labels, indices)  -- see ghostdet.data.transforms
TransformFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], tuple[Any, Any, Any, Any]]


class BadImageWarning(UserWarning):
    """An image could not be read and its sample was skipped."""


class Batch(tuple):
    """``(images, targets)`` tuple with the number of dropped unreadable items in ``.skipped``."""

    skipped: int

    def __new__(cls, images: tuple, targets: tuple, skipped: int = 0) -> Batch:
        obj = super().__new__(cls, (images, targets))
        obj.skipped = int(skipped)
        return obj

    def __reduce__(self) -> tuple:  # keep .skipped across DataLoader worker pickling
        return (Batch, (self[0], self[1], self.skipped))


def collate_with_skips(batch: Sequence[Any]) -> tuple[tuple, tuple, int]:
    """Collate detection samples: ``(images, targets, n_skipped)``, dropping ``None`` items."""
    kept = [item for item in batch if item is not None]
    skipped = len(batch) - len(kept)
    if not kept:
        return (), (), skipped
    images, targets = zip(*kept)
    return tuple(images), tuple(targets), skipped


def collate_fn(batch: Sequence[Any]) -> Batch:
    """Collate detection samples into ``(images, targets)`` (a :class:`Batch` with ``.skipped``)."""
    images, targets, skipped = collate_with_skips(batch)
    return Batch(images, targets, skipped)


def _missing(kind: str, path: Path, expected: str, argument: str | None = None) -> InputError:
    return InputError(
        f"{kind} not found: {path} (expected {expected}; {COCO_LAYOUT_HINT})", argument=argument
    )


def _load_coco(
    ann_file: Path, images_dir: Path, min_box_size: float, strict: bool, parsed: dict[str, Any] | None = None
) -> tuple[COCO, DataReport]:
    """pycocotools ``COCO`` of the valid entries (without its prints) and the :class:`DataReport`."""
    data, report = read_annotations(ann_file, images_dir, min_box_size, strict, parsed=parsed)
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco, report


def load_rgb_image(path: str | PathLike, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode an image file to an ``(H, W, 3)`` uint8 RGB array (:func:`ghostdet.data.images.read_rgb_array`).

    Args:
        path: image file.
        expected_size: ``(width, height)`` from the annotation JSON: the orientation (EXIF
            applied or stored pixels) with this size is returned; ``None`` applies the EXIF tag.

    Raises:
        ImageReadError: an ``OSError`` naming the file: missing, truncated, not an image, above
            the pixel limit, or of neither orientation's size.
    """
    return read_rgb_array(path, expected_size)


def _json_targets(
    anns: Sequence[dict], width: float, height: float, cat_id_to_label: dict[int, int], min_box_size: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training ``boxes`` (xyxy, clipped), ``labels`` and ``area`` of one image's validated annotations."""
    boxes, labels, areas = [], [], []
    for ann in anns:
        if ann.get("iscrowd", 0):
            continue
        x, y, w, h = (float(v) for v in ann["bbox"])
        x1, y1 = min(max(x, 0.0), width), min(max(y, 0.0), height)
        x2, y2 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
        if x2 - x1 < min_box_size or y2 - y1 < min_box_size:
            continue
        boxes.append((x1, y1, x2, y2))
        labels.append(cat_id_to_label[ann["category_id"]])
        areas.append(float(ann["area"]))
    return (
        np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        np.asarray(labels, dtype=np.int64),
        np.asarray(areas, dtype=np.float32),
    )


def count_valid_boxes(dataset: CocoDetection) -> int:
    """Number of boxes the dataset yields before augmentation (JSON only, no decoding)."""
    return sum(len(dataset.json_target(i)[0]) for i in dataset.ids)


class CocoDetection(torch.utils.data.Dataset):
    """COCO-format detection dataset (see the module docstring for the exact conventions).

    Args:
        images_dir: folder holding the images (``file_name`` in the JSON is relative to it).
        ann_file: COCO instances JSON.
        transforms: ``None`` (image converted to a tensor, nothing else) or a callable
            ``(image, boxes, labels, indices) -> (image_tensor, boxes, labels, indices)`` such as
            :func:`ghostdet.data.transforms.build_transforms` returns; ``indices`` identify which
            input boxes survived augmentation.
        drop_empty: drop images without any valid box (decided from the JSON).
        min_box_size: smallest width/height in pixels, after clipping, of a kept box.
        strict: raise :class:`DataError` instead of skipping invalid entries (every class of
            :data:`PROBLEMS` except crowd and tiny boxes); also checks that every image file
            exists.
        source: a YOLO or VOC split read by :func:`ghostdet.data.formats.read_split`, used
            instead of ``images_dir`` and ``ann_file`` (pass ``None`` for both); its images
            without a label file are counted as negatives.

    Attributes:
        report: the :class:`DataReport` of ``ann_file`` (counts and example ids of what was
            skipped; ``report.summary()`` is logged at the start of training).

    Raises:
        InputError: ``ann_file`` or ``images_dir`` is missing (message names the layout).
        DataError: ``ann_file`` is not a COCO instances JSON, or ``strict`` and invalid entries.
    """

    def __init__(
        self,
        images_dir: str | PathLike | None,
        ann_file: str | PathLike | None,
        transforms: TransformFn | None = None,
        drop_empty: bool = False,
        min_box_size: float = 1.0,
        strict: bool = False,
        source: SplitSource | None = None,
    ):
        self.images_dir = Path(images_dir) if source is None else source.images_dir
        self.ann_file = Path(ann_file) if source is None else Path(source.name)
        if source is None and not self.ann_file.is_file():
            raise _missing("annotation file", self.ann_file, "a COCO-format instances JSON")
        if not self.images_dir.is_dir():
            raise _missing("image folder", self.images_dir, "a folder with the JSON's file_name images")
        self.min_box_size = float(min_box_size)
        parsed = source.data if source is not None else None
        self.coco, self.report = _load_coco(self.ann_file, self.images_dir, self.min_box_size, strict, parsed)
        for img_id in source.without_labels if source is not None else ():
            self.report.add("no_label_file", img_id)
        self.transforms = transforms
        self.drop_empty = drop_empty
        self.skipped = 0

        cat_ids = sorted(self.coco.cats)
        self.cat_id_to_label: dict[int, int] = {c: i + 1 for i, c in enumerate(cat_ids)}
        self.label_to_cat_id: dict[int, int] = {i + 1: c for i, c in enumerate(cat_ids)}
        self.category_names: dict[int, str] = {
            i + 1: str(self.coco.cats[c]["name"]) for i, c in enumerate(cat_ids)
        }
        self.num_classes = len(cat_ids) + 1

        ids = sorted(self.coco.imgs)
        if drop_empty:
            kept = [i for i in ids if len(self.json_target(i)[0]) > 0]
            self.report.dropped_empty = len(ids) - len(kept)
            ids = kept
        self.ids: list[int] = ids

    def __len__(self) -> int:
        return len(self.ids)

    def json_target(self, image_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(boxes, labels, area)`` of an image from the JSON after filtering (no decoding)."""
        info = self.coco.imgs[image_id]
        return _json_targets(
            self.coco.imgToAnns.get(image_id, []),
            float(info["width"]),
            float(info["height"]),
            self.cat_id_to_label,
            self.min_box_size,
        )

    def aspect_ratios(self) -> list[float]:
        """Width / height of every image in ``ids`` order, from the JSON sizes."""
        return [float(self.coco.imgs[i]["width"]) / float(self.coco.imgs[i]["height"]) for i in self.ids]

    def image_path(self, index: int) -> Path:
        """Path of the image at ``index``."""
        return self.images_dir / self.coco.imgs[self.ids[index]]["file_name"]

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Any]] | None:
        image_id = self.ids[index]
        info = self.coco.imgs[image_id]
        path = self.image_path(index)
        try:
            image = load_rgb_image(path, (int(info["width"]), int(info["height"])))
        except ImageReadError as e:
            self.skipped += 1
            warnings.warn(f"skipping image {path}: {e}", BadImageWarning, stacklevel=2)
            return None

        anns = self.coco.imgToAnns.get(image_id, [])
        h, w = image.shape[:2]
        boxes, labels, area = _json_targets(anns, float(w), float(h), self.cat_id_to_label, self.min_box_size)
        indices = np.arange(len(boxes), dtype=np.int64)
        if self.transforms is not None:
            image_t, new_boxes, labels, indices = self.transforms(image, boxes, labels, indices)
            new_boxes = np.asarray(new_boxes, dtype=np.float32).reshape(-1, 4)
            indices = np.asarray(indices, dtype=np.int64)
            old = boxes[indices]
            old_wh = np.maximum((old[:, 2] - old[:, 0]) * (old[:, 3] - old[:, 1]), 1e-6)
            new_wh = (new_boxes[:, 2] - new_boxes[:, 0]) * (new_boxes[:, 3] - new_boxes[:, 1])
            area = area[indices] * (new_wh / old_wh)
            boxes = new_boxes
        else:
            image_t = torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0)
        target = {
            "boxes": torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.as_tensor(np.asarray(labels), dtype=torch.int64).reshape(-1),
            "image_id": int(image_id),
            "area": torch.as_tensor(np.asarray(area), dtype=torch.float32).reshape(-1),
            "iscrowd": torch.zeros(len(boxes), dtype=torch.int64),
        }
        return image_t, target

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(images={len(self)}, classes={self.num_classes - 1}, "
            f"images_dir={str(self.images_dir)!r}, ann_file={str(self.ann_file)!r})"
        )


def resolve_coco_paths(
    data_path: str | PathLike | None = None,
    train_images: str | PathLike | None = None,
    train_ann: str | PathLike | None = None,
    val_images: str | PathLike | None = None,
    val_ann: str | PathLike | None = None,
) -> dict[str, Path]:
    """Resolve the four dataset paths and check that they exist.

    ``data_path`` may be a COCO 2017 root (``train2017/``, ``val2017/``,
    ``annotations/instances_{train,val}2017.json``) or a root in the synthetic layout
    (``train/``, ``val/``, ``annotations/instances_{train,val}.json``); explicit paths override
    the ones derived from it.

    Raises:
        InputError: nothing given, or a path is missing and cannot be derived (``argument`` names it).
        InputError: a resolved path does not exist (message names the expected layout).
    """
    derived: dict[str, Path] = {}
    if data_path is not None:
        root = Path(data_path)
        if not root.is_dir():
            raise _missing("dataset root", root, "a folder", "data_path")
        coco_style = {
            "train_images": root / "train2017",
            "train_ann": root / "annotations" / "instances_train2017.json",
            "val_images": root / "val2017",
            "val_ann": root / "annotations" / "instances_val2017.json",
        }
        plain_style = {
            "train_images": root / "train",
            "train_ann": root / "annotations" / "instances_train.json",
            "val_images": root / "val",
            "val_ann": root / "annotations" / "instances_val.json",
        }
        use_plain = not coco_style["train_ann"].exists() and plain_style["train_ann"].exists()
        derived = plain_style if use_plain else coco_style
    given = {
        "train_images": train_images,
        "train_ann": train_ann,
        "val_images": val_images,
        "val_ann": val_ann,
    }
    paths: dict[str, Path] = {}
    for key, value in given.items():
        if value is not None:
            paths[key] = Path(value)
        elif key in derived:
            paths[key] = derived[key]
        else:
            raise InputError(
                f"no {key.replace('_', ' ')} given: give {key} or data_path ({COCO_LAYOUT_HINT})",
                argument=key,
            )
    for split in ("train", "val"):
        if not paths[f"{split}_ann"].is_file():
            raise _missing(
                f"{split} annotation file",
                paths[f"{split}_ann"],
                "a COCO-format instances JSON",
                f"{split}_ann",
            )
        if not paths[f"{split}_images"].is_dir():
            raise _missing(
                f"{split} image folder", paths[f"{split}_images"], "a folder of images", f"{split}_images"
            )
    return paths


def _why_empty(report: DataReport) -> str:
    if report.images == 0:
        return "its 'images' list is empty"
    if report.dropped_empty:
        return f"drop_empty removed all {report.dropped_empty} images, none has a valid box"
    return f"all {report.images} image entries are invalid: {report._line('malformed_image', detailed=False)}"


def _check_readable(ds: CocoDetection, split: str) -> None:
    """Raise :class:`DataError` when not one image of ``ds`` can be read.

    The images are tried in order through the dataset itself, stopping at the first that loads
    (normally the first one), so this costs one decode. The dataset's ``skipped`` counter is
    left as it was.
    """
    skipped = ds.skipped
    first_reason = ""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", BadImageWarning)
            for i in range(len(ds)):
                if ds[i] is not None:
                    return
                bad = [w for w in caught if issubclass(w.category, BadImageWarning)]
                if bad and not first_reason:
                    first_reason = str(bad[0].message)
    finally:
        ds.skipped = skipped
    for prefix in ("skipping unreadable image ", "skipping image "):  # the warning's own lead-in
        first_reason = first_reason.removeprefix(prefix)
    why = f"; e.g. {first_reason}" if first_reason else ""
    raise DataError(
        f"{ds.ann_file}: none of the {len(ds)} {split} images in {ds.images_dir} can be read "
        f"(every one is missing, truncated or not an image{why})"
    )


def build_coco_datasets(
    data_path: str | PathLike | None = None,
    train_images: str | PathLike | None = None,
    train_ann: str | PathLike | None = None,
    val_images: str | PathLike | None = None,
    val_ann: str | PathLike | None = None,
    train_transforms: TransformFn | None = None,
    val_transforms: TransformFn | None = None,
    drop_empty_train: bool = False,
    min_box_size: float = 1.0,
    strict: bool = False,
    data_format: str | None = None,
    difficult: str = "crowd",
) -> tuple[CocoDetection, CocoDetection]:
    """Build the train and val datasets from a dataset root and/or explicit paths.

    All four paths are checked before anything is loaded (see :func:`resolve_coco_paths`), and
    the two splits must have the same categories so they share one label mapping.

    Args:
        data_path: COCO 2017 root or synthetic-layout root.
        train_images: explicit train image folder (overrides ``data_path``).
        train_ann: explicit train annotation file (overrides ``data_path``).
        val_images: explicit val image folder (overrides ``data_path``).
        val_ann: explicit val annotation file (overrides ``data_path``).
        train_transforms: dataset transforms of the train split.
        val_transforms: dataset transforms of the val split.
        drop_empty_train: drop train images without boxes (val keeps every image).
        min_box_size: see :class:`CocoDetection`.
        strict: see :class:`CocoDetection` (both splits).
        data_format: the layout of ``data_path``: ``"coco"``, ``"yolo"`` (a ``data.yaml`` or its
            folder) or ``"voc"`` (see :mod:`ghostdet.data.formats`); ``None`` detects it. A YOLO
            or VOC dataset is given by ``data_path`` alone.
        difficult: VOC ``difficult`` objects: ``"crowd"`` (ignored, the default) or ``"object"``.

    Returns:
        ``(train_dataset, val_dataset)``; their ``report`` attributes say what was skipped.

    Raises:
        DataError: a malformed annotation file, invalid entries under ``strict``, a split left
            without images, a val split of which not one image can be read (checked here, so
            training never runs to score nothing), or different categories in the two splits.
    """
    fmt = data_format or (detect_format(data_path) if data_path is not None else "coco")
    if fmt == "coco":
        p = resolve_coco_paths(data_path, train_images, train_ann, val_images, val_ann)
        sources: dict[str, Any] = {"train": None, "val": None}
    else:  # YOLO / VOC: both splits from data_path, read into COCO-format annotations
        explicit = {"train_images": train_images, "train_ann": train_ann, "val_images": val_images}
        given = [k for k, v in {**explicit, "val_ann": val_ann}.items() if v is not None]
        if data_path is None or given:
            why = f"not with {', '.join(given)}" if given else "none was given"
            raise InputError(f"a {fmt} dataset is given by data_path alone ({why})", argument="data_path")
        kw = {"difficult": difficult} if fmt == "voc" else {}
        sources = {split: read_split(data_path, split, fmt, **kw) for split in ("train", "val")}
        p = {f"{s}_{k}": None for s in ("train", "val") for k in ("images", "ann")}
    train = CocoDetection(
        p["train_images"],
        p["train_ann"],
        train_transforms,
        drop_empty=drop_empty_train,
        min_box_size=min_box_size,
        strict=strict,
        source=sources["train"],
    )
    val = CocoDetection(
        p["val_images"], p["val_ann"], val_transforms, drop_empty=False, min_box_size=min_box_size,
        strict=strict, source=sources["val"],
    )  # fmt: skip
    for split, ds in (("train", train), ("val", val)):
        if len(ds) == 0:
            raise DataError(f"{ds.ann_file}: the {split} split has no images ({_why_empty(ds.report)})")
    if train.label_to_cat_id != val.label_to_cat_id:
        raise DataError(
            f"train and val annotation files have different categories "
            f"({sorted(train.cat_id_to_label)} vs {sorted(val.cat_id_to_label)}): "
            f"{train.ann_file}, {val.ann_file}"
        )
    _check_readable(val, "val")
    return train, val
