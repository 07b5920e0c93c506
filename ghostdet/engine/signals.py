"""SIGTERM handled like Ctrl-C during training: one :class:`Terminated` exception, cleaned up on the way out.

A job killed with SIGTERM (``kill PID``, a cluster scheduler's pre-emption, ``timeout``) would
otherwise die at once: a checkpoint being written leaves its hidden ``.checkpoint.pth.tmp-PID``
file behind and nothing says what happened. Inside :func:`sigterm_as_interrupt` SIGTERM raises
:class:`Terminated`, a ``KeyboardInterrupt``, so the same ``finally`` blocks that clean up after
Ctrl-C (the temporary file of :func:`~ghostdet.engine.checkpoint.atomic_save`, TensorBoard,
the process group) run, and the last complete checkpoint stays as it was.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

__all__ = ["Terminated", "sigterm_as_interrupt"]


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM (raised where the main thread was, like Ctrl-C's KeyboardInterrupt)."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(f"received {signal.Signals(signum).name}")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated`; the previous handler is restored after.

    Outside the main thread (where Python cannot install signal handlers) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
