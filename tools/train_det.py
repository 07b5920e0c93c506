#!/usr/bin/env python
"""Train a GhostNet-FPN detector (Faster R-CNN or RetinaNet) on COCO-format data.

Examples::

    # the default: embedded synthetic shapes data (generated under data/ on first use), ~10 min on 2 CPU cores
    python tools/train_det.py --detector retinanet

    # the same on a GhostNetV2 trunk from the authors' ImageNet checkpoint
    python tools/train_det.py --detector retinanet --backbone ghostnetv2 --weights-backbone imagenet

    # the paper's COCO recipe on 8 GPUs
    torchrun --nproc_per_node 8 tools/train_det.py --config configs/retinanet_ghostnet110_coco_1x.yaml \\
        --data-path /data/coco --output-dir runs/retinanet_coco

    # any COCO-format set, resuming the run in the output folder if it was interrupted
    python tools/train_det.py --config configs/fasterrcnn_ghostnet110_coco_1x.yaml \\
        --train-images imgs/train --train-ann train.json --val-images imgs/val --val-ann val.json \\
        --output-dir runs/mine --resume auto

Recipe: --config YAML (default: configs/<detector>_ghostnet_synthetic.yaml, or the COCO 1x recipe
when a data path is given); flags you pass override it; --set KEY=VALUE overrides any other key.
"""

from __future__ import annotations

import argparse
import sys

from ghostdet.cli import ToolArgumentParser, run_tool
from ghostdet.config.detection import DETECTORS, TrainConfig, default_config_path, load_config
from ghostdet.config.recipe import add_run_args, add_solver_args, none_or_str, overrides_from_args
from ghostdet.models.family import list_families

S = argparse.SUPPRESS

# flag dest -> config key (only flags the user actually passed are applied)
_KEYS = {
    "detector": "detector",
    "backbone": "backbone",
    "data_path": "data_path",
    "train_images": "train_images",
    "train_ann": "train_ann",
    "val_images": "val_images",
    "val_ann": "val_ann",
    "width": "width",
    "weights_backbone": "weights_backbone",
    "trainable_backbone_layers": "trainable_backbone_layers",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "lr": "lr",
    "opt": "opt",
    "lr_scheduler": "lr_scheduler",
    "lr_steps": "lr_steps",
    "warmup_iters": "warmup_iters",
    "amp": "amp",
    "channels_last": "channels_last",
    "workers": "workers",
    "device": "device",
    "output_dir": "output_dir",
    "resume": "resume",
    "exist_ok": "exist_ok",
    "eval_every": "eval_every",
    "seed": "seed",
    "print_freq": "print_freq",
    "min_size": "min_size",
    "max_size": "max_size",
    "threads": "threads",
    "strict_data": "strict_data",
    "synthetic_root": "synthetic.root",
    "synthetic_num_train": "synthetic.num_train",
    "synthetic_num_val": "synthetic.num_val",
    "synthetic_image_size": "synthetic.image_size",
}
_DATA_FLAGS = ("data_path", "train_images", "train_ann", "val_images", "val_ann")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ToolArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=S,
    )
    p.add_argument("--config", help="YAML recipe (see configs/); flags below override its keys")
    p.add_argument("--detector", choices=sorted(DETECTORS), help="detector (default retinanet)")
    p.add_argument(
        "--backbone",
        choices=list_families(),
        help="backbone family of the trunk (default ghostnet; ghostnetv3 trains in the multi-branch form)",
    )
    p.add_argument(
        "--set", dest="set_", metavar="KEY=VALUE", action="append",
        help="override any config key, VALUE parsed as YAML (e.g. --set augment.hflip_prob=0, "
        "--set synthetic.num_categories=3, --set model_kwargs.score_thresh=0.1); repeatable",
    )  # fmt: skip
    d = p.add_argument_group("data (none given: the embedded synthetic dataset)")
    d.add_argument(
        "--data-path", help="COCO 2017 root: train2017/, val2017/, annotations/instances_*2017.json"
    )
    d.add_argument("--train-images", help="folder of training images (any COCO-format set)")
    d.add_argument("--train-ann", help="COCO instances JSON of the training images")
    d.add_argument("--val-images", help="folder of validation images")
    d.add_argument("--val-ann", help="COCO instances JSON of the validation images")
    d.add_argument("--synthetic-root", help="folder of the synthetic dataset (default data/synthetic)")
    d.add_argument("--synthetic-num-train", type=int, help="synthetic train images")
    d.add_argument("--synthetic-num-val", type=int, help="synthetic val images")
    d.add_argument("--synthetic-image-size", type=int, help="side of the synthetic images in pixels")
    d.add_argument(
        "--strict-data", action=argparse.BooleanOptionalAction,
        help="invalid annotation/image entries are an error instead of being skipped and counted "
        "(crowd and tiny boxes are always only counted)",
    )  # fmt: skip
    d.add_argument("--workers", type=int, help="DataLoader worker processes per training process")
    m = p.add_argument_group("model")
    m.add_argument("--width", type=float, help="GhostNet width multiplier (paper detectors: 1.1)")
    m.add_argument(
        "--weights-backbone", type=none_or_str,
        help="ImageNet weights of the trunk: imagenet, a URL, a file, or none (random init)",
    )  # fmt: skip
    m.add_argument(
        "--trainable-backbone-layers", type=int,
        help="trunk stages trained, from the top (0-5; default 3 with weights, 5 without)",
    )  # fmt: skip
    m.add_argument("--min-size", type=int, help="detector resize: shorter image side")
    m.add_argument("--max-size", type=int, help="detector resize: cap of the longer side")
    s = p.add_argument_group("solver")
    add_solver_args(s)
    s.add_argument("--lr-steps", type=int, nargs="+", help="multistep: epochs after which lr x lr_gamma")
    r = p.add_argument_group("run")
    add_run_args(r)
    r.add_argument("--eval-every", type=int, help="evaluate every N epochs (the last is always evaluated)")
    return p.parse_args(argv)


#: config key -> the flag that sets it, for error messages
_FLAGS = {key: "--" + dest.replace("_", "-") for dest, key in _KEYS.items()}


def resolve_config(args: argparse.Namespace):
    """The TrainConfig of the parsed flags (recipe + passed flags + --set).

    A ConfigError names where the bad key came from: the flag that set it, ``--set KEY=VALUE``,
    or the recipe file (the overrides remember their flags, see ``ghostdet.config.recipe.Overrides``).
    """
    given = vars(args)
    overrides = overrides_from_args(given, _KEYS, TrainConfig)
    config = given.get("config")
    if config is None:
        real_data = any(k in given for k in _DATA_FLAGS)
        config = default_config_path(given.get("detector", "retinanet"), real_data=real_data)
    return load_config(config, overrides)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prog = "train_det.py"

    def body() -> int:
        from ghostdet.engine.run import run_training_job
        from ghostdet.engine.train import train

        return run_training_job(train, resolve_config(args), prog)

    return run_tool(body, prog, args.debug, argument_flags=_FLAGS)


if __name__ == "__main__":
    sys.exit(main())
