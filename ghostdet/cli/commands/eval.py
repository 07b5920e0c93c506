"""``ghostdet eval`` (``tools/eval_det.py``): COCO bbox evaluation of a detector (pycocotools COCOeval)."""

from __future__ import annotations

import argparse

from ghostdet.cli.commands import COMMANDS, Invocation
from ghostdet.cli.common import add_detector_args, detector_kwargs
from ghostdet.cli.errors import ToolArgumentParser, run_tool

__all__ = ["build_parser", "parse_args", "run"]

DESCRIPTION = (
    "Evaluate a detector on a COCO-format set: prints the 12 COCO bbox stats, per-category "
    "AP (worst first) and images/s; writes OUTPUT_DIR/metrics.json and OUTPUT_DIR/detections.json "
    "(COCO results: real category ids, xywh boxes; pycocotools loadRes accepts it unchanged). "
    "Run under torchrun to shard the images over processes."
)

EPILOG = """Examples::

    # a checkpoint written by ghostdet train on its synthetic val split
    {cmd} --checkpoint runs/retinanet/best.pth \\
        --val-images data/synthetic/val --val-ann data/synthetic/annotations/instances_val.json

    # COCO 2017 val, 2 processes
    torchrun --nproc_per_node 2 {launch} --checkpoint best.pth --data-path /data/coco

    # a builder name + weights file; detections only for test-dev
    {cmd} --model fasterrcnn --weights frcnn.pth --width 1.1 \\
        --val-images /data/coco/test2017 --val-ann /data/coco/annotations/image_info_test-dev2017.json \\
        --results-only
"""


def build_parser(inv: Invocation) -> ToolArgumentParser:
    """The flags of ``ghostdet eval``."""
    p = ToolArgumentParser(
        prog=inv.prog,
        description=DESCRIPTION,
        epilog=inv.text(EPILOG),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    m = p.add_argument_group("model (a train_det checkpoint, or --model with --weights)")
    add_detector_args(m)
    d = p.add_argument_group("data")
    d.add_argument(
        "--data-path",
        help="COCO 2017 root with val2017/ and annotations/instances_val2017.json, or a YOLO data.yaml "
        "(or its folder) or Pascal VOC root, scored on its val split",
    )
    d.add_argument(
        "--data-format", choices=("coco", "yolo", "voc"), default=None,
        help="the layout of --data-path (default: detected)",
    )  # fmt: skip
    d.add_argument(
        "--difficult", choices=("crowd", "object"), default="crowd",
        help="VOC 'difficult' objects: ignored like crowd boxes, as VOC scoring does (default), or scored",
    )  # fmt: skip
    d.add_argument("--val-images", help="image folder (overrides ROOT/val2017)")
    d.add_argument(
        "--val-ann",
        help="COCO annotation JSON (overrides ROOT/annotations/instances_val2017.json); "
        "with --results-only an image-info JSON (e.g. image_info_test-dev2017.json) is enough",
    )
    d.add_argument("--limit", type=int, default=None, metavar="N", help="evaluate only the first N images")
    d.add_argument(
        "--results-only",
        action="store_true",
        help="no scoring: write detections (and images.json: id -> file name) for a set without "
        "annotations; without --val-ann every image of --val-images, ids from numeric file names (else 1..N)",
    )
    d.add_argument(
        "--results",
        metavar="JSON",
        help="no model: score this existing COCO results JSON against --val-ann/--data-path",
    )
    d.add_argument(
        "--strict-data",
        action="store_true",
        help="invalid ground-truth entries are an error instead of being left out and counted "
        "(as ghostdet train --strict-data; crowd and tiny boxes are always kept)",
    )
    r = p.add_argument_group("run")
    r.add_argument(
        "--runtime", choices=("auto", "eager", "torch", "onnxruntime", "openvino"), default="auto",
        help="how the detector runs: auto (on a CPU the fastest installed runtime, measured on the first "
        "image and named in a line; on a GPU eager PyTorch), eager, torch (the fused CPU mode), "
        "onnxruntime or openvino (default %(default)s)",
    )  # fmt: skip
    r.add_argument(
        "--precision", choices=("fp32", "int8"), default="fp32",
        help="int8: post-training static quantization of the ONNX export, run in OpenVINO or "
        "onnxruntime (--runtime openvino, onnxruntime or auto; needs --calibration; default %(default)s)",
    )  # fmt: skip
    r.add_argument(
        "--calibration", default=None, metavar="DIR",
        help="folder of images to calibrate int8 with (e.g. training images; up to 64 are read)",
    )  # fmt: skip
    r.add_argument(
        "--score-threshold",
        type=float,
        default=0.05,
        help="drop detections scoring below this (default %(default)s, torchvision's usual cut)",
    )
    r.add_argument(
        "--max-dets",
        type=int,
        default=100,
        help="detections kept per image; COCOeval counts at most 100 (default %(default)s)",
    )
    r.add_argument(
        "--batch-size", type=int, default=2, help="images per forward pass, per process (default %(default)s)"
    )
    r.add_argument(
        "--workers",
        type=int,
        default=2,
        help="DataLoader worker processes, per process (default %(default)s)",
    )
    r.add_argument(
        "--output-dir",
        default="runs/eval",
        help="where metrics.json and detections.json go (default %(default)s)",
    )
    r.add_argument("--no-progress", action="store_true", help="disable the progress bar")
    a = p.add_argument_group("error analysis (written next to metrics.json; see docs/evaluation.md)")
    a.add_argument(
        "--analysis",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="after scoring, write PR curves, best-F1 score thresholds (also in metrics.json as "
        "best_f1.global.threshold), a confusion matrix and the worst images (default: on)",
    )
    a.add_argument(
        "--confusion-score",
        type=float,
        default=None,
        metavar="FLOAT",
        help="score threshold of the confusion matrix and the error images (default: the global best-F1 one)",
    )
    a.add_argument(
        "--error-images",
        type=int,
        default=8,
        metavar="N",
        help="images drawn for most false positives and for most false negatives (default %(default)s)",
    )
    return p


def parse_args(argv: list[str] | None = None, inv: Invocation | None = None) -> argparse.Namespace:
    """Parse and check ``argv``."""
    p = build_parser(inv or COMMANDS["eval"].invocation())
    args = p.parse_args(argv)
    if args.results is None and args.checkpoint is None and (args.model is None or args.weights is None):
        p.error("give --checkpoint FILE, or --model NAME with --weights FILE (or --results JSON to re-score)")
    for flag in ("limit", "batch_size", "max_dets"):
        v = getattr(args, flag)
        if v is not None and v < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1, got {v}")
    if args.workers < 0 or args.threads < 0:
        p.error("--workers and --threads must be >= 0")
    if args.error_images < 0:
        p.error(f"--error-images must be >= 0, got {args.error_images}")
    if args.confusion_score is not None and args.confusion_score != args.confusion_score:
        p.error("--confusion-score must be a number, got nan")
    return args


def run(args: argparse.Namespace, inv: Invocation) -> int:
    """Evaluate (``ghostdet.evaluation.evaluate.run_eval``)."""
    from ghostdet.evaluation.evaluate import run_eval

    return run_tool(
        lambda: run_eval(
            **detector_kwargs(args),
            data_path=args.data_path,
            val_images=args.val_images,
            val_ann=args.val_ann,
            results=args.results,
            output_dir=args.output_dir,
            batch_size=args.batch_size,
            workers=args.workers,
            score_threshold=args.score_threshold,
            max_dets=args.max_dets,
            limit=args.limit,
            results_only=args.results_only,
            progress=not args.no_progress,
            strict_data=args.strict_data,
            data_format=args.data_format,
            difficult=args.difficult,
            runtime=args.runtime,
            precision=args.precision,
            calibration=args.calibration,
            analysis=args.analysis,
            confusion_score=args.confusion_score,
            error_images=args.error_images,
        ),
        inv.prog,
        args.debug,
    )
