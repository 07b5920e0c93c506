"""The project's exceptions for errors in what the user gave (files, folders, values).

Library code raises these with a message that names the file, folder or parameter at fault; the
command-line layer (:mod:`ghostdet.cli`) prints them as one line. Anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

__all__ = ["CheckpointError", "GhostdetError", "InputError", "OutputError", "RunFolderBusyError", "one_line"]


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


class InputError(GhostdetError):
    """An input the user named is missing or unusable: a file or folder, a model name, a device."""


class CheckpointError(GhostdetError, ValueError):
    """A checkpoint or weights file that cannot be used for what was asked (wrong model, width,
    class count, or not a checkpoint at all)."""


def one_line(err: BaseException) -> str:
    """A single-line, bounded description of ``err`` (for messages that quote another error)."""
    text = "; ".join(s.strip() for s in str(err).splitlines() if s.strip()) or type(err).__name__
    return text if len(text) <= 400 else text[:397] + "..."
