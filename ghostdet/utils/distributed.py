"""torch.distributed helpers shared by training and evaluation (``torchrun`` launches).

One rule decides where a process sits: an initialised process group is the truth (its rank and
world size); without one the process is alone, rank 0 of 1. The ``torchrun`` environment
(``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``) is read only by :func:`init_distributed`, to decide
whether to join a group: a process that was launched by torchrun but has not joined yet does not
shard its work, because it could not gather the other ranks' results.

The backend is NCCL on CUDA and gloo on CPU. This module imports nothing else of ghostdet.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ghostdet.errors import InputError

__all__ = [
    "DistInfo",
    "all_gather_objects",
    "barrier",
    "cleanup_distributed",
    "init_distributed",
    "is_main_process",
    "rank_world",
    "reduce_mean",
]


@dataclass
class DistInfo:
    """Where this process sits in the job.

    Attributes:
        rank: global rank (0 when not distributed).
        world_size: number of processes.
        local_rank: rank on this node (selects the GPU).
        device: the device this process runs on.
        distributed: True when a process group with more than one process is in use.
        created: True when :func:`init_distributed` created that group (and
            :func:`cleanup_distributed` should destroy it).
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    distributed: bool
    created: bool = False

    @property
    def is_main(self) -> bool:
        """True on rank 0 (logs, checkpoints, TensorBoard, output files)."""
        return self.rank == 0


def _group_ready() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised process group; ``(0, 1)`` without one."""
    if _group_ready():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """True on rank 0, and in a process that is not part of a process group."""
    return rank_world()[0] == 0


def _parse_device(device: str | torch.device) -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise InputError(
            f"unknown device {device!r} (use auto, cpu, cuda or cuda:N)", argument="device"
        ) from None
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"unsupported device {device!r} (use auto, cpu, cuda or cuda:N)", argument="device")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(
            f"device {device!r} requested but CUDA is not available (use cpu)", argument="device"
        )
    return dev


def init_distributed(device: str | torch.device = "auto") -> DistInfo:
    """Join the ``torchrun`` process group (``WORLD_SIZE`` > 1), or use an existing one.

    Args:
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (checked), or a ``torch.device``
            (used as given). In a group of CUDA processes each uses ``cuda:LOCAL_RANK``; the
            backend is NCCL for CUDA and gloo otherwise.

    Returns:
        The placement; ``created`` tells whether this call created the group.

    Raises:
        ValueError: CUDA requested but not available, or an unknown device string.
    """
    dev = _parse_device(device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    created = False
    if not _group_ready() and int(os.environ.get("WORLD_SIZE", "1")) > 1 and dist.is_available():
        if dev.type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", init_method="env://")
        created = True
    rank, world_size = rank_world()
    if world_size > 1 and dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
    if dev.type == "cuda" and dev.index is not None:
        torch.cuda.set_device(dev)
    return DistInfo(rank, world_size, local_rank if world_size > 1 else 0, dev, world_size > 1, created)


def cleanup_distributed(info: DistInfo | None = None) -> None:
    """Destroy the process group: the one ``info`` says :func:`init_distributed` created, or
    (``info=None``) whichever exists."""
    if info is not None and not info.created:
        return
    if _group_ready():
        dist.destroy_process_group()


def barrier() -> None:
    """Synchronise all processes (no-op when not distributed)."""
    if rank_world()[1] > 1:
        dist.barrier()


def reduce_mean(values: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Average a dict of scalar tensors over processes (every rank gets the same numbers).

    Args:
        values: scalar tensors, same keys on every rank.
    """
    world_size = rank_world()[1]
    if world_size == 1:
        return {k: v.detach() for k, v in values.items()}
    keys = sorted(values)
    stacked = torch.stack([values[k].detach().float() for k in keys])
    dist.all_reduce(stacked)
    stacked /= world_size
    return dict(zip(keys, stacked))


def all_gather_objects(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` (``[obj]`` when not distributed)."""
    world_size = rank_world()[1]
    if world_size == 1:
        return [obj]
    out: list[Any] = [None] * world_size
    dist.all_gather_object(out, obj)
    return out
