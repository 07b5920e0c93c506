#!/usr/bin/env python
"""Sweep the Ghost module's s (ratio) and d (cheap-kernel size) on one model and dataset.

``python tools/ablate_ghost.py ARGS`` is ``ghostdet ablate ARGS``, under this script's name in
its usage and error lines; the command is defined in ghostdet/cli/commands/ablate.py.
"""

from __future__ import annotations

import sys

from ghostdet.cli.main import run_script


def main(argv: list[str] | None = None) -> int:
    return run_script("ablate", argv)


if __name__ == "__main__":
    sys.exit(main())
