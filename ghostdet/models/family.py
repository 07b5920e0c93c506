"""Backbone families: what the FPN backbone, the detectors and weight loading need of a trunk.

A family (GhostNet V1, V2, V3) declares its block table, how to build its trunk, its
published weights and its deploy conversion (which of its module types
:func:`ghostdet.deploy.fuse` replaces, and by what). Its stages (one per output stride) and
their strides are derived from the stride column of the block table, so there is no second
hand-written table to keep in step. A new family is one module that defines its trunk, calls
:func:`register_family` and registers its builders (see the README's "Adding a backbone").

The trunk contract: ``build_trunk(width=...)`` returns a module with a ``conv_stem``/``bn1``/
``act1`` stem of stride ``stem_stride``, a ``blocks`` ``nn.Sequential`` whose first
``len(cfg)`` entries are the rows of ``cfg`` (entries after them feed only the classifier), and
``stage_channels``, the output channels of each of those entries.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from torch import nn

from ghostdet.errors import ArgumentError

__all__ = ["BackboneFamily", "PretrainedWeights", "get_family", "list_families", "register_family"]


@dataclass(frozen=True)
class PretrainedWeights:
    """A published checkpoint of a family at one width, and what is known of it.

    The counts are ours, recomputed by the tests with :mod:`ghostdet.utils.counting`; the
    accuracy, the licence and the hash are the publisher's (``None`` where no public source gives
    them: never a guess).

    Attributes:
        url: http(s) address of the checkpoint.
        top1: its published ImageNet-1k top-1 accuracy (%), ``None`` if not published.
        sha256: the sha256 of the file at ``url`` (64 hex digits), checked on download and on the
            cached file; ``None`` where no public source gives it (then the strict load, every
            key and shape, is the check).
        params: parameters of the classifier the checkpoint loads into (1000 classes, the form
            the file holds: GhostNetV3's training form), by
            :func:`~ghostdet.utils.counting.count_params`.
        macs: multiply-adds of one 224x224 image through that classifier in its family's
            inference form (:attr:`BackboneFamily.inference_form`), paper convention
            (:func:`~ghostdet.utils.counting.count_macs`).
        source: the page that publishes the checkpoint (and its accuracy, where ``top1`` comes
            from there).
        license: the licence the publisher states for it (SPDX id), ``None`` if none is stated.

    Raises:
        ValueError: ``sha256`` is not 64 hex digits.
    """

    url: str
    top1: float | None = None
    sha256: str | None = None
    params: int | None = None
    macs: int | None = None
    source: str | None = None
    license: str | None = None

    def __post_init__(self) -> None:
        if self.sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ValueError(f"{self.url}: sha256 must be 64 lower-case hex digits, got {self.sha256!r}")

    @property
    def meta(self) -> dict[str, Any]:
        """The metadata as a plain dict (``url``, ``top1``, ``sha256``, ``params``, ``macs``,
        ``source``, ``license``), like torchvision's ``Weights.meta``."""
        return dataclasses.asdict(self)


@dataclass(frozen=True, eq=False)
class BackboneFamily:
    """A backbone family.

    Args:
        name: the family's name (the ``backbone=``/``family=`` argument of the builders).
        title: its name in messages (e.g. ``GhostNet``).
        cfg: block table: one sequence of rows per entry of the trunk's ``blocks``.
        build_trunk: ``build_trunk(width=w)`` -> trunk (see the module docstring).
        weights: width -> published ImageNet checkpoint (``weights="imagenet"``).
        stride_column: index of the stride in a row of ``cfg``.
        stem_stride: stride of the stem.
        rename: maps a checkpoint's state dict to the trunk's names before strict loading
            (e.g. an older release's names); ``None``: the names are the trunk's.
        inference_form: turns an eval-mode model of the family (classifier, FPN backbone or
            detector) into the form that runs at inference, in place, and returns it (GhostNetV3:
            its re-parameterisation); ``None``: the trained form is the inference form. The
            comparison tables count this form.
        deploy: the family's module types -> the converter :func:`ghostdet.deploy.fuse` replaces
            them with, named ``"package.module:attribute"`` (a callable taking the eval-mode module
            and returning its deploy module; a converted bottleneck must have deploy's
            ``run(x, fast)``). The deploy package imports the converters when it fuses, so the
            models import nothing from it. Modules are matched with ``isinstance``, the families
            in name order and each family's entries in their order.

    Raises:
        TypeError: a ``deploy`` key that is not an ``nn.Module`` subclass, or a converter that is
            not named ``"package.module:attribute"``.
    """

    name: str
    title: str
    cfg: Sequence[Sequence[tuple[Any, ...]]]
    build_trunk: Callable[..., nn.Module]
    weights: Mapping[float, PretrainedWeights] = field(default_factory=dict)
    stride_column: int = -1
    stem_stride: int = 2
    rename: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    inference_form: Callable[[nn.Module], nn.Module] | None = None
    deploy: Mapping[type[nn.Module], str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for kind, converter in self.deploy.items():
            if not (isinstance(kind, type) and issubclass(kind, nn.Module)):
                raise TypeError(f"{self.title}: deploy keys must be nn.Module subclasses, got {kind!r}")
            if not (isinstance(converter, str) and re.fullmatch(r"[\w.]+:[\w.]+", converter)):
                raise TypeError(
                    f"{self.title}: the deploy converter of {kind.__name__} must be named "
                    f"'package.module:attribute', got {converter!r}"
                )

    @cached_property
    def _stages(self) -> tuple[dict[int, tuple[int, ...]], dict[int, int]]:
        blocks: dict[int, list[int]] = {}
        stride = self.stem_stride
        for i, rows in enumerate(self.cfg):
            for row in rows:
                stride *= int(row[self.stride_column])
            blocks.setdefault(stride, []).append(i)
        stages = {s: tuple(ids) for s, ids in enumerate(blocks.values(), start=1)}
        return stages, dict(enumerate(blocks, start=1))

    @property
    def stage_blocks(self) -> dict[int, tuple[int, ...]]:
        """Stage (1, 2, ...) -> indices of the ``blocks`` entries at its output stride.

        Stage 1 is the first stride the blocks run at (the stem's, when the first entry is
        unstrided) and also owns the stem.
        """
        return dict(self._stages[0])

    @property
    def stage_strides(self) -> dict[int, int]:
        """Stage -> its output stride."""
        return dict(self._stages[1])

    @property
    def num_stages(self) -> int:
        return len(self._stages[0])

    def url(self, width: float) -> str:
        """URL of the published checkpoint at ``width``.

        Raises:
            ValueError: none is published at that width (the message lists the published ones).
        """
        return self.pretrained(width).url

    def pretrained(self, width: float) -> PretrainedWeights:
        """The published checkpoint at ``width`` (its URL and, where known, its sha256).

        Raises:
            ValueError: none is published at that width (the message lists the published ones).
        """
        found = self.weights.get(float(width))
        if found is None:
            published = ", ".join(f"{w:g}" for w in self.weights) or "none"
            raise ArgumentError(
                f"no published ImageNet weights for {self.title} width {width:g} (published: {published}). "
                "Train from scratch (no weights), or give a checkpoint file instead, e.g. a width "
                f"{width:g} ImageNet classifier from tools/train_cls.py --model {self.name} "
                f"--width {width:g}."
            )
        return found


_FAMILIES: dict[str, BackboneFamily] = {}


def register_family(family: BackboneFamily) -> BackboneFamily:
    """Make ``family`` available under ``family.name``; returns it.

    Raises:
        ValueError: the name is taken.
    """
    if family.name in _FAMILIES:
        raise ValueError(f"backbone family {family.name!r} is already registered")
    _FAMILIES[family.name] = family
    return family


def list_families() -> list[str]:
    """Names of the registered families, sorted."""
    return sorted(_FAMILIES)


def get_family(name: str) -> BackboneFamily:
    """The family called ``name``.

    Raises:
        ValueError: unknown family; the message lists the registered ones.
    """
    try:
        return _FAMILIES[name]
    except KeyError:
        raise ArgumentError(
            f"unknown backbone family {name!r}; available: {', '.join(list_families())}"
        ) from None
