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
from collections.abc import Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Optional

from ghostdet import recipe
from ghostdet.models.family import list_families
from ghostdet.models.registry import detector_aliases, family_variant
from ghostdet.recipe import OPTIMIZERS, SCHEDULERS, ConfigError, check_choice, check_value

__all__ = [
    "CONFIG_DIR",
    "DETECTORS",
    "ConfigError",
    "SyntheticConfig",
    "TrainConfig",
    "config_from_dict",
    "default_config_path",
    "load_config",
]

#: The recipes shipped with the repository.
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"

#: ``--detector`` choices -> torchvision-style builder names: the detector aliases of the registry.
DETECTORS: dict[str, str] = detector_aliases()


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
    num_train: int = 480
    num_val: int = 80
    image_size: int = 192
    seed: int = 0
    num_categories: Optional[int] = None
    object_size: Optional[list[int]] = None
    max_objects: Optional[int] = None
    empty_prob: Optional[float] = None
    max_overlap_iou: Optional[float] = None
    jpeg_quality: Optional[int] = None

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
        eval_every: evaluate every N epochs (the last epoch is always evaluated; 0: only the last).
        seed: random seed (runs on CPU are reproducible).
        print_freq: iterations between log lines (when stdout is not a terminal) and
            TensorBoard loss points.
        threads: torch intra-op threads per process (``None``: torch's default).
        vis_images: validation images drawn with their predicted boxes into TensorBoard.
        vis_score_thresh: score threshold of the drawn boxes.
    """

    # model
    detector: str = "retinanet"
    backbone: str = "ghostnet"
    width: float = 1.0
    weights_backbone: Optional[str] = None
    trainable_backbone_layers: Optional[int] = None
    min_size: Optional[int] = None
    max_size: Optional[int] = None
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
    aspect_ratio_group_factor: int = 3
    workers: int = 2
    # solver
    epochs: int = 12
    batch_size: int = 2
    lr: float = 0.02
    opt: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_scheduler: str = "multistep"
    lr_steps: list[int] = field(default_factory=lambda: [8, 11])
    lr_gamma: float = 0.1
    min_lr_ratio: float = 0.0
    warmup_iters: int = 1000
    warmup_factor: float = 0.001
    clip_grad_norm: Optional[float] = None
    # runtime
    device: str = "auto"
    amp: bool = False
    channels_last: bool = False
    output_dir: str = "runs/train"
    resume: Optional[str] = None
    eval_every: int = 1
    seed: int = 0
    print_freq: int = 20
    threads: Optional[int] = None
    vis_images: int = 4
    vis_score_thresh: float = 0.3

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
        """Check choices and ranges; raises :class:`ConfigError` naming the key. Returns self."""
        check_choice("detector", self.detector, tuple(DETECTORS))
        check_choice("backbone", self.backbone, tuple(list_families()))
        try:
            self.builder  # noqa: B018 (a family without this detector)
        except ValueError as e:
            raise ConfigError(f"backbone: {e}") from None
        check_choice("opt", self.opt, OPTIMIZERS)
        check_choice("lr_scheduler", self.lr_scheduler, SCHEDULERS)
        for key in ("width", "lr"):
            check_value(key, getattr(self, key) > 0, "must be > 0")
        for key in ("epochs", "batch_size", "print_freq"):
            check_value(key, getattr(self, key) >= 1, "must be >= 1")
        for key in ("workers", "warmup_iters", "eval_every", "vis_images", "aspect_ratio_group_factor"):
            check_value(key, getattr(self, key) >= 0, "must be >= 0")
        for key in ("momentum", "weight_decay", "lr_gamma", "min_lr_ratio", "warmup_factor"):
            check_value(key, math.isfinite(getattr(self, key)) and getattr(self, key) >= 0, "must be >= 0")
        check_value("warmup_factor", self.warmup_factor <= 1, "must be in [0, 1]")
        if self.trainable_backbone_layers is not None:
            check_value(
                "trainable_backbone_layers", 0 <= self.trainable_backbone_layers <= 5, "must be in 0..5"
            )
        for key in ("min_size", "max_size", "threads"):
            v = getattr(self, key)
            check_value(key, v is None or v >= 1, "must be >= 1")
        if self.clip_grad_norm is not None:
            check_value("clip_grad_norm", self.clip_grad_norm > 0, "must be > 0")
        check_value("lr_steps", list(self.lr_steps) == sorted(self.lr_steps), "must be increasing")
        check_value("device", bool(self.device), "must not be empty")
        reserved = {"weights", "num_classes", "width", "weights_backbone", "trainable_backbone_layers"}
        reserved.add("backbone")
        bad = sorted(reserved & set(self.model_kwargs))
        check_value("model_kwargs", not bad, f"must not set {', '.join(bad)} (use the top-level keys)")
        from ghostdet.data import AugConfig

        try:
            AugConfig.from_dict(self.augment)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"augment: {e}") from None
        return self


def config_from_dict(
    data: Mapping[str, Any] | None, overrides: Mapping[str, Any] | None = None, source: str = ""
) -> TrainConfig:
    """A validated :class:`TrainConfig` from a plain mapping plus overrides
    (:func:`ghostdet.recipe.config_from_dict`).

    Raises:
        ConfigError: unknown key, wrong type or invalid value (the message names the key).
    """
    return recipe.config_from_dict(data, overrides, source, cls=TrainConfig)


def load_config(path: str | PathLike | None, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Load a detection recipe (YAML; ``None``: the defaults), apply ``overrides`` and validate
    (:func:`ghostdet.recipe.load_config`).

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
