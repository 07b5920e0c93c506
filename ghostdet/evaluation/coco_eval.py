"""COCO bbox evaluation on pycocotools' COCOeval.

:class:`CocoEvaluator` collects torchvision detector outputs, converts them to COCO results
(the dataset's real category ids, ``[x, y, w, h]`` boxes, python floats), gathers them across
``torch.distributed`` ranks and scores them with ``COCOeval(iouType="bbox")`` restricted to the
images that were actually seen (so a subset of a dataset scores correctly).
"""

from __future__ import annotations

import contextlib
import io
import math
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import Tensor, nn

from ghostdet.data.validation import read_results
from ghostdet.errors import ArgumentError, InputError
from ghostdet.utils.distributed import all_gather_objects
from ghostdet.utils.files import atomic_write_json

__all__ = [
    "COCO_STAT_NAMES",
    "CocoEvaluator",
    "evaluate_detections",
    "format_stats_table",
    "load_coco",
    "no_ground_truth_warning",
    "per_category_ap",
    "run_cocoeval",
    "run_inference",
]

COCO_STAT_NAMES: tuple[str, ...] = (
    "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
)  # fmt: skip

# (AP or AR, IoU label, area, maxDets) of each COCOeval stat, in pycocotools' order.
_STAT_LAYOUT = (
    (1, "0.50:0.95", "all", 100),
    (1, "0.50", "all", 100),
    (1, "0.75", "all", 100),
    (1, "0.50:0.95", "small", 100),
    (1, "0.50:0.95", "medium", 100),
    (1, "0.50:0.95", "large", 100),
    (0, "0.50:0.95", "all", 1),
    (0, "0.50:0.95", "all", 10),
    (0, "0.50:0.95", "all", 100),
    (0, "0.50:0.95", "small", 100),
    (0, "0.50:0.95", "medium", 100),
    (0, "0.50:0.95", "large", 100),
)

ResultsLike = Union[str, PathLike, Sequence[Mapping[str, Any]]]


def format_stats_table(stats: Mapping[str, float] | Sequence[float]) -> str:
    """The 12-line COCO bbox table in pycocotools' layout.

    Args:
        stats: the 12 values, as a sequence in COCO order or a dict keyed by
            :data:`COCO_STAT_NAMES`.
    """
    values = [stats[k] for k in COCO_STAT_NAMES] if isinstance(stats, Mapping) else list(stats)
    lines = []
    for (ap, iou, area, max_dets), v in zip(_STAT_LAYOUT, values):
        title, kind = ("Average Precision", "(AP)") if ap else ("Average Recall", "(AR)")
        lines.append(
            f" {title:<18} {kind} @[ IoU={iou:<9} | area={area:>6s} | maxDets={max_dets:>3d} ] = {v:0.3f}"
        )
    return "\n".join(lines)


def load_coco(ann_file: str | PathLike) -> COCO:
    """Load a COCO annotation file without pycocotools' prints.

    Args:
        ann_file: path of a COCO-format JSON file.
    """
    path = Path(ann_file)
    if not path.is_file():
        raise InputError(f"annotation file not found: {path}", argument="ann_file")
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def _load_results(results: ResultsLike, coco_gt: COCO | None = None) -> list[dict[str, Any]]:
    """Copies of the result entries; a file is checked entry by entry (:func:`read_results`)."""
    if isinstance(results, (str, PathLike)):
        return read_results(results, None if coco_gt is None else set(coco_gt.getImgIds()))[0]
    if not isinstance(results, list):
        raise ArgumentError(
            "COCO results must be a JSON list of {image_id, category_id, bbox, score}", argument="results"
        )
    # loadRes adds keys (area, id, segmentation) in place: hand it copies.
    return [dict(r) for r in results]


def no_ground_truth_warning(coco_gt: COCO, img_ids: Iterable[int] | None = None) -> str | None:
    """A warning line when the scored images have no ground-truth box (every metric would mean nothing).

    COCOeval then reports -1 (no ground truth) or 0.0 with nothing to say why.

    Args:
        coco_gt: ground truth.
        img_ids: the images scored (default: all of ``coco_gt``).
    """
    ids = None if img_ids is None else sorted({int(i) for i in img_ids})
    if coco_gt.getAnnIds(imgIds=ids if ids is not None else []):
        return None
    where = f"the {len(ids)} evaluated images have" if ids is not None else "the annotation file has"
    return (
        f"warning: {where} no ground-truth annotations: every AP/AR below is -1 or 0 "
        "and says nothing about the model (is this the right annotation file?)"
    )


def run_cocoeval(
    coco_gt: COCO, results: ResultsLike, img_ids: Iterable[int] | None = None
) -> tuple[dict[str, float], COCOeval | None, str]:
    """Score bbox results with COCOeval.

    Args:
        coco_gt: ground truth.
        results: COCO results (list of dicts or path of a results JSON).
        img_ids: restrict scoring to these images (default: all images of ``coco_gt``).

    Returns:
        ``(stats, cocoeval, summary_text)``. With no detections the stats are all 0.0 and
        ``cocoeval`` is ``None`` (pycocotools' ``loadRes`` cannot take an empty list).

    Raises:
        DataError: ``results`` is a file that is not JSON, not a list, or holds a bad entry
            (the message names the file, the entry and the key; see
            :func:`ghostdet.data.validation.read_results`).
    """
    dets = _load_results(results, coco_gt)
    if not dets:
        stats = dict.fromkeys(COCO_STAT_NAMES, 0.0)
        return stats, None, "No detections: all metrics are 0.0\n" + format_stats_table(stats)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        coco_dt = coco_gt.loadRes(dets)
        coco_eval = COCOeval(coco_gt, coco_dt, iouType="bbox")
        if img_ids is not None:
            coco_eval.params.imgIds = sorted({int(i) for i in img_ids})
        coco_eval.evaluate()
        coco_eval.accumulate()
    # Keep only the table: drop the "Running per image evaluation..." chatter.
    with contextlib.redirect_stdout(io.StringIO()) as table:
        coco_eval.summarize()
    stats = {k: float(v) for k, v in zip(COCO_STAT_NAMES, coco_eval.stats)}
    return stats, coco_eval, table.getvalue().rstrip("\n")


def evaluate_detections(
    coco_gt: COCO | str | PathLike, results: ResultsLike, img_ids: Iterable[int] | None = None
) -> dict[str, float]:
    """The 12 COCO bbox stats of ``results`` against ``coco_gt``.

    Args:
        coco_gt: ground truth (a COCO object or the path of its JSON).
        results: COCO results list, or the path of a results JSON file.
        img_ids: restrict scoring to these image ids (default: every image in ``coco_gt``).
    """
    if not isinstance(coco_gt, COCO):
        coco_gt = load_coco(coco_gt)
    return run_cocoeval(coco_gt, results, img_ids)[0]


def per_category_ap(coco_eval: COCOeval | None) -> list[tuple[int, str, float]]:
    """AP@[.50:.95] (area all, 100 detections) of each category from an evaluated COCOeval.

    Args:
        coco_eval: a COCOeval after ``accumulate()`` (``None`` gives an empty list).

    Returns:
        ``(category_id, name, AP)`` per category in ``params.catIds`` order; AP is ``nan``
        for a category without ground truth in the evaluated images.
    """
    if coco_eval is None:
        return []
    p = coco_eval.params
    precision = coco_eval.eval["precision"]  # [T, R, K, A, M]
    a = p.areaRngLbl.index("all")
    m = p.maxDets.index(100) if 100 in p.maxDets else len(p.maxDets) - 1
    out = []
    for k, cat_id in enumerate(p.catIds):
        s = precision[:, :, k, a, m]
        s = s[s > -1]
        ap = float(np.mean(s)) if s.size else math.nan
        name = coco_eval.cocoGt.cats.get(cat_id, {}).get("name", str(cat_id))
        out.append((int(cat_id), name, ap))
    return out


class CocoEvaluator:
    """Collect detector outputs as COCO results and score them with COCOeval (bbox).

    Args:
        coco_gt: ground truth (pycocotools COCO). ``None`` only collects results (no scoring).
        label_to_cat_id: model label -> dataset category id. ``None`` means the labels already
            are the category ids (torchvision's 91-class COCO convention). Detections whose
            label is not in the mapping are dropped and counted in ``dropped``.
        score_threshold: keep detections with ``score >= score_threshold``.
        max_dets: keep at most this many top-scoring detections per image (``None``: all).
    """

    def __init__(
        self,
        coco_gt: COCO | None,
        label_to_cat_id: Mapping[int, int] | None = None,
        score_threshold: float = 0.0,
        max_dets: int | None = None,
    ) -> None:
        self.coco_gt = coco_gt
        self.label_to_cat_id = (
            None if label_to_cat_id is None else {int(k): int(v) for k, v in label_to_cat_id.items()}
        )
        self.score_threshold = float(score_threshold)
        self.max_dets = max_dets
        self._per_image: dict[int, list[dict[str, Any]]] = {}
        self.dropped = 0
        self.coco_eval: COCOeval | None = None
        self.stats: dict[str, float] | None = None
        self.summary_text = ""

    @property
    def img_ids(self) -> list[int]:
        """Ids of the images seen so far (with or without detections), in order of arrival."""
        return list(self._per_image)

    @property
    def results(self) -> list[dict[str, Any]]:
        """COCO results: ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``."""
        return [r for dets in self._per_image.values() for r in dets]

    def update(self, outputs: Sequence[Mapping[str, Tensor]], image_ids: Sequence[int | Tensor]) -> None:
        """Add one batch of detector outputs.

        Args:
            outputs: torchvision detection outputs (``boxes`` xyxy in ORIGINAL image pixels,
                ``scores``, ``labels``), one dict per image.
            image_ids: the COCO image id of each output.
        """
        if len(outputs) != len(image_ids):
            raise ValueError(f"got {len(outputs)} outputs for {len(image_ids)} image ids")
        for out, img_id in zip(outputs, image_ids):
            img_id = int(img_id)
            boxes = out["boxes"].detach().cpu().double()
            scores = out["scores"].detach().cpu().double()
            labels = out["labels"].detach().cpu()
            keep = scores >= self.score_threshold
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            if self.max_dets is not None and scores.numel() > self.max_dets:
                top = scores.topk(self.max_dets).indices
                boxes, scores, labels = boxes[top], scores[top], labels[top]
            xywh = boxes.clone()
            xywh[:, 2:] -= xywh[:, :2]
            dets = []
            for box, score, label in zip(xywh.tolist(), scores.tolist(), labels.tolist()):
                if self.label_to_cat_id is None:
                    cat_id = int(label)
                elif label in self.label_to_cat_id:
                    cat_id = self.label_to_cat_id[label]
                else:
                    self.dropped += 1
                    continue
                dets.append(
                    {
                        "image_id": img_id,
                        "category_id": cat_id,
                        "bbox": [float(v) for v in box],
                        "score": float(score),
                    }
                )
            self._per_image[img_id] = dets

    def synchronize(self) -> None:
        """Gather the results of every ``torch.distributed`` rank (no-op when not initialised).

        After the call every rank holds all results. An image seen by several ranks (e.g. the
        padding of a DistributedSampler) is kept once.
        """
        gathered = all_gather_objects((self._per_image, self.dropped))
        if len(gathered) == 1:
            return
        merged: dict[int, list[dict[str, Any]]] = {}
        dropped = 0
        for per_image, n in gathered:
            dropped += n
            for img_id, dets in per_image.items():
                merged.setdefault(img_id, dets)
        self._per_image = merged
        self.dropped = dropped

    def write_results(self, path: str | PathLike) -> Path:
        """Write the results as a COCO results JSON (accepted by ``COCO.loadRes`` unchanged), by
        atomic rename.

        Args:
            path: output file; parent directories are created.
        """
        return atomic_write_json(path, self.results, indent=None)

    def evaluate(self) -> dict[str, float]:
        """Score the collected results on the images seen; returns the 12 COCO stats.

        The pycocotools table is kept in ``summary_text`` and the COCOeval in ``coco_eval``.
        """
        if self.coco_gt is None:
            raise RuntimeError(
                "CocoEvaluator has no ground truth (coco_gt=None): only results can be written"
            )
        self.stats, self.coco_eval, self.summary_text = run_cocoeval(self.coco_gt, self.results, self.img_ids)
        return dict(self.stats)

    def per_category_ap(self) -> list[tuple[int, str, float]]:
        """Per-category AP of the last :meth:`evaluate` (see :func:`per_category_ap`)."""
        return per_category_ap(self.coco_eval)


def _image_ids_of(targets: Sequence[Mapping[str, Any]]) -> list[int]:
    return [int(t["image_id"]) for t in targets]


@torch.no_grad()
def run_inference(
    model: nn.Module,
    data_loader: Iterable[tuple[Sequence[Tensor], Sequence[Mapping[str, Any]]]],
    device: torch.device | str,
    evaluator: CocoEvaluator,
    progress: bool = True,
) -> dict[str, float]:
    """Run a torchvision detector over a loader and feed its outputs to ``evaluator``.

    torchvision detectors return boxes in the coordinates of the images they were given, so
    with an evaluation transform that does not resize, outputs are in original image pixels.

    Args:
        model: a torchvision detection model (put in eval mode here).
        data_loader: yields ``(images, targets)``; each target has ``image_id``. Empty batches
            (all images unreadable) are skipped.
        device: device to run on.
        evaluator: receives ``update(outputs, image_ids)``.
        progress: show a tqdm progress bar (refreshing at most every 30 s when not a TTY).

    Returns:
        ``{"images": n, "seconds": t, "images_per_s": n / t}`` for this process.
    """
    from tqdm import tqdm

    device = torch.device(device)
    model.eval()
    n_images = 0
    start = time.perf_counter()
    tty = sys.stderr.isatty()
    total = len(data_loader) if hasattr(data_loader, "__len__") else None
    bar = tqdm(
        data_loader,
        total=total,
        desc="eval",
        disable=not progress,
        mininterval=0.5 if tty else 30.0,
        dynamic_ncols=tty,
    )
    for images, targets in bar:
        if len(images) == 0:
            continue
        images = [img.to(device, non_blocking=True) for img in images]
        outputs = model(images)
        outputs = [{k: v.to("cpu") for k, v in o.items()} for o in outputs]
        evaluator.update(outputs, _image_ids_of(targets))
        n_images += len(images)
    seconds = time.perf_counter() - start
    return {
        "images": float(n_images),
        "seconds": seconds,
        "images_per_s": n_images / seconds if seconds else 0.0,
    }
