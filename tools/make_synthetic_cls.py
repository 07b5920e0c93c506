#!/usr/bin/env python
"""Write a small generated classification set (one shape per image) in the ImageFolder layout.

Example::

    python tools/make_synthetic_cls.py data/shapes_cls --num-classes 4 --num-train 200 --image-size 32
    python tools/train_cls.py --data-path data/shapes_cls --model resnet56_cifar --image-size 32 --epochs 5
"""

from __future__ import annotations

import argparse
import sys

from ghostdet.cli import ToolArgumentParser
from ghostdet.data.classification import make_synthetic_classification


def main(argv: list[str] | None = None) -> int:
    p = ToolArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("root", help="output folder (gets train/<class>/ and val/<class>/)")
    p.add_argument("--num-classes", type=int, default=4, help="shape classes, 1-6 (default %(default)s)")
    p.add_argument("--num-train", type=int, default=200, help="train images per class (default %(default)s)")
    p.add_argument("--num-val", type=int, default=50, help="val images per class (default %(default)s)")
    p.add_argument("--image-size", type=int, default=32, help="side in pixels (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default %(default)s)")
    a = p.parse_args(argv)
    try:
        root = make_synthetic_classification(
            a.root, a.num_classes, a.num_train, a.num_val, a.image_size, a.seed
        )
    except ValueError as e:
        print(f"make_synthetic_cls: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {a.num_classes} classes x ({a.num_train} train + {a.num_val} val) images to {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
