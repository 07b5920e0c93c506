"""Classification training configuration: YAML recipe -> typed :class:`ClsConfig` -> flags.

The same machinery as the detection recipes (:mod:`ghostdet.config`): a flat YAML mapping whose
keys are the fields of :class:`ClsConfig`; unknown keys are errors naming the key;
``ghostdet train-cls`` (``tools/train_cls.py``) applies only the flags that were passed, then
``--set KEY=VALUE``; the resolved config is saved as ``config.yaml`` and inside every checkpoint.
The solver and run fields are those of detection (:class:`ghostdet.config.base.BaseTrainConfig`)
with the defaults of classification.

Example::

    cfg = load_cls_config("configs/cls_resnet56_cifar10.yaml", {"data_path": "data/cifar", "epochs": 1})
    ghostdet.engine.train_cls.train_classifier(cfg)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from os import PathLike
from typing import Any, Optional

from ghostdet.config.base import _SANE, BaseTrainConfig
from ghostdet.config.detection import MAX_IMAGE_SIDE
from ghostdet.config.recipe import check_value, load_config, redefault, setting

__all__ = ["DATASETS", "ClsConfig", "load_cls_config"]

#: ``--dataset`` choices.
DATASETS = ("imagefolder", "cifar10", "cifar100")

_B = BaseTrainConfig


@dataclass
class ClsConfig(BaseTrainConfig):
    """Everything a classification run depends on.

    Model:
        model: ``ghostnet`` (with ``width``), a classifier of :func:`ghostdet.models.list_models`
            (e.g. ``resnet56_cifar``, ``vgg16_cifar``) or a torchvision baseline
            (``mobilenet_v2``, ``mobilenet_v3_large``, ``resnet50``).
        width: GhostNet width multiplier (only for ``model: ghostnet``).
        dropout: GhostNet dropout before the classifier (the paper: 0.2).
        weights: initial weights of a GhostNet (``imagenet``, URL, file; ``None``: random init).
        ghostify: convert the model's plain convolutions into Ghost modules before training.
        ratio: Ghost modules' ``s`` (with ``ghostify``).
        dw_size: Ghost modules' ``d`` (with ``ghostify``).
        model_kwargs: more builder keyword arguments with plain values.

    Data:
        dataset: ``imagefolder`` (``data_path`` holds ``train/`` and ``val/``), ``cifar10``,
            ``cifar100`` (torchvision's on-disk format under ``data_path``).
        data_path: dataset root.
        download: let torchvision download CIFAR into ``data_path`` when missing.
        image_size: training crop / evaluation size (ImageNet 224, CIFAR 32).
        label_smoothing: cross-entropy label smoothing.

    Solver and runtime: the fields of :class:`ghostdet.config.base.BaseTrainConfig` (``epochs``
    ... ``threads``, ``workers``), with these defaults: 200 epochs, batch size 128, the lr
    scaled from ``base_lr`` 0.04 per 256 images (0.02 for one process of 128), weight decay
    5e-4, the cosine schedule after a 30-step linear warm-up, ``output_dir``
    ``runs/train_cls``, ``print_freq`` 50.
    """

    # solver and run defaults of classification (the fields are BaseTrainConfig's)
    epochs: int = redefault(_B, "epochs", 200)
    batch_size: int = redefault(_B, "batch_size", 128)
    base_lr: float = redefault(_B, "base_lr", 0.04)
    weight_decay: float = redefault(_B, "weight_decay", 5e-4)
    lr_scheduler: str = redefault(_B, "lr_scheduler", "cosine")
    lr_steps: list[int] = redefault(_B, "lr_steps", default_factory=list)  # noqa: RUF009
    warmup_iters: int = redefault(_B, "warmup_iters", 30)
    output_dir: str = redefault(_B, "output_dir", "runs/train_cls")
    print_freq: int = redefault(_B, "print_freq", 50)
    # model (each field's range, help and section are declared beside it: ghostdet.config.recipe.setting)
    model: str = setting(
        "ghostnet", pattern=r".+", what="a model name", section="model",
        help="ghostnet (with --width), resnet56_cifar, vgg16_cifar, mobilenet_v2, ...",
    )  # fmt: skip
    width: float = setting(1.0, gt=0, help="GhostNet width multiplier", section="model")
    dropout: float = setting(0.2, ge=0, lt=1, section="model")
    weights: Optional[str] = setting(
        None, help="GhostNet initial weights: imagenet, a URL, a file or none", section="model"
    )
    ghostify: bool = setting(
        False, section="model",
        help="replace every plain conv with a Ghost module (Ghost-VGG-16, Ghost-ResNet-56)",
    )  # fmt: skip
    ratio: int = setting(2, ge=2, help="Ghost modules' s (with --ghostify)", section="model")
    dw_size: int = setting(
        3,
        ge=1,
        odd=True,
        help="Ghost modules' d, the cheap depthwise kernel (with --ghostify)",
        section="model",
    )
    model_kwargs: dict[str, Any] = setting(default_factory=dict, section="model")  # noqa: RUF009
    # data
    dataset: str = setting(
        "imagefolder", choices=DATASETS, help="data format (default imagefolder)", section="data"
    )
    data_path: Optional[str] = setting(
        None, help="imagefolder: root with train/ and val/; cifar: torchvision's root", section="data"
    )
    download: bool = setting(False, help="cifar: download into --data-path if missing", section="data")
    image_size: int = setting(
        224, ge=1, le=MAX_IMAGE_SIDE, why=_SANE, section="data",
        help="training crop / evaluation size (ImageNet 224, CIFAR 32)",
    )  # fmt: skip
    label_smoothing: float = setting(
        0.0, ge=0, lt=1, help="cross-entropy label smoothing (e.g. 0.1)", section="solver"
    )

    def validate(self) -> ClsConfig:
        """Check what the fields' declared ranges (:func:`ghostdet.config.recipe.check_fields`, applied
        before this) cannot: keys across fields and ``model_kwargs`` against the builder.
        Raises :class:`ConfigError` naming the key. Returns self."""
        check_value("lr_steps", list(self.lr_steps) == sorted(self.lr_steps), "must be increasing")
        reserved = {"num_classes", "width", "weights", "dropout"}
        bad = sorted(reserved & set(self.model_kwargs))
        check_value("model_kwargs", not bad, f"must not set {', '.join(bad)} (use the top-level keys)")
        if self.model_kwargs:
            from ghostdet.config.model_kwargs import check_model_kwargs
            from ghostdet.models.registry import model_entry

            try:
                builder: Any = model_entry(self.model).name
            except ValueError:  # a torchvision baseline (or an unknown name, refused when built)
                import torchvision

                builder = getattr(torchvision.models, self.model, None)
            if builder is not None:
                check_model_kwargs(builder, self.model_kwargs)
        return self


def load_cls_config(path: str | PathLike | None, overrides: Mapping[str, Any] | None = None) -> ClsConfig:
    """Load a classification recipe (``None``: the defaults), apply ``overrides`` and validate.

    Raises:
        InputError: ``path`` is not a file.
        ConfigError: bad YAML, unknown key, wrong type or invalid value.
    """
    return load_config(path, overrides, cls=ClsConfig)
