"""``ghostdet browse`` (``tools/browse_dataset.py``): draw a dataset's images with their ground-truth
boxes and class names, to check the labels before training."""

from __future__ import annotations

import argparse

from ghostdet.cli.commands import COMMANDS, Invocation
from ghostdet.cli.errors import ToolArgumentParser, run_tool

__all__ = ["build_parser", "parse_args", "run"]

EPILOG = """Examples::

    {cmd} --data-path data/synthetic --output-dir runs/browse
    {cmd} --data-path data/coco128/data.yaml --split val --num-images 32
    {cmd} --data-path data/VOC2012 --augmented --config configs/retinanet_ghostnet100_coco_1x.yaml
"""

#: library parameters -> this command's flags
FLAGS = {"num_images": "--num-images", "split": "--split", "data_format": "--data-format"}


def build_parser(inv: Invocation) -> ToolArgumentParser:
    """The flags of ``ghostdet browse``."""
    p = ToolArgumentParser(
        prog=inv.prog,
        description="Draw a random sample of a dataset's images with their ground-truth boxes and class "
        "names into a folder (NNNN_NAME.png), as training reads them (COCO JSON, YOLO or Pascal VOC), "
        "optionally after the training augmentation, so the labels can be checked by eye.",
        epilog=inv.text(EPILOG),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data-path",
        help="the dataset: a COCO root (train2017/ + annotations/, or the synthetic layout), a YOLO "
        "data.yaml or its folder, or a Pascal VOC root",
    )
    p.add_argument("--data-format", choices=("coco", "yolo", "voc"), help="the layout of --data-path "
                   "(default: detected)")  # fmt: skip
    p.add_argument("--train-images", help="a COCO image folder (with --train-ann, instead of --data-path)")
    p.add_argument("--train-ann", help="its COCO instances JSON")
    p.add_argument("--split", default="train", help="the split of --data-path to draw (default %(default)s)")
    p.add_argument("--num-images", type=int, default=16, help="how many images (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="chooses the images and the augmentation (default 0)")
    p.add_argument(
        "--augmented",
        action="store_true",
        help="draw them after the training augmentation, as the detector sees them",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="a training recipe whose augment settings --augmented uses (default: the training defaults)",
    )
    p.add_argument("--output-dir", default="runs/browse", help="output folder (default %(default)s)")
    return p


def parse_args(argv: list[str] | None = None, inv: Invocation | None = None) -> argparse.Namespace:
    """Parse and check ``argv``."""
    p = build_parser(inv or COMMANDS["browse"].invocation())
    args = p.parse_args(argv)
    if args.data_path is None and (args.train_images is None or args.train_ann is None):
        p.error("give --data-path, or --train-images with --train-ann")
    if args.config is not None and not args.augmented:
        p.error("--config gives the augmentation settings: use it with --augmented")
    if args.num_images < 1:
        p.error(f"--num-images must be >= 1, got {args.num_images}")
    return args


def run(args: argparse.Namespace, inv: Invocation) -> int:
    """Draw the sample (``ghostdet.predict.browse.browse_dataset``)."""
    return run_tool(lambda: _browse(args), inv.prog, args.debug, argument_flags=FLAGS)


def _browse(args: argparse.Namespace) -> None:
    from ghostdet.predict.browse import browse_dataset

    augment = None
    if args.config is not None:
        from ghostdet.config.detection import load_config

        augment = load_config(args.config).augment
    browse_dataset(
        args.data_path,
        args.output_dir,
        num_images=args.num_images,
        augmented=args.augmented,
        seed=args.seed,
        split=args.split,
        train_images=args.train_images,
        train_ann=args.train_ann,
        augment=augment,
        data_format=args.data_format,
    )
