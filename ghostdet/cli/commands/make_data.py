"""``ghostdet make-data`` (``tools/make_synthetic_coco.py``): write the synthetic shapes dataset
(COCO format, train + val) that training uses by default."""

from __future__ import annotations

import argparse

from ghostdet.cli.commands import COMMANDS, Invocation
from ghostdet.cli.errors import ToolArgumentParser, run_tool
from ghostdet.config.detection import _SANE, MAX_SEED, MAX_SYNTHETIC_IMAGE_SIZE
from ghostdet.config.recipe import ranged_type

__all__ = ["build_parser", "parse_args", "run"]


def build_parser(inv: Invocation) -> ToolArgumentParser:
    """The flags of ``ghostdet make-data``."""
    from ghostdet.data.synthetic import SHAPE_CATEGORIES

    names = ", ".join(f"{n} (id {i})" for i, n in SHAPE_CATEGORIES)
    p = ToolArgumentParser(
        prog=inv.prog,
        description="Generate a deterministic COCO-format shapes dataset: OUTPUT/{train,val}/*.jpg and "
        "OUTPUT/annotations/instances_{train,val}.json.",
        epilog=inv.text("Example: {cmd} --output data/synthetic --num-train 480 --num-val 80"),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--output", default="data/synthetic", help="output folder (created)")
    p.add_argument("--num-train", type=int, default=480, help="number of train images")
    p.add_argument("--num-val", type=int, default=80, help="number of val images")
    # upper bounds here (the recipe's declared ones); the generator names its lower bounds itself
    p.add_argument("--image-size", type=ranged_type(int, le=MAX_SYNTHETIC_IMAGE_SIZE, why=_SANE), nargs="+",
                   default=[128], metavar="S", help=f"image size in pixels: S for square or H W "
                   f"(32 to {MAX_SYNTHETIC_IMAGE_SIZE}, a sane maximum)")  # fmt: skip
    p.add_argument("--seed", type=ranged_type(int, le=MAX_SEED), default=0,
                   help="random seed, 0 to 2**63 - 1 (same seed -> identical files)")  # fmt: skip
    p.add_argument("--num-categories", type=int, default=4,
                   help=f"number of shape classes, taken in order from: {names}")  # fmt: skip
    p.add_argument("--min-object-size", type=int, default=24, help="smallest shape size in pixels")
    p.add_argument("--max-object-size", type=int, default=64, help="largest shape size in pixels")
    p.add_argument("--max-objects", type=int, default=3, help="most shapes in one image")
    p.add_argument("--empty-prob", type=float, default=0.05, help="fraction of images with no shape")
    return p


def parse_args(argv: list[str] | None = None, inv: Invocation | None = None) -> argparse.Namespace:
    """Parse and check ``argv``."""
    p = build_parser(inv or COMMANDS["make-data"].invocation())
    args = p.parse_args(argv)
    if len(args.image_size) > 2:
        p.error(f"--image-size takes S or H W, got {len(args.image_size)} values")
    return args


def run(args: argparse.Namespace, inv: Invocation) -> int:
    """Write the dataset (``ghostdet.data.synthetic.make_synthetic_coco``)."""
    return run_tool(lambda: _make(args), inv.prog, args.debug)


def _make(args: argparse.Namespace) -> None:
    from ghostdet.data.synthetic import make_synthetic_coco

    size = args.image_size[0] if len(args.image_size) == 1 else args.image_size
    paths = make_synthetic_coco(
        args.output,
        num_train=args.num_train,
        num_val=args.num_val,
        image_size=size,
        seed=args.seed,
        num_categories=args.num_categories,
        object_size=(args.min_object_size, args.max_object_size),
        max_objects=args.max_objects,
        empty_prob=args.empty_prob,
    )
    print(f"wrote {args.num_train} train images to {paths['train_images']} ({paths['train_ann']})")
    print(f"wrote {args.num_val} val images to {paths['val_images']} ({paths['val_ann']})")
