"""Reading checkpoint files safely: the one reader behind weights, detector and training loads.

:func:`read_checkpoint` reads ``.safetensors`` files with safetensors and everything else with
``torch.load(weights_only=True)`` onto the CPU, so reading a file can never execute code. Every
way a file can fail to be read (missing, truncated, not a checkpoint at all, pickled objects
other than tensors and plain containers) raises one :class:`CheckpointReadError` whose message
names the file. What the content must look like is the caller's business (a state dict, a
training checkpoint); a state dict that does not fit a model is
:class:`ghostdet.models.WeightsMismatchError`, a different error.

This module imports nothing else of ghostdet.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import torch

from ghostdet.errors import CheckpointError

__all__ = ["CheckpointReadError", "checkpoint_backbone", "read_checkpoint"]

_MAX_REASON = 300


class CheckpointReadError(CheckpointError):
    """A checkpoint file is missing or cannot be read; the message names the file."""


def _reason(err: BaseException) -> str:
    text = " ".join(str(err).split())
    text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def read_checkpoint(path: str | PathLike) -> Any:
    """Read a checkpoint file onto the CPU without executing pickled code.

    Args:
        path: a ``.safetensors`` file, or a torch file (``.pth``, ``.pt``, ``.bin``, ``.ckpt``,
            ...) holding tensors in plain containers (dict, list, tuple, str, numbers).

    Returns:
        The file's content: a dict of tensors for safetensors, whatever was saved otherwise.

    Raises:
        CheckpointReadError: the file does not exist, or is not a readable checkpoint
            (truncated, another kind of file, or holding objects ``weights_only`` refuses).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointReadError(f"checkpoint file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" not in str(e).lower():
            raise CheckpointReadError(f"could not read checkpoint {path}: {_reason(e)}") from None
        found = re.search(r"GLOBAL (\S+)", str(e))
        raise CheckpointReadError(
            f"could not read checkpoint {path}: it holds pickled objects other than tensors and plain "
            f"containers{f' ({found.group(1)})' if found else ''}, which weights-only loading refuses "
            "(they could run code); save a plain state_dict instead"
        ) from None
    except Exception as e:  # torch/safetensors raise RuntimeError, EOFError, KeyError, ... on bad files
        raise CheckpointReadError(f"could not read checkpoint {path}: {_reason(e)}") from None


def checkpoint_backbone(ckpt: Mapping[str, Any]) -> str:
    """The backbone family a ``tools/train_det.py`` checkpoint was trained on.

    Its ``backbone`` entry, else its config's; checkpoints written before the backbone was
    recorded hold GhostNet V1 detectors, so without either it is ``"ghostnet"``.

    Args:
        ckpt: the loaded checkpoint dict.
    """
    cfg = ckpt.get("config")
    for value in (ckpt.get("backbone"), cfg.get("backbone") if isinstance(cfg, Mapping) else None):
        if isinstance(value, str) and value:
            return value
    return "ghostnet"
