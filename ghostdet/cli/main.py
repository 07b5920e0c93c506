"""``ghostdet``: one command for every tool (``ghostdet train``, ``ghostdet eval``, ...).

``ghostdet --help`` lists the subcommands (:data:`ghostdet.cli.commands.COMMANDS`),
``ghostdet SUBCOMMAND --help`` their flags. The scripts in a clone's ``tools/`` run the same
subcommands under their own names (:func:`run_script`): ``python tools/train_det.py ARGS`` is
``ghostdet train ARGS``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ghostdet.cli.commands import COMMANDS
from ghostdet.cli.errors import ToolArgumentParser

__all__ = ["build_parser", "main", "run_command", "run_script"]


class _TopParser(argparse.ArgumentParser):
    error = ToolArgumentParser.error  # one line: "ghostdet: error: ... (see --help)"


def build_parser(prog: str = "ghostdet") -> argparse.ArgumentParser:
    """The parser of ``ghostdet`` itself: ``--help``, ``--version`` and the subcommands' list."""
    import ghostdet

    p = _TopParser(
        prog=prog,
        description="GhostNet backbones and GhostNet-FPN detectors: training, evaluation, inference, "
        "export and analysis. Run 'ghostdet COMMAND --help' for a command's flags.",
        epilog="Every command reads its flags the same way; the training commands take --config "
        "FILE, then flags, then --set KEY=VALUE. In a clone, tools/*.py run the same commands "
        "(python tools/train_det.py = ghostdet train).",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {ghostdet.__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", title="commands", required=True)
    for cmd in COMMANDS.values():
        sub.add_parser(cmd.name, help=cmd.summary, add_help=False)
    return p


def run_command(name: str, argv: Sequence[str] | None = None, *, script: bool = False) -> int:
    """Run the subcommand ``name`` on ``argv`` (``None``: ``sys.argv[1:]``).

    Args:
        name: a key of :data:`~ghostdet.cli.commands.COMMANDS`.
        argv: its arguments.
        script: it runs as its ``tools/`` script (usage and error lines name the script).

    Returns:
        The exit status (a usage error exits through argparse's ``SystemExit(2)``).
    """
    cmd = COMMANDS[name]
    inv = cmd.invocation(script)
    module = cmd.load()
    args = module.parse_args(None if argv is None else list(argv), inv)
    return module.run(args, inv)


def run_script(name: str, argv: Sequence[str] | None = None) -> int:
    """What ``tools/SCRIPT.py`` runs: the subcommand ``name`` under the script's name."""
    return run_command(name, argv, script=True)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``ghostdet`` console script (and ``python -m ghostdet``).

    Args:
        argv: ``COMMAND ARGS...`` (``None``: ``sys.argv[1:]``).

    Returns:
        The command's exit status.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        return run_command(argv[0], argv[1:])
    build_parser().parse_args(argv)  # --help, --version, or a usage error: all exit
    return 2  # (not reached: a known command is run above)
