"""Converting detection datasets between COCO JSON, YOLO and Pascal VOC.

- :func:`write_coco_json`: one split of a YOLO or VOC dataset (read by
  :mod:`ghostdet.data.formats`) as a COCO ``instances`` JSON: images with ``file_name``
  relative to the split's image folder, boxes in COCO ``[x, y, w, h]`` pixels, categories with
  their names in the source's order.
- :func:`write_yolo` / :func:`write_voc`: one split of a COCO-format set in the YOLO or VOC
  layout. Images are linked, not copied (``copy_images=True`` copies them). Only the entries
  validation keeps are written; crowd annotations, which YOLO cannot express, are left out of a
  YOLO set and become ``difficult`` objects in a VOC set.

A round trip COCO -> YOLO/VOC -> COCO gives back the same boxes within the formats' rounding
(YOLO: 6 decimals of the image size; VOC: whole pixels) and the same category names. No input
file is ever written: a split that already exists in the output folder is refused.
"""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from os import PathLike
from pathlib import Path
from typing import Any

import yaml

from ghostdet.data.formats import SplitSource, read_split
from ghostdet.data.validation import read_annotations
from ghostdet.errors import OutputError
from ghostdet.utils.files import ProtectedFiles, atomic_write_json, atomic_write_text

__all__ = ["write_coco_json", "write_voc", "write_yolo"]


def write_coco_json(
    source: str | PathLike | SplitSource,
    output: str | PathLike,
    split: str = "val",
    data_format: str | None = None,
) -> dict[str, Any]:
    """Write one split of a YOLO or VOC dataset as a COCO ``instances`` JSON.

    Args:
        source: the dataset (``data.yaml``, its folder, or a VOC root), or an already read split.
        output: the JSON file to write.
        split: the split to convert.
        data_format: ``"yolo"`` or ``"voc"`` (``None``: detected).

    Returns:
        ``{"output", "images_dir", "images", "annotations", "categories"}``: where the JSON went,
        the folder its ``file_name`` entries are relative to, and the counts.

    Raises:
        OutputError: ``output`` is one of the dataset's files.
    """
    src = source if isinstance(source, SplitSource) else read_split(source, split, data_format)
    ProtectedFiles([src.name]).check(output)
    data = {k: src.data[k] for k in ("images", "annotations", "categories")}
    atomic_write_json(output, data, indent=None)
    return {
        "output": str(output),
        "images_dir": str(src.images_dir),
        "images": len(data["images"]),
        "annotations": len(data["annotations"]),
        "categories": len(data["categories"]),
    }


def _coco_split(ann_file: str | PathLike, images_dir: str | PathLike) -> dict[str, Any]:
    data, _ = read_annotations(Path(ann_file), Path(images_dir), min_box_size=0.0)
    return data


def _refuse_existing(*paths: Path) -> None:
    for p in paths:
        if p.exists():
            raise OutputError(
                f"{p} already exists; choose another output folder (nothing was written)", argument="output"
            )


def _place_image(src: Path, dst: Path, copy: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if copy:
        shutil.copy2(src, dst)
    else:
        dst.symlink_to(src.absolute())


def write_yolo(
    ann_file: str | PathLike,
    images_dir: str | PathLike,
    output: str | PathLike,
    split: str = "val",
    copy_images: bool = False,
) -> dict[str, Any]:
    """Write one split of a COCO-format set as a YOLO dataset under ``output``.

    ``output/images/{split}/`` gets the images (links), ``output/labels/{split}/`` one ``.txt``
    per image (``class cx cy w h``, normalised, 6 decimals), and ``output/data.yaml`` the split
    and the ``names`` (class ``i`` is the ``i``-th category of the JSON); an existing
    ``data.yaml`` there keeps its other splits.

    Args:
        ann_file: the COCO ``instances`` JSON.
        images_dir: the folder its ``file_name`` entries are relative to.
        output: the YOLO dataset root.
        split: the split's name in ``data.yaml``.
        copy_images: copy the images instead of linking them.

    Returns:
        ``{"output", "images", "labels", "boxes", "crowd_left_out"}``.

    Raises:
        OutputError: the split's folders already exist under ``output``.
        DataError: ``ann_file`` is not a COCO instances JSON.
    """
    data = _coco_split(ann_file, images_dir)
    out = Path(output)
    img_out, lbl_out = out / "images" / split, out / "labels" / split
    _refuse_existing(img_out, lbl_out)
    cls_of = {c["id"]: i for i, c in enumerate(data["categories"])}
    rows: dict[int, list[str]] = {im["id"]: [] for im in data["images"]}
    sizes = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
    crowd = 0
    for a in data["annotations"]:
        if a.get("iscrowd", 0):
            crowd += 1
            continue
        w, h = sizes[a["image_id"]]
        x, y, bw, bh = a["bbox"]
        cx, cy = (x + bw / 2) / w, (y + bh / 2) / h
        rows[a["image_id"]].append(f"{cls_of[a['category_id']]} {cx:.6f} {cy:.6f} {bw / w:.6f} {bh / h:.6f}")
    for im in data["images"]:
        rel = Path(im["file_name"])
        _place_image(Path(images_dir) / rel, img_out / rel, copy_images)
        label = (lbl_out / rel).with_suffix(".txt")
        label.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(label, "".join(r + "\n" for r in rows[im["id"]]))
    yaml_path = out / "data.yaml"
    cfg: dict[str, Any] = {}
    if yaml_path.is_file():
        cfg = yaml.safe_load(yaml_path.read_text(encoding="utf-8")) or {}
    names = [str(c["name"]) for c in data["categories"]]
    if cfg.get("names") not in (None, names):
        raise OutputError(
            f"{yaml_path} lists other class names; choose another output folder", argument="output"
        )
    cfg.update({"path": ".", split: f"images/{split}", "names": names})
    atomic_write_text(yaml_path, yaml.safe_dump(cfg, sort_keys=False))
    n_boxes = sum(len(r) for r in rows.values())
    return {
        "output": str(out),
        "images": len(rows),
        "labels": len(rows),
        "boxes": n_boxes,
        "crowd_left_out": crowd,
    }


def _voc_xml(im: dict[str, Any], file_name: str, objects: list[tuple[str, list[float], int]]) -> str:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "JPEGImages"
    ET.SubElement(root, "filename").text = file_name
    size = ET.SubElement(root, "size")
    for key, value in (("width", im["width"]), ("height", im["height"]), ("depth", 3)):
        ET.SubElement(size, key).text = str(int(value))
    for name, (x, y, w, h), difficult in objects:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = name
        ET.SubElement(obj, "difficult").text = str(difficult)
        box = ET.SubElement(obj, "bndbox")
        x0, y0 = round(x), round(y)
        corners = (x0 + 1, y0 + 1, max(x0 + 1, round(x + w)), max(y0 + 1, round(y + h)))  # 1-based, inclusive
        for key, value in zip(("xmin", "ymin", "xmax", "ymax"), corners):
            ET.SubElement(box, key).text = str(value)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def write_voc(
    ann_file: str | PathLike,
    images_dir: str | PathLike,
    output: str | PathLike,
    split: str = "val",
    copy_images: bool = False,
) -> dict[str, Any]:
    """Write one split of a COCO-format set as a Pascal VOC dataset under ``output``.

    ``output/JPEGImages/`` gets the images (links), ``output/Annotations/`` one XML per image
    (1-based inclusive whole-pixel boxes; crowd annotations as ``difficult`` objects), and
    ``output/ImageSets/Main/{split}.txt`` the list. Image names must be unique by stem.

    Args:
        ann_file: the COCO ``instances`` JSON.
        images_dir: the folder its ``file_name`` entries are relative to.
        output: the VOC root.
        split: the split list's name.
        copy_images: copy the images instead of linking them.

    Returns:
        ``{"output", "images", "boxes"}``.

    Raises:
        OutputError: the split list, or an image's XML, already exists under ``output``; or two
            images share a stem.
        DataError: ``ann_file`` is not a COCO instances JSON.
    """
    data = _coco_split(ann_file, images_dir)
    out = Path(output)
    listing = out / "ImageSets" / "Main" / f"{split}.txt"
    stems = [Path(im["file_name"]).stem for im in data["images"]]
    if len(set(stems)) != len(stems):
        raise OutputError("two images share a file name stem; VOC names images by stem", argument="output")
    _refuse_existing(listing, *(out / "Annotations" / f"{s}.xml" for s in stems))
    name_of = {c["id"]: str(c["name"]) for c in data["categories"]}
    objects: dict[int, list[tuple[str, list[float], int]]] = {im["id"]: [] for im in data["images"]}
    for a in data["annotations"]:
        objects[a["image_id"]].append((name_of[a["category_id"]], a["bbox"], 1 if a.get("iscrowd", 0) else 0))
    (out / "Annotations").mkdir(parents=True, exist_ok=True)
    for im, stem in zip(data["images"], stems):
        rel = Path(im["file_name"])
        _place_image(Path(images_dir) / rel, out / "JPEGImages" / rel.name, copy_images)
        atomic_write_text(out / "Annotations" / f"{stem}.xml", _voc_xml(im, rel.name, objects[im["id"]]))
    listing.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(listing, "".join(s + "\n" for s in stems))
    return {"output": str(out), "images": len(stems), "boxes": sum(len(v) for v in objects.values())}
