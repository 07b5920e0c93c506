"""``ghostdet predict`` (``tools/infer.py``): run a detector on images; save drawn copies and JSON."""

from __future__ import annotations

import argparse

from ghostdet.cli.commands import COMMANDS, Invocation
from ghostdet.cli.common import add_detector_args, detector_kwargs
from ghostdet.cli.errors import ToolArgumentParser, run_tool

__all__ = ["build_parser", "parse_args", "run"]

DESCRIPTION = (
    "Detect objects in images, folders or globs. For each readable image NAME.ext the output "
    "folder gets NAME.jpg (NAME.png for PNG inputs) with the detections drawn and NAME.json; "
    "detections.json lists every image. Unreadable files are reported and skipped; the exit "
    "status is non-zero only if no image could be read."
)

EPILOG = """Examples::

    {cmd} runs/retinanet/best.pth data/synthetic/val --output-dir runs/infer
    {cmd} --checkpoint best.pth "photos/*.jpg" --score-threshold 0.3
    {cmd} --model fasterrcnn --weights frcnn.pth --width 1.1 street.jpg
"""


def build_parser(inv: Invocation) -> ToolArgumentParser:
    """The flags of ``ghostdet predict``."""
    p = ToolArgumentParser(
        prog=inv.prog,
        description=DESCRIPTION,
        epilog=inv.text(EPILOG),
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
    return p


def parse_args(argv: list[str] | None = None, inv: Invocation | None = None) -> argparse.Namespace:
    """Parse and check ``argv`` (flags and inputs may be mixed)."""
    p = build_parser(inv or COMMANDS["predict"].invocation())
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


def run(args: argparse.Namespace, inv: Invocation) -> int:
    """Detect (``ghostdet.predict.infer.run_infer``)."""
    from ghostdet.predict.infer import run_infer

    return run_tool(
        lambda: run_infer(
            args.inputs,
            **detector_kwargs(args),
            score_threshold=args.score_threshold,
            output_dir=args.output_dir,
            draw=not args.no_draw,
        ),
        inv.prog,
        args.debug,
    )
