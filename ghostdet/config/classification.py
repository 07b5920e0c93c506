"""Classification training configuration: YAML recipe -> typed :class:`ClsConfig` -> flags.

The same machinery as the detection recipes (:mod:`ghostdet.config`): a flat YAML mapping whose
keys are the fields of :class:`ClsConfig`; unknown keys are errors naming the key;
``tools/train_cls.py`` applies only the flags that were passed, then ``--set KEY=VALUE``; the
resolved config is saved as ``config.yaml`` and inside every checkpoint.

Example::

    cfg = load_cls_config("configs/cls_resnet56_cifar10.yaml", {"data_path": "data/cifar", "epochs": 1})
    ghostdet.engine.train_cls.train_classifier(cfg)
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from os import PathLike
from typing import Any, Optional

from ghostdet.config.detection import _DEVICE, _SANE, MAX_IMAGE_SIDE, MAX_SEED
from ghostdet.config.recipe import (
    OPTIMIZERS,
    SCHEDULERS,
    add_run_args,
    add_solver_args,
    check_value,
    load_config,
    none_or_str,
    setting,
)

__all__ = ["DATASETS", "TRAIN_CLS_FLAGS", "ClsConfig", "add_train_cls_args", "load_cls_config"]

#: ``--dataset`` choices.
DATASETS = ("imagefolder", "cifar10", "cifar100")


@dataclass
class ClsConfig:
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
        workers: DataLoader worker processes per training process.

    Solver (as in :class:`ghostdet.config.TrainConfig`; the lr schedule is per iteration):
        epochs, batch_size (PER PROCESS), lr (for the effective batch), opt, momentum,
        weight_decay (not on norms/biases), lr_scheduler (``cosine`` or ``multistep``), lr_steps,
        lr_gamma, min_lr_ratio, warmup_iters, warmup_factor, clip_grad_norm.

    Runtime:
        device, amp, channels_last, output_dir, resume (a file, a run folder or ``auto``), exist_ok
            (reuse an ``output_dir`` that holds another run), seed,
        print_freq, threads: as in :class:`ghostdet.config.TrainConfig`.
    """

    # model (each field's range is declared beside it, see ghostdet.config.recipe.setting)
    model: str = setting("ghostnet", pattern=r".+", what="a model name")
    width: float = setting(1.0, gt=0)
    dropout: float = setting(0.2, ge=0, lt=1)
    weights: Optional[str] = None
    ghostify: bool = False
    ratio: int = setting(2, ge=2)
    dw_size: int = setting(3, ge=1, odd=True)
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    # data
    dataset: str = setting("imagefolder", choices=DATASETS)
    data_path: Optional[str] = None
    download: bool = False
    image_size: int = setting(224, ge=1, le=MAX_IMAGE_SIDE, why=_SANE)
    label_smoothing: float = setting(0.0, ge=0, lt=1)
    workers: int = setting(2, ge=0)
    # solver
    epochs: int = setting(200, ge=1)
    batch_size: int = setting(128, ge=1)
    lr: float = setting(0.1, gt=0)
    opt: str = setting("sgd", choices=OPTIMIZERS)
    momentum: float = setting(0.9, ge=0, lt=1)
    weight_decay: float = setting(5e-4, ge=0)
    lr_scheduler: str = setting("cosine", choices=SCHEDULERS)
    lr_steps: list[int] = setting(default_factory=list, ge=1)  # noqa: RUF009 (a field())
    lr_gamma: float = setting(0.1, ge=0, le=1)
    min_lr_ratio: float = setting(0.0, ge=0, le=1)
    warmup_iters: int = setting(0, ge=0)
    warmup_factor: float = setting(0.001, ge=0, le=1)
    clip_grad_norm: Optional[float] = setting(None, gt=0)
    # runtime
    device: str = setting("auto", **_DEVICE)
    amp: bool = False
    channels_last: bool = False
    output_dir: str = "runs/train_cls"
    resume: Optional[str] = None
    exist_ok: bool = False
    seed: int = setting(0, ge=0, le=MAX_SEED)
    print_freq: int = setting(50, ge=1)
    threads: Optional[int] = setting(None, ge=1)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML/JSON/``torch.load(weights_only=True)`` safe)."""
        return dataclasses.asdict(self)

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
        FileNotFoundError: ``path`` does not exist.
        ConfigError: bad YAML, unknown key, wrong type or invalid value.
    """
    return load_config(path, overrides, cls=ClsConfig)


#: ``tools/train_cls.py`` flag dest -> config key (only flags that were passed are applied).
TRAIN_CLS_FLAGS: dict[str, str] = {
    k: k
    for k in (
        "data_path", "dataset", "download", "model", "ghostify", "ratio", "dw_size", "width", "weights",
        "epochs", "batch_size", "lr", "opt", "lr_scheduler", "warmup_iters", "image_size", "label_smoothing",
        "output_dir", "resume", "exist_ok", "seed", "amp", "channels_last", "workers", "device", "threads",
        "print_freq",
    )
}  # fmt: skip


def add_train_cls_args(p: argparse.ArgumentParser, ghost_flags: bool = True) -> None:
    """Add ``tools/train_cls.py``'s flags (see :data:`TRAIN_CLS_FLAGS`) to a parser built with
    ``argument_default=argparse.SUPPRESS``, so that only passed flags override the recipe.

    Args:
        p: the parser.
        ghost_flags: include ``--ghostify``/``--ratio``/``--dw-size`` (the ablation sets them per cell).
    """
    p.add_argument("--config", help="YAML recipe (see configs/cls_*.yaml); flags below override its keys")
    p.add_argument(
        "--set", dest="set_", metavar="KEY=VALUE", action="append",
        help="override any config key, VALUE parsed as YAML (e.g. --set dropout=0.1); repeatable",
    )  # fmt: skip
    d = p.add_argument_group("data")
    d.add_argument("--data-path", help="imagefolder: root with train/ and val/; cifar: torchvision's root")
    d.add_argument("--dataset", choices=DATASETS, help="data format (default imagefolder)")
    d.add_argument(
        "--download",
        action=argparse.BooleanOptionalAction,
        help="cifar: download into --data-path if missing",
    )
    d.add_argument("--image-size", type=int, help="training crop / evaluation size (ImageNet 224, CIFAR 32)")
    d.add_argument("--workers", type=int, help="DataLoader worker processes per training process")
    m = p.add_argument_group("model")
    m.add_argument("--model", help="ghostnet (with --width), resnet56_cifar, vgg16_cifar, mobilenet_v2, ...")
    m.add_argument("--width", type=float, help="GhostNet width multiplier")
    m.add_argument(
        "--weights", type=none_or_str, help="GhostNet initial weights: imagenet, a URL, a file or none"
    )
    if ghost_flags:
        m.add_argument(
            "--ghostify", action=argparse.BooleanOptionalAction,
            help="replace every plain conv with a Ghost module (Ghost-VGG-16, Ghost-ResNet-56)",
        )  # fmt: skip
        m.add_argument("--ratio", type=int, help="Ghost modules' s (with --ghostify)")
        m.add_argument(
            "--dw-size", type=int, help="Ghost modules' d, the cheap depthwise kernel (with --ghostify)"
        )
    s = p.add_argument_group("solver")
    add_solver_args(s)
    s.add_argument("--label-smoothing", type=float, help="cross-entropy label smoothing (e.g. 0.1)")
    add_run_args(p.add_argument_group("run"))
