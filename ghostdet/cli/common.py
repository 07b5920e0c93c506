"""Flags shared by several tools: choosing and placing a trained detector."""

from __future__ import annotations

import argparse
from typing import Any

from ghostdet.models.registry import detector_aliases, list_models

__all__ = ["DETECTOR_ARG_NAMES", "add_detector_args", "detector_kwargs"]


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
    arguments for :func:`ghostdet.models.loading.load_detector`-based entry points.
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
    from ghostdet.config.detection import TrainConfig
    from ghostdet.config.recipe import flag_type

    # the same declared ranges as the training recipe's min_size / max_size
    parser.add_argument(
        "--min-size", type=flag_type(TrainConfig, "min_size"), default=None,
        help="override the detector's resize min size",
    )  # fmt: skip
    parser.add_argument(
        "--max-size", type=flag_type(TrainConfig, "max_size"), default=None,
        help="override the detector's resize max size",
    )  # fmt: skip
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
