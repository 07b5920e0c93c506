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
    python tools/train_det.py --config configs/faster_rcnn_ghostnet110_coco_1x.yaml \\
        --train-images imgs/train --train-ann train.json --val-images imgs/val --val-ann val.json \\
        --output-dir runs/mine --resume auto

Recipe: --config YAML (default: configs/<detector>_ghostnet_synthetic.yaml, or the COCO 1x recipe
when a data path is given); flags you pass override it; --set KEY=VALUE overrides any other key.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from ghostdet.cli import ToolArgumentParser, one_line
from ghostdet.config import DETECTORS, ConfigError, default_config_path, load_config
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
    "workers": "workers",
    "device": "device",
    "output_dir": "output_dir",
    "resume": "resume",
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


def _none_or_str(value: str) -> str | None:
    return None if value.lower() in ("none", "null", "") else value


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
        "--weights-backbone", type=_none_or_str,
        help="ImageNet weights of the trunk: imagenet, a URL, a file, or none (random init)",
    )  # fmt: skip
    m.add_argument(
        "--trainable-backbone-layers", type=int,
        help="trunk stages trained, from the top (0-5; default 3 with weights, 5 without)",
    )  # fmt: skip
    m.add_argument("--min-size", type=int, help="detector resize: shorter image side")
    m.add_argument("--max-size", type=int, help="detector resize: cap of the longer side")
    s = p.add_argument_group("solver")
    s.add_argument("--epochs", type=int, help="training epochs")
    s.add_argument("--batch-size", type=int, help="images per iteration per process")
    s.add_argument("--lr", type=float, help="peak learning rate (for batch-size x processes)")
    s.add_argument("--opt", choices=["sgd", "adamw"], help="optimizer")
    s.add_argument("--lr-scheduler", choices=["multistep", "cosine"], help="per-iteration lr schedule")
    s.add_argument("--lr-steps", type=int, nargs="+", help="multistep: epochs after which lr x lr_gamma")
    s.add_argument("--warmup-iters", type=int, help="linear warm-up iterations")
    r = p.add_argument_group("run")
    r.add_argument(
        "--amp", action=argparse.BooleanOptionalAction,
        help="mixed precision: float16 + GradScaler on CUDA, bfloat16 autocast on CPU",
    )  # fmt: skip
    r.add_argument("--device", help="auto (cuda if available), cpu, cuda or cuda:N")
    r.add_argument("--threads", type=int, help="torch CPU threads per process")
    r.add_argument("--output-dir", help="checkpoints, metrics.json, config.yaml, TensorBoard events")
    r.add_argument(
        "--resume", type=_none_or_str,
        help="checkpoint to resume from, a run folder, or 'auto' (OUTPUT_DIR/checkpoint.pth if present)",
    )  # fmt: skip
    r.add_argument("--eval-every", type=int, help="evaluate every N epochs (the last is always evaluated)")
    r.add_argument("--seed", type=int, help="random seed (CPU runs are reproducible)")
    r.add_argument("--print-freq", type=int, help="iterations between log lines / TensorBoard points")
    return p.parse_args(argv)


def resolve_config(args: argparse.Namespace):
    """The TrainConfig of the parsed flags (recipe + passed flags + --set)."""
    given = vars(args)
    overrides = {key: given[dest] for dest, key in _KEYS.items() if dest in given}
    for item in given.get("set_", []):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            overrides[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"--set {key}: cannot parse {value!r} as YAML") from None
    config = given.get("config")
    if config is None:
        real_data = any(k in given for k in _DATA_FLAGS)
        config = default_config_path(given.get("detector", "retinanet"), real_data=real_data)
    return load_config(config, overrides)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prog = Path(sys.argv[0]).name
    try:
        cfg = resolve_config(args)
        from ghostdet.engine import NonFiniteLossError, train

        try:
            train(cfg)
        except NonFiniteLossError as e:
            print(f"{prog}: error: {e}", file=sys.stderr)
            return 1
    except (ConfigError, FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. a weights download without network, a full disk
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted (resume with --resume auto)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
