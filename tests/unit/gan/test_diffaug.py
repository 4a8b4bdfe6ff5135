"""DiffAugment: determinism per seed, differentiability, and what each operation does."""

from __future__ import annotations

import torch

from rae_gan.configs import DiffAugmentConfig
from rae_gan.diffaug import DiffAugment, cutout, translation


def _images(seed: int = 0) -> torch.Tensor:
    return torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def test_same_seed_same_augmentation_other_seed_differs():
    augment = DiffAugment(DiffAugmentConfig())
    images = _images()
    first = augment(images, torch.Generator().manual_seed(7))
    again = augment(images, torch.Generator().manual_seed(7))
    other = augment(images, torch.Generator().manual_seed(8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_augmentation_is_differentiable():
    images = _images().requires_grad_(True)
    DiffAugment(DiffAugmentConfig())(images, torch.Generator().manual_seed(0)).square().sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def _shifted(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """out[i, j] = x[i + dy, j + dx], zero outside."""
    padded = torch.nn.functional.pad(x, [8, 8, 8, 8])
    return padded[..., 8 + dy:8 + dy + x.shape[-2], 8 + dx:8 + dx + x.shape[-1]]


def test_translation_is_an_integer_shift_with_zero_padding():
    x = torch.arange(1.0, 1 + 8 * 8).view(1, 1, 8, 8).repeat(3, 1, 1, 1)
    shifted = translation(x, ratio=0.5, generator=torch.Generator().manual_seed(3))
    for index in range(3):
        matches = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5)
                   if torch.equal(shifted[index], _shifted(x[index], dy, dx))]
        assert len(matches) == 1


def test_cutout_zeroes_a_square_of_the_configured_size():
    x = torch.ones(8, 1, 16, 16)
    out = cutout(x, ratio=0.25, generator=torch.Generator().manual_seed(0))
    zeros = (out == 0).flatten(1).sum(1)
    assert (zeros <= 16).all() and (zeros > 0).all()  # a 4x4 square, clipped at the borders
    assert zeros.max() == 16


def test_policy_prob_and_identity_in_unit_range_space():
    images = _images()
    assert torch.equal(DiffAugment(DiffAugmentConfig(policy=""))(images), images)
    assert torch.equal(DiffAugment(DiffAugmentConfig(prob=0.0))(images), images)
    only_cutout = DiffAugment(DiffAugmentConfig(policy="cutout"))(images, torch.Generator().manual_seed(1))
    assert set(torch.unique(only_cutout[images != only_cutout]).tolist()) == {0.5}  # grey in [0, 1] space


def test_operations_run_in_the_reference_order_whatever_the_policy_order():
    """src/disc/diffaug.py:L69-105: translation, then colour, then cut-out."""
    from rae_gan.configs import DiffAugmentConfig
    from rae_gan.diffaug import DiffAugment

    images = torch.rand(3, 3, 16, 16)
    one = DiffAugment(DiffAugmentConfig(policy="color,translation"))
    other = DiffAugment(DiffAugmentConfig(policy="translation,color"))
    assert one.operations == other.operations == ["translation", "color"]
    first, second = (aug(images, generator=torch.Generator().manual_seed(5)) for aug in (one, other))
    assert torch.equal(first, second)
