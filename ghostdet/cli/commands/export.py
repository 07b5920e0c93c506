"""``ghostdet export`` (``tools/export_onnx.py``): GhostNet models (deploy mode) to ONNX, checked
against PyTorch with onnxruntime."""

from __future__ import annotations

import argparse
from pathlib import Path

from ghostdet.cli.commands import COMMANDS, Invocation
from ghostdet.cli.errors import ToolArgumentParser, run_tool
from ghostdet.config.recipe import ranged_type
from ghostdet.deploy.onnx import export_names, supported_opsets
from ghostdet.models.family import list_families

__all__ = ["build_parser", "parse_args", "run"]

DESCRIPTION = "Export GhostNet models (deploy mode) to ONNX and check them against PyTorch with onnxruntime."

EPILOG = """Examples::

    {cmd} --model all --out-dir exports
    {cmd} --model fasterrcnn_320 --weights runs/exp/checkpoint.pth --out model.onnx
    {cmd} --model classifier --backbone ghostnetv2 --weights imagenet
"""


def build_parser(inv: Invocation) -> ToolArgumentParser:
    """The flags of ``ghostdet export``."""
    p = ToolArgumentParser(
        prog=inv.prog,
        description=DESCRIPTION,
        epilog=inv.text(EPILOG),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        default="all",
        choices=(*export_names(), "all"),
        help="what to export: GhostNet classifier, GhostNet-FPN backbone, one of the detectors, "
        "or all of them (default: %(default)s)",
    )
    p.add_argument(
        "--weights",
        default=None,
        help="weights to load: a classifier checkpoint / 'imagenet' for classifier and backbone, "
        "a ghostdet train checkpoint for a detector (default: random weights)",
    )
    p.add_argument(
        "--width", type=float, default=1.0, help="GhostNet width multiplier (default: %(default)s)"
    )
    p.add_argument(
        "--backbone",
        choices=list_families(),
        default=None,
        help="backbone family of the model (default: ghostnet, or for a detector the one its "
        "training checkpoint records)",
    )
    p.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="classes (detectors: incl. background); default 1000 / 91 or the checkpoint's",
    )
    p.add_argument("--out", type=Path, default=None, help="output file (single --model only)")
    p.add_argument(
        "--out-dir",
        type=Path,
        default=Path("exports"),
        help="output folder, files named <model>.onnx (default: %(default)s)",
    )
    p.add_argument(
        "--image",
        type=Path,
        default=None,
        help="image used to trace and verify; default: the first image of ../shared/data/coco128 "
        "next to the repository if present, else a generated 480x640 image",
    )
    lo, hi = supported_opsets()
    p.add_argument(
        "--opset", type=ranged_type(int, ge=lo, le=hi), default=17,
        help=f"ONNX opset, {lo} to {hi} (what this torch's exporter writes; default: %(default)s)",
    )  # fmt: skip
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime comparison")
    p.add_argument(
        "--int8-calibration", type=Path, default=None, metavar="DIR",
        help="also write <model>-int8.onnx: onnxruntime's post-training static quantization, "
        "calibrated on the images of DIR (up to 64)",
    )  # fmt: skip
    p.add_argument(
        "--static-shape",
        action="store_true",
        help="classifier/backbone: export for a fixed 1x3x224x224 input (onnxruntime then fuses "
        "the residual additions into the convolutions); detectors keep dynamic sizes",
    )
    p.add_argument(
        "--align",
        type=int,
        choices=(8, 16),
        default=None,
        help="GhostNet V1/V2 parts: pad channels to this multiple, onnxruntime's NCHWc block on the "
        "CPU that will run the file (16 with AVX-512, 8 with AVX2; default: this machine's)",
    )
    return p


def parse_args(argv: list[str] | None = None, inv: Invocation | None = None) -> argparse.Namespace:
    """Parse and check ``argv``."""
    p = build_parser(inv or COMMANDS["export"].invocation())
    args = p.parse_args(argv)
    if args.out is not None and args.model == "all":
        p.error("--out needs a single --model (use --out-dir with --model all)")
    if args.image is not None and not args.image.is_file():
        p.error(f"--image {args.image} does not exist")
    return args


def run(args: argparse.Namespace, inv: Invocation) -> int:
    """Export (``ghostdet.deploy.onnx.export_models``), printing one line per model."""
    from ghostdet.deploy.onnx import ExportError

    return run_tool(lambda: _export(args), inv.prog, args.debug, expected=(ExportError,))


def _export(args: argparse.Namespace) -> None:
    from ghostdet.deploy.onnx import export_models

    for line in export_models(
        models=export_names() if args.model == "all" else (args.model,),
        out=args.out,
        out_dir=args.out_dir,
        weights=args.weights,
        width=args.width,
        num_classes=args.num_classes,
        image=args.image,
        opset=args.opset,
        verify=not args.no_verify,
        backbone=args.backbone,
        static_shape=args.static_shape,
        align=args.align,
        int8_calibration=args.int8_calibration,
    ):
        print(line)
