"""Training loop for the GhostNet-FPN detectors (single process or ``torchrun``).

:func:`train` runs a whole job from a :class:`ghostdet.config.TrainConfig`: data (the embedded
synthetic set when no data path is configured), model, optimizer, per-iteration lr schedule
(linear warm-up + multistep or cosine), optional AMP, per-epoch atomic checkpoints, COCO
evaluation gathered across ranks, ``metrics.json``, TensorBoard events and resuming.

This module is the detection loop itself (model, epoch, evaluation, the job's steps); what it
shares with the classification loop lives beside it: :mod:`~ghostdet.engine.run` (the job's
life: set-up, process group, files, exit status), :mod:`~ghostdet.engine.solver` (optimizer, lr
schedule, AMP step), :mod:`~ghostdet.engine.state` (the resumable state) and
:mod:`~ghostdet.engine.detection_data` (datasets and loaders).

Output directory::

    config.yaml        resolved config (re-run with --config OUTPUT_DIR/config.yaml)
    checkpoint.pth     latest epoch (model, optimizer, lr_scheduler, scaler, epoch, rng, ...;
                       with ``ema``: state_dict_ema, ema_updates)
    best.pth           the checkpoint with the best COCO AP so far (of the raw or the EMA
                       weights: best_source says which, and the loaders read those)
    metrics.json       12 COCO stats per evaluation (and the EMA's), "final", "best", "stopped_early"
    detections.json    COCO results of the last evaluation (dataset category ids)
    log.txt            the console log
    tensorboard/       losses, lr, AP metrics, validation images with predicted boxes
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ghostdet.config.detection import TrainConfig
from ghostdet.config.recipe import save_config
from ghostdet.engine.checkpoint import checkpoint_backbone
from ghostdet.engine.detection_data import CountingLoader, build_datasets, make_loaders, steps_this_epoch
from ghostdet.engine.ema import ModelEma, build_ema, restore_ema
from ghostdet.engine.logger import ProgressLog, RunLogger, stdout_is_tty
from ghostdet.engine.run import (
    NonFiniteLossError,
    begin_run,
    convert_sync_bn,
    describe_options,
    finish_run,
    open_tensorboard,
    run_in_process_group,
    save_epoch,
    wrap_for_training,
)
from ghostdet.engine.solver import Updater, autocast, build_solver
from ghostdet.engine.state import (
    best_checkpoint,
    best_entry,
    entry_score,
    evaluations_since_best,
    patience_spent,
    restore_training_state,
    training_state,
    unwrap_model,
)
from ghostdet.errors import CheckpointError
from ghostdet.models.weights import WeightsMismatchError
from ghostdet.utils.distributed import DistInfo, all_gather_objects, barrier, reduce_mean

__all__ = [
    "build_model",
    "evaluate",
    "train",
    "train_one_epoch",
]


_EPOCH_META = {"loss", "iters", "images", "seconds", "images_per_s", "lr"}


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
    if cfg.train_min_sizes is not None:  # several sizes: torchvision draws one per training image
        kwargs["min_size"] = cfg.train_min_sizes
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


def _to_device(targets: Sequence[Mapping[str, Any]], device: torch.device) -> list[dict[str, Any]]:
    return [{k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in t.items()} for t in targets]


# ----------------------------------------------------------------------------- epoch loops
def train_one_epoch(
    model: nn.Module,
    updater: Updater,
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
        updater: the update of each batch (optimizer, lr schedule, AMP scaler, gradient
            accumulation and EMA; :class:`ghostdet.engine.solver.Updater`).
        loader: yields ``(images, targets)``; ``len(loader)`` iterations are run.
        info: process placement.
        epoch: 1-based epoch number (for logs).
        cfg: uses ``epochs``, ``amp``, ``print_freq``.
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
    updater.start_epoch(len(loader))
    for batch, (images, targets) in enumerate(progress):
        if len(images) == 0:  # every image of the batch was unreadable
            updater.skip(batch)
            continue
        images = [img.to(info.device, non_blocking=True) for img in images]
        targets_d = _to_device(targets, info.device)
        with updater.context(batch):
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
            updater.backward(losses, batch)
        lr = updater.lr

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
        lr=float(updater.optimizer.param_groups[0]["lr"]),
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


# ----------------------------------------------------------------------------- detection checkpoints
@dataclass
class _Run:
    """The state of a training job that its steps share (built by :func:`_set_up`).

    ``best`` is the ``history`` entry with the highest AP so far, of the raw or the EMA weights
    (``None`` before the first evaluation); ``metrics`` are the stats of the last evaluation.
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
    ema: ModelEma | None = None
    writer: Any = None
    start_epoch: int = 1
    global_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    best: dict[str, Any] | None = None
    stopped_early: bool = False

    @property
    def best_ap(self) -> float:
        """AP of the best evaluation so far, raw or EMA (-1 before the first)."""
        return entry_score(self.best, "AP")[0] if self.best is not None else -1.0

    @property
    def best_source(self) -> str:
        """Which weights gave :attr:`best_ap`: ``"ema"`` or ``"model"``."""
        return entry_score(self.best, "AP")[1] if self.best is not None else "model"


def _checkpoint_dict(run: _Run, epoch: int) -> dict[str, Any]:
    train_ds = run.train_ds
    return {
        **training_state(run.model, run.optimizer, run.scheduler, run.scaler, epoch, run.global_step),
        **(run.ema.state() if run.ema is not None else {}),
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
        "best_source": run.best_source,
    }


def _metrics_doc(
    history: list[dict[str, Any]], best: dict[str, Any] | None, done: bool, stopped_early: bool = False
) -> dict[str, Any]:
    doc: dict[str, Any] = {"evaluations": history}
    if best is not None:
        doc["best"] = best
        doc["best_source"] = entry_score(best, "AP")[1]
    if done and history:
        doc["final"] = history[-1]
    doc["stopped_early"] = bool(stopped_early)
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


def _train(cfg: TrainConfig, info: DistInfo) -> dict[str, Any]:
    run, resume_path, ckpt = _set_up(cfg, info)
    if ckpt is not None:
        _resume(run, resume_path, ckpt)
    _start(run)
    try:
        run.stopped_early = patience_spent(cfg.patience, run.history, run.best)
        if run.stopped_early:  # a resumed run that had stopped early
            _log_early_stop(run)
        for epoch in range(run.start_epoch, cfg.epochs + 1):
            if run.stopped_early:
                break
            stats, skipped = _train_epoch(run, epoch)
            due = epoch == cfg.epochs or (cfg.eval_every > 0 and epoch % cfg.eval_every == 0)
            improved = _evaluate_epoch(run, epoch, stats, skipped) if due else False
            run.stopped_early = due and patience_spent(cfg.patience, run.history, run.best)
            if run.stopped_early:
                _log_early_stop(run)
            _save_epoch(run, epoch, improved)
    finally:
        if run.writer is not None:
            run.writer.close()
    return _report(run)


def _log_early_stop(run: _Run) -> None:
    best = run.best or {}
    run.log(
        f"stopping early: {evaluations_since_best(run.history, run.best)} evaluation(s) without a better AP "
        f"(patience {run.cfg.patience}); the best, AP {run.best_ap:.4f} of the {run.best_source} weights at "
        f"epoch {best.get('epoch')}, is in best.pth"
    )


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
        raise CheckpointError(
            f"cannot resume from {path}: it was trained with {what} {saved!r}, this run has {wanted!r}: "
            "resume with the checkpoint's settings, or start anew (another output_dir, or no resume)",
            argument="resume",
        )


def _set_up(cfg: TrainConfig, info: DistInfo) -> tuple[_Run, Path | None, dict[str, Any] | None]:
    """Step 1: runtime settings, the resume checkpoint, data, model, optimizer and lr schedule."""
    out_dir, log, resume_path, ckpt = begin_run(cfg, info)
    if ckpt is not None:
        _check_resumable(ckpt, cfg, resume_path)  # before anything is built, so a bad one fails early

    train_ds, val_ds = build_datasets(cfg, info, log)
    if ckpt is not None:  # the class count is known now; refuse before config.yaml is written
        _check_resumable(ckpt, cfg, resume_path, train_ds.num_classes)
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out_dir / "config.yaml")
    batch_sampler, train_loader, val_loader = make_loaders(cfg, info, train_ds, val_ds)
    log(
        f"{cfg.builder} width {cfg.width:g}: {train_ds.num_classes - 1} classes, {len(train_ds)} train / "
        f"{len(val_ds)} val images, {info.world_size} process(es) on {info.device}, "
        f"batch {cfg.batch_size}/process, {torch.get_num_threads()} threads, output {out_dir}"
    )

    model = convert_sync_bn(build_model(cfg, train_ds.num_classes), cfg, info).to(info.device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    iters = steps_this_epoch(batch_sampler, 0)
    optimizer, scheduler, scaler = build_solver(cfg, model, iters, info.world_size)
    log(describe_options(cfg, info))
    run = _Run(
        cfg, info, out_dir, log, train_ds, val_ds, batch_sampler, train_loader, val_loader, model, optimizer,
        scheduler, scaler, build_ema(cfg, model),
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
        raise CheckpointError(
            f"cannot resume from {path}: its weights do not fit this run's model: {e}", argument="resume"
        ) from None
    run.history = list(ckpt.get("history", []))
    run.metrics = dict(ckpt.get("metrics", {}))
    run.best = best_entry(ckpt, run.history, "AP")
    ema = restore_ema(run.ema, ckpt, run.model)
    done = f"resumed from {path} (epoch {ckpt['epoch']} done, step {run.global_step})"
    run.log(done + (f"; {ema}" if ema else ""))


def _start(run: _Run) -> None:
    """Wrap the model in DDP when distributed; open TensorBoard on the main rank."""
    run.model = wrap_for_training(run.model, run.info)
    run.writer = open_tensorboard(run.out_dir, run.info, run.global_step)


def _train_epoch(run: _Run, epoch: int) -> tuple[dict[str, float], int]:
    """Step 3: one training epoch and its log line; returns its stats and the images skipped."""
    cfg, info, writer = run.cfg, run.info, run.writer
    loader = CountingLoader(run.train_loader, steps_this_epoch(run.batch_sampler, epoch - 1))
    updater = Updater(
        run.model, run.optimizer, run.scheduler, run.scaler, cfg.clip_grad_norm, cfg.accum_steps, run.ema
    )
    stats = train_one_epoch(run.model, updater, loader, info, epoch, cfg, run.log, writer, run.global_step)
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
    val_loader = CountingLoader(run.val_loader)
    metrics, evaluator, speed = evaluate(unwrap_model(run.model), val_loader, run.val_ds, info, run.cfg.amp)
    val_skipped = int(sum(all_gather_objects(val_loader.skipped)))
    ema_metrics = None
    if run.ema is not None:  # the same images: the val loader's order does not change
        loader = CountingLoader(run.val_loader)
        ema_metrics, _, _ = evaluate(run.ema.module, loader, run.val_ds, info, run.cfg.amp)
    entry = {
        "epoch": epoch,
        **{k: float(v) for k, v in metrics.items()},
        **({"ema": {k: float(v) for k, v in ema_metrics.items()}} if ema_metrics is not None else {}),
        "train_loss": float(stats["loss"]),
        "train_images_per_s": float(stats["images_per_s"]),
        "eval_images_per_s": float(speed["images_per_s"] * info.world_size),
        "train_skipped_images": skipped,
        "val_skipped_images": val_skipped,
        "val_images_evaluated": len(evaluator.img_ids),
    }
    run.metrics = metrics
    run.history.append(entry)
    improved = entry_score(entry, "AP")[0] > run.best_ap
    if improved:
        run.best = entry
    run.log(
        f"eval epoch {epoch}: AP {metrics['AP']:.4f} AP50 {metrics['AP50']:.4f} "
        f"AP75 {metrics['AP75']:.4f} APs {metrics['APs']:.3f} APm {metrics['APm']:.3f} "
        f"APl {metrics['APl']:.3f} ({speed['images_per_s'] * info.world_size:.1f} img/s"
        + (f", skipped {val_skipped} unreadable" if val_skipped else "")
        + ")"
        + (
            f"; EMA AP {ema_metrics['AP']:.4f} AP50 {ema_metrics['AP50']:.4f}"
            if ema_metrics is not None
            else ""
        )
    )
    if info.is_main:
        evaluator.write_results(run.out_dir / "detections.json")
        if writer is not None:
            for k, v in metrics.items():
                writer.add_scalar(f"val/{k}", v, run.global_step)
            for k, v in (ema_metrics or {}).items():
                writer.add_scalar(f"val_ema/{k}", v, run.global_step)
            if run.cfg.vis_images:
                _log_val_images(unwrap_model(run.model), run.val_ds, run.cfg, info, writer, run.global_step)
            writer.flush()
    return improved


def _save_epoch(run: _Run, epoch: int, improved: bool) -> None:
    """Step 5: the epoch's checkpoint (and best.pth) and metrics.json, then wait for every rank."""
    if run.info.is_main:
        done = epoch == run.cfg.epochs or run.stopped_early
        metrics_doc = _metrics_doc(run.history, run.best, done, run.stopped_early)
        ckpt_doc = _checkpoint_dict(run, epoch)
        save_epoch(run.out_dir, ckpt_doc, improved, metrics_doc, best_checkpoint(ckpt_doc, run.best_source))
    barrier()


def _report(run: _Run) -> dict[str, Any]:
    """Step 6: the final metrics.json and summary line; returns the metrics document."""
    doc = _metrics_doc(run.history, run.best, True, run.stopped_early)
    finish_run(run.info, run.log, run.out_dir, doc, run.start_epoch, run.cfg.epochs)
    if run.history:  # (log is silent off rank 0)
        f = run.history[-1]
        stop = f", stopped early at epoch {f['epoch']}" if run.stopped_early else ""
        run.log(
            f"done: final AP {f['AP']:.4f} AP50 {f['AP50']:.4f} (best AP {run.best_ap:.4f} of the "
            f"{run.best_source} weights{stop}), in {run.out_dir}"
        )
    return doc
