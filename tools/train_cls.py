#!/usr/bin/env python
"""Train an image classifier (GhostNet, Ghost-VGG-16 / Ghost-ResNet-56, torchvision baselines).

Examples::

    # a generated 4-class shapes set (ImageFolder layout), then a few minutes on a CPU
    python tools/make_synthetic_cls.py data/shapes_cls
    python tools/train_cls.py --data-path data/shapes_cls --model resnet56_cifar --image-size 32 \\
        --epochs 5 --batch-size 32 --lr 0.01 --output-dir runs/shapes_cls

    # the paper's Ghost-ResNet-56 (s=2, d=3) on CIFAR-10
    python tools/train_cls.py --config configs/cls_ghost_resnet56_cifar10.yaml --data-path data/cifar \\
        --download

    # GhostNet 1.1x on ImageNet (root with train/ and val/), 8 GPUs: the detectors' 1.1x backbone
    torchrun --nproc_per_node 8 tools/train_cls.py --config configs/cls_ghostnet110_imagenet.yaml \\
        --data-path /data/imagenet

Recipe: --config YAML (default: the built-in defaults); flags you pass override it; --set KEY=VALUE
overrides any other key. Outputs in --output-dir: metrics.json, checkpoint.pth, best.pth,
config.yaml, log.txt, tensorboard/.
"""

from __future__ import annotations

import argparse
import sys

from ghostdet.cli import ToolArgumentParser, run_tool
from ghostdet.config.classification import TRAIN_CLS_FLAGS, ClsConfig, add_train_cls_args, load_cls_config
from ghostdet.config.recipe import overrides_from_args


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ToolArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    add_train_cls_args(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    given = vars(args)
    prog = "train_cls.py"

    def body() -> int:
        from ghostdet.engine.run import run_training_job
        from ghostdet.engine.train_cls import train_classifier

        overrides = overrides_from_args(given, TRAIN_CLS_FLAGS, ClsConfig)
        return run_training_job(train_classifier, load_cls_config(given.get("config"), overrides), prog)

    return run_tool(body, prog, args.debug)


if __name__ == "__main__":
    sys.exit(main())
