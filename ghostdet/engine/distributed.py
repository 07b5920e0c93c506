"""torch.distributed setup for ``torchrun`` launches (NCCL on CUDA, gloo on CPU)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "DistInfo",
    "all_gather_objects",
    "barrier",
    "cleanup_distributed",
    "init_distributed",
    "reduce_mean",
]


@dataclass
class DistInfo:
    """Where this process sits in the job.

    Attributes:
        rank: global rank (0 when not distributed).
        world_size: number of processes.
        local_rank: rank on this node (selects the GPU).
        device: the device this process trains on.
        distributed: True when a process group was initialised.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    distributed: bool

    @property
    def is_main(self) -> bool:
        """True on rank 0 (logs, checkpoints, TensorBoard)."""
        return self.rank == 0


def init_distributed(device: str = "auto") -> DistInfo:
    """Initialise torch.distributed when launched by ``torchrun`` (``WORLD_SIZE`` > 1).

    Args:
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``. Under torchrun a CUDA device is
            ``cuda:LOCAL_RANK``; the backend is NCCL for CUDA and gloo for CPU.

    Raises:
        ValueError: CUDA requested but not available, or an unknown device string.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r} (use auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available (use --device cpu)")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r} (use auto, cpu, cuda or cuda:N)")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        if dev.type == "cuda" and dev.index is not None:
            torch.cuda.set_device(dev)
        return DistInfo(0, 1, 0, dev, False)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method="env://")
    return DistInfo(rank, world_size, local_rank, dev, True)


def cleanup_distributed() -> None:
    """Destroy the process group if one exists."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _ready() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    """Synchronise all processes (no-op when not distributed)."""
    if _ready():
        dist.barrier()


def reduce_mean(values: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Average a dict of scalar tensors over processes (every rank gets the same numbers).

    Args:
        values: scalar tensors, same keys on every rank.
    """
    if not _ready():
        return {k: v.detach() for k, v in values.items()}
    keys = sorted(values)
    stacked = torch.stack([values[k].detach().float() for k in keys])
    dist.all_reduce(stacked)
    stacked /= dist.get_world_size()
    return dict(zip(keys, stacked))


def all_gather_objects(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` (``[obj]`` when not distributed)."""
    if not _ready():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
