"""``ghostdet train`` (``tools/train_det.py``): train a GhostNet-FPN detector on COCO-format data."""

from __future__ import annotations

import argparse
from typing import Any

from ghostdet.cli.commands import COMMANDS, Invocation
from ghostdet.cli.config_flags import add_config_args, config_overrides, key_flags
from ghostdet.cli.errors import ToolArgumentParser, run_tool
from ghostdet.config.detection import TrainConfig, default_config_path, load_config

__all__ = ["build_parser", "parse_args", "resolve_config", "run"]

DESCRIPTION = "Train a GhostNet-FPN detector (Faster R-CNN or RetinaNet) on COCO-format data."

EPILOG = """Examples::

    # the default: embedded synthetic shapes data (generated under data/ on first use), ~10 min on 2 CPU cores
    {cmd} --detector retinanet

    # the same on a GhostNetV2 trunk from the authors' ImageNet checkpoint
    {cmd} --detector retinanet --backbone ghostnetv2 --weights-backbone imagenet

    # the paper's COCO recipe on 8 GPUs
    torchrun --nproc_per_node 8 {launch} --config configs/retinanet_ghostnet110_coco_1x.yaml \\
        --data-path /data/coco --output-dir runs/retinanet_coco

    # any COCO-format set, resuming the run in the output folder if it was interrupted
    {cmd} --config configs/fasterrcnn_ghostnet110_coco_1x.yaml \\
        --train-images imgs/train --train-ann train.json --val-images imgs/val --val-ann val.json \\
        --output-dir runs/mine --resume auto

Recipe: --config YAML (default: configs/<detector>_ghostnet_synthetic.yaml, or the COCO 1x recipe
when a data path is given); flags you pass override it; --set KEY=VALUE overrides any key, after
the flags. The recipe's keys are TrainConfig's fields (docs/training.md).
"""

#: The data flags: with any of them (and no --config) the COCO recipe is the default.
DATA_KEYS = ("data_path", "train_images", "train_ann", "val_images", "val_ann")


def build_parser(inv: Invocation) -> ToolArgumentParser:
    """The flags of ``ghostdet train``: ``--config``, ``--set`` and one per TrainConfig flag field."""
    p = ToolArgumentParser(
        prog=inv.prog,
        description=DESCRIPTION,
        epilog=inv.text(EPILOG),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    add_config_args(
        p, TrainConfig,
        titles={"model": "model", "data": "data (none given: the embedded synthetic dataset)"},
        config_help="YAML recipe (see configs/); flags below override its keys",
        set_example="--set augment.hflip_prob=0, --set synthetic.num_categories=3, "
        "--set model_kwargs.score_thresh=0.1",
    )  # fmt: skip
    return p


def parse_args(argv: list[str] | None = None, inv: Invocation | None = None) -> argparse.Namespace:
    """Parse ``argv`` (only the flags that were passed are set)."""
    return build_parser(inv or COMMANDS["train"].invocation()).parse_args(argv)


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of the parsed flags: the recipe, then the flags passed, then ``--set``.

    A :class:`~ghostdet.config.ConfigError` names where the bad key came from: the flag that
    set it, ``--set KEY=VALUE``, or the recipe file.
    """
    given: dict[str, Any] = vars(args)
    overrides = config_overrides(args, TrainConfig)
    config = given.get("config")
    if config is None:
        real_data = any(k in given for k in DATA_KEYS)
        config = default_config_path(given.get("detector", "retinanet"), real_data=real_data)
    return load_config(config, overrides)


def run(args: argparse.Namespace, inv: Invocation) -> int:
    """Train (``ghostdet.engine.train`` through ``ghostdet.engine.run.run_training_job``)."""

    def body() -> int:
        from ghostdet.engine.run import run_training_job
        from ghostdet.engine.train import train

        return run_training_job(train, resolve_config(args), inv.prog)

    return run_tool(body, inv.prog, args.debug, argument_flags=key_flags(TrainConfig))
