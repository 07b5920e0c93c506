#!/usr/bin/env python
"""Params and MACs of the GhostNet paper's models, side by side with the paper's figures.

``python tools/paper_tables.py ARGS`` is ``ghostdet paper-tables ARGS``, under this script's name in
its usage and error lines; the command is defined in ghostdet/cli/commands/paper_tables.py.
"""

from __future__ import annotations

import sys

from ghostdet.cli.main import run_script


def main(argv: list[str] | None = None) -> int:
    return run_script("paper-tables", argv)


if __name__ == "__main__":
    sys.exit(main())
