"""``ghostdet compare`` (``tools/compare_backbones.py``): GhostNet against MobileNetV2/V3: params,
MACs (two conventions) and CPU latency.

"MACs" are multiply-adds of conv and linear layers only (the convention of the GhostNet and
MobileNet papers and of torchvision's metadata); thop's count also includes BatchNorm and
pooling and is therefore higher. The 224 columns are for the full classifier; the detection-size
columns are for the trunk (everything before global pooling; for detection backbones, body+FPN).

Examples::

    ghostdet compare --no-latency
    ghostdet compare --threads 1 --runs 20 --csv out.csv --plot out.png
    ghostdet compare --detection --models ghostnet_110_fpn mobilenet_v3_large_fpn
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from ghostdet.analysis import (
    BACKBONES,
    DETECTION_BACKBONES,
    compare_backbones,
    format_markdown,
    plot_macs_latency,
    write_csv,
)
from ghostdet.cli.commands import COMMANDS, Invocation
from ghostdet.cli.errors import ToolArgumentParser, run_tool
from ghostdet.config.recipe import ranged_type

__all__ = ["MAX_DET_SIDE", "build_parser", "parse_args", "run"]

DESCRIPTION = "Compare GhostNet with MobileNetV2/V3: params, MACs (two conventions) and CPU latency."

#: Largest side of a detection input size (a sane maximum: larger is no detector input).
MAX_DET_SIDE = 8192


def _size(text: str) -> tuple[int, int]:
    try:
        parts = [int(v) for v in text.lower().replace(",", "x").split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW (e.g. 800x1333) or S, got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected HxW with positive integers, got {text!r}")
    if max(parts) > MAX_DET_SIDE:
        raise argparse.ArgumentTypeError(
            f"sides must be at most {MAX_DET_SIDE} (a sane maximum), got {text!r}"
        )
    return parts[0], parts[1]


#: argparse types of the count flags, by the config's one rule mechanism
_positive = ranged_type(int, ge=1)
_non_negative = ranged_type(int, ge=0)


def build_parser(inv: Invocation) -> ToolArgumentParser:
    """The flags of ``ghostdet compare``."""
    names = [*BACKBONES, *DETECTION_BACKBONES]
    p = ToolArgumentParser(
        prog=inv.prog,
        description=DESCRIPTION + " Prints a markdown table to stdout.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="rows: " + ", ".join(names),
    )
    p.add_argument(
        "--models",
        nargs="+",
        metavar="NAME",
        choices=names,
        help="rows to include (default: all classification backbones; see the list below)",
    )
    p.add_argument(
        "--detection",
        action="store_true",
        help="also add the detection backbone rows (GhostNet-FPN vs torchvision MobileNetV3-Large FPN)",
    )
    p.add_argument(
        "--cls-size", type=_positive, default=224, help="square classification input size (default 224)"
    )
    p.add_argument(
        "--det-sizes",
        nargs="+",
        type=_size,
        default=[(800, 1333), (320, 320)],
        metavar="HxW",
        help="detection input sizes at which trunks are counted and timed (default 800x1333 320x320)",
    )
    p.add_argument("--no-latency", action="store_true", help="only count params and MACs, do not time")
    p.add_argument(
        "--threads", type=_positive, default=1, help="torch.set_num_threads while timing (default 1)"
    )
    p.add_argument(
        "--runs",
        type=_positive,
        default=20,
        help="timed runs per model and size; median reported (default 20)",
    )
    p.add_argument("--warmup", type=_non_negative, default=3, help="untimed warm-up runs (default 3)")
    p.add_argument("--csv", type=Path, metavar="PATH", help="also write the rows as CSV (raw integers, ms)")
    p.add_argument(
        "--plot",
        type=Path,
        metavar="PATH.png",
        help="also save a MACs-vs-latency scatter (needs matplotlib and latency)",
    )
    p.add_argument(
        "--plot-size",
        type=_size,
        metavar="HxW",
        help="plot trunk numbers at this detection size instead of the full models at --cls-size",
    )
    p.add_argument("--quiet", action="store_true", help="no progress messages on stderr")
    return p


def parse_args(argv: list[str] | None = None, inv: Invocation | None = None) -> argparse.Namespace:
    """Parse and check ``argv``; ``args.names`` are the rows to compare."""
    parser = build_parser(inv or COMMANDS["compare"].invocation())
    args = parser.parse_args(argv)
    if args.plot is not None:
        if args.no_latency:
            parser.error("--plot needs latency; drop --no-latency")
        if importlib.util.find_spec("matplotlib") is None:
            parser.error("--plot needs matplotlib: pip install 'ghostdet[plot]' (or pip install matplotlib)")
    if args.plot_size is not None and args.plot_size not in args.det_sizes:
        parser.error(f"--plot-size {args.plot_size[0]}x{args.plot_size[1]} is not one of --det-sizes")
    args.names = list(args.models or BACKBONES)
    if args.detection:
        args.names += [n for n in DETECTION_BACKBONES if n not in args.names]
    return args


def run(args: argparse.Namespace, inv: Invocation) -> int:
    """Compare (``ghostdet.analysis.compare_backbones``) and print the markdown table."""
    return run_tool(lambda: _compare(args, args.names), inv.prog, args.debug, expected=(ImportError,))


def _compare(args: argparse.Namespace, names: list[str]) -> None:
    progress = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    rows = compare_backbones(
        names,
        det_sizes=args.det_sizes,
        cls_size=args.cls_size,
        latency=not args.no_latency,
        runs=args.runs,
        warmup=args.warmup,
        threads=args.threads,
        progress=progress,
    )
    print(format_markdown(rows, cls_size=args.cls_size))
    print()
    print(
        f"Params and MACs: conv+linear multiply-adds (paper/torchvision convention); thop also counts "
        f"BatchNorm and pooling, so it is higher. {args.cls_size}-columns: full classifier; trunk columns: "
        f"everything before global pooling (detection rows: body+FPN). "
        + (
            ""
            if args.no_latency
            else f"Latency: median of {args.runs} runs after {args.warmup} warm-up, batch 1, eval, "
            f"no_grad, torch.set_num_threads({args.threads}), models interleaved."
        )
    )
    if args.csv is not None:
        write_csv(rows, args.csv)
        print(f"wrote {args.csv}", file=sys.stderr)
    if args.plot is not None:
        key = None if args.plot_size is None else f"{args.plot_size[0]}x{args.plot_size[1]}"
        plot_macs_latency(rows, args.plot, size_key=key)
        print(f"wrote {args.plot}", file=sys.stderr)
