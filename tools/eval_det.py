#!/usr/bin/env python
"""COCO bbox evaluation of a GhostNet detector (pycocotools COCOeval).

``python tools/eval_det.py ARGS`` is ``ghostdet eval ARGS``, under this script's name in
its usage and error lines; the command is defined in ghostdet/cli/commands/eval.py.
"""

from __future__ import annotations

import sys

from ghostdet.cli.main import run_script


def main(argv: list[str] | None = None) -> int:
    return run_script("eval", argv)


if __name__ == "__main__":
    sys.exit(main())
