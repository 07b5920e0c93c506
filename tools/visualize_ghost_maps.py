#!/usr/bin/env python
"""Draw a GhostModule's intrinsic feature maps next to the ghost maps made from them.

Also prints, for every GhostModule, the mean cosine similarity between each ghost map and the
intrinsic map it is computed from (the paper's argument that ghost maps are cheap transforms).

Examples::

    python tools/visualize_ghost_maps.py --list
    python tools/visualize_ghost_maps.py photo.jpg --module blocks.6.0.ghost1 --output docs/ghost_maps.png
    python tools/visualize_ghost_maps.py photo.jpg --weights imagenet          # pretrained GhostNet 1.0x
    python tools/visualize_ghost_maps.py photo.jpg --checkpoint best.pth --module blocks.3.0.ghost1
    python tools/visualize_ghost_maps.py cat.png --checkpoint runs/cls_ghost_resnet56_cifar10/best.pth \\
        --module layer1.0.conv1                    # a train_cls checkpoint (the CIFAR ghost-map picture)
"""

from __future__ import annotations

import argparse
import sys

from ghostdet.analysis.ghost_maps import run_visualize
from ghostdet.cli import ToolArgumentParser, run_tool


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ToolArgumentParser(
        description="Save a PNG grid of a GhostModule's intrinsic maps (primary conv output) beside their "
        "ghost maps (cheap depthwise op output; ghost map c comes from intrinsic map c // (s-1)) and print "
        "the mean cosine similarity of ghost maps with their sources for every GhostModule.",
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
        help="use a tools/train_det.py detector checkpoint (its trunk; the backbone is read from the "
        "checkpoint) or a tools/train_cls.py classifier checkpoint (GhostNet or a --ghostify model; its "
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
    args = p.parse_args(argv)
    if not args.list and args.image is None:
        p.error("give an IMAGE (or --list)")
    for flag in ("size", "num_maps", "columns"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
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
        "visualize_ghost_maps.py",
        args.debug,
    )


if __name__ == "__main__":
    sys.exit(main())
