"""The solver and run fields both training configs share, declared once.

:class:`BaseTrainConfig` holds them; :class:`ghostdet.config.TrainConfig` (detection) and
:class:`ghostdet.config.ClsConfig` (classification) derive from it and keep their own defaults
where the tasks differ (:func:`ghostdet.config.recipe.redefault`: detection warms up for 1000
iterations, classification for 30; their ``base_lr`` differ, ...). Each field declares its range,
its one-line help (so it is a flag of both training tools) and its section
(:func:`ghostdet.config.recipe.setting`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from ghostdet.config.recipe import OPTIMIZERS, SCHEDULERS, setting, to_dict

__all__ = ["DEVICE_PATTERN", "MAX_SEED", "BaseTrainConfig"]

#: Largest random seed (torch takes 64-bit seeds; beyond this a seed is an overflow).
MAX_SEED = 2**63 - 1

#: The devices a recipe may name (whether CUDA is there is checked when the run starts).
DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?"
_DEVICE = {"pattern": DEVICE_PATTERN, "what": "auto, cpu, cuda or cuda:N"}
_SANE = "the maximum is a sane limit"


@dataclass
class BaseTrainConfig:
    """The solver and run fields of a training run (the defaults here are the detection ones;
    :class:`ghostdet.config.ClsConfig` sets its own).

    Solver:
        epochs: training epochs.
        batch_size: images per iteration PER PROCESS (the effective batch is
            ``batch_size * world_size * accum_steps``; ``lr`` is meant for the effective batch).
        lr: peak learning rate (``None``: ``base_lr`` scaled to the effective batch).
        base_lr: the SGD peak lr of an effective batch of 256 images, scaled linearly to the
            effective batch when ``lr`` is not set (AdamW without ``lr`` uses 1e-3, torch's
            default, unscaled).
        accum_steps: batches whose gradients are accumulated into one optimizer step (the
            loss of each is divided by the batches of its group; the lr schedule and the
            warm-up count optimizer steps).
        opt: ``sgd`` (momentum, weight decay) or ``adamw``.
        momentum: SGD momentum.
        weight_decay: weight decay (not applied to norm layers and biases).
        lr_scheduler: ``multistep`` (x ``lr_gamma`` after each epoch in ``lr_steps``) or
            ``cosine`` (to ``lr * min_lr_ratio`` at the end); both per iteration.
        lr_steps: epochs after which the multistep schedule decays.
        lr_gamma: multistep decay factor.
        min_lr_ratio: final lr / lr of the cosine schedule.
        warmup_iters: linear warm-up iterations (0: none).
        warmup_factor: lr factor at iteration 0 of the warm-up.
        clip_grad_norm: clip the gradient norm to this value (``None``: no clipping).
        ema: keep an exponential moving average of the weights (:class:`ghostdet.engine.ema.ModelEma`),
            evaluated beside the raw weights; ``best.pth`` holds the better of the two.
        ema_decay: the EMA's decay, in (0, 1).
        ema_warmup: the time constant of the decay's warm-up in optimizer steps
            (``decay * (1 - exp(-step / ema_warmup))``; 0: none).
        patience: stop after this many evaluations without a better score (detection: AP,
            classification: top-1; of the EMA or the raw weights); ``None``: never.

    Data:
        workers: DataLoader worker processes per training process.

    Runtime:
        device: ``auto`` (cuda if available), ``cpu``, ``cuda``, ``cuda:N``.
        amp: mixed precision: float16 autocast + GradScaler on CUDA, bfloat16 autocast on CPU.
        sync_bn: BatchNorm statistics over the whole batch of a ``torchrun`` job
            (``nn.SyncBatchNorm``; CUDA only, refused in a single process).
        channels_last: keep the model's weights and activations in the channels_last memory
            format (faster convolutions, depthwise ones above all, in training on CPU and with AMP
            on CUDA).
        output_dir: where checkpoints, metrics, config and TensorBoard events go.
        resume: checkpoint to resume from, a run folder, or ``auto`` (OUTPUT_DIR/checkpoint.pth
            if present).
        exist_ok: write a fresh run into an ``output_dir`` that holds another run (its results are
            removed first); by default such a run takes the next free name (``runs/x2``).
        seed: random seed (runs on CPU are reproducible).
        print_freq: iterations between log lines (when stdout is not a terminal) and
            TensorBoard loss points.
        threads: torch intra-op threads per process (``None``: torch's default).
    """

    # solver
    epochs: int = setting(12, ge=1, help="training epochs", section="solver")
    batch_size: int = setting(2, ge=1, help="images per iteration per process", section="solver")
    lr: Optional[float] = setting(
        None, gt=0, section="solver",
        help="peak learning rate for the effective batch (default: base_lr x effective batch / 256)",
    )  # fmt: skip
    base_lr: float = setting(
        0.16, gt=0, section="solver",
        help="SGD lr per 256 images when --lr is not given, scaled to batch-size x processes x accum-steps",
    )  # fmt: skip
    accum_steps: int = setting(1, ge=1, help="batches accumulated into one optimizer step", section="solver")
    opt: str = setting("sgd", choices=OPTIMIZERS, help="optimizer", section="solver")
    momentum: float = setting(0.9, ge=0, lt=1, help="SGD momentum", section="solver")
    weight_decay: float = setting(
        1e-4, ge=0, help="weight decay (not applied to norm layers and biases)", section="solver"
    )
    lr_scheduler: str = setting(
        "multistep", choices=SCHEDULERS, help="per-iteration lr schedule", section="solver"
    )
    lr_steps: list[int] = setting(  # noqa: RUF009 (a field())
        default_factory=lambda: [8, 11], ge=1,
        help="multistep: epochs after which lr x lr_gamma", section="solver",
    )  # fmt: skip
    lr_gamma: float = setting(0.1, ge=0, le=1, help="multistep: the lr decay factor", section="solver")
    min_lr_ratio: float = setting(0.0, ge=0, le=1, help="cosine: final lr / lr", section="solver")
    warmup_iters: int = setting(1000, ge=0, help="linear warm-up iterations", section="solver")
    warmup_factor: float = setting(
        0.001, ge=0, le=1, help="lr factor at the first warm-up iteration", section="solver"
    )
    clip_grad_norm: Optional[float] = setting(
        None, gt=0, help="clip the gradient norm to this value (default: no clipping)", section="solver"
    )
    ema: bool = setting(
        False, help="keep an EMA of the weights, evaluated beside them (best.pth: the better)",
        section="solver",
    )  # fmt: skip
    ema_decay: float = setting(0.9998, gt=0, lt=1, help="EMA decay", section="solver")
    ema_warmup: int = setting(
        2000, ge=0, help="EMA decay warm-up time constant in optimizer steps (0: none)", section="solver"
    )
    patience: Optional[int] = setting(
        None, ge=1, section="solver",
        help="stop after this many evaluations without a better AP / top-1 (default: never)",
    )  # fmt: skip
    # data
    workers: int = setting(2, ge=0, help="DataLoader worker processes per training process", section="data")
    # runtime
    device: str = setting(
        "auto", **_DEVICE, help="auto (cuda if available), cpu, cuda or cuda:N", section="run"
    )
    amp: bool = setting(
        False, help="mixed precision: float16 + GradScaler on CUDA, bfloat16 autocast on CPU", section="run"
    )
    sync_bn: bool = setting(
        False, help="SyncBatchNorm across the processes of a torchrun job (CUDA)", section="run"
    )
    channels_last: bool = setting(
        False, section="run",
        help="train in the channels_last memory format (faster convolutions on CPU and with CUDA AMP)",
    )  # fmt: skip
    output_dir: str = setting(
        "runs/train", help="checkpoints, metrics.json, config.yaml, TensorBoard events", section="run"
    )
    resume: Optional[str] = setting(
        None, section="run",
        help="checkpoint to resume from, a run folder, or 'auto' (OUTPUT_DIR/checkpoint.pth if present)",
    )  # fmt: skip
    exist_ok: bool = setting(
        False, section="run",
        help="start afresh in an --output-dir that holds another run (its results are removed); by "
        "default a new run there takes the next free name (runs/x2)",
    )  # fmt: skip
    seed: int = setting(0, ge=0, le=MAX_SEED, help="random seed (CPU runs are reproducible)", section="run")
    print_freq: int = setting(
        20, ge=1, help="iterations between log lines / TensorBoard points", section="run"
    )
    threads: Optional[int] = setting(None, ge=1, help="torch CPU threads per process", section="run")

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON/``torch.load(weights_only=True)`` safe), keys by section
        (:func:`ghostdet.config.recipe.to_dict`)."""
        return to_dict(self)
