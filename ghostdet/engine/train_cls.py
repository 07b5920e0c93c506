"""Training loop for image classifiers (GhostNet, the paper's CIFAR networks, torchvision baselines).

:func:`train_classifier` runs a job from a :class:`ghostdet.config.classification.ClsConfig` on the
infrastructure it shares with the detection loop (:mod:`~ghostdet.engine.run`,
:mod:`~ghostdet.engine.solver`, :mod:`~ghostdet.engine.state`): the same checkpoint module
(atomic, ``weights_only``-loadable, resumable after a kill), distributed helpers (``torchrun``:
gloo on CPU, NCCL on CUDA; a ``DistributedSampler`` whose order depends only on seed and
epoch), logger, optimizer, per-iteration lr schedule, AMP and NaN/Inf guard.

Output directory::

    config.yaml        resolved config (re-run with tools/train_cls.py --config OUTPUT_DIR/config.yaml)
    checkpoint.pth     latest epoch (model, optimizer, lr_scheduler, scaler, epoch, rng, classes, ...;
                       with ``ema``: state_dict_ema, ema_updates)
    best.pth           the checkpoint with the best val top-1 so far (of the raw or the EMA
                       weights: best_source says which, and the loaders read those)
    metrics.json       top1 / top5 (fractions, val, last epoch), best, per-epoch history,
                       stopped_early
    log.txt            the console log
    tensorboard/       train loss / lr / top-1, val loss / top-1 / top-5

A GhostNet checkpoint's ``model`` entry is a plain GhostNet state dict, so the file itself is
accepted by ``ghostnet(width=..., weights=FILE)`` and by the detectors' ``weights_backbone=FILE``.
"""

from __future__ import annotations

import inspect
import math
import time
from os import PathLike
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler, Subset

from ghostdet.config.classification import ClsConfig
from ghostdet.config.recipe import ConfigError, config_from_dict, save_config
from ghostdet.engine.checkpoint import load_checkpoint
from ghostdet.engine.ema import build_ema, restore_ema
from ghostdet.engine.logger import ProgressLog, RunLogger
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
)
from ghostdet.errors import CheckpointError, InputError
from ghostdet.utils.distributed import (
    DistInfo,
    all_gather_objects,
    barrier,
    reduce_mean,
)

__all__ = [
    "TORCHVISION_BASELINES",
    "build_classifier",
    "classifier_names",
    "evaluate_classifier",
    "load_classifier",
    "topk_correct",
    "train_classifier",
]

TASK = "classification"

#: torchvision classifiers accepted as baselines (built with ``weights=None``), besides the
#: registry's classifiers.
TORCHVISION_BASELINES = ("mobilenet_v2", "mobilenet_v3_large", "resnet50")


def classifier_names() -> list[str]:
    """Every ``model`` a classification config accepts: the registry's classifiers
    (``list_models(kind="classifier")``) and :data:`TORCHVISION_BASELINES`."""
    from ghostdet.models import list_models

    return sorted({*list_models(kind="classifier"), *TORCHVISION_BASELINES})


def _registry_kwargs(name: str, cfg: ClsConfig) -> dict[str, Any]:
    """The config entries the registered builder of ``name`` takes: ``width`` unless the name
    binds one, ``weights``, ``dropout`` and ``progress`` where its signature has them."""
    from ghostdet.models import model_entry

    entry = model_entry(name)
    params = inspect.signature(entry.builder).parameters
    if cfg.weights is not None and "weights" not in params:
        raise ConfigError(f"weights: only GhostNet models load initial weights, not {name!r}")
    wanted = {"weights": cfg.weights, "dropout": cfg.dropout, "progress": False}
    if "width" not in entry.defaults:
        wanted["width"] = cfg.width
    return {k: v for k, v in wanted.items() if k in params}


def build_classifier(cfg: ClsConfig, num_classes: int) -> nn.Module:
    """The classifier of ``cfg`` with ``num_classes`` outputs (converted by ``ghostify`` if asked).

    Args:
        cfg: uses ``model``, ``width``, ``dropout``, ``weights``, ``ghostify``, ``ratio``,
            ``dw_size`` and ``model_kwargs``.
        num_classes: classifier outputs.

    Raises:
        ConfigError: an unknown model, or ``weights`` for a model that is not a GhostNet.
    """
    from ghostdet.models import get_model

    name, kw = cfg.model, dict(cfg.model_kwargs)
    if name not in classifier_names():
        raise ConfigError(f"model: {name!r} is not one of {', '.join(classifier_names())}")
    if name in TORCHVISION_BASELINES:
        if cfg.weights is not None:
            raise ConfigError(f"weights: only GhostNet models load initial weights, not {name!r}")
        import torchvision

        model: nn.Module = getattr(torchvision.models, name)(weights=None, num_classes=num_classes, **kw)
    else:
        model = get_model(name, num_classes=num_classes, **_registry_kwargs(name, cfg), **kw)
    if cfg.ghostify:
        from ghostdet.models.ghostify import ghostify

        model, _ = ghostify(model, ratio=cfg.ratio, dw_size=cfg.dw_size, inplace=True)
    return model


def topk_correct(logits: Tensor, labels: Tensor, ks: tuple[int, ...] = (1, 5)) -> list[int]:
    """Number of samples whose label is among the ``k`` highest logits, for each ``k``.

    ``k`` larger than the number of classes counts every sample as correct.
    """
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hit = top == labels[:, None]
    return [int(hit[:, :k].any(dim=1).sum()) for k in ks]


@torch.no_grad()
def evaluate_classifier(model: nn.Module, loader: Any, info: DistInfo, amp: bool = False) -> dict[str, float]:
    """Top-1 / top-5 accuracy (fractions) and mean cross-entropy over every rank's ``loader``.

    Args:
        model: the classifier (unwrapped from DDP).
        loader: yields ``(images, labels)``; each rank holds a disjoint part of the val set.
        info: process placement.
        amp: run under autocast.
    """
    model.eval()
    sums = [0, 0, 0, 0.0]  # images, top-1 hits, top-5 hits, summed loss
    for images, labels in loader:
        images = images.to(info.device, non_blocking=True)
        labels = labels.to(info.device, non_blocking=True)
        with autocast(info.device, amp):
            logits = model(images)
        logits = logits.float()
        c1, c5 = topk_correct(logits, labels)
        loss = nn.functional.cross_entropy(logits, labels, reduction="sum")
        sums = [sums[0] + len(labels), sums[1] + c1, sums[2] + c5, sums[3] + float(loss)]
    total = [sum(v) for v in zip(*all_gather_objects(sums))]
    n = max(1, int(total[0]))
    return {"top1": total[1] / n, "top5": total[2] / n, "loss": total[3] / n, "images": float(total[0])}


def _train_epoch(
    model: nn.Module,
    criterion: nn.Module,
    updater: Updater,
    loader: DataLoader,
    info: DistInfo,
    epoch: int,
    cfg: ClsConfig,
    log: RunLogger,
    writer: Any,
    global_step: int,
) -> dict[str, float]:
    model.train()
    n_iters = n_images = hits = 0
    loss_sum = 0.0
    start = time.perf_counter()
    progress = ProgressLog(
        loader, len(loader), f"epoch {epoch}/{cfg.epochs}", log, cfg.print_freq, enabled=info.is_main
    )
    updater.start_epoch(len(loader))
    for batch, (images, labels) in enumerate(progress):
        images = images.to(info.device, non_blocking=True)
        labels = labels.to(info.device, non_blocking=True)
        with updater.context(batch):
            with autocast(info.device, cfg.amp):
                logits = model(images)
            loss = criterion(logits.float(), labels)
            loss_value = float(reduce_mean({"loss": loss})["loss"])
            if not math.isfinite(loss_value):
                raise NonFiniteLossError(
                    f"non-finite loss {loss_value} at epoch {epoch}, iteration {n_iters + 1}. Training "
                    "stopped; the last good checkpoint is kept (try a lower --lr, warmup_iters or "
                    "clip_grad_norm)"
                )
            updater.backward(loss, batch)
        lr = updater.lr
        n_iters += 1
        n_images += len(labels) * info.world_size
        hits += int((logits.detach().argmax(1) == labels).sum())
        loss_sum += loss_value
        if n_iters % cfg.print_freq == 0 or n_iters == 1:
            progress.set_postfix({"loss": f"{loss_value:.4f}", "lr": f"{lr:.3g}"})
            if writer is not None:
                writer.add_scalar("train/loss", loss_value, global_step + n_iters)
                writer.add_scalar("train/lr", lr, global_step + n_iters)
    seconds = time.perf_counter() - start
    return {
        "loss": loss_sum / max(1, n_iters),
        "top1": sum(all_gather_objects(hits)) / max(1, n_images),
        "iters": float(n_iters),
        "images": float(n_images),
        "seconds": seconds,
        "images_per_s": n_images / seconds if seconds > 0 else 0.0,
    }


def _loaders(cfg: ClsConfig, info: DistInfo, train_ds: Any, val_ds: Any) -> tuple[Any, Any, Any]:
    from ghostdet.data.classification import SkipCountingLoader, collate_skipping

    # A DistributedSampler also in single-process runs: its order is a pure function of
    # (seed, epoch), so a resumed run sees the same batches as an uninterrupted one.
    sampler = DistributedSampler(
        train_ds, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=cfg.seed
    )
    pin = info.device.type == "cuda"
    # unreadable images are dropped from their batch and counted (loader.skipped)
    train_loader = SkipCountingLoader(DataLoader(
        train_ds, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.workers, pin_memory=pin,
        drop_last=True, collate_fn=collate_skipping,
    ))  # fmt: skip
    if len(train_loader) == 0:
        raise InputError(
            f"batch_size {cfg.batch_size} is larger than the {len(sampler)} training images per process",
            argument="batch_size",
        )
    # Every rank evaluates a disjoint stride of the val set (no padding, so every image counts once).
    val_part = Subset(val_ds, range(info.rank, len(val_ds), info.world_size))
    val_loader = SkipCountingLoader(DataLoader(
        val_part, batch_size=cfg.batch_size, num_workers=cfg.workers, pin_memory=pin,
        collate_fn=collate_skipping,
    ))  # fmt: skip
    return sampler, train_loader, val_loader


def _metrics_doc(
    history: list[dict[str, Any]],
    best: dict[str, Any] | None,
    classes: list[str],
    stopped_early: bool = False,
) -> dict[str, Any]:
    doc: dict[str, Any] = {"num_classes": len(classes), "history": history}
    if history:
        doc.update(top1=history[-1]["top1"], top5=history[-1]["top5"], epoch=history[-1]["epoch"])
    if best is not None:
        doc["best"] = _best_summary(best)
    doc["stopped_early"] = bool(stopped_early)
    return doc


def _best_summary(best: dict[str, Any]) -> dict[str, Any]:
    """``epoch``, ``top1``, ``top5`` of the best evaluation, of its better weights (``source``
    ``"ema"`` or ``"model"``, given when the run keeps an EMA)."""
    score, source = entry_score(best, "top1")
    if "ema" not in best:
        return {k: best[k] for k in ("epoch", "top1", "top5")}
    values = best["ema"] if source == "ema" else best
    return {"epoch": best["epoch"], "top1": score, "top5": values["top5"], "source": source}


def train_classifier(cfg: ClsConfig) -> dict[str, Any]:
    """Run a classification job (see the module docstring for the output directory).

    Launched by ``torchrun``, every process calls this; rank 0 logs and writes files.

    Args:
        cfg: a validated config (see :func:`ghostdet.config.classification.load_cls_config`).

    Returns:
        the ``metrics.json`` document: ``top1``, ``top5`` (val fractions of the last epoch),
        ``best`` and ``history`` (one dict per epoch).

    Raises:
        NonFiniteLossError: the loss became NaN/inf (nothing is written for that epoch).
        GhostdetError: bad data, checkpoint or config (an InputError, DataError, CheckpointError,
            ConfigError, ...).
        KeyboardInterrupt: Ctrl-C, or :class:`~ghostdet.engine.signals.Terminated` for SIGTERM;
            a checkpoint being written is removed, the last complete one is kept.
    """
    return run_in_process_group(_train_classifier, cfg)


def _train_classifier(cfg: ClsConfig, info: DistInfo) -> dict[str, Any]:
    from ghostdet.data.classification import build_classification_datasets, normalization

    out_dir, log, resume_path, ckpt = begin_run(cfg, info)
    if ckpt is not None and ckpt.get("task") != TASK:
        raise CheckpointError(f"{resume_path} is not a tools/train_cls.py checkpoint", argument="resume")

    if cfg.download and not info.is_main:
        barrier()  # rank 0 downloads first
    train_ds, val_ds, classes = build_classification_datasets(
        cfg.dataset, cfg.data_path, cfg.image_size, download=cfg.download and info.is_main
    )
    if cfg.download and info.is_main:
        barrier()
    if ckpt is not None and ckpt.get("num_classes") not in (None, len(classes)):
        # refused before config.yaml is written
        raise CheckpointError(
            f"cannot resume from {resume_path}: it was trained with {ckpt['num_classes']} classes, this "
            f"run's data has {len(classes)}: resume with the same data, or start anew",
            argument="resume",
        )
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out_dir / "config.yaml")
    sampler, train_loader, val_loader = _loaders(cfg, info, train_ds, val_ds)
    model = convert_sync_bn(build_classifier(cfg, len(classes)), cfg, info).to(info.device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    n_params = sum(p.numel() for p in model.parameters())
    ghost = f" (ghostified s={cfg.ratio} d={cfg.dw_size})" if cfg.ghostify else ""
    log(
        f"{cfg.model}{ghost}: "
        f"{n_params / 1e6:.3f}M params, {len(classes)} classes, {len(train_ds)} train / {len(val_ds)} val "
        f"images, {info.world_size} process(es) on {info.device}, batch {cfg.batch_size}/process, "
        f"{torch.get_num_threads()} threads, output {out_dir}"
    )
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    optimizer, scheduler, scaler = build_solver(cfg, model, len(train_loader), info.world_size)
    log(describe_options(cfg, info))
    ema = build_ema(cfg, model)

    start_epoch, global_step = 1, 0
    history: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None  # the history entry with the highest val top-1 so far
    if ckpt is not None:
        start_epoch, global_step = restore_training_state(ckpt, model, optimizer, scheduler, scaler)
        history = list(ckpt.get("history", []))
        best = best_entry(ckpt, history, "top1")
        ema_note = restore_ema(ema, ckpt, model)
        log(
            f"resumed from {resume_path} (epoch {ckpt['epoch']} done, step {global_step})"
            + (f"; {ema_note}" if ema_note else "")
        )

    train_model = wrap_for_training(model, info)
    writer = open_tensorboard(out_dir, info, global_step)
    mean, std = normalization(cfg.dataset)
    extra = {
        "task": TASK,
        "arch": cfg.model,
        "width": float(cfg.width),
        "num_classes": len(classes),
        "classes": list(classes),
        "image_size": int(cfg.image_size),
        "mean": list(mean),
        "std": list(std),
    }
    stopped_early = patience_spent(cfg.patience, history, best)
    if stopped_early:  # a resumed run that had stopped early
        _log_early_stop(log, cfg, history, best)
    try:
        for epoch in range(start_epoch, cfg.epochs + 1):
            if stopped_early:
                break
            sampler.set_epoch(epoch - 1)
            train_loader.skipped = val_loader.skipped = 0
            updater = Updater(
                train_model, optimizer, scheduler, scaler, cfg.clip_grad_norm, cfg.accum_steps, ema
            )
            stats = _train_epoch(
                train_model, criterion, updater, train_loader, info, epoch, cfg, log, writer, global_step
            )
            global_step += int(stats["iters"])
            val = evaluate_classifier(model, val_loader, info, cfg.amp)
            val_ema = evaluate_classifier(ema.module, val_loader, info, cfg.amp) if ema is not None else None
            skipped = [int(sum(all_gather_objects(ld.skipped))) for ld in (train_loader, val_loader)]
            entry = {
                "epoch": epoch,
                "top1": val["top1"],
                "top5": val["top5"],
                "val_loss": val["loss"],
                "train_loss": stats["loss"],
                "train_top1": stats["top1"],
                "lr": float(optimizer.param_groups[0]["lr"]),
                "train_images_per_s": stats["images_per_s"],
                "seconds": stats["seconds"],
                "train_skipped_images": skipped[0],
                "val_skipped_images": skipped[1],
            }
            if val_ema is not None:
                entry["ema"] = {k: val_ema[k] for k in ("top1", "top5", "loss")}
            history.append(entry)
            improved = best is None or entry_score(entry, "top1")[0] > entry_score(best, "top1")[0]
            if improved:
                best = entry
            stopped_early = patience_spent(cfg.patience, history, best)
            log(
                f"epoch {epoch}/{cfg.epochs}: train loss {stats['loss']:.4f} top-1 {stats['top1']:.4f} "
                f"({stats['images_per_s']:.1f} img/s), val top-1 {val['top1']:.4f} top-5 {val['top5']:.4f} "
                f"loss {val['loss']:.4f} ({int(val['images'])} images), lr {entry['lr']:.3g}"
                + (
                    f"; skipped {skipped[0]} train / {skipped[1]} val unreadable image(s)"
                    if any(skipped)
                    else ""
                )
                + (f"; EMA val top-1 {val_ema['top1']:.4f} top-5 {val_ema['top5']:.4f}" if val_ema else "")
            )
            if stopped_early:
                _log_early_stop(log, cfg, history, best)
            if info.is_main:
                if writer is not None:
                    for k in ("top1", "top5", "loss"):
                        writer.add_scalar(f"val/{k}", val[k], global_step)
                        if val_ema is not None:
                            writer.add_scalar(f"val_ema/{k}", val_ema[k], global_step)
                    writer.add_scalar("train/epoch_loss", stats["loss"], global_step)
                    writer.add_scalar("train/top1", stats["top1"], global_step)
                    writer.flush()
                score, source = entry_score(best, "top1") if best is not None else (-1.0, "model")
                ckpt_doc = {
                    **training_state(model, optimizer, scheduler, scaler, epoch, global_step),
                    **(ema.state() if ema is not None else {}),
                    **extra,
                    "config": cfg.to_dict(),
                    "metrics": dict(val),
                    "history": history,
                    "best_top1": float(score),
                    "best_epoch": int(best["epoch"]) if best is not None else 0,
                    "best_source": source,
                }
                metrics_doc = _metrics_doc(history, best, classes, stopped_early)
                save_epoch(out_dir, ckpt_doc, improved, metrics_doc, best_checkpoint(ckpt_doc, source))
            barrier()
    finally:
        if writer is not None:
            writer.close()

    doc = _metrics_doc(history, best, classes, stopped_early)
    finish_run(info, log, out_dir, doc, start_epoch, cfg.epochs)
    if history and best is not None:
        score, source = entry_score(best, "top1")
        stop = f", stopped early at epoch {history[-1]['epoch']}" if stopped_early else ""
        log(
            f"done: val top-1 {doc['top1']:.4f} top-5 {doc['top5']:.4f} (best {score:.4f} of the "
            f"{source} weights{stop}), in {out_dir}"
        )
    return doc


def _log_early_stop(log: RunLogger, cfg: ClsConfig, history: list[dict[str, Any]], best: Any) -> None:
    score, source = entry_score(best, "top1")
    log(
        f"stopping early: {evaluations_since_best(history, best)} evaluation(s) without a better top-1 "
        f"(patience {cfg.patience}); the best, top-1 {score:.4f} of the {source} weights at epoch "
        f"{best['epoch']}, is in best.pth"
    )


def load_classifier(
    path: str | PathLike, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the classifier of a ``tools/train_cls.py`` checkpoint (strict load), in eval mode.

    Returns:
        ``(model, checkpoint dict)``.

    Raises:
        CheckpointError: no such file, not a ``train_cls`` checkpoint, or weights that do not match
            its config.
    """
    ckpt = load_checkpoint(path)
    if ckpt.get("task") != TASK:
        raise CheckpointError(f"{path} is not a tools/train_cls.py checkpoint (no task: {TASK!r} entry)")
    cfg = config_from_dict({**ckpt["config"], "weights": None}, cls=ClsConfig)
    model = build_classifier(cfg, int(ckpt["num_classes"]))
    try:  # the EMA weights where the checkpoint has them (best.pth: the better of the two)
        model.load_state_dict(ckpt.get("state_dict_ema") or ckpt["model"])
    except RuntimeError as e:
        raise CheckpointError(
            f"{path}: weights do not match its {cfg.model} config: {str(e)[:300]}"
        ) from None
    return model.to(device).eval(), ckpt
