"""``ghostdet visualize`` (``tools/visualize_ghost_maps.py``): a Ghost module's intrinsic feature maps
beside the ghost maps made from them."""

from __future__ import annotations

import argparse

from ghostdet.cli.commands import COMMANDS, Invocation
from ghostdet.cli.errors import ToolArgumentParser, run_tool

__all__ = ["build_parser", "parse_args", "run"]

DESCRIPTION = (
    "Save a PNG grid of a GhostModule's intrinsic maps (primary conv output) beside their "
    "ghost maps (cheap depthwise op output; ghost map c comes from intrinsic map c // (s-1)) and print "
    "the mean cosine similarity of ghost maps with their sources for every GhostModule."
)

EPILOG = """Examples::

    {cmd} --list
    {cmd} photo.jpg --module blocks.6.0.ghost1 --output docs/ghost_maps.png
    {cmd} photo.jpg --weights imagenet          # pretrained GhostNet 1.0x
    {cmd} photo.jpg --checkpoint best.pth --module blocks.3.0.ghost1
    {cmd} cat.png --checkpoint runs/cls_ghost_resnet56_cifar10/best.pth \\
        --module layer1.0.conv1                    # a train-cls checkpoint (the CIFAR ghost-map picture)
"""


def build_parser(inv: Invocation) -> ToolArgumentParser:
    """The flags of ``ghostdet visualize``."""
    p = ToolArgumentParser(
        prog=inv.prog,
        description=DESCRIPTION,
        epilog=inv.text(EPILOG),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("image", nargs="?", help="input image (any format PIL reads); not needed with --list")
    p.add_argument(
        "--module",
        help="GhostModule to draw, full name or unique suffix, e.g. blocks.6.0.ghost1 "
        "(default: the first GhostModule); see --list",
    )
    p.add_argument(
        "--list", action="store_true", help="print every GhostModule name (with channels) and exit"
    )
    p.add_argument(
        "--model",
        default="ghostnet_100",
        help="classifier of a GhostNet family: ghostnet_050/100/110/130, ghostnetv2_100/130/160 or "
        "ghostnetv3_050/100/130/160 (default %(default)s)",
    )
    p.add_argument("--width", type=float, default=None, help="override the classifier's width multiplier")
    p.add_argument(
        "--weights",
        help="classifier weights: 'imagenet' (downloads the authors' checkpoint for the width), URL or file "
        "(default: random initialisation with --seed)",
    )
    p.add_argument(
        "--checkpoint",
        help="use a detector checkpoint of ghostdet train (its trunk; the backbone is read from the "
        "checkpoint) or a classifier checkpoint of ghostdet train-cls (GhostNet or a --ghostify model; its "
        "image size and normalisation) instead",
    )
    p.add_argument(
        "--size",
        type=int,
        default=224,
        help="classifier input: resize + centre crop to SIZE (default %(default)s)",
    )
    p.add_argument("--num-maps", type=int, default=16, help="intrinsic maps drawn (default %(default)s)")
    p.add_argument("--columns", type=int, default=4, help="tiles per grid row (default %(default)s)")
    p.add_argument("--output", default="ghost_maps.png", help="output PNG (default %(default)s)")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the random initialisation (default %(default)s)"
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default %(default)s)")
    return p


def parse_args(argv: list[str] | None = None, inv: Invocation | None = None) -> argparse.Namespace:
    """Parse and check ``argv``."""
    p = build_parser(inv or COMMANDS["visualize"].invocation())
    args = p.parse_args(argv)
    if not args.list and args.image is None:
        p.error("give an IMAGE (or --list)")
    for flag in ("size", "num_maps", "columns"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1")
    return args


def run(args: argparse.Namespace, inv: Invocation) -> int:
    """Draw and print (``ghostdet.analysis.ghost_maps.run_visualize``)."""
    from ghostdet.analysis.ghost_maps import run_visualize

    return run_tool(
        lambda: run_visualize(
            args.image,
            args.module,
            model=args.model,
            width=args.width,
            weights=args.weights,
            checkpoint=args.checkpoint,
            size=args.size,
            num_maps=args.num_maps,
            columns=args.columns,
            output=args.output,
            list_only=args.list,
            seed=args.seed,
            device=args.device,
        ),
        inv.prog,
        args.debug,
    )
