"""The tools' one error path: a user error is one line ``prog: error: message`` and exit status 2.

Every tool parses its flags with :class:`ToolArgumentParser` (which adds ``--debug``) and runs its
one library call through :func:`run_tool`. An error about the user's input -- a
:class:`~ghostdet.errors.GhostdetError`, :class:`ToolError` (the CLI's own) included -- becomes
one line and exit status 2. The library names the parameter at fault (``err.argument``); this
module is the one place that spells it as the tool's flag (:data:`ARG_FLAGS`, plus a tool's own
``argument_flags``), leading the line with it. Anything else -- a builtin ``ValueError`` or
``OSError`` included -- is a bug and keeps its traceback (exit status 1); ``--debug`` prints the
traceback of user errors too.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from ghostdet.errors import GhostdetError, one_line

__all__ = [
    "ARG_FLAGS",
    "USER_ERRORS",
    "USER_ERROR_STATUS",
    "ToolArgumentParser",
    "ToolError",
    "argument_flag",
    "run_tool",
    "user_message",
]


#: Exit status of a tool for an error in the user's input (argparse's usage errors use it too).
USER_ERROR_STATUS = 2


class ToolError(GhostdetError):
    """An error the CLI itself finds in the user's input: the tools print it as one line."""


#: The errors :func:`run_tool` reports as one line: the project's errors about the user's input
#: (every library user error derives from :class:`~ghostdet.errors.GhostdetError`). A builtin
#: exception is a bug and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (GhostdetError, ToolError)

#: Library parameter names (``err.argument``) -> the flag that sets them in the tools, for the
#: parameters the tools' entry points take under the flag's name. A tool adds or overrides
#: entries with ``argument_flags`` (e.g. every config key of a training tool); a parameter no
#: mapping names is left to the message, which names it.
ARG_FLAGS: dict[str, str] = {
    "backbone": "--backbone",
    "batch_size": "--batch-size",
    "calibration": "--calibration",
    "checkpoint": "--checkpoint",
    "data_path": "--data-path",
    "device": "--device",
    "max_size": "--max-size",
    "min_size": "--min-size",
    "model": "--model",
    "num_classes": "--num-classes",
    "output_dir": "--output-dir",
    "precision": "--precision",
    "results": "--results",
    "resume": "--resume",
    "runtime": "--runtime",
    "strict_data": "--strict-data",
    "train_ann": "--train-ann",
    "train_images": "--train-images",
    "trainable_backbone_layers": "--trainable-backbone-layers",
    "val_ann": "--val-ann",
    "val_images": "--val-images",
    "weights": "--weights",
    "weights_backbone": "--weights-backbone",
    "width": "--width",
}


class ToolArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (``prog: error: message (see --help)``).

    It adds ``--debug`` (tracebacks for user errors too, see :func:`run_tool`) to every tool.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "--debug" in self._option_string_actions:  # a parent parser brought it
            return
        self.add_argument(
            "--debug",
            action="store_true",
            default=False,
            help="print the full traceback of an error in the input, not only its one-line message",
        )

    def error(self, message: str) -> NoReturn:
        self.exit(USER_ERROR_STATUS, f"{self.prog}: error: {message} (see --help)\n")


def argument_flag(
    err: BaseException, flags: Mapping[str, str] = ARG_FLAGS, argument_flags: Mapping[str, str] | None = None
) -> str | None:
    """The flag of the parameter ``err`` names (``err.argument``), ``None`` if none or no flag sets it.

    Args:
        err: the error.
        flags: library parameter names -> flags.
        argument_flags: more names -> flags, taking precedence over ``flags``.
    """
    argument = getattr(err, "argument", None)
    if not argument:
        return None
    return {**flags, **(argument_flags or {})}.get(argument)


def user_message(
    err: BaseException, flags: Mapping[str, str] = ARG_FLAGS, argument_flags: Mapping[str, str] | None = None
) -> str:
    """The one-line message of a user error, led by the flag of the parameter it names.

    The message is the error's own (its lines joined, see :func:`ghostdet.errors.one_line`); when
    the error names a parameter (``err.argument``) that a flag sets, the line starts with that
    flag (``--weights-backbone: ...``), in place of a leading ``argument: `` of the message.
    Nothing in the message itself is rewritten.

    Args:
        err: the error.
        flags: library parameter names -> flags (:data:`ARG_FLAGS`).
        argument_flags: more names -> flags (e.g. every config key of a training tool).
    """
    text = one_line(err)
    flag = argument_flag(err, flags, argument_flags)
    if flag is None or text.startswith(f"{flag}:"):
        return text
    return f"{flag}: {text.removeprefix(f'{err.argument}: ')}"


def run_tool(
    body: Callable[[], int | None],
    prog: str,
    debug: bool = False,
    flags: Mapping[str, str] = ARG_FLAGS,
    expected: tuple[type[BaseException], ...] = (),
    argument_flags: Mapping[str, str] | None = None,
) -> int:
    """Run a tool's library call and turn user errors into one line and exit status 2.

    Args:
        body: the call; returns the exit status (anything but an int: 0).
        prog: the tool's name for the message (``train_det.py``).
        debug: also print the traceback of a user error (the tools' ``--debug``).
        flags: library parameter names -> flags, for :func:`user_message`.
        expected: more error types that are the user's (e.g. ``ImportError`` for a missing extra).
        argument_flags: see :func:`user_message`.

    Returns:
        ``body``'s exit status, 2 for a user error, 130 on Ctrl-C. Other exceptions propagate
        (a bug: Python prints the traceback and exits with 1).
    """
    try:
        status = body()
    except (*USER_ERRORS, *expected) as e:
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {user_message(e, flags, argument_flags)}", file=sys.stderr)
        return USER_ERROR_STATUS
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return status if isinstance(status, int) and not isinstance(status, bool) else 0
