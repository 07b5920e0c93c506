"""Classification data: ImageFolder (ImageNet layout) and CIFAR readers, transforms, a generated set.

* ``imagefolder``: ``root/train/<class>/*.jpg`` and ``root/val/<class>/*.jpg``, as ImageNet is
  usually laid out; both splits must hold the same class folders. Training: random-resized-crop
  + horizontal flip; evaluation: resize to ``size / 0.875`` + centre crop (ImageNet mean/std).
* ``cifar10`` / ``cifar100``: torchvision's readers over its on-disk python format (md5-checked;
  ``download=True`` fetches it). Training: 4-pixel zero padding + random crop + flip; evaluation:
  the plain image (CIFAR mean/std).
* ImageFolder images are read by :func:`ghostdet.data.images.open_rgb` (the reader of every tool:
  EXIF orientation applied, the pixel limit of PIL's decompression-bomb guard). An image that
  cannot be used (missing, truncated, not an image, too large) is skipped as detection training
  skips it: :class:`SkippingImageFolder` warns (:class:`~ghostdet.data.coco.BadImageWarning`,
  naming the file) and yields ``None``, :func:`collate_skipping` drops it and counts it in the
  batch's ``skipped``, and :class:`SkipCountingLoader` sums those counts (exact also with
  DataLoader worker processes) and leaves out batches with no image left.
* :func:`make_synthetic_classification` writes a small ImageFolder set of shapes (one shape per
  image, the class is the shape) for smoke tests and the README's two-command example.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from ghostdet.data.coco import BadImageWarning
from ghostdet.data.images import ImageReadError, open_rgb
from ghostdet.data.validation import DataError
from ghostdet.errors import ArgumentError, InputError

__all__ = [
    "CIFAR_FILES",
    "CIFAR_MEAN",
    "CIFAR_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ClsBatch",
    "SkipCountingLoader",
    "SkippingImageFolder",
    "build_classification_datasets",
    "build_classification_transforms",
    "collate_skipping",
    "make_synthetic_classification",
    "normalization",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)

#: dataset -> (folder under the data path, files torchvision's reader checks)
CIFAR_FILES: dict[str, tuple[str, tuple[str, ...]]] = {
    "cifar10": (
        "cifar-10-batches-py",
        (
            "data_batch_1",
            "data_batch_2",
            "data_batch_3",
            "data_batch_4",
            "data_batch_5",
            "test_batch",
            "batches.meta",
        ),
    ),
    "cifar100": ("cifar-100-python", ("train", "test", "meta")),
}


def normalization(dataset: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` the transforms of ``dataset`` normalise with."""
    return (CIFAR_MEAN, CIFAR_STD) if dataset.startswith("cifar") else (IMAGENET_MEAN, IMAGENET_STD)


def build_classification_transforms(train: bool, dataset: str, image_size: int) -> Any:
    """The torchvision transform of one split.

    Args:
        train: training augmentation (else the evaluation transform).
        dataset: ``imagefolder``, ``cifar10`` or ``cifar100``.
        image_size: output side in pixels.
    """
    from torchvision import transforms as T

    mean, std = normalization(dataset)
    tail = [T.ToTensor(), T.Normalize(mean, std)]
    if dataset.startswith("cifar"):
        if train:
            return T.Compose([T.RandomCrop(image_size, padding=4), T.RandomHorizontalFlip(), *tail])
        resize = [] if image_size == 32 else [T.Resize(image_size)]
        return T.Compose([*resize, *tail])
    if train:
        return T.Compose([T.RandomResizedCrop(image_size), T.RandomHorizontalFlip(), *tail])
    return T.Compose([T.Resize(round(image_size / 0.875)), T.CenterCrop(image_size), *tail])


class SkippingImageFolder(Dataset):
    """torchvision's ``ImageFolder`` read by :func:`~ghostdet.data.images.open_rgb`, skipping bad images.

    Items are ``(transform(RGB PIL image), class index)``. An image that cannot be used
    (:class:`~ghostdet.data.images.ImageReadError`: missing, truncated, not an image, above the
    pixel limit) gives ``None`` instead, with a :class:`~ghostdet.data.coco.BadImageWarning`
    naming the file, and adds one to the process-local ``skipped``. Batch with
    :func:`collate_skipping`. Other attributes (``classes``, ``class_to_idx``, ``samples``,
    ``targets``, ``root``, ``transform``) are the ``ImageFolder``'s.

    Args:
        root: folder with one sub-folder of images per class.
        transform: applied to the decoded RGB PIL image.

    Raises:
        FileNotFoundError: ``root`` has no class folder or no image (torchvision's message).
    """

    def __init__(self, root: str | PathLike, transform: Any = None) -> None:
        from torchvision.datasets import ImageFolder

        self.folder = ImageFolder(str(root), transform, loader=open_rgb)
        self.skipped = 0

    def __getattr__(self, name: str) -> Any:
        folder = self.__dict__.get("folder")
        if folder is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(folder, name)

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index: int) -> tuple[Any, int] | None:
        try:
            return self.folder[index]
        except ImageReadError as e:
            self.skipped += 1
            warnings.warn(
                f"skipping image {self.folder.samples[index][0]}: {e}", BadImageWarning, stacklevel=2
            )
            return None


class ClsBatch(tuple):
    """``(images, labels)`` with the number of dropped unreadable items in ``.skipped``.

    ``DataLoader(pin_memory=True)`` keeps the attribute (it calls :meth:`pin_memory`).
    """

    skipped: int

    def __new__(cls, images: Tensor, labels: Tensor, skipped: int = 0) -> ClsBatch:
        obj = super().__new__(cls, (images, labels))
        obj.skipped = int(skipped)
        return obj

    def __reduce__(self) -> tuple:  # keep .skipped across DataLoader worker pickling
        return (ClsBatch, (self[0], self[1], self.skipped))

    def pin_memory(self) -> ClsBatch:
        """The batch with its tensors in pinned memory (called by the DataLoader)."""
        return ClsBatch(self[0].pin_memory(), self[1].pin_memory(), self.skipped)


def collate_skipping(batch: Sequence[Any]) -> ClsBatch:
    """Collate ``(image tensor, label)`` items into a :class:`ClsBatch`, dropping ``None`` items.

    Args:
        batch: dataset items; ``None`` marks an image that could not be read.

    Returns:
        ``(images (N, C, H, W), labels (N,) int64)`` with ``.skipped`` the number of ``None``
        items; both tensors are empty when every item was ``None``.
    """
    kept = [item for item in batch if item is not None]
    skipped = len(batch) - len(kept)
    if not kept:
        return ClsBatch(torch.empty(0), torch.empty(0, dtype=torch.int64), skipped)
    images = torch.stack([torch.as_tensor(image) for image, _ in kept])
    labels = torch.as_tensor([int(label) for _, label in kept], dtype=torch.int64)
    return ClsBatch(images, labels, skipped)


class SkipCountingLoader:
    """A DataLoader wrapper that yields ``(images, labels)`` and counts the skipped images.

    Batches from :func:`collate_skipping` are unpacked; their ``skipped`` counts add up in
    ``skipped`` (also when the loader uses worker processes); a batch with no image left is not
    yielded. ``len()`` is the wrapped loader's.

    Args:
        loader: a DataLoader using :func:`collate_skipping`.
    """

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.skipped = 0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for batch in self.loader:
            self.skipped += int(getattr(batch, "skipped", 0))
            images, labels = batch[0], batch[1]
            if len(labels):
                yield images, labels


def _cifar(dataset: str, root: Path, download: bool, image_size: int) -> tuple[Dataset, Dataset, list[str]]:
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if dataset == "cifar10" else CIFAR100
    folder, files = CIFAR_FILES[dataset]
    try:
        train = cls(str(root), train=True, download=download,
                    transform=build_classification_transforms(True, dataset, image_size))  # fmt: skip
        val = cls(str(root), train=False, download=False,
                  transform=build_classification_transforms(False, dataset, image_size))  # fmt: skip
    except RuntimeError as e:
        raise InputError(
            f"{dataset} not found or corrupted under {root}: expected {root / folder}/ holding "
            f"{', '.join(files)} (torchvision's python version, md5-checked); download=True "
            f"fetches it ({' '.join(str(e).split())})",
            argument="data_path",
        ) from None
    return train, val, list(train.classes)


def _imagefolder(root: Path, image_size: int) -> tuple[Dataset, Dataset, list[str]]:
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise InputError(
                f"ImageFolder data: {root / split} is not a folder; data_path must hold train/ and val/, "
                "each with one sub-folder of images per class (the ImageNet layout)",
                argument="data_path",
            )
    try:
        train = SkippingImageFolder(
            root / "train", build_classification_transforms(True, "imagefolder", image_size)
        )
        val = SkippingImageFolder(
            root / "val", build_classification_transforms(False, "imagefolder", image_size)
        )
    except (FileNotFoundError, RuntimeError) as e:
        raise InputError(
            f"ImageFolder data under {root}: {' '.join(str(e).split())}", argument="data_path"
        ) from None
    if val.class_to_idx != train.class_to_idx:
        only_train = sorted(set(train.classes) - set(val.classes))
        only_val = sorted(set(val.classes) - set(train.classes))
        raise DataError(
            f"{root}: train/ and val/ must hold the same class folders (only in train: {only_train}, "
            f"only in val: {only_val})"
        )
    return train, val, list(train.classes)


def build_classification_datasets(
    dataset: str, data_path: str | PathLike | None, image_size: int, download: bool = False
) -> tuple[Dataset, Dataset, list[str]]:
    """``(train_dataset, val_dataset, class_names)``; items are ``(image tensor, label)``.

    Args:
        dataset: ``imagefolder``, ``cifar10`` or ``cifar100``.
        data_path: the dataset root (see the module docstring).
        image_size: crop / evaluation size.
        download: CIFAR only: download into ``data_path`` when missing.

    Raises:
        InputError: missing or corrupt data (the message names the expected files).
        ArgumentError: an unknown dataset, or ``download`` for a dataset that cannot be downloaded.
        DataError: train/val class folders that differ.
    """
    if data_path is None:
        raise InputError(f"no data_path given for the {dataset} dataset", argument="data_path")
    root = Path(data_path).expanduser()
    if dataset in CIFAR_FILES:
        return _cifar(dataset, root, download, image_size)
    if dataset == "imagefolder":
        if download:
            raise ArgumentError("download only works for cifar10/cifar100", argument="download")
        return _imagefolder(root, image_size)
    raise ArgumentError(
        f"unknown dataset {dataset!r} (use imagefolder, cifar10 or cifar100)", argument="dataset"
    )


def _render_shape(rng: np.random.Generator, name: str, size: int) -> np.ndarray:
    from ghostdet.data.synthetic import _background, _shape_mask, _vivid_colour

    img = _background(rng, size, size)
    side = int(rng.integers(max(4, size // 2), max(5, int(size * 0.9)) + 1))
    x0, y0 = (int(rng.integers(0, size - side + 1)) for _ in range(2))
    mask = _shape_mask(name, side, rng)
    colour = np.array(_vivid_colour(rng, img.reshape(-1, 3).mean(0)), dtype=np.float32)
    img[y0 : y0 + side, x0 : x0 + side][mask] = colour
    img = img + rng.normal(0.0, 6.0, size=img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def make_synthetic_classification(
    root: str | PathLike,
    num_classes: int = 4,
    num_train: int = 50,
    num_val: int = 20,
    image_size: int = 32,
    seed: int = 0,
) -> Path:
    """Write a deterministic ImageFolder set of shapes: ``root/{train,val}/<shape>/NNNN.png``.

    Every image holds one shape (circle, square, triangle, cross, ring, star: the first
    ``num_classes``) of random size, position and colour on a textured background.

    Args:
        root: output folder (existing images with the same names are overwritten).
        num_classes: classes (1-6).
        num_train: training images per class.
        num_val: validation images per class.
        image_size: side in pixels.
        seed: generator seed.
    """
    from ghostdet.data.synthetic import SHAPE_CATEGORIES

    if not 1 <= num_classes <= len(SHAPE_CATEGORIES):
        raise ArgumentError(
            f"num_classes must be in 1..{len(SHAPE_CATEGORIES)}, got {num_classes}", argument="num_classes"
        )
    if image_size < 8:
        raise ArgumentError(f"image_size must be >= 8, got {image_size}", argument="image_size")
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, n in (("train", num_train), ("val", num_val)):
        for _, name in SHAPE_CATEGORIES[:num_classes]:
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(_render_shape(rng, name, image_size)).save(folder / f"{i:04d}.png")
    return root
