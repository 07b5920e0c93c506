#!/usr/bin/env python
"""Sweep the Ghost module's s (ratio) and d (cheap-kernel size) on one model and dataset.

Every cell trains ghostify(model, ratio=s, dw_size=d) with the same epoch budget (and, unless
--no-baseline, the dense model once); OUTPUT_DIR gets ablation.csv and ablation.md (params, MACs,
top-1, top-5 per cell). Re-running with --resume auto continues the sweep (cells that are done
are skipped); without it a folder that holds a sweep is left alone and the next free name is
used (--exist-ok replaces the sweep instead).

Examples::

    # the paper's Table 2/3 sweep for ResNet-56 on CIFAR-10 (36 cells x 200 epochs: a GPU job)
    python tools/ablate_ghost.py --config configs/cls_resnet56_cifar10.yaml --data-path data/cifar

    # a small budget on a generated set: s in {2, 4}, d in {1, 3}, 3 epochs each
    python tools/make_synthetic_cls.py data/shapes_cls
    python tools/ablate_ghost.py --data-path data/shapes_cls --model resnet56_cifar --image-size 32 \\
        --epochs 3 --batch-size 32 --lr 0.05 --ratios 2 4 --dw-sizes 1 3 --output-dir runs/ablate_shapes
"""

from __future__ import annotations

import argparse
import sys

from ghostdet.cli import ToolArgumentParser, run_tool
from ghostdet.config.classification import TRAIN_CLS_FLAGS, ClsConfig, add_train_cls_args, load_cls_config
from ghostdet.config.recipe import overrides_from_args
from ghostdet.engine.ablation import ABLATION_DW_SIZES, ABLATION_RATIOS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ToolArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    add_train_cls_args(p, ghost_flags=False)
    a = p.add_argument_group("sweep")
    a.add_argument(
        "--ratios", type=int, nargs="+", default=list(ABLATION_RATIOS), help="s values (default 2..10)"
    )
    a.add_argument(
        "--dw-sizes", type=int, nargs="+", default=list(ABLATION_DW_SIZES), help="d values (default 1 3 5 7)"
    )
    a.add_argument("--no-baseline", action="store_true", default=False, help="skip the dense model's run")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    given = vars(args)

    def body() -> None:
        from ghostdet.engine.ablation import run_ablation

        overrides = overrides_from_args(given, TRAIN_CLS_FLAGS, ClsConfig)
        overrides.setdefault("output_dir", "runs/ablate_ghost")
        cfg = load_cls_config(given.get("config"), overrides)
        run_ablation(cfg, cfg.output_dir, args.ratios, args.dw_sizes, baseline=not args.no_baseline)

    return run_tool(body, "ablate_ghost.py", args.debug)


if __name__ == "__main__":
    sys.exit(main())
