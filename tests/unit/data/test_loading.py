"""The input pipeline: workers load planned batches ahead, in plan order, and training stays exact."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rae_framework.data.datasets import BatchPlan, PlannedBatches, build_dataset
from rae_framework.data.loading import (LoadedLatents, LoaderSettings, PrefetchedBatches, StackImages,
                                        planned_loader)
from rae_framework.config import OptimizerConfig
from rae_framework.data.config import DataConfig
from rae_framework.engine import TrainingJob
from rae_framework.engine.logging import RunLogger
from rae_stages.configs import TrainDenoiserStage
from rae_stages.train_denoiser import train_denoiser

sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))
from doubles import DenoiserDoubleConfig, LinearSchedule, TinyDenoiser  # noqa: E402


class Rows:
    """A picklable fetch: latent ``i`` is ``i / 100`` everywhere (flipped rows negated), label ``i % 10``."""

    def __call__(self, items):
        values = torch.tensor([(-1.0 if flip else 1.0) * index / 100 for index, flip in items])
        latents = values.view(-1, 1, 1, 1).expand(-1, 4, 4, 4).clone()  # (B, 4, 4, 4)
        return latents, torch.tensor([index % 10 for index, _ in items])


def test_workers_deliver_the_plan_in_order():
    plan = PlannedBatches(BatchPlan(50, seed=1, flip=True), 8, start_step=3, stop_step=9, rank=1, world_size=2)
    batches = list(planned_loader(Rows(), plan, LoaderSettings(num_workers=2, prefetch_factor=3)))
    assert [items for items, *_ in batches] == [list(items) for items in plan]
    for items, latents, labels in batches:
        assert torch.equal(latents, Rows()(items)[0]) and torch.equal(labels, Rows()(items)[1])


def test_a_batch_out_of_plan_order_is_an_error():
    plan = PlannedBatches(BatchPlan(50, seed=1), 4, 0, 3)
    prefetched = PrefetchedBatches(Rows(), plan, LoaderSettings(num_workers=1))
    first, second = list(plan)[:2]
    prefetched.take(first)
    with pytest.raises(RuntimeError, match="not the one the training loop asked for"):
        prefetched.take(first)
    assert second != first


def test_image_batches_are_decoded_in_workers():
    dataset = build_dataset(DataConfig(source="digits", image_size=16), "train")
    items = [(0, False), (5, True), (9, False)]
    (loaded_items, images, labels), = planned_loader(StackImages(dataset), [items], LoaderSettings(num_workers=2))
    assert loaded_items == items and images.shape == (3, 3, 16, 16)
    assert torch.equal(images[1], dataset[(5, True)][0]) and labels.tolist() == [dataset[(i, False)][1] for i, _ in items]


def train(tmp_path, workers: int, steps: int = 6):
    torch.manual_seed(123)
    stage = TrainDenoiserStage(steps=steps, batch_size=8, checkpoint_every=3, keep_last=2, ema_decay=0.9,
                               log_every=1, optimizer=OptimizerConfig(lr=1e-2))
    source = LoadedLatents(Rows(), 40, lambda rows: rows * 2, torch.device("cpu"), LoaderSettings(workers))
    logger = RunLogger(tmp_path, tensorboard=False)
    try:
        state = train_denoiser(TinyDenoiser(DenoiserDoubleConfig()), LinearSchedule(), source, stage,
                               TrainingJob("train_denoiser", tmp_path / "ckpt", logger), flips=True)
    finally:
        logger.close()
    return {key: value.clone() for key, value in state.model.state_dict().items()}


def test_training_with_workers_equals_training_without(tmp_path):
    reference = train(tmp_path / "none", 0)
    with_workers = train(tmp_path / "two", 2)
    for key, value in reference.items():
        assert torch.equal(with_workers[key], value), key


def test_a_resumed_run_prefetches_from_its_checkpoint_step(tmp_path):
    whole = train(tmp_path / "whole", 2, steps=6)
    train(tmp_path / "part", 2, steps=3)
    resumed = train(tmp_path / "part", 2, steps=6)  # continues from step 3's checkpoint
    for key, value in whole.items():
        assert torch.equal(resumed[key], value), key


def test_latent_statistics_with_workers_equal_those_without(tmp_path):
    from doubles import tiny_rae

    from rae_framework.engine.distributed import DistContext
    from rae_stages.latent_stats import compute_latent_statistics

    from rae_framework.data.datasets import DigitsDataset

    dataset, results = DigitsDataset(16, np.arange(40)), []
    for workers in (0, 2):
        torch.manual_seed(0)
        logger = RunLogger(tmp_path / str(workers), tensorboard=False)
        results.append(compute_latent_statistics(tiny_rae(), dataset, tmp_path / f"{workers}.safetensors",
                                                 batch_size=16, context=DistContext(), logger=logger,
                                                 num_workers=workers))
        logger.close()
    assert results[0].count == results[1].count == 40
    assert torch.equal(results[0].mean, results[1].mean) and torch.equal(results[0].var, results[1].var)
