"""``ghostdet predict`` (``tools/infer.py``): run a detector on images and videos; save drawn copies
and JSON."""

from __future__ import annotations

import argparse

from ghostdet.cli.commands import COMMANDS, Invocation
from ghostdet.cli.common import add_detector_args, detector_kwargs
from ghostdet.cli.errors import ToolArgumentParser, run_tool
from ghostdet.config.recipe import ranged_type

__all__ = ["build_parser", "parse_args", "run"]

DESCRIPTION = (
    "Detect objects in images, folders, globs and videos. For each readable image NAME.ext the output "
    "folder gets NAME.jpg (NAME.png for PNG inputs) with the detections drawn and NAME.json; "
    "detections.json lists every image. A video (.mp4 .avi .mov .mkv .webm; needs the video extra: "
    "pip install ghostdet[video]) gives NAME.mp4 with the detections drawn, at its frame rate and "
    "size, and NAME.jsonl with one line of detections per frame. Unreadable files are reported and "
    "skipped; the exit status is non-zero only if no input could be read."
)

EPILOG = """Examples::

    {cmd} runs/retinanet/best.pth data/synthetic/val --output-dir runs/infer
    {cmd} --checkpoint best.pth "photos/*.jpg" --score-threshold 0.3
    {cmd} --model fasterrcnn --weights frcnn.pth --width 1.1 street.jpg
    {cmd} best.pth clip.mp4 --batch-size 8 --output-dir runs/video
    {cmd} best.pth photos/ --score-threshold best --thresholds-from runs/eval/metrics.json
"""

#: library parameters -> this command's flags (for one-line errors that name the flag)
FLAGS = {
    "score_threshold": "--score-threshold",
    "thresholds_from": "--thresholds-from",
    "runtime": "--runtime",
}


def _threshold(text: str) -> float | str:
    """``--score-threshold``: a number in [0, 1], or ``best``."""
    if text.strip().lower() == "best":
        return "best"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number in [0, 1] or 'best', got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


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
        help="image file, folder (its image files, not recursive), quoted glob pattern ('dir/**/*.jpg') or "
        "video file; with no --checkpoint/--model the first INPUT is taken as the checkpoint",
    )
    add_detector_args(p)
    p.add_argument(
        "--score-threshold",
        type=_threshold,
        default=0.5,
        help="keep detections scoring at least this (default %(default)s); 'best': the best-F1 threshold "
        "that evaluation recorded (in --thresholds-from, or in the checkpoint)",
    )
    p.add_argument(
        "--thresholds-from",
        metavar="METRICS_JSON",
        help="the metrics.json of 'ghostdet eval' that --score-threshold best reads",
    )
    p.add_argument(
        "--batch-size",
        type=ranged_type(int, ge=1),
        default=1,
        help="images or video frames per detector call (default %(default)s; images are batched with "
        "others of the same input size, so results equal one-by-one prediction)",
    )
    p.add_argument(
        "--runtime",
        default="auto",
        help="how the detector runs: auto (on a CPU the fastest installed runtime, measured on the first "
        "images and named in a line; on a GPU eager PyTorch), eager (PyTorch as it is), torch (alias "
        "deploy: the fused CPU mode of ghostdet.deploy), onnxruntime or openvino (default %(default)s)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar over a video's frames")
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
    if args.thresholds_from is not None and args.score_threshold != "best":
        p.error("--thresholds-from is read by --score-threshold best only")
    if args.threads < 0:
        p.error("--threads must be >= 0")
    return args


def run(args: argparse.Namespace, inv: Invocation) -> int:
    """Detect (``ghostdet.predict.infer.run_infer``): images, and videos through PyAV."""
    from ghostdet.predict.infer import run_infer

    return run_tool(
        lambda: run_infer(
            args.inputs,
            **detector_kwargs(args),
            score_threshold=args.score_threshold,
            thresholds_from=args.thresholds_from,
            batch_size=args.batch_size,
            runtime=args.runtime,
            output_dir=args.output_dir,
            draw=not args.no_draw,
            progress=not args.no_progress,
        ),
        inv.prog,
        args.debug,
        argument_flags=FLAGS,
    )
