"""A training tool's flags, made from the fields of its config dataclass.

One mechanism for every training tool, as in detectron2: ``--config FILE``, then the flags, then
``--set KEY=VALUE``. Every field declared with a ``help`` (:func:`ghostdet.config.recipe.setting`)
is a flag ``--KEY-NAME`` (``synthetic.root`` -> ``--synthetic-root``; a field may name its flag
with ``flag=``) whose kind follows the field's type: a bool is ``--x/--no-x``, a list takes one or
more values, a field with choices offers them, an optional string takes ``none``. The parser is
built with ``argument_default=SUPPRESS``, so only the flags that were passed override the recipe,
and the error about a bad value names the flag that set it.
"""

from __future__ import annotations

import argparse
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from ghostdet.config.recipe import (
    SECTIONS,
    ConfigField,
    Overrides,
    config_fields,
    none_or_str,
    overrides_from_args,
)

__all__ = ["add_config_args", "config_overrides", "flag_fields", "flag_keys", "key_flags"]


def flag_fields(cls: type, exclude: Iterable[str] = ()) -> list[ConfigField]:
    """The fields of the config dataclass ``cls`` that are flags (declared with a ``help``).

    Args:
        cls: the config dataclass.
        exclude: keys left out (a tool that sets them itself).
    """
    exclude = set(exclude)
    return [f for f in config_fields(cls) if f.flag is not None and f.key not in exclude]


def _dest(flag: str) -> str:
    return flag[2:].replace("-", "_")


def flag_keys(cls: type, exclude: Iterable[str] = ()) -> dict[str, str]:
    """Flag dest -> config key of the flags of ``cls`` (see :func:`flag_fields`)."""
    return {_dest(f.flag): f.key for f in flag_fields(cls, exclude)}


def key_flags(cls: type) -> dict[str, str]:
    """Config key -> its flag (``synthetic.root`` -> ``--synthetic-root``), for error messages."""
    return {f.key: f.flag for f in flag_fields(cls)}


def _argparse_kwargs(f: ConfigField) -> dict[str, Any]:
    origin = typing.get_origin(f.annotation)
    args = [a for a in typing.get_args(f.annotation) if a is not type(None)]
    optional = origin is typing.Union or type(None) in typing.get_args(f.annotation)
    tp = args[0] if optional else f.annotation
    if tp is bool:
        return {"action": argparse.BooleanOptionalAction}
    if typing.get_origin(tp) is list:
        return {"type": typing.get_args(tp)[0], "nargs": "+"}
    kwargs: dict[str, Any] = {}
    choices = f.check.choices
    if choices is not None:
        kwargs["choices"] = tuple(choices() if callable(choices) else choices)
    if tp in (int, float):
        kwargs["type"] = tp  # its range is the field's: the config names the flag of a bad value
    elif tp is str and optional:
        kwargs["type"] = none_or_str
    return kwargs


def add_config_args(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    titles: Mapping[str, str] | None = None,
    exclude: Iterable[str] = (),
    config_help: str = "YAML recipe; the flags below override its keys",
    set_example: str = "--set lr=0.01",
) -> dict[str, str]:
    """Add ``--config``, ``--set`` and a flag for every flag field of ``cls`` to ``parser``.

    The parser must be built with ``argument_default=argparse.SUPPRESS``. The flags are grouped
    by the fields' sections (:data:`ghostdet.config.recipe.SECTIONS`).

    Args:
        parser: the tool's parser.
        cls: the config dataclass (``TrainConfig``, ``ClsConfig``).
        titles: section -> the title of its group in ``--help`` (default: the section's name);
            the groups appear in this order, then the other sections.
        exclude: keys that get no flag.
        config_help: help of ``--config``.
        set_example: examples of ``--set`` for its help.

    Returns:
        flag dest -> config key (:func:`flag_keys`).
    """
    parser.add_argument("--config", help=config_help)
    parser.add_argument(
        "--set", dest="set_", metavar="KEY=VALUE", action="append",
        help=f"override any config key, VALUE parsed as YAML (e.g. {set_example}); repeatable, "
        "applied after the recipe and the flags",
    )  # fmt: skip
    titles = dict(titles or {})
    order = [*titles, *(s for s in SECTIONS if s not in titles)]
    fields = flag_fields(cls, exclude)
    groups = {
        s: parser.add_argument_group(titles.get(s, s)) for s in order if any(f.section == s for f in fields)
    }
    for f in fields:
        groups[f.section].add_argument(f.flag, dest=_dest(f.flag), help=f.help, **_argparse_kwargs(f))
    return flag_keys(cls, exclude)


def config_overrides(args: argparse.Namespace, cls: type, exclude: Iterable[str] = ()) -> Overrides:
    """The config overrides of a parsed command line: the flags that were passed, then ``--set``.

    Args:
        args: parsed by a parser of :func:`add_config_args`.
        cls: the config dataclass.
        exclude: keys that got no flag.

    Raises:
        ConfigError: a bad ``--set`` item (see :func:`ghostdet.config.recipe.overrides_from_args`).
    """
    return overrides_from_args(vars(args), flag_keys(cls, exclude), cls)
