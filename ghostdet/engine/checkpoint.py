"""Training checkpoints: atomic writes, RNG states as tensors, ``weights_only`` loading.

A checkpoint is a plain dict (tensors, dicts, lists, str, int, float only), so
``torch.load(path, weights_only=True)`` reads it::

    {"model", "optimizer", "lr_scheduler", "scaler", "epoch" (last finished, 1-based),
     "config" (resolved TrainConfig dict), "detector" (builder name), "backbone" (its backbone
     family; checkpoints without it are ``ghostnet``), "width", "num_classes",
     "label_to_cat_id", "category_names", "metrics" (last evaluation), "history", "best_ap",
     "best_epoch" (0 before the first evaluation), "rng",
     "global_step", "format"}
"""

from __future__ import annotations

import io
import random
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ghostdet.errors import CheckpointError, InputError
from ghostdet.utils.checkpoint_io import checkpoint_backbone, read_checkpoint
from ghostdet.utils.files import atomic_write_bytes

__all__ = [
    "CHECKPOINT_FORMAT",
    "atomic_save",
    "checkpoint_backbone",
    "get_rng_state",
    "load_checkpoint",
    "resolve_resume_path",
    "set_rng_state",
]

CHECKPOINT_FORMAT = 1


def atomic_save(obj: Any, path: str | PathLike) -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, then ``os.replace``.

    A reader (or a crash at any point) sees either the old file or the complete new one (see
    :func:`ghostdet.utils.files.atomic_write`).
    """
    # serialised in memory first: torch's zip writer turns a failed write (disk full, a file-size
    # limit) into an opaque RuntimeError, a plain write keeps the OSError that says why
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getbuffer(), fsync=True)


def get_rng_state() -> dict[str, Any]:
    """The torch (CPU and CUDA), numpy and python RNG states, as tensors and plain numbers."""
    np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_cached),
        },
        "python": {
            "version": int(py_version),
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss": None if py_gauss is None else float(py_gauss),
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore states saved by :func:`get_rng_state` (missing parts are left alone)."""
    if "torch" in state:
        torch.set_rng_state(state["torch"].to(torch.uint8).cpu())
    if "numpy" in state:
        n = state["numpy"]
        keys = n["keys"].numpy().astype(np.uint32)
        np.random.set_state(
            (n["name"], keys, int(n["pos"]), int(n["has_gauss"]), float(n["cached_gaussian"]))
        )
    if "python" in state:
        p = state["python"]
        random.setstate((int(p["version"]), tuple(int(v) for v in p["state"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def load_checkpoint(path: str | PathLike) -> dict[str, Any]:
    """Read a training checkpoint with ``weights_only=True`` onto the CPU.

    Raises:
        CheckpointReadError: the file is missing or unreadable (a ``ValueError``).
        CheckpointError: the file is not a training checkpoint.
    """
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "epoch" not in ckpt:
        raise CheckpointError(f"{path} is not a tools/train_det.py checkpoint (no 'model'/'epoch' entries)")
    return ckpt


def resolve_resume_path(resume: str | None, output_dir: str | PathLike) -> Path | None:
    """The checkpoint to resume from.

    Args:
        resume: ``None`` (start fresh), ``auto`` (``output_dir/checkpoint.pth`` when it exists,
            else start fresh), a checkpoint file, or a folder holding ``checkpoint.pth``.
        output_dir: the run's output folder.

    Raises:
        InputError: an explicit path that does not exist (``argument="resume"``).
    """
    if resume is None or resume == "":
        return None
    if resume == "auto":
        p = Path(output_dir) / "checkpoint.pth"
        return p if p.is_file() else None
    p = Path(resume)
    if p.is_dir():
        p = p / "checkpoint.pth"
    if not p.is_file():
        raise InputError(f"resume checkpoint not found: {p}", argument="resume")
    return p
