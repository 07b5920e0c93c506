"""Training configuration: YAML recipe -> typed :class:`TrainConfig` -> command-line overrides.

A recipe is a flat YAML mapping whose keys are the fields of :class:`TrainConfig`, plus two
nested mappings: ``synthetic`` (fields of :class:`SyntheticConfig`, the embedded default data)
and ``augment`` (fields of :class:`ghostdet.data.AugConfig`). Keys left out keep their defaults;
an unknown key is an error that names it. ``ghostdet train`` (``tools/train_det.py``) loads the
recipe, then applies only the flags the user actually passed, then ``--set KEY=VALUE``; every
field declared with a ``help`` is a flag (see :mod:`ghostdet.config.recipe`), and the solver and
run fields are shared with classification (:class:`ghostdet.config.base.BaseTrainConfig`). The
trainer saves the resolved result as
``config.yaml`` in the output directory (and inside every checkpoint), so a run can always be
reproduced with ``--config OUTPUT_DIR/config.yaml``.

Example::

    cfg = load_config("configs/retinanet_ghostnet_synthetic.yaml", overrides={"epochs": 2})
    ghostdet.engine.train(cfg)
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from os import PathLike
from pathlib import Path
from typing import Any, Optional

from ghostdet.config import recipe
from ghostdet.config.base import _SANE, DEVICE_PATTERN, MAX_SEED, BaseTrainConfig
from ghostdet.config.recipe import ConfigError, check_choice, check_value, setting
from ghostdet.models.family import list_families
from ghostdet.models.registry import detector_aliases, family_variant

__all__ = [
    "CONFIG_DIR",
    "DETECTORS",
    "DEVICE_PATTERN",
    "MAX_IMAGE_SIDE",
    "MAX_SEED",
    "MAX_SYNTHETIC_IMAGE_SIZE",
    "ConfigError",
    "SyntheticConfig",
    "TrainConfig",
    "check_augment",
    "config_from_dict",
    "default_config_path",
    "load_config",
]

#: The recipes shipped inside the package (a clone's ``configs/`` links to this folder).
CONFIG_DIR = Path(str(files("ghostdet.config") / "recipes"))

#: ``--detector`` choices -> torchvision-style builder names: the detector aliases of the registry.
DETECTORS: dict[str, str] = detector_aliases()

#: Largest side of a synthetic image (a sane maximum: 4096 x 4096 RGB is 48 MiB per image).
MAX_SYNTHETIC_IMAGE_SIZE = 4096

#: Largest resize target of a detector (``min_size``, ``max_size``; a sane maximum).
MAX_IMAGE_SIDE = 8192

#: The step of a ``min_size_range`` that names none (torchvision's and detectron2's multi-scale step).
MIN_SIZE_STEP = 32

# MAX_SEED and DEVICE_PATTERN are declared in ghostdet.config.base (re-exported here).


@dataclass
class SyntheticConfig:
    """The embedded synthetic dataset, generated under ``root`` on first use.

    Used when no data path is configured. The remaining fields are passed to
    :func:`ghostdet.data.synthetic.ensure_synthetic_coco`; ``None`` keeps the generator's default.

    Args:
        root: dataset folder (relative paths are relative to the working directory).
        num_train: train images.
        num_val: val images.
        image_size: side of the square images in pixels.
        seed: generator seed.
        num_categories: shape classes (1-6).
        object_size: ``[min, max]`` side of a shape in pixels.
        max_objects: at most this many shapes per image.
        empty_prob: fraction of images without shapes.
        max_overlap_iou: largest IoU between two shapes of an image.
        jpeg_quality: JPEG quality.
    """

    root: str = setting("data/synthetic", help="folder of the synthetic dataset (default data/synthetic)")
    # (num_* >= 1: the generator's own check says why, before anything is written)
    num_train: int = setting(480, help="synthetic train images")
    num_val: int = setting(80, help="synthetic val images")
    image_size: int = setting(
        192, ge=32, le=MAX_SYNTHETIC_IMAGE_SIZE, why=_SANE, help="side of the synthetic images in pixels"
    )
    seed: int = setting(0, ge=0, le=MAX_SEED)
    num_categories: Optional[int] = setting(None, ge=1)
    object_size: Optional[list[int]] = setting(None, ge=8, le=MAX_SYNTHETIC_IMAGE_SIZE)  # noqa: RUF009
    max_objects: Optional[int] = setting(None, ge=1)
    empty_prob: Optional[float] = setting(None, ge=0, le=1)
    max_overlap_iou: Optional[float] = setting(None, ge=0, le=1)
    jpeg_quality: Optional[int] = setting(None, ge=1, le=100)

    def generator_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``ensure_synthetic_coco`` (without ``root``; ``None`` left out)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "root"}
        out = {k: v for k, v in out.items() if v is not None}
        if "object_size" in out:
            out["object_size"] = tuple(out["object_size"])
        return out


@dataclass
class TrainConfig(BaseTrainConfig):
    """Everything a detection training run depends on (one flat recipe; see the module docstring).

    The solver and run fields (``epochs`` ... ``threads``, ``workers``) are those of
    :class:`ghostdet.config.base.BaseTrainConfig`, with its defaults.

    Model:
        detector: ``fasterrcnn``, ``fasterrcnn_320`` or ``retinanet``.
        backbone: the backbone family of the trunk, one of the registered families
            (``ghostnet``, ``ghostnetv2``, ``ghostnetv3``); the detector is its variant of
            ``detector`` (e.g. ``fasterrcnn_ghostnetv2_fpn``).
        width: GhostNet width multiplier (the paper's detectors use 1.1).
        weights_backbone: ImageNet weights of the trunk: ``imagenet``, a URL, a file or ``None``
            (random init, BatchNorm trained).
        trainable_backbone_layers: trunk stages trained, counted from the top (0-5; ``None``:
            3 with pretrained weights, 5 without).
        min_size: the detector's resize target for the shorter side (``None``: builder default).
            Several sizes train at multiple scales: torchvision's ``GeneralizedRCNNTransform``
            draws one of them for each training image and evaluates at the last one (a single
            number in a recipe is a one-entry list).
        min_size_range: ``[MIN, MAX]`` or ``[MIN, MAX, STEP]`` (STEP default 32): train at the
            sizes ``MIN, MIN + STEP, ...`` below ``MAX``, and ``MAX``; evaluate at ``MAX``.
            Instead of ``min_size``.
        max_size: cap of the longer side (``None``: builder default).
        model_kwargs: more builder keyword arguments with plain values (e.g. ``score_thresh``,
            ``detections_per_img``, ``box_detections_per_img``, ``fg_iou_thresh``).

    Data:
        data_path: COCO 2017 root (train2017/, val2017/, annotations/), a synthetic-layout root,
            a YOLO ``data.yaml`` (or its folder) or a Pascal VOC root
            (:mod:`ghostdet.data.formats`).
        data_format: the layout of ``data_path``: ``coco``, ``yolo`` or ``voc`` (``None``:
            detected).
        difficult: VOC ``difficult`` objects: ``crowd`` (ignored, as VOC scoring does) or
            ``object``.
        train_images, train_ann, val_images, val_ann: explicit COCO-format paths (override
            ``data_path``). With none of the data fields set, the synthetic dataset is used.
        synthetic: the embedded dataset (:class:`SyntheticConfig`).
        drop_empty: drop train images without boxes.
        strict_data: invalid annotation/image entries are an error instead of being skipped and
            counted (crowd and tiny boxes are normal COCO content and never an error; see
            :mod:`ghostdet.data.validation`).
        augment: training augmentation, fields of :class:`ghostdet.data.AugConfig`.
        aspect_ratio_group_factor: aspect-ratio groups per side of 1 for batching (0: no grouping).

    Runtime:
        eval_every: evaluate every N epochs (the last epoch is always evaluated; 0: only the last).
        vis_images: validation images drawn with their predicted boxes into TensorBoard.
        vis_score_thresh: score threshold of the drawn boxes.
    """

    # model (each field's range, help and section are declared beside it: ghostdet.config.recipe.setting)
    detector: str = setting(
        "retinanet", choices=lambda: tuple(DETECTORS), help="detector (default retinanet)", section="model"
    )
    backbone: str = setting(
        "ghostnet", choices=list_families, section="model",
        help="backbone family of the trunk (default ghostnet; ghostnetv3 trains in the multi-branch form)",
    )  # fmt: skip
    width: float = setting(
        1.0, gt=0, help="GhostNet width multiplier (paper detectors: 1.1)", section="model"
    )
    weights_backbone: Optional[str] = setting(
        None, section="model",
        help="ImageNet weights of the trunk: imagenet, a URL, a file, or none (random init)",
    )  # fmt: skip
    trainable_backbone_layers: Optional[int] = setting(
        None, ge=0, le=5, section="model",
        help="trunk stages trained, from the top (0-5; default 3 with weights, 5 without)",
    )  # fmt: skip
    min_size: Optional[list[int]] = setting(  # noqa: RUF009 (a field())
        None, ge=1, le=MAX_IMAGE_SIDE, why=_SANE, section="model",
        help="detector resize: shorter image side; several: one drawn per training image, "
        "evaluation at the last",
    )  # fmt: skip
    # (no flag: --set min_size_range=[MIN,MAX,STEP])
    min_size_range: Optional[list[int]] = setting(  # noqa: RUF009 (a field())
        None, ge=1, le=MAX_IMAGE_SIDE, why=_SANE, section="model"
    )
    max_size: Optional[int] = setting(
        None,
        ge=1,
        le=MAX_IMAGE_SIDE,
        why=_SANE,
        help="detector resize: cap of the longer side",
        section="model",
    )
    model_kwargs: dict[str, Any] = setting(default_factory=dict, section="model")  # noqa: RUF009
    # data
    data_path: Optional[str] = setting(
        None, section="data",
        help="the dataset: a COCO 2017 root (train2017/, val2017/, annotations/instances_*2017.json), a "
        "YOLO data.yaml (or its folder) or a Pascal VOC root (Annotations/, JPEGImages/, ImageSets/Main/)",
    )  # fmt: skip
    data_format: Optional[str] = setting(
        None, choices=("coco", "yolo", "voc"), section="data",
        help="the layout of --data-path (default: detected)",
    )  # fmt: skip
    difficult: str = setting(
        "crowd", choices=("crowd", "object"), section="data",
        help="VOC 'difficult' objects: ignored like crowd boxes, as VOC scoring does (crowd), or trained on",
    )  # fmt: skip
    train_images: Optional[str] = setting(
        None, help="folder of training images (any COCO-format set)", section="data"
    )
    train_ann: Optional[str] = setting(
        None, help="COCO instances JSON of the training images", section="data"
    )
    val_images: Optional[str] = setting(None, help="folder of validation images", section="data")
    val_ann: Optional[str] = setting(
        None, help="COCO instances JSON of the validation images", section="data"
    )
    synthetic: SyntheticConfig = setting(default_factory=SyntheticConfig, section="data")  # noqa: RUF009
    drop_empty: bool = setting(False, section="data")
    strict_data: bool = setting(
        False, section="data",
        help="invalid annotation/image entries are an error instead of being skipped and counted "
        "(crowd and tiny boxes are always only counted)",
    )  # fmt: skip
    augment: dict[str, Any] = setting(default_factory=dict, section="data")  # noqa: RUF009
    aspect_ratio_group_factor: int = setting(3, ge=0, section="data")
    # runtime
    eval_every: int = setting(
        1, ge=0, help="evaluate every N epochs (the last is always evaluated)", section="run"
    )
    vis_images: int = setting(4, ge=0, section="run")
    vis_score_thresh: float = setting(0.3, ge=0, le=1, section="run")

    @property
    def builder(self) -> str:
        """Builder name in :mod:`ghostdet.models` of ``detector`` on ``backbone``."""
        return family_variant(DETECTORS[self.detector], self.backbone)

    @property
    def train_min_sizes(self) -> Optional[tuple[int, ...]]:
        """The detector's ``min_size``: the sizes training draws from, the last the evaluation's
        (``min_size_range`` expanded; ``None``: the builder's default)."""
        if self.min_size_range is not None:
            lo, hi, step = [*self.min_size_range, MIN_SIZE_STEP][:3]
            return (*range(lo, hi, step), hi)
        return None if self.min_size is None else tuple(self.min_size)

    def uses_synthetic(self) -> bool:
        """True when no data path is configured (the embedded synthetic data is used)."""
        return all(
            getattr(self, k) is None
            for k in ("data_path", "train_images", "train_ann", "val_images", "val_ann")
        )

    def validate(self) -> TrainConfig:
        """Check what the fields' declared ranges (:func:`ghostdet.config.recipe.check_fields`, applied
        before this) cannot: the keys across fields, ``augment`` and ``model_kwargs`` against
        what they configure. Raises :class:`ConfigError` naming the key. Returns self."""
        try:
            self.builder  # noqa: B018 (a family without this detector)
        except ValueError as e:
            raise ConfigError.about("backbone", str(e)) from None
        check_value("lr_steps", list(self.lr_steps) == sorted(self.lr_steps), "must be increasing")
        check_value("min_size", self.min_size is None or len(self.min_size) > 0, "must not be empty")
        if self.min_size_range is not None:
            r = self.min_size_range
            check_value(
                "min_size_range", len(r) in (2, 3) and r[0] < r[1],
                f"must be [MIN, MAX] or [MIN, MAX, STEP] with MIN < MAX, got {r}",
            )  # fmt: skip
            check_value("min_size_range", self.min_size is None, "set min_size or min_size_range, not both")
        reserved = {"weights", "num_classes", "width", "weights_backbone", "trainable_backbone_layers"}
        reserved.add("backbone")
        bad = sorted(reserved & set(self.model_kwargs))
        check_value("model_kwargs", not bad, f"must not set {', '.join(bad)} (use the top-level keys)")
        from ghostdet.config.model_kwargs import check_model_kwargs

        check_model_kwargs(self.builder, self.model_kwargs)
        check_augment(self.augment)
        return self


def check_augment(augment: Mapping[str, Any]) -> None:
    """Check an ``augment`` mapping against :class:`ghostdet.data.AugConfig`.

    Raises:
        ConfigError: an unknown key (``augment.KEY``, with close matches) or a value the
            augmentation refuses.
    """
    import difflib

    from ghostdet.data import AugConfig

    known = [f.name for f in dataclasses.fields(AugConfig)]
    for name in augment:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
            hint = f"did you mean {' or '.join(close)}? " if close else ""
            raise ConfigError.about(
                f"augment.{name}", f"unknown augmentation option ({hint}known: {', '.join(known)})"
            )
    hints = typing.get_type_hints(AugConfig)
    for name, value in augment.items():
        key = f"augment.{name}"
        if hints[name] in (int, float):
            value = recipe.coerce_value(key, value, hints[name])
            check_value(key, math.isfinite(value), f"must be a finite number, got {value!r}")
        elif not isinstance(value, (list, tuple)) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value
        ):
            raise ConfigError.about(key, f"expected a list of finite numbers, got {value!r}")
    try:
        AugConfig.from_dict(dict(augment))
    except (TypeError, ValueError) as e:
        named = re.search(r"AugConfig\.(\w+)", str(e))
        key = f"augment.{named[1]}" if named else "augment"
        raise ConfigError.about(key, str(e).replace(f"AugConfig.{named[1]} " if named else "", "")) from None


def config_from_dict(
    data: Mapping[str, Any] | None, overrides: Mapping[str, Any] | None = None, source: str = ""
) -> TrainConfig:
    """A validated :class:`TrainConfig` from a plain mapping plus overrides
    (:func:`ghostdet.config.recipe.config_from_dict`).

    Raises:
        ConfigError: unknown key, wrong type or invalid value (the message names the key).
    """
    return recipe.config_from_dict(data, overrides, source, cls=TrainConfig)


def load_config(path: str | PathLike | None, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Load a detection recipe (YAML; ``None``: the defaults), apply ``overrides`` and validate
    (:func:`ghostdet.config.recipe.load_config`).

    Raises:
        InputError: ``path`` is not a file.
        ConfigError: bad YAML, unknown key, wrong type or invalid value.
    """
    return recipe.load_config(path, overrides, cls=TrainConfig)


def default_config_path(detector: str, real_data: bool = False) -> Path:
    """The recipe ``tools/train_det.py`` uses when no ``--config`` is given.

    The file name is the detector alias followed by the trunk and the data:
    ``configs/{detector}_ghostnet_synthetic.yaml`` or ``configs/{detector}_ghostnet100_coco_1x.yaml``.

    Args:
        detector: a detector alias (``fasterrcnn``, ``fasterrcnn_320``, ``retinanet``, ...).
        real_data: a data path was given: the COCO 1x recipe with a GhostNet 1.0x trunk and the
            authors' published ImageNet checkpoint, instead of the synthetic one. (The paper's
            1.1x recipes, ``*_ghostnet110_coco_1x.yaml``, need a 1.1x ImageNet checkpoint trained
            with ``tools/train_cls.py`` and are only used when passed with ``--config``.)

    Raises:
        ConfigError: unknown alias, or no such recipe is shipped for it.
    """
    check_choice("detector", detector, tuple(DETECTORS))
    path = CONFIG_DIR / f"{detector}_{'ghostnet100_coco_1x' if real_data else 'ghostnet_synthetic'}.yaml"
    if not path.is_file():
        data = "COCO" if real_data else "synthetic"
        raise ConfigError(f"no {data} recipe for --detector {detector} ({path.name}): pass --config FILE")
    return path
