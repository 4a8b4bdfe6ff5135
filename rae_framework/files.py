"""Atomic file writes: the one way the framework replaces a file (temp file, fsync, rename, fsync the folder).

A crash at any moment leaves either the complete new file or the old one, never a torn file; a full disk
(ENOSPC, or a quota: EDQUOT) while writing is a :class:`~rae_framework.errors.DiskFullError` naming the
folder and its free space, raised after the temp file is removed, so the previous file stays intact.
Native writers hide the ``OSError``: ``torch.save`` to a file object raises a ``RuntimeError`` while handling
it, safetensors raises ``SafetensorError("... (os error 28)")``, and ``np.save`` into a file raises
``OSError("98304 requested and 65408 written")`` without an errno (a short write to a regular file: the disk or
the quota is full); :func:`full_disk_errno` finds all three.

Reading a tensor file a user names goes through :func:`read_tensor_file`, so that a missing, truncated or
foreign file is a :class:`~rae_framework.errors.ConfigError` naming it, never a reader's own exception.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rae_framework.errors import ConfigError, DiskFullError

FULL_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")  # how Rust's std::io::Error shows an errno
NUMPY_SHORT_WRITE = re.compile(r"^\d+ requested and \d+ written$")  # ndarray.tofile's OSError, errno dropped


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (streamed in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_path(path: Path) -> None:
    """Flush a file's (or a folder's) data and metadata to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def not_a_folder_on_the_way(path: Path) -> Path | None:
    """The first of ``path``'s parents (nearest first) that exists and is not a folder, or None."""
    return next((folder for folder in path.parents if folder.exists() and not folder.is_dir()), None)


def make_folder(folder: str | Path, what: str, remedy: str) -> Path:
    """Create ``folder`` and its parents. A file where a folder must be, or a folder that cannot be made (a
    read-only or virtual file system, no permission), is a ConfigError naming ``what`` and ``remedy``; a full
    disk is a DiskFullError, as for every write."""
    folder = Path(folder)
    blocking = folder if folder.exists() and not folder.is_dir() else not_a_folder_on_the_way(folder)
    if blocking is not None:
        raise ConfigError(f"{what} {folder}: {blocking} exists and is not a folder; {remedy}")
    try:
        with full_disk_reported(folder.parent, folder.name):
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"{what} {folder}: cannot be created ({error.strerror or error}); {remedy}") from None
    return folder


def check_output_file(path: str | Path, option: str) -> None:
    """``path`` can be written as a file: it is no folder and no parent of it is a file (ConfigError naming
    ``option``, before any work is done whose result would be lost)."""
    path = Path(path)
    blocking = not_a_folder_on_the_way(path)
    if blocking is not None:
        raise ConfigError(f"{option} {path}: {blocking} exists and is not a folder; choose another path")
    if path.is_dir():
        raise ConfigError(f"{option} {path}: is a folder; name a file to write")


def read_tensor_file(path: str | Path, what: str) -> dict:
    """The dict of tensors in ``path`` (safetensors by its suffix, else ``torch.load(weights_only=True)``: no
    pickled code runs); a missing file, one that does not parse, or one that holds no dict is a ConfigError
    naming the file and ``what`` it should be (e.g. "reference checkpoint")."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path}: " + ("is a folder; name a file" if path.is_dir() else "not found"))
    try:
        data = _read_tensors(path)
    except Exception as error:  # noqa: BLE001 - safetensors, pickle and zip readers each raise their own types
        kind = "safetensors file" if path.suffix == ".safetensors" else "PyTorch file (torch.save, weights only)"
        raise ConfigError(f"{what} {path}: not a readable {kind} ({type(error).__name__}: {error})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path}: expected a dict of tensors, got {type(data).__name__}")
    return data


def _read_tensors(path: Path) -> object:
    import torch
    from safetensors.torch import load_file

    if path.suffix == ".safetensors":
        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


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
    except DiskFullError:  # already reported by an inner block, which named the exact folder
        raise
    except Exception as error:
        code = full_disk_errno(error)
        if code is None:
            raise
        raise DiskFullError(
            f"the disk is full: writing {what} into {folder} failed ({os.strerror(code)}; "
            f"{human_bytes(free_bytes(folder))} free). The files written before are intact; free space "
            f"(or point the run at a larger disk) and rerun the same command to continue") from error


def full_disk_errno(error: BaseException) -> int | None:
    """ENOSPC or EDQUOT when ``error``, or an exception it was raised from or while handling, says so (the
    native writers' ways included, see the module doc); else None."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if (code := _errno_of(error)) in FULL_DISK_ERRNOS:
            return code
        error = error.__cause__ or error.__context__
    return None


def _errno_of(error: BaseException) -> int | None:
    """The errno an exception carries, shows as Rust's "(os error N)", or implies as numpy's short write."""
    if isinstance(error, OSError) and error.errno is not None:
        return error.errno
    if isinstance(error, OSError) and NUMPY_SHORT_WRITE.match(str(error)):
        return errno.ENOSPC
    match = RUST_OS_ERROR.search(str(error))
    return int(match.group(1)) if match else None


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
