"""Sample chunks: one atomic uint8 file per global batch, listed on resume, streamed into the ADM samples.npz."""

from __future__ import annotations

import signal

import numpy as np
import pytest

from rae_framework.data.sample_chunks import ChunkLayout, SampleChunks, grid_rows
from rae_framework.engine import DistContext, PreemptionNotice, RunLogger
from rae_framework.engine.chunk_work import rank_chunks, round_count, stop_if_noticed
from rae_framework.errors import PreemptedError, RAEError


def batch_images(layout: ChunkLayout, chunk: int) -> np.ndarray:
    """Every pixel of a row holds its global row index (mod 256)."""
    rows = np.asarray(layout.rows(chunk)) % 256
    return np.broadcast_to(rows.astype(np.uint8)[:, None, None, None], (len(rows), 4, 3, 3)).copy()


def test_layout_rows_and_the_resume_row():
    layout = ChunkLayout(total=10, batch_size=3)
    assert layout.num_chunks == 4 and layout.rows(3) == range(9, 10)
    assert layout.resume_row([]) == 0 and layout.resume_row([0, 1, 3]) == 6 and layout.resume_row(range(4)) == 10


def test_chunks_written_in_any_order_assemble_in_row_order(tmp_path):
    layout, labels = ChunkLayout(total=23, batch_size=4), np.arange(23) % 5
    store = SampleChunks(tmp_path / "chunks", layout)
    for chunk in (5, 0, 3, 1, 4, 2):  # as ranks of several attempts would finish them
        store.write(chunk, batch_images(layout, chunk))
    assert store.done() == list(range(6))
    out = store.assemble(labels, tmp_path / "samples.npz")
    with np.load(out) as data:
        assert sorted(data.keys()) == ["arr_0", "arr_1"]
        assert data["arr_0"].shape == (23, 4, 3, 3) and data["arr_0"].dtype == np.uint8
        assert np.array_equal(data["arr_0"][:, 0, 0, 0], np.arange(23, dtype=np.uint8))
        assert np.array_equal(data["arr_1"], labels) and data["arr_1"].dtype == np.int64
    assert sorted(path.name for path in store.folder.iterdir()) == ["assembled.json"]  # chunks removed
    assert store.assembled(out)
    out.write_bytes(out.read_bytes()[:-1] + b"x")  # another file under the same name
    assert not store.assembled(out)


def test_a_killed_write_leaves_only_a_temp_file_that_is_not_a_chunk(tmp_path):
    layout = ChunkLayout(total=8, batch_size=4)
    store = SampleChunks(tmp_path, layout)
    store.write(1, batch_images(layout, 1))
    (tmp_path / ".chunk_000000.tmp4242.npy").write_bytes(b"torn")  # what SIGKILL mid-write leaves
    (tmp_path / "chunk_000009.npy").write_bytes(b"")  # beyond this layout
    assert store.done() == [1]
    assert [path.name for path in store.clear_partial()] == [".chunk_000000.tmp4242.npy"]
    with pytest.raises(RAEError, match="1 sample batch.*missing.*first: 0"):
        store.assemble(np.zeros(8), tmp_path / "samples.npz")


def test_wrong_and_damaged_chunks_are_clear_errors(tmp_path):
    layout = ChunkLayout(total=6, batch_size=4)
    store = SampleChunks(tmp_path, layout)
    with pytest.raises(ValueError, match=r"chunk 1 needs \(2, H, W, C\) uint8"):
        store.write(1, batch_images(ChunkLayout(6, 3), 1))
    store.path(0).write_bytes(b"not an npy file")
    with pytest.raises(RAEError, match="cannot be read.*delete it and rerun"):
        store.read(0)
    np.save(store.path(0), np.zeros((3, 4, 3, 3), np.uint8))
    with pytest.raises(RAEError, match="not batch 0's 4 uint8 rows"):
        store.read(0)


@pytest.mark.parametrize("world_size", [1, 2, 3, 5])
def test_ranks_split_the_remaining_chunks_in_contiguous_runs(world_size):
    remaining = [0, 2, 3, 4, 7, 8, 9]
    runs = [rank_chunks(remaining, rank, world_size) for rank in range(world_size)]
    assert sum(runs, []) == remaining  # each chunk once, in order
    assert max(len(run) for run in runs) == round_count(len(remaining), world_size)


def test_a_notice_after_the_last_batch_stops_before_the_next_stage(tmp_path):
    notice, logger = PreemptionNotice(), RunLogger(tmp_path, console=False, tensorboard=False)
    stop_if_noticed(notice, DistContext(), logger, "sample", "the samples were assembled")  # none: goes on
    notice.received = signal.SIGUSR1
    with pytest.raises(PreemptedError, match=r"sample: preempted \(SIGUSR1\) after the samples were assembled") as stop:
        stop_if_noticed(notice, DistContext(), logger, "sample", "the samples were assembled")
    assert stop.value.signal == signal.SIGUSR1
    logger.close()


def test_grid_rows_reads_the_first_columns_of_the_first_classes(tmp_path):
    labels = np.arange(23) % 5
    images = np.broadcast_to((np.arange(23) % 256).astype(np.uint8)[:, None, None, None], (23, 4, 3, 3)).copy()
    np.savez(tmp_path / "samples.npz", arr_0=images, arr_1=labels.astype(np.int64))
    shown, picked = grid_rows(tmp_path / "samples.npz", labels, columns=6, max_classes=3)
    assert picked.tolist() == [0] * 5 + [1] * 5 + [2] * 5 and shown.shape == (15, 4, 3, 3)
    assert list(shown[5:10, 0, 0, 0]) == [1, 6, 11, 16, 21]  # class 1's rows (5 of the 6 columns)
