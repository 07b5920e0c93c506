#!/usr/bin/env python
"""Write the embedded synthetic shapes dataset (COCO format) used by default training.

``python tools/make_synthetic_coco.py ARGS`` is ``ghostdet make-data ARGS``, under this script's name in
its usage and error lines; the command is defined in ghostdet/cli/commands/make_data.py.
"""

from __future__ import annotations

import sys

from ghostdet.cli.main import run_script


def main(argv: list[str] | None = None) -> int:
    return run_script("make-data", argv)


if __name__ == "__main__":
    sys.exit(main())
