"""Samples written by every rank into its own uint8 shard, merged by streaming into the ADM ``samples.npz``.

Global batch ``k`` (of ``batch_size`` labels) belongs to rank ``k % world_size``. Each rank writes its
batches as they are generated into ``.shard_<rank>.npy`` (memory-mapped, preallocated); rank 0 then copies
batch after batch, in global order, into ``samples.npz`` (``arr_0`` uint8 ``(N, H, W, 3)``, ``arr_1`` int64
labels) and removes the shards. No process ever holds more than one batch of images, so the result does
not depend on the number of processes and host memory does not grow with the sample count.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rae_framework.data.npz_stream import Member, NpzArray, write_npz


@dataclass(frozen=True)
class ShardLayout:
    """Which global batches each rank produces, and where they sit in its shard."""

    total: int
    batch_size: int
    world_size: int

    @property
    def num_batches(self) -> int:
        """Global batches of ``batch_size`` (the last may be short)."""
        return -(-self.total // self.batch_size)

    def rows(self, batch: int) -> range:
        """Global rows of batch ``batch``."""
        return range(batch * self.batch_size, min(self.total, (batch + 1) * self.batch_size))

    def batches(self, rank: int) -> list[int]:
        """The global batches rank ``rank`` produces, in order."""
        return list(range(rank, self.num_batches, self.world_size))

    def shard_rows(self, rank: int) -> int:
        """Rows in rank ``rank``'s shard."""
        return sum(len(self.rows(batch)) for batch in self.batches(rank))

    def shard_offset(self, batch: int) -> int:
        """Row offset of global batch ``batch`` in its rank's shard (only the last batch may be short)."""
        return (batch // self.world_size) * self.batch_size


def shard_path(folder: Path, rank: int) -> Path:
    """The shard file of rank ``rank``."""
    return Path(folder) / f".shard_{rank}.npy"


class ShardWriter:
    """Rank ``rank``'s preallocated uint8 shard ``(rows, H, W, 3)``; :meth:`write` places one global batch."""

    def __init__(self, folder: Path, layout: ShardLayout, rank: int, image_shape: tuple[int, int, int]) -> None:
        self.layout, self.path = layout, shard_path(folder, rank)
        self.images = np.lib.format.open_memmap(self.path, mode="w+", dtype=np.uint8,
                                                shape=(layout.shard_rows(rank), *image_shape))

    def write(self, batch: int, images: np.ndarray) -> None:
        """Images ``(B, H, W, 3)`` uint8 of global batch ``batch``."""
        offset = self.layout.shard_offset(batch)
        self.images[offset:offset + images.shape[0]] = images

    def close(self) -> None:
        """Flush the shard to disk."""
        self.images.flush()
        del self.images


def _read_shard(folder: Path, layout: ShardLayout, batch: int) -> np.ndarray:
    """Global batch ``batch``'s images from its rank's shard."""
    shard = np.load(shard_path(folder, batch % layout.world_size), mmap_mode="r")
    offset = layout.shard_offset(batch)
    return np.array(shard[offset:offset + len(layout.rows(batch))])


def merged_batches(folder: Path, layout: ShardLayout) -> Iterator[np.ndarray]:
    """Every global batch, in order, read from the shards."""
    for batch in range(layout.num_batches):
        yield _read_shard(folder, layout, batch)


def merge_shards(folder: Path, layout: ShardLayout, labels: np.ndarray, out: Path) -> Path:
    """Stream the shards into the ADM ``out`` (``arr_0``, ``arr_1``), then delete them."""
    image_shape = np.load(shard_path(folder, 0), mmap_mode="r").shape[1:]
    write_npz(out, {"arr_0": Member((layout.total, *image_shape), np.uint8, merged_batches(folder, layout)),
                    "arr_1": Member((layout.total,), np.int64, [labels.astype(np.int64)])})
    for rank in range(layout.world_size):
        shard_path(folder, rank).unlink(missing_ok=True)
    return out


def grid_rows(samples: Path, labels: np.ndarray, columns: int, max_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(images (M, H, W, 3), labels (M,))``: the rows ``grid.png`` shows (the first ``columns`` of each of
    the first ``max_classes`` classes), read one by one from ``samples``."""
    array = NpzArray.open(samples)
    classes = [int(c) for c in np.unique(labels)][:max_classes]
    picked = np.concatenate([np.flatnonzero(labels == label)[:columns] for label in classes]).astype(np.int64)
    images = np.stack([array.read(int(index), int(index) + 1)[0] for index in picked])
    return images, labels[picked]
