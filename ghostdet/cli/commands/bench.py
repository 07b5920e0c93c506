"""``ghostdet bench``: time GhostNet and MobileNet backbones on this CPU.

The latency comparison of the library (:func:`ghostdet.analysis.compare_backbones`, interleaved
timing, median of the runs), for a quick number on the machine at hand: the full classifiers at
one input size and, with ``--det-sizes``, the trunks at detection sizes. The full benchmark
suite (deploy mode, native kernels, onnxruntime, throughput, thread scaling, memory) is
``benchmarks/bench_cpu.py`` in a clone of the repository; it is not part of the package.
"""

from __future__ import annotations

import argparse
import sys

from ghostdet.cli.commands import COMMANDS, Invocation
from ghostdet.cli.commands.compare import _non_negative, _positive, _size
from ghostdet.cli.errors import ToolArgumentParser, run_tool

__all__ = ["DEFAULT_MODELS", "build_parser", "parse_args", "run"]

#: The rows timed by default: GhostNet V1/V2/V3 1.0x against MobileNetV2 and V3-Large.
DEFAULT_MODELS = ("ghostnet_100", "ghostnetv2_100", "ghostnetv3_100", "mobilenet_v2", "mobilenet_v3_large")

EPILOG = """Examples::

    {cmd}                                   # 1 thread, 224x224, median of 20 runs
    {cmd} --threads 4 --runs 50 --models ghostnet_050 ghostnet_100 mobilenet_v3_small
    {cmd} --det-sizes 320x320 --models ghostnet_100_fpn mobilenet_v3_large_fpn

The full benchmark suite -- deploy mode and its native kernels, onnxruntime, throughput, thread
scaling, memory -- is benchmarks/bench_cpu.py in a clone of the repository (docs/benchmarks.md).
"""


def build_parser(inv: Invocation) -> ToolArgumentParser:
    """The flags of ``ghostdet bench``."""
    from ghostdet.analysis import BACKBONES, DETECTION_BACKBONES

    p = ToolArgumentParser(
        prog=inv.prog,
        description="Time GhostNet and MobileNet backbones on this CPU (batch 1, eval, no_grad, models "
        "interleaved, median reported) and print a markdown table with params and MACs.",
        epilog=inv.text(EPILOG),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--models", nargs="+", metavar="NAME", choices=[*BACKBONES, *DETECTION_BACKBONES],
        default=list(DEFAULT_MODELS), help=f"rows to time (default: {' '.join(DEFAULT_MODELS)})",
    )  # fmt: skip
    p.add_argument("--size", type=_positive, default=224, help="square classifier input size (default 224)")
    p.add_argument(
        "--det-sizes", nargs="+", type=_size, default=[], metavar="HxW",
        help="also time the trunks at these detection input sizes (default: none)",
    )  # fmt: skip
    p.add_argument(
        "--threads", type=_positive, default=1, help="torch.set_num_threads while timing (default 1)"
    )
    p.add_argument("--runs", type=_positive, default=20, help="timed runs per model; median (default 20)")
    p.add_argument("--warmup", type=_non_negative, default=3, help="untimed warm-up runs (default 3)")
    p.add_argument("--quiet", action="store_true", help="no progress messages on stderr")
    return p


def parse_args(argv: list[str] | None = None, inv: Invocation | None = None) -> argparse.Namespace:
    """Parse ``argv``."""
    return build_parser(inv or COMMANDS["bench"].invocation()).parse_args(argv)


def run(args: argparse.Namespace, inv: Invocation) -> int:
    """Time the rows (``ghostdet.analysis.compare_backbones`` with latency) and print the table."""
    return run_tool(lambda: _bench(args), inv.prog, args.debug, expected=(ImportError,))


def _bench(args: argparse.Namespace) -> None:
    from ghostdet.analysis import compare_backbones, format_markdown

    progress = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    rows = compare_backbones(
        args.models,
        det_sizes=args.det_sizes,
        cls_size=args.size,
        latency=True,
        runs=args.runs,
        warmup=args.warmup,
        threads=args.threads,
        progress=progress,
    )
    print(format_markdown(rows, cls_size=args.size))
    print()
    print(
        f"Latency: median of {args.runs} runs after {args.warmup} warm-up, batch 1, eval, no_grad, "
        f"torch.set_num_threads({args.threads}), models interleaved. MACs: conv+linear multiply-adds. "
        "The full benchmark suite is benchmarks/bench_cpu.py in a clone of the repository."
    )
