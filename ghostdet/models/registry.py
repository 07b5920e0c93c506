"""The one table of model names: every builder registers itself next to its definition.

A builder is registered under one or more names with :func:`register_model`; a name may bind
default arguments, so ``ghostnet_050`` is ``ghostnet(width=0.5)``. Each entry records its
kind (``classifier``, ``detector`` or ``backbone``), its aliases (the short detector names of
the command-line tools and recipes), the state-dict key whose first dimension gives the
number of classes, and the backbone family it is built on. :func:`get_model`,
:func:`list_models`, the training config, the tools and the export read this table; nothing
else lists model names.

Example::

    @register_model("retinanet_ghostnet_fpn", kind="detector", aliases=("retinanet",),
                    class_key="head.classification_head.cls_logits.weight", family="ghostnet")
    def retinanet_ghostnet_fpn(**kwargs): ...

Builders register when their module is imported; :mod:`ghostdet.models` imports them all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from torch import nn

from ghostdet.errors import ArgumentError, InputError

__all__ = [
    "KINDS",
    "ModelEntry",
    "detector_aliases",
    "family_variant",
    "get_model",
    "list_models",
    "model_entry",
    "register_model",
    "resolve_detector_name",
]

KINDS = ("classifier", "detector", "backbone")

F = TypeVar("F", bound=Callable[..., nn.Module])


@dataclass(frozen=True)
class ModelEntry:
    """One registered model name.

    Attributes:
        name: the canonical name.
        kind: ``classifier``, ``detector`` or ``backbone``.
        builder: the function that builds it.
        defaults: keyword arguments bound to ``builder`` under this name (overridable).
        aliases: other names accepted for it.
        class_key: state-dict key whose first dimension gives the number of classes (for a
            detector: times the anchors per location of a dense head); ``None`` if none.
        family: backbone family it is built on (see :mod:`ghostdet.models.family`), or ``None``.
    """

    name: str
    kind: str
    builder: Callable[..., nn.Module]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    class_key: str | None = None
    family: str | None = None

    def build(self, **kwargs: Any) -> nn.Module:
        """Call the builder with this entry's defaults updated by ``kwargs``."""
        return self.builder(**{**self.defaults, **kwargs})


_ENTRIES: dict[str, ModelEntry] = {}
_ALIASES: dict[str, str] = {}


def register_model(
    name: str,
    *,
    kind: str,
    aliases: tuple[str, ...] = (),
    class_key: str | None = None,
    family: str | None = None,
    **defaults: Any,
) -> Callable[[F], F]:
    """Decorator registering a builder under ``name`` (stack it for several names).

    Args:
        name: the model name (unique across names and aliases).
        kind: one of :data:`KINDS`.
        aliases: extra names resolving to ``name``.
        class_key: see :class:`ModelEntry`.
        family: see :class:`ModelEntry`.
        **defaults: keyword arguments this name binds (e.g. ``width=0.5``).

    Raises:
        ValueError: unknown kind, or a name or alias that is already taken.
    """
    if kind not in KINDS:
        raise ArgumentError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}", argument="kind")

    def wrap(builder: F) -> F:
        for n in (name, *aliases):
            if n in _ENTRIES or n in _ALIASES:
                raise ValueError(f"model name {n!r} is already registered")
        entry = ModelEntry(
            name, kind, builder, MappingProxyType(dict(defaults)), tuple(aliases), class_key, family
        )
        _ENTRIES[name] = entry
        _ALIASES.update(dict.fromkeys(aliases, name))
        return builder

    return wrap


def list_models(kind: str | None = None) -> list[str]:
    """Registered names (not aliases), sorted.

    Args:
        kind: only names of this kind (one of :data:`KINDS`); ``None``: all.
    """
    if kind is not None and kind not in KINDS:
        raise ArgumentError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}", argument="kind")
    return sorted(n for n, e in _ENTRIES.items() if kind is None or e.kind == kind)


def model_entry(name: str) -> ModelEntry:
    """The entry of a name or alias.

    Raises:
        ValueError: unknown name; the message lists the names and aliases.
    """
    entry = _ENTRIES.get(_ALIASES.get(name, name))
    if entry is None:
        known = ", ".join([*list_models(), *sorted(_ALIASES)])
        raise ArgumentError(f"unknown model {name!r}; available: {known}")
    return entry


def get_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a model by name or alias.

    Args:
        name: one of :func:`list_models` or an alias (``retinanet``, ...).
        **kwargs: passed to the builder (e.g. ``weights``, ``num_classes``, ``width``),
            overriding the defaults the name binds.
    """
    return model_entry(name).build(**kwargs)


def detector_aliases() -> dict[str, str]:
    """Alias -> name of every detector, in registration order (the tools' ``--detector`` choices)."""
    return {a: e.name for e in _ENTRIES.values() if e.kind == "detector" for a in e.aliases}


def family_variant(name: str, family: str) -> str:
    """The registered name of the model ``name`` (a name or an alias) built on another backbone family.

    Names follow torchvision's ``<model>_<backbone>[_<preset>]_fpn``, so the variant of
    ``fasterrcnn_ghostnet_320_fpn`` on ``ghostnetv2`` is ``fasterrcnn_ghostnetv2_320_fpn``.

    Args:
        name: a registered name or alias (e.g. ``retinanet``).
        family: the backbone family wanted (see :mod:`ghostdet.models.family`).

    Raises:
        ValueError: unknown name, or no variant of it registered on ``family`` (the message lists
            the ones there are).
    """
    entry = model_entry(name)
    if entry.family == family:
        return entry.name
    wanted = entry.name.replace(f"_{entry.family}_", f"_{family}_", 1) if entry.family else None
    if wanted is not None and wanted in _ENTRIES and _ENTRIES[wanted].family == family:
        return wanted
    others = sorted(n for n, e in _ENTRIES.items() if e.family == family and e.kind == entry.kind)
    listed = ", ".join(others) or "none"
    raise ArgumentError(f"{entry.name} has no variant on backbone {family!r} (its {entry.kind}s: {listed})")


def resolve_detector_name(name: str) -> str:
    """Registered detector name of an alias (``fasterrcnn``, ``retinanet``, ...) or of a detector name.

    Raises:
        InputError: ``name`` is not a registered detector; the message lists the choices.
    """
    try:
        entry = model_entry(name)
    except ValueError:
        entry = None
    if entry is None or entry.kind != "detector":
        choices = [*detector_aliases(), *list_models("detector")]
        raise InputError(f"unknown detector {name!r}; choose from {', '.join(choices)}", argument="model")
    return entry.name
