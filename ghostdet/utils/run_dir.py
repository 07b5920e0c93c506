"""The run-folder rule: a run never replaces or mixes with another run's files.

Every job that writes a run folder (detection and classification training, the s/d ablation)
claims it with :func:`claim_run_dir` before it writes anything:

- A folder that already holds a run's results (:data:`RUN_FILES`) is *not reused* unless the
  job continues that run (``resume``) or the user asked for it (``exist_ok``). Otherwise the job
  takes the next free name -- ``runs/x``, ``runs/x2``, ``runs/x3``, ... -- and says so, as
  ultralytics does.
- The folder is locked (:class:`~ghostdet.utils.locking.FileLock` on ``.ghostdet.lock``) while
  the job writes. A second job started into the same folder moves on to the next free name, or,
  when it was told to reuse the folder, is refused with one line naming the holder's pid. The
  lock is released on every exit path, a crash or a kill included (the OS drops it).
- ``exist_ok`` without ``resume`` starts afresh: the old run's results are removed first, so no
  ``best.pth`` of the old run sits beside the new run's ``checkpoint.pth``.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

from ghostdet.errors import OutputError, RunFolderBusyError
from ghostdet.utils.locking import FileLock

__all__ = ["LOCK_NAME", "RUN_FILES", "RunFolder", "claim_run_dir", "previous_run_files"]

#: What marks a folder as holding a run's results (a ``log.txt`` alone does not).
RUN_FILES = (
    "checkpoint.pth", "best.pth", "metrics.json", "config.yaml", "detections.json", "tensorboard",
    "ablation.csv", "ablation.md",
)  # fmt: skip
LOCK_NAME = ".ghostdet.lock"


def previous_run_files(folder: str | PathLike) -> list[str]:
    """The :data:`RUN_FILES` present in ``folder`` (empty when it holds no run)."""
    folder = Path(folder)
    return [name for name in RUN_FILES if (folder / name).exists()]


@dataclass
class RunFolder:
    """A claimed run folder: ``path`` is where the job writes, locked until :meth:`release`.

    Attributes:
        path: the folder the job writes (the requested one, or the next free name).
        requested: the folder that was asked for.
        lock: the held lock.
    """

    path: Path
    requested: Path
    lock: FileLock

    def release(self) -> None:
        """Release the folder's lock (idempotent)."""
        self.lock.release()

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _candidates(base: Path) -> Callable[[], Path]:
    numbers = itertools.count(2)
    return lambda: base.with_name(f"{base.name}{next(numbers)}")


def claim_run_dir(
    output_dir: str | PathLike,
    *,
    reuse: bool = False,
    fresh: bool = False,
    log: Callable[[str], None] = print,
) -> RunFolder:
    """Claim a run folder for writing (see the module docstring for the rule).

    Args:
        output_dir: the requested folder (``output_dir`` of the run's config).
        reuse: the job may write into a folder that holds a run (it resumes it, or the user set
            ``exist_ok``); the folder is then never renamed, and a held lock is an error.
        fresh: with ``reuse``, the job starts anew: the old run's results are removed first.
        log: printer of the line that says when another folder was taken or files removed.

    Returns:
        the claimed, locked folder (created).

    Raises:
        OutputError: ``output_dir`` is (under) a file (``argument="output_dir"``).
        RunFolderBusyError: ``reuse`` and another process holds the folder's lock.
    """
    base = Path(output_dir)
    for parent in (base, *base.parents):
        if parent.exists() and not parent.is_dir():
            where = "is a file" if parent == base else f"is under the file {parent}"
            raise OutputError(f"{base} {where}; give a folder", argument="output_dir")
    following = _candidates(base)
    folder, why = base, None
    while True:
        if folder.exists() and not folder.is_dir():  # only a numbered candidate can be a file here
            folder = following()
            continue
        folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(folder / LOCK_NAME)
        if not lock.acquire(blocking=False):
            if reuse:
                raise RunFolderBusyError(
                    f"{folder} is being written by another run (pid {lock.holder()}); wait for it to end "
                    "or choose another folder",
                    argument="output_dir",
                )
            why = why or f"is being written by another run (pid {lock.holder()})"
            folder = following()
            continue
        held = previous_run_files(folder)
        if held and not reuse:
            lock.release()
            why = why or f"holds a previous run ({', '.join(held)})"
            folder = following()
            continue
        break
    if folder != base:
        log(
            f"{base} {why}; writing to {folder} instead (resume: auto continues that run, exist_ok: true "
            "writes into it)"
        )
    elif reuse and fresh and held:
        for name in held:
            target = folder / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        log(f"exist_ok: removed the previous run's {', '.join(held)} from {folder}")
    return RunFolder(folder, base, lock)
