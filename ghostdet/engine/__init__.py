"""Training engine: :func:`train` runs a job from a :class:`ghostdet.config.TrainConfig`."""

from ghostdet.distributed import DistInfo, init_distributed
from ghostdet.engine.checkpoint import atomic_save, load_checkpoint, resolve_resume_path
from ghostdet.engine.signals import Terminated
from ghostdet.engine.train import (
    LRSchedule,
    NonFiniteLossError,
    build_datasets,
    build_model,
    build_optimizer,
    evaluate,
    train,
    train_one_epoch,
)

__all__ = [
    "DistInfo",
    "LRSchedule",
    "NonFiniteLossError",
    "Terminated",
    "atomic_save",
    "build_datasets",
    "build_model",
    "build_optimizer",
    "evaluate",
    "init_distributed",
    "load_checkpoint",
    "resolve_resume_path",
    "train",
    "train_one_epoch",
]
