"""The command-line glue the tools share: one error path, the detector flags, device choice.

Every tool in ``tools/`` parses its flags with :class:`ToolArgumentParser` (which adds
``--debug``) and runs its one library call through :func:`run_tool`. An error about the user's
input -- a :class:`ToolError`, any ``ValueError`` (``ConfigError``, ``DataError``,
``CheckpointReadError``, ``WeightsMismatchError``, ...) or ``OSError`` (a missing file, a
failed download) -- becomes one line ``prog: error: message`` and exit status 2; the library's
argument names in the message are spelled as the tool's flags (:data:`ARG_FLAGS`). Anything
else is a bug and keeps its traceback; ``--debug`` prints the traceback of user errors too.
The eval and infer tools choose their detector with the flags of :func:`add_detector_args`;
detector names resolve through the model registry.
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
