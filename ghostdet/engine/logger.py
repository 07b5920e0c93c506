"""Run logging: console + ``log.txt`` on rank 0, tqdm bars on a terminal, TensorBoard scalars."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from os import PathLike
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["ProgressLog", "RunLogger", "stdout_is_tty"]

T = TypeVar("T")


def stdout_is_tty() -> bool:
    """True when stdout is an interactive terminal (progress bars instead of log lines)."""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


class RunLogger:
    """Print on the main process and append the same lines to ``log_file``.

    Args:
        log_file: text log (``None``: console only).
        enabled: False on non-main ranks (nothing is printed or written).
    """

    def __init__(self, log_file: str | PathLike | None = None, enabled: bool = True) -> None:
        self.enabled = enabled
        self.log_file = Path(log_file) if log_file is not None and enabled else None
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, msg: str) -> None:
        """Log one message (may span lines)."""
        if not self.enabled:
            return
        from tqdm import tqdm

        tqdm.write(msg, file=sys.stdout)
        sys.stdout.flush()
        if self.log_file is not None:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            with open(self.log_file, "a") as f:
                for line in msg.splitlines() or [""]:
                    f.write(f"{stamp} {line}\n")


class ProgressLog:
    """Iterate with a tqdm bar on a terminal, or with periodic plain log lines otherwise.

    Args:
        iterable: what to iterate.
        total: number of items.
        desc: bar / line prefix.
        log: a :class:`RunLogger` for the plain lines.
        print_freq: items between plain lines.
        enabled: False on non-main ranks (silent).
        tty: force bar (True) or lines (False); default :func:`stdout_is_tty`.
    """

    def __init__(
        self,
        iterable: Iterable[T],
        total: int,
        desc: str,
        log: RunLogger,
        print_freq: int = 20,
        enabled: bool = True,
        tty: bool | None = None,
    ) -> None:
        self.iterable = iterable
        self.total = total
        self.desc = desc
        self.log = log
        self.print_freq = max(1, print_freq)
        self.enabled = enabled
        self.tty = stdout_is_tty() if tty is None else tty
        self.postfix: Mapping[str, Any] = {}
        self._bar: Any = None

    def set_postfix(self, values: Mapping[str, Any]) -> None:
        """Values shown after the bar / at the end of the next plain line."""
        self.postfix = values
        if self._bar is not None:
            self._bar.set_postfix(values, refresh=False)

    def __iter__(self) -> Iterator[T]:
        if self.enabled and self.tty:
            from tqdm import tqdm

            self._bar = tqdm(self.iterable, total=self.total, desc=self.desc, dynamic_ncols=True, leave=False)
            try:
                yield from self._bar
            finally:
                self._bar.close()
                self._bar = None
            return
        start = time.perf_counter()
        for count, item in enumerate(self.iterable, 1):
            yield item
            if self.enabled and (count % self.print_freq == 0 or count == self.total):
                elapsed = time.perf_counter() - start
                eta = elapsed / count * (self.total - count)
                extra = "  ".join(f"{k} {v}" for k, v in self.postfix.items())
                self.log(f"{self.desc} [{count}/{self.total}] {extra}  elapsed {elapsed:.0f}s eta {eta:.0f}s")
