"""Datasets, the ADM centre crop, the deterministic batch plan and the latent cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from rae_framework.data.datasets import (BatchPlan, ImageFolderDataset, build_dataset, center_crop_arr,
                                         class_names, resize_random_crop)
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


def test_resize_random_crop_equals_torchvision_resize_then_crop(tmp_path):
    """The reference's stage-1 view (src/train_stage1.py:258-265): Resize(384, BICUBIC) + RandomCrop(256)."""
    from rae_framework.compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (300, 457, 3), dtype=np.uint8))
    resized = TF.resize(image, 96, interpolation=InterpolationMode.BICUBIC)  # (W, H) = (146, 96)
    assert resized.size == (146, 96)
    for crop, (top, left) in (((0.0, 0.0), (0, 0)), ((0.999, 0.999), (32, 82)), ((0.5, 0.25), (16, 20))):
        ours = resize_random_crop(image, 64, 96, crop)
        assert np.array_equal(np.asarray(ours), np.asarray(TF.crop(resized, top, left, 64, 64))), crop
    with pytest.raises(ValueError, match="smaller than"):
        resize_random_crop(image, 64, 48, (0.0, 0.0))


def test_batch_plan_crops_are_deterministic_rank_invariant_and_keep_order_and_flips():
    plan, plain = BatchPlan(10, seed=3, flip=True, crop=True), BatchPlan(10, seed=3, flip=True)
    whole = plan.batch(5, 6)
    assert whole == BatchPlan(10, seed=3, flip=True, crop=True).batch(5, 6)  # a resumed run plans the same
    assert plan.batch(5, 6, rank=0, world_size=3) + plan.batch(5, 6, 1, 3) + plan.batch(5, 6, 2, 3) == whole
    assert [item[:2] for item in whole] == plain.batch(5, 6)
    crops = [item[2] for item in plan.positions(0, 30)]
    assert all(0.0 <= fy < 1.0 and 0.0 <= fx < 1.0 for fy, fx in crops) and len(set(crops)) == 30


def test_image_folder_random_crop_items(tmp_path):
    (tmp_path / "a").mkdir()
    array = np.random.default_rng(2).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "a" / "0.png")
    dataset = ImageFolderDataset(tmp_path, 16, random_crop=True, resize_to=24)
    image, _ = dataset[(0, False, (0.0, 0.0))]
    expected = Image.fromarray(array).resize((36, 24), resample=Image.BICUBIC).crop((0, 0, 16, 16))
    assert torch.equal(image, torch.from_numpy(np.array(expected)).permute(2, 0, 1).float() / 255)
    flipped, _ = dataset[(0, True, (0.0, 0.0))]
    assert torch.equal(flipped, image.flip(-1))
    assert torch.equal(dataset[0][0], ImageFolderDataset(tmp_path, 16)[(0, False)][0])  # bare index: centre crop
    with pytest.raises(ValueError, match="BatchPlan"):  # a training plan without crops would silently centre-crop
        dataset[(0, False)]
    with pytest.raises(ValueError, match="without random crops"):
        ImageFolderDataset(tmp_path, 16)[(0, False, (0.5, 0.5))]
    assert ImageFolderDataset(tmp_path, 256).resize_to == 384 and ImageFolderDataset(tmp_path, 512).resize_to == 768


def test_data_setting_random_crop_trains_on_planned_crops_and_evaluates_on_centre_crops(tmp_path):
    from rae_framework.data.datasets import PlannedBatches
    from rae_framework.data.loading import LoaderSettings, StackImages, planned_loader

    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for index in range(3):
            array = np.random.default_rng(index).integers(0, 255, (30, 40, 3), dtype=np.uint8)
            Image.fromarray(array).save(tmp_path / label / f"{index}.png")
    config = DataConfig(source="folder", root=str(tmp_path), image_size=16, holdout_fraction=0.34,
                        train_transform="resize-random-crop")
    train, holdout = build_dataset(config, "train"), build_dataset(config, "holdout")
    assert train.random_crop and train.resize_to == 24 and not holdout.random_crop
    plan = BatchPlan(len(train), seed=0, flip=False, crop=train.random_crop)
    (_, images, _), = list(planned_loader(StackImages(train), PlannedBatches(plan, len(train), 0, 1),
                                          LoaderSettings(num_workers=1)))  # crops travel to the worker
    index, _, crop = plan.batch(0, len(train))[0]
    with Image.open(train.files[index]) as image:
        expected = np.asarray(resize_random_crop(image.convert("RGB"), 16, 24, crop))
    assert torch.equal(images[0], torch.from_numpy(expected.copy()).permute(2, 0, 1).float() / 255)
    with pytest.raises(ValueError, match="needs source 'folder'"):
        DataConfig(source="digits", train_transform="resize-random-crop")
    with pytest.raises(ValueError, match="smaller than image_size"):
        DataConfig(source="folder", image_size=256, resize_to=200, train_transform="resize-random-crop")
