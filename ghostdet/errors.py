"""The project's exceptions for errors in what the user gave (files, folders, values).

Library code raises these with a message that names the file, folder or parameter at fault; the
command-line layer (:mod:`ghostdet.cli`) prints them as one line. Anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

__all__ = ["GhostdetError", "OutputError", "RunFolderBusyError"]


class GhostdetError(Exception):
    """Base of the errors in the user's input.

    Args:
        message: what is wrong, naming the file, folder or parameter.
        argument: the library parameter at fault (the CLI spells it as its flag), if one is.
    """

    def __init__(self, message: str, *, argument: str | None = None) -> None:
        super().__init__(message)
        if argument is not None:
            self.argument = argument


class OutputError(GhostdetError):
    """An output location that would overwrite an input, mix runs, or cannot be written."""


class RunFolderBusyError(OutputError):
    """Another process holds the run folder's lock (it is writing into the same folder)."""
