"""World-size-invariant step draws: every rank draws only its share, and any split gives the same bits."""

from __future__ import annotations

import pytest
import torch

from rae_framework.engine import draws as draws_module
from rae_framework.engine.draws import (BLOCK_ROWS, RowKeys, augment_rows, block_generator, covering_blocks,
                                        denoiser_draws, draw_rows)
from doubles import LinearSchedule, tiny_rae

SHAPE = (3, 2, 2)


def split_draws(batch: int, ranks: int, step: int = 5) -> list:
    """Every simulated rank's draws of one step, in rank order."""
    share = batch // ranks
    return [denoiser_draws(LinearSchedule(), seed=7, stream=2, step=step, start=rank * share,
                           stop=(rank + 1) * share, latent_shape=SHAPE, class_dropout=0.3)
            for rank in range(ranks)]


@pytest.mark.parametrize("batch", [64, 24, 6])  # block-aligned shares, straddling shares, shares < one block
def test_one_two_and_four_ranks_draw_the_same_global_batch(batch):
    single = split_draws(batch, 1)[0]
    assert single.noise.shape == (batch, *SHAPE) and single.t.shape == (batch,) and single.drop.dtype == torch.bool
    for ranks in [count for count in (2, 3, 4) if batch % count == 0]:
        parts = split_draws(batch, ranks)
        for name in ("noise", "t", "drop"):
            joined = torch.cat([getattr(part, name) for part in parts])
            assert torch.equal(joined, getattr(single, name)), (ranks, name)


def test_micro_batches_and_resumed_steps_draw_the_same_rows():
    whole = split_draws(32, 1)[0]
    micro = denoiser_draws(LinearSchedule(), seed=7, stream=2, step=5, start=8, stop=12, latent_shape=SHAPE,
                           class_dropout=0.3)
    assert torch.equal(micro.noise, whole.noise[8:12]) and torch.equal(micro.t, whole.t[8:12])
    again = split_draws(32, 1)[0]  # a resumed run recomputes the step from its keys alone
    assert torch.equal(again.noise, whole.noise)
    assert not torch.equal(split_draws(32, 1, step=6)[0].noise, whole.noise)


class CountingDraw:
    """A block draw that records how many rows it drew, and on which device."""

    def __init__(self) -> None:
        self.rows, self.devices = 0, set()

    def __call__(self, rows: int, generator: torch.Generator) -> tuple[torch.Tensor]:
        self.rows += rows
        self.devices.add(generator.device)
        return (torch.randn(rows, 768, generator=generator, device=generator.device),)


@pytest.mark.parametrize("batch,ranks", [(1024, 8), (96, 4), (40, 4)])
def test_each_rank_draws_only_the_blocks_of_its_share(batch, ranks):
    share = batch // ranks
    for rank in range(ranks):
        counter = CountingDraw()
        values, = draw_rows(counter, seed=0, stream=2, step=3, start=rank * share, stop=(rank + 1) * share,
                            device="cpu")
        assert values.shape == (share, 768) and values.device.type == "cpu"
        assert counter.devices == {torch.device("cpu")}
        # whole blocks: exactly the share when aligned, at most one straddling block more on each side
        assert share <= counter.rows <= share + 2 * (BLOCK_ROWS - 1) + BLOCK_ROWS - 1
        if share % BLOCK_ROWS == 0:
            assert counter.rows == share


def test_stage2_draws_count_only_the_share(monkeypatch):
    drawn = []
    original = draws_module.draw_step

    def counting(schedule, generator, rows, shape, dropout):
        drawn.append((rows, generator.device))
        return original(schedule, generator, rows, shape, dropout)

    monkeypatch.setattr(draws_module, "draw_step", counting)
    split = denoiser_draws(LinearSchedule(), seed=0, stream=2, step=0, start=128, stop=256,
                           latent_shape=(768, 2, 2), class_dropout=0.1)
    assert sum(rows for rows, _ in drawn) == 128 and split.noise.shape[0] == 128  # not the global 1024
    assert {device for _, device in drawn} == {torch.device("cpu")}


def test_blocks_have_distinct_streams():
    first = torch.rand(4, generator=block_generator(0, 2, 3, 0))
    assert not torch.equal(first, torch.rand(4, generator=block_generator(0, 2, 3, 1)))
    assert not torch.equal(first, torch.rand(4, generator=block_generator(0, 2, 4, 0)))
    assert not torch.equal(first, torch.rand(4, generator=block_generator(0, 3, 3, 0)))
    assert list(covering_blocks(15, 33)) == [0, 1, 2] and list(covering_blocks(4, 4)) == []


def row_noise(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A row-independent stand-in augmentation: one random offset per row."""
    return images + torch.rand(images.shape[0], 1, 1, 1, generator=generator)


@pytest.mark.parametrize("ranks", [2, 3, 4])
def test_augmentation_by_row_blocks_does_not_depend_on_the_split(ranks):
    images = torch.randn(36, 3, 4, 4)
    single = augment_rows(row_noise, images, seed=1, stream=9, step=2, start=0)
    share = 36 // ranks
    parts = [augment_rows(row_noise, images[r * share:(r + 1) * share], seed=1, stream=9, step=2, start=r * share)
             for r in range(ranks)]
    assert torch.equal(torch.cat(parts), single) and not torch.equal(single, images)


def test_diffaugment_through_row_keys_is_split_invariant_and_differentiable():
    from rae_gan.configs import DiffAugmentConfig
    from rae_gan.diffaug import DiffAugment

    augment = DiffAugment(DiffAugmentConfig(policy="color,translation,cutout"))
    images = torch.rand(12, 3, 8, 8, requires_grad=True)
    single = RowKeys(0, 4, 0, 12).augment(augment, images, stream=1001)
    halves = [RowKeys(0, 4, r * 6, (r + 1) * 6).augment(augment, images[r * 6:(r + 1) * 6], stream=1001)
              for r in range(2)]
    assert torch.equal(torch.cat(halves), single)
    single.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_rae_latent_noise_by_row_blocks_matches_its_generator_path():
    rae = tiny_rae(noise_tau=0.8).train()
    images = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        by_generator = rae.encode(images, generator=torch.Generator().manual_seed(3))
        noise = rae.draw_noise(4, torch.Generator().manual_seed(3))
        by_noise = rae.encode(images, noise=noise)
        rows = [RowKeys(0, 1, r * 2, (r + 1) * 2).draw(rae.draw_noise, 1000) for r in range(2)]
        whole = RowKeys(0, 1, 0, 4).draw(rae.draw_noise, 1000)
    assert torch.equal(by_noise, by_generator)
    assert all(torch.equal(torch.cat([part[i] for part in rows]), whole[i]) for i in range(2))


def test_the_global_generators_take_a_seed_past_64_bits():
    from rae_framework.engine.runner import seed_everything

    import random

    import numpy as np

    states = torch.random.get_rng_state(), np.random.get_state(), random.getstate()
    try:
        seed_everything(2**70, rank=1)  # was "Overflow when unpacking long long" from torch.manual_seed
        assert torch.initial_seed() == (2**70 + 1_000_003) % 2**64
    finally:  # the worker's later tests see the generators as they were
        torch.random.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])
