"""Training loop for the GhostNet-FPN detectors (single process or ``torchrun``).

:func:`train` runs a whole job from a :class:`ghostdet.config.TrainConfig`: data (the embedded
synthetic set when no data path is configured), model, optimizer, per-iteration lr schedule
(linear warm-up + multistep or cosine), optional AMP, per-epoch atomic checkpoints, COCO
evaluation gathered across ranks, ``metrics.json``, TensorBoard events and resuming.

Output directory::

    config.yaml        resolved config (re-run with --config OUTPUT_DIR/config.yaml)
    checkpoint.pth     latest epoch (model, optimizer, lr_scheduler, scaler, epoch, rng, ...)
    best.pth           the checkpoint with the best COCO AP so far
    metrics.json       12 COCO stats per evaluation, "final" and "best"
    detections.json    COCO results of the last evaluation (dataset category ids)
    log.txt            the console log
    tensorboard/       losses, lr, AP metrics, validation images with predicted boxes
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler, SequentialSampler

from ghostdet.config import TrainConfig, save_config
from ghostdet.distributed import (
    DistInfo,
    all_gather_objects,
    barrier,
    cleanup_distributed,
    init_distributed,
    reduce_mean,
)
from ghostdet.engine.checkpoint import (
    CHECKPOINT_FORMAT,
    atomic_save,
    checkpoint_backbone,
    get_rng_state,
    load_checkpoint,
    resolve_resume_path,
    set_rng_state,
)
from ghostdet.engine.logger import ProgressLog, RunLogger, atomic_write_json, stdout_is_tty
from ghostdet.engine.signals import Terminated, sigterm_as_interrupt
from ghostdet.models.weights import WeightsMismatchError, load_strict

__all__ = [
    "LRSchedule",
    "NonFiniteLossError",
    "autocast",
    "backward_step",
    "begin_run",
    "best_entry",
    "build_datasets",
    "build_model",
    "build_optimizer",
    "build_solver",
    "config_differences",
    "configure_threads",
    "evaluate",
    "finish_run",
    "open_tensorboard",
    "restore_training_state",
    "run_in_process_group",
    "run_training_job",
    "save_epoch",
    "seed_everything",
    "train",
    "train_one_epoch",
    "training_state",
    "wrap_for_training",
]

T = TypeVar("T")

# Config keys that may change between a run and its resumption without breaking "exact" resume.
_RESUME_FREE_KEYS = {
    "epochs", "output_dir", "resume", "print_freq", "workers", "device", "eval_every", "threads",
    "vis_images", "vis_score_thresh", "strict_data",
}  # fmt: skip


_EPOCH_META = {"loss", "iters", "images", "seconds", "images_per_s", "lr"}


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the message names the batch's image ids."""


# ----------------------------------------------------------------------------- building blocks
def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    """The detector of ``cfg`` with ``num_classes`` classes (incl. background).

    Args:
        cfg: uses ``detector``, ``backbone``, ``width``, ``weights_backbone``, ``trainable_backbone_layers``,
            ``min_size``, ``max_size`` and ``model_kwargs``.
        num_classes: classes including background.
    """
    from ghostdet.models import get_model

    kwargs: dict[str, Any] = dict(cfg.model_kwargs)
    if cfg.min_size is not None:
        kwargs["min_size"] = cfg.min_size
    if cfg.max_size is not None:
        kwargs["max_size"] = cfg.max_size
    return get_model(
        cfg.builder,
        num_classes=num_classes,
        width=cfg.width,
        weights_backbone=cfg.weights_backbone,
        trainable_backbone_layers=cfg.trainable_backbone_layers,
        **kwargs,
    )


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
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


def _synthetic_paths(cfg: TrainConfig, info: DistInfo, log: RunLogger) -> dict[str, str]:
    from ghostdet.data import ensure_synthetic_coco

    s = cfg.synthetic
    kwargs = s.generator_kwargs()
    log(f"data: embedded synthetic shapes at {s.root} ({s.num_train} train / {s.num_val} val images)")
    # every rank calls it: ensure_synthetic_coco serialises the generation with a lock file
    return ensure_synthetic_coco(s.root, verbose=info.is_main, **kwargs)


def build_datasets(cfg: TrainConfig, info: DistInfo | None = None, log: RunLogger | None = None) -> tuple:
    """``(train_dataset, val_dataset)`` of ``cfg`` (generating the synthetic data if needed).

    Raises:
        FileNotFoundError / ValueError: missing paths (the message names the expected layout).
        ghostdet.data.DataError: a malformed annotation file, invalid entries with
            ``cfg.strict_data``, or a split without images.
    """
    from ghostdet.data import build_coco_datasets, build_transforms

    info = info or DistInfo(0, 1, 0, torch.device("cpu"), False)
    log = log or RunLogger(enabled=False)
    if cfg.uses_synthetic():
        p = _synthetic_paths(cfg, info, log)
        paths = {k: p[k] for k in ("train_images", "train_ann", "val_images", "val_ann")}
    else:
        paths = {
            "data_path": cfg.data_path,
            "train_images": cfg.train_images,
            "train_ann": cfg.train_ann,
            "val_images": cfg.val_images,
            "val_ann": cfg.val_ann,
        }
    train_ds, val_ds = build_coco_datasets(
        **paths,
        train_transforms=build_transforms(True, cfg.augment, seed=cfg.seed + info.rank),
        val_transforms=build_transforms(False),
        drop_empty_train=cfg.drop_empty,
        strict=cfg.strict_data,
    )
    log(f"{train_ds.report.summary()}\n{val_ds.report.summary()}")  # what was skipped, by class
    return train_ds, val_ds


class _Loader:
    """A DataLoader wrapper that counts the unreadable images its batches dropped."""

    def __init__(self, loader: DataLoader, limit: int | None = None) -> None:
        self.loader = loader
        self.limit = limit
        self.skipped = 0

    def __len__(self) -> int:
        n = len(self.loader)
        return n if self.limit is None else min(n, self.limit)

    def __iter__(self) -> Iterator[tuple[tuple, tuple]]:
        for i, batch in enumerate(self.loader):
            if self.limit is not None and i >= self.limit:
                break
            self.skipped += int(getattr(batch, "skipped", 0))
            yield batch[0], batch[1]


def _make_loaders(
    cfg: TrainConfig, info: DistInfo, train_ds: Any, val_ds: Any
) -> tuple[Any, DataLoader, Any]:
    from ghostdet.data import GroupedBatchSampler, collate_fn, create_aspect_ratio_groups

    # A DistributedSampler also in single-process runs: its shuffle order is a pure function of
    # (seed, epoch), which makes resumed runs see the same batches as uninterrupted ones.
    train_sampler = DistributedSampler(
        train_ds, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=cfg.seed
    )
    groups = create_aspect_ratio_groups(train_ds.aspect_ratios(), k=cfg.aspect_ratio_group_factor)
    batch_sampler = GroupedBatchSampler(train_sampler, groups, cfg.batch_size)
    pin = info.device.type == "cuda"
    train_loader = DataLoader(
        train_ds,
        batch_sampler=batch_sampler,
        num_workers=cfg.workers,
        collate_fn=collate_fn,
        pin_memory=pin,
    )
    if info.distributed:
        val_sampler: Any = DistributedSampler(
            val_ds, num_replicas=info.world_size, rank=info.rank, shuffle=False
        )
    else:
        val_sampler = SequentialSampler(val_ds)
    val_groups = create_aspect_ratio_groups(val_ds.aspect_ratios(), k=cfg.aspect_ratio_group_factor)
    val_loader = DataLoader(
        val_ds,
        batch_sampler=GroupedBatchSampler(val_sampler, val_groups, cfg.batch_size),
        num_workers=cfg.workers,
        collate_fn=collate_fn,
        pin_memory=pin,
    )
    return batch_sampler, train_loader, val_loader


def _steps_this_epoch(batch_sampler: Any, epoch: int) -> int:
    """Iterations of ``epoch`` (0-based): the minimum over ranks, so every rank steps alike."""
    batch_sampler.set_epoch(epoch)
    return int(min(all_gather_objects(len(batch_sampler))))


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


def _to_device(targets: Sequence[Mapping[str, Any]], device: torch.device) -> list[dict[str, Any]]:
    return [{k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in t.items()} for t in targets]


# ----------------------------------------------------------------------------- epoch loops
def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    loader: Any,
    info: DistInfo,
    epoch: int,
    cfg: TrainConfig,
    log: RunLogger,
    writer: Any = None,
    global_step: int = 0,
) -> dict[str, float]:
    """Train one epoch.

    Args:
        model: the (possibly DDP-wrapped) detector in train mode.
        optimizer, scheduler, scaler: stepped every iteration (``scheduler`` per iteration).
        loader: yields ``(images, targets)``; ``len(loader)`` iterations are run.
        info: process placement.
        epoch: 1-based epoch number (for logs).
        cfg: uses ``epochs``, ``amp``, ``clip_grad_norm``, ``print_freq``.
        log: logger (main rank).
        writer: TensorBoard SummaryWriter or ``None``.
        global_step: iterations done before this epoch (TensorBoard x axis).

    Returns:
        mean of every loss term and ``loss``, plus ``iters``, ``images``, ``seconds``,
        ``images_per_s``, ``lr``.

    Raises:
        NonFiniteLossError: a NaN/inf loss (the message names the batch's image ids on every rank).
        ghostdet.data.DataError: the epoch had no usable batch (every image unreadable).
    """
    model.train()
    sums: dict[str, float] = {}
    n_iters = n_images = 0
    start = time.perf_counter()
    progress = ProgressLog(
        loader, len(loader), f"epoch {epoch}/{cfg.epochs}", log, cfg.print_freq, enabled=info.is_main
    )
    for images, targets in progress:
        if len(images) == 0:  # every image of the batch was unreadable
            continue
        images = [img.to(info.device, non_blocking=True) for img in images]
        targets_d = _to_device(targets, info.device)
        with autocast(info.device, cfg.amp):
            loss_dict = model(images, targets_d)
        loss_dict = {k: v.float() for k, v in loss_dict.items()}
        losses = sum(loss_dict.values())
        reduced = reduce_mean(loss_dict)
        loss_value = float(sum(reduced.values()))
        if not math.isfinite(loss_value):
            ids = [i for r in all_gather_objects([int(t["image_id"]) for t in targets]) for i in r]
            terms = ", ".join(f"{k}={float(v):.4g}" for k, v in reduced.items())
            raise NonFiniteLossError(
                f"non-finite loss {loss_value} at epoch {epoch}, iteration {n_iters + 1} ({terms}); "
                f"batch image ids: {ids}. Training stopped; the last good checkpoint is kept "
                "(try a lower --lr, more --warmup-iters or clip_grad_norm)"
            )
        backward_step(losses, model, optimizer, scaler, cfg.clip_grad_norm)
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()

        n_iters += 1
        n_images += len(images) * info.world_size
        for k, v in reduced.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        sums["loss"] = sums.get("loss", 0.0) + loss_value
        step = global_step + n_iters
        if n_iters % cfg.print_freq == 0 or n_iters == 1:
            progress.set_postfix({"loss": f"{loss_value:.4f}", "lr": f"{lr:.3g}"})
            if writer is not None:
                for k, v in reduced.items():
                    writer.add_scalar(f"train/{k}", float(v), step)
                writer.add_scalar("train/loss", loss_value, step)
                writer.add_scalar("train/lr", lr, step)
    if n_iters == 0:
        from ghostdet.data import DataError

        skipped = int(getattr(loader, "skipped", 0))
        raise DataError(
            f"epoch {epoch} had no usable batch: every image of its {len(loader)} batch(es) was "
            f"unreadable ({skipped} skipped; the warnings above name them); fix or remove those images"
        )
    seconds = time.perf_counter() - start
    out = {k: v / max(1, n_iters) for k, v in sums.items()}
    out.update(
        iters=float(n_iters),
        images=float(n_images),
        seconds=seconds,
        images_per_s=n_images / seconds if seconds > 0 else 0.0,
        lr=float(optimizer.param_groups[0]["lr"]),
    )
    return out


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: Any, val_ds: Any, info: DistInfo, amp: bool = False
) -> tuple[dict[str, float], Any, dict[str, float]]:
    """COCO bbox evaluation of ``model`` over ``loader``, gathered across ranks.

    Args:
        model: the detector (unwrapped from DDP).
        loader: val loader yielding ``(images, targets)``.
        val_ds: the val dataset (``coco``, ``label_to_cat_id``).
        info: process placement.
        amp: run under autocast.

    Returns:
        ``(stats, evaluator, speed)``: the 12 COCO stats (same on every rank), the
        :class:`ghostdet.evaluation.CocoEvaluator` with every rank's results, and
        ``{"images", "seconds", "images_per_s"}`` of this process.
    """
    from ghostdet.evaluation import CocoEvaluator, run_inference

    evaluator = CocoEvaluator(val_ds.coco, val_ds.label_to_cat_id)
    with autocast(info.device, amp):
        speed = run_inference(
            model, loader, info.device, evaluator, progress=info.is_main and stdout_is_tty()
        )
    evaluator.synchronize()
    stats = evaluator.evaluate()
    return stats, evaluator, speed


@torch.no_grad()
def _log_val_images(
    model: nn.Module, val_ds: Any, cfg: TrainConfig, info: DistInfo, writer: Any, step: int
) -> None:
    """Draw the first ``cfg.vis_images`` val images with their predicted boxes into TensorBoard."""
    model.eval()
    n = min(cfg.vis_images, len(val_ds))
    for i in range(n):
        item = val_ds[i]
        if item is None:
            continue
        image, _ = item
        out = model([image.to(info.device)])[0]
        keep = out["scores"] >= cfg.vis_score_thresh
        boxes = out["boxes"][keep].cpu()
        labels = [
            f"{val_ds.category_names.get(int(lab), str(int(lab)))} {float(s):.2f}"
            for lab, s in zip(out["labels"][keep], out["scores"][keep])
        ]
        writer.add_image_with_boxes(f"val/image_{i}", image, boxes, step, labels=labels)


# ----------------------------------------------------------------------------- shared by both loops
# The detection loop below and the classification loop (ghostdet.engine.train_cls) build their
# runs from these: one copy of the checkpoint, RNG, solver, resume and TensorBoard logic.
def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def configure_threads(threads: int | None, info: DistInfo) -> None:
    """torch intra-op threads: ``threads``, or the CPU cores split over the processes of a CPU
    ``torchrun`` job (unless ``OMP_NUM_THREADS`` is set)."""
    if threads is not None:
        torch.set_num_threads(threads)
    elif info.distributed and info.device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // info.world_size))


def config_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Config keys (other than those free to change on resume) whose values differ, sorted."""
    return sorted(k for k in set(old) | set(new) if k not in _RESUME_FREE_KEYS and old.get(k) != new.get(k))


def begin_run(cfg: Any, info: DistInfo) -> tuple[Path, RunLogger, Path | None, dict[str, Any] | None]:
    """Process setup shared by the training loops: logger, threads, seed, the checkpoint to resume.

    The checkpoint is read before anything is built, so a bad one fails early.

    Args:
        cfg: a training config (``output_dir``, ``threads``, ``amp``, ``seed``, ``resume``, ``to_dict()``).
        info: process placement.

    Returns:
        ``(output_dir, log, resume_path or None, checkpoint dict or None)``.
    """
    out_dir = Path(cfg.output_dir)
    log = RunLogger(out_dir / "log.txt", enabled=info.is_main)
    configure_threads(cfg.threads, info)
    if cfg.amp and info.device.type == "cpu":
        log("amp on CPU: bfloat16 autocast (no GradScaler)")
    seed_everything(cfg.seed + info.rank)
    resume_path = resolve_resume_path(cfg.resume, out_dir)
    if resume_path is None:
        return out_dir, log, None, None
    ckpt = load_checkpoint(resume_path)
    diffs = config_differences(ckpt.get("config", {}), cfg.to_dict())
    if diffs:
        log(f"warning: resuming with a config that differs from the checkpoint's in: {', '.join(diffs)}")
    return out_dir, log, resume_path, ckpt


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
        "model": _unwrap(model).state_dict(),
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
        return max(history, key=lambda h: h[metric])
    return next((h for h in history if h["epoch"] == ckpt["best_epoch"]), None)


def wrap_for_training(model: nn.Module, info: DistInfo) -> nn.Module:
    """``model`` in DistributedDataParallel when the job is distributed (else ``model``)."""
    if not info.distributed:
        return model
    ddp_kw = {"device_ids": [info.device.index]} if info.device.type == "cuda" else {}
    return nn.parallel.DistributedDataParallel(model, **ddp_kw)


def open_tensorboard(out_dir: Path, info: DistInfo, global_step: int) -> Any:
    """A SummaryWriter in ``out_dir/tensorboard`` on rank 0 (``None`` elsewhere); events after
    ``global_step`` of an interrupted run are purged."""
    if not info.is_main:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(out_dir / "tensorboard"), purge_step=global_step or None)


def save_epoch(out_dir: Path, ckpt_doc: dict[str, Any], improved: bool, metrics_doc: dict[str, Any]) -> None:
    """Rank 0's end-of-epoch files: ``checkpoint.pth``, ``best.pth`` if improved, ``metrics.json``."""
    atomic_save(ckpt_doc, out_dir / "checkpoint.pth")
    if improved:
        atomic_save(ckpt_doc, out_dir / "best.pth")
    atomic_write_json(out_dir / "metrics.json", metrics_doc)


def finish_run(
    info: DistInfo, log: RunLogger, out_dir: Path, doc: dict[str, Any], start_epoch: int, epochs: int
) -> None:
    """Rank 0 writes the final ``metrics.json`` (and says so when a resumed run had nothing to do)."""
    if not info.is_main:
        return
    if start_epoch > epochs:
        log(f"nothing to do: the checkpoint already finished {start_epoch - 1} >= {epochs} epochs")
    atomic_write_json(out_dir / "metrics.json", doc)


def run_training_job(train_fn: Callable[[Any], Any], cfg: Any, prog: str) -> int:
    """Run ``train_fn(cfg)`` for a training tool and report how it ended.

    A NaN/inf loss is one ``prog: error: ...`` line and exit status 1; Ctrl-C (130) and SIGTERM
    (143, see :mod:`ghostdet.engine.signals`) say whether ``cfg.output_dir`` holds a checkpoint
    to resume from. Errors about the user's input propagate to :func:`ghostdet.cli.run_tool`.
    """
    try:
        train_fn(cfg)
    except NonFiniteLossError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        how = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
        ckpt = Path(cfg.output_dir) / "checkpoint.pth"
        if ckpt.is_file():
            print(f"{prog}: {how}; {ckpt} is kept: resume with --resume auto", file=sys.stderr)
        else:
            print(f"{prog}: {how} before the first checkpoint; nothing to resume", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    return 0


# ----------------------------------------------------------------------------- detection checkpoints
@dataclass
class _Run:
    """The state of a training job that its steps share (built by :func:`_set_up`).

    ``best`` is the ``history`` entry with the highest AP so far (``None`` before the first
    evaluation); ``metrics`` are the stats of the last evaluation.
    """

    cfg: TrainConfig
    info: DistInfo
    out_dir: Path
    log: RunLogger
    train_ds: Any
    val_ds: Any
    batch_sampler: Any
    train_loader: DataLoader
    val_loader: DataLoader
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    writer: Any = None
    start_epoch: int = 1
    global_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    best: dict[str, Any] | None = None

    @property
    def best_ap(self) -> float:
        """AP of the best evaluation so far (-1 before the first)."""
        return float(self.best["AP"]) if self.best is not None else -1.0


def _checkpoint_dict(run: _Run, epoch: int) -> dict[str, Any]:
    train_ds = run.train_ds
    return {
        **training_state(run.model, run.optimizer, run.scheduler, run.scaler, epoch, run.global_step),
        "config": run.cfg.to_dict(),
        "detector": run.cfg.builder,
        "backbone": run.cfg.backbone,
        "width": float(run.cfg.width),
        "num_classes": int(train_ds.num_classes),
        "label_to_cat_id": {int(k): int(v) for k, v in train_ds.label_to_cat_id.items()},
        "category_names": {int(k): str(v) for k, v in train_ds.category_names.items()},
        "metrics": dict(run.metrics),
        "history": run.history,
        "best_ap": run.best_ap,
        "best_epoch": int(run.best["epoch"]) if run.best is not None else 0,
    }


def _metrics_doc(history: list[dict[str, Any]], best: dict[str, Any] | None, done: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {"evaluations": history}
    if best is not None:
        doc["best"] = best
    if done and history:
        doc["final"] = history[-1]
    return doc


# ----------------------------------------------------------------------------- the job
def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run a training job (see the module docstring for the output directory).

    Launched by ``torchrun``, every process calls this; rank 0 logs and writes files.

    Args:
        cfg: a validated config (see :func:`ghostdet.config.load_config`).

    Returns:
        the ``metrics.json`` document: ``evaluations`` (one dict per evaluation: ``epoch``, the
        12 COCO stats, training loss and speed), ``best`` and ``final``.

    Raises:
        NonFiniteLossError: the loss became NaN/inf (nothing is written for that epoch).
        FileNotFoundError / ValueError: bad data paths or config, or a ``resume`` checkpoint of
            another detector, backbone, width or class count.
        KeyboardInterrupt: Ctrl-C, or :class:`~ghostdet.engine.signals.Terminated` for SIGTERM;
            a checkpoint being written is removed, the last complete one is kept.
    """
    return run_in_process_group(_train, cfg)


def run_in_process_group(job: Callable[[Any, DistInfo], T], cfg: Any) -> T:
    """``job(cfg, info)`` inside this process's place in a (possibly ``torchrun``) job.

    Joins the process group (``cfg.device`` picks the backend), turns SIGTERM into
    :class:`~ghostdet.engine.signals.Terminated` for the duration, and leaves the group it
    created afterwards. Shared by the detection and the classification loops.
    """
    with sigterm_as_interrupt():
        info = init_distributed(cfg.device)
        try:
            return job(cfg, info)
        finally:
            cleanup_distributed(info)


def _train(cfg: TrainConfig, info: DistInfo) -> dict[str, Any]:
    run, resume_path, ckpt = _set_up(cfg, info)
    if ckpt is not None:
        _resume(run, resume_path, ckpt)
    _start(run)
    try:
        for epoch in range(run.start_epoch, cfg.epochs + 1):
            stats, skipped = _train_epoch(run, epoch)
            due = epoch == cfg.epochs or (cfg.eval_every > 0 and epoch % cfg.eval_every == 0)
            improved = _evaluate_epoch(run, epoch, stats, skipped) if due else False
            _save_epoch(run, epoch, improved)
    finally:
        if run.writer is not None:
            run.writer.close()
    return _report(run)


def _check_resumable(
    ckpt: Mapping[str, Any], cfg: TrainConfig, path: Path, num_classes: int | None = None
) -> None:
    """Refuse, in one line, a checkpoint of another detector, backbone, width or class count."""
    pairs = [
        ("detector", ckpt.get("detector"), cfg.builder),
        ("backbone", checkpoint_backbone(ckpt), cfg.backbone),
        ("width", ckpt.get("width"), cfg.width),
        ("classes incl. background", ckpt.get("num_classes"), num_classes),
    ]
    for what, saved, wanted in pairs:
        if saved is None or wanted is None or saved == wanted:
            continue
        numbers = isinstance(saved, (int, float)) and isinstance(wanted, (int, float))
        if numbers and math.isclose(saved, wanted):
            continue
        raise ValueError(
            f"cannot resume from {path}: it was trained with {what} {saved!r}, this run has {wanted!r}: "
            "resume with the checkpoint's settings, or start anew (another --output-dir or --resume none)"
        )


def _set_up(cfg: TrainConfig, info: DistInfo) -> tuple[_Run, Path | None, dict[str, Any] | None]:
    """Step 1: runtime settings, the resume checkpoint, data, model, optimizer and lr schedule."""
    out_dir, log, resume_path, ckpt = begin_run(cfg, info)
    if ckpt is not None:
        _check_resumable(ckpt, cfg, resume_path)  # before anything is built, so a bad one fails early

    train_ds, val_ds = build_datasets(cfg, info, log)
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out_dir / "config.yaml")
    batch_sampler, train_loader, val_loader = _make_loaders(cfg, info, train_ds, val_ds)
    log(
        f"{cfg.builder} width {cfg.width:g}: {train_ds.num_classes - 1} classes, {len(train_ds)} train / "
        f"{len(val_ds)} val images, {info.world_size} process(es) on {info.device}, "
        f"batch {cfg.batch_size}/process, {torch.get_num_threads()} threads, output {out_dir}"
    )

    model = build_model(cfg, train_ds.num_classes).to(info.device)
    optimizer, scheduler, scaler = build_solver(cfg, model, _steps_this_epoch(batch_sampler, 0))
    run = _Run(
        cfg, info, out_dir, log, train_ds, val_ds, batch_sampler, train_loader, val_loader, model, optimizer,
        scheduler, scaler,
    )  # fmt: skip
    return run, resume_path, ckpt


def _resume(run: _Run, path: Path | None, ckpt: Mapping[str, Any]) -> None:
    """Step 2: continue from a checkpoint (weights, optimizer, lr position, RNGs, history)."""
    _check_resumable(ckpt, run.cfg, path, run.train_ds.num_classes)
    try:
        run.start_epoch, run.global_step = restore_training_state(
            ckpt, run.model, run.optimizer, run.scheduler, run.scaler
        )
    except WeightsMismatchError as e:
        raise ValueError(f"cannot resume from {path}: its weights do not fit this run's model: {e}") from None
    run.history = list(ckpt.get("history", []))
    run.metrics = dict(ckpt.get("metrics", {}))
    run.best = best_entry(ckpt, run.history, "AP")
    run.log(f"resumed from {path} (epoch {ckpt['epoch']} done, step {run.global_step})")


def _start(run: _Run) -> None:
    """Wrap the model in DDP when distributed; open TensorBoard on the main rank."""
    run.model = wrap_for_training(run.model, run.info)
    run.writer = open_tensorboard(run.out_dir, run.info, run.global_step)


def _train_epoch(run: _Run, epoch: int) -> tuple[dict[str, float], int]:
    """Step 3: one training epoch and its log line; returns its stats and the images skipped."""
    cfg, info, writer = run.cfg, run.info, run.writer
    loader = _Loader(run.train_loader, _steps_this_epoch(run.batch_sampler, epoch - 1))
    stats = train_one_epoch(
        run.model, run.optimizer, run.scheduler, run.scaler, loader, info, epoch, cfg, run.log, writer,
        run.global_step,
    )  # fmt: skip
    run.global_step += int(stats["iters"])
    skipped = int(sum(all_gather_objects(loader.skipped)))
    run.log(
        f"epoch {epoch}/{cfg.epochs}: loss {stats['loss']:.4f} ("
        + ", ".join(f"{k} {v:.4f}" for k, v in stats.items() if k not in _EPOCH_META)
        + f"), {int(stats['iters'])} iters, {int(stats['images'])} images in {stats['seconds']:.0f}s "
        f"({stats['images_per_s']:.1f} img/s), lr {stats['lr']:.3g}, "
        f"skipped {skipped} unreadable image(s)"
    )
    if writer is not None:
        writer.add_scalar("train/epoch_loss", stats["loss"], run.global_step)
        writer.add_scalar("train/images_per_s", stats["images_per_s"], run.global_step)
    return stats, skipped


def _evaluate_epoch(run: _Run, epoch: int, stats: Mapping[str, float], skipped: int) -> bool:
    """Step 4: COCO evaluation, its history entry, log line and outputs; True if AP improved."""
    info, writer = run.info, run.writer
    val_loader = _Loader(run.val_loader)
    metrics, evaluator, speed = evaluate(_unwrap(run.model), val_loader, run.val_ds, info, run.cfg.amp)
    val_skipped = int(sum(all_gather_objects(val_loader.skipped)))
    entry = {
        "epoch": epoch,
        **{k: float(v) for k, v in metrics.items()},
        "train_loss": float(stats["loss"]),
        "train_images_per_s": float(stats["images_per_s"]),
        "eval_images_per_s": float(speed["images_per_s"] * info.world_size),
        "train_skipped_images": skipped,
        "val_skipped_images": val_skipped,
        "val_images_evaluated": len(evaluator.img_ids),
    }
    run.metrics = metrics
    run.history.append(entry)
    improved = metrics["AP"] > run.best_ap
    if improved:
        run.best = entry
    run.log(
        f"eval epoch {epoch}: AP {metrics['AP']:.4f} AP50 {metrics['AP50']:.4f} "
        f"AP75 {metrics['AP75']:.4f} APs {metrics['APs']:.3f} APm {metrics['APm']:.3f} "
        f"APl {metrics['APl']:.3f} ({speed['images_per_s'] * info.world_size:.1f} img/s"
        + (f", skipped {val_skipped} unreadable" if val_skipped else "")
        + ")"
    )
    if info.is_main:
        evaluator.write_results(run.out_dir / "detections.json")
        if writer is not None:
            for k, v in metrics.items():
                writer.add_scalar(f"val/{k}", v, run.global_step)
            if run.cfg.vis_images:
                _log_val_images(_unwrap(run.model), run.val_ds, run.cfg, info, writer, run.global_step)
            writer.flush()
    return improved


def _save_epoch(run: _Run, epoch: int, improved: bool) -> None:
    """Step 5: the epoch's checkpoint (and best.pth) and metrics.json, then wait for every rank."""
    if run.info.is_main:
        metrics_doc = _metrics_doc(run.history, run.best, epoch == run.cfg.epochs)
        save_epoch(run.out_dir, _checkpoint_dict(run, epoch), improved, metrics_doc)
    barrier()


def _report(run: _Run) -> dict[str, Any]:
    """Step 6: the final metrics.json and summary line; returns the metrics document."""
    doc = _metrics_doc(run.history, run.best, True)
    finish_run(run.info, run.log, run.out_dir, doc, run.start_epoch, run.cfg.epochs)
    if run.history:  # (log is silent off rank 0)
        f = run.history[-1]
        run.log(
            f"done: final AP {f['AP']:.4f} AP50 {f['AP50']:.4f} (best AP {run.best_ap:.4f}), in {run.out_dir}"
        )
    return doc
