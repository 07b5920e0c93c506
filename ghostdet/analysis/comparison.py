"""Params, MACs and CPU latency of the comparison table's backbones, one row each.

The rows are rendered by :mod:`ghostdet.analysis.report`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ghostdet.analysis.backbones import BACKBONES, DETECTION_BACKBONES
from ghostdet.analysis.latency import measure_latency
from ghostdet.errors import ArgumentError
from ghostdet.utils.counting import count_macs, input_shape, profile, split_macs

__all__ = ["ComparisonRow", "compare_backbones"]


@dataclass
class ComparisonRow:
    """One row of :func:`compare_backbones`.

    ``macs_224``/``thop_macs_224`` are for the full model at ``cls_size``; ``det_macs`` and
    ``det_latency_ms`` are keyed by ``"HxW"`` and measure the trunk (see
    :meth:`~ghostdet.analysis.backbones.BackboneSpec.trunk`); for detection backbones
    ``det_body_macs`` holds the part of ``det_macs`` spent in the body (the rest is the FPN).
    Latencies are medians in milliseconds (``None`` if skipped).
    """

    name: str
    label: str
    detection: bool
    params: int
    macs_224: int
    thop_macs_224: int
    det_macs: dict[str, int] = field(default_factory=dict)
    det_body_macs: dict[str, int] = field(default_factory=dict)
    latency_224_ms: float | None = None
    det_latency_ms: dict[str, float] = field(default_factory=dict)
    paper_params_m: float | None = None
    paper_macs_m: float | None = None


def _size_key(hw: tuple[int, int]) -> str:
    return f"{hw[0]}x{hw[1]}"


def compare_backbones(
    names: Sequence[str] | None = None,
    det_sizes: Sequence[tuple[int, int]] = ((800, 1333), (320, 320)),
    cls_size: int = 224,
    latency: bool = True,
    runs: int = 20,
    warmup: int = 3,
    threads: int | None = 1,
    progress: Callable[[str], None] | None = None,
) -> list[ComparisonRow]:
    """Params, MACs (both conventions) and CPU latency of backbones, one row per name.

    Args:
        names: keys of :data:`BACKBONES` and/or :data:`DETECTION_BACKBONES`; default all of
            :data:`BACKBONES`.
        det_sizes: ``(H, W)`` detection input sizes at which the trunk is counted/timed.
        cls_size: square classification input size.
        latency: measure latency (otherwise only static counts).
        runs: timed repetitions per model and input size (median reported).
        warmup: untimed repetitions before timing.
        threads: ``torch.set_num_threads`` during timing (``None`` keeps the current value).
        progress: called with a short message before each step (e.g. ``print``).
    """
    specs = {**BACKBONES, **DETECTION_BACKBONES}
    names = list(BACKBONES) if names is None else list(names)
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise ArgumentError(f"unknown backbone(s) {unknown}; available: {', '.join(specs)}", argument="names")
    if not names:
        raise ArgumentError("no backbones selected", argument="names")
    det_sizes = [tuple(int(v) for v in hw) for hw in det_sizes]
    for hw in det_sizes:
        input_shape(hw)  # validates
    say = progress or (lambda msg: None)
    rows: list[ComparisonRow] = []
    models: dict[str, nn.Module] = {}
    for name in names:
        spec = specs[name]
        say(f"counting {spec.label}")
        model = spec.build().eval()
        models[name] = model
        trunk = spec.trunk(model)
        prof = profile(model, cls_size)
        det_macs, body_macs = {}, {}
        for hw in det_sizes:
            if spec.detection:
                split = split_macs(trunk, hw)
                det_macs[_size_key(hw)], body_macs[_size_key(hw)] = split["total"], split["body"]
            else:
                det_macs[_size_key(hw)] = count_macs(trunk, hw)
        rows.append(
            ComparisonRow(
                name=name,
                label=spec.label,
                detection=spec.detection,
                params=prof.params,
                macs_224=prof.macs,
                thop_macs_224=prof.thop_macs or 0,
                det_macs=det_macs,
                det_body_macs=body_macs,
                paper_params_m=spec.paper_params_m,
                paper_macs_m=spec.paper_macs_m,
            )
        )
    if latency:
        say(f"timing at {cls_size}x{cls_size}")
        x = torch.randn(input_shape(cls_size))
        lat = measure_latency(models, x, runs=runs, warmup=warmup, threads=threads)
        for row in rows:
            row.latency_224_ms = lat[row.name] * 1e3
        trunks = {n: specs[n].trunk(m) for n, m in models.items()}
        for hw in det_sizes:
            say(f"timing trunks at {_size_key(hw)}")
            lat = measure_latency(
                trunks, torch.randn(input_shape(hw)), runs=runs, warmup=warmup, threads=threads
            )
            for row in rows:
                row.det_latency_ms[_size_key(hw)] = lat[row.name] * 1e3
    return rows
