"""``ghostdet convert`` (``tools/convert_dataset.py``): a YOLO or Pascal VOC split as COCO JSON, or a
COCO-format split as a YOLO or VOC dataset."""

from __future__ import annotations

import argparse

from ghostdet.cli.commands import COMMANDS, Invocation
from ghostdet.cli.errors import ToolArgumentParser, run_tool

__all__ = ["build_parser", "parse_args", "run"]


def build_parser(inv: Invocation) -> ToolArgumentParser:
    """The flags of ``ghostdet convert``."""
    p = ToolArgumentParser(
        prog=inv.prog,
        description="Convert one split of a detection dataset. Without --to: a YOLO (data.yaml or its "
        "folder) or Pascal VOC root given as --input becomes a COCO instances JSON (--output FILE; image "
        "file names relative to the folder it prints). With --to yolo|voc: a COCO JSON (--input FILE, "
        "--images DIR) becomes a YOLO or VOC dataset under --output DIR (images linked, not copied).",
        epilog=inv.text(
            "Examples:\n  {cmd} --input data/voc/VOC2007 --output voc_val.json --split val\n"
            "  {cmd} --input data.yaml --output val.json\n"
            "  {cmd} --to yolo --input instances_val.json --images val/ --output data/mine_yolo"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--input", required=True, help="the source dataset (YOLO/VOC) or COCO JSON (with --to)")
    p.add_argument(
        "--output", required=True, help="the COCO JSON to write, or (with --to) the dataset folder"
    )
    p.add_argument("--split", default="val", help="the split to convert (default %(default)s)")
    p.add_argument(
        "--format", choices=("yolo", "voc"), default=None, help="the source's layout (default: detected)"
    )
    p.add_argument("--to", choices=("yolo", "voc"), default=None, help="write this layout from a COCO JSON")
    p.add_argument("--images", default=None, help="with --to: the folder the COCO JSON's file names are in")
    p.add_argument("--copy-images", action="store_true", help="with --to: copy the images instead of linking")
    p.add_argument(
        "--difficult", choices=("crowd", "object"), default="crowd",
        help="VOC 'difficult' objects: ignored like crowd boxes (default), or plain objects",
    )  # fmt: skip
    return p


def parse_args(argv: list[str] | None = None, inv: Invocation | None = None) -> argparse.Namespace:
    """Parse and check ``argv``."""
    p = build_parser(inv or COMMANDS["convert"].invocation())
    args = p.parse_args(argv)
    if args.to is not None and args.images is None:
        p.error("--to needs --images DIR (the folder the COCO JSON's file names are relative to)")
    if args.to is None and (args.images is not None or args.copy_images):
        p.error("--images and --copy-images go with --to yolo|voc")
    return args


def run(args: argparse.Namespace, inv: Invocation) -> int:
    """The conversion (:mod:`ghostdet.data.convert`)."""
    return run_tool(lambda: _convert(args), inv.prog, args.debug)


def _convert(args: argparse.Namespace) -> None:
    from ghostdet.data.convert import write_coco_json, write_voc, write_yolo
    from ghostdet.data.formats import detect_format, read_split

    if args.to is not None:
        write = write_yolo if args.to == "yolo" else write_voc
        out = write(args.input, args.images, args.output, split=args.split, copy_images=args.copy_images)
        crowd = out.get("crowd_left_out")
        note = f"; {crowd} crowd annotation(s) left out (YOLO has none)" if crowd else ""
        print(f"wrote {out['images']} image(s), {out['boxes']} box(es) as {args.to} in {out['output']}{note}")
        return
    fmt = args.format or detect_format(args.input)
    src = read_split(args.input, args.split, fmt, **({"difficult": args.difficult} if fmt == "voc" else {}))
    out = write_coco_json(src, args.output)
    print(
        f"wrote {out['output']}: {out['images']} image(s), {out['annotations']} annotation(s), "
        f"{out['categories']} categor{'y' if out['categories'] == 1 else 'ies'}; image file names are "
        f"relative to {out['images_dir']}"
    )
