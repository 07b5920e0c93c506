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

import argparse
import re
import sys
import traceback
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from ghostdet.errors import GhostdetError, one_line
from ghostdet.models.registry import detector_aliases, list_models, resolve_detector_name
from ghostdet.utils.devices import resolve_device

__all__ = [
    "ARG_FLAGS",
    "DETECTOR_ARG_NAMES",
    "USER_ERRORS",
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


DETECTOR_ARG_NAMES = (
    "checkpoint",
    "model",
    "weights",
    "width",
    "num_classes",
    "min_size",
    "max_size",
    "device",
    "threads",
)


def add_detector_args(parser: argparse.ArgumentParser | Any) -> None:
    """Add the flags that choose and place a detector (shared by the eval and infer tools).

    ``--checkpoint``, ``--model``, ``--weights``, ``--width``, ``--num-classes``, ``--min-size``,
    ``--max-size``, ``--device``, ``--threads``; :func:`detector_kwargs` turns them into keyword
    arguments for :func:`ghostdet.models.loading.load_detector`-based entry points.
    """
    parser.add_argument(
        "--checkpoint",
        help="checkpoint written by tools/train_det.py (carries detector, backbone, width, num_classes, "
        "class names and category mapping)",
    )
    parser.add_argument(
        "--model",
        help=f"detector builder for --weights: {', '.join(detector_aliases())} or a full name "
        f"({', '.join(list_models('detector'))}); with --checkpoint it must match the checkpoint",
    )
    parser.add_argument(
        "--weights", help="weights file for --model (state dict, or a dict with it under 'model')"
    )
    parser.add_argument("--width", type=float, default=None, help="GhostNet width of --model (default 1.0)")
    parser.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="classes incl. background of --model (default: from weights)",
    )
    from ghostdet.config.detection import TrainConfig
    from ghostdet.config.recipe import flag_type

    # the same declared ranges as the training recipe's min_size / max_size
    parser.add_argument(
        "--min-size", type=flag_type(TrainConfig, "min_size"), default=None,
        help="override the detector's resize min size",
    )  # fmt: skip
    parser.add_argument(
        "--max-size", type=flag_type(TrainConfig, "max_size"), default=None,
        help="override the detector's resize max size",
    )  # fmt: skip
    parser.add_argument(
        "--device",
        default="auto",
        help="cpu, cuda, cuda:N or auto = cuda when available (default %(default)s)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads per process; 0 keeps torch's default (default %(default)s; 1 suits a busy machine)",
    )


def detector_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The :func:`add_detector_args` values of ``args`` as keyword arguments."""
    return {k: getattr(args, k) for k in DETECTOR_ARG_NAMES}
