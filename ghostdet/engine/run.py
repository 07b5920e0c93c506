"""The life of a training job, shared by the detection and the classification loops.

Setting a process up (:func:`begin_run`: logger, threads, seed, the checkpoint to resume),
joining the process group (:func:`run_in_process_group`), DDP wrapping, TensorBoard, the
end-of-epoch and final files, and how a training tool reports the way a job ended
(:func:`run_training_job`).
"""

from __future__ import annotations

import os
import random
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from ghostdet.config.recipe import ConfigError
from ghostdet.engine.checkpoint import atomic_save, load_checkpoint, resolve_resume_path
from ghostdet.engine.logger import RunLogger
from ghostdet.engine.signals import Terminated, sigterm_as_interrupt
from ghostdet.engine.solver import resolve_lr
from ghostdet.utils.distributed import DistInfo, all_gather_objects, cleanup_distributed, init_distributed
from ghostdet.utils.files import atomic_write_json, same_folder, write_failure
from ghostdet.utils.run_dir import RunFolder, claim_run_dir

__all__ = [
    "NonFiniteLossError",
    "TensorBoardWriter",
    "begin_run",
    "check_sync_bn",
    "claim_output_dir",
    "config_differences",
    "configure_threads",
    "convert_sync_bn",
    "describe_options",
    "finish_run",
    "open_tensorboard",
    "run_in_process_group",
    "run_training_job",
    "save_epoch",
    "seed_everything",
    "wrap_for_training",
]

T = TypeVar("T")


# Config keys that may change between a run and its resumption without breaking "exact" resume.
_RESUME_FREE_KEYS = {
    "epochs", "output_dir", "resume", "exist_ok", "print_freq", "workers", "device", "eval_every", "threads",
    "vis_images", "vis_score_thresh", "strict_data", "patience",
}  # fmt: skip


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the message names the batch's image ids."""


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

    def same(a: Any, b: Any) -> bool:  # min_size 320 of an older checkpoint is today's [320]
        return a == b or [a] == b or a == [b]

    return sorted(
        k for k in set(old) | set(new) if k not in _RESUME_FREE_KEYS and not same(old.get(k), new.get(k))
    )


def begin_run(cfg: Any, info: DistInfo) -> tuple[Path, RunLogger, Path | None, dict[str, Any] | None]:
    """Process setup shared by the training loops: logger, threads, seed, the checkpoint to resume.

    The checkpoint is read before anything is built, so a bad one fails early.

    Args:
        cfg: a training config (``output_dir``, ``threads``, ``amp``, ``seed``, ``resume``, ``to_dict()``).
        info: process placement.

    Returns:
        ``(output_dir, log, resume_path or None, checkpoint dict or None)``.
    """
    check_sync_bn(cfg, info)
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


def check_sync_bn(cfg: Any, info: DistInfo) -> None:
    """Refuse ``sync_bn`` where torch's SyncBatchNorm cannot synchronise anything.

    Raises:
        ConfigError: ``sync_bn`` in a single process, or on a CPU device (torch has SyncBatchNorm
            kernels for CUDA only).
    """
    if not getattr(cfg, "sync_bn", False):
        return
    if not info.distributed:
        raise ConfigError.about(
            "sync_bn",
            "synchronises BatchNorm across the processes of a torchrun job; this run is a single "
            "process (launch it with torchrun --nproc-per-node N, or leave sync_bn off)",
        )
    if info.device.type != "cuda":
        raise ConfigError.about(
            "sync_bn", f"torch's SyncBatchNorm runs on CUDA devices only; this run is on {info.device.type}"
        )


def convert_sync_bn(model: nn.Module, cfg: Any, info: DistInfo) -> nn.Module:
    """``model`` with its BatchNorm layers made ``nn.SyncBatchNorm`` when ``cfg.sync_bn`` (see
    :func:`check_sync_bn`; the parameters and buffers are the same tensors, and the state dict
    keys are those of BatchNorm, so checkpoints load into plain models)."""
    if not getattr(cfg, "sync_bn", False):
        return model
    check_sync_bn(cfg, info)
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def describe_options(cfg: Any, info: DistInfo) -> str:
    """One line on the solver options a run resolved: the lr (and how it was scaled), gradient
    accumulation, EMA, multi-scale sizes, SyncBN, early stopping."""
    batch = cfg.batch_size * info.world_size * cfg.accum_steps
    lr = resolve_lr(cfg, info.world_size)
    how = "" if cfg.lr is not None or cfg.opt == "adamw" else f" (base_lr {cfg.base_lr:g} x {batch} / 256)"
    parts = [f"lr {lr:.4g}{how}, effective batch {batch}"]
    if cfg.accum_steps > 1:
        parts.append(f"{cfg.accum_steps} batches accumulated per optimizer step")
    if cfg.ema:
        parts.append(f"EMA decay {cfg.ema_decay:g} warm-up {cfg.ema_warmup}")
    sizes = getattr(cfg, "train_min_sizes", None)
    if sizes is not None and len(sizes) > 1:
        parts.append(f"multi-scale min_size {list(sizes)} (evaluation at {sizes[-1]})")
    if cfg.sync_bn:
        parts.append("SyncBatchNorm")
    if cfg.patience is not None:
        parts.append(f"early stopping after {cfg.patience} evaluations without improvement")
    return "; ".join(parts)


def wrap_for_training(model: nn.Module, info: DistInfo) -> nn.Module:
    """``model`` in DistributedDataParallel when the job is distributed (else ``model``)."""
    if not info.distributed:
        return model
    ddp_kw = {"device_ids": [info.device.index]} if info.device.type == "cuda" else {}
    return nn.parallel.DistributedDataParallel(model, **ddp_kw)


class TensorBoardWriter:
    """A ``SummaryWriter`` whose failed writes are one :class:`~ghostdet.errors.OutputError`.

    TensorBoard writes its event file from a thread of its own; a write that fails there (disk
    full, a file-size limit) surfaces at a later call in the training thread as a bare
    ``OSError``. Every method call is passed on; such an error becomes one line naming the
    events folder and the last checkpoint, and the writer thread's own traceback is not printed
    (see :func:`_quiet_writer_thread`).

    Args:
        writer: the SummaryWriter.
        out_dir: the run folder (for the message about the last checkpoint).
    """

    def __init__(self, writer: Any, out_dir: Path) -> None:
        self._writer = writer
        self._out_dir = out_dir

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._writer, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attr(*args, **kwargs)
            except OSError as e:
                folder = self._out_dir / "tensorboard"
                raise write_failure(folder, e, _kept(self._out_dir)) from e

        return call


def _quiet_writer_thread(args: Any) -> None:
    """``threading.excepthook`` that keeps TensorBoard's writer-thread OSErrors quiet (the training
    thread reports them, see :class:`TensorBoardWriter`) and passes anything else on."""
    tb = args.exc_traceback
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_filename)
        tb = tb.tb_next
    if issubclass(args.exc_type, OSError) and any("tensorboard" in f for f in frames):
        return
    _previous_excepthook(args)


_previous_excepthook = threading.excepthook


def open_tensorboard(out_dir: Path, info: DistInfo, global_step: int) -> TensorBoardWriter | None:
    """A :class:`TensorBoardWriter` in ``out_dir/tensorboard`` on rank 0 (``None`` elsewhere);
    events after ``global_step`` of an interrupted run are purged."""
    if not info.is_main:
        return None
    from torch.utils.tensorboard import SummaryWriter

    threading.excepthook = _quiet_writer_thread
    try:
        writer = SummaryWriter(str(out_dir / "tensorboard"), purge_step=global_step or None)
    except OSError as e:
        raise write_failure(out_dir / "tensorboard", e, _kept(out_dir)) from e
    return TensorBoardWriter(writer, out_dir)


def _kept(out_dir: Path) -> str:
    last = out_dir / "checkpoint.pth"
    return f"the last checkpoint {last} is intact" if last.is_file() else "no checkpoint was written yet"


def save_epoch(
    out_dir: Path,
    ckpt_doc: dict[str, Any],
    improved: bool,
    metrics_doc: dict[str, Any],
    best_doc: dict[str, Any] | None = None,
) -> None:
    """Rank 0's end-of-epoch files: ``checkpoint.pth``, ``best.pth`` if improved, ``metrics.json``.

    ``best.pth`` is ``best_doc`` (default: ``ckpt_doc``; see :func:`ghostdet.engine.state.best_checkpoint`).

    Raises:
        OutputError: a file could not be written (disk full, a file-size limit); the message
            names it and says that the last complete checkpoint is intact.
    """
    best = ckpt_doc if best_doc is None else best_doc
    for name, write in (
        ("checkpoint.pth", lambda p: atomic_save(ckpt_doc, p)),
        ("best.pth", lambda p: atomic_save(best, p) if improved else None),
        ("metrics.json", lambda p: atomic_write_json(p, metrics_doc)),
    ):
        try:
            write(out_dir / name)
        except OSError as e:
            raise write_failure(out_dir / name, e, _kept(out_dir)) from e


def finish_run(
    info: DistInfo, log: RunLogger, out_dir: Path, doc: dict[str, Any], start_epoch: int, epochs: int
) -> None:
    """Rank 0 writes the final ``metrics.json`` (and says so when a resumed run had nothing to do)."""
    if not info.is_main:
        return
    if start_epoch > epochs:
        log(f"nothing to do: the checkpoint already finished {start_epoch - 1} >= {epochs} epochs")
    try:
        atomic_write_json(out_dir / "metrics.json", doc)
    except OSError as e:
        raise write_failure(out_dir / "metrics.json", e, _kept(out_dir)) from e


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


def claim_output_dir(cfg: Any, info: DistInfo) -> RunFolder | None:
    """Claim ``cfg.output_dir`` for this job by the run-folder rule (:mod:`ghostdet.utils.run_dir`).

    Rank 0 claims and locks the folder; every rank then writes ``cfg.output_dir`` as the folder
    claimed (the next free name when the requested one holds another run). The folder is reused
    when the job resumes a run in it (``resume: auto``, or a checkpoint inside it) or
    ``exist_ok`` is set; ``exist_ok`` without ``resume`` starts afresh.

    Returns:
        the claimed folder on rank 0 (release it when the job ends), ``None`` on other ranks.
    """
    requested = Path(cfg.output_dir)
    resume = cfg.resume or None
    if resume is None or resume == "auto":
        continues = resume == "auto"
    else:  # a checkpoint in the requested folder, or the folder itself
        continues = same_folder(Path(resume) if Path(resume).is_dir() else Path(resume).parent, requested)
    exist_ok = bool(getattr(cfg, "exist_ok", False))
    folder = None
    if info.is_main:
        folder = claim_run_dir(requested, reuse=continues or exist_ok, fresh=exist_ok and not continues)
    if info.distributed:
        path = all_gather_objects(str(folder.path) if folder is not None else None)[0]
    else:
        path = str(folder.path)
    cfg.output_dir = path
    return folder


def run_in_process_group(job: Callable[[Any, DistInfo], T], cfg: Any) -> T:
    """``job(cfg, info)`` inside this process's place in a (possibly ``torchrun``) job.

    Joins the process group (``cfg.device`` picks the backend), claims and locks the run folder
    (:func:`claim_output_dir`: ``cfg.output_dir`` becomes the folder written), turns SIGTERM
    into :class:`~ghostdet.engine.signals.Terminated` for the duration, and afterwards releases
    the folder and leaves the group it created, on every exit path. Shared by the detection and
    the classification loops.
    """
    with sigterm_as_interrupt():
        info = init_distributed(cfg.device)
        folder = None
        try:
            folder = claim_output_dir(cfg, info)
            return job(cfg, info)
        finally:
            if folder is not None:
                folder.release()
            cleanup_distributed(info)
