"""Atomic file writes: the one way the framework replaces a file (temp file, fsync, rename, fsync the folder).

A crash at any moment leaves either the complete new file or the old one, never a torn file; a full disk
(ENOSPC, or a quota: EDQUOT) while writing is a :class:`~rae_framework.errors.DiskFullError` naming the
folder and its free space, raised after the temp file is removed, so the previous file stays intact.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rae_framework.errors import DiskFullError

FULL_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def fsync_path(path: Path) -> None:
    """Flush a file's (or a folder's) data and metadata to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(temp)`` on a hidden temp path beside ``path`` (keeping its suffix, which numpy and
    safetensors writers look at), then fsync it and rename it over ``path``; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        with full_disk_reported(path.parent, path.name):
            write(temp)
            fsync_path(temp)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    fsync_path(path.parent)
    return path


def leftover_temp_files(path: str | Path) -> list[Path]:
    """The temp files :func:`atomic_write` of ``path`` leaves behind when its process is killed (SIGKILL, power
    loss) mid-write: safe to remove once no process writes ``path`` any more."""
    path = Path(path)
    return sorted(path.parent.glob(f".{path.stem}.tmp*{path.suffix}")) if path.parent.is_dir() else []


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Atomically replace ``path``'s content with ``text`` (UTF-8)."""
    return atomic_write(path, lambda temp: temp.write_text(text, encoding="utf-8"))


@contextmanager
def full_disk_reported(folder: str | Path, what: str) -> Iterator[None]:
    """Turn an ENOSPC/EDQUOT ``OSError`` raised inside the block into a :class:`DiskFullError` that names
    ``folder``, ``what`` was being written and the free space; other errors pass unchanged. The caller's
    cleanup (temp files) runs as the error propagates."""
    try:
        yield
    except OSError as error:
        if error.errno not in FULL_DISK_ERRNOS:
            raise
        raise DiskFullError(
            f"the disk is full: writing {what} into {folder} failed ({os.strerror(error.errno)}; "
            f"{human_bytes(free_bytes(folder))} free). The files written before are intact; free space "
            f"(or point the run at a larger disk) and rerun the same command to continue") from error


def free_bytes(folder: str | Path) -> int:
    """Free bytes on the disk that holds ``folder`` (or its nearest existing parent)."""
    path = Path(folder).absolute()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def human_bytes(count: float) -> str:
    """``1.5 GB`` style (powers of 1000, up to TB)."""
    unit = 0
    while abs(count) >= 1000 and unit < 4:
        count, unit = count / 1000, unit + 1
    return f"{count:.1f} {('B', 'kB', 'MB', 'GB', 'TB')[unit]}" if unit else f"{int(count)} B"
