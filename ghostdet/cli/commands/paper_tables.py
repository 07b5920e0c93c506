"""``ghostdet paper-tables`` (``tools/paper_tables.py``): params and MACs of the GhostNet paper's
models, side by side with the paper's figures."""

from __future__ import annotations

import argparse

from ghostdet.cli.commands import COMMANDS, Invocation
from ghostdet.cli.errors import ToolArgumentParser, run_tool

__all__ = ["build_parser", "parse_args", "run"]

DESCRIPTION = """Params and MACs of the GhostNet paper's models, side by side with the paper's figures.

Tables: CIFAR-10 VGG-16 vs Ghost-VGG-16 and its ratio (s) and kernel (d) ablations, ResNet-56
vs Ghost-ResNet-56, ImageNet ResNet-50 vs Ghost-ResNet-50 (s=2, 4), and GhostNet widths vs
MobileNetV2/V3. Ghost models are built with ghostdet.ghostify (every conv replaced, s=2, d=3
unless stated). Each measured cell shows its deviation from the paper, e.g. "7.660M (-0.5%)".
Rows starting with "what-if" are not the paper's models; they show which build choice would
reproduce a figure the faithful conversion does not. MACs are conv+linear multiply-adds."""

EPILOG = """Examples:
    {cmd} --markdown
    {cmd} --no-resnet50 --no-what-if
"""


def build_parser(inv: Invocation) -> ToolArgumentParser:
    """The flags of ``ghostdet paper-tables``."""
    p = ToolArgumentParser(
        prog=inv.prog,
        description=DESCRIPTION,
        epilog=inv.text(EPILOG),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--markdown", action="store_true", help="print GitHub markdown tables instead of plain text"
    )
    p.add_argument(
        "--no-resnet50", action="store_true", help="skip the ImageNet ResNet-50 rows (the slowest to count)"
    )
    p.add_argument("--no-mobilenets", action="store_true", help="skip GhostNet vs MobileNetV2/V3 at 224x224")
    p.add_argument("--no-what-if", action="store_true", help="skip the explanatory what-if rows")
    return p


def parse_args(argv: list[str] | None = None, inv: Invocation | None = None) -> argparse.Namespace:
    """Parse ``argv``."""
    return build_parser(inv or COMMANDS["paper-tables"].invocation()).parse_args(argv)


def run(args: argparse.Namespace, inv: Invocation) -> int:
    """Count and print (``ghostdet.analysis.paper``)."""

    def body() -> None:
        from ghostdet.analysis.paper import format_paper_tables, paper_tables

        rows = paper_tables(
            resnet50=not args.no_resnet50, mobilenets=not args.no_mobilenets, what_if=not args.no_what_if
        )
        print(format_paper_tables(rows, markdown=args.markdown), end="")

    return run_tool(body, inv.prog, args.debug)
