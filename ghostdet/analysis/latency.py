"""Wall-clock latency of several models (or any callables), measured interleaved.

FLOPs are not latency, so models are also timed. Each repetition runs every model once, so that
load changes on a shared machine affect all models alike; the median of the repetitions is
reported. :func:`time_interleaved` is the general loop (zero-argument callables, every sample
kept, optional page-fault counts; ``benchmarks/bench_cpu.py`` uses it) and
:func:`measure_latency` the model-facing wrapper (one input tensor per model, eval mode).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from ghostdet.errors import ArgumentError

try:
    import resource
except ImportError:  # Windows has no resource module: page faults are not counted there
    resource = None  # type: ignore[assignment]

__all__ = ["Timings", "measure_latency", "time_interleaved"]


@dataclass(frozen=True)
class Timings:
    """Every timed sample of :func:`time_interleaved`.

    Attributes:
        seconds: name -> wall-clock seconds of each timed call, in the order they ran.
        minor_faults: name -> minor page faults of each timed call (empty if not counted).
    """

    seconds: dict[str, list[float]]
    minor_faults: dict[str, list[int]] = field(default_factory=dict)

    def medians(self) -> dict[str, float]:
        """Median seconds per name."""
        return {name: statistics.median(t) for name, t in self.seconds.items()}

    def mean_faults(self) -> dict[str, float]:
        """Mean minor page faults per call, per name (empty if they were not counted)."""
        return {name: sum(f) / len(f) for name, f in self.minor_faults.items()}


def _check_repetitions(runs: int, warmup: int, threads: int | None) -> None:
    if runs < 1 or warmup < 0:
        raise ArgumentError(f"runs must be >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    if threads is not None and threads < 1:
        raise ArgumentError(f"threads must be >= 1, got {threads}", argument="threads")


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def time_interleaved(
    fns: Mapping[str, Callable[[], Any]],
    runs: int = 20,
    warmup: int = 3,
    rotate: bool = True,
    context: Callable[[], AbstractContextManager[Any]] = torch.no_grad,
    threads: int | None = None,
    count_faults: bool = False,
) -> Timings:
    """Time callables interleaved: each repetition calls every one of them once.

    Args:
        fns: name -> callable without arguments.
        runs: timed repetitions (>= 1).
        warmup: untimed repetitions before timing (>= 0).
        rotate: rotate the order by one per repetition (warm-up included), so that no callable
            always runs right after the same other one; ``False`` keeps the mapping's order.
        context: factory of the context everything runs under, e.g. ``torch.no_grad``
            (default), ``torch.inference_mode`` or ``torch.enable_grad`` (training steps).
        threads: ``torch.set_num_threads`` value during the measurement (restored afterwards);
            ``None`` keeps the current setting.
        count_faults: also record the minor page faults of each timed call (Unix only).

    Returns:
        All timed samples; :meth:`Timings.medians` gives the usual summary.

    Raises:
        ValueError: ``runs < 1``, ``warmup < 0`` or ``threads < 1``.
        RuntimeError: ``count_faults`` on a platform without ``resource.getrusage``.
    """
    _check_repetitions(runs, warmup, threads)
    if count_faults and resource is None:
        raise RuntimeError("counting page faults needs the resource module (Unix only)")
    names = list(fns)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    faults: dict[str, list[int]] = {n: [] for n in names} if count_faults else {}
    old_threads = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        with context():
            for rep in range(warmup + runs):
                shift = rep % len(names) if rotate and names else 0
                for name in names[shift:] + names[:shift]:
                    if rep < warmup:
                        fns[name]()
                        continue
                    f0 = _minor_faults() if count_faults else 0
                    start = time.perf_counter()
                    fns[name]()
                    seconds[name].append(time.perf_counter() - start)
                    if count_faults:
                        faults[name].append(_minor_faults() - f0)
    finally:
        torch.set_num_threads(old_threads)
    return Timings(seconds, faults)


def measure_latency(
    models: Mapping[str, Callable[[Tensor], Any]],
    inputs: Mapping[str, Tensor] | Tensor,
    runs: int = 20,
    warmup: int = 3,
    threads: int | None = None,
) -> dict[str, float]:
    """Median wall-clock latency (seconds) of each model, measured interleaved.

    Each repetition runs every model once, in an order rotated by one per repetition, so that
    load changes on a shared machine affect all models alike. Models run under
    ``torch.no_grad()``; ``nn.Module`` models are put in eval mode (and restored afterwards).

    Args:
        models: name -> model (or any callable taking one tensor).
        inputs: one tensor for all models, or name -> tensor.
        runs: timed repetitions per model (>= 1); the median is reported.
        warmup: untimed repetitions per model before timing.
        threads: ``torch.set_num_threads`` value during the measurement (restored afterwards);
            ``None`` keeps the current setting.
    """
    _check_repetitions(runs, warmup, threads)
    names = list(models)
    if not names:
        return {}
    per_model = inputs if isinstance(inputs, Mapping) else dict.fromkeys(names, inputs)
    missing = [n for n in names if n not in per_model]
    if missing:
        raise ValueError(f"no input for models {missing}")
    flags = [
        (m, m.training) for model in models.values() if isinstance(model, nn.Module) for m in model.modules()
    ]
    try:
        for model in models.values():
            if isinstance(model, nn.Module):
                model.eval()
        calls = {n: partial(models[n], per_model[n]) for n in names}
        return time_interleaved(calls, runs=runs, warmup=warmup, threads=threads).medians()
    finally:
        for m, training in flags:
            m.training = training
