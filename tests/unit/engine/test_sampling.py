"""Sampling stage with test doubles: label modes, ADM npz layout, grid rows per class, seeded batches."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

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
