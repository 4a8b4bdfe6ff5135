"""Latent statistics: chunked merges equal one pass equal numpy on the whole set (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rae_framework.engine.statistics import LatentStatistics, all_reduce_statistics, load_statistics, \
    save_statistics
from rae_framework.errors import ConfigError


@settings(max_examples=40, deadline=None)
@given(count=st.integers(1, 40), seed=st.integers(0, 2 ** 16), cuts=st.lists(st.integers(1, 39), max_size=5),
       offset=st.floats(-1e3, 1e3))
def test_chunks_equal_one_pass_equal_numpy(count, seed, cuts, offset):
    data = torch.randn(count, 3, 2, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    data = data * 5 + offset
    bounds = sorted({0, count, *[c for c in cuts if c < count]})
    chunked = LatentStatistics()
    for start, stop in zip(bounds, bounds[1:]):
        chunked.merge(LatentStatistics().update(data[start:stop]))
    whole = LatentStatistics().update(data)
    array = data.numpy()
    for stats in (chunked, whole):
        assert stats.count == count
        np.testing.assert_allclose(stats.mean.numpy(), array.mean(axis=0), rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(stats.var.numpy(), array.var(axis=0), rtol=1e-9, atol=1e-9)


def test_deterministic_for_a_data_order():
    data = torch.randn(17, 4, 2, 2)
    first, second = LatentStatistics(), LatentStatistics()
    for stats in (first, second):
        for chunk in data.split(5):
            stats.update(chunk)
    assert torch.equal(first.mean, second.mean) and torch.equal(first.var, second.var)


def test_empty_is_an_error_and_merge_checks_shapes():
    with pytest.raises(ConfigError):
        _ = LatentStatistics().var
    with pytest.raises(ConfigError, match="shapes"):
        LatentStatistics().update(torch.zeros(2, 3)).merge(LatentStatistics().update(torch.zeros(2, 4)))


def test_all_reduce_without_process_group_is_identity():
    stats = LatentStatistics().update(torch.randn(4, 2))
    assert all_reduce_statistics(stats) is stats


def test_save_and_load_safetensors(tmp_path):
    stats = LatentStatistics().update(torch.randn(6, 3, 2, 2))
    save_statistics(tmp_path / "latent_stats.safetensors", stats.mean, stats.var)
    mean, var = load_statistics(tmp_path / "latent_stats.safetensors")
    torch.testing.assert_close(mean, stats.mean.float())
    torch.testing.assert_close(var, stats.var.float())


def test_bad_file_is_an_error(tmp_path):
    torch.save({"other": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(ConfigError, match="mean"):
        load_statistics(tmp_path / "bad.pt")
