"""Training engine: :func:`train` runs a detection job from a :class:`ghostdet.config.TrainConfig`,
:func:`train_classifier` a classification job from a :class:`ghostdet.config.classification.ClsConfig`."""

from ghostdet.engine.checkpoint import atomic_save, load_checkpoint, resolve_resume_path
from ghostdet.engine.detection_data import build_datasets
from ghostdet.engine.run import NonFiniteLossError
from ghostdet.engine.signals import Terminated
from ghostdet.engine.solver import LRSchedule, build_optimizer
from ghostdet.engine.train import build_model, evaluate, train, train_one_epoch
from ghostdet.engine.train_cls import train_classifier
from ghostdet.utils.distributed import DistInfo, init_distributed

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
    "train_classifier",
    "train_one_epoch",
]
