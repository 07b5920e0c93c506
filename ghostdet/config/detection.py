"""Training configuration: YAML recipe -> typed :class:`TrainConfig` -> command-line overrides.

A recipe is a flat YAML mapping whose keys are the fields of :class:`TrainConfig`, plus two
nested mappings: ``synthetic`` (fields of :class:`SyntheticConfig`, the embedded default data)
and ``augment`` (fields of :class:`ghostdet.data.AugConfig`). Keys left out keep their defaults;
an unknown key is an error that names it. ``tools/train_det.py`` loads the recipe, then applies
only the flags the user actually passed, and the trainer saves the resolved result as
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
from dataclasses import dataclass, field
from importlib.resources import files
from os import PathLike
from pathlib import Path
from typing import Any, Optional

from ghostdet.config import recipe
from ghostdet.config.recipe import OPTIMIZERS, SCHEDULERS, ConfigError, check_choice, check_value, setting
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

#: Largest random seed (torch takes 64-bit seeds; beyond this a seed is an overflow).
MAX_SEED = 2**63 - 1

#: The devices a recipe may name (whether CUDA is there is checked when the run starts).
DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?"
_DEVICE = {"pattern": DEVICE_PATTERN, "what": "auto, cpu, cuda or cuda:N"}
_SANE = "the maximum is a sane limit"


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

    root: str = "data/synthetic"
    num_train: int = 480  # (>= 1: the generator's own check says why, before anything is written)
    num_val: int = 80
    image_size: int = setting(192, ge=32, le=MAX_SYNTHETIC_IMAGE_SIZE, why=_SANE)
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
class TrainConfig:
    """Everything a training run depends on (one flat recipe; see the module docstring).

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
        max_size: cap of the longer side (``None``: builder default).
        model_kwargs: more builder keyword arguments with plain values (e.g. ``score_thresh``,
            ``detections_per_img``, ``box_detections_per_img``, ``fg_iou_thresh``).

    Data:
        data_path: COCO 2017 root (train2017/, val2017/, annotations/) or a synthetic-layout root.
        train_images, train_ann, val_images, val_ann: explicit COCO-format paths (override
            ``data_path``). With none of the data fields set, the synthetic dataset is used.
        synthetic: the embedded dataset (:class:`SyntheticConfig`).
        drop_empty: drop train images without boxes.
        strict_data: invalid annotation/image entries are an error instead of being skipped and
            counted (crowd and tiny boxes are normal COCO content and never an error; see
            :mod:`ghostdet.data.validation`).
        augment: training augmentation, fields of :class:`ghostdet.data.AugConfig`.
        aspect_ratio_group_factor: aspect-ratio groups per side of 1 for batching (0: no grouping).
        workers: DataLoader worker processes per training process.

    Solver:
        epochs: training epochs.
        batch_size: images per iteration PER PROCESS (the effective batch is
            ``batch_size * world_size``; ``lr`` is meant for the effective batch).
        lr: peak learning rate.
        opt: ``sgd`` (momentum, weight decay) or ``adamw``.
        momentum: SGD momentum.
        weight_decay: weight decay (not applied to norm layers and biases).
        lr_scheduler: ``multistep`` (x ``lr_gamma`` after each epoch in ``lr_steps``) or
            ``cosine`` (to ``lr * min_lr_ratio`` at the end); both per iteration.
        lr_steps: epochs after which the multistep schedule decays.
        lr_gamma: multistep decay factor.
        min_lr_ratio: final lr / lr of the cosine schedule.
        warmup_iters: linear warm-up iterations (0: none).
        warmup_factor: lr factor at iteration 0 of the warm-up.
        clip_grad_norm: clip the gradient norm to this value (``None``: no clipping).

    Runtime:
        device: ``auto`` (cuda if available), ``cpu``, ``cuda``, ``cuda:N``.
        amp: mixed precision: float16 autocast + GradScaler on CUDA, bfloat16 autocast on CPU.
        channels_last: keep the model's weights and activations in the channels_last memory
            format (faster convolutions, depthwise ones above all, in training on CPU and with AMP
            on CUDA).
        output_dir: where checkpoints, metrics, config and TensorBoard events go.
        resume: checkpoint to resume from, or ``auto`` (OUTPUT_DIR/checkpoint.pth if present).
        exist_ok: write a fresh run into an ``output_dir`` that holds another run (its results are
            removed first); by default such a run takes the next free name (``runs/x2``).
        eval_every: evaluate every N epochs (the last epoch is always evaluated; 0: only the last).
        seed: random seed (runs on CPU are reproducible).
        print_freq: iterations between log lines (when stdout is not a terminal) and
            TensorBoard loss points.
        threads: torch intra-op threads per process (``None``: torch's default).
        vis_images: validation images drawn with their predicted boxes into TensorBoard.
        vis_score_thresh: score threshold of the drawn boxes.
    """

    # model (each field's range is declared beside it, see ghostdet.config.recipe.setting)
    detector: str = setting("retinanet", choices=lambda: tuple(DETECTORS))
    backbone: str = setting("ghostnet", choices=list_families)
    width: float = setting(1.0, gt=0)
    weights_backbone: Optional[str] = None
    trainable_backbone_layers: Optional[int] = setting(None, ge=0, le=5)
    min_size: Optional[int] = setting(None, ge=1, le=MAX_IMAGE_SIDE, why=_SANE)
    max_size: Optional[int] = setting(None, ge=1, le=MAX_IMAGE_SIDE, why=_SANE)
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    # data
    data_path: Optional[str] = None
    train_images: Optional[str] = None
    train_ann: Optional[str] = None
    val_images: Optional[str] = None
    val_ann: Optional[str] = None
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    drop_empty: bool = False
    strict_data: bool = False
    augment: dict[str, Any] = field(default_factory=dict)
    aspect_ratio_group_factor: int = setting(3, ge=0)
    workers: int = setting(2, ge=0)
    # solver
    epochs: int = setting(12, ge=1)
    batch_size: int = setting(2, ge=1)
    lr: float = setting(0.02, gt=0)
    opt: str = setting("sgd", choices=OPTIMIZERS)
    momentum: float = setting(0.9, ge=0, lt=1)
    weight_decay: float = setting(1e-4, ge=0)
    lr_scheduler: str = setting("multistep", choices=SCHEDULERS)
    lr_steps: list[int] = setting(default_factory=lambda: [8, 11], ge=1)  # noqa: RUF009 (a field())
    lr_gamma: float = setting(0.1, ge=0, le=1)
    min_lr_ratio: float = setting(0.0, ge=0, le=1)
    warmup_iters: int = setting(1000, ge=0)
    warmup_factor: float = setting(0.001, ge=0, le=1)
    clip_grad_norm: Optional[float] = setting(None, gt=0)
    # runtime
    device: str = setting("auto", **_DEVICE)
    amp: bool = False
    channels_last: bool = False
    output_dir: str = "runs/train"
    resume: Optional[str] = None
    exist_ok: bool = False
    eval_every: int = setting(1, ge=0)
    seed: int = setting(0, ge=0, le=MAX_SEED)
    print_freq: int = setting(20, ge=1)
    threads: Optional[int] = setting(None, ge=1)
    vis_images: int = setting(4, ge=0)
    vis_score_thresh: float = setting(0.3, ge=0, le=1)

    @property
    def builder(self) -> str:
        """Builder name in :mod:`ghostdet.models` of ``detector`` on ``backbone``."""
        return family_variant(DETECTORS[self.detector], self.backbone)

    def uses_synthetic(self) -> bool:
        """True when no data path is configured (the embedded synthetic data is used)."""
        return all(
            getattr(self, k) is None
            for k in ("data_path", "train_images", "train_ann", "val_images", "val_ann")
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON/``torch.load(weights_only=True)`` safe)."""
        return dataclasses.asdict(self)

    def validate(self) -> TrainConfig:
        """Check what the fields' declared ranges (:func:`ghostdet.config.recipe.check_fields`, applied
        before this) cannot: the keys across fields, ``augment`` and ``model_kwargs`` against
        what they configure. Raises :class:`ConfigError` naming the key. Returns self."""
        try:
            self.builder  # noqa: B018 (a family without this detector)
        except ValueError as e:
            raise ConfigError(f"backbone: {e}", key="backbone") from None
        check_value("lr_steps", list(self.lr_steps) == sorted(self.lr_steps), "must be increasing")
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
            raise ConfigError(
                f"augment.{name}: unknown augmentation option ({hint}known: {', '.join(known)})",
                key=f"augment.{name}",
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
            raise ConfigError(f"{key}: expected a list of finite numbers, got {value!r}", key=key)
    try:
        AugConfig.from_dict(dict(augment))
    except (TypeError, ValueError) as e:
        named = re.search(r"AugConfig\.(\w+)", str(e))
        key = f"augment.{named[1]}" if named else "augment"
        raise ConfigError(
            f"{key}: {str(e).replace(f'AugConfig.{named[1]} ' if named else '', '')}", key=key
        ) from None


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
        FileNotFoundError: ``path`` does not exist.
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
