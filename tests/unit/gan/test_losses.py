"""GAN losses on hand-computed values and the adaptive weight against manual autograd."""

from __future__ import annotations

import math

import pytest
import torch

from rae_gan.configs import GANLossConfig
from rae_gan.losses import (GANLoss, adaptive_weight, hinge_d_loss, hinge_g_loss, quantize_fake, vanilla_d_loss,
                            vanilla_g_loss)

REAL = torch.tensor([2.0, 0.5, -1.0])
FAKE = torch.tensor([-2.0, 0.0, 1.5])


def test_hinge_discriminator_loss_by_hand():
    # relu(1 - real) = [0, 0.5, 2] -> 2.5/3 ; relu(1 + fake) = [0, 1, 2.5] -> 3.5/3
    assert hinge_d_loss(REAL, FAKE).item() == pytest.approx(0.5 * (2.5 / 3 + 3.5 / 3))


def test_vanilla_discriminator_loss_by_hand():
    softplus = lambda v: math.log1p(math.exp(v))  # noqa: E731
    real = sum(softplus(-v) for v in REAL.tolist()) / 3
    fake = sum(softplus(v) for v in FAKE.tolist()) / 3
    assert vanilla_d_loss(REAL, FAKE).item() == pytest.approx(0.5 * (real + fake), rel=1e-6)


def test_generator_losses_by_hand():
    assert hinge_g_loss(FAKE).item() == pytest.approx(-(-2.0 + 0.0 + 1.5) / 3)
    expected = sum(-math.log(1 / (1 + math.exp(-v))) for v in FAKE.tolist()) / 3
    assert vanilla_g_loss(FAKE).item() == pytest.approx(expected, rel=1e-6)


def _toy_graph(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    layer = torch.randn(4, 3, generator=generator, requires_grad=True)
    inputs = torch.randn(5, 3, generator=generator)
    output = inputs @ layer.T  # (5, 4): a decoder whose last layer is `layer`
    rec = (output - 1.0).abs().mean()
    gan = -(output * torch.linspace(-1, 1, 4)).sum()
    return layer, rec, gan


def test_adaptive_weight_matches_manual_autograd():
    layer, rec, gan = _toy_graph()
    weight = adaptive_weight(rec, gan, layer)
    rec_grad = torch.autograd.grad(rec, layer, retain_graph=True)[0]
    gan_grad = torch.autograd.grad(gan, layer, retain_graph=True)[0]
    assert weight.item() == pytest.approx((rec_grad.norm() / (gan_grad.norm() + 1e-6)).item(), rel=1e-6)
    assert not weight.requires_grad
    (rec + gan).backward()  # graphs are retained for the real backward pass


def test_adaptive_weight_is_clamped():
    layer, rec, gan = _toy_graph(1)
    assert adaptive_weight(rec, 1e-9 * gan, layer, max_weight=3.0).item() == 3.0


def test_gan_loss_schedule_and_term():
    loss = GANLoss(GANLossConfig())
    assert not loss.discriminator_active(5) and loss.discriminator_active(6)
    assert not loss.gan_active(7) and loss.gan_active(8)
    layer, rec, _ = _toy_graph(2)
    fake_logits = (layer.sum() * torch.ones(3)).unsqueeze(1)
    term, weight = loss.generator_term(rec, fake_logits, layer)
    assert term.item() == pytest.approx(0.75 * weight.item() * vanilla_g_loss(fake_logits).item(), rel=1e-6)
    fixed = GANLoss(GANLossConfig(adaptive_weight=False, disc_weight=2.0, gen_loss="hinge"))
    term, weight = fixed.generator_term(rec, fake_logits, layer)
    assert weight.item() == 1.0 and term.item() == pytest.approx(2.0 * hinge_g_loss(fake_logits).item())


def test_quantize_fake_clamps_and_rounds_to_8_bit():
    images = torch.tensor([-0.2, 0.0, 0.5, 0.50001, 1.3, 100.4 / 255])
    expected = torch.tensor([0.0, 0.0, 128 / 255, 128 / 255, 1.0, 100 / 255])
    assert torch.allclose(quantize_fake(images), expected)


def test_zero_gan_weight_disables_both_schedules():
    loss = GANLoss(GANLossConfig(disc_weight=0.0))
    assert not loss.discriminator_active(100) and not loss.gan_active(100)
    assert GANLoss(GANLossConfig(perceptual_start_epoch=2)).perceptual_weight(1) == 0.0
