"""Checking a recipe's ``model_kwargs`` against what the model builder really accepts.

A builder such as :func:`~ghostdet.models.retinanet_ghostnet_fpn` takes ``**kwargs`` and passes
them on, to :func:`~ghostdet.models.detection._retinanet_ghostnet`, then to torchvision's
``RetinaNet`` (or :class:`~ghostdet.models.atss.ATSSRetinaNet`), whose own ``**kwargs`` reach
``GeneralizedRCNNTransform``. A key none of them names would be swallowed without effect, so
:func:`accepted_kwargs` follows that chain with :func:`inspect.signature` (the hops are declared
in :func:`_forwards`) and :func:`check_model_kwargs` refuses a key outside it, suggesting close
names, and a value whose type does not fit the parameter (its annotation, else the type of its
default). A chain that ends in a ``**kwargs`` this module does not know about is "open": unknown
keys then pass, known keys are still type-checked.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

from ghostdet.config.recipe import ConfigError

__all__ = ["Accepted", "accepted_kwargs", "builder_of", "check_model_kwargs"]

_EMPTY = inspect.Parameter.empty

#: torchvision parameters without annotation and with a ``None`` default: their real types.
#: Those that take a module or an object cannot come from a recipe's plain values.
_UNANNOTATED: dict[str, Any] = {
    "image_mean": list[float],
    "image_std": list[float],
    "bbox_reg_weights": Sequence[float],
    "rpn_anchor_generator": "an AnchorGenerator object",
    "anchor_generator": "an AnchorGenerator object",
    "rpn_head": "a module",
    "box_roi_pool": "a module",
    "box_head": "a module",
    "box_predictor": "a module",
    "head": "a module",
    "proposal_matcher": "a Matcher object",
}


@dataclass(frozen=True)
class Accepted:
    """The keyword arguments a builder accepts through its ``**kwargs`` chain.

    Attributes:
        params: name -> (type annotation or ``None``, default) of every accepted keyword.
        owners: name -> the callable that takes it (for messages).
        open: the chain ends in a ``**kwargs`` whose use is unknown: other names may work too.
    """

    params: Mapping[str, tuple[Any, Any]]
    owners: Mapping[str, str]
    open: bool


@functools.cache
def _forwards() -> dict[Any, tuple[tuple[Any, frozenset[str]], ...]]:
    """Callable -> the callables its ``**kwargs`` go to, each with the names it sets itself."""
    from torchvision.models.detection import FasterRCNN, RetinaNet
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    from ghostdet.models import detection as det
    from ghostdet.models.atss import ATSSRetinaNet

    none: frozenset[str] = frozenset()
    return {
        det.fasterrcnn_ghostnet_320_fpn: ((det.fasterrcnn_ghostnet_fpn, none),),
        det.fasterrcnn_ghostnet_fpn: ((FasterRCNN, none),),
        det.retinanet_ghostnet_320_fpn: ((det.retinanet_ghostnet_fpn, none),),
        det.retinanet_ghostnet_fpn: ((det._retinanet_ghostnet, frozenset({"family"})),),
        det._retinanet_ghostnet: ((RetinaNet, none), (ATSSRetinaNet, none)),
        ATSSRetinaNet: ((RetinaNet, none),),
        FasterRCNN: ((GeneralizedRCNNTransform, none),),
        RetinaNet: ((GeneralizedRCNNTransform, none),),
        GeneralizedRCNNTransform: (),  # its **kwargs carry only the private _skip_resize
    }


def builder_of(name: str) -> tuple[Callable[..., Any], tuple[tuple[Any, frozenset[str]], ...]]:
    """The builder callable of a registered model name and where its ``**kwargs`` go.

    A family variant (``retinanet_ghostnetv2_fpn``) passes its keywords to the GhostNet one with
    ``backbone`` set.

    Args:
        name: a registered model name or alias.
    """
    from ghostdet.models.registry import family_variant, model_entry

    entry = model_entry(name)
    if entry.family not in (None, "ghostnet"):
        try:
            base = model_entry(family_variant(entry.name, "ghostnet")).builder
        except ValueError:
            return entry.builder, _forwards().get(entry.builder, ())
        return entry.builder, ((base, frozenset({"backbone"})),)
    return entry.builder, _forwards().get(entry.builder, ())


def _hints(fn: Any) -> dict[str, Any]:
    target = fn.__init__ if inspect.isclass(fn) else inspect.unwrap(fn)
    try:
        return typing.get_type_hints(target)
    except Exception:  # an annotation that does not resolve: the defaults' types are used
        return {}


def accepted_kwargs(
    fn: Callable[..., Any], forwards: tuple[tuple[Any, frozenset[str]], ...] | None = None
) -> Accepted:
    """Every keyword ``fn`` accepts, following its ``**kwargs`` through :func:`_forwards`.

    Args:
        fn: a builder function or a class (its ``__init__``).
        forwards: where ``fn``'s own ``**kwargs`` go (default: :func:`_forwards`'s entry).
    """
    params: dict[str, tuple[Any, Any]] = {}
    owners: dict[str, str] = {}
    is_open = False
    todo: list[tuple[Any, frozenset[str], tuple[tuple[Any, frozenset[str]], ...] | None]] = [
        (fn, frozenset(), forwards)
    ]
    seen: set[int] = set()
    while todo:
        f, skip, hops = todo.pop(0)
        if id(f) in seen:
            continue
        seen.add(id(f))
        sig = inspect.signature(f)
        hints = _hints(f)
        var_kw = False
        for p in sig.parameters.values():
            if p.kind is p.VAR_KEYWORD:
                var_kw = True
            elif (
                p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
                and p.name not in skip
                and p.name not in params
                and not p.name.startswith("_")
            ):
                params[p.name] = (hints.get(p.name), p.default)
                owners[p.name] = getattr(f, "__qualname__", str(f))
        if not var_kw:
            continue
        nxt = _forwards().get(f) if hops is None else hops
        if nxt is None:
            is_open = True
            continue
        todo.extend((g, names, None) for g, names in nxt)
    return Accepted(params, owners, is_open)


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) is Union or isinstance(tp, types.UnionType)


def _fits(value: Any, tp: Any) -> bool:
    """Whether a plain (YAML) value fits the annotation ``tp`` (unknown annotations fit)."""
    if tp is None or tp is Any or tp is _EMPTY:
        return True
    if isinstance(tp, str):  # "a module": no plain value is one
        return False
    if _is_union(tp):
        return any(_fits(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if tp is str:
        return isinstance(value, str)
    origin = typing.get_origin(tp) or tp
    args = typing.get_args(tp)
    if origin in (list, tuple, Sequence, typing.Sequence) or (
        inspect.isclass(origin) and issubclass(origin, Sequence) and origin is not str
    ):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(_fits(v, a) for v, a in zip(value, args))
        return not args or all(_fits(v, args[0]) for v in value)
    if origin in (dict, Mapping):
        return isinstance(value, Mapping)
    if inspect.isclass(origin):
        return isinstance(value, origin)
    return True


def _describe(tp: Any) -> str:
    if isinstance(tp, str):
        return tp
    if _is_union(tp):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    names = {bool: "true/false", int: "an integer", float: "a finite number", str: "a string"}
    if tp in names:
        return names[tp]
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    if origin is not None and origin not in (dict, Mapping):
        args = typing.get_args(tp)
        if not args:
            return "a list"
        item = _describe(args[0]).removeprefix("a ").removeprefix("an ")
        fixed = origin is tuple and args[-1] is not Ellipsis
        return f"a list of {len(args)} {item}s" if fixed else f"a list of {item}s"
    return f"a {getattr(tp, '__name__', str(tp))}"


def _expected_type(name: str, annotation: Any, default: Any) -> Any:
    """The type a value of parameter ``name`` must have: its annotation, else the torchvision
    table's, else the type of its default (``None`` when nothing is known)."""
    if annotation not in (None, _EMPTY, Any):
        return annotation
    if name in _UNANNOTATED:
        tp = _UNANNOTATED[name]
        return Union[tp, None] if not isinstance(tp, str) else tp
    if default is None or default is _EMPTY:
        return None
    if isinstance(default, bool):
        return bool
    if isinstance(default, (int, float, str)):
        return type(default)
    if isinstance(default, (list, tuple)):
        return list
    return None


def check_model_kwargs(
    builder: str | Callable[..., Any], kwargs: Mapping[str, Any], key: str = "model_kwargs"
) -> None:
    """Refuse a ``model_kwargs`` key the builder chain does not accept, or a value of the wrong type.

    Args:
        builder: a registered model name (its chain is :func:`builder_of`'s) or a callable.
        kwargs: the keyword arguments (plain values from a recipe).
        key: the config key of the mapping, for messages.

    Raises:
        ConfigError: ``model_kwargs.KEY: <builder> accepts no keyword 'KEY' (did you mean ...?)``
            or ``model_kwargs.KEY: must be an integer, got 'x'``; ``key`` is ``model_kwargs.KEY``.
    """
    if isinstance(builder, str):
        fn, hops = builder_of(builder)
        accepted = accepted_kwargs(fn, hops)
        label = builder
    else:
        accepted = accepted_kwargs(builder)
        label = getattr(builder, "__name__", str(builder))
    for name, value in kwargs.items():
        k = f"{key}.{name}"
        if name not in accepted.params:
            if accepted.open:
                continue
            close = difflib.get_close_matches(name, list(accepted.params), n=3, cutoff=0.6)
            names = sorted(accepted.params)
            listed = f"it accepts {', '.join(names)}" if len(names) <= 12 else "see its documentation"
            hint = f"did you mean {' or '.join(close)}?" if close else listed
            raise ConfigError.about(k, f"{label} accepts no keyword {name!r} ({hint})")
        annotation, default = accepted.params[name]
        tp = _expected_type(name, annotation, default)
        if tp is not None and not _fits(value, tp):
            owner = accepted.owners[name]
            raise ConfigError.about(k, f"must be {_describe(tp)} (as {owner} takes it), got {value!r}")
