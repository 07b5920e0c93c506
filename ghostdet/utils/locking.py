"""Advisory file locks (POSIX ``flock``) that the operating system releases when a process ends.

A lock held by a process that crashed or was killed is released with it, so no stale lock is
ever left to clean up by hand. Where ``fcntl`` is unavailable (Windows) the lock is a no-op.
"""

from __future__ import annotations

import os
from os import PathLike
from pathlib import Path

__all__ = ["FileLock"]


class FileLock:
    """An exclusive lock on ``path`` (created if needed; the holder's pid is written into it).

    Use as a context manager (blocking), or :meth:`acquire` with ``blocking=False`` to learn
    whether another process holds it. :meth:`release` is idempotent.

    Args:
        path: the lock file.
    """

    def __init__(self, path: str | PathLike) -> None:
        self.path = Path(path)
        self.fd: int | None = None

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock; ``False`` when ``blocking`` is off and another process holds it."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return True
        if self.fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return True

    def holder(self) -> str:
        """The pid written by the process that holds (or last held) the lock, or ``"?"``."""
        try:
            return self.path.read_text().strip() or "?"
        except OSError:
            return "?"

    def release(self) -> None:
        """Give the lock up (nothing happens when it is not held)."""
        if self.fd is None:
            return
        import fcntl

        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
