"""The latent cache that fits: storage dtype, optional flips, shared by key, atomic and race-safe, sized."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections import namedtuple
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from rae_framework import files
from rae_framework.data import cache_plan, latent_cache
from rae_framework.data.cache_plan import LatentCacheConfig, cache_bytes, cache_folder, check_space
from rae_framework.data.latent_cache import LatentCache, build_latent_cache
from rae_framework.engine.run_lock import Holder, process_start_ticks
from rae_stages.configs import TrainDenoiserStage
from rae_framework.errors import ConfigError


class Indexed(torch.utils.data.Dataset):
    """Images whose pixels encode their index (with a fractional part bf16 cannot hold); flips reverse W."""

    labels = [3, 1, 4, 1, 5, 9]

    def __len__(self):
        return 6

    def __getitem__(self, item):
        index, flip = item
        image = torch.linspace(0.0, 1.0, 48).view(3, 4, 4) + index / 7
        return (image.flip(-1) if flip else image), self.labels[index]


class CountingEncoder:
    """``(B, 3, 4, 4) -> (B, 2, 4, 4)``; counts the images it encodes."""

    def __init__(self, delay: float = 0.0) -> None:
        self.images, self.delay = 0, delay

    def __call__(self, images):
        self.images += images.shape[0]
        time.sleep(self.delay)
        return images[:, :2] * 3


def build(folder, encoder, *, dtype="fp32", flips=True, key="k"):
    return build_latent_cache(folder, encoder, Indexed(), latent_shape=(2, 4, 4), flips=flips, key=key,
                              batch_size=4, dtype=dtype)


@pytest.mark.parametrize("dtype,tolerance", [("fp32", 0.0), ("fp16", 2e-3), ("bf16", 1.6e-2)])
def test_storage_dtypes_round_trip_within_their_precision(tmp_path, dtype, tolerance):
    encoder = CountingEncoder()
    cache = build(tmp_path / "c", encoder, dtype=dtype)
    items = [(2, False), (0, True), (5, True)]
    latents, labels = cache.batch(items)
    expected = encoder(torch.stack([Indexed()[item][0] for item in items]))
    assert latents.dtype == torch.float32 and labels.tolist() == [4, 3, 9]
    torch.testing.assert_close(latents, expected, rtol=tolerance, atol=tolerance)
    if dtype != "fp32":
        assert not torch.equal(latents, expected)  # really stored narrower
    on_disk = (tmp_path / "c" / "latents.npy").stat().st_size + (tmp_path / "c" / "labels.npy").stat().st_size
    assert cache_bytes(6, (2, 4, 4), dtype, True) <= on_disk <= cache_bytes(6, (2, 4, 4), dtype, True) + 512


def test_without_flips_the_cache_holds_one_row_per_image(tmp_path):
    cache = build(tmp_path / "c", CountingEncoder(), flips=False)
    assert cache.latents.shape == (6, 2, 4, 4) and not cache.has_flips


def test_a_second_run_with_the_same_key_reuses_the_cache(tmp_path):
    first, second = CountingEncoder(), CountingEncoder()
    build(tmp_path / "c", first)
    cache = build(tmp_path / "c", second)
    assert first.images == 12 and second.images == 0 and cache.num_samples == 6


def test_racing_runs_build_once_and_both_read_the_result(tmp_path, monkeypatch):
    monkeypatch.setattr(latent_cache, "POLL_SECONDS", 0.05)
    encoders = [CountingEncoder(delay=0.2), CountingEncoder(delay=0.2)]
    results = [None, None]

    def one_run(index):
        results[index] = build(tmp_path / "shared", encoders[index]).batch([(1, True)])[0]

    threads = [threading.Thread(target=one_run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(encoder.images for encoder in encoders) == [0, 12]
    assert torch.equal(results[0], results[1])
    assert sorted(path.name for path in tmp_path.iterdir()) == ["shared"]  # no lock or temp folder left


def test_the_lock_of_a_dead_builder_is_taken_over_at_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(latent_cache, "POLL_SECONDS", 0.01)
    lock = tmp_path / ".c.lock"
    builder = subprocess.Popen(["sleep", "60"])
    lock.write_text(replace(Holder.this_process(), pid=builder.pid,
                            process_start=process_start_ticks(builder.pid)).to_text())
    builder.kill()
    builder.wait()
    encoder = CountingEncoder()
    build(tmp_path / "c", encoder)
    assert encoder.images == 12 and not lock.exists()
    assert f"took over the lock of latent cache {tmp_path / 'c'}" in capsys.readouterr().err


def test_an_unreadable_lock_is_taken_over_once_its_heartbeat_is_stale(tmp_path, monkeypatch):
    monkeypatch.setattr(latent_cache, "POLL_SECONDS", 0.01)
    monkeypatch.setenv("RAE_LOCK_STALE_S", "5")
    monkeypatch.setenv("RAE_LOCK_HEARTBEAT_S", "1")
    lock = tmp_path / ".c.lock"
    lock.write_text("host 1 0\n")  # the format of earlier versions, or a half-written record
    old = time.time() - 10
    os.utime(lock, (old, old))
    encoder = CountingEncoder()
    build(tmp_path / "c", encoder)
    assert encoder.images == 12 and not lock.exists()


def test_a_disk_without_the_space_is_refused_before_encoding(tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(files.shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 100, 100))
    encoder = CountingEncoder()
    with pytest.raises(ConfigError, match="needs 1.6 kB but .* has only 100 B free"):
        build(tmp_path / "c", encoder)
    assert encoder.images == 0 and not list(tmp_path.iterdir())  # lock released, nothing half-built
    with pytest.raises(ConfigError, match="latent_cache"):
        check_space(tmp_path / "not" / "yet", 10**4)


def test_imagenet_sizes_follow_dtype_and_flips():
    full = cache_bytes(1_281_167, (768, 16, 16), "fp32", True)
    assert round(full / 1e12, 1) == 2.0  # the 2.0 TB per run
    assert cache_bytes(1_281_167, (768, 16, 16), "bf16", False) * 4 == pytest.approx(full, rel=1e-4)


def test_settings_are_backward_compatible_and_place_the_cache_by_key(tmp_path, monkeypatch):
    assert TrainDenoiserStage(latent_cache=False).latent_cache.enabled is False
    assert TrainDenoiserStage(latent_cache=True).latent_cache == LatentCacheConfig()
    config = LatentCacheConfig(dtype="bf16", folder=str(tmp_path / "shared"))
    assert cache_folder(config, tmp_path / "run", "abcdef" * 8) == tmp_path / "shared" / ("abcdef" * 4)
    monkeypatch.setenv(cache_plan.CACHE_DIR_ENV, str(tmp_path / "env"))
    assert cache_folder(LatentCacheConfig(), tmp_path / "run", "k").parent == tmp_path / "env"
    monkeypatch.delenv(cache_plan.CACHE_DIR_ENV)
    assert cache_folder(LatentCacheConfig(), tmp_path / "run", "k").parent == tmp_path / "run" / "latent_cache"
    assert LatentCacheConfig(flips=False).uses_flips(True) is False and LatentCacheConfig().uses_flips(True)


def test_the_cache_pickles_without_its_rows(tmp_path):
    import pickle

    cache = build(tmp_path / "c", CountingEncoder())
    assert isinstance(cache.latents, np.memmap)
    assert len(pickle.dumps(cache)) < 2000  # workers reopen the memmap, the rows are never copied
    assert torch.equal(pickle.loads(pickle.dumps(cache)).batch([(4, True)])[0], cache.batch([(4, True)])[0])


def test_validate_prints_the_cache_size_and_refuses_a_full_disk(tmp_path, monkeypatch, capsys):
    from rae_framework.cli import main

    quickstart = str(Path(__file__).parents[3] / "examples" / "quickstart.yaml")
    folder = f"stages.train_denoiser.latent_cache.folder={tmp_path}"
    assert main(["validate", quickstart, "--set", folder, "--set", "stages.train_denoiser.latent_cache.dtype=bf16"]) == 0
    assert f"latent cache: 3.3 MB (1617 images, 64x4x4 bf16) in {tmp_path}/" in capsys.readouterr().out
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(files.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 10**5, 10**5))
    assert main(["validate", quickstart, "--set", folder]) == 2
    assert "the latent cache needs 6.6 MB but" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["under-a-file", "in-proc"])
def test_a_cache_folder_that_cannot_be_made_names_the_setting(tmp_path, where):
    (tmp_path / "a-file").write_text("keep me")
    root = tmp_path / "a-file" / "caches" if where == "under-a-file" else Path("/proc/rae-cache")
    encoder = CountingEncoder()
    with pytest.raises(ConfigError, match=rf"latent cache folder {root}: .*; set stages\.train_denoiser\.latent_cache"
                                          r"\.folder \(or \$RAE_LATENT_CACHE_DIR\)"):
        build(root / "k", encoder)
    assert encoder.images == 0 and (tmp_path / "a-file").read_text() == "keep me"
