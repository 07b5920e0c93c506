"""``ghostdet make-cls-data`` (``tools/make_synthetic_cls.py``): a small generated classification
set (one shape per image) in the ImageFolder layout."""

from __future__ import annotations

import argparse

from ghostdet.cli.commands import COMMANDS, Invocation
from ghostdet.cli.errors import ToolArgumentParser, run_tool

__all__ = ["build_parser", "parse_args", "run"]

EPILOG = """Example::

    {cmd} data/shapes_cls --num-classes 4 --num-train 200 --image-size 32
    ghostdet train-cls --data-path data/shapes_cls --model resnet56_cifar --image-size 32 --epochs 5
"""


def build_parser(inv: Invocation) -> ToolArgumentParser:
    """The flags of ``ghostdet make-cls-data``."""
    p = ToolArgumentParser(
        prog=inv.prog,
        description="Write a small generated classification set (one shape per image) in the ImageFolder "
        "layout.",
        epilog=inv.text(EPILOG),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("root", help="output folder (gets train/<class>/ and val/<class>/)")
    p.add_argument("--num-classes", type=int, default=4, help="shape classes, 1-6 (default %(default)s)")
    p.add_argument("--num-train", type=int, default=200, help="train images per class (default %(default)s)")
    p.add_argument("--num-val", type=int, default=50, help="val images per class (default %(default)s)")
    p.add_argument("--image-size", type=int, default=32, help="side in pixels (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default %(default)s)")
    return p


def parse_args(argv: list[str] | None = None, inv: Invocation | None = None) -> argparse.Namespace:
    """Parse ``argv``."""
    return build_parser(inv or COMMANDS["make-cls-data"].invocation()).parse_args(argv)


def run(args: argparse.Namespace, inv: Invocation) -> int:
    """Write the set (``ghostdet.data.classification.make_synthetic_classification``)."""

    def body() -> None:
        from ghostdet.data.classification import make_synthetic_classification

        root = make_synthetic_classification(
            args.root, args.num_classes, args.num_train, args.num_val, args.image_size, args.seed
        )
        counts = f"{args.num_train} train + {args.num_val} val"
        print(f"wrote {args.num_classes} classes x ({counts}) images to {root}")

    return run_tool(body, inv.prog, args.debug)
