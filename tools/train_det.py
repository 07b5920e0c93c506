#!/usr/bin/env python
"""Train a GhostNet-FPN detector (Faster R-CNN or RetinaNet) on COCO-format data.

``python tools/train_det.py ARGS`` is ``ghostdet train ARGS``, under this script's name in
its usage and error lines; the command is defined in ghostdet/cli/commands/train.py.
"""

from __future__ import annotations

import argparse
import sys

from ghostdet.cli.commands import COMMANDS, train
from ghostdet.cli.main import run_script

resolve_config = train.resolve_config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return train.parse_args(argv, COMMANDS["train"].invocation(script=True))


def main(argv: list[str] | None = None) -> int:
    return run_script("train", argv)


if __name__ == "__main__":
    sys.exit(main())
