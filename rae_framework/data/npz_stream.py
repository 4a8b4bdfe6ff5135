"""``.npz`` files read and written in batches, so memory scales with the batch, never with the file.

An ``.npz`` is a zip of ``.npy`` members. :class:`NpzArray` reads rows of one member: memory-mapped where
the member is stored uncompressed (``np.savez``, the ADM reference batches, our own writer), streamed
through the zip otherwise. :func:`write_npz` writes members from iterables of row chunks straight into
the zip (the ``.npy`` header first, then the rows), atomically (:func:`rae_framework.files.atomic_write`). Used for
``samples/samples.npz`` (ADM layout: ``arr_0`` uint8 ``(N, H, W, 3)``, ``arr_1`` int64 ``(N,)``).
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rae_framework.files import atomic_write

LOCAL_HEADER_BYTES = 30  # fixed part of a zip local file header


def _npy_header(handle) -> tuple[tuple[int, ...], np.dtype, bool]:
    """``(shape, dtype, fortran_order)`` from an open ``.npy`` stream, left at the first data byte."""
    version = np.lib.format.read_magic(handle)
    reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = reader(handle)
    return tuple(shape), np.dtype(dtype), fortran


@dataclass(frozen=True)
class NpzArray:
    """One member (``arr_0``, ...) of an ``.npz``, read by rows: ``len``, ``shape``, ``dtype``, :meth:`read`."""

    path: Path
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    data_offset: int | None  # byte offset of the rows in the file when stored uncompressed, else None

    @classmethod
    def open(cls, path: str | Path, name: str = "arr_0") -> NpzArray:
        """Read the member's header (a few bytes; no rows)."""
        path = Path(path)
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(f"{name}.npy")
            with archive.open(info) as member:
                shape, dtype, fortran = _npy_header(member)
                header_bytes = member.tell()
            if fortran:
                raise ValueError(f"{path}:{name} is Fortran-ordered; rows cannot be read in batches")
            offset = None
            if info.compress_type == zipfile.ZIP_STORED:
                with path.open("rb") as raw:
                    raw.seek(info.header_offset + 26)
                    name_length, extra_length = np.frombuffer(raw.read(4), dtype="<u2")
                offset = info.header_offset + LOCAL_HEADER_BYTES + int(name_length) + int(extra_length) + header_bytes
        return cls(path, name, shape, dtype, offset)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def row_bytes(self) -> int:
        """Bytes of one row."""
        return int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` as a new array."""
        stop = min(stop, len(self))
        if self.data_offset is not None:
            mapped = np.memmap(self.path, dtype=self.dtype, mode="r", offset=self.data_offset, shape=self.shape)
            return np.array(mapped[start:stop])
        with zipfile.ZipFile(self.path) as archive, archive.open(f"{self.name}.npy") as member:
            _npy_header(member)
            member.seek(member.tell() + start * self.row_bytes)
            data = member.read((stop - start) * self.row_bytes)
        if len(data) != (stop - start) * self.row_bytes:
            raise ValueError(f"{self.path}:{self.name} ends before row {stop} (truncated file?)")
        return np.frombuffer(data, dtype=self.dtype).reshape(stop - start, *self.shape[1:]).copy()

    def batches(self, batch_size: int, rows: range | None = None) -> Iterator[np.ndarray]:
        """Consecutive batches of ``batch_size`` rows (of ``rows``, a range, when given)."""
        span = range(len(self)) if rows is None else rows
        for start in range(span.start, span.stop, batch_size):
            yield self.read(start, min(start + batch_size, span.stop))


@dataclass(frozen=True)
class Member:
    """A member to write: its full ``shape`` and ``dtype`` and the row chunks that fill it, in order."""

    shape: tuple[int, ...]
    dtype: np.dtype
    chunks: Iterable[np.ndarray]


def _write_member(archive: zipfile.ZipFile, name: str, member: Member) -> None:
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(member.dtype)), "fortran_order": False,
              "shape": tuple(member.shape)}
    written = 0
    with archive.open(f"{name}.npy", "w", force_zip64=True) as handle:
        np.lib.format.write_array_header_2_0(handle, header)
        for chunk in member.chunks:
            chunk = np.ascontiguousarray(chunk, dtype=member.dtype)
            handle.write(chunk.tobytes())
            written += chunk.shape[0] if chunk.ndim else 1
    if written != member.shape[0]:
        raise ValueError(f"npz member {name}: {written} rows written, the header says {member.shape[0]}")


def write_npz(path: str | Path, members: dict[str, Member]) -> Path:
    """Write ``members`` (name -> :class:`Member`) into an uncompressed ``.npz`` at ``path``, atomically."""
    def write(temp: Path) -> None:
        with zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name, member in members.items():
                _write_member(archive, name, member)

    return atomic_write(path, write)
