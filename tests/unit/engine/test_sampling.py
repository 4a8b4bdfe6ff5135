"""Sampling stage with test doubles: label modes, ADM npz layout, grid rows per class, seeded batches, resume."""

from __future__ import annotations

import signal

import numpy as np
import pytest
import torch
from PIL import Image

from rae_framework.engine import PreemptionNotice, RunLogger
from rae_framework.errors import PreemptedError
from rae_stages.configs import SampleStage
from rae_stages.sample import run_sampling, sample_labels

from doubles import DenoiserDoubleConfig, EulerDouble, LinearSchedule, TinyDenoiser


def decode(latents):  # (B, 4, 4, 4) -> (B, 3, 8, 8) in [0, 1]
    return torch.sigmoid(torch.nn.functional.interpolate(latents[:, :3], scale_factor=2))


def sample(folder, **settings):
    torch.manual_seed(0)
    denoiser = TinyDenoiser(DenoiserDoubleConfig(num_classes=3)).eval()
    stage = SampleStage(**{"per_class": 4, "batch_size": 5, "grid_columns": 2, **settings})
    path = run_sampling(denoiser, LinearSchedule(), EulerDouble(), decode, stage, folder, seed=1)
    with np.load(path) as data:
        return data["arr_0"], data["arr_1"]


def test_equal_labels_npz_layout_and_grid(tmp_path):
    images, labels = sample(tmp_path)
    assert images.shape == (12, 8, 8, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    assert grid.shape == (3 * 8, 2 * 8, 3)  # rows = classes, grid_columns samples each
    assert np.array_equal(grid[8:16, 8:16], images[5])  # row 1 = class 1, second sample
    assert not list(tmp_path.glob(".part_*"))


def test_sampling_is_a_function_of_the_seed(tmp_path):
    first, _ = sample(tmp_path / "a")
    again, _ = sample(tmp_path / "b")
    assert np.array_equal(first, again)
    torch.manual_seed(0)  # same weights as in sample()
    other_seed = run_sampling(TinyDenoiser(DenoiserDoubleConfig(num_classes=3)).eval(), LinearSchedule(),
                              EulerDouble(), decode, SampleStage(per_class=4, batch_size=5), tmp_path / "c", seed=2)
    assert not np.array_equal(np.load(other_seed)["arr_0"], first)


def test_random_labels_are_seeded():
    stage = SampleStage(per_class=50, labels="random")
    labels = sample_labels(stage, 10, seed=3)
    assert labels.shape == (500,) and torch.equal(labels, sample_labels(stage, 10, seed=3))
    assert set(labels.tolist()) == set(range(10)) and not torch.equal(labels, sample_labels(stage, 10, seed=4))


def test_a_preempted_sampling_resumes_at_its_row_and_equals_a_clean_one(tmp_path):
    clean, _ = sample(tmp_path / "clean")
    torch.manual_seed(0)
    denoiser = TinyDenoiser(DenoiserDoubleConfig(num_classes=3)).eval()
    stage, chunks = SampleStage(per_class=4, batch_size=5, grid_columns=2), tmp_path / "chunks"
    logger = RunLogger(tmp_path / "log", console=False, tensorboard=False)
    notice = PreemptionNotice()
    notice.received = signal.SIGUSR1  # as the handler notes it; single-process, agreed() says so at once
    with pytest.raises(PreemptedError, match=r"sample: preempted \(SIGUSR1\) at row 5 of 12; 1 of 3 batches") as stop:
        run_sampling(denoiser, LinearSchedule(), EulerDouble(), decode, stage, tmp_path / "run", seed=1,
                     chunks=chunks, notice=notice, logger=logger)
    assert stop.value.signal == signal.SIGUSR1  # what `rae submit`'s requeue decision reads
    assert sorted(path.name for path in chunks.iterdir()) == ["chunk_000000.npy"]
    path = run_sampling(denoiser, LinearSchedule(), EulerDouble(), decode, stage, tmp_path / "run", seed=1,
                        chunks=chunks, logger=logger)
    logger.close()
    assert "sample: resuming at row 5 of 12 (1 of 3 batches done" in (tmp_path / "log" / "log.txt").read_text()
    with np.load(path) as data:
        assert np.array_equal(data["arr_0"], clean)
    assert sorted(path.name for path in chunks.iterdir()) == ["assembled.json"]
    written = path.stat().st_mtime_ns  # killed after the assembly, before the stage record: the npz is kept
    assert run_sampling(denoiser, LinearSchedule(), EulerDouble(), decode, stage, tmp_path / "run", seed=1,
                        chunks=chunks) == path and path.stat().st_mtime_ns == written
