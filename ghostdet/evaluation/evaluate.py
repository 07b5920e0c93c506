"""Standalone COCO evaluation of a detector (the library behind ``tools/eval_det.py``).

Runs a checkpoint over a COCO-format set, optionally across ``torchrun`` processes (the image
list is sharded, detections are gathered on every rank, rank 0 scores and writes), prints the
pycocotools table, per-category AP (worst first) and images/s, and writes ``metrics.json`` plus
the COCO results JSON. With ``results_only`` no annotations are needed: only detections are
written (e.g. for COCO test-dev).

The ground-truth file goes through the validation pass training uses
(:func:`ghostdet.data.validation.read_annotations`): invalid image and annotation entries are
left out of scoring and counted (the counts are printed and kept in ``metrics.json`` under
``skipped_ground_truth``), or, with ``strict_data``, are a :class:`~ghostdet.data.DataError`
naming the file. A results file (``rescore_results``) is checked entry by entry
(:func:`ghostdet.data.validation.read_results`): a bad entry is a ``DataError`` naming the file,
the entry and the key.
"""

from __future__ import annotations

import contextlib
import io
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from pycocotools.coco import COCO
from torch.utils.data import DataLoader, Dataset

from ghostdet.data.coco import BadImageWarning
from ghostdet.data.formats import SplitSource, detect_format, read_split
from ghostdet.data.images import IMAGE_EXTENSIONS, ImageReadError, read_rgb_tensor
from ghostdet.data.validation import DataReport, read_annotations, read_results
from ghostdet.errors import InputError
from ghostdet.evaluation.analysis import ANALYSIS_FILES, write_analysis
from ghostdet.evaluation.coco_eval import (
    COCO_STAT_NAMES,
    CocoEvaluator,
    format_stats_table,
    no_ground_truth_warning,
    per_category_ap,
    run_cocoeval,
    run_inference,
)
from ghostdet.models.loading import LoadedDetector, configure_postprocess, load_detector
from ghostdet.utils.devices import resolve_device
from ghostdet.utils.distributed import cleanup_distributed, init_distributed, rank_world
from ghostdet.utils.files import ProtectedFiles, atomic_write_json

__all__ = [
    "CocoImageList",
    "format_per_category",
    "image_list_collate",
    "resolve_eval_data",
    "evaluate_detector",
    "rescore_results",
    "run_eval",
]

RESULTS_NAME = "detections.json"
METRICS_NAME = "metrics.json"
IMAGES_NAME = "images.json"


class CocoImageList(Dataset):
    """Images of a COCO-format set, decoded for inference (no targets, no resizing).

    Items are ``(image, {"image_id": int, "file_name": str})`` with ``image`` a float32 RGB
    tensor (C, H, W) in [0, 1], read by :func:`ghostdet.data.images.open_rgb` as training reads
    it: with the annotated ``(width, height)`` of ``sizes`` the orientation (EXIF applied or
    stored pixels) of that size, without one the EXIF orientation applied. An unreadable image,
    one above the pixel limit or one whose size is not the annotated one gives ``None`` with a
    :class:`~ghostdet.data.coco.BadImageWarning` naming the file (:func:`image_list_collate`
    drops it, ``skipped`` counts it, and it is left out of the scored images).

    Args:
        images_dir: folder of the image files.
        entries: ``(image_id, file_name)`` pairs.
        sizes: image id -> annotated ``(width, height)``; ids not in it are plain images.
    """

    def __init__(
        self,
        images_dir: str | PathLike,
        entries: Sequence[tuple[int, str]],
        sizes: Mapping[int, tuple[int, int]] | None = None,
    ) -> None:
        self.images_dir = Path(images_dir)
        self.entries = list(entries)
        self.sizes = dict(sizes or {})
        self.skipped = 0

    @classmethod
    def from_coco(cls, images_dir: str | PathLike, coco: Any) -> CocoImageList:
        """All images listed in a pycocotools COCO object, in file order, with their JSON sizes."""
        images = coco.dataset.get("images", [])
        sizes = {int(im["id"]): size for im in images if (size := _annotated_size(im)) is not None}
        return cls(images_dir, [(int(im["id"]), im["file_name"]) for im in images], sizes)

    @classmethod
    def from_folder(cls, images_dir: str | PathLike) -> CocoImageList:
        """The image files of a folder, sorted; ids are the numeric file stems (COCO naming),
        or 1..N in sorted order when any stem is not a number."""
        folder = Path(images_dir)
        files = sorted(f.name for f in folder.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise InputError(f"no image files in {folder}")
        stems = [Path(f).stem for f in files]
        if all(s.isdigit() for s in stems) and len(set(map(int, stems))) == len(stems):
            return cls(folder, [(int(s), f) for s, f in zip(stems, files)])
        return cls(folder, list(enumerate(files, start=1)))

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, dict[str, Any]] | None:
        img_id, name = self.entries[idx]
        try:
            image = read_rgb_tensor(self.images_dir / name, self.sizes.get(img_id))
        except ImageReadError as e:
            warnings.warn(f"skipping image (id {img_id}): {e}", BadImageWarning, stacklevel=2)
            self.skipped += 1
            return None
        return image, {"image_id": img_id, "file_name": name}


def _annotated_size(image: Mapping[str, Any]) -> tuple[int, int] | None:
    """``(width, height)`` of a JSON image entry as training reads it, or ``None`` without valid ones."""
    w, h = image.get("width"), image.get("height")
    ok = all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in (w, h)
    )
    return (int(w), int(h)) if ok else None


def image_list_collate(batch: Sequence[Any]) -> tuple[tuple, tuple]:
    """Collate ``(image, target)`` items into ``(images, targets)``, dropping ``None`` items."""
    items = [b for b in batch if b is not None]
    if not items:
        return (), ()
    return tuple(zip(*items))  # type: ignore[return-value]


def resolve_eval_data(
    data_path: str | PathLike | None,
    val_images: str | PathLike | None,
    val_ann: str | PathLike | None,
    results_only: bool = False,
) -> tuple[Path, Path | None]:
    """Work out the image folder and annotation file of the evaluation set.

    ``data_path`` is a COCO 2017 root (``val2017/`` + ``annotations/instances_val2017.json``);
    explicit ``val_images``/``val_ann`` override its parts. With ``results_only`` the annotation
    file is optional (an image-info JSON such as ``image_info_test-dev2017.json`` fixes ids).

    Raises:
        InputError: a folder or file is missing, naming the expected layout.
    """
    root = Path(data_path).expanduser() if data_path is not None else None
    if root is not None and not root.is_dir():
        raise InputError(f"--data-path {root} is not a folder (expected val2017/ and annotations/ inside)")
    images = Path(val_images).expanduser() if val_images else (root / "val2017" if root else None)
    ann = Path(val_ann).expanduser() if val_ann else None
    if ann is None and root is not None and not results_only:
        ann = root / "annotations" / "instances_val2017.json"
    if images is None:
        raise InputError("no evaluation images: give --data-path ROOT (with val2017/) or --val-images DIR")
    if not images.is_dir():
        raise InputError(f"image folder not found: {images} (expected ROOT/val2017 or --val-images DIR)")
    if ann is None and not results_only:
        raise InputError("no annotation file: give --val-ann FILE, --data-path ROOT, or --results-only")
    if ann is not None and not ann.is_file():
        raise InputError(
            f"annotation file not found: {ann} (expected ROOT/annotations/instances_val2017.json)"
        )
    return images, ann


def _label_mapping(detector: LoadedDetector, coco: Any, log: Callable[[str], None]) -> dict[int, int] | None:
    """The detector's label -> category id mapping, or a guess when the detector carries none."""
    num_classes = detector.meta.get("num_classes")
    if detector.label_to_cat_id is not None:
        if coco is not None:
            unknown = sorted(set(detector.label_to_cat_id.values()) - set(coco.getCatIds()))
            if unknown:
                log(f"warning: checkpoint category ids not in the annotations: {unknown[:10]}")
        return detector.label_to_cat_id
    if coco is not None and num_classes == len(coco.getCatIds()) + 1 and num_classes != 91:
        log(f"no category mapping in the weights: labels 1..{num_classes - 1} -> sorted dataset category ids")
        return {i + 1: c for i, c in enumerate(sorted(coco.getCatIds()))}
    return None


def format_per_category(rows: Sequence[tuple[int, str, float]]) -> str:
    """Per-category AP table, worst first (categories without ground truth last, as n/a)."""
    ordered = sorted(rows, key=lambda r: (math.isnan(r[2]), r[2] if not math.isnan(r[2]) else 0.0))
    width = max([len(r[1]) for r in rows] + [8])
    lines = [f"{'category':<{width}}  {'id':>4}  {'AP':>6}"]
    for cat_id, name, ap in ordered:
        lines.append(f"{name:<{width}}  {cat_id:>4}  {'n/a' if math.isnan(ap) else f'{ap:6.3f}':>6}")
    return "\n".join(lines)


def _read_annotations(
    ann_file: str | PathLike | SplitSource,
    images_dir: str | PathLike | None = None,
    strict: bool = False,
    log: Callable[[str], None] = print,
) -> tuple[COCO, DataReport]:
    """The validated ground truth as a pycocotools ``COCO`` (no prints) and its report.

    The same pass as training (an image list without annotations is accepted too, for
    ``results_only``); what it left out is printed through ``log``.

    Raises:
        DataError: the file is not a COCO-format JSON, or ``strict`` and invalid entries.
    """
    check_files = strict and images_dir is not None
    source = ann_file if isinstance(ann_file, SplitSource) else None  # a YOLO/VOC split in memory
    data, report = read_annotations(
        Path(source.name if source is not None else ann_file),
        None if images_dir is None else Path(images_dir),
        1.0,
        strict,
        check_files=check_files,
        image_list_ok=True,
        parsed=None if source is None else source.data,
    )
    lines = report.problem_lines(lenient=False)
    if lines:
        log(
            f"ground truth {ann_file}: entries left out, as training leaves them out "
            "(--strict-data makes them an error):\n" + "\n".join(f"  {line}" for line in lines)
        )
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco, report


def _json_safe(x: float) -> float | None:
    return None if math.isnan(x) else x


def evaluate_detector(
    detector: LoadedDetector,
    images_dir: str | PathLike,
    ann_file: str | PathLike | SplitSource | None,
    output_dir: str | PathLike,
    device: torch.device | str = "cpu",
    batch_size: int = 2,
    workers: int = 2,
    score_threshold: float = 0.05,
    max_dets: int = 100,
    limit: int | None = None,
    results_only: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    strict_data: bool = False,
    runtime: str = "eager",
    analysis: bool = True,
    confusion_score: float | None = None,
    error_images: int = 8,
    precision: str = "fp32",
    calibration: Any = None,
) -> dict[str, Any]:
    """Evaluate a loaded detector on a COCO-format set (sharded across torch.distributed ranks).

    Args:
        detector: from :func:`ghostdet.models.loading.load_detector`.
        images_dir: image folder.
        ann_file: COCO instances JSON (or, with ``results_only``, an image-info JSON or ``None``
            to take every image file of the folder, ids from numeric file names).
        output_dir: where ``metrics.json`` and ``detections.json`` go (rank 0); with
            ``results_only`` also ``images.json`` (``id``, ``file_name`` of every image).
        device: inference device.
        batch_size: images per forward pass.
        workers: DataLoader worker processes.
        score_threshold: drop detections scoring below this (also set as the model's own cut).
        max_dets: detections kept per image (also the model's cap); COCOeval counts 100.
        limit: evaluate only the first ``limit`` images.
        results_only: write detections without scoring.
        progress: progress bar (rank 0).
        log: printer for the report (called on rank 0 only).
        strict_data: invalid ground-truth entries (and image files missing from ``images_dir``)
            are a :class:`~ghostdet.data.DataError` instead of being left out and counted.
        runtime: how the detector runs (:func:`ghostdet.deploy.compile`: ``eager``, ``torch``,
            ``onnxruntime``, ``openvino`` or ``auto``, the fastest measured on the first image);
            on a GPU always eager PyTorch. The ONNX runtimes take one image per call.
        analysis: after scoring, write the error analysis next to ``metrics.json`` (PR curves,
            best-F1 thresholds, confusion matrix, worst images; see
            ``ghostdet.evaluation.analysis``) and record the best-F1 thresholds in
            ``metrics.json`` under ``best_f1`` (rank 0 only).
        confusion_score: score threshold of the confusion matrix and the error images
            (``None``: the global best-F1 threshold).
        error_images: images drawn for most false positives and for most false negatives.
        precision: ``fp32`` or ``int8`` (in OpenVINO or onnxruntime; see
            :func:`ghostdet.deploy.compile`).
        calibration: for int8, a folder of images (or files, or tensors) to calibrate with.

    Returns:
        The metrics dict written to ``metrics.json`` (on every rank; only rank 0 writes files,
        and only rank 0's has ``best_f1`` and ``analysis``).

    Raises:
        DataError: ``ann_file`` is not a COCO-format JSON, or ``strict_data`` and invalid entries.
    """
    rank, world = rank_world()
    say = log if rank == 0 else (lambda _msg: None)
    device = torch.device(device)
    names = (
        RESULTS_NAME,
        METRICS_NAME,
        *((IMAGES_NAME,) if results_only else (ANALYSIS_FILES if analysis else ())),
    )
    ann_path = ann_file.name if isinstance(ann_file, SplitSource) else ann_file
    protected = _refuse_overwriting_inputs(output_dir, names, [ann_path, detector.source])
    coco, report, dataset = _eval_images(images_dir, ann_file, results_only, limit, strict_data, say)
    all_entries = list(dataset.entries)
    dataset.entries = dataset.entries[rank::world]
    has_gt = coco is not None and "annotations" in coco.dataset and not results_only
    configure_postprocess(detector.model, score_threshold, max_dets)
    evaluator = CocoEvaluator(
        coco if has_gt else None, _label_mapping(detector, coco, say), score_threshold, max_dets
    )
    say(
        f"evaluating {detector.name} from {detector.source} on {len(all_entries)} images of {images_dir}"
        + (f" ({world} processes)" if world > 1 else "")
    )
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=image_list_collate,
        pin_memory=device.type == "cuda",
    )
    model = _runtime_model(detector.model.to(device), dataset, runtime, device, say, precision, calibration)
    start = time.perf_counter()
    run_inference(model, loader, device, evaluator, progress=progress and rank == 0)
    evaluator.synchronize()
    seconds = time.perf_counter() - start
    n_done = len(evaluator.img_ids)
    metrics: dict[str, Any] = {
        "detector": detector.name,
        "source": detector.source,
        "images_dir": str(images_dir),
        "ann_file": None if ann_file is None else str(ann_file),
        "images": n_done,
        "skipped_images": len(all_entries) - n_done,
        "detections": len(evaluator.results),
        "dropped_unknown_labels": evaluator.dropped,
        "skipped_ground_truth": {} if report is None else report.errors(),
        "score_threshold": score_threshold,
        "max_dets": max_dets,
        "processes": world,
        "seconds": seconds,
        "images_per_s": n_done / seconds if seconds > 0 else 0.0,
    }
    coco_eval = None
    if has_gt:
        scored, coco_eval = _score(coco, evaluator, say)
        metrics.update(scored)
    if metrics["skipped_images"]:
        say(f"skipped {metrics['skipped_images']} unreadable image(s)")
    say(
        f"{n_done} images in {seconds:.1f} s: {metrics['images_per_s']:.2f} images/s on {device}"
        + (f" x {world} processes" if world > 1 else "")
    )
    if rank == 0 and has_gt and analysis:
        _analyse(
            metrics,
            output_dir,
            coco,
            coco_eval,
            evaluator.results,
            evaluator.img_ids,
            images_dir,
            confusion_score,
            error_images,
            protected,
            say,
        )
    if rank == 0:
        _write_outputs(
            Path(output_dir), evaluator, metrics, all_entries if results_only else None, say, protected
        )
    return metrics


def _eval_images(
    images_dir: str | PathLike,
    ann_file: str | PathLike | SplitSource | None,
    results_only: bool,
    limit: int | None,
    strict: bool = False,
    log: Callable[[str], None] = print,
) -> tuple[COCO | None, DataReport | None, CocoImageList]:
    """The validated annotations and their report (``None`` without a file) and the images to
    run, all ranks together."""
    coco, report = _read_annotations(ann_file, images_dir, strict, log) if ann_file else (None, None)
    if coco is not None and not results_only and "annotations" not in coco.dataset:
        raise InputError(
            f"{ann_file} has no 'annotations' (an image list?); add --results-only to write detections"
        )
    if results_only and coco is None:
        dataset = CocoImageList.from_folder(images_dir)
    else:
        dataset = CocoImageList.from_coco(images_dir, coco)
        if not dataset.entries and report is not None and report.images:
            raise InputError(
                f"{ann_file} lists no valid images: all {report.images} image entries are invalid "
                f"({'; '.join(report.problem_lines(only=('malformed_image', 'missing_image')))})"
            )
        if not dataset.entries:
            raise InputError(f"{ann_file} lists no images")
    if limit is not None:
        dataset.entries = dataset.entries[:limit]
    return coco, report, dataset


def _score(
    coco: Any, evaluator: CocoEvaluator, say: Callable[[str], None]
) -> tuple[dict[str, Any], Any | None]:
    """COCOeval of the gathered results: the metrics entries (with the tables printed) and the
    evaluated COCOeval (``None`` without detections)."""
    stats, coco_eval, table = run_cocoeval(coco, evaluator.results, evaluator.img_ids)
    per_cat = per_category_ap(coco_eval)
    warning = no_ground_truth_warning(coco, evaluator.img_ids)
    if warning:
        say(warning)
    if not evaluator.results:
        say("no detections (untrained model or score threshold too high): every metric is 0.0")
    say(table if coco_eval is not None else format_stats_table(stats))
    if per_cat:
        say("per-category AP@[.50:.95], worst first:\n" + format_per_category(per_cat))
    return {
        "stats": stats,
        **{k: stats[k] for k in COCO_STAT_NAMES},
        "per_category_ap": [{"id": c, "name": n, "AP": _json_safe(ap)} for c, n, ap in per_cat],
    }, coco_eval


def _analyse(
    metrics: dict[str, Any],
    output_dir: str | PathLike,
    coco: Any,
    coco_eval: Any | None,
    results: Sequence[Mapping[str, Any]],
    img_ids: Sequence[int],
    images_dir: str | PathLike | None,
    confusion_score: float | None,
    error_images: int,
    protected: ProtectedFiles,
    say: Callable[[str], None],
) -> None:
    """Write the error analysis and record it in ``metrics`` (``best_f1``: the thresholds, read
    back by ``--score-threshold best`` as ``best_f1.global.threshold``; ``analysis``: the files)."""
    done = write_analysis(
        output_dir,
        coco,
        coco_eval,
        results,
        img_ids,
        images_dir,
        confusion_score,
        error_images,
        protected,
        say,
    )
    metrics["best_f1"] = done["best_f1"]
    metrics["analysis"] = {
        "confusion_score": done["confusion_score"],
        "files": done["files"],
        "plots": done["plots"],
        **({"note": done["note"]} if done["note"] else {}),
    }


def _runtime_model(
    model: torch.nn.Module,
    dataset: CocoImageList,
    runtime: str,
    device: torch.device,
    say: Callable[[str], None],
    precision: str = "fp32",
    calibration: Any = None,
) -> Any:
    """``model`` compiled for ``runtime`` and ``precision`` (:func:`ghostdet.deploy.compile`;
    ``eager`` FP32: as it is).

    The example input is the first readable image of ``dataset``; on a GPU every runtime is eager
    PyTorch (the others run on the CPU)."""
    if (runtime == "eager" and precision == "fp32") or device.type != "cpu":
        return model
    from ghostdet.deploy.runtimes import compile_model

    example = next(
        (item[0] for item in map(dataset.__getitem__, range(len(dataset))) if item is not None), None
    )
    if example is None:
        return model
    compiled = compile_model(
        model, [example], runtime=runtime, precision=precision, calibration=calibration, log=say
    )
    if runtime != "auto" or precision != "fp32":
        say(f"runtime {compiled.runtime}, {compiled.precision}")
    return compiled


def _refuse_overwriting_inputs(
    output_dir: str | PathLike, names: Sequence[str], inputs: Sequence[str | PathLike | None]
) -> ProtectedFiles:
    """Refuse, before any work, an output file that is one of the inputs under any name."""
    protected = ProtectedFiles([p for p in inputs if p is not None])
    for name in names:
        protected.check(Path(output_dir) / name)
    return protected


def _write_outputs(
    out_dir: Path,
    evaluator: CocoEvaluator,
    metrics: dict[str, Any],
    image_entries: Sequence[tuple[int, str]] | None,
    say: Callable[[str], None],
    protected: ProtectedFiles,
) -> None:
    """Write the detections, ``images.json`` (when ``image_entries`` is given) and ``metrics.json``
    (never over an input, never through a link)."""
    results_path = out_dir / RESULTS_NAME
    protected.check(results_path)
    evaluator.write_results(results_path)
    metrics["results_file"] = str(results_path)
    if image_entries is not None:  # which image each id stands for (ids may be sequential for a folder)
        images = [{"id": i, "file_name": f} for i, f in image_entries]
        protected.check(out_dir / IMAGES_NAME)
        atomic_write_json(out_dir / IMAGES_NAME, images, indent=None)
        metrics["images_file"] = str(out_dir / IMAGES_NAME)
    protected.check(out_dir / METRICS_NAME)
    atomic_write_json(out_dir / METRICS_NAME, metrics)
    say(f"wrote {results_path} ({len(evaluator.results)} detections) and {out_dir / METRICS_NAME}")


def rescore_results(
    results_file: str | PathLike,
    ann_file: str | PathLike,
    output_dir: str | PathLike | None = None,
    log: Callable[[str], None] = print,
    strict_data: bool = False,
    analysis: bool = True,
    confusion_score: float | None = None,
    error_images: int = 8,
    images_dir: str | PathLike | None = None,
) -> dict[str, Any]:
    """Score an existing COCO results JSON (no model): print the table and per-category AP.

    Scoring covers every valid image of ``ann_file`` (as pycocotools does by default). The
    ground truth is validated as for :func:`evaluate_detector`; detections on image entries it
    left out are dropped (and counted).

    Args:
        results_file: a COCO results JSON (list of image_id/category_id/bbox/score).
        ann_file: the ground truth.
        output_dir: if given, ``metrics.json`` is written there.
        log: printer.
        strict_data: invalid ground-truth entries are a :class:`~ghostdet.data.DataError`
            instead of being left out and counted.
        analysis: with ``output_dir``, also write the error analysis there (as
            :func:`evaluate_detector`).
        confusion_score: score threshold of the confusion matrix and the error images
            (``None``: the global best-F1 threshold).
        error_images: images listed for most false positives and for most false negatives.
        images_dir: the image folder, to draw those images (``None``: listed, not drawn).

    Raises:
        InputError: ``results_file`` is missing.
        DataError: ``ann_file`` is not a COCO-format JSON (or ``strict_data`` and invalid
            entries), or ``results_file`` is not JSON, not a list, or has a bad entry (one line
            naming the file, the entry and the key).
    """
    path = Path(results_file)
    if not path.is_file():
        raise InputError(f"results file not found: {path}")
    protected = None
    if output_dir is not None:
        names = [METRICS_NAME, *(ANALYSIS_FILES if analysis else ())]
        protected = _refuse_overwriting_inputs(output_dir, names, [path, ann_file])
    coco, report = _read_annotations(ann_file, None, strict_data, log)
    if "annotations" not in coco.dataset:
        raise InputError(
            f"{ann_file} has no 'annotations' (an image list?): there is nothing to score against"
        )
    dets, dropped = read_results(path, set(coco.getImgIds()), ann_file, report.skipped_image_ids)
    if dropped:
        log(f"left out {dropped} detections on image entries skipped from {ann_file}")
    stats, coco_eval, table = run_cocoeval(coco, dets)
    per_cat = per_category_ap(coco_eval)
    warning = no_ground_truth_warning(coco)
    if warning:
        log(warning)
    log(table)
    if per_cat:
        log("per-category AP@[.50:.95], worst first:\n" + format_per_category(per_cat))
    metrics: dict[str, Any] = {"results_file": str(path), "ann_file": str(ann_file), "stats": stats, **stats}
    metrics["skipped_ground_truth"] = report.errors()
    metrics["dropped_detections"] = dropped
    metrics["per_category_ap"] = [{"id": c, "name": n, "AP": _json_safe(ap)} for c, n, ap in per_cat]
    if output_dir is not None and protected is not None and analysis:
        ids = sorted(coco.getImgIds())
        _analyse(
            metrics,
            output_dir,
            coco,
            coco_eval,
            dets,
            ids,
            images_dir,
            confusion_score,
            error_images,
            protected,
            log,
        )
    if output_dir is not None and protected is not None:
        protected.check(Path(output_dir) / METRICS_NAME)
        atomic_write_json(Path(output_dir) / METRICS_NAME, metrics)
    return metrics


def run_eval(
    *,
    checkpoint: str | PathLike | None = None,
    model: str | None = None,
    weights: str | PathLike | None = None,
    width: float | None = None,
    num_classes: int | None = None,
    data_path: str | PathLike | None = None,
    val_images: str | PathLike | None = None,
    val_ann: str | PathLike | None = None,
    results: str | PathLike | None = None,
    output_dir: str | PathLike = "runs/eval",
    device: str | None = None,
    min_size: int | None = None,
    max_size: int | None = None,
    threads: int | None = None,
    strict_data: bool = False,
    data_format: str | None = None,
    difficult: str = "crowd",
    analysis: bool = True,
    confusion_score: float | None = None,
    error_images: int = 8,
    **kwargs: Any,
) -> dict[str, Any]:
    """Everything ``tools/eval_det.py`` does: resolve data, join torchrun, load, evaluate, write.

    Args:
        checkpoint: ``tools/train_det.py`` checkpoint; or ``model`` + ``weights``.
        model: builder name or alias (``fasterrcnn``, ``fasterrcnn_320``, ``retinanet``).
        weights: weights file for ``model``.
        width: GhostNet width for ``model``.
        num_classes: classes incl. background for ``model``.
        data_path: COCO 2017 root; ``val_images``/``val_ann`` override its parts.
        val_images: image folder.
        val_ann: annotation JSON.
        results: score this existing results JSON instead of running a model.
        output_dir: output folder.
        device: ``cpu``, ``cuda``, ``cuda:1``... (default: cuda if available).
        min_size: override the detector's resize min size.
        max_size: override the detector's resize max size.
        threads: ``torch.set_num_threads`` for this process (``None`` keeps torch's default).
        strict_data: invalid ground-truth entries are an error instead of being left out and
            counted (as ``tools/train_det.py --strict-data``).
        data_format: the layout of ``data_path`` (``coco``, ``yolo``, ``voc``; ``None``:
            detected); a YOLO or VOC set is scored on its ``val`` split.
        difficult: VOC ``difficult`` objects: ``"crowd"`` (ignored, as VOC scoring does) or
            ``"object"``.
        analysis: write the error analysis next to ``metrics.json`` (see
            :func:`evaluate_detector`).
        confusion_score: score threshold of the confusion matrix and the error images
            (``None``: the global best-F1 threshold).
        error_images: images drawn for most false positives and for most false negatives.
        precision: ``fp32`` or ``int8`` (in OpenVINO or onnxruntime; see
            :func:`ghostdet.deploy.compile`).
        calibration: for int8, a folder of images (or files, or tensors) to calibrate with.
        **kwargs: passed to :func:`evaluate_detector` (batch_size, workers, score_threshold,
            max_dets, limit, results_only, progress, log).
    """
    results_only = bool(kwargs.get("results_only", False))
    if results is not None:
        if val_ann is None and data_path is None:
            raise InputError("scoring --results needs --val-ann FILE or --data-path ROOT")
        ann = Path(val_ann) if val_ann else Path(data_path) / "annotations" / "instances_val2017.json"
        if not ann.is_file():
            raise InputError(f"annotation file not found: {ann}")
        images = Path(val_images) if val_images else (Path(data_path) / "val2017" if data_path else None)
        return rescore_results(
            results,
            ann,
            output_dir,
            log=kwargs.get("log", print),
            strict_data=strict_data,
            analysis=analysis,
            confusion_score=confusion_score,
            error_images=error_images,
            images_dir=images if images is not None and images.is_dir() else None,
        )
    fmt = data_format or (detect_format(data_path) if data_path is not None else "coco")
    if fmt != "coco" and val_images is None and val_ann is None:  # a YOLO/VOC set: its val split
        kw = {"difficult": difficult} if fmt == "voc" else {}
        source = read_split(data_path, "val", fmt, **kw)
        images_dir, ann_file = source.images_dir, source
    else:
        images_dir, ann_file = resolve_eval_data(data_path, val_images, val_ann, results_only)
    if threads:
        torch.set_num_threads(threads)
    info = init_distributed(resolve_device(device))
    try:
        detector = load_detector(
            checkpoint, model, weights, width, num_classes, min_size, max_size, device=info.device
        )
        return evaluate_detector(
            detector,
            images_dir,
            ann_file,
            output_dir,
            device=info.device,
            strict_data=strict_data,
            analysis=analysis,
            confusion_score=confusion_score,
            error_images=error_images,
            **kwargs,
        )
    finally:
        cleanup_distributed(info)
