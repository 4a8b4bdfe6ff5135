"""Properties of the losses and metrics that hold for any input (hypothesis)."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rae_gan.configs import DiffAugmentConfig
from rae_gan.diffaug import DiffAugment
from rae_gan.losses import hinge_d_loss
from rae_stages.train_decoder import adaptive_weight
from rae_metrics.configs import SSIMConfig
from rae_metrics.fid import frechet_distance
from rae_metrics.psnr import psnr_per_image
from rae_metrics.ssim import ssim_per_image

seeds = st.integers(min_value=0, max_value=2**31 - 1)


def _batch(seed: int, size: int = 12) -> torch.Tensor:
    return torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(seed))


@settings(max_examples=25, deadline=None)
@given(seeds, seeds)
def test_ssim_and_psnr_are_symmetric_and_bounded(seed_a, seed_b):
    a, b = _batch(seed_a), _batch(seed_b)
    config = SSIMConfig(sigma=0.8)
    ssim = ssim_per_image(a, b, config)
    assert torch.allclose(ssim, ssim_per_image(b, a, config)) and (ssim <= 1 + 1e-12).all() and (ssim >= -1).all()
    assert torch.allclose(ssim_per_image(a, a, config), torch.ones(2, dtype=torch.float64))
    assert torch.allclose(psnr_per_image(a, b), psnr_per_image(b, a))


@settings(max_examples=25, deadline=None)
@given(seeds, st.floats(min_value=0.01, max_value=0.2))
def test_more_noise_lowers_psnr(seed, sigma):
    clean = _batch(seed)
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(seed + 1))
    assert (psnr_per_image(clean + sigma * noise, clean) > psnr_per_image(clean + 2 * sigma * noise, clean)).all()


@settings(max_examples=20, deadline=None)
@given(seeds)
def test_frechet_distance_is_symmetric_and_non_negative(seed):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(40, 4)), rng.normal(0.3, 1.5, size=(40, 4))
    args = (x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    forward, backward = frechet_distance(*args), frechet_distance(*args[2:], *args[:2])
    assert forward >= -1e-8 and abs(forward - backward) < 1e-6 * max(1.0, forward)


@settings(max_examples=20, deadline=None)
@given(seeds, st.floats(min_value=0.1, max_value=10.0))
def test_adaptive_weight_scales_inversely_with_the_gan_loss(seed, scale):
    generator = torch.Generator().manual_seed(seed)
    layer = torch.randn(3, 3, generator=generator, requires_grad=True)
    output = torch.randn(4, 3, generator=generator) @ layer
    rec, gan = output.abs().mean(), output.sum()
    ratio = adaptive_weight(rec, gan, layer, 1e4) / adaptive_weight(rec, scale * gan, layer, 1e4)
    assert torch.isclose(ratio, torch.tensor(scale), rtol=1e-4)


@settings(max_examples=20, deadline=None)
@given(seeds)
def test_diffaug_keeps_shape_and_hinge_loss_is_non_negative(seed):
    images = _batch(seed)
    augmented = DiffAugment(DiffAugmentConfig())(images, torch.Generator().manual_seed(seed))
    assert augmented.shape == images.shape and torch.isfinite(augmented).all()
    logits = torch.randn(2, 5, generator=torch.Generator().manual_seed(seed))
    assert hinge_d_loss(logits, -logits) >= 0
