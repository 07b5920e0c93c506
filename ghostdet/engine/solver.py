"""The solver of both training loops: optimizer, per-iteration lr schedule, AMP and the update step.

:func:`build_solver` turns a config's solver keys (``opt``, ``lr``, ``lr_scheduler``, ``warmup_*``,
``amp``, ...) into ``(optimizer, LambdaLR, GradScaler)``; :func:`backward_step` is one update.
Shared by the detection loop (:mod:`ghostdet.engine.train`) and the classification loop
(:mod:`ghostdet.engine.train_cls`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["LRSchedule", "autocast", "backward_step", "build_optimizer", "build_solver"]


def build_optimizer(cfg: Any, model: nn.Module) -> torch.optim.Optimizer:
    """SGD (momentum) or AdamW over the trainable parameters; no weight decay on norms/biases."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cfg.opt == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    try:  # one fused kernel for all parameters: ~4x faster than the per-tensor loop on a CPU
        return torch.optim.AdamW(groups, lr=cfg.lr, fused=True)
    except (RuntimeError, ValueError):  # torch < 2.4 on CPU, or a device without the fused kernel
        return torch.optim.AdamW(groups, lr=cfg.lr)


class LRSchedule:
    """lr factor of a global iteration: linear warm-up times multistep or cosine decay.

    Used as the ``lr_lambda`` of ``torch.optim.lr_scheduler.LambdaLR`` stepped every iteration.
    Its attributes are plain numbers, so the scheduler's state dict stays ``weights_only``-safe.

    Args:
        kind: ``multistep`` or ``cosine``.
        iters_per_epoch: iterations in one epoch.
        epochs: total epochs.
        steps: epochs after which ``multistep`` multiplies by ``gamma``.
        gamma: multistep factor.
        warmup_iters: linear warm-up length.
        warmup_factor: factor at iteration 0.
        min_ratio: final factor of ``cosine``.
    """

    def __init__(
        self,
        kind: str,
        iters_per_epoch: int,
        epochs: int,
        steps: Sequence[int] = (),
        gamma: float = 0.1,
        warmup_iters: int = 0,
        warmup_factor: float = 0.001,
        min_ratio: float = 0.0,
    ) -> None:
        self.kind = kind
        self.iters_per_epoch = max(1, int(iters_per_epoch))
        self.total_iters = self.iters_per_epoch * int(epochs)
        self.steps = [int(s) for s in steps]
        self.gamma = float(gamma)
        self.warmup_iters = int(warmup_iters)
        self.warmup_factor = float(warmup_factor)
        self.min_ratio = float(min_ratio)

    def __call__(self, it: int) -> float:
        if self.kind == "multistep":
            epoch = it // self.iters_per_epoch  # 0-based epoch of this iteration
            factor = self.gamma ** sum(1 for s in self.steps if epoch >= s)
        else:
            t = min(it / max(1, self.total_iters), 1.0)
            factor = self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * t))
        if it < self.warmup_iters:
            alpha = it / self.warmup_iters
            factor *= self.warmup_factor * (1 - alpha) + alpha
        return factor


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """Mixed precision for ``device`` when ``enabled``: float16 on CUDA, bfloat16 on CPU."""
    if not enabled:
        return contextlib.nullcontext()
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def backward_step(
    loss: Tensor,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    clip_grad_norm: float | None = None,
) -> None:
    """One optimizer update from ``loss``: zero grads, (scaled) backward, optional clipping, step.

    Shared by the detection and the classification loops (:mod:`ghostdet.engine.train_cls`).
    """
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if clip_grad_norm is not None:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
    scaler.step(optimizer)
    scaler.update()


def build_solver(
    cfg: Any, model: nn.Module, iters_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR, torch.amp.GradScaler]:
    """``(optimizer, per-iteration LambdaLR over an LRSchedule, GradScaler)`` of a config's solver keys.

    Args:
        cfg: a training config (``opt``, ``lr``, ``momentum``, ``weight_decay``, ``lr_scheduler``,
            ``epochs``, ``lr_steps``, ``lr_gamma``, ``warmup_*``, ``min_lr_ratio``, ``amp``).
        model: the model, already on its device (the scaler is enabled for CUDA AMP only).
        iters_per_epoch: iterations of one epoch.
    """
    optimizer = build_optimizer(cfg, model)
    schedule = LRSchedule(
        cfg.lr_scheduler, iters_per_epoch, cfg.epochs, cfg.lr_steps, cfg.lr_gamma,
        cfg.warmup_iters, cfg.warmup_factor, cfg.min_lr_ratio,
    )  # fmt: skip
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    device_type = next((p.device.type for p in model.parameters()), "cpu")
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and device_type == "cuda")
    return optimizer, scheduler, scaler
