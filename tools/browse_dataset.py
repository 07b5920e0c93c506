#!/usr/bin/env python
"""Draw a dataset's images with their ground-truth boxes and class names, to check the labels.

``python tools/browse_dataset.py ARGS`` is ``ghostdet browse ARGS``, under this script's name in
its usage and error lines; the command is defined in ghostdet/cli/commands/browse.py.
"""

from __future__ import annotations

import sys

from ghostdet.cli.main import run_script


def main(argv: list[str] | None = None) -> int:
    return run_script("browse", argv)


if __name__ == "__main__":
    sys.exit(main())
