"""Configuration: the typed dataclasses of training runs, and the recipes that fill them.

One mechanism for every tool: a YAML recipe (:mod:`~ghostdet.config.recipe`), read into a typed
dataclass whose fields declare their ranges, then flags, then ``--set KEY=VALUE``.

- :mod:`~ghostdet.config.recipe` - the machinery: declared fields, YAML loading, overrides.
- :mod:`~ghostdet.config.base` - :class:`BaseTrainConfig`, the solver and run fields both share.
- :mod:`~ghostdet.config.detection` - :class:`TrainConfig` (``ghostdet train``).
- :mod:`~ghostdet.config.classification` - :class:`ClsConfig` (``ghostdet train-cls``).
- :mod:`~ghostdet.config.model_kwargs` - ``model_kwargs`` checked against the builders.
- ``recipes/`` - the shipped YAML recipes (:data:`CONFIG_DIR`).
"""

from ghostdet.config.base import BaseTrainConfig
from ghostdet.config.classification import ClsConfig, load_cls_config
from ghostdet.config.detection import (
    CONFIG_DIR,
    DETECTORS,
    SyntheticConfig,
    TrainConfig,
    default_config_path,
    load_config,
)
from ghostdet.config.recipe import ConfigError, save_config

__all__ = [
    "CONFIG_DIR",
    "DETECTORS",
    "BaseTrainConfig",
    "ClsConfig",
    "ConfigError",
    "SyntheticConfig",
    "TrainConfig",
    "default_config_path",
    "load_cls_config",
    "load_config",
    "save_config",
]
