"""Checking the arguments of the model builders: one call at the top of each builder.

:func:`check_builder_args` refuses nonsense (a width of 0, ``num_classes=0``, a string where a
number belongs, ``trainable_backbone_layers=9``) with one ``ValueError`` that names the builder,
the argument, what it must be and what it got, before anything is built. Arguments left at
``None`` ("the default") are not checked.
"""

from __future__ import annotations

import math
from os import PathLike
from typing import Any

from ghostdet.errors import ArgumentError

__all__ = ["check_builder_args"]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# argument name -> (test, what it must be)
_RULES: dict[str, tuple[Any, str]] = {
    "width": (lambda v: _is_number(v) and v > 0, "a finite number > 0"),
    "num_classes": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "fpn_channels": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "out_channels": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "dropout": (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "progress": (lambda v: isinstance(v, bool), "True or False"),
    "weights": (lambda v: isinstance(v, (str, PathLike)), "'imagenet', a URL or a file path"),
    "weights_backbone": (lambda v: isinstance(v, (str, PathLike)), "'imagenet', a URL or a file path"),
}
_STAGE_ARGS = ("trainable_layers", "trainable_backbone_layers")


def check_builder_args(builder: str, num_stages: int | None = None, **values: Any) -> None:
    """Raise one clear ``ValueError`` for the first argument of ``values`` that makes no sense.

    Args:
        builder: the builder's name, for the message.
        num_stages: the trunk's stage count: ``trainable_layers`` / ``trainable_backbone_layers``
            must lie in ``[0, num_stages]`` (without it: only ``>= 0``).
        **values: the builder's arguments by name; ``None`` values and names without a rule
            are skipped.

    Raises:
        ValueError: ``"<builder>: <name> must be <rule>, got <value>"``.
    """
    for name, value in values.items():
        if value is None:
            continue
        if name in _STAGE_ARGS:
            hi = num_stages if num_stages is not None else math.inf
            ok, rule = _is_int(value) and 0 <= value <= hi, f"an integer in [0, {num_stages}]"
            if num_stages is None:
                rule = "an integer >= 0"
        elif name in _RULES:
            test, rule = _RULES[name]
            ok = test(value)
        else:
            continue
        if not ok:
            raise ArgumentError(f"{builder}: {name} must be {rule}, got {value!r}", argument=name)
