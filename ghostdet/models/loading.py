"""Building a trained detector from a checkpoint: :func:`load_detector`.

A checkpoint written by ``tools/train_det.py`` records the builder name, backbone family, width,
number of classes and category mapping, so the detector is rebuilt from it alone; a plain state
dict needs the builder name (and width) beside it. Evaluation, prediction and the analysis tools
all load detectors through here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ghostdet.errors import CheckpointError, InputError, one_line
from ghostdet.models.registry import family_variant, get_model, model_entry, resolve_detector_name
from ghostdet.models.weights import WeightsMismatchError, clean_state_dict, load_strict
from ghostdet.utils.checkpoint_io import CheckpointReadError, checkpoint_backbone, read_checkpoint

__all__ = ["LoadedDetector", "configure_postprocess", "load_detector", "model_num_classes"]


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

    try:
        return read_checkpoint(path)
    except CheckpointReadError:
        raise


def _int_keys(d: Mapping[Any, Any] | None, value: type) -> dict[int, Any] | None:
    if not isinstance(d, Mapping):
        return None
    return {int(k): value(v) for k, v in d.items()}


def _on_backbone(name: str, backbone: str, path: Path) -> str:
    """The variant of detector ``name`` on the checkpoint's ``backbone`` (a CheckpointError if none)."""
    try:
        return family_variant(name, backbone)
    except ValueError as e:
        raise CheckpointError(f"checkpoint {path} records backbone {backbone!r}: {one_line(e)}") from None


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
        InputError: neither a checkpoint nor a model name with weights, or an unknown detector.
        CheckpointError: a missing or unreadable file, or one that does not match the model.
    """
    if checkpoint is None and (model_name is None or weights is None):
        raise InputError(
            "give a checkpoint, or a model name together with a weights file", argument="checkpoint"
        )
    path = Path(checkpoint if checkpoint is not None else weights).expanduser()
    ckpt = _read_checkpoint(path)
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"{path} holds a {type(ckpt).__name__}, not a checkpoint dict")
    if checkpoint is not None:
        if "model" not in ckpt or "detector" not in ckpt:
            raise CheckpointError(
                f"{path} is not a tools/train_det.py checkpoint (needs 'model' and 'detector' entries); "
                "a plain state dict loads as weights, with a model name"
            )
        # the checkpoint's backbone family (V1 for checkpoints that do not record one)
        backbone = checkpoint_backbone(ckpt)
        name = _on_backbone(resolve_detector_name(str(ckpt["detector"])), backbone, path)
        if model_name is not None and _on_backbone(resolve_detector_name(model_name), backbone, path) != name:
            raise CheckpointError(
                f"checkpoint {path} holds a {name}, not the requested {resolve_detector_name(model_name)}"
            )
        ck_width = float(_config_value(ckpt, "width") or 1.0)
        if width is not None and not math.isclose(width, ck_width):
            raise CheckpointError(f"checkpoint {path} has width {ck_width:g}, not the requested {width:g}")
        ck_classes = int(ckpt.get("num_classes") or _config_value(ckpt, "num_classes") or 91)
        if num_classes is not None and num_classes != ck_classes:
            raise CheckpointError(
                f"checkpoint {path} has {ck_classes} classes, not the requested {num_classes}"
            )
        width, num_classes = ck_width, ck_classes
        what = f"checkpoint {path} does not match {name}"
    else:
        name = resolve_detector_name(str(model_name))
        width = 1.0 if width is None else float(width)
        what = f"weights {path} do not match {name} (width {width:g})"
    try:
        state = clean_state_dict(ckpt)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{what}: {one_line(e)}") from None
    # A train_det checkpoint's config carries the builder's extra arguments and input sizes.
    cfg = ckpt.get("config")
    kwargs: dict[str, Any] = dict(cfg.get("model_kwargs") or {}) if isinstance(cfg, Mapping) else {}
    for key, val in (("min_size", min_size), ("max_size", max_size)):
        val = val if val is not None else _config_value(ckpt, key)
        if val is None and key == "min_size" and _config_value(ckpt, "min_size_range"):
            val = _config_value(ckpt, "min_size_range")[1]  # multi-scale training [MIN, MAX, STEP]: MAX
        if isinstance(val, (list, tuple)):  # multi-scale training: evaluated at the last size
            val = val[-1] if val else None
        if val is not None:
            kwargs[key] = int(val)
    try:
        if num_classes is None:
            num_classes = _num_classes_from_state(name, state, width, kwargs)
        model = get_model(name, width=width, num_classes=num_classes, **kwargs)
        load_strict(model, _fill_frozen_bn_keys(model, state))
    except (WeightsMismatchError, TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{what}: {one_line(e)}") from None
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
        raise CheckpointError(f"no '{key}' entry: not a checkpoint of this detector")
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
