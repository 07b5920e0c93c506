#!/usr/bin/env python
"""Draw a GhostModule's intrinsic feature maps next to the ghost maps made from them.

``python tools/visualize_ghost_maps.py ARGS`` is ``ghostdet visualize ARGS``, under this script's name in
its usage and error lines; the command is defined in ghostdet/cli/commands/visualize.py.
"""

from __future__ import annotations

import sys

from ghostdet.cli.main import run_script


def main(argv: list[str] | None = None) -> int:
    return run_script("visualize", argv)


if __name__ == "__main__":
    sys.exit(main())
