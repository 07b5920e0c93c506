"""Typed training recipes: a config dataclass from YAML, a mapping, and command-line flags.

Both training configs, :class:`ghostdet.config.TrainConfig` (detection) and
:class:`ghostdet.cls_config.ClsConfig` (classification), are dataclasses read through here: a
recipe is a YAML mapping of their fields, every value is checked against the field's annotation
(:func:`config_from_dict`), an unknown key is a :class:`ConfigError` that names it, and a tool's
flags override only the keys the user passed (:func:`overrides_from_args`, ``--set KEY=VALUE``).
The solver and run flags the two training tools share are defined once (:func:`add_solver_args`,
:func:`add_run_args`).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any, Union

import yaml

__all__ = [
    "OPTIMIZERS",
    "SCHEDULERS",
    "ConfigError",
    "add_run_args",
    "add_solver_args",
    "check_choice",
    "check_config_key",
    "check_value",
    "config_from_dict",
    "load_config",
    "none_or_str",
    "overrides_from_args",
    "save_config",
]

OPTIMIZERS = ("sgd", "adamw")

SCHEDULERS = ("multistep", "cosine")


class ConfigError(ValueError):
    """A recipe or override is invalid (unknown key, wrong type, value out of range)."""


def check_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    """Raise :class:`ConfigError` ``key: VALUE is not one of ...`` unless ``value`` is in ``choices``."""
    if value not in choices:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(choices)}")


def check_value(key: str, ok: bool, msg: str) -> None:
    """Raise :class:`ConfigError` ``key: msg`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{key}: {msg}")


def _is_optional(tp: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(tp)
    if origin is Union or (hasattr(types, "UnionType") and isinstance(tp, types.UnionType)):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return True, args[0]
    return False, tp


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check ``value`` against the annotation ``tp`` (ints are accepted for floats)."""
    optional, tp = _is_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{key}: must not be null")
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return _from_mapping(tp, value, prefix=f"{key}.")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, PathLike)):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(f"{key}[{i}]", v, item_tp) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    return value


def _from_mapping(cls: type, data: Mapping[str, Any], prefix: str = "", source: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    where = f" in {source}" if source else ""
    for key in data:
        if key not in names:
            raise ConfigError(
                f"unknown config key {(prefix + key)!r}{where} (known keys: {', '.join(names)})"
            )
    kwargs = {k: _coerce(f"{prefix}{k}", v, hints[k]) for k, v in data.items()}
    return cls(**kwargs)


def check_config_key(key: str, cls: Any) -> None:
    """Raise :class:`ConfigError` when ``key`` (``epochs``, ``synthetic.root``) names no config field.

    Keys below the mapping fields (``augment.*``, ``model_kwargs.*``) are checked where they are
    used.

    Args:
        key: dotted config key.
        cls: the config dataclass.
    """
    prefix = ""
    for part in key.split("."):
        if not dataclasses.is_dataclass(cls):
            return
        names = [f.name for f in dataclasses.fields(cls)]
        if part not in names:
            raise ConfigError(f"unknown config key {(prefix + part)!r} (known keys: {', '.join(names)})")
        cls = typing.get_type_hints(cls)[part]
        prefix += part + "."


def config_from_dict(
    data: Mapping[str, Any] | None,
    overrides: Mapping[str, Any] | None = None,
    source: str = "",
    *,
    cls: type,
) -> Any:
    """Build and validate a config dataclass ``cls`` from a plain mapping plus overrides.

    Args:
        data: recipe mapping (e.g. parsed YAML); ``None`` gives the defaults.
        overrides: top-level keys replacing the recipe's; ``synthetic``/``augment`` may be given
            as mappings (merged into the recipe's) and ``"synthetic.root"``-style dotted keys
            set one nested field.
        source: file name used in error messages.
        cls: the config dataclass (with a ``validate()`` method):
            :class:`ghostdet.config.TrainConfig` or :class:`ghostdet.cls_config.ClsConfig`.

    Raises:
        ConfigError: unknown key, wrong type or invalid value (the message names the key).
    """
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"the config{' ' + source if source else ''} must be a YAML mapping of keys")
    merged: dict[str, Any] = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in (data or {}).items()}
    for key, value in (overrides or {}).items():
        if "." in key:
            head, sub = key.split(".", 1)
            merged.setdefault(head, {})
            if not isinstance(merged[head], dict):
                raise ConfigError(f"{head}: expected a mapping")
            merged[head][sub] = value
        elif key in ("synthetic", "augment", "model_kwargs") and isinstance(value, Mapping):
            merged[key] = {**merged.get(key, {}), **value}
        else:
            merged[key] = value
    cfg = _from_mapping(cls, merged, source=source)
    return cfg.validate()


def load_config(path: str | PathLike | None, overrides: Mapping[str, Any] | None = None, *, cls: type) -> Any:
    """Load a YAML recipe, apply ``overrides`` and validate.

    Args:
        path: YAML file (``None``: the built-in defaults).
        overrides: see :func:`config_from_dict`.
        cls: the config dataclass, see :func:`config_from_dict`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ConfigError: bad YAML, unknown key, wrong type or invalid value.
    """
    data = None
    source = ""
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"config file not found: {p}")
        source = str(p)
        try:
            data = yaml.safe_load(p.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"{p} is not valid YAML: {' '.join(str(e).split())}") from None
    return config_from_dict(data, overrides, source=source, cls=cls)


def overrides_from_args(given: Mapping[str, Any], keys: Mapping[str, str], cls: Any) -> dict[str, Any]:
    """Config overrides of a tool's parsed flags: the flags actually passed, then ``--set``.

    Args:
        given: ``vars(args)`` of a parser built with ``argument_default=SUPPRESS`` (a flag that
            was not passed is absent); ``--set KEY=VALUE`` items are under ``"set_"``.
        keys: flag dest -> config key (dotted for nested keys).
        cls: the config dataclass whose keys ``--set`` may name.

    Raises:
        ConfigError: a ``--set`` item that is not ``KEY=VALUE``, names no config key or whose
            value is not YAML; the message leads with ``--set ITEM``.
    """
    overrides = {key: given[dest] for dest, key in keys.items() if dest in given}
    for item in given.get("set_", []):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            check_config_key(key, cls)
            overrides[key] = yaml.safe_load(value)
        except ConfigError as e:
            raise ConfigError(f"--set {item}: {e}") from None
        except yaml.YAMLError:
            raise ConfigError(f"--set {key}: cannot parse {value!r} as YAML") from None
    return overrides


def none_or_str(value: str) -> str | None:
    """argparse type: ``none``/``null``/empty -> ``None``, anything else unchanged."""
    return None if value.lower() in ("none", "null", "") else value


def add_solver_args(group: Any) -> None:
    """The solver flags both training tools share (``--epochs`` ... ``--warmup-iters``)."""
    group.add_argument("--epochs", type=int, help="training epochs")
    group.add_argument("--batch-size", type=int, help="images per iteration per process")
    group.add_argument("--lr", type=float, help="peak learning rate (for batch-size x processes)")
    group.add_argument("--opt", choices=list(OPTIMIZERS), help="optimizer")
    group.add_argument("--lr-scheduler", choices=list(SCHEDULERS), help="per-iteration lr schedule")
    group.add_argument("--warmup-iters", type=int, help="linear warm-up iterations")


def add_run_args(group: Any) -> None:
    """The runtime flags both training tools share (``--amp`` ... ``--print-freq``)."""
    group.add_argument(
        "--amp", action=argparse.BooleanOptionalAction,
        help="mixed precision: float16 + GradScaler on CUDA, bfloat16 autocast on CPU",
    )  # fmt: skip
    group.add_argument(
        "--channels-last", action=argparse.BooleanOptionalAction,
        help="train in the channels_last memory format (faster convolutions on CPU and with CUDA AMP)",
    )  # fmt: skip
    group.add_argument("--device", help="auto (cuda if available), cpu, cuda or cuda:N")
    group.add_argument("--threads", type=int, help="torch CPU threads per process")
    group.add_argument("--output-dir", help="checkpoints, metrics.json, config.yaml, TensorBoard events")
    group.add_argument(
        "--resume", type=none_or_str,
        help="checkpoint to resume from, a run folder, or 'auto' (OUTPUT_DIR/checkpoint.pth if present)",
    )  # fmt: skip
    group.add_argument("--seed", type=int, help="random seed (CPU runs are reproducible)")
    group.add_argument("--print-freq", type=int, help="iterations between log lines / TensorBoard points")


def save_config(cfg: Any, path: str | PathLike) -> Path:
    """Write the resolved config (any config dataclass with ``to_dict``) as YAML (loadable with
    :func:`load_config`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=None))
    return path
