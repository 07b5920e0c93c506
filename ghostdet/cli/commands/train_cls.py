"""``ghostdet train-cls`` (``tools/train_cls.py``): train an image classifier."""

from __future__ import annotations

import argparse

from ghostdet.cli.commands import COMMANDS, Invocation
from ghostdet.cli.config_flags import add_config_args, config_overrides, key_flags
from ghostdet.cli.errors import ToolArgumentParser, run_tool
from ghostdet.config.classification import ClsConfig, load_cls_config

__all__ = ["TITLES", "build_parser", "parse_args", "resolve_config", "run"]

DESCRIPTION = "Train an image classifier (GhostNet, Ghost-VGG-16 / Ghost-ResNet-56, torchvision baselines)."

EPILOG = """Examples::

    # a generated 4-class shapes set (ImageFolder layout), then a few minutes on a CPU
    ghostdet make-cls-data data/shapes_cls
    {cmd} --data-path data/shapes_cls --model resnet56_cifar --image-size 32 \\
        --epochs 5 --batch-size 32 --lr 0.01 --output-dir runs/shapes_cls

    # the paper's Ghost-ResNet-56 (s=2, d=3) on CIFAR-10
    {cmd} --config configs/cls_ghost_resnet56_cifar10.yaml --data-path data/cifar --download

    # GhostNet 1.1x on ImageNet (root with train/ and val/), 8 GPUs: the detectors' 1.1x backbone
    torchrun --nproc_per_node 8 {launch} --config configs/cls_ghostnet110_imagenet.yaml \\
        --data-path /data/imagenet

Recipe: --config YAML (default: the built-in defaults); flags you pass override it; --set KEY=VALUE
overrides any key, after the flags. Outputs in --output-dir: metrics.json, checkpoint.pth, best.pth,
config.yaml, log.txt, tensorboard/.
"""

#: The groups of the classification flags in ``--help``.
TITLES = {"data": "data", "model": "model", "solver": "solver", "run": "run"}


def build_parser(inv: Invocation) -> ToolArgumentParser:
    """The flags of ``ghostdet train-cls``: ``--config``, ``--set`` and one per ClsConfig flag field."""
    p = ToolArgumentParser(
        prog=inv.prog,
        description=DESCRIPTION,
        epilog=inv.text(EPILOG),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    add_config_args(
        p, ClsConfig, titles=TITLES, set_example="--set dropout=0.1",
        config_help="YAML recipe (see configs/cls_*.yaml); flags below override its keys",
    )  # fmt: skip
    return p


def parse_args(argv: list[str] | None = None, inv: Invocation | None = None) -> argparse.Namespace:
    """Parse ``argv`` (only the flags that were passed are set)."""
    return build_parser(inv or COMMANDS["train-cls"].invocation()).parse_args(argv)


def resolve_config(args: argparse.Namespace) -> ClsConfig:
    """The ClsConfig of the parsed flags: the recipe (``--config``; default: the built-in
    defaults), then the flags passed, then ``--set``."""
    return load_cls_config(getattr(args, "config", None), config_overrides(args, ClsConfig))


def run(args: argparse.Namespace, inv: Invocation) -> int:
    """Train (``ghostdet.engine.train_cls.train_classifier``)."""

    def body() -> int:
        from ghostdet.engine.run import run_training_job
        from ghostdet.engine.train_cls import train_classifier

        return run_training_job(train_classifier, resolve_config(args), inv.prog)

    return run_tool(body, inv.prog, args.debug, argument_flags=key_flags(ClsConfig))
