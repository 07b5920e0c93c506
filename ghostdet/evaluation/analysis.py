"""Error analysis of a scored detection run: PR curves, best-F1 thresholds, a confusion matrix, worst images.

Everything here reads what a COCO evaluation already has (the ground truth, the detections and
the evaluated ``COCOeval``) and writes, next to ``metrics.json``:

- ``pr_curves.json`` / ``.csv`` / ``.png``: per class, the 101-point interpolated precision at
  COCO's recall thresholds, at IoU 0.5 and averaged over IoU 0.5:0.95, read from
  ``COCOeval.eval["precision"]`` (area "all", 100 detections) -- the array pycocotools averages
  into the AP it prints, so the mean of a curve (``-1`` entries left out) is that class's AP.
- ``thresholds.json`` / ``.csv`` / ``.png``: per class and over all classes together, the score
  threshold with the best F1 at IoU 0.5. Precision and recall as a function of the threshold
  come from COCOeval's own per-image matches (``evalImgs``, area "all", the top 100 detections
  per image and class, a detection matched only to a box of its class, detections on crowd
  boxes ignored), so they are the matches behind AP50. Every distinct detection score is a
  candidate ("keep detections scoring >= t"); on a tie in F1 the highest threshold wins.
- ``confusion_matrix.json`` / ``.csv`` / ``.png``: at IoU 0.5 and one score threshold (the
  global best-F1 one unless given). Rows are the ground-truth classes plus ``background``
  (false detections), columns the predicted classes plus ``background`` (missed objects). Per
  image, the detections scoring >= the threshold are taken highest score first, each matched to
  the still unmatched non-crowd ground-truth box of highest IoU >= 0.5 of any class (same class:
  a correct detection, on the diagonal; another class: a confusion). A detection left
  unmatched that covers a crowd box (COCO's crowd overlap, intersection over the detection's
  area, >= 0.5) is ignored, as COCOeval ignores it: it is neither a false detection nor in the
  matrix (``ignored_on_crowd`` counts them). Crowd boxes are never missed objects.
- ``errors.json`` and ``errors/*.png``: the images with the most false positives (false
  detections and confusions) and the most false negatives (missed and confused objects) at the
  confusion-matrix threshold, drawn with the ground truth in green and the detections in red.

The plots need matplotlib (``pip install ghostdet[plot]``); without it the JSON/CSV files are
still written and :func:`write_analysis` says the plots were skipped.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pycocotools import mask as mask_utils

from ghostdet.data.images import ImageReadError, open_rgb
from ghostdet.errors import ArgumentError
from ghostdet.utils.files import ProtectedFiles, atomic_write_bytes, atomic_write_json, atomic_write_text

__all__ = [
    "ANALYSIS_FILES",
    "ConfusionResult",
    "PLOT_HINT",
    "best_f1_thresholds",
    "confusion_matrix",
    "draw_errors",
    "f1_scan",
    "match_image",
    "pr_curves",
    "write_analysis",
]

PLOT_HINT = "pip install ghostdet[plot]"
ANALYSIS_FILES: tuple[str, ...] = (
    "pr_curves.json", "pr_curves.csv", "pr_curves.png",
    "thresholds.json", "thresholds.csv", "thresholds.png",
    "confusion_matrix.json", "confusion_matrix.csv", "confusion_matrix.png",
    "errors.json",
)  # fmt: skip
"""The files :func:`write_analysis` may write in the output folder (besides ``errors/``)."""

BACKGROUND = "background"
GT_COLOUR = (0, 200, 0)
DET_COLOUR = (230, 25, 75)
_LEGEND_MAX = 10  # classes named in a plot legend (the best and the worst by AP)


def _area_max_dets(params: Any) -> tuple[int, int]:
    """Indices of area "all" and of 100 detections (else the largest) in COCOeval params."""
    a = list(params.areaRngLbl).index("all")
    max_dets = list(params.maxDets)
    return a, (max_dets.index(100) if 100 in max_dets else len(max_dets) - 1)


def _iou_index(params: Any, iou: float) -> int:
    thrs = np.asarray(params.iouThrs, dtype=float)
    t = int(np.argmin(np.abs(thrs - iou)))
    if not math.isclose(float(thrs[t]), iou, abs_tol=1e-9):
        raise ArgumentError(f"IoU threshold {iou} is not one of COCOeval's {thrs.tolist()}", argument="iou")
    return t


def _category_names(coco_gt: Any, cat_ids: Sequence[int]) -> list[str]:
    """Category names for keys: a name used twice gets its id appended."""
    names = [str(coco_gt.cats.get(c, {}).get("name", c)) for c in cat_ids]
    seen = {n for n in names if names.count(n) > 1}
    return [f"{n} (id {c})" if n in seen else n for n, c in zip(names, cat_ids)]


def _masked_mean(a: np.ndarray, axis: int | None = None) -> Any:
    """Mean of the entries > -1 (COCO's "absent" marker); nan where there are none."""
    valid = a > -1
    total = np.where(valid, a, 0.0).sum(axis=axis)
    count = valid.sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def pr_curves(coco_eval: Any) -> dict[str, Any]:
    """Per-class precision-recall curves from an accumulated COCOeval.

    Args:
        coco_eval: a pycocotools ``COCOeval`` after ``evaluate()`` and ``accumulate()``.

    Returns:
        ``{"recall": [101 recall thresholds], "iou_thresholds", "area": "all", "max_dets",
        "classes": [{"id", "name", "ap", "ap50", "precision_50", "precision_50_95"}]}``. The
        precision lists are ``COCOeval.eval["precision"]`` at IoU 0.5 and its mean over the IoU
        thresholds (``-1`` entries left out); ``ap``/``ap50`` are their means as COCOeval
        computes AP. A class without ground truth in the evaluated images has ``None`` curves
        and APs.
    """
    p = coco_eval.params
    precision = coco_eval.eval["precision"]  # [T, R, K, A, M]
    a, m = _area_max_dets(p)
    t50 = _iou_index(p, 0.5)
    names = _category_names(coco_eval.cocoGt, p.catIds)
    classes = []
    for k, cat_id in enumerate(p.catIds):
        block = precision[:, :, k, a, m]  # [T, R]
        if not (block > -1).any():
            classes.append(
                {"id": int(cat_id), "name": names[k], "ap": None, "ap50": None}
                | {"precision_50": None, "precision_50_95": None}
            )
            continue
        curve50 = block[t50]
        curve = _masked_mean(block, axis=0)
        classes.append(
            {
                "id": int(cat_id),
                "name": names[k],
                "ap": _none_if_nan(float(_masked_mean(block))),
                "ap50": _none_if_nan(float(_masked_mean(curve50))),
                "precision_50": [None if v <= -1 else float(v) for v in curve50],
                "precision_50_95": [None if math.isnan(v) else float(v) for v in curve],
            }
        )
    return {
        "recall": [float(r) for r in p.recThrs],
        "iou_thresholds": [float(t) for t in p.iouThrs],
        "area": "all",
        "max_dets": int(p.maxDets[m]),
        "classes": classes,
    }


def _empty_pr_curves(coco_gt: Any, cat_ids: Sequence[int], img_ids: Sequence[int]) -> dict[str, Any]:
    """The curves when there were no detections (no COCOeval): precision 0 where there is ground truth."""
    recall = np.linspace(0.0, 1.0, 101)
    names = _category_names(coco_gt, cat_ids)
    classes = []
    for name, cat_id in zip(names, cat_ids):
        anns = coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=list(img_ids), catIds=[cat_id]))
        has_gt = any(not a.get("iscrowd", 0) for a in anns)
        zeros = [0.0] * len(recall) if has_gt else None
        classes.append(
            {"id": int(cat_id), "name": name, "ap": 0.0 if has_gt else None, "ap50": 0.0 if has_gt else None}
            | {"precision_50": zeros, "precision_50_95": zeros}
        )
    return {
        "recall": recall.tolist(),
        "iou_thresholds": np.linspace(0.5, 0.95, 10).tolist(),
        "area": "all",
        "max_dets": 100,
        "classes": classes,
    }


def f1_scan(scores: Sequence[float], is_tp: Sequence[bool], n_gt: int) -> dict[str, Any]:
    """Precision, recall and F1 at every distinct score used as a threshold (keep ``score >= t``).

    Args:
        scores: score of each (non-ignored) detection.
        is_tp: whether each detection is a true positive.
        n_gt: the number of (non-ignored) ground-truth objects.

    Returns:
        ``{"thresholds", "precision", "recall", "f1"}`` (arrays, highest threshold first) and
        ``"best"``: ``{"threshold", "f1", "precision", "recall"}`` at the best F1 (the highest
        threshold among equal F1s); the best threshold is ``None`` when there are no detections
        or no ground truth.
    """
    s = np.asarray(scores, dtype=float)
    tp = np.asarray(is_tp, dtype=bool)
    order = np.argsort(-s, kind="mergesort")
    s, tp = s[order], tp[order]
    ctp = np.cumsum(tp)
    cfp = np.cumsum(~tp)
    # the last detection of each run of equal scores: "score >= t" keeps the whole run
    last = np.flatnonzero(np.append(s[1:] != s[:-1], True)) if s.size else np.array([], dtype=int)
    thresholds, tps, fps = s[last], ctp[last].astype(float), cfp[last].astype(float)
    precision = tps / np.maximum(tps + fps, 1)
    recall = tps / n_gt if n_gt > 0 else np.zeros_like(tps)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    if thresholds.size and n_gt > 0:
        i = int(np.argmax(f1))  # the first maximum: the highest threshold
        best = {
            "threshold": float(thresholds[i]),
            "f1": float(f1[i]),
            "precision": float(precision[i]),
            "recall": float(recall[i]),
        }
    else:
        best = {"threshold": None, "f1": 0.0, "precision": 0.0, "recall": 0.0}
    return {"thresholds": thresholds, "precision": precision, "recall": recall, "f1": f1, "best": best}


def _matches_at(coco_eval: Any, iou: float) -> dict[int, tuple[np.ndarray, np.ndarray, int]]:
    """Per category id: the (scores, is_tp) of its non-ignored detections and its non-ignored
    ground-truth count, from ``COCOeval.evalImgs`` at IoU ``iou`` (area "all")."""
    p = coco_eval.params
    t = _iou_index(p, iou)
    a, m = _area_max_dets(p)
    max_det = int(p.maxDets[m])
    n_img, n_area = len(p.imgIds), len(p.areaRng)
    out = {}
    for k, cat_id in enumerate(p.catIds):
        scores, tps, n_gt = [], [], 0
        for i in range(n_img):
            e = coco_eval.evalImgs[k * n_area * n_img + a * n_img + i]
            if e is None:
                continue
            s = np.asarray(e["dtScores"][:max_det], dtype=float)
            matched = np.asarray(e["dtMatches"][t, :max_det]) > 0
            ignored = np.asarray(e["dtIgnore"][t, :max_det]).astype(bool)
            scores.append(s[~ignored])
            tps.append(matched[~ignored])
            n_gt += int(np.count_nonzero(np.asarray(e["gtIgnore"]) == 0))
        out[int(cat_id)] = (
            np.concatenate(scores) if scores else np.zeros(0),
            np.concatenate(tps) if tps else np.zeros(0, dtype=bool),
            n_gt,
        )
    return out


def best_f1_thresholds(coco_eval: Any, iou: float = 0.5) -> dict[str, Any]:
    """The score threshold of best F1 per class and over all classes together (see the module doc).

    Args:
        coco_eval: a pycocotools ``COCOeval`` after ``evaluate()``.
        iou: the IoU threshold of a match (one of COCOeval's ``iouThrs``).

    Returns:
        ``{"iou", "matching", "per_class": {name: {"id", "threshold", "f1", "precision",
        "recall", "ground_truth", "detections"}}, "global": {...}}``; a threshold is ``None``
        without detections or ground truth.

    Raises:
        ArgumentError: ``iou`` is not one of the evaluation's IoU thresholds.
    """
    matches = _matches_at(coco_eval, iou)
    names = _category_names(coco_eval.cocoGt, list(matches))
    per_class, curves = {}, {}
    for name, (cat_id, (scores, tps, n_gt)) in zip(names, matches.items()):
        scan = f1_scan(scores, tps, n_gt)
        curves[name] = scan
        per_class[name] = {"id": cat_id, **scan["best"], "ground_truth": n_gt, "detections": int(scores.size)}
    all_scores = np.concatenate([v[0] for v in matches.values()]) if matches else np.zeros(0)
    all_tps = np.concatenate([v[1] for v in matches.values()]) if matches else np.zeros(0, dtype=bool)
    n_all = sum(v[2] for v in matches.values())
    glob = f1_scan(all_scores, all_tps, n_all)
    curves["all classes"] = glob
    return {
        "iou": iou,
        "matching": "COCOeval evalImgs (same-class matches, area all, top 100 per image and class)",
        "per_class": per_class,
        "global": {**glob["best"], "ground_truth": n_all, "detections": int(all_scores.size)},
        "_curves": curves,
    }


def _empty_thresholds(names: Sequence[str], cat_ids: Sequence[int], iou: float) -> dict[str, Any]:
    none = {"threshold": None, "f1": 0.0, "precision": 0.0, "recall": 0.0}
    return {
        "iou": iou,
        "matching": "no detections",
        "per_class": {n: {"id": int(c), **none} for n, c in zip(names, cat_ids)},
        "global": dict(none),
        "_curves": {},
    }


def match_image(
    gt_boxes: np.ndarray,
    gt_crowd: np.ndarray,
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    iou_threshold: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy class-agnostic matching of one image's detections to its ground truth.

    Detections are taken highest score first (a stable sort, as COCOeval); each takes the still
    unmatched non-crowd box of highest IoU >= ``iou_threshold`` (whatever its class). One that
    finds none but covers a crowd box (intersection over the detection's area >= the threshold,
    COCO's crowd rule) is marked as on a crowd box.

    Args:
        gt_boxes: (G, 4) ``[x, y, w, h]`` ground-truth boxes.
        gt_crowd: (G,) crowd flags.
        det_boxes: (D, 4) ``[x, y, w, h]`` detections.
        det_scores: (D,) scores.
        iou_threshold: the least IoU of a match.

    Returns:
        ``(det_to_gt, on_crowd)``: per detection the index of its ground-truth box or -1, and
        whether an unmatched detection lies on a crowd box.
    """
    n_det = len(det_boxes)
    det_to_gt = np.full(n_det, -1, dtype=int)
    on_crowd = np.zeros(n_det, dtype=bool)
    if n_det == 0 or len(gt_boxes) == 0:
        return det_to_gt, on_crowd
    crowd = np.asarray(gt_crowd, dtype=bool)
    ious = np.asarray(
        mask_utils.iou(
            np.asarray(det_boxes, dtype=np.float64),
            np.asarray(gt_boxes, dtype=np.float64),
            crowd.astype(np.uint8).tolist(),
        )
    ).reshape(n_det, len(gt_boxes))
    taken = np.zeros(len(gt_boxes), dtype=bool)
    for d in np.argsort(-np.asarray(det_scores, dtype=float), kind="mergesort"):
        candidates = np.where(~crowd & ~taken & (ious[d] >= iou_threshold), ious[d], -1.0)
        g = int(np.argmax(candidates))
        if candidates[g] >= 0:
            det_to_gt[d] = g
            taken[g] = True
        elif np.any(crowd & (ious[d] >= iou_threshold)):
            on_crowd[d] = True
    return det_to_gt, on_crowd


@dataclass
class ConfusionResult:
    """A confusion matrix and the per-image outcomes behind it.

    Attributes:
        matrix: (K + 1, K + 1) counts; rows ground truth, columns predictions, the last row and
            column ``background``.
        cat_ids: the K category ids, in row/column order.
        names: their names (then ``background``).
        threshold: the score threshold (``None``: every detection).
        iou: the IoU threshold.
        ignored_on_crowd: detections ignored for lying on a crowd box.
        unknown_category: detections of a category not in the ground truth, left out.
        images: per image id, ``{"false_positives", "false_negatives", "gt": [...], "dets": [...]}``
            with each box's ``bbox``, ``category_id`` (and ``score``) and ``outcome``.
    """

    matrix: np.ndarray
    cat_ids: list[int]
    names: list[str]
    threshold: float | None
    iou: float
    ignored_on_crowd: int = 0
    unknown_category: int = 0
    images: dict[int, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON record: labels, matrix, threshold and the counts of what was left out."""
        k = len(self.cat_ids)
        return {
            "iou": self.iou,
            "score_threshold": self.threshold,
            "rows": "ground truth (last: background = false detections)",
            "columns": "prediction (last: background = missed objects)",
            "labels": self.names,
            "category_ids": self.cat_ids,
            "matrix": self.matrix.astype(int).tolist(),
            "correct": int(np.trace(self.matrix[:k, :k])),
            "confused": int(self.matrix[:k, :k].sum() - np.trace(self.matrix[:k, :k])),
            "false_detections": int(self.matrix[k, :k].sum()),
            "missed": int(self.matrix[:k, k].sum()),
            "ignored_on_crowd": self.ignored_on_crowd,
            "unknown_category": self.unknown_category,
        }


def confusion_matrix(
    coco_gt: Any,
    detections: Iterable[Mapping[str, Any]],
    img_ids: Iterable[int] | None = None,
    score_threshold: float | None = None,
    iou_threshold: float = 0.5,
    cat_ids: Sequence[int] | None = None,
) -> ConfusionResult:
    """Class confusion of ``detections`` against ``coco_gt`` with a background row and column.

    Matching per image by :func:`match_image` (see the module doc for the rule).

    Args:
        coco_gt: pycocotools ``COCO`` ground truth.
        detections: COCO results (``image_id``, ``category_id``, ``bbox`` xywh, ``score``).
        img_ids: the images to count (default: every image of ``coco_gt``); detections on
            other images are left out.
        score_threshold: keep detections scoring ``>=`` this (``None``: all).
        iou_threshold: the least IoU of a match.
        cat_ids: the classes, in order (default: the sorted category ids of ``coco_gt``).

    Returns:
        A :class:`ConfusionResult`.
    """
    cats = [int(c) for c in (cat_ids if cat_ids is not None else sorted(coco_gt.getCatIds()))]
    index = {c: i for i, c in enumerate(cats)}
    k = len(cats)
    ids = sorted({int(i) for i in (img_ids if img_ids is not None else coco_gt.getImgIds())})
    wanted = set(ids)
    by_image: dict[int, list[Mapping[str, Any]]] = {i: [] for i in ids}
    unknown = 0
    for d in detections:
        img = int(d["image_id"])
        if img not in wanted or (score_threshold is not None and float(d["score"]) < score_threshold):
            continue
        if int(d["category_id"]) not in index:
            unknown += 1
            continue
        by_image[img].append(d)
    matrix = np.zeros((k + 1, k + 1), dtype=np.int64)
    on_crowd_total = 0
    images: dict[int, dict[str, Any]] = {}
    for img in ids:
        gts = [g for g in coco_gt.imgToAnns.get(img, []) if int(g["category_id"]) in index]
        dets = by_image[img]
        gt_boxes = np.array([g["bbox"] for g in gts], dtype=float).reshape(-1, 4)
        crowd = np.array([bool(g.get("iscrowd", 0)) for g in gts], dtype=bool)
        det_boxes = np.array([d["bbox"] for d in dets], dtype=float).reshape(-1, 4)
        scores = np.array([float(d["score"]) for d in dets], dtype=float)
        det_to_gt, on_crowd = match_image(gt_boxes, crowd, det_boxes, scores, iou_threshold)
        gt_outcome = ["crowd" if c else "missed" for c in crowd]
        det_records = []
        for j, d in enumerate(dets):
            pred = index[int(d["category_id"])]
            g = det_to_gt[j]
            if g >= 0:
                truth = index[int(gts[g]["category_id"])]
                matrix[truth, pred] += 1
                outcome = "correct" if truth == pred else "confused"
                gt_outcome[g] = "matched" if truth == pred else "confused"
            elif on_crowd[j]:
                on_crowd_total += 1
                outcome = "crowd"
            else:
                matrix[k, pred] += 1
                outcome = "false"
            det_records.append(
                {
                    "bbox": [float(v) for v in d["bbox"]],
                    "category_id": int(d["category_id"]),
                    "score": float(d["score"]),
                    "outcome": outcome,
                }
            )
            if outcome == "confused":
                det_records[-1]["truth"] = int(gts[g]["category_id"])
        for g, outcome in zip(gts, gt_outcome):
            if outcome == "missed":
                matrix[index[int(g["category_id"])], k] += 1
        images[img] = {
            "false_positives": sum(r["outcome"] in ("false", "confused") for r in det_records),
            "false_negatives": sum(o in ("missed", "confused") for o in gt_outcome),
            "gt": [
                {"bbox": [float(v) for v in g["bbox"]], "category_id": int(g["category_id"]), "outcome": o}
                for g, o in zip(gts, gt_outcome)
            ],
            "dets": det_records,
        }
    names = [*_category_names(coco_gt, cats), BACKGROUND]
    return ConfusionResult(
        matrix, cats, names, score_threshold, iou_threshold, on_crowd_total, unknown, images
    )


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # an old Pillow or no FreeType: the bitmap font
        return ImageFont.load_default()


def draw_errors(image: Image.Image, record: Mapping[str, Any], names: Mapping[int, str]) -> Image.Image:
    """Draw one image's detections (red) and, over them, its ground truth (green) with their outcomes.

    Small images are enlarged (by a whole factor, up to 4) so the captions stay legible.

    Args:
        image: the RGB image.
        record: one entry of :attr:`ConfusionResult.images`.
        names: category id -> name.

    Returns:
        A new RGB image.
    """
    scale = max(1, min(4, math.ceil(480 / max(image.size))))
    img = image.convert("RGB")
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(img)
    line = max(2, round(min(img.size) / 250))
    font = _font(max(10, round(min(img.size) / 30)))

    def box(bbox: Sequence[float], colour: tuple[int, int, int], caption: str, below: bool) -> None:
        x, y, w, h = (v * scale for v in bbox)
        draw.rectangle([x, y, x + w, y + h], outline=colour, width=line)
        left, top, right, bottom = draw.textbbox((0, 0), caption, font=font)
        tw, th = right - left, bottom - top + 2
        ty = min(y + h, img.height - th) if below else max(y - th, 0)
        draw.rectangle([x, ty, x + tw + 2, ty + th], fill=colour)
        draw.text((x + 1, ty - top + 1), caption, fill=(255, 255, 255), font=font)

    for d in record["dets"]:
        name = names.get(d["category_id"], str(d["category_id"]))
        tag = {"false": " FP", "crowd": " (crowd)"}.get(d["outcome"], "")
        if d["outcome"] == "confused":
            tag = f" (is {names.get(d['truth'], d['truth'])})"
        box(d["bbox"], DET_COLOUR, f"{name} {d['score']:.2f}{tag}", below=False)
    for g in record["gt"]:
        name = names.get(g["category_id"], str(g["category_id"]))
        tag = {"missed": " MISSED", "confused": " CONFUSED", "crowd": " crowd"}.get(g["outcome"], "")
        box(g["bbox"], GT_COLOUR, name + tag, below=True)
    return img


def _worst(images: Mapping[int, Mapping[str, Any]], key: str, n: int) -> list[int]:
    other = "false_negatives" if key == "false_positives" else "false_positives"
    ranked = sorted(
        (i for i, r in images.items() if r[key] > 0), key=lambda i: (-images[i][key], -images[i][other], i)
    )
    return ranked[:n]


def _csv_text(rows: Iterable[Sequence[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return buf.getvalue()


def _figure_class() -> Any:
    """matplotlib's ``Figure`` (no pyplot, no backend switch), or ``None`` when not installed."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    return Figure


def _png_bytes(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _legend_classes(classes: Sequence[Mapping[str, Any]], key: str) -> set[str]:
    """The classes to name in a legend: all of them up to the limit, else the best and worst by ``key``."""
    ranked = sorted((c for c in classes if c[key] is not None), key=lambda c: c[key])
    if len(ranked) <= _LEGEND_MAX:
        return {c["name"] for c in ranked}
    half = _LEGEND_MAX // 2
    return {c["name"] for c in ranked[:half] + ranked[-half:]}


def _plot_pr(figure: Any, curves: Mapping[str, Any]) -> bytes:
    fig = figure(figsize=(12, 5))
    recall = curves["recall"]
    classes = [c for c in curves["classes"] if c["precision_50"] is not None]
    for ax, (key, ap_key, title) in zip(
        fig.subplots(1, 2),
        (("precision_50", "ap50", "IoU 0.5"), ("precision_50_95", "ap", "IoU 0.5:0.95 (mean)")),
    ):
        named = _legend_classes(classes, ap_key)
        for c in classes:
            if c["name"] in named:
                ax.plot(recall, c[key], lw=1.4, label=f"{c['name']} ({c[ap_key]:.3f})")
            else:
                ax.plot(recall, c[key], lw=0.6, color="0.75")
        if classes:
            mean = np.mean([c[key] for c in classes], axis=0)
            ap = np.mean([c[ap_key] for c in classes])
            ax.plot(recall, mean, lw=2.5, color="black", label=f"mean ({ap:.3f})")
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision", title=f"PR curves, {title}")
        ax.grid(alpha=0.3)
        if classes:
            extra = len(classes) - len(named)
            ax.legend(fontsize=7, loc="lower left", title=f"+{extra} more in grey" if extra > 0 else None)
    return _png_bytes(fig)


def _plot_thresholds(figure: Any, thresholds: Mapping[str, Any]) -> bytes:
    fig = figure(figsize=(7, 5))
    ax = fig.subplots()
    curves = thresholds["_curves"]
    per_class = thresholds["per_class"]
    rows = [{"name": n, "f1": v["f1"]} for n, v in per_class.items() if v["threshold"] is not None]
    named = _legend_classes(rows, "f1")
    for name, scan in curves.items():
        if name == "all classes" or not len(scan["thresholds"]):
            continue
        if name in named:
            ax.plot(scan["thresholds"], scan["f1"], lw=1.2, label=f"{name} (best {scan['best']['f1']:.2f})")
        else:
            ax.plot(scan["thresholds"], scan["f1"], lw=0.6, color="0.75")
    glob = curves.get("all classes")
    if glob is not None and len(glob["thresholds"]):
        best = glob["best"]
        ax.plot(glob["thresholds"], glob["f1"], lw=2.5, color="black", label="all classes")
        if best["threshold"] is not None:  # None without ground truth
            ax.axvline(best["threshold"], color="black", ls="--", lw=1)
            ax.annotate(f" {best['threshold']:.3f}", (best["threshold"], best["f1"]), fontsize=8)
    ax.set(
        xlabel="score threshold (keep >= t)", ylabel="F1 at IoU 0.5", ylim=(0, 1.02), title="F1 vs threshold"
    )
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return _png_bytes(fig)


def _plot_confusion(figure: Any, result: ConfusionResult) -> bytes:
    n = len(result.names)
    size = min(max(5.0, 0.45 * n + 2), 30.0)
    fig = figure(figsize=(size + 1.5, size))
    ax = fig.subplots()
    counts = result.matrix.astype(float)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the row")
    ax.set_xticks(range(n), result.names, rotation=90, fontsize=8 if n <= 30 else 5)
    ax.set_yticks(range(n), result.names, fontsize=8 if n <= 30 else 5)
    ax.set(xlabel="predicted", ylabel="ground truth")
    thr = "all detections" if result.threshold is None else f"score >= {result.threshold:.3f}"
    ax.set_title(f"confusion at IoU {result.iou}, {thr}")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    colour = "white" if share[i, j] > 0.5 else "black"
                    ax.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=7, color=colour)
    return _png_bytes(fig)


def write_analysis(
    out_dir: str | PathLike,
    coco_gt: Any,
    coco_eval: Any | None,
    detections: Sequence[Mapping[str, Any]],
    img_ids: Iterable[int] | None = None,
    images_dir: str | PathLike | None = None,
    confusion_score: float | None = None,
    error_images: int = 8,
    protected: ProtectedFiles | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Compute and write the error analysis next to ``metrics.json`` (see the module doc).

    Args:
        out_dir: the output folder.
        coco_gt: the ground truth (pycocotools ``COCO``).
        coco_eval: the evaluated and accumulated ``COCOeval``, or ``None`` when there were no
            detections.
        detections: the COCO results that were scored.
        img_ids: the scored images (default: those of ``coco_eval``, else all of ``coco_gt``).
        images_dir: the image folder, for ``errors/*.png`` (``None``: the error images are
            listed in ``errors.json`` but not drawn).
        confusion_score: the score threshold of the confusion matrix and the error images
            (``None``: the global best-F1 threshold).
        error_images: how many images to list (and draw) for most false positives and for
            most false negatives (0: none).
        protected: input files never to write over.
        log: printer.

    Returns:
        ``{"best_f1": thresholds.json's content, "confusion_score", "files": {...},
        "plots": bool, "note": str | None}``.

    Raises:
        ArgumentError: ``confusion_score`` is not a finite number or ``error_images`` < 0.
        OutputError: a file to write is one of the inputs.
    """
    if confusion_score is not None and not math.isfinite(float(confusion_score)):
        raise ArgumentError(
            f"confusion_score must be a finite number, got {confusion_score}", argument="confusion_score"
        )
    if int(error_images) < 0:
        raise ArgumentError(f"error_images must be >= 0, got {error_images}", argument="error_images")
    out = Path(out_dir)
    protected = protected or ProtectedFiles([])
    written: dict[str, str] = {}

    def put(name: str, data: str | bytes | Any, kind: str = "json") -> None:
        path = out / name
        protected.check(path)
        if kind == "json":
            atomic_write_json(path, data)
        elif kind == "text":
            atomic_write_text(path, data)
        else:
            atomic_write_bytes(path, data)
        written[name] = str(path)

    if coco_eval is not None:
        ids = [int(i) for i in coco_eval.params.imgIds]
        cat_ids = [int(c) for c in coco_eval.params.catIds]
        curves = pr_curves(coco_eval)
        thresholds = best_f1_thresholds(coco_eval, 0.5)
    else:
        ids = sorted({int(i) for i in (img_ids if img_ids is not None else coco_gt.getImgIds())})
        cat_ids = sorted(int(c) for c in coco_gt.getCatIds())
        curves = _empty_pr_curves(coco_gt, cat_ids, ids)
        thresholds = _empty_thresholds(_category_names(coco_gt, cat_ids), cat_ids, 0.5)
    record = {k: v for k, v in thresholds.items() if not k.startswith("_")}

    put("pr_curves.json", curves)
    put("pr_curves.csv", _csv_text(_pr_rows(curves)), "text")
    put("thresholds.json", record)
    put("thresholds.csv", _csv_text(_threshold_rows(record)), "text")

    # no best-F1 threshold (no detections or no ground truth): count every detection
    score = confusion_score if confusion_score is not None else record["global"]["threshold"]
    confusion = confusion_matrix(coco_gt, detections, ids, score, 0.5, cat_ids)
    put("confusion_matrix.json", confusion.to_json())
    put("confusion_matrix.csv", _csv_text(_confusion_rows(confusion)), "text")

    errors = _write_error_images(out, coco_gt, confusion, images_dir, error_images, protected, put)

    figure = _figure_class()
    note = None
    if figure is None:
        note = f"plots skipped: matplotlib is not installed ({PLOT_HINT}); the JSON/CSV files are written"
        log(note)
    else:
        put("pr_curves.png", _plot_pr(figure, curves), "bytes")
        put("thresholds.png", _plot_thresholds(figure, thresholds), "bytes")
        put("confusion_matrix.png", _plot_confusion(figure, confusion), "bytes")
    glob = record["global"]
    best = "n/a" if glob["threshold"] is None else f"{glob['threshold']:.4f} (F1 {glob['f1']:.3f})"
    log(
        f"error analysis in {out}: best-F1 score threshold {best}; confusion matrix at "
        + ("all detections" if score is None else f"score >= {score:.4f}")
        + f"; {errors['summary']}"
    )
    return {
        "best_f1": record,
        "confusion_score": score,
        "files": written,
        "plots": figure is not None,
        "note": note,
    }


def _pr_rows(curves: Mapping[str, Any]) -> Iterable[Sequence[Any]]:
    yield ["category_id", "name", "recall", "precision_iou50", "precision_iou50_95"]
    for c in curves["classes"]:
        if c["precision_50"] is None:
            continue
        for r, p50, p in zip(curves["recall"], c["precision_50"], c["precision_50_95"]):
            yield [c["id"], c["name"], f"{r:.2f}", p50, p]


def _threshold_rows(record: Mapping[str, Any]) -> Iterable[Sequence[Any]]:
    keys = ["threshold", "f1", "precision", "recall", "ground_truth", "detections"]
    yield ["category_id", "name", *keys]
    for name, v in record["per_class"].items():
        yield [v["id"], name, *(v.get(k) for k in keys)]
    yield ["", "all classes", *(record["global"].get(k) for k in keys)]


def _confusion_rows(result: ConfusionResult) -> Iterable[Sequence[Any]]:
    yield ["ground truth \\ predicted", *result.names]
    for name, row in zip(result.names, result.matrix.tolist()):
        yield [name, *row]


def _write_error_images(
    out: Path,
    coco_gt: Any,
    confusion: ConfusionResult,
    images_dir: str | PathLike | None,
    n: int,
    protected: ProtectedFiles,
    put: Callable[..., None],
) -> dict[str, Any]:
    """``errors.json`` and the drawings of the worst images."""
    names = dict(zip(confusion.cat_ids, confusion.names))
    lists = {
        "most_false_positives": _worst(confusion.images, "false_positives", n),
        "most_false_negatives": _worst(confusion.images, "false_negatives", n),
    }
    drawn: dict[int, str | None] = {}
    problems: dict[int, str] = {}
    for img_id in dict.fromkeys(lists["most_false_positives"] + lists["most_false_negatives"]):
        info = coco_gt.imgs.get(img_id, {})
        if images_dir is None or "file_name" not in info:
            drawn[img_id] = None
            continue
        size = (info.get("width"), info.get("height"))
        expected = (int(size[0]), int(size[1])) if all(isinstance(v, (int, float)) for v in size) else None
        try:
            image = open_rgb(Path(images_dir) / info["file_name"], expected)
        except ImageReadError as e:
            drawn[img_id], problems[img_id] = None, str(e)
            continue
        name = f"errors/image_{img_id}.png"
        buf = io.BytesIO()
        draw_errors(image, confusion.images[img_id], names).save(buf, format="PNG")
        put(name, buf.getvalue(), "bytes")
        drawn[img_id] = name

    def entry(img_id: int) -> dict[str, Any]:
        r = confusion.images[img_id]
        e = {
            "image_id": img_id,
            "file_name": coco_gt.imgs.get(img_id, {}).get("file_name"),
            "false_positives": r["false_positives"],
            "false_negatives": r["false_negatives"],
            "drawing": drawn.get(img_id),
        }
        if img_id in problems:
            e["error"] = problems[img_id]
        return e

    record = {
        "score_threshold": confusion.threshold,
        "iou": confusion.iou,
        "colours": {"ground_truth": "green", "detections": "red"},
        "false_positives": "false detections and confusions (a detection matched to another class)",
        "false_negatives": "missed objects and confused ones",
        **{k: [entry(i) for i in v] for k, v in lists.items()},
    }
    put("errors.json", record)
    n_drawn = sum(v is not None for v in drawn.values())
    if n_drawn or not drawn:
        summary = f"{n_drawn} error image(s) drawn in {out / 'errors'}"
    else:
        summary = f"{len(drawn)} error image(s) listed in errors.json" + (
            " (not drawn: no image folder)" if images_dir is None else " (not drawn: unreadable)"
        )
    return {"summary": summary}
