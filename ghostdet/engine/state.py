"""The resumable state of a training run: what a checkpoint holds to continue exactly.

:func:`training_state` collects model, optimizer, lr position, scaler, epoch and RNG states (each
loop adds its task's entries); :func:`restore_training_state` loads them back, keeping this run's
lr schedule; :func:`best_entry` finds the best evaluation of a checkpoint's history. Shared by the
detection and the classification loops.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ghostdet.engine.checkpoint import CHECKPOINT_FORMAT, get_rng_state, set_rng_state
from ghostdet.models.weights import load_strict

__all__ = [
    "best_checkpoint",
    "best_entry",
    "entry_score",
    "evaluations_since_best",
    "match_param_layout",
    "patience_spent",
    "restore_training_state",
    "training_state",
    "unwrap_model",
]


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside DistributedDataParallel (``model`` itself when not wrapped)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def training_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    epoch: int,
    global_step: int,
) -> dict[str, Any]:
    """The resumable part of a checkpoint (both loops add their task's entries to it)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "model": unwrap_model(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": int(epoch),
        "global_step": int(global_step),
        "rng": get_rng_state(),
    }


def _restore_scheduler(scheduler: torch.optim.lr_scheduler.LambdaLR, state: Mapping[str, Any]) -> None:
    """Restore the scheduler's position (iteration count, last lrs) but not its schedule.

    The schedule is this run's (e.g. a longer ``--epochs``): a ``None`` lr_lambda entry tells
    ``LambdaLR.load_state_dict`` to leave that lambda as it is.
    """
    position = {k: v for k, v in state.items() if k != "lr_lambdas"}
    position["lr_lambdas"] = [None] * len(scheduler.lr_lambdas)
    scheduler.load_state_dict(position)


def match_param_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give each per-parameter state tensor (Adam's moments, SGD's momentum) its parameter's
    memory layout.

    ``Optimizer.load_state_dict`` keeps the layout the state was saved in. The fused and foreach
    kernels pair parameter and state elements by storage order, so a run resumed with another
    ``channels_last`` setting than the one that saved it would silently update the wrong elements.
    """
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            for key, value in state.items():
                if isinstance(value, Tensor) and value.shape == p.shape and value.stride() != p.stride():
                    state[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)


def restore_training_state(
    ckpt: Mapping[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    scaler: torch.amp.GradScaler,
) -> tuple[int, int]:
    """Load :func:`training_state`'s entries back; returns ``(start_epoch, global_step)``.

    The scheduler keeps this run's schedule (e.g. a longer ``epochs``); only its position comes
    from the checkpoint.
    """
    load_strict(model, ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    match_param_layout(optimizer)
    _restore_scheduler(scheduler, ckpt["lr_scheduler"])
    if ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    if "rng" in ckpt:
        set_rng_state(ckpt["rng"])
    return int(ckpt["epoch"]) + 1, int(ckpt.get("global_step", 0))


def best_entry(
    ckpt: Mapping[str, Any], history: list[dict[str, Any]], metric: str = "AP"
) -> dict[str, Any] | None:
    """The checkpoint's best evaluation: the ``history`` entry of its ``best_epoch``.

    Args:
        ckpt: the checkpoint (``best_epoch``: 0 before the first evaluation).
        history: its per-evaluation entries (each with ``epoch`` and ``metric``).
        metric: the key that ranks entries, for checkpoints written before ``best_epoch`` was
            recorded (the first highest wins).
    """
    if not history:
        return None
    if "best_epoch" not in ckpt:
        return max(history, key=lambda h: entry_score(h, metric)[0])
    return next((h for h in history if h["epoch"] == ckpt["best_epoch"]), None)


def entry_score(entry: Mapping[str, Any], metric: str) -> tuple[float, str]:
    """``(score, source)`` of an evaluation entry: its ``metric``, or its EMA's (``entry["ema"]``)
    where that is higher; ``source`` is ``"ema"`` or ``"model"``."""
    raw = float(entry[metric])
    ema = (entry.get("ema") or {}).get(metric)
    if ema is not None and float(ema) > raw:
        return float(ema), "ema"
    return raw, "model"


def evaluations_since_best(history: list[Mapping[str, Any]], best: Mapping[str, Any] | None) -> int:
    """Evaluations of ``history`` after the ``best`` one (all of them when there is none)."""
    if best is None:
        return len(history)
    last = max((i for i, h in enumerate(history) if h["epoch"] == best["epoch"]), default=-1)
    return len(history) - 1 - last


def patience_spent(
    patience: int | None, history: list[Mapping[str, Any]], best: Mapping[str, Any] | None
) -> bool:
    """Whether ``patience`` evaluations have passed without a better one (early stopping)."""
    return patience is not None and bool(history) and evaluations_since_best(history, best) >= patience


def best_checkpoint(ckpt_doc: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The ``best.pth`` document of an epoch's checkpoint whose best weights are ``source``.

    With ``"ema"`` it is the checkpoint itself: the loaders read ``state_dict_ema`` first
    (:func:`ghostdet.models.weights.clean_state_dict`). With ``"model"`` the EMA entries are left
    out, so that they read the raw ``model``. ``best_source`` says which.
    """
    doc = dict(ckpt_doc)
    if source != "ema":
        doc.pop("state_dict_ema", None)
        doc.pop("ema_updates", None)
    doc["best_source"] = source
    return doc
