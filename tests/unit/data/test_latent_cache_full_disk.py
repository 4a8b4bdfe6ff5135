"""A disk that fills while the latent cache is built (a real small tmpfs where the test may mount one): a clear
DiskFullError, no half-built folder or lock left, the finished caches beside it intact."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
import torch
from small_disk import resize, small_disk

from rae_framework.data import latent_cache
from rae_framework.data.latent_cache import LatentCache, build_latent_cache
from rae_framework.errors import DiskFullError


class Tiny(torch.utils.data.Dataset):
    labels = [0, 1, 2, 3]

    def __len__(self):
        return 4

    def __getitem__(self, item):
        index, flip = item
        return torch.full((3, 2, 2), index / 4 + 0.1 * flip), self.labels[index]


def encoder(channels: int):
    """``(B, 3, 2, 2) -> (B, channels, 16, 16)``: 1 kB of fp32 per channel and image."""
    return lambda images: images.mean(dim=(1, 2, 3)).view(-1, 1, 1, 1).expand(-1, channels, 16, 16) + 1.0


def build(folder, channels: int, key: str) -> LatentCache:
    return build_latent_cache(folder, encoder(channels), Tiny(), latent_shape=(channels, 16, 16), flips=True,
                              key=key, batch_size=2)


def test_a_disk_that_fills_during_the_build_fails_cleanly_and_keeps_the_finished_cache(tmp_path, monkeypatch):
    with small_disk(tmp_path / "disk", 256 * 1024) as disk:
        root = disk or tmp_path / "disk"
        finished = build(root / "a", 2, "a")  # 8 rows of 2 kB
        expected = np.array(finished.latents)
        # Another writer fills the disk after the free-space check: the allocation itself must fail.
        monkeypatch.setattr(latent_cache, "check_space", lambda folder, needed: None)
        if disk is None:  # no tmpfs here: the allocation fails as it would on a full disk
            def full(descriptor, offset, length):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            monkeypatch.setattr(latent_cache.os, "posix_fallocate", full)
        with pytest.raises(DiskFullError) as raised:
            build(root / "b", 64, "b")  # 8 rows of 64 kB: 512 kB > 256 kB
        message = str(raised.value)
        assert str(root) in message and "latent cache b" in message and "free" in message
        assert sorted(path.name for path in root.iterdir()) == ["a"]  # no .b.building, no .b.lock
        assert np.array_equal(np.array(LatentCache(root / "a").latents), expected)
        if disk is not None:  # with space, the same build succeeds
            resize(disk, 1024 * 1024)
            assert build(root / "b", 64, "b").latents.shape == (8, 64, 16, 16)
