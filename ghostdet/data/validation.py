"""Validation of COCO instances JSON files: every entry checked, what is skipped counted by class.

:func:`read_annotations` reads an annotation file and returns the entries usable as ground truth
together with a :class:`DataReport` that counts what it skipped, by class of problem and with a
few example ids (``report.summary()`` is logged at the start of training). The classes
(:data:`PROBLEMS`), in the order they are tested, each entry counted once: malformed image entries
(id not an integer, duplicate id, ``file_name`` not a string, ``width``/``height`` not positive
numbers); malformed annotations (id/``image_id``/``category_id`` not integers, duplicate id,
``bbox`` not 4 numbers, ``area`` not a number); NaN/inf values; unknown ``category_id``; orphans
(``image_id`` not a valid image); invalid geometry (``w`` or ``h`` <= 0, or the box entirely
outside its image); crowd annotations; tiny boxes. Images that had annotations but kept no
training box are counted too ("lost all their boxes"). Crowd and tiny boxes are normal COCO
content and stay among the returned entries (for evaluation); the other skipped annotations are
left out. With ``strict=True`` every class but crowd, tiny and "lost all their boxes"
(:data:`LENIENT_PROBLEMS`) is a :class:`DataError` naming the file, the class, the count and
example ids, and every image file must exist. A file that is not JSON, lacks
``images``/``annotations``/``categories``, has them of the wrong type, or has invalid categories
is always a :class:`DataError` naming the file.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "LENIENT_PROBLEMS",
    "PROBLEMS",
    "DataError",
    "DataReport",
    "read_annotations",
]


class DataError(ValueError):
    """A dataset file is malformed, or holds invalid entries under ``strict``; the message names the file."""


#: Problem class -> (what the example ids are, short description, details). Every image and
#: annotation entry lands in at most one class, checked in this order. Malformed entries (not an
#: object; id, image_id or category_id not an integer; duplicate id; bbox not 4 numbers; area,
#: file_name, width or height of the wrong type) carry the reason next to their example id.
PROBLEMS: dict[str, tuple[str, str, str]] = {
    "malformed_image": ("image", "malformed image entries", ""),
    "missing_image": ("image", "missing image files", "not in the image folder"),
    "malformed": ("annotation", "malformed annotations", ""),
    "non_finite": ("annotation", "annotations with NaN/inf values", ""),
    "unknown_category": ("annotation", "annotations with an unknown category_id", ""),
    "orphan": ("annotation", "orphan annotations", "image_id not among the valid images"),
    "invalid_geometry": (
        "annotation",
        "annotations with invalid geometry",
        "width or height <= 0, or the box entirely outside its image",
    ),
    "crowd": ("annotation", "crowd annotations", "not trained on, kept for evaluation"),
    "tiny": ("annotation", "tiny boxes", "a side below min_box_size pixels after clipping"),
    "lost_all_boxes": ("image", "images lost all their boxes", "kept as negatives unless drop_empty"),
}
#: Classes that are normal COCO content (or a consequence of other classes): counted, never an error.
LENIENT_PROBLEMS = frozenset({"crowd", "tiny", "lost_all_boxes"})
_MAX_EXAMPLES = 5


@dataclass
class DataReport:
    """What loading one annotation file kept and dropped (see :data:`PROBLEMS` for the classes).

    Args:
        ann_file: the annotation file.
        images: image entries in the file.
        annotations: annotation entries in the file.
        boxes: training boxes kept (not crowd, not tiny).
        counts: problem class -> number of entries.
        examples: problem class -> the first few ids (``#N`` = list position when there is no id).
        dropped_empty: images without a box removed by ``drop_empty``.
    """

    ann_file: str
    images: int = 0
    annotations: int = 0
    boxes: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    dropped_empty: int = 0

    def add(self, problem: str, example: Any) -> None:
        """Count one entry of ``problem`` (``example`` is its id or a short reference)."""
        self.counts[problem] = self.counts.get(problem, 0) + 1
        ex = self.examples.setdefault(problem, [])
        if len(ex) < _MAX_EXAMPLES:
            ex.append(str(example))

    def errors(self) -> dict[str, int]:
        """The counted classes that ``strict`` turns into an error (all but :data:`LENIENT_PROBLEMS`)."""
        return {k: n for k, n in self.counts.items() if k not in LENIENT_PROBLEMS}

    def _line(self, problem: str, detailed: bool = True) -> str:
        kind, desc, detail = PROBLEMS[problem]
        n_examples = _MAX_EXAMPLES if detailed else 3
        ex = ", ".join(self.examples.get(problem, [])[:n_examples])
        more = f" ({detail})" if detail and detailed else ""
        return f"{self.counts[problem]} {desc}{more}, e.g. {kind} ids {ex}"

    def summary(self) -> str:
        """Multi-line, human-readable summary (logged at the start of training)."""
        head = (
            f"data {self.ann_file}: {self.images} images, {self.annotations} annotations, "
            f"{self.boxes} training boxes"
        )
        lines = [f"  {self._line(k)}" for k in PROBLEMS if self.counts.get(k)]
        if self.dropped_empty:
            lines.append(f"  {self.dropped_empty} images without boxes dropped (drop_empty)")
        return head + ("; every entry is valid" if not lines else ", skipped:\n" + "\n".join(lines))

    def check(self) -> None:
        """Raise :class:`DataError` when any non-lenient problem was counted (``strict`` mode)."""
        errors = self.errors()
        if errors:
            parts = "; ".join(self._line(k, detailed=False) for k in PROBLEMS if k in errors)
            raise DataError(
                f"{self.ann_file}: {parts} (strict_data is on; without it these entries are skipped "
                "and counted)"
            )


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _read_json(ann_file: Path) -> dict[str, Any]:
    """The parsed instances JSON, with the top-level structure and categories checked."""
    try:
        with open(ann_file, encoding="utf-8") as f:
            data = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"annotation file is not valid JSON: {ann_file} ({e})") from None
    keys = ("images", "annotations", "categories")
    if not isinstance(data, dict) or not set(keys) <= set(data):
        kind = type(data).__name__
        have = f"has keys {sorted(data)[:6]}" if isinstance(data, dict) else f"is a JSON {kind}"
        raise DataError(
            f"annotation file is not a COCO instances JSON (needs 'images', 'annotations' and "
            f"'categories'; it {have}): {ann_file}"
        )
    for key in keys:
        if not isinstance(data[key], list):
            raise DataError(f"{ann_file}: '{key}' must be a list, got a JSON {type(data[key]).__name__}")
    seen: set[int] = set()
    for i, c in enumerate(data["categories"]):
        if not isinstance(c, dict) or not _is_int(c.get("id")) or "name" not in c:
            raise DataError(f"{ann_file}: category entry #{i} needs an integer 'id' and a 'name', got {c!r}")
        if c["id"] in seen:
            raise DataError(f"{ann_file}: category id {c['id']} is listed twice")
        seen.add(c["id"])
    if not seen:
        raise DataError(f"{ann_file}: 'categories' is empty (a detector needs at least one class)")
    return data


def _image_problem(im: Any) -> str | None:
    if not isinstance(im, dict):
        return "not an object"
    if not _is_int(im.get("id")):
        return "id not an integer"
    if not isinstance(im.get("file_name"), str) or not im["file_name"]:
        return "file_name not a string"
    for key in ("width", "height"):
        v = im.get(key)
        if not _is_number(v) or not math.isfinite(v) or v <= 0:
            return f"{key} not a positive number"
    return None


def _annotation_problem(a: Any, ann_ids: set[int]) -> str | None:
    if not isinstance(a, dict):
        return "not an object"
    for key in ("id", "image_id", "category_id"):
        if not _is_int(a.get(key)):
            return f"{key} not an integer"
    if a["id"] in ann_ids:
        return "duplicate id"
    bbox = a.get("bbox")
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        return "bbox not 4 numbers"
    if "area" in a and not _is_number(a["area"]):
        return "area not a number"
    return None


def _ref(entry: Any, index: int, reason: str | None = None) -> str:
    ident = entry.get("id") if isinstance(entry, dict) else None
    ref = str(ident) if _is_int(ident) else f"#{index}"
    return f"{ref} ({reason})" if reason else ref


def _validate(
    data: dict[str, Any], ann_file: Path, images_dir: Path, min_box_size: float, check_files: bool
) -> tuple[dict[str, Any], DataReport]:
    """Entries usable as ground truth (crowd and tiny boxes included) and the report of the rest."""
    report = DataReport(str(ann_file), images=len(data["images"]), annotations=len(data["annotations"]))
    images: dict[int, dict] = {}
    for i, im in enumerate(data["images"]):
        reason = _image_problem(im) or ("duplicate id" if im["id"] in images else None)
        if reason:
            report.add("malformed_image", _ref(im, i, reason))
        elif check_files and not (images_dir / im["file_name"]).is_file():
            report.add("missing_image", im["id"])
        else:
            images[im["id"]] = im
    cat_ids = {c["id"] for c in data["categories"]}
    anns: list[dict] = []
    ann_ids: set[int] = set()
    referenced: set[int] = set()
    with_box: set[int] = set()
    for i, a in enumerate(data["annotations"]):
        reason = _annotation_problem(a, ann_ids)
        if isinstance(a, dict) and _is_int(a.get("image_id")) and a["image_id"] in images:
            referenced.add(a["image_id"])
        if reason:
            report.add("malformed", _ref(a, i, reason))
            continue
        ann_ids.add(a["id"])
        x, y, w, h = (float(v) for v in a["bbox"])
        if not all(math.isfinite(v) for v in (x, y, w, h, float(a.get("area", 0.0)))):
            report.add("non_finite", a["id"])
            continue
        if a["category_id"] not in cat_ids:
            report.add("unknown_category", a["id"])
            continue
        im = images.get(a["image_id"])
        if im is None:
            report.add("orphan", a["id"])
            continue
        W, H = float(im["width"]), float(im["height"])
        if w <= 0 or h <= 0 or x >= W or y >= H or x + w <= 0 or y + h <= 0:
            report.add("invalid_geometry", a["id"])
            continue
        anns.append(a if "area" in a else {**a, "area": w * h})  # COCOeval needs 'area'
        if a.get("iscrowd", 0):
            report.add("crowd", a["id"])
        elif min(x + w, W) - max(x, 0.0) < min_box_size or min(y + h, H) - max(y, 0.0) < min_box_size:
            report.add("tiny", a["id"])
        else:
            report.boxes += 1
            with_box.add(a["image_id"])
    for image_id in sorted(referenced - with_box):
        report.add("lost_all_boxes", image_id)
    return {**data, "images": list(images.values()), "annotations": anns}, report


def read_annotations(
    ann_file: Path, images_dir: Path, min_box_size: float, strict: bool = False
) -> tuple[dict[str, Any], DataReport]:
    """Read and validate a COCO instances JSON (see the module docstring for the rules).

    Args:
        ann_file: the annotation file.
        images_dir: folder the ``file_name`` entries are relative to (checked only under ``strict``).
        min_box_size: smallest side in pixels, after clipping, of a training box; smaller ones
            are counted as tiny (and kept for evaluation).
        strict: raise on any non-lenient problem and require every image file to exist.

    Returns:
        ``(data, report)``: the JSON dict with only the valid image and annotation entries
        (crowd and tiny boxes included; a missing ``area`` filled in as ``w * h``) and its
        :class:`DataReport`.

    Raises:
        DataError: the file is not a COCO instances JSON, or ``strict`` and invalid entries.
    """
    data, report = _validate(_read_json(ann_file), ann_file, images_dir, min_box_size, check_files=strict)
    if strict:
        report.check()
    return data, report
