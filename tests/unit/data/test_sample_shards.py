"""Sample shards: every rank writes its own uint8 batches; rank 0 streams them into the ADM samples.npz."""

from __future__ import annotations

import numpy as np
import pytest

from rae_framework.data.sample_shards import ShardLayout, ShardWriter, grid_rows, merge_shards


def batch_images(layout: ShardLayout, batch: int) -> np.ndarray:
    """Deterministic images of a global batch: every pixel holds the global row index (mod 256)."""
    rows = np.asarray(layout.rows(batch)) % 256
    return np.broadcast_to(rows.astype(np.uint8)[:, None, None, None], (len(rows), 4, 3, 3)).copy()


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_sharded_samples_merge_into_the_same_npz(tmp_path, world_size):
    layout, labels = ShardLayout(total=23, batch_size=4, world_size=world_size), np.arange(23) % 5
    for rank in range(world_size):
        writer = ShardWriter(tmp_path, layout, rank, (4, 3, 3))
        for batch in layout.batches(rank):
            writer.write(batch, batch_images(layout, batch))
        writer.close()
    merge_shards(tmp_path, layout, labels, tmp_path / "samples.npz")
    with np.load(tmp_path / "samples.npz") as data:
        assert data["arr_0"].shape == (23, 4, 3, 3) and data["arr_0"].dtype == np.uint8
        assert np.array_equal(data["arr_0"][:, 0, 0, 0], np.arange(23, dtype=np.uint8))
        assert np.array_equal(data["arr_1"], labels) and data["arr_1"].dtype == np.int64
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples.npz"]
    images, picked = grid_rows(tmp_path / "samples.npz", labels, columns=6, max_classes=3)
    assert picked.tolist() == [0] * 5 + [1] * 5 + [2] * 5 and images.shape == (15, 4, 3, 3)
    assert list(images[5:10, 0, 0, 0]) == [1, 6, 11, 16, 21]  # class 1's rows (5 of the 6 columns)


def test_layout_gives_each_rank_every_world_size_th_batch():
    layout = ShardLayout(total=10, batch_size=3, world_size=2)
    assert layout.num_batches == 4 and layout.batches(0) == [0, 2] and layout.batches(1) == [1, 3]
    assert layout.shard_rows(1) == 4 and layout.rows(3) == range(9, 10) and layout.shard_offset(3) == 3
