#!/usr/bin/env python
"""Export GhostNet models (deploy mode) to ONNX and check them with onnxruntime.

``python tools/export_onnx.py ARGS`` is ``ghostdet export ARGS``, under this script's name in
its usage and error lines; the command is defined in ghostdet/cli/commands/export.py.
"""

from __future__ import annotations

import argparse
import sys

from ghostdet.cli.commands import COMMANDS, export
from ghostdet.cli.main import run_script


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return export.parse_args(argv, COMMANDS["export"].invocation(script=True))


def main(argv: list[str] | None = None) -> int:
    return run_script("export", argv)


if __name__ == "__main__":
    sys.exit(main())
