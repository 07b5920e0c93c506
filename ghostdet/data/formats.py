"""Detection datasets in the YOLO and Pascal VOC layouts, read as COCO-format annotations.

Every reader turns one split of a dataset into the COCO ``instances`` dict that the rest of
ghostdet reads (``images``, ``annotations``, ``categories``), so validation, counted skips,
``strict`` checking, training and evaluation are the same for every format. Nothing is written.

**YOLO** (the ultralytics layout): a ``data.yaml`` (or its folder) with ``names`` (a list, or a
dict ``index -> name``), ``path`` (the root; a relative or missing one is taken from the YAML
file's folder) and ``train``/``val``/``test`` entries, each a folder of images, a text file
listing images, or a list of those. An image's label file is found by the ``images`` ->
``labels`` rule applied to the path as given (datasets are often linked into place): the last
``/images/`` component becomes ``/labels/`` and the extension ``.txt``. A row is ``class cx cy w
h`` (normalised to the image size, as displayed: EXIF orientation applied) or a segment ``class
x1 y1 x2 y2 ...``, read as its bounding box. Class ``i`` is category id ``i + 1``.

**Pascal VOC**: a root with ``Annotations/*.xml``, ``JPEGImages/`` and
``ImageSets/Main/{train,val,trainval,test}.txt``. Boxes are VOC's 1-based inclusive pixels
(``xmin = 1`` is the first column): ``[xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1]``.
``difficult`` objects become crowd annotations (``iscrowd: 1``), ignored in training and
evaluation as VOC evaluation ignores them, unless ``difficult="object"``. Categories are the
sorted object names of the whole ``Annotations/`` folder, ids ``1..K``.

Problems in a label become entries that validation counts like those of a COCO file: a
malformed row (wrong number of values, not numbers), an unknown class, NaN/inf values, a
degenerate box. An image without a label file is a negative, counted in :attr:`SplitSource.
without_labels`.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from os import PathLike
from pathlib import Path
from typing import Any

import yaml
from PIL import Image, UnidentifiedImageError

from ghostdet.data.images import IMAGE_EXTENSIONS
from ghostdet.data.validation import DataError
from ghostdet.errors import InputError

__all__ = [
    "FORMATS",
    "SplitSource",
    "detect_format",
    "read_split",
    "read_voc",
    "read_yolo",
    "yolo_label_path",
]

#: The dataset layouts ``data_path`` may hold.
FORMATS = ("coco", "yolo", "voc")

_YAML_NAMES = ("data.yaml", "dataset.yaml", "data.yml", "dataset.yml")


@dataclass
class SplitSource:
    """One split of a dataset as COCO-format annotations in memory.

    Attributes:
        name: what messages name as the annotation source (the ``data.yaml``, or the VOC
            split list).
        images_dir: the folder the ``file_name`` entries are relative to.
        data: the COCO ``instances`` dict.
        format: ``"yolo"`` or ``"voc"``.
        without_labels: ids of the images that have no label file (negatives).
    """

    name: str
    images_dir: Path
    data: dict[str, Any]
    format: str
    without_labels: list[int] = field(default_factory=list)

    def __str__(self) -> str:
        return self.name


def detect_format(path: str | PathLike) -> str:
    """The layout of a dataset path: ``"yolo"`` (a ``*.yaml`` file, or a folder holding
    ``data.yaml``), ``"voc"`` (a folder with ``Annotations/`` and ``JPEGImages/``) or ``"coco"``.

    Raises:
        InputError: ``path`` does not exist (``argument="data_path"``).
    """
    p = Path(path)
    if p.is_file() and p.suffix.lower() in (".yaml", ".yml"):
        return "yolo"
    if not p.is_dir():
        raise InputError(f"dataset path not found: {p}", argument="data_path")
    if (p / "Annotations").is_dir() and (p / "JPEGImages").is_dir():
        return "voc"
    if any((p / n).is_file() for n in _YAML_NAMES):
        return "yolo"
    return "coco"


def read_split(
    path: str | PathLike, split: str, data_format: str | None = None, **kwargs: Any
) -> SplitSource:
    """Read one split of a YOLO or VOC dataset (see :func:`read_yolo`, :func:`read_voc`).

    Args:
        path: the dataset (``data.yaml`` or its folder; a VOC root).
        split: ``train``, ``val`` or ``test`` (VOC also ``trainval``).
        data_format: ``"yolo"`` or ``"voc"``; ``None`` detects it (:func:`detect_format`).
        **kwargs: passed to the reader (VOC: ``difficult``).

    Raises:
        InputError: a COCO dataset (read it as COCO JSON).
        DataError: a bad dataset (see the readers).
    """
    fmt = data_format or detect_format(path)
    if fmt == "yolo":
        return read_yolo(path, split)
    if fmt == "voc":
        return read_voc(path, split, **kwargs)
    raise InputError(f"{path} is a {fmt} dataset, not YOLO or VOC", argument="data_format")


# ----------------------------------------------------------------------------- helpers
def _image_size(path: Path) -> tuple[int, int] | None:
    """``(width, height)`` of an image as displayed (EXIF orientation applied), from its header;
    ``None`` when it cannot be read (the image is then counted when it is loaded)."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _image_entry(img_id: int, file_name: str, size: tuple[int, int] | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": img_id, "file_name": file_name}
    if size is not None:
        entry["width"], entry["height"] = size
    else:  # unreadable: validation counts the entry (no size), loading never opens it
        entry["width"] = entry["height"] = None
    return entry


def _box_annotation(
    ann_id: int, img_id: int, cat_id: Any, bbox: list[Any], iscrowd: int = 0
) -> dict[str, Any]:
    ann = {"id": ann_id, "image_id": img_id, "category_id": cat_id, "bbox": bbox, "iscrowd": iscrowd}
    if len(bbox) == 4 and all(isinstance(v, float) for v in bbox):
        ann["area"] = bbox[2] * bbox[3]
    return ann


# ----------------------------------------------------------------------------- YOLO
def _yolo_yaml(path: Path) -> Path:
    if path.is_file():
        return path
    for name in _YAML_NAMES:
        if (path / name).is_file():
            return path / name
    raise DataError(f"{path} holds no data.yaml (a YOLO dataset needs one)")


def _yolo_names(raw: Any, source: Path) -> list[str]:
    if isinstance(raw, list) and raw and all(isinstance(n, (str, int)) for n in raw):
        return [str(n) for n in raw]
    if isinstance(raw, Mapping) and raw:
        keys = sorted(raw)
        if not all(isinstance(k, int) and not isinstance(k, bool) for k in keys) or keys != list(
            range(len(keys))
        ):
            raise DataError(f"{source}: 'names' keys must be the class indices 0..K-1, got {keys[:6]}")
        return [str(raw[k]) for k in keys]
    raise DataError(f"{source}: 'names' must be a non-empty list or an index -> name mapping, got {raw!r}")


def yolo_label_path(image: str | PathLike) -> Path:
    """The label file of an image by the ``images`` -> ``labels`` rule (on the path as given)."""
    text = os.fspath(image)
    sep = os.sep
    head, marker, tail = text.rpartition(f"{sep}images{sep}")
    if marker:
        text = f"{head}{sep}labels{sep}{tail}"
    elif text.startswith(f"images{sep}"):
        text = f"labels{sep}{text[len('images') + 1 :]}"
    return Path(text).with_suffix(".txt")


def _yolo_images(entry: Any, root: Path, source: Path, split: str) -> list[Path]:
    items = entry if isinstance(entry, list) else [entry]
    out: list[Path] = []
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            raise DataError(f"{source}: '{split}' entries must be paths, got {item!r}")
        p = Path(item)
        p = p if p.is_absolute() else root / p
        if p.is_dir():
            out.extend(
                sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
            )
        elif p.is_file() and p.suffix.lower() == ".txt":  # a list of images, relative to its folder
            for line in p.read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if line:
                    q = Path(line)
                    out.append(q if q.is_absolute() else p.parent / q)
        elif p.is_file():
            out.append(p)
        else:
            raise DataError(f"{source}: '{split}' path not found: {p}")
    return list(dict.fromkeys(out))


def _yolo_row(tokens: list[str], size: tuple[int, int] | None, k: int) -> tuple[Any, list[Any]]:
    """``(category_id, bbox)`` of one label row; invalid rows give values validation counts."""
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        return None, tokens  # not numbers: a malformed annotation
    cls = values[0]
    coords = values[1:]
    if not cls.is_integer() or (len(coords) != 4 and (len(coords) < 6 or len(coords) % 2)):
        return None, tokens  # a fractional class, or neither a box nor a polygon: malformed
    cat_id = int(cls) + 1 if 0 <= cls < k else -1  # -1: an unknown category
    if size is None:
        return cat_id, tokens
    w, h = size
    if len(coords) == 4:
        cx, cy, bw, bh = coords
        return cat_id, [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h]
    xs, ys = coords[0::2], coords[1::2]
    if not all(math.isfinite(v) for v in coords):
        return cat_id, [math.nan] * 4
    x0, x1, y0, y1 = min(xs) * w, max(xs) * w, min(ys) * h, max(ys) * h
    return cat_id, [x0, y0, x1 - x0, y1 - y0]


def read_yolo(path: str | PathLike, split: str) -> SplitSource:
    """One split of a YOLO dataset as COCO-format annotations (see the module docstring).

    Args:
        path: the ``data.yaml``, or the folder holding it.
        split: the YAML key of the split (``train``, ``val``, ``test``).

    Raises:
        DataError: no ``data.yaml``, a YAML that is not a mapping or lacks ``names`` or the
            split, or a split path that does not exist; the message names the file.
    """
    source = _yolo_yaml(Path(path))
    try:
        cfg = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as e:
        raise DataError(f"{source} is not a YOLO data.yaml: {e}") from None
    if not isinstance(cfg, Mapping):
        raise DataError(f"{source} is not a YOLO data.yaml (not a mapping)")
    names = _yolo_names(cfg.get("names"), source)
    if cfg.get(split) in (None, ""):
        raise DataError(f"{source} has no '{split}' split (keys: {', '.join(map(str, cfg))})")
    root = Path(cfg.get("path") or ".")
    root = root if root.is_absolute() else (source.parent / root).absolute()  # links kept as given
    paths = _yolo_images(cfg[split], root, source, split)
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    without: list[int] = []
    for img_id, img in enumerate(paths, 1):
        size = _image_size(img)
        file_name = os.path.relpath(img, root) if img.is_relative_to(root) else str(img)
        images.append(_image_entry(img_id, file_name, size))
        label = yolo_label_path(img)
        if not label.is_file():
            without.append(img_id)
            continue
        for line in label.read_text(encoding="utf-8", errors="replace").splitlines():
            tokens = line.split()
            if not tokens:
                continue
            cat_id, bbox = _yolo_row(tokens, size, len(names))
            anns.append(_box_annotation(len(anns) + 1, img_id, cat_id, bbox))
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(names)]
    data = {"images": images, "annotations": anns, "categories": cats}
    return SplitSource(str(source), root, data, "yolo", without)


# ----------------------------------------------------------------------------- VOC
def _xml(path: Path) -> ET.Element | None:
    try:
        return ET.parse(path).getroot()
    except (ET.ParseError, OSError):
        return None


@lru_cache(maxsize=8)
def _voc_names(annotations: Path, stamp: float) -> tuple[str, ...]:
    names: set[str] = set()
    for f in annotations.glob("*.xml"):
        root = _xml(f)
        if root is not None:
            names |= {(o.findtext("name") or "").strip() for o in root.iter("object")}
    names.discard("")
    return tuple(sorted(names))


def voc_category_names(root: str | PathLike) -> list[str]:
    """The sorted object names of a VOC root's whole ``Annotations/`` folder."""
    ann = Path(root) / "Annotations"
    return list(_voc_names(ann, ann.stat().st_mtime))


def _voc_number(node: ET.Element | None, key: str) -> float | str | None:
    text = node.findtext(key) if node is not None else None
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return text


def read_voc(path: str | PathLike, split: str, difficult: str = "crowd") -> SplitSource:
    """One split of a Pascal VOC dataset as COCO-format annotations (see the module docstring).

    Args:
        path: the VOC root (``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/``).
        split: the ``ImageSets/Main/{split}.txt`` list (``train``, ``val``, ``trainval``, ``test``).
        difficult: ``"crowd"`` (ignored, as VOC evaluation does) or ``"object"`` (trained on and
            scored like any object).

    Raises:
        DataError: not a VOC root, or the split list is missing; the message names the path.
    """
    if difficult not in ("crowd", "object"):
        raise InputError(f"difficult must be 'crowd' or 'object', got {difficult!r}", argument="difficult")
    root = Path(path)
    listing = root / "ImageSets" / "Main" / f"{split}.txt"
    if not (root / "Annotations").is_dir() or not (root / "JPEGImages").is_dir():
        raise DataError(f"{root} is not a Pascal VOC root (needs Annotations/ and JPEGImages/)")
    if not listing.is_file():
        raise DataError(f"VOC split list not found: {listing}")
    names = voc_category_names(root)
    cat_of = {n: i + 1 for i, n in enumerate(names)}
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    without: list[int] = []
    stems = [s.split()[0] for s in listing.read_text(encoding="utf-8").splitlines() if s.strip()]
    for img_id, stem in enumerate(dict.fromkeys(stems), 1):
        xml = _xml(root / "Annotations" / f"{stem}.xml")
        file_name = (xml.findtext("filename") if xml is not None else None) or f"{stem}.jpg"
        size_node = xml.find("size") if xml is not None else None
        w, h = _voc_number(size_node, "width"), _voc_number(size_node, "height")
        size = (int(w), int(h)) if isinstance(w, float) and isinstance(h, float) and w > 0 and h > 0 else None
        images.append(
            _image_entry(img_id, file_name.strip(), size or _image_size(root / "JPEGImages" / file_name))
        )
        if xml is None:
            without.append(img_id)
            continue
        for obj in xml.iter("object"):
            name = (obj.findtext("name") or "").strip()
            box = obj.find("bndbox")
            x0, y0, x1, y1 = (_voc_number(box, k) for k in ("xmin", "ymin", "xmax", "ymax"))
            if all(isinstance(v, float) for v in (x0, y0, x1, y1)):
                bbox: list[Any] = [x0 - 1, y0 - 1, x1 - x0 + 1, y1 - y0 + 1]
            else:
                bbox = [v for v in (x0, y0, x1, y1) if v is not None]  # malformed
            hard = (obj.findtext("difficult") or "0").strip() == "1"
            crowd = 1 if hard and difficult == "crowd" else 0
            anns.append(_box_annotation(len(anns) + 1, img_id, cat_of.get(name, -1), bbox, crowd))
    cats = [{"id": cat_of[n], "name": n} for n in names]
    data = {"images": images, "annotations": anns, "categories": cats}
    return SplitSource(str(listing), root / "JPEGImages", data, "voc", without)
