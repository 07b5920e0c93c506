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
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from os import PathLike
from typing import Any, Optional

from ghostdet.recipe import (
    OPTIMIZERS,
    SCHEDULERS,
    add_run_args,
    add_solver_args,
    check_choice,
    check_value,
    load_config,
    none_or_str,
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
        device, amp, channels_last, output_dir, resume (a file, a run folder or ``auto``), seed,
        print_freq, threads: as in :class:`ghostdet.config.TrainConfig`.
    """

    # model
    model: str = "ghostnet"
    width: float = 1.0
    dropout: float = 0.2
    weights: Optional[str] = None
    ghostify: bool = False
    ratio: int = 2
    dw_size: int = 3
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    # data
    dataset: str = "imagefolder"
    data_path: Optional[str] = None
    download: bool = False
    image_size: int = 224
    label_smoothing: float = 0.0
    workers: int = 2
    # solver
    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.1
    opt: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_scheduler: str = "cosine"
    lr_steps: list[int] = field(default_factory=list)
    lr_gamma: float = 0.1
    min_lr_ratio: float = 0.0
    warmup_iters: int = 0
    warmup_factor: float = 0.001
    clip_grad_norm: Optional[float] = None
    # runtime
    device: str = "auto"
    amp: bool = False
    channels_last: bool = False
    output_dir: str = "runs/train_cls"
    resume: Optional[str] = None
    seed: int = 0
    print_freq: int = 50
    threads: Optional[int] = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML/JSON/``torch.load(weights_only=True)`` safe)."""
        return dataclasses.asdict(self)

    def validate(self) -> ClsConfig:
        """Check choices and ranges; raises :class:`ConfigError` naming the key. Returns self."""
        check_choice("dataset", self.dataset, DATASETS)
        check_choice("opt", self.opt, OPTIMIZERS)
        check_choice("lr_scheduler", self.lr_scheduler, SCHEDULERS)
        check_value("model", bool(self.model), "must not be empty")
        for key in ("width", "lr"):
            check_value(key, getattr(self, key) > 0, "must be > 0")
        for key in ("epochs", "batch_size", "print_freq", "image_size"):
            check_value(key, getattr(self, key) >= 1, "must be >= 1")
        for key in ("workers", "warmup_iters"):
            check_value(key, getattr(self, key) >= 0, "must be >= 0")
        for key in ("momentum", "weight_decay", "lr_gamma", "min_lr_ratio", "warmup_factor"):
            check_value(key, math.isfinite(getattr(self, key)) and getattr(self, key) >= 0, "must be >= 0")
        check_value("dropout", 0 <= self.dropout < 1, "must be in [0, 1)")
        check_value("label_smoothing", 0 <= self.label_smoothing < 1, "must be in [0, 1)")
        check_value("ratio", self.ratio >= 2, "must be >= 2")
        check_value("dw_size", self.dw_size >= 1 and self.dw_size % 2 == 1, "must be an odd integer >= 1")
        check_value("threads", self.threads is None or self.threads >= 1, "must be >= 1")
        if self.clip_grad_norm is not None:
            check_value("clip_grad_norm", self.clip_grad_norm > 0, "must be > 0")
        check_value("lr_steps", list(self.lr_steps) == sorted(self.lr_steps), "must be increasing")
        check_value("device", bool(self.device), "must not be empty")
        reserved = {"num_classes", "width", "weights", "dropout"}
        bad = sorted(reserved & set(self.model_kwargs))
        check_value("model_kwargs", not bad, f"must not set {', '.join(bad)} (use the top-level keys)")
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
        "output_dir", "resume", "seed", "amp", "channels_last", "workers", "device", "threads", "print_freq",
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
