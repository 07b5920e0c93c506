"""``python -m ghostdet COMMAND ...``: the same as the ``ghostdet`` command."""

import sys

from ghostdet.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
