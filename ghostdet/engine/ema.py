"""Exponential moving average (EMA) of a model's weights, on ``torch.optim.swa_utils.AveragedModel``.

:class:`ModelEma` is torch's ``AveragedModel`` with the EMA update of
``torch.optim.swa_utils.get_ema_multi_avg_fn``, whose decay warms up with the number of updates as
timm's and ultralytics' EMAs do: ``decay_t = decay * (1 - exp(-t / warmup))``, so that the average
follows the fast-changing weights of the first steps instead of remembering the random init.

BatchNorm's running statistics are averaged like the parameters (``use_buffers=True``): the EMA
model evaluates with the average of the statistics its weights were trained with, no
``update_bn`` pass is needed. Its state for a checkpoint is the averaged model's plain state dict
(``state_dict_ema``, the entry :func:`ghostdet.models.weights.clean_state_dict` reads first)
plus the update count (``ema_updates``); :meth:`ModelEma.load` restores both exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

__all__ = ["ModelEma", "build_ema", "restore_ema"]


class ModelEma(AveragedModel):
    """An EMA of ``model``'s parameters and buffers with a warmed-up decay.

    Call :meth:`update_parameters` after every optimizer step; evaluate :attr:`module`.

    Args:
        model: the model being trained (unwrapped from DDP); it is deep-copied.
        decay: the decay the warm-up tends to, in (0, 1).
        warmup: the warm-up's time constant in updates (0: ``decay`` from the first update).
    """

    def __init__(self, model: nn.Module, decay: float, warmup: int = 0) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        super().__init__(model, multi_avg_fn=self._average, use_buffers=True)
        self.decay = float(decay)
        self.warmup = int(warmup)
        self._updates = 0
        for p in self.module.parameters():
            p.requires_grad_(False)

    def decay_at(self, updates: int) -> float:
        """The decay of the update that follows ``updates`` averaged ones."""
        if self.warmup <= 0:
            return self.decay
        return self.decay * (1.0 - math.exp(-updates / self.warmup))

    def _average(self, ema: list[Tensor], current: list[Tensor], n_averaged: Tensor) -> None:
        # AveragedModel passes its update count as a tensor on the weights' device; the count read
        # on the CPU in update_parameters gives the same number without a device sync
        get_ema_multi_avg_fn(self.decay_at(self._updates))(ema, current, n_averaged)

    def update_parameters(self, model: nn.Module) -> None:
        """Average ``model``'s current parameters and buffers in (the first call copies them)."""
        self._updates = int(self.n_averaged)
        super().update_parameters(model)

    @property
    def updates(self) -> int:
        """Updates done so far."""
        return int(self.n_averaged)

    def state(self) -> dict[str, Any]:
        """The checkpoint entries: ``state_dict_ema`` (the averaged model's plain state dict) and
        ``ema_updates``."""
        return {"state_dict_ema": self.module.state_dict(), "ema_updates": self.updates}

    def load(self, ckpt: Mapping[str, Any]) -> None:
        """Restore :meth:`state`'s entries (strictly: the keys must be this model's)."""
        self.module.load_state_dict(ckpt["state_dict_ema"])
        with torch.no_grad():
            self.n_averaged.fill_(int(ckpt.get("ema_updates", 1)))


def build_ema(cfg: Any, model: nn.Module) -> ModelEma | None:
    """The :class:`ModelEma` of ``model`` when ``cfg.ema`` (``ema_decay``, ``ema_warmup``), else ``None``."""
    if not getattr(cfg, "ema", False):
        return None
    return ModelEma(model, cfg.ema_decay, cfg.ema_warmup)


def restore_ema(ema: ModelEma | None, ckpt: Mapping[str, Any], model: nn.Module) -> str:
    """Restore ``ema`` from a checkpoint; returns what happened, for the log (``""``: no EMA).

    A checkpoint without an EMA (written without ``ema``) starts it from the resumed ``model``.
    """
    if ema is None:
        return ""
    if ckpt.get("state_dict_ema") is not None and "ema_updates" in ckpt:
        ema.load(ckpt)
        return f"EMA restored ({ema.updates} updates)"
    ema.module.load_state_dict(model.state_dict())
    with torch.no_grad():
        ema.n_averaged.zero_()
    return "the checkpoint has no EMA: it starts from the resumed weights"
