"""``ghostdet ablate`` (``tools/ablate_ghost.py``): sweep the Ghost module's s and d on a classifier."""

from __future__ import annotations

import argparse

from ghostdet.cli.commands import COMMANDS, Invocation
from ghostdet.cli.commands.train_cls import TITLES
from ghostdet.cli.config_flags import add_config_args, config_overrides, key_flags
from ghostdet.cli.errors import ToolArgumentParser, run_tool
from ghostdet.config.classification import ClsConfig, load_cls_config

__all__ = ["SWEPT", "build_parser", "parse_args", "run"]

DESCRIPTION = "Sweep the Ghost module's s (ratio) and d (cheap-kernel size) on one model and dataset."

EPILOG = """Every cell trains ghostify(model, ratio=s, dw_size=d) with the same epoch budget (and, unless
--no-baseline, the dense model once); OUTPUT_DIR gets ablation.csv and ablation.md (params, MACs,
top-1, top-5 per cell). Re-running with --resume auto continues the sweep (cells that are done
are skipped); without it a folder that holds a sweep is left alone and the next free name is
used (--exist-ok replaces the sweep instead). The flags are those of train-cls, less the ones
the sweep sets.

Examples::

    # the paper's Table 2/3 sweep for ResNet-56 on CIFAR-10 (36 cells x 200 epochs: a GPU job)
    {cmd} --config configs/cls_resnet56_cifar10.yaml --data-path data/cifar

    # a small budget on a generated set: s in {2, 4}, d in {1, 3}, 3 epochs each
    ghostdet make-cls-data data/shapes_cls
    {cmd} --data-path data/shapes_cls --model resnet56_cifar --image-size 32 \\
        --epochs 3 --batch-size 32 --lr 0.05 --ratios 2 4 --dw-sizes 1 3 --output-dir runs/ablate_shapes
"""

#: The ClsConfig keys each cell sets (no flags for them).
SWEPT = ("ghostify", "ratio", "dw_size")


def build_parser(inv: Invocation) -> ToolArgumentParser:
    """The flags of ``ghostdet ablate``: those of ``train-cls`` but :data:`SWEPT`, and the sweep's."""
    from ghostdet.engine.ablation import ABLATION_DW_SIZES, ABLATION_RATIOS

    p = ToolArgumentParser(
        prog=inv.prog,
        description=DESCRIPTION,
        epilog=inv.text(EPILOG),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    add_config_args(
        p, ClsConfig, titles=TITLES, exclude=SWEPT, set_example="--set dropout=0.1",
        config_help="YAML recipe (see configs/cls_*.yaml); flags below override its keys",
    )  # fmt: skip
    a = p.add_argument_group("sweep")
    a.add_argument(
        "--ratios", type=int, nargs="+", default=list(ABLATION_RATIOS), help="s values (default 2..10)"
    )
    a.add_argument(
        "--dw-sizes", type=int, nargs="+", default=list(ABLATION_DW_SIZES), help="d values (default 1 3 5 7)"
    )
    a.add_argument("--no-baseline", action="store_true", default=False, help="skip the dense model's run")
    return p


def parse_args(argv: list[str] | None = None, inv: Invocation | None = None) -> argparse.Namespace:
    """Parse ``argv`` (only the config flags that were passed are set)."""
    return build_parser(inv or COMMANDS["ablate"].invocation()).parse_args(argv)


def run(args: argparse.Namespace, inv: Invocation) -> int:
    """Run the sweep (``ghostdet.engine.ablation.run_ablation``)."""

    def body() -> None:
        from ghostdet.engine.ablation import run_ablation

        overrides = config_overrides(args, ClsConfig, exclude=SWEPT)
        overrides.setdefault("output_dir", "runs/ablate_ghost")
        cfg = load_cls_config(getattr(args, "config", None), overrides)
        run_ablation(cfg, cfg.output_dir, args.ratios, args.dw_sizes, baseline=not args.no_baseline)

    return run_tool(body, inv.prog, args.debug, argument_flags=key_flags(ClsConfig))
