"""Validation of COCO instances JSON files: every entry checked, what is skipped counted by class.

:func:`read_annotations` reads an annotation file and returns the entries usable as ground truth
together with a :class:`DataReport` that counts what it skipped, by class of problem and with a
few example ids (``report.summary()`` is logged at the start of training). The classes
(:data:`PROBLEMS`), in the order they are tested, each entry counted once: malformed image entries
(id not an integer, duplicate id, ``file_name`` not a string, ``width``/``height`` not positive
numbers); malformed annotations (id/``image_id``/``category_id`` not integers, duplicate id,
``bbox`` not 4 numbers, ``area`` not a number, ``iscrowd`` not 0/1 or a bool, ``segmentation``
not a list or object); NaN/inf values; unknown ``category_id``; orphans
(``image_id`` not a valid image); invalid geometry (``w`` or ``h`` <= 0, or the box entirely
outside its image); crowd annotations; tiny boxes. Images that had annotations but kept no
training box are counted too ("lost all their boxes"). Crowd and tiny boxes are normal COCO
content and stay among the returned entries (for evaluation); the other skipped annotations are
left out. With ``strict=True`` every class but crowd, tiny and "lost all their boxes"
(:data:`LENIENT_PROBLEMS`) is a :class:`DataError` naming the file, the class, the count and
example ids, and every image file must exist. A file that is not JSON, lacks
``images``/``annotations``/``categories``, has them of the wrong type, or has invalid categories
is always a :class:`DataError` naming the file. Training (``tools/train_det.py``) and evaluation
(``tools/eval_det.py``) read their ground truth through this one pass, so a file is read alike by
both; the returned annotations always carry an ``area`` and an integer ``iscrowd`` (pycocotools'
COCOeval needs both).

:func:`read_results` reads a COCO results JSON (what ``tools/eval_det.py --results`` scores): a
list of ``{image_id, category_id, bbox, score}`` objects. Any bad entry is a :class:`DataError`
naming the file, the first bad entry (``#index`` and its ``image_id``), the key and what it holds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from ghostdet.errors import GhostdetError

__all__ = [
    "LENIENT_PROBLEMS",
    "PROBLEMS",
    "DataError",
    "DataReport",
    "check_results",
    "read_annotations",
    "read_results",
]


class DataError(GhostdetError, ValueError):
    """A dataset file is malformed, or holds invalid entries under ``strict``; the message names the file."""


#: Problem class -> (what the example ids are, short description, details). Every image and
#: annotation entry lands in at most one class, checked in this order. Malformed entries (not an
#: object; id, image_id or category_id not an integer; duplicate id; bbox not 4 numbers; area,
#: iscrowd, segmentation, file_name, width or height of the wrong type) carry the reason next to
#: their example id.
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
    "no_label_file": ("image", "images without a label file", "YOLO/VOC: kept as negatives"),
}
#: Classes that are normal COCO content (or a consequence of other classes): counted, never an error.
LENIENT_PROBLEMS = frozenset({"crowd", "tiny", "lost_all_boxes", "no_label_file"})
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
        skipped_image_ids: ids of the image entries left out (malformed, or a missing file under
            ``strict``) whose id itself is a valid integer; a duplicate id is not among them.
    """

    ann_file: str
    images: int = 0
    annotations: int = 0
    boxes: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    dropped_empty: int = 0
    skipped_image_ids: set[int] = field(default_factory=set, repr=False)

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

    def problem_lines(self, lenient: bool = True, only: Collection[str] | None = None) -> list[str]:
        """One line per counted class, in :data:`PROBLEMS` order (count, description, example ids).

        Args:
            lenient: include the :data:`LENIENT_PROBLEMS` classes (crowd, tiny, lost all boxes).
            only: just these classes (``None``: every class).
        """
        return [
            self._line(k)
            for k in PROBLEMS
            if self.counts.get(k) and (lenient or k not in LENIENT_PROBLEMS) and (only is None or k in only)
        ]

    def summary(self) -> str:
        """Multi-line, human-readable summary (logged at the start of training)."""
        head = (
            f"data {self.ann_file}: {self.images} images, {self.annotations} annotations, "
            f"{self.boxes} training boxes"
        )
        lines = [f"  {line}" for line in self.problem_lines()]
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


def _is_flag(v: Any) -> bool:
    """``iscrowd``: 0, 1 or a bool (a string such as "0" is truthy in Python: never accepted)."""
    return isinstance(v, bool) or (_is_int(v) and v in (0, 1))


def _json_kind(v: Any) -> str:
    """The JSON name of a parsed value's type ("a JSON string", not "str")."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    return {str: "string", list: "list", dict: "object"}.get(type(v), type(v).__name__)


def _short(v: Any, limit: int = 60) -> str:
    """``v`` as JSON, cut to ``limit`` characters (for error messages)."""
    try:
        text = json.dumps(v)
    except (TypeError, ValueError):
        text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _load_json(path: Path, what: str) -> Any:
    """The parsed JSON file; a :class:`DataError` "PATH is not WHAT: not valid JSON (...)" if it is not."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{path} is not {what}: not valid JSON ({e})") from None


def _read_json(ann_file: Path, image_list_ok: bool = False, parsed: Any = None) -> dict[str, Any]:
    """The parsed instances JSON, with the top-level structure and categories checked.

    With ``image_list_ok`` only ``images`` is required; a missing ``categories`` is read as an
    empty list (``annotations`` stays missing: the caller decides whether it needs it). With
    ``parsed`` (annotations read from another format) the file is not read.
    """
    data = _load_json(ann_file, "a COCO-format JSON file") if parsed is None else parsed
    keys = ("images",) if image_list_ok else ("images", "annotations", "categories")
    if not isinstance(data, dict) or not set(keys) <= set(data):
        have = f"has keys {sorted(data)[:6]}" if isinstance(data, dict) else f"is a JSON {_json_kind(data)}"
        needs = "'images'" if image_list_ok else "'images', 'annotations' and 'categories'"
        raise DataError(
            f"{ann_file} is not a COCO-format JSON file: it {have}, not a COCO instances JSON "
            f"(which needs {needs})"
        )
    if image_list_ok:
        data = {**data, "categories": data.get("categories", [])}
    for key in ("images", "annotations", "categories"):
        if key in data and not isinstance(data[key], list):
            raise DataError(f"{ann_file}: '{key}' must be a list, got a JSON {_json_kind(data[key])}")
    seen: set[int] = set()
    for i, c in enumerate(data["categories"]):
        if not isinstance(c, dict) or not _is_int(c.get("id")) or "name" not in c:
            raise DataError(f"{ann_file}: category entry #{i} needs an integer 'id' and a 'name', got {c!r}")
        if c["id"] in seen:
            raise DataError(f"{ann_file}: category id {c['id']} is listed twice")
        seen.add(c["id"])
    if not seen and not image_list_ok:
        raise DataError(f"{ann_file}: 'categories' is empty (a detector needs at least one class)")
    return data


def _image_problem(im: Any, need_size: bool = True) -> str | None:
    if not isinstance(im, dict):
        return "not an object"
    if not _is_int(im.get("id")):
        return "id not an integer"
    if not isinstance(im.get("file_name"), str) or not im["file_name"]:
        return "file_name not a string"
    for key in ("width", "height") if need_size else ():
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
    if "iscrowd" in a and not _is_flag(a["iscrowd"]):
        return "iscrowd not 0, 1 or a bool"
    if "segmentation" in a and not isinstance(a["segmentation"], (list, dict)):
        return "segmentation not a list or object"
    return None


def _ref(entry: Any, index: int, reason: str | None = None) -> str:
    ident = entry.get("id") if isinstance(entry, dict) else None
    ref = str(ident) if _is_int(ident) else f"#{index}"
    return f"{ref} ({reason})" if reason else ref


def _normalised(a: dict, w: float, h: float) -> dict:
    """``a`` with the ``area`` (``w * h`` when missing) and integer ``iscrowd`` COCOeval needs."""
    crowd = a.get("iscrowd", 0)
    if "area" in a and type(crowd) is int and "iscrowd" in a:
        return a
    return {**a, "area": a.get("area", w * h), "iscrowd": int(crowd)}


def _validate(
    data: dict[str, Any], ann_file: Path, images_dir: Path | None, min_box_size: float, check_files: bool
) -> tuple[dict[str, Any], DataReport]:
    """Entries usable as ground truth (crowd and tiny boxes included) and the report of the rest."""
    raw_anns = data.get("annotations", [])
    report = DataReport(str(ann_file), images=len(data["images"]), annotations=len(raw_anns))
    images: dict[int, dict] = {}
    need_size = "annotations" in data  # an image list (evaluation, results only) needs no sizes
    for i, im in enumerate(data["images"]):
        reason = _image_problem(im, need_size) or ("duplicate id" if im["id"] in images else None)
        if reason:
            report.add("malformed_image", _ref(im, i, reason))
            if reason != "duplicate id" and isinstance(im, dict) and _is_int(im.get("id")):
                report.skipped_image_ids.add(im["id"])
        elif check_files and images_dir is not None and not (images_dir / im["file_name"]).is_file():
            report.add("missing_image", im["id"])
            report.skipped_image_ids.add(im["id"])
        else:
            images[im["id"]] = im
    cat_ids = {c["id"] for c in data["categories"]}
    anns: list[dict] = []
    ann_ids: set[int] = set()
    referenced: set[int] = set()
    with_box: set[int] = set()
    for i, a in enumerate(raw_anns):
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
        anns.append(_normalised(a, w, h))
        if a.get("iscrowd", 0):
            report.add("crowd", a["id"])
        elif min(x + w, W) - max(x, 0.0) < min_box_size or min(y + h, H) - max(y, 0.0) < min_box_size:
            report.add("tiny", a["id"])
        else:
            report.boxes += 1
            with_box.add(a["image_id"])
    for image_id in sorted(referenced - with_box):
        report.add("lost_all_boxes", image_id)
    out = {**data, "images": list(images.values())}
    if "annotations" in data:
        out["annotations"] = anns
    return out, report


def read_annotations(
    ann_file: Path,
    images_dir: Path | None,
    min_box_size: float,
    strict: bool = False,
    *,
    check_files: bool | None = None,
    image_list_ok: bool = False,
    parsed: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], DataReport]:
    """Read and validate a COCO instances JSON (see the module docstring for the rules).

    Args:
        ann_file: the annotation file.
        images_dir: folder the ``file_name`` entries are relative to (checked only with
            ``check_files``; ``None`` checks nothing).
        min_box_size: smallest side in pixels, after clipping, of a training box; smaller ones
            are counted as tiny (and kept for evaluation).
        strict: raise on any non-lenient problem (and, unless ``check_files`` says otherwise,
            require every image file to exist).
        check_files: count image files missing from ``images_dir`` (default: ``strict``).
        image_list_ok: accept an image list without ``annotations`` and ``categories`` (such as
            COCO's ``image_info_test-dev2017.json``), as evaluation without scoring does; its
            images then need only an ``id`` and a ``file_name``, and the returned dict has no
            ``annotations`` either.
        parsed: the annotations already in memory (a YOLO or VOC split read by
            :mod:`ghostdet.data.formats`); ``ann_file`` then only names their source.

    Returns:
        ``(data, report)``: the JSON dict with only the valid image and annotation entries
        (crowd and tiny boxes included; a missing ``area`` filled in as ``w * h``, ``iscrowd``
        as an int, 0 when missing) and its :class:`DataReport`.

    Raises:
        DataError: the file is not a COCO instances JSON, or ``strict`` and invalid entries.
    """
    files = strict if check_files is None else check_files
    data, report = _validate(
        _read_json(ann_file, image_list_ok, parsed), ann_file, images_dir, min_box_size, check_files=files
    )
    if strict:
        report.check()
    return data, report


def _result_problem(r: Any, image_ids: Collection[int] | None, ann_file: str) -> str | None:
    """What is wrong with one results entry (``None``: nothing)."""
    if not isinstance(r, dict):
        return f"a JSON {_json_kind(r)} ({_short(r)}), not an {{image_id, category_id, bbox, score}} object"
    for key in ("image_id", "category_id", "bbox", "score"):
        if key not in r:
            return f"no '{key}' key"
    for key in ("image_id", "category_id"):
        if not _is_int(r[key]):
            return f"'{key}' must be an integer, got {_short(r[key])}"
    bbox = r["bbox"]
    if (
        not isinstance(bbox, list)
        or len(bbox) != 4
        or not all(_is_number(v) and math.isfinite(v) for v in bbox)
        or bbox[2] < 0
        or bbox[3] < 0
    ):
        return f"'bbox' must be 4 finite numbers [x, y, w, h] with w, h >= 0, got {_short(bbox)}"
    if not _is_number(r["score"]) or not math.isfinite(r["score"]):
        return f"'score' must be a finite number, got {_short(r['score'])}"
    if image_ids is not None and r["image_id"] not in image_ids:
        return f"'image_id' {r['image_id']} is not an image of {ann_file}"
    return None


def check_results(
    results: Any,
    source: str,
    image_ids: Collection[int] | None = None,
    ann_file: str | PathLike | None = None,
    skipped_image_ids: Collection[int] = (),
) -> tuple[list[dict[str, Any]], int]:
    """Check parsed COCO bbox results: a list of ``{image_id, category_id, bbox, score}`` objects.

    Args:
        results: the parsed JSON.
        source: what to call it in messages (the results file).
        image_ids: the ground-truth image ids every ``image_id`` must be among (``None``: any).
        ann_file: the ground-truth file (named when an ``image_id`` is not among ``image_ids``).
        skipped_image_ids: ground-truth images left out by validation
            (:attr:`DataReport.skipped_image_ids`): detections on them are dropped, not an error.

    Returns:
        ``(entries, dropped)``: copies of the entries to score (pycocotools' ``loadRes`` adds
        keys in place) and the number dropped for ``skipped_image_ids``.

    Raises:
        DataError: ``results`` is not a list, or an entry is bad; the one-line message names
            ``source``, the first bad entry (``#index``, its ``image_id``), the key and the value,
            and how many entries are bad in all.
    """
    if not isinstance(results, list):
        raise DataError(
            f"{source} is not a COCO results file: it is a JSON {_json_kind(results)}, not a list of "
            "{image_id, category_id, bbox, score} objects"
        )
    gt = str(ann_file) if ann_file is not None else "the ground truth"
    skipped = set(skipped_image_ids)
    out: list[dict[str, Any]] = []
    first, n_bad, dropped = "", 0, 0
    for i, r in enumerate(results):
        if isinstance(r, dict) and _is_int(r.get("image_id")) and r["image_id"] in skipped:
            dropped += 1
            continue
        problem = _result_problem(r, image_ids, gt)
        if problem is None:
            out.append(dict(r))
            continue
        n_bad += 1
        if not first:
            ident = r.get("image_id") if isinstance(r, dict) else None
            ref = f"#{i} (image_id {ident})" if _is_int(ident) else f"#{i}"
            first = f"{source}: results entry {ref}: {problem}"
    if n_bad:
        more = f" ({n_bad} of {len(results)} entries are bad)" if n_bad > 1 else ""
        raise DataError(first + more)
    return out, dropped


def read_results(
    results_file: str | PathLike,
    image_ids: Collection[int] | None = None,
    ann_file: str | PathLike | None = None,
    skipped_image_ids: Collection[int] = (),
) -> tuple[list[dict[str, Any]], int]:
    """Read and check a COCO bbox results JSON (see :func:`check_results`).

    Args:
        results_file: the results file.
        image_ids: the ground-truth image ids every ``image_id`` must be among (``None``: any).
        ann_file: the ground-truth file (named in messages).
        skipped_image_ids: ground-truth images left out by validation; detections on them are dropped.

    Returns:
        ``(entries, dropped)`` as :func:`check_results`.

    Raises:
        DataError: the file is not JSON, not a list, or holds a bad entry (one line naming the
            file, the entry and the key).
    """
    path = Path(results_file)
    data = _load_json(path, "a COCO results file")
    return check_results(data, str(path), image_ids, ann_file, skipped_image_ids)
