#!/usr/bin/env python
"""Run a GhostNet detector on images: save copies with boxes, class names and scores drawn, and JSON.

Examples::

    python tools/infer.py runs/retinanet/best.pth data/synthetic/val --output-dir runs/infer
    python tools/infer.py --checkpoint best.pth "photos/*.jpg" --score-threshold 0.3
    python tools/infer.py --model fasterrcnn --weights frcnn.pth --width 1.1 street.jpg
"""

from __future__ import annotations

import argparse
import sys

from ghostdet.cli import ToolArgumentParser, add_detector_args, detector_kwargs, run_tool
from ghostdet.predict.infer import run_infer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ToolArgumentParser(
        description="Detect objects in images, folders or globs. For each readable image NAME.ext the output "
        "folder gets NAME.jpg (NAME.png for PNG inputs) with the detections drawn and NAME.json; "
        "detections.json lists every image. Unreadable files are reported and skipped; the exit "
        "status is non-zero only if no image could be read.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image file, folder (its image files, not recursive) or quoted glob pattern ('dir/**/*.jpg'); "
        "with no --checkpoint/--model the first INPUT is taken as the checkpoint",
    )
    add_detector_args(p)
    p.add_argument(
        "--score-threshold",
        type=float,
        default=0.5,
        help="keep detections scoring at least this (default %(default)s)",
    )
    p.add_argument("--output-dir", default="runs/infer", help="output folder (default %(default)s)")
    p.add_argument("--no-draw", action="store_true", help="write the JSON files only, no drawn images")
    args = p.parse_intermixed_args(argv)
    if args.checkpoint is None and args.model is None:
        if len(args.inputs) < 2:
            p.error("give --checkpoint FILE (or --model NAME --weights FILE) and at least one INPUT")
        args.checkpoint = args.inputs.pop(0)
    if args.model is not None and args.weights is None and args.checkpoint is None:
        p.error("--model needs --weights FILE")
    if not 0.0 <= args.score_threshold <= 1.0:
        p.error(f"--score-threshold must be in [0, 1], got {args.score_threshold}")
    if args.threads < 0:
        p.error("--threads must be >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_tool(
        lambda: run_infer(
            args.inputs,
            **detector_kwargs(args),
            score_threshold=args.score_threshold,
            output_dir=args.output_dir,
            draw=not args.no_draw,
        ),
        "infer.py",
        args.debug,
    )


if __name__ == "__main__":
    sys.exit(main())
