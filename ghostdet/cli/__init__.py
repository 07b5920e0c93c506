"""The command line: the ``ghostdet`` command (:mod:`ghostdet.cli.main`), one module per subcommand
(:mod:`ghostdet.cli.commands`), and the tools' one error path (:mod:`ghostdet.cli.errors`).

An error about the user's input is a :class:`~ghostdet.errors.GhostdetError` (or a :class:`ToolError`
of the CLI itself): it becomes one line ``prog: error: message`` and exit status 2, led by the flag
of the library parameter it names (``err.argument``). Anything else is a bug and keeps its
traceback; ``--debug`` prints the traceback of user errors too.
"""

from __future__ import annotations

from ghostdet.cli.common import DETECTOR_ARG_NAMES, add_detector_args, detector_kwargs
from ghostdet.cli.errors import (
    ARG_FLAGS,
    USER_ERROR_STATUS,
    USER_ERRORS,
    ToolArgumentParser,
    ToolError,
    run_tool,
    user_message,
)
from ghostdet.errors import one_line
from ghostdet.models.registry import resolve_detector_name
from ghostdet.utils.devices import resolve_device

__all__ = [
    "ARG_FLAGS",
    "DETECTOR_ARG_NAMES",
    "USER_ERRORS",
    "USER_ERROR_STATUS",
    "ToolArgumentParser",
    "ToolError",
    "add_detector_args",
    "detector_kwargs",
    "one_line",
    "resolve_detector_name",
    "resolve_device",
    "run_tool",
    "user_message",
]
