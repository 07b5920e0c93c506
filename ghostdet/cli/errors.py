"""The tools' one error path: a user error is one line ``prog: error: message`` and exit status 2.

Every tool parses its flags with :class:`ToolArgumentParser` (which adds ``--debug``) and runs its
one library call through :func:`run_tool`. An error about the user's input -- a
:class:`~ghostdet.errors.GhostdetError` (or a :class:`ToolError` of the CLI itself) -- becomes one
line and exit status 2; the library parameter it names (``err.argument``) is spelled as the
tool's flag. Anything else is a bug and keeps its traceback; ``--debug`` prints the traceback of
user errors too.
"""

from __future__ import annotations

import argparse
import re
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
    "run_tool",
    "user_message",
]


#: Exit status of a tool for an error in the user's input (argparse's usage errors use it too).
USER_ERROR_STATUS = 2


class ToolError(Exception):
    """A user-facing error (bad path, wrong checkpoint, bad flag): the tools print it as one line."""


#: The errors :func:`run_tool` reports as one line: the library raises ValueError subclasses
#: (ConfigError, DataError, CheckpointReadError, WeightsMismatchError) for bad content and
#: OSError subclasses (FileNotFoundError, a failed download) for files it cannot get.
USER_ERRORS: tuple[type[BaseException], ...] = (GhostdetError, ToolError, ValueError, OSError)

#: Library argument (and config key) names -> the flag that sets them in the tools.
ARG_FLAGS: dict[str, str] = {
    "weights_backbone": "--weights-backbone",
    "weights": "--weights",
    "checkpoint": "--checkpoint",
    "num_classes": "--num-classes",
    "trainable_backbone_layers": "--trainable-backbone-layers",
    "strict_data": "--strict-data",
    "output_dir": "--output-dir",
    "min_size": "--min-size",
    "max_size": "--max-size",
    "batch_size": "--batch-size",
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


def _spell_flags(text: str, flags: Mapping[str, str]) -> str:
    """``weights_backbone='x'`` -> ``--weights-backbone x`` and bare ``num_classes`` -> ``--num-classes``.

    A ``(known keys: ...)`` list is left as it is: it names config keys, not flags.
    """
    text, sep, keys = text.partition("(known keys:")
    for name, flag in flags.items():
        name = re.escape(name)
        pattern = rf"(?<![\w.-])(?<!--set ){name}=(?:'([^']*)'|(\S+))"  # "--set KEY=VALUE" stays
        text = re.sub(pattern, lambda m, f=flag: f"{f} {m[1] or m[2]}", text)
        if "_" in name:  # plain words such as "weights" stay words
            text = re.sub(rf"(?<![\w.-]){name}(?![\w=])", flag, text)
    return text + sep + keys


def user_message(
    err: BaseException, flags: Mapping[str, str] = ARG_FLAGS, argument_flags: Mapping[str, str] | None = None
) -> str:
    """The one-line message of a user error, library argument names spelled as flags.

    An error raised about one argument may carry its name as ``err.argument`` (see
    :func:`ghostdet.models.weights.argument_context`); the flag then leads the message.

    Args:
        err: the error.
        flags: names spelled as flags wherever the message uses them.
        argument_flags: more names -> flags, used only for ``err.argument`` (e.g. every config
            key of the training tool, whose plain words such as ``epochs`` are not rewritten).
    """
    argument = getattr(err, "argument", None)
    every = {**flags, **(argument_flags or {})}
    flag = every.get(argument, "--" + argument.replace("_", "-")) if argument else None
    if flag is not None and argument.startswith("weights"):  # weight loaders call every file "weights"
        flags = {**flags, "weights": flag}
    text = _spell_flags(one_line(err), flags)
    if flag is not None and not text.startswith(flag):
        text = f"{flag}: {text.removeprefix(f'{argument}: ')}"
    return text


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
        flags: library argument names -> flags, for :func:`user_message`.
        expected: more error types that are the user's (e.g. the export tool's ``ExportError``).
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
