"""Datasets, the ADM centre crop, the deterministic batch plan and the latent cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from rae_framework.data.datasets import BatchPlan, ImageFolderDataset, build_dataset, center_crop_arr, class_names
from rae_framework.data.latent_cache import LatentCache, build_latent_cache
from rae_framework.data.config import DataConfig
from rae_framework.errors import ConfigError


def test_digits_are_rgb_upsampled_and_split_disjointly():
    config = DataConfig(source="digits", image_size=24, holdout_fraction=0.1)
    train, holdout = build_dataset(config, "train"), build_dataset(config, "holdout")
    assert len(train) + len(holdout) == 1797 and len(holdout) == 180
    image, label = train[0]
    assert image.shape == (3, 24, 24) and image.dtype == torch.float32 and 0 <= label < 10
    assert torch.equal(image[0], image[2]) and 0.0 <= image.min() and image.max() <= 1.0
    flipped, _ = train[(0, True)]
    assert torch.equal(flipped, image.flip(-1))
    assert set(train.labels.tolist()) == set(range(10))


def test_center_crop_matches_adm():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 500, 3), dtype=np.uint8))
    cropped = center_crop_arr(image, 64)
    assert cropped.size == (64, 64)
    # ADM: BOX halving while the short side >= 2 * size (300 -> 150 -> 75), BICUBIC to the size, centre crop.
    halved = image.resize((250, 150), resample=Image.BOX).resize((125, 75), resample=Image.BOX)
    expected = np.asarray(halved.resize((round(125 * 64 / 75), 64), resample=Image.BICUBIC))
    left = (expected.shape[1] - 64) // 2
    assert np.array_equal(np.asarray(cropped), expected[:, left:left + 64])


def test_image_folder_layout(tmp_path):
    for label, name in enumerate(["cat", "dog"]):
        (tmp_path / name).mkdir()
        for index in range(3):
            Image.new("RGB", (40, 30), (label * 200, index * 50, 0)).save(tmp_path / name / f"{index}.png")
    dataset = ImageFolderDataset(tmp_path, 16)
    assert len(dataset) == 6 and dataset.classes == ["cat", "dog"] and dataset.labels == [0, 0, 0, 1, 1, 1]
    image, label = dataset[4]
    assert image.shape == (3, 16, 16) and label == 1
    assert abs(float(image[0].mean()) - 200 / 255) < 1e-6
    with pytest.raises(ConfigError, match="data.root"):
        build_dataset(DataConfig(source="folder", image_size=16), "train")


def test_batch_plan_is_a_pure_function_and_ranks_partition_the_batch():
    plan, again = BatchPlan(10, seed=4, flip=True), BatchPlan(10, seed=4, flip=True)
    assert plan.batch(7, 6) == again.batch(7, 6)  # no hidden state: step 7 straight away
    assert plan.batch(0, 6) != BatchPlan(10, seed=5, flip=True).batch(0, 6)
    whole = plan.batch(3, 6)
    assert plan.batch(3, 6, rank=0, world_size=2) + plan.batch(3, 6, rank=1, world_size=2) == whole
    epoch = plan.positions(0, 10)
    assert sorted(index for index, _ in epoch) == list(range(10))  # each epoch is a permutation
    assert any(flip for _, flip in plan.positions(0, 40)) and not any(f for _, f in BatchPlan(10, 0).positions(0, 40))
    with pytest.raises(ConfigError, match="divisible"):
        plan.batch(0, 5, rank=0, world_size=2)


class FlipAware(torch.utils.data.Dataset):
    """Images whose pixels encode their index; flips reverse the width."""

    labels = [3, 1, 4, 1, 5]

    def __len__(self):
        return 5

    def __getitem__(self, item):
        index, flip = item
        image = torch.arange(12, dtype=torch.float32).view(1, 1, 3, 4).expand(1, 3, 3, 4)[0] + 100 * index
        return (image.flip(-1) if flip else image), self.labels[index]


def test_latent_cache_stores_flips_and_reads_batches(tmp_path):
    def encode(images):  # (B, 3, 3, 4) -> (B, 2, 3, 4)
        return images[:, :2] * 2

    cache = build_latent_cache(tmp_path / "cache", encode, FlipAware(), latent_shape=(2, 3, 4), flips=True,
                               key="k1", batch_size=2)
    assert cache.latents.shape == (10, 2, 3, 4) and isinstance(cache.latents, np.memmap)
    latents, labels = cache.batch([(3, False), (0, True), (4, False)])
    dataset = FlipAware()
    for row, item in zip(latents, [(3, False), (0, True), (4, False)]):
        assert torch.equal(row, encode(dataset[item][0][None])[0])
    assert labels.tolist() == [1, 3, 5] and labels.dtype == torch.int64
    assert LatentCache.is_complete(tmp_path / "cache", "k1") and not LatentCache.is_complete(tmp_path / "cache", "k2")


def test_class_names_of_digits_and_folders(tmp_path):
    assert class_names(DataConfig(source="digits")) == [str(digit) for digit in range(10)]
    for name in ("tench", "goldfish", "axolotl"):
        (tmp_path / name).mkdir()
    (tmp_path / "notes.txt").write_text("not a class")
    assert class_names(DataConfig(source="folder", root=str(tmp_path))) == ["axolotl", "goldfish", "tench"]
    assert class_names(DataConfig(source="folder", root=str(tmp_path / "elsewhere"))) is None
