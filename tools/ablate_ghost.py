#!/usr/bin/env python
"""Sweep the Ghost module's s (ratio) and d (cheap-kernel size) on one model and dataset.

Every cell trains ghostify(model, ratio=s, dw_size=d) with the same epoch budget (and, unless
--no-baseline, the dense model once); OUTPUT_DIR gets ablation.csv and ablation.md (params, MACs,
top-1, top-5 per cell). Re-running the same command skips the cells that are done.

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
from pathlib import Path

from ghostdet.cli import ToolArgumentParser, one_line
from ghostdet.cls_config import TRAIN_CLS_FLAGS, ClsConfig, add_train_cls_args, load_cls_config
from ghostdet.engine.ablation import ABLATION_DW_SIZES, ABLATION_RATIOS
from ghostdet.recipe import ConfigError, overrides_from_args


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
    prog = Path(sys.argv[0]).name
    try:
        given = vars(args)
        overrides = overrides_from_args(given, TRAIN_CLS_FLAGS, ClsConfig)
        overrides.setdefault("output_dir", "runs/ablate_ghost")
        cfg = load_cls_config(given.get("config"), overrides)
        from ghostdet.engine.ablation import run_ablation

        rows = run_ablation(cfg, cfg.output_dir, args.ratios, args.dw_sizes, baseline=not args.no_baseline)
    except (ConfigError, FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted (run the same command again to continue)", file=sys.stderr)
        return 130
    print(f"{len(rows)} cell(s) in {Path(cfg.output_dir) / 'ablation.csv'} and ablation.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
