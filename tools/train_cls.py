#!/usr/bin/env python
"""Train an image classifier (GhostNet, Ghost-VGG-16 / Ghost-ResNet-56, torchvision baselines).

``python tools/train_cls.py ARGS`` is ``ghostdet train-cls ARGS``, under this script's name in
its usage and error lines; the command is defined in ghostdet/cli/commands/train_cls.py.
"""

from __future__ import annotations

import sys

from ghostdet.cli.main import run_script


def main(argv: list[str] | None = None) -> int:
    return run_script("train-cls", argv)


if __name__ == "__main__":
    sys.exit(main())
