"""The project's exceptions: the one hierarchy of errors in what the user gave (files, folders, values).

Every error the library raises about the user's input derives from :class:`GhostdetError`; its
message names the file, folder, key or parameter at fault, and ``err.argument`` names the
parameter when one is at fault. The command-line layer (:mod:`ghostdet.cli`) prints a
``GhostdetError`` as one line (and spells ``err.argument`` as the tool's flag); anything else --
a builtin ``ValueError``, ``OSError``, ``RuntimeError`` ... -- is a bug and keeps its traceback.

The hierarchy (classes defined next to the code that raises them are re-exported from there):

- :class:`GhostdetError`

  - :class:`InputError`: an input that is missing or unusable (a file, folder, model name, device).

    - :class:`ghostdet.models.weights.WeightsDownloadError` (also ``OSError``): weights that could
      not be downloaded.

  - :class:`ArgumentError` (also ``ValueError``): a function refuses an argument's value
    (``num_classes=0``, an unknown name).
  - :class:`OutputError`: an output location that cannot be used; :class:`RunFolderBusyError`.
  - :class:`CheckpointError` (also ``ValueError``): a checkpoint or weights file that cannot be
    used for what was asked.

    - :class:`ghostdet.utils.checkpoint_io.CheckpointReadError`: missing or unreadable.
    - :class:`ghostdet.models.weights.WeightsMismatchError` (also ``RuntimeError``): a state dict
      that does not fit the model.
    - :class:`ghostdet.models.weights.NotAStateDictError` (also ``TypeError``): a file holding no
      state dict.

  - :class:`ghostdet.config.recipe.ConfigError` (also ``ValueError``): a recipe key or override.
  - :class:`ghostdet.data.validation.DataError` (also ``ValueError``): a malformed dataset file.
  - :class:`ghostdet.data.images.ImageReadError` (also ``OSError``): an image that cannot be used.
  - :class:`ghostdet.deploy.onnx.ExportError` (also ``RuntimeError``): an export that cannot be done
    or verified.

Not user errors: :class:`ghostdet.engine.run.NonFiniteLossError` (a ``RuntimeError``) is how a
training run ended (the loss diverged), reported by ``run_training_job`` with exit status 1.
"""

from __future__ import annotations

__all__ = [
    "ArgumentError",
    "CheckpointError",
    "GhostdetError",
    "InputError",
    "OutputError",
    "RunFolderBusyError",
    "one_line",
]


class GhostdetError(Exception):
    """Base of the errors in the user's input.

    Args:
        message: what is wrong, naming the file, folder or parameter.
        argument: the library parameter at fault (the CLI spells it as its flag), if one is.

    Attributes:
        argument: the parameter at fault, or ``None``.
    """

    argument: str | None = None

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


class ArgumentError(GhostdetError, ValueError):
    """A function refuses the value of one of its arguments (``num_classes=0``, an unknown name).

    A ``ValueError`` too, as Python's own functions raise for a bad value; ``argument`` names the
    parameter.
    """


class CheckpointError(GhostdetError, ValueError):
    """A checkpoint or weights file that cannot be used for what was asked (wrong model, width,
    class count, or not a checkpoint at all)."""


def one_line(err: BaseException) -> str:
    """A single-line, bounded description of ``err`` (for messages that quote another error)."""
    text = "; ".join(s.strip() for s in str(err).splitlines() if s.strip()) or type(err).__name__
    return text if len(text) <= 400 else text[:397] + "..."
