"""Writing files without losing the user's.

Two rules hold for every file the library writes:

- **Atomic replacement.** A file is written to a temporary name in the same folder and renamed
  into place (:func:`atomic_write`). A reader, or a crash at any point, sees the old file or the
  complete new one. Because the rename replaces the *directory entry*, a symbolic or hard link
  at the target is replaced, never written through.
- **Inputs are never written.** :class:`ProtectedFiles` identifies the inputs of a call by
  device and inode (following links), so an output path that is the same file under another
  name -- a symbolic link, a hard link, a bind mount -- is refused before anything is written.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable, Iterable
from os import PathLike
from pathlib import Path
from typing import IO, Any

from ghostdet.errors import OutputError

__all__ = [
    "ProtectedFiles",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "file_id",
    "same_folder",
    "write_failure",
]


def file_id(path: str | PathLike) -> tuple[int, int] | None:
    """``(device, inode)`` of the file or folder at ``path``, links followed; ``None`` if missing."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return st.st_dev, st.st_ino


def same_folder(a: str | PathLike, b: str | PathLike) -> bool:
    """Whether two paths name one existing folder (however linked or spelled)."""
    ia = file_id(a)
    return ia is not None and ia == file_id(b)


def write_failure(path: str | PathLike, err: OSError, kept: str | None = None) -> OutputError:
    """The one-line error for a write that failed (disk full, file-size limit, permissions).

    Args:
        path: the file that could not be written.
        err: the error the write raised.
        kept: what is still intact, for the message (e.g. "the last checkpoint is intact").
    """
    why = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.EFBIG: "the file-size limit was reached",
        errno.EACCES: "permission denied",
        errno.EROFS: "the file system is read-only",
    }.get(err.errno or 0, err.strerror or type(err).__name__)
    tail = f"; {kept}" if kept else ""
    return OutputError(f"could not write {path}: {why}{tail}")


def atomic_write(path: str | PathLike, write: Callable[[IO[bytes]], Any], fsync: bool = True) -> Path:
    """Write ``path`` through ``write(file)`` on a temporary file, then rename it into place.

    Args:
        path: the file to (re)place; its folder is created.
        write: called with the open temporary file (binary mode).
        fsync: flush the data to disk before the rename.

    Raises:
        OSError: from the write (disk full, a file-size limit, permissions); the temporary file
            is removed and any old file at ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_bytes(path: str | PathLike, data: bytes | memoryview, fsync: bool = False) -> Path:
    """:func:`atomic_write` of ``data``."""
    return atomic_write(path, lambda f: f.write(data), fsync=fsync)


def atomic_write_text(path: str | PathLike, text: str, fsync: bool = False) -> Path:
    """:func:`atomic_write` of ``text`` as UTF-8."""
    return atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)


def atomic_write_json(path: str | PathLike, obj: Any, indent: int | None = 2, fsync: bool = False) -> Path:
    """:func:`atomic_write` of ``obj`` as JSON."""
    return atomic_write_text(path, json.dumps(obj, indent=indent), fsync=fsync)


class ProtectedFiles:
    """Files a call reads and must never write, known by ``(device, inode)``.

    Args:
        paths: the input files (missing ones are ignored).
        what: how the error message calls them ("input image").
    """

    def __init__(self, paths: Iterable[str | PathLike], what: str = "input") -> None:
        self.what = what
        self._ids: dict[tuple[int, int], Path] = {}
        self._folders: dict[tuple[int, int], Path] = {}
        for p in paths:
            p = Path(p)
            fid = file_id(p)
            if fid is None:
                continue
            self._ids.setdefault(fid, p)
            # the folder the path is listed in, and the one the file really lies in
            for folder in {p.absolute().parent, p.resolve().parent}:
                did = file_id(folder)
                if did is not None:
                    self._folders.setdefault(did, p)

    def owner(self, target: str | PathLike) -> Path | None:
        """The input that ``target`` is (by device and inode), or ``None``."""
        fid = file_id(target)
        return None if fid is None else self._ids.get(fid)

    def input_in_folder(self, folder: str | PathLike) -> Path | None:
        """An input listed in, or lying in, ``folder`` (the same folder however linked), or ``None``."""
        fid = file_id(folder)
        return None if fid is None else self._folders.get(fid)

    def check(self, target: str | PathLike) -> None:
        """Refuse to write ``target`` when it is one of the inputs under any name.

        Raises:
            OutputError: naming the target and the input it is.
        """
        src = self.owner(target)
        if src is not None:
            how = "is" if Path(target).absolute() == src.absolute() else "is a link to (the same file as)"
            raise OutputError(
                f"refusing to write {target}: it {how} the {self.what} {src}; nothing was overwritten"
            )
