"""The command-line glue the tools share: one-line errors, the detector flags, device choice.

Every tool in ``tools/`` parses its flags with :class:`ToolArgumentParser`, reports a
:class:`ToolError` (or any expected failure, shortened by :func:`one_line`) as a single line
and exits non-zero. The eval and infer tools choose their detector with the flags of
:func:`add_detector_args`; detector names resolve through the model registry.
"""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

import torch

from ghostdet.models.registry import detector_aliases, list_models, model_entry

__all__ = [
    "DETECTOR_ARG_NAMES",
    "ToolArgumentParser",
    "ToolError",
    "add_detector_args",
    "detector_kwargs",
    "one_line",
    "resolve_detector_name",
    "resolve_device",
]


class ToolError(Exception):
    """A user-facing error (bad path, wrong checkpoint, bad flag): the tools print it as one line."""


class ToolArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (``prog: error: message (see --help)``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


DETECTOR_ARG_NAMES = (
    "checkpoint",
    "model",
    "weights",
    "width",
    "num_classes",
    "min_size",
    "max_size",
    "device",
    "threads",
)


def add_detector_args(parser: argparse.ArgumentParser | Any) -> None:
    """Add the flags that choose and place a detector (shared by the eval and infer tools).

    ``--checkpoint``, ``--model``, ``--weights``, ``--width``, ``--num-classes``, ``--min-size``,
    ``--max-size``, ``--device``, ``--threads``; :func:`detector_kwargs` turns them into keyword
    arguments for :func:`ghostdet.inference.load_detector`-based entry points.
    """
    parser.add_argument(
        "--checkpoint",
        help="checkpoint written by tools/train_det.py (carries detector, backbone, width, num_classes, "
        "class names and category mapping)",
    )
    parser.add_argument(
        "--model",
        help=f"detector builder for --weights: {', '.join(detector_aliases())} or a full name "
        f"({', '.join(list_models('detector'))}); with --checkpoint it must match the checkpoint",
    )
    parser.add_argument(
        "--weights", help="weights file for --model (state dict, or a dict with it under 'model')"
    )
    parser.add_argument("--width", type=float, default=None, help="GhostNet width of --model (default 1.0)")
    parser.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="classes incl. background of --model (default: from weights)",
    )
    parser.add_argument("--min-size", type=int, default=None, help="override the detector's resize min size")
    parser.add_argument("--max-size", type=int, default=None, help="override the detector's resize max size")
    parser.add_argument(
        "--device",
        default="auto",
        help="cpu, cuda, cuda:N or auto = cuda when available (default %(default)s)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads per process; 0 keeps torch's default (default %(default)s; 1 suits a busy machine)",
    )


def detector_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The :func:`add_detector_args` values of ``args`` as keyword arguments."""
    return {k: getattr(args, k) for k in DETECTOR_ARG_NAMES}


def one_line(err: BaseException) -> str:
    """A single-line, bounded description of ``err`` for tool error messages."""
    text = "; ".join(s.strip() for s in str(err).splitlines() if s.strip()) or type(err).__name__
    return text if len(text) <= 400 else text[:397] + "..."


def resolve_detector_name(name: str) -> str:
    """Registered detector name of an alias (``fasterrcnn``, ``retinanet``, ...) or of a detector name.

    Raises:
        ToolError: ``name`` is not a registered detector; the message lists the choices.
    """
    try:
        entry = model_entry(name)
    except ValueError:
        entry = None
    if entry is None or entry.kind != "detector":
        choices = [*detector_aliases(), *list_models("detector")]
        raise ToolError(f"unknown detector {name!r}; choose from {', '.join(choices)}")
    return entry.name


def resolve_device(device: str | None) -> torch.device:
    """``None``/``"auto"`` -> cuda if available else cpu; otherwise checked ``torch.device(device)``."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ToolError(f"bad --device {device!r}: {one_line(e)}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ToolError(f"--device {device} requested but CUDA is not available")
    return dev
