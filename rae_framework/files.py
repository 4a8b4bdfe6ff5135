"""Atomic file writes: the one way the framework replaces a file (temp file, fsync, rename, fsync the folder).

A crash at any moment leaves either the complete new file or the old one, never a torn file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


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
        write(temp)
        fsync_path(temp)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    fsync_path(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Atomically replace ``path``'s content with ``text`` (UTF-8)."""
    return atomic_write(path, lambda temp: temp.write_text(text, encoding="utf-8"))
