#!/usr/bin/env python
"""Run a GhostNet detector on images: save copies with the boxes drawn, and JSON.

``python tools/infer.py ARGS`` is ``ghostdet predict ARGS``, under this script's name in
its usage and error lines; the command is defined in ghostdet/cli/commands/predict.py.
"""

from __future__ import annotations

import sys

from ghostdet.cli.main import run_script


def main(argv: list[str] | None = None) -> int:
    return run_script("predict", argv)


if __name__ == "__main__":
    sys.exit(main())
