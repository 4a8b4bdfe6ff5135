"""Streamed .npz: rows read in batches (memory-mapped or through the zip), members written chunk by chunk."""

from __future__ import annotations

import numpy as np
import pytest

from rae_framework.data.npz_stream import Member, NpzArray, write_npz


def images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 6, 5, 3), dtype=np.uint8)


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_rows_of_numpy_written_files_read_in_batches(tmp_path, save):
    arr_0, arr_1 = images(23), np.arange(23, dtype=np.int64)
    save(tmp_path / "ref.npz", arr_0=arr_0, arr_1=arr_1)
    array = NpzArray.open(tmp_path / "ref.npz")
    assert len(array) == 23 and array.shape == (23, 6, 5, 3) and array.dtype == np.uint8
    assert (array.data_offset is not None) == (save is np.savez)  # stored members are memory-mapped
    assert np.array_equal(np.concatenate(list(array.batches(5))), arr_0)
    assert np.array_equal(array.read(7, 11), arr_0[7:11])
    assert np.array_equal(np.concatenate(list(array.batches(4, range(3, 17)))), arr_0[3:17])
    assert np.array_equal(NpzArray.open(tmp_path / "ref.npz", "arr_1").read(20, 99), arr_1[20:])


def test_members_written_from_chunks_load_with_numpy(tmp_path):
    arr_0 = images(10, seed=1)
    chunks = (arr_0[start:start + 3] for start in range(0, 10, 3))
    write_npz(tmp_path / "samples.npz", {"arr_0": Member(arr_0.shape, np.uint8, chunks),
                                         "arr_1": Member((10,), np.int64, [np.arange(10)])})
    with np.load(tmp_path / "samples.npz") as data:
        assert np.array_equal(data["arr_0"], arr_0) and data["arr_1"].dtype == np.int64
    assert np.array_equal(NpzArray.open(tmp_path / "samples.npz").read(8, 10), arr_0[8:])
    assert [p.name for p in tmp_path.iterdir()] == ["samples.npz"]


def test_a_member_with_fewer_rows_than_its_header_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="2 rows written, the header says 3"):
        write_npz(tmp_path / "bad.npz", {"arr_0": Member((3, 2), np.uint8, [np.zeros((2, 2), np.uint8)])})
    assert not list(tmp_path.iterdir())  # neither the file nor its temp

