"""Typed training recipes: a config dataclass from YAML, a mapping, and command-line flags.

Both training configs, :class:`ghostdet.config.TrainConfig` (detection) and
:class:`ghostdet.config.classification.ClsConfig` (classification), are dataclasses read through here: a
recipe is a YAML mapping of their fields, every value is checked against the field's annotation
(:func:`config_from_dict`), an unknown key is a :class:`ConfigError` that names it, and a tool's
flags override only the keys the user passed (:func:`overrides_from_args`, ``--set KEY=VALUE``).

Everything about a field is declared beside it with :func:`setting`: its range (a :class:`Check`
of bounds, choices or a pattern, which :func:`check_fields` applies to every config; every float
field must be finite), its one-line ``help`` and its ``section`` (model, data, solver, run). The
command line (``ghostdet.cli``) makes a flag ``--KEY-NAME`` of every field that has a ``help``
(:func:`config_fields` lists them, nested fields too: ``synthetic.root`` is
``--synthetic-root``); a flag whose name differs from its key says so with ``flag=``. A tool flag
that sets no config key can reuse the same rules through :func:`ranged_type` (or
:func:`flag_type` for a config field). An error carries its key, and names where the value came
from: the flag, ``--set ITEM`` or the recipe file.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Union

import yaml

from ghostdet.errors import GhostdetError, InputError

__all__ = [
    "OPTIMIZERS",
    "SCHEDULERS",
    "SECTIONS",
    "Check",
    "ConfigError",
    "ConfigField",
    "Overrides",
    "check_choice",
    "check_config_key",
    "check_fields",
    "check_value",
    "coerce_value",
    "config_fields",
    "config_from_dict",
    "flag_type",
    "load_config",
    "none_or_str",
    "overrides_from_args",
    "ranged_type",
    "redefault",
    "save_config",
    "setting",
    "to_dict",
]

OPTIMIZERS = ("sgd", "adamw")

SCHEDULERS = ("multistep", "cosine")

#: The sections of a training config, in the order of its saved ``config.yaml`` and of a tool's
#: ``--help``.
SECTIONS = ("model", "data", "solver", "run")


class ConfigError(GhostdetError, ValueError):
    """A recipe or override is invalid (unknown key, wrong type, value out of range).

    Args:
        message: the one-line message; it names the key.
        key: the config key it is about (``lr``, ``synthetic.image_size``, ``lr_steps[1]``,
            ``model_kwargs.score_thresh``), ``None`` for the recipe as a whole. It lets
            :func:`config_from_dict` say where the bad value came from.
        problem: what is wrong with the key's value, without the key (``must be > 0, got -1``);
            ``message`` is then ``KEY: PROBLEM``. A flag that set the key leads the message with
            itself instead of the key (``--lr: must be > 0, got -1``).
    """

    def __init__(self, message: str, key: str | None = None, problem: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.problem = problem

    @classmethod
    def about(cls, key: str, problem: str) -> ConfigError:
        """The error ``KEY: PROBLEM`` about one key."""
        return cls(f"{key}: {problem}", key=key, problem=problem)


def check_choice(key: str, value: Any, choices: Iterable[str]) -> None:
    """Raise :class:`ConfigError` ``key: VALUE is not one of ...`` unless ``value`` is in ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError.about(key, f"{value!r} is not one of {', '.join(choices)}")


def check_value(key: str, ok: bool, msg: str) -> None:
    """Raise :class:`ConfigError` ``key: msg`` unless ``ok``."""
    if not ok:
        raise ConfigError.about(key, msg)


def _num(v: float) -> str:
    if isinstance(v, int) and v.bit_length() > 32 and v + 1 == 2 ** (v + 1).bit_length() // 2:
        return f"2**{v.bit_length()} - 1"  # 9223372036854775807 -> 2**63 - 1
    return str(int(v)) if float(v).is_integer() else repr(v)


@dataclass(frozen=True)
class Check:
    """The declared rule of one config field (see :func:`setting`); ``None`` values are not checked.

    Args:
        ge: lower bound (>=) of a number, or of every item of a list.
        gt: lower bound (>).
        le: upper bound (<=).
        lt: upper bound (<).
        odd: an odd integer.
        choices: the allowed values, or a function returning them (for registries that fill
            at import time).
        pattern: a regular expression the whole string must match, described by ``what``.
        what: the rule in words for ``pattern`` (``"auto, cpu, cuda or cuda:N"``).
        why: a note appended to the message of a value out of bounds (``"the maximum is a sane
            limit"``).
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    odd: bool = False
    choices: tuple[Any, ...] | Callable[[], Iterable[Any]] | None = None
    pattern: str | None = None
    what: str = ""
    why: str = ""

    def rule(self) -> str:
        """The bounds in words: ``must be >= 1``, ``must be in [0, 1)``, ``must be an odd integer >= 1``."""
        lo = (f"[{_num(self.ge)}" if self.ge is not None else None) or (
            f"({_num(self.gt)}" if self.gt is not None else None
        )
        hi = (f"{_num(self.le)}]" if self.le is not None else None) or (
            f"{_num(self.lt)})" if self.lt is not None else None
        )
        odd = "an odd integer " if self.odd else ""
        if lo and hi:
            text = f"must be {odd}in {lo}, {hi}"
        elif lo:
            text = f"must be {odd}{'>=' if lo[0] == '[' else '>'} {lo[1:]}"
        elif hi:
            text = f"must be {odd}{'<=' if hi[-1] == ']' else '<'} {hi[:-1]}"
        else:
            text = "must be an odd integer" if self.odd else ""
        return text

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` (``"must be >= 1, got 0"``), ``None`` if nothing."""
        if value is None:
            return None
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be a finite number, got {value!r}"
        if self.choices is not None:
            choices = tuple(self.choices() if callable(self.choices) else self.choices)
            if value not in choices:
                return f"{value!r} is not one of {', '.join(map(str, choices))}"
        if self.pattern is not None and not (
            isinstance(value, str) and re.fullmatch(self.pattern, value) is not None
        ):
            return f"must be {self.what or 'a match of ' + self.pattern}, got {value!r}"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            bad = (
                (self.ge is not None and not value >= self.ge)
                or (self.gt is not None and not value > self.gt)
                or (self.le is not None and not value <= self.le)
                or (self.lt is not None and not value < self.lt)
                or (self.odd and not (isinstance(value, int) and value % 2 == 1))
            )
            if bad:
                high = (self.le is not None and value > self.le) or (self.lt is not None and value >= self.lt)
                return f"{self.rule()}, got {value!r}" + (f" ({self.why})" if self.why and high else "")
        return None


def setting(
    default: Any = dataclasses.MISSING,
    *,
    default_factory: Any = dataclasses.MISSING,
    help: str | None = None,
    section: str | None = None,
    flag: str | None = None,
    **check: Any,
) -> Any:
    """A dataclass field with everything about it declared beside it:
    ``epochs: int = setting(12, ge=1, help="training epochs", section="solver")``.

    Args:
        default: the default value.
        default_factory: or a factory of it (lists, mappings).
        help: one line on what the field does; a field with a ``help`` is a tool flag
            (``--KEY-NAME``), one without is set by the recipe or ``--set KEY=VALUE`` only.
        section: one of :data:`SECTIONS` (the fields of a nested config take their parent's).
        flag: the flag's name when it is not ``--KEY-NAME``.
        **check: the :class:`Check` of the field (``ge``, ``gt``, ``le``, ``lt``, ``odd``,
            ``choices``, ``pattern``, ``what``, ``why``).
    """
    if section is not None and section not in SECTIONS:
        raise ValueError(f"section must be one of {', '.join(SECTIONS)}, got {section!r}")
    metadata = {"check": Check(**check), "help": help, "section": section, "flag": flag}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


def redefault(
    cls: type, name: str, default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING
) -> Any:
    """The field ``name`` of the config dataclass ``cls`` with another default, for a subclass
    (its check, help and section stay as declared): ``epochs: int = redefault(Base, "epochs", 200)``.

    Args:
        cls: the dataclass that declares the field.
        name: the field.
        default: the new default.
        default_factory: or a factory of it.
    """
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    return dataclasses.field(default=default, default_factory=default_factory, metadata=dict(f.metadata))


@dataclass(frozen=True)
class ConfigField:
    """One field of a config dataclass, as :func:`config_fields` lists it.

    Args:
        key: the config key, dotted for a nested field (``synthetic.root``).
        annotation: the field's type (``int``, ``Optional[str]``, ``list[int]``, ...).
        help: its one-line help (``None``: no flag, see :func:`setting`).
        section: its section (:data:`SECTIONS`).
        flag: its flag (``--synthetic-root``; ``None`` without ``help``).
        check: its declared rule.
        default: its default value (a factory's value for lists and mappings).
    """

    key: str
    annotation: Any
    help: str | None
    section: str
    flag: str | None
    check: Check
    default: Any


def config_fields(cls: type, prefix: str = "", section: str | None = None) -> list[ConfigField]:
    """Every field of the config dataclass ``cls``, the fields of nested configs in its place
    (``synthetic`` -> ``synthetic.root``, ``synthetic.num_train``, ...).

    Args:
        cls: the config dataclass.
        prefix: key prefix of a nested config (``"synthetic."``).
        section: the section of a nested config's fields (its parent field's).

    Returns:
        The fields, in declaration order (a base class's fields first).
    """
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key, tp = prefix + f.name, hints[f.name]
        sec = f.metadata.get("section") or section or "run"
        if dataclasses.is_dataclass(tp):
            out += config_fields(tp, key + ".", sec)
            continue
        help_ = f.metadata.get("help")
        flag = (f.metadata.get("flag") or "--" + key.replace(".", "-").replace("_", "-")) if help_ else None
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        check = f.metadata.get("check", Check())
        out.append(ConfigField(key, tp, help_, sec, flag, check, default))
    return out


def _names(cls: Any) -> list[str]:
    """The field names of a config dataclass by section (:data:`SECTIONS`), as :func:`to_dict` has them."""
    rank = {s: i for i, s in enumerate(SECTIONS)}
    return [
        f.name
        for f in sorted(dataclasses.fields(cls), key=lambda f: rank[f.metadata.get("section") or "run"])
    ]


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config dataclass as a plain nested dict (YAML/JSON/``torch.load(weights_only=True)``
    safe), its keys by section (:data:`SECTIONS`: model, data, solver, run), in declaration order
    within one.

    Args:
        cfg: a config dataclass instance.
    """
    data = dataclasses.asdict(cfg)
    return {name: data[name] for name in _names(cfg)}


def check_fields(cfg: Any, prefix: str = "") -> None:
    """Apply every field's declared :class:`Check` to the config dataclass ``cfg`` (nested ones too).

    Every float value must be finite, declared or not; a list's items are checked one by one
    (``lr_steps[1]``).

    Args:
        cfg: a config dataclass instance.
        prefix: key prefix of a nested config (``"synthetic."``).

    Raises:
        ConfigError: ``KEY: must be ..., got VALUE``, with ``key`` set.
    """
    for f in dataclasses.fields(cfg):
        value, key = getattr(cfg, f.name), prefix + f.name
        if dataclasses.is_dataclass(value):
            check_fields(value, key + ".")
            continue
        check: Check = f.metadata.get("check", Check())
        items = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
        for i, v in items:
            problem = check.problem(v)
            if problem is not None:
                raise ConfigError.about(key if i is None else f"{key}[{i}]", problem)


def ranged_type(base: type = int, **check: Any) -> Callable[[str], Any]:
    """An argparse ``type`` that parses ``base`` (int or float) and applies a :class:`Check`.

    A value out of range is argparse's usage error ``argument --FLAG: must be ..., got VALUE``
    (exit status 2); a non-finite float is always refused.

    Args:
        base: ``int`` or ``float``.
        **check: the rule, as for :func:`setting`.
    """
    rule = Check(**check)
    what = "an integer" if base is int else "a number"

    def parse(text: str) -> Any:
        try:
            value = base(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        problem = rule.problem(value)
        if problem is not None:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = base.__name__
    return parse


def flag_type(cls: Any, key: str) -> Callable[[str], Any]:
    """The argparse ``type`` of a flag that sets the int or float config field ``key`` of ``cls``
    (dotted for nested fields), checked by the field's declared rule (:func:`ranged_type`).

    Args:
        cls: the config dataclass.
        key: the field, e.g. ``min_size`` or ``synthetic.image_size``.
    """
    head, _, rest = key.partition(".")
    f = {f.name: f for f in dataclasses.fields(cls)}[head]
    tp = _is_optional(typing.get_type_hints(cls)[head])[1]
    if rest:
        return flag_type(tp, rest)
    if typing.get_origin(tp) is list:
        tp = typing.get_args(tp)[0]
    check: Check = f.metadata.get("check", Check())
    return ranged_type(tp, **{k.name: getattr(check, k.name) for k in dataclasses.fields(check)})


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
        raise ConfigError.about(key, "must not be null")
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError.about(key, f"expected a mapping, got {value!r}")
        return _from_mapping(tp, value, prefix=f"{key}.")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError.about(key, f"expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError.about(key, f"expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError.about(key, f"expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, PathLike)):
            return str(value)
        raise ConfigError.about(key, f"expected a string, got {value!r}")
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError.about(key, f"expected a list, got {value!r}")
        return [_coerce(f"{key}[{i}]", v, item_tp) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError.about(key, f"expected a mapping, got {value!r}")
        return dict(value)
    return value


def coerce_value(key: str, value: Any, tp: Any) -> Any:
    """``value`` checked against the annotation ``tp`` as a recipe's values are (ints are accepted
    for floats and integral floats for ints).

    Args:
        key: the config key, for the message.
        value: the value.
        tp: the annotation (``int``, ``Optional[float]``, ``list[int]``, a dataclass, ...).

    Raises:
        ConfigError: ``KEY: expected ..., got VALUE``.
    """
    return _coerce(key, value, tp)


def _from_mapping(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = _names(cls)
    for key in data:
        if key not in names:
            raise ConfigError(
                f"unknown config key {(prefix + key)!r} (known keys: {', '.join(names)})", key=prefix + key
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
        names = _names(cls)
        if part not in names:
            raise ConfigError(
                f"unknown config key {(prefix + part)!r} (known keys: {', '.join(names)})", key=prefix + part
            )
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
            :class:`ghostdet.config.TrainConfig` or :class:`ghostdet.config.classification.ClsConfig`.

    Raises:
        ConfigError: unknown key, wrong type or invalid value (the message names the key and
            where its value came from: an override's flag or ``--set ITEM`` when ``overrides``
            is an :class:`Overrides`, else ``source`` when the key is not overridden).
    """
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"the config{' ' + source if source else ''} must be a YAML mapping of keys")
    origins = dict.fromkeys(overrides or {}, "")
    origins.update(getattr(overrides, "origins", {}))
    try:
        return _config_from_dict(data, overrides, cls)
    except ConfigError as e:
        raise _located(e, origins, source) from None


def _located(err: ConfigError, origins: Mapping[str, str], source: str) -> ConfigError:
    """``err`` with where its key's value came from: ``--lr: ...``, ``--set lr=-1: ...``,
    ``recipe.yaml: lr: ...`` (a key set by a plain override, or with no file, stays as it is)."""
    key = err.key
    if key is None:
        return err
    parts = re.sub(r"\[\d+\]", "", key).split(".")
    heads = (".".join(parts[:n]) for n in range(len(parts), 0, -1))
    head = next((h for h in heads if h in origins), None)
    origin = None if head is None else origins[head]
    text = str(err)
    if origin:  # "--set lr=-1: must be > 0", but "--lr-steps: lr_steps[1]: must be >= 1"
        text = f"{origin}: {err.problem if key == head and err.problem is not None else text}"
    elif origin is None and source:
        text = f"{source}: {text}"
    else:
        return err
    return ConfigError(text, key=key, problem=err.problem)


def _config_from_dict(data: Mapping[str, Any] | None, overrides: Mapping[str, Any] | None, cls: type) -> Any:
    merged: dict[str, Any] = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in (data or {}).items()}
    for key, value in (overrides or {}).items():
        if "." in key:
            head, sub = key.split(".", 1)
            merged.setdefault(head, {})
            if not isinstance(merged[head], dict):
                raise ConfigError.about(head, "expected a mapping")
            merged[head][sub] = value
        elif key in ("synthetic", "augment", "model_kwargs") and isinstance(value, Mapping):
            merged[key] = {**merged.get(key, {}), **value}
        else:
            merged[key] = value
    cfg = _from_mapping(cls, merged)
    check_fields(cfg)
    return cfg.validate()


def load_config(path: str | PathLike | None, overrides: Mapping[str, Any] | None = None, *, cls: type) -> Any:
    """Load a YAML recipe, apply ``overrides`` and validate.

    Args:
        path: YAML file (``None``: the built-in defaults).
        overrides: see :func:`config_from_dict`.
        cls: the config dataclass, see :func:`config_from_dict`.

    Raises:
        InputError: ``path`` does not exist.
        ConfigError: bad YAML (or not UTF-8 text), unknown key, wrong type or invalid value.
    """
    data = None
    source = ""
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise InputError(f"config file not found: {p}")
        source = str(p)
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise ConfigError(
                f"{p} is not a YAML recipe: not UTF-8 text ({e.reason} at byte {e.start})"
            ) from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{p} is not valid YAML: {' '.join(str(e).split())}") from None
    return config_from_dict(data, overrides, source=source, cls=cls)


class Overrides(dict):
    """Config overrides (key -> value) that remember where each key came from.

    Args:
        *args: as for ``dict``.
        origins: config key -> its source for error messages: the flag (``--lr``) or
            ``--set ITEM``.
        **kwargs: as for ``dict``.
    """

    def __init__(self, *args: Any, origins: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.origins: dict[str, str] = dict(origins or {})


def overrides_from_args(given: Mapping[str, Any], keys: Mapping[str, str], cls: Any) -> Overrides:
    """Config overrides of a tool's parsed flags: the flags actually passed, then ``--set``.

    The result is an :class:`Overrides` whose ``origins`` name each key's flag (``--KEY-NAME``
    of its dest) or ``--set ITEM``, so that :func:`config_from_dict` blames the flag for a bad
    value, not the recipe file.

    Args:
        given: ``vars(args)`` of a parser built with ``argument_default=SUPPRESS`` (a flag that
            was not passed is absent); ``--set KEY=VALUE`` items are under ``"set_"``.
        keys: flag dest -> config key (dotted for nested keys).
        cls: the config dataclass whose keys ``--set`` may name.

    Raises:
        ConfigError: a ``--set`` item that is not ``KEY=VALUE``, names no config key or whose
            value is not YAML; the message leads with ``--set ITEM``.
    """
    overrides = Overrides({key: given[dest] for dest, key in keys.items() if dest in given})
    overrides.origins = {key: "--" + dest.replace("_", "-") for dest, key in keys.items() if dest in given}
    for item in given.get("set_", []):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            check_config_key(key, cls)
            overrides[key] = yaml.safe_load(value)
            overrides.origins[key] = f"--set {item}"
        except ConfigError as e:
            raise ConfigError(f"--set {item}: {e}") from None
        except yaml.YAMLError:
            raise ConfigError(f"--set {key}: cannot parse {value!r} as YAML") from None
    return overrides


def none_or_str(value: str) -> str | None:
    """argparse type: ``none``/``null``/empty -> ``None``, anything else unchanged."""
    return None if value.lower() in ("none", "null", "") else value


def save_config(cfg: Any, path: str | PathLike) -> Path:
    """Write the resolved config (any config dataclass with ``to_dict``) as YAML (loadable with
    :func:`load_config`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=None))
    return path
