"""Loading trained detectors and running them on image files.

:func:`load_detector` builds a detector from a checkpoint written by ``tools/train_det.py``
(which records the builder name, width, number of classes and category mapping) or from a
builder name plus a weights file. :func:`predict_images` runs it over images, folders or globs,
saves copies with the detections drawn (:mod:`ghostdet.drawing`) and writes the detections as
JSON. The tools' shared flags and error handling are in :mod:`ghostdet.cli`.
"""

from __future__ import annotations

import glob
import io
import json
import math
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn

from ghostdet.checkpoint_io import checkpoint_backbone
from ghostdet.cli import ToolError, one_line, resolve_detector_name, resolve_device
from ghostdet.data.images import read_rgb_tensor
from ghostdet.drawing import draw_detections
from ghostdet.errors import OutputError
from ghostdet.models import get_model, model_entry
from ghostdet.models.registry import family_variant
from ghostdet.models.weights import WeightsMismatchError, clean_state_dict, load_strict
from ghostdet.utils.files import ProtectedFiles, atomic_write_bytes

__all__ = [
    "IMAGE_EXTENSIONS",
    "LoadedDetector",
    "check_output_dir",
    "collect_images",
    "configure_postprocess",
    "load_detector",
    "model_num_classes",
    "predict_images",
    "read_image",
    "run_infer",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


@dataclass
class LoadedDetector:
    """A detector ready for inference and what is known about its classes.

    Attributes:
        model: the torchvision detector (eval mode).
        name: builder name.
        label_to_cat_id: model label -> dataset category id; ``None`` when the labels are the
            category ids (torchvision's 91-class COCO convention) or unknown.
        category_names: model label -> class name (may be empty).
        source: the file the weights came from.
        meta: other checkpoint entries worth reporting (epoch, width, num_classes).
    """

    model: nn.Module
    name: str
    label_to_cat_id: dict[int, int] | None
    category_names: dict[int, str]
    source: str
    meta: dict[str, Any] = field(default_factory=dict)

    def label_name(self, label: int) -> str:
        """Class name of a model label (the label number when unknown)."""
        return self.category_names.get(int(label), str(int(label)))


def _read_checkpoint(path: Path) -> Any:
    from ghostdet.checkpoint_io import CheckpointReadError, read_checkpoint

    try:
        return read_checkpoint(path)
    except CheckpointReadError as e:  # the tools print ToolErrors as one line
        raise ToolError(str(e)) from None


def _int_keys(d: Mapping[Any, Any] | None, value: type) -> dict[int, Any] | None:
    if not isinstance(d, Mapping):
        return None
    return {int(k): value(v) for k, v in d.items()}


def _on_backbone(name: str, backbone: str, path: Path) -> str:
    """The variant of detector ``name`` on the checkpoint's ``backbone`` (a ToolError if none)."""
    try:
        return family_variant(name, backbone)
    except ValueError as e:
        raise ToolError(f"checkpoint {path} records backbone {backbone!r}: {one_line(e)}") from None


def _config_value(ckpt: Mapping[str, Any], key: str) -> Any:
    cfg = ckpt.get("config")
    if isinstance(cfg, Mapping) and cfg.get(key) is not None:
        return cfg[key]
    return ckpt.get(key)


def configure_postprocess(model: nn.Module, score_threshold: float | None, max_dets: int | None) -> None:
    """Set a torchvision detector's own score threshold and detections-per-image cap.

    Args:
        model: FasterRCNN (``roi_heads.score_thresh``/``detections_per_img``) or RetinaNet
            (``score_thresh``/``detections_per_img``).
        score_threshold: new score threshold (``None`` keeps the model's).
        max_dets: new per-image cap (``None`` keeps the model's).
    """
    target = getattr(model, "roi_heads", model)
    if score_threshold is not None and hasattr(target, "score_thresh"):
        target.score_thresh = float(score_threshold)
    if max_dets is not None and hasattr(target, "detections_per_img"):
        target.detections_per_img = int(max_dets)


def load_detector(
    checkpoint: str | PathLike | None = None,
    model_name: str | None = None,
    weights: str | PathLike | None = None,
    width: float | None = None,
    num_classes: int | None = None,
    min_size: int | None = None,
    max_size: int | None = None,
    device: torch.device | str = "cpu",
) -> LoadedDetector:
    """Build a detector from a ``tools/train_det.py`` checkpoint or a builder name + weights file.

    Args:
        checkpoint: checkpoint written by ``tools/train_det.py`` (holds ``model``, ``detector``,
            ``width``, ``num_classes``, ``label_to_cat_id``, ``category_names``).
        model_name: builder name or alias. With ``checkpoint`` it must match the checkpoint's
            detector; without, ``weights`` is required.
        weights: weights file for ``model_name`` (a state dict, or any dict holding it under
            ``model``); if it also carries ``label_to_cat_id``/``category_names`` they are used.
        width: GhostNet width (builder path; default 1.0; with a checkpoint it must match).
        num_classes: classes incl. background (builder path; default: inferred from weights).
        min_size: override the detector's resize ``min_size`` (default: checkpoint config or builder).
        max_size: override ``max_size`` likewise.
        device: where to put the model.

    Raises:
        ToolError: missing file, unreadable checkpoint, or a checkpoint that does not match the model.
    """
    if checkpoint is None and (model_name is None or weights is None):
        raise ToolError("give --checkpoint FILE, or --model NAME together with --weights FILE")
    path = Path(checkpoint if checkpoint is not None else weights).expanduser()
    ckpt = _read_checkpoint(path)
    if not isinstance(ckpt, Mapping):
        raise ToolError(f"{path} holds a {type(ckpt).__name__}, not a checkpoint dict")
    if checkpoint is not None:
        if "model" not in ckpt or "detector" not in ckpt:
            raise ToolError(
                f"{path} is not a tools/train_det.py checkpoint (needs 'model' and 'detector' entries); "
                "for a plain state dict use --model NAME --weights FILE"
            )
        # the checkpoint's backbone family (V1 for checkpoints that do not record one)
        backbone = checkpoint_backbone(ckpt)
        name = _on_backbone(resolve_detector_name(str(ckpt["detector"])), backbone, path)
        if model_name is not None and _on_backbone(resolve_detector_name(model_name), backbone, path) != name:
            raise ToolError(
                f"checkpoint {path} holds a {name}, not the requested {resolve_detector_name(model_name)}"
            )
        ck_width = float(_config_value(ckpt, "width") or 1.0)
        if width is not None and not math.isclose(width, ck_width):
            raise ToolError(f"checkpoint {path} has width {ck_width:g}, not the requested {width:g}")
        ck_classes = int(ckpt.get("num_classes") or _config_value(ckpt, "num_classes") or 91)
        if num_classes is not None and num_classes != ck_classes:
            raise ToolError(f"checkpoint {path} has {ck_classes} classes, not the requested {num_classes}")
        width, num_classes = ck_width, ck_classes
        what = f"checkpoint {path} does not match {name}"
    else:
        name = resolve_detector_name(str(model_name))
        width = 1.0 if width is None else float(width)
        what = f"weights {path} do not match {name} (width {width:g})"
    try:
        state = clean_state_dict(ckpt)
    except (TypeError, ValueError) as e:
        raise ToolError(f"{what}: {one_line(e)}") from None
    # A train_det checkpoint's config carries the builder's extra arguments and input sizes.
    cfg = ckpt.get("config")
    kwargs: dict[str, Any] = dict(cfg.get("model_kwargs") or {}) if isinstance(cfg, Mapping) else {}
    for key, val in (("min_size", min_size), ("max_size", max_size)):
        val = val if val is not None else _config_value(ckpt, key)
        if val is not None:
            kwargs[key] = int(val)
    try:
        if num_classes is None:
            num_classes = _num_classes_from_state(name, state, width, kwargs)
        model = get_model(name, width=width, num_classes=num_classes, **kwargs)
        load_strict(model, _fill_frozen_bn_keys(model, state))
    except (WeightsMismatchError, TypeError, ValueError, KeyError) as e:
        raise ToolError(f"{what}: {one_line(e)}") from None
    label_to_cat_id = _int_keys(ckpt.get("label_to_cat_id"), int)
    names = _int_keys(ckpt.get("category_names"), str) or {}
    meta = {k: ckpt[k] for k in ("epoch", "width") if isinstance(ckpt.get(k), (int, float))}
    meta["num_classes"] = model_num_classes(model)
    if not names and label_to_cat_id is None and meta["num_classes"] == 91:
        names = _torchvision_coco_names()
    model.eval().to(device)
    return LoadedDetector(model, name, label_to_cat_id, names, str(path), meta)


def _num_classes_from_state(
    name: str, state: Mapping[str, Tensor], width: float, kwargs: dict[str, Any]
) -> int:
    """Classes (incl. background) of a detector state dict, from its classification layer."""
    probe = get_model(name, width=width, **kwargs)
    key = model_entry(name).class_key
    if key is None or key not in state:
        raise KeyError(f"no '{key}' entry: not a checkpoint of this detector")
    anchors = probe.anchor_generator.num_anchors_per_location()[0] if key.startswith("head.") else 1
    return int(state[key].shape[0]) // anchors


def _fill_frozen_bn_keys(model: nn.Module, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Add ``num_batches_tracked`` entries a checkpoint lacks because it was trained with
    FrozenBatchNorm2d (pretrained trunk); in eval mode BatchNorm2d computes the same thing."""
    out = dict(state)
    for k, v in model.state_dict().items():
        if (
            k.endswith(".num_batches_tracked")
            and k not in out
            and k.rsplit(".", 1)[0] + ".running_var" in out
        ):
            out[k] = v.clone()
    return out


def model_num_classes(model: nn.Module) -> int | None:
    """Number of classes (incl. background) of a torchvision Faster R-CNN or RetinaNet."""
    predictor = getattr(getattr(model, "roi_heads", None), "box_predictor", None)
    if predictor is not None:
        return int(predictor.cls_score.out_features)
    head = getattr(getattr(model, "head", None), "classification_head", None)
    return int(head.num_classes) if head is not None else None


def _torchvision_coco_names() -> dict[int, str]:
    """torchvision's 91-label COCO names (label == COCO category id), without the N/A slots."""
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights

    cats = FasterRCNN_ResNet50_FPN_Weights.DEFAULT.meta["categories"]
    return {i: n for i, n in enumerate(cats) if i > 0 and n != "N/A"}


def read_image(path: str | PathLike, expected_size: tuple[int, int] | None = None) -> Tensor:
    """Decode an image file to a float32 RGB tensor (C, H, W) in [0, 1].

    The project's one image reader (:func:`ghostdet.data.images.open_rgb`): the EXIF orientation
    is applied (what a viewer shows) unless ``expected_size`` says otherwise, and images above
    the pixel limit (PIL's decompression-bomb threshold) are refused.

    Args:
        path: image file.
        expected_size: ``(width, height)`` from an annotation file, or ``None`` for a plain image.

    Raises:
        ImageReadError: (an ``OSError``) the file is missing, not an image, truncated, above the
            pixel limit, or not of ``expected_size`` in either orientation; the message names it.
    """
    return read_rgb_tensor(path, expected_size)


def collect_images(inputs: Iterable[str | PathLike]) -> list[Path]:
    """Expand image files, folders (their image files, sorted, not recursive) and glob patterns.

    Files named explicitly are kept whatever their extension (so unreadable ones get reported);
    folder and glob matches are filtered by :data:`IMAGE_EXTENSIONS`. Duplicates are dropped.

    Raises:
        ToolError: an input matches nothing.
    """
    out: list[Path] = []
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        elif p.is_file():
            found = [p]
        elif glob.has_magic(str(item)):
            found = sorted(
                Path(f)
                for f in glob.glob(os.path.expanduser(str(item)), recursive=True)
                if Path(f).is_file() and Path(f).suffix.lower() in IMAGE_EXTENSIONS
            )
        else:
            raise ToolError(f"input not found: {item}")
        if not found:
            raise ToolError(f"no image files in {item}")
        out.extend(found)
    return list(dict.fromkeys(out))


def check_output_dir(output_dir: str | PathLike, inputs: Sequence[Path]) -> ProtectedFiles:
    """Refuse an output folder that would overwrite an input or cannot be a folder.

    The drawn copies and JSON files are written into ``output_dir`` under the inputs' names, so
    a folder that lists or holds any input image is refused (compared by device and inode, so a
    folder of links to the photos, or the same folder under another path, is caught too), as is
    a path that is a file or lies under one.

    Returns:
        the inputs as :class:`~ghostdet.utils.files.ProtectedFiles`, for a check of every write.

    Raises:
        OutputError: naming ``output_dir`` (``argument="output_dir"``) and the input or file in
            the way.
    """
    out = Path(output_dir).expanduser()
    for parent in (out, *out.parents):
        if parent.exists() and not parent.is_dir():
            where = "is a file" if parent == out else f"is under the file {parent}"
            raise OutputError(f"{out} {where}; give a folder", argument="output_dir")
    protected = ProtectedFiles(inputs, what="input image")
    held = protected.input_in_folder(out)
    if held is not None:
        raise OutputError(
            f"{out} holds the input image {held}: the drawn copies would overwrite the inputs; give "
            "another folder (e.g. a subfolder such as OUTPUT/detections)",
            argument="output_dir",
        )
    return protected


def _unique_stem(path: Path, used: set[str]) -> str:
    stem, i = path.stem, 1
    while stem in used:
        stem = f"{path.stem}_{i}"
        i += 1
    used.add(stem)
    return stem


@torch.no_grad()
def predict_images(
    detector: LoadedDetector,
    paths: Sequence[Path],
    output_dir: str | PathLike,
    device: torch.device | str = "cpu",
    score_threshold: float = 0.5,
    draw: bool = True,
    warn: Any = print,
) -> dict[str, Any]:
    """Run ``detector`` on image files; save drawn copies and JSON detections in ``output_dir``.

    For each readable image ``name.ext``: ``name.jpg`` (or ``.png`` for PNG inputs) with the
    boxes drawn, and ``name.json``; plus ``detections.json`` with every image's entry.
    Unreadable files are reported through ``warn`` and skipped.

    Args:
        detector: from :func:`load_detector`.
        paths: image files (see :func:`collect_images`).
        output_dir: created if needed.
        device: device of the model.
        score_threshold: keep detections with ``score >= score_threshold``.
        draw: save the drawn copies.
        warn: called with one line per skipped file.

    Returns:
        ``{"images": [...entries], "skipped": [paths], "output_dir": str}``; each entry holds
        ``file``, ``width``, ``height`` and ``detections`` (``label``, ``category_id``, ``name``,
        ``score``, ``box`` xyxy pixels).
    """
    protected = check_output_dir(output_dir, paths)
    out_dir = Path(output_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)

    def write(name: str, data: bytes) -> Path:
        # every write: never an input under any name, never through a link (atomic rename)
        target = out_dir / name
        protected.check(target)
        return atomic_write_bytes(target, data)

    device = torch.device(device)
    model = detector.model.eval()
    # The model's own score cut becomes the requested one (also when it is below the default 0.05).
    configure_postprocess(model, score_threshold, None)
    entries: list[dict[str, Any]] = []
    skipped: list[str] = []
    used: set[str] = {"detections"}  # the combined file's name
    for path in paths:
        try:
            image = read_image(path)
        except OSError as e:
            warn(f"skipping: {one_line(e)}")
            skipped.append(str(path))
            continue
        out = model([image.to(device)])[0]
        keep = out["scores"] >= score_threshold
        boxes, scores, labels = (out[k][keep].cpu() for k in ("boxes", "scores", "labels"))
        dets = []
        for box, s, lbl in zip(boxes.tolist(), scores.tolist(), labels.tolist()):
            cat = detector.label_to_cat_id.get(lbl) if detector.label_to_cat_id else lbl
            dets.append(
                {"label": lbl, "category_id": cat, "name": detector.label_name(lbl), "score": s, "box": box}
            )
        entry = {"file": str(path), "width": image.shape[2], "height": image.shape[1], "detections": dets}
        stem = _unique_stem(path, used)
        if draw:
            drawn = draw_detections(image, boxes, labels.tolist(), scores.tolist(), detector.category_names)
            png = path.suffix.lower() == ".png"
            buf = io.BytesIO()
            Image.fromarray(drawn.permute(1, 2, 0).numpy()).save(buf, "PNG" if png else "JPEG", quality=92)
            entry["drawn"] = str(write(f"{stem}{'.png' if png else '.jpg'}", buf.getvalue()))
        write(f"{stem}.json", json.dumps(entry, indent=1).encode())
        entries.append(entry)
    write("detections.json", json.dumps(entries, indent=1).encode())
    return {"images": entries, "skipped": skipped, "output_dir": str(out_dir)}


def run_infer(
    inputs: Sequence[str | PathLike],
    *,
    checkpoint: str | PathLike | None = None,
    model: str | None = None,
    weights: str | PathLike | None = None,
    width: float | None = None,
    num_classes: int | None = None,
    min_size: int | None = None,
    max_size: int | None = None,
    score_threshold: float = 0.5,
    device: str | None = None,
    output_dir: str | PathLike = "runs/infer",
    threads: int | None = None,
    draw: bool = True,
    log: Any = print,
    warn: Any = None,
) -> dict[str, Any]:
    """Everything ``tools/infer.py`` does: load a detector, expand inputs, predict, save, report.

    Args:
        inputs: image files, folders or glob patterns.
        checkpoint: ``tools/train_det.py`` checkpoint; or ``model`` + ``weights``.
        model: builder name or alias.
        weights: weights file for ``model``.
        width: GhostNet width for ``model``.
        num_classes: classes incl. background for ``model``.
        min_size: override the detector's resize min size.
        max_size: override the detector's resize max size.
        score_threshold: keep detections scoring at least this.
        device: ``cpu``, ``cuda``... (default: cuda if available).
        output_dir: where drawn images and JSON go.
        threads: ``torch.set_num_threads`` (``None``/0 keeps torch's default).
        draw: save drawn copies.
        log: printer of the per-image lines and the summary.
        warn: printer of skipped-file lines (default: stderr).

    Raises:
        ToolError: bad inputs or checkpoint, or no image could be read.
        OutputError: an output folder that holds an input image or is (under) a file (see
            :func:`check_output_dir`), or an output file that is an input under another name.
    """
    if warn is None:

        def warn(msg: str) -> None:
            print(msg, file=sys.stderr)

    paths = collect_images(inputs)
    check_output_dir(output_dir, paths)  # before the model is loaded: refusing is quick
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    detector = load_detector(checkpoint, model, weights, width, num_classes, min_size, max_size, device=dev)
    summary = predict_images(detector, paths, output_dir, dev, score_threshold, draw=draw, warn=warn)
    if not summary["images"]:
        raise ToolError(f"none of the {len(paths)} input file(s) could be read as an image")
    n_det = sum(len(e["detections"]) for e in summary["images"])
    for e in summary["images"]:
        top = ", ".join(f"{d['name']} {d['score']:.2f}" for d in e["detections"][:5])
        more = f" (+{len(e['detections']) - 5} more)" if len(e["detections"]) > 5 else ""
        log(f"{e['file']}: {len(e['detections'])} detection(s){': ' + top + more if top else ''}")
    skipped = len(summary["skipped"])
    note = f", {skipped} unreadable file(s) skipped" if skipped else ""
    log(
        f"{len(summary['images'])} image(s), {n_det} detection(s) >= {score_threshold:g}{note}; "
        f"wrote {summary['output_dir']}"
    )
    return summary
