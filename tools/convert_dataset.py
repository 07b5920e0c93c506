#!/usr/bin/env python
"""Convert one split of a detection dataset between YOLO / Pascal VOC and COCO JSON.

``python tools/convert_dataset.py ARGS`` is ``ghostdet convert ARGS``, under this script's name in
its usage and error lines; the command is defined in ghostdet/cli/commands/convert.py.
"""

from __future__ import annotations

import sys

from ghostdet.cli.main import run_script


def main(argv: list[str] | None = None) -> int:
    return run_script("convert", argv)


if __name__ == "__main__":
    sys.exit(main())
