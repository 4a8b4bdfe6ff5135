"""A real small disk for full-disk tests: a tmpfs of a given size mounted on a test's folder (root only).

Where mounting is not allowed (not root, a container without CAP_SYS_ADMIN) :func:`small_disk` yields None and
the test injects ENOSPC at the write call instead.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextmanager
def small_disk(folder: Path, size_bytes: int) -> Iterator[Path | None]:
    """``folder`` as a tmpfs of ``size_bytes`` (rounded up to pages) while in the block, or None when it cannot
    be mounted; unmounted on exit (its files go with it)."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        mounted = _mount("-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(folder))
    except FileNotFoundError:  # no mount binary
        mounted = False
    try:
        yield folder if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], check=True)


def resize(folder: Path, size_bytes: int) -> None:
    """Grow (or shrink) a mounted :func:`small_disk`, keeping its files."""
    assert _mount("-o", f"remount,size={size_bytes}", str(folder)), f"cannot resize the tmpfs on {folder}"
