"""Samples kept as one small uint8 file per global batch, so a killed ``sample`` stage continues where it was.

Global batch ``k`` (rows ``[k * batch_size, (k + 1) * batch_size)`` of the label list, the last one short) is
the unit of progress. Its content depends only on ``k`` (its noise is keyed by the batch, see the ``sample``
stage), never on the number of processes, so any rank of any attempt may produce it. Each finished batch is
written atomically as ``chunk_<k>.npy`` (``(b, H, W, 3)`` uint8); a file under that name is complete by
construction, so the files present are the batches done, whatever killed the previous attempt (SIGKILL
included: a torn write leaves only a hidden temp file, removed by :meth:`SampleChunks.clear_partial`).

Rank 0 streams the chunks in row order into the ADM ``samples.npz`` (atomic), then writes ``assembled.json``
(the npz's size and sha256) and only then removes the chunks: a kill during assembly leaves the chunks to
assemble again, a kill after it leaves a marker that vouches for the npz. Memory stays one batch.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rae_framework.data.npz_stream import Member, NpzArray, write_npz
from rae_framework.errors import RAEError
from rae_framework.files import atomic_write, atomic_write_text, file_sha256, leftover_temp_files

CHUNK_NAME = re.compile(r"chunk_(\d{6,})\.npy")
MARKER = "assembled.json"


@dataclass(frozen=True)
class ChunkLayout:
    """``total`` rows cut into global batches of ``batch_size`` (the last may be short)."""

    total: int
    batch_size: int

    @property
    def num_chunks(self) -> int:
        """Global batches."""
        return -(-self.total // self.batch_size)

    def rows(self, chunk: int) -> range:
        """Global rows of batch ``chunk``."""
        return range(chunk * self.batch_size, min(self.total, (chunk + 1) * self.batch_size))

    def resume_row(self, done: set[int] | list[int]) -> int:
        """The first row not yet produced (every row before it is done; later batches may be done too)."""
        finished = set(done)
        first_missing = next((chunk for chunk in range(self.num_chunks) if chunk not in finished), self.num_chunks)
        return min(self.total, first_missing * self.batch_size)


class SampleChunks:
    """The chunk files of one sampling (one folder per input hash, see ``rae_framework.engine``)."""

    def __init__(self, folder: str | Path, layout: ChunkLayout) -> None:
        self.folder, self.layout = Path(folder), layout

    def path(self, chunk: int) -> Path:
        """The file of batch ``chunk``."""
        return self.folder / f"chunk_{chunk:06d}.npy"

    def clear_partial(self) -> list[Path]:
        """Remove the temp files of writes a killed process left behind (only while nothing writes here)."""
        leftovers = [path for path in self.folder.glob(".*.tmp*") if path.is_file()] if self.folder.is_dir() else []
        for path in leftovers:
            path.unlink(missing_ok=True)
        return leftovers

    def done(self) -> list[int]:
        """The batches whose file is present, in order (files of other names or out of range are ignored)."""
        if not self.folder.is_dir():
            return []
        found = (CHUNK_NAME.fullmatch(path.name) for path in self.folder.iterdir())
        return sorted(int(match.group(1)) for match in found if match and int(match.group(1)) < self.layout.num_chunks)

    def write(self, chunk: int, images: np.ndarray) -> Path:
        """Atomically store batch ``chunk``'s images ``(b, H, W, 3)`` uint8 (a full disk: ``DiskFullError``)."""
        expected = len(self.layout.rows(chunk))
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[0] != expected:
            raise ValueError(f"chunk {chunk} needs ({expected}, H, W, C) uint8 images, got {images.dtype} "
                             f"{tuple(images.shape)}")
        return atomic_write(self.path(chunk), lambda temp: np.save(temp, np.ascontiguousarray(images)))

    def read(self, chunk: int) -> np.ndarray:
        """Batch ``chunk``'s images; a missing or damaged file is an error that says what to do."""
        path = self.path(chunk)
        try:
            images = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise RAEError(f"sample chunk {path} cannot be read ({error}); delete it and rerun the same "
                           f"command to generate that batch again") from error
        if images.dtype != np.uint8 or images.shape[0] != len(self.layout.rows(chunk)):
            raise RAEError(f"sample chunk {path} holds {images.dtype} {tuple(images.shape)}, not batch {chunk}'s "
                           f"{len(self.layout.rows(chunk))} uint8 rows; delete it and rerun the same command")
        return images

    def assemble(self, labels: np.ndarray, out: str | Path) -> Path:
        """Stream every chunk, in row order, into the ADM ``out`` (``arr_0`` uint8 ``(N, H, W, 3)``,
        ``arr_1`` int64 ``labels``), atomically; then write the marker and remove the chunks."""
        out = Path(out)
        missing = sorted(set(range(self.layout.num_chunks)) - set(self.done()))
        if missing:
            raise RAEError(f"cannot assemble {out}: {len(missing)} sample batch(es) missing in {self.folder} "
                           f"(first: {missing[0]}); rerun the same command to generate them")
        for leftover in leftover_temp_files(out):  # of an assembly killed before
            leftover.unlink(missing_ok=True)
        image_shape = self.read(0).shape[1:]
        chunks = (self.read(chunk) for chunk in range(self.layout.num_chunks))
        write_npz(out, {"arr_0": Member((self.layout.total, *image_shape), np.uint8, chunks),
                        "arr_1": Member((self.layout.total,), np.int64, [labels.astype(np.int64)])})
        self._mark(out)
        for chunk in range(self.layout.num_chunks):
            self.path(chunk).unlink(missing_ok=True)
        return out

    def _mark(self, out: Path) -> None:
        record = {"file": str(out.resolve()), "bytes": out.stat().st_size, "sha256": file_sha256(out),
                  "rows": self.layout.total}
        atomic_write_text(self.folder / MARKER, json.dumps(record, indent=2))

    def assembled(self, out: str | Path) -> bool:
        """Whether ``out`` is the npz these chunks were assembled into (the marker's size and sha256 match)."""
        out, marker = Path(out), self.folder / MARKER
        if not (marker.is_file() and out.is_file()):
            return False
        record = json.loads(marker.read_text())
        return (record.get("rows") == self.layout.total and record.get("bytes") == out.stat().st_size
                and record.get("sha256") == file_sha256(out))


def grid_rows(samples: Path, labels: np.ndarray, columns: int, max_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(images (M, H, W, 3), labels (M,))``: the rows ``grid.png`` shows (the first ``columns`` of each of
    the first ``max_classes`` classes), read one by one from ``samples``."""
    array = NpzArray.open(samples)
    classes = [int(c) for c in np.unique(labels)][:max_classes]
    picked = np.concatenate([np.flatnonzero(labels == label)[:columns] for label in classes]).astype(np.int64)
    images = np.stack([array.read(int(index), int(index) + 1)[0] for index in picked])
    return images, labels[picked]
