#!/usr/bin/env python
"""Write a small generated classification set in the ImageFolder layout.

``python tools/make_synthetic_cls.py ARGS`` is ``ghostdet make-cls-data ARGS``, under this script's name in
its usage and error lines; the command is defined in ghostdet/cli/commands/make_cls_data.py.
"""

from __future__ import annotations

import sys

from ghostdet.cli.main import run_script


def main(argv: list[str] | None = None) -> int:
    return run_script("make-cls-data", argv)


if __name__ == "__main__":
    sys.exit(main())
