#!/usr/bin/env python
"""Compare GhostNet with MobileNetV2/V3: params, MACs and CPU latency.

``python tools/compare_backbones.py ARGS`` is ``ghostdet compare ARGS``, under this script's name in
its usage and error lines; the command is defined in ghostdet/cli/commands/compare.py.
"""

from __future__ import annotations

import sys

from ghostdet.cli.main import run_script


def main(argv: list[str] | None = None) -> int:
    return run_script("compare", argv)


if __name__ == "__main__":
    sys.exit(main())
