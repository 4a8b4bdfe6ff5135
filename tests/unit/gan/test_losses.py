"""GAN losses (kind ``gan_loss``) on hand-computed values and the stage's adaptive weight against autograd."""

from __future__ import annotations

import math

import pytest
import torch

from rae_framework.session import Session
from rae_gan.losses import hinge_d_loss, hinge_g_loss, non_saturating_g_loss, vanilla_d_loss
from rae_stages.train_decoder import adaptive_weight

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
    assert non_saturating_g_loss(FAKE).item() == pytest.approx(expected, rel=1e-6)


def test_registered_pairs_hinge_is_the_reference_pair():
    """src/disc/gan_loss.py:L7 (hinge_d_loss) and L23 (its 'vanilla_g_loss' is -mean(D(fake)))."""
    session = Session()
    hinge, vanilla = session.build("gan_loss", "hinge"), session.build("gan_loss", "vanilla")
    assert hinge.discriminator_loss(REAL, FAKE).item() == pytest.approx(hinge_d_loss(REAL, FAKE).item())
    assert hinge.generator_loss(FAKE).item() == pytest.approx(0.5 / 3)
    assert vanilla.discriminator_loss(REAL, FAKE).item() == pytest.approx(vanilla_d_loss(REAL, FAKE).item())
    assert vanilla.generator_loss(FAKE).item() == pytest.approx(non_saturating_g_loss(FAKE).item())


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
    weight = adaptive_weight(rec, gan, layer, 1e4)
    rec_grad = torch.autograd.grad(rec, layer, retain_graph=True)[0]
    gan_grad = torch.autograd.grad(gan, layer, retain_graph=True)[0]
    assert weight.item() == pytest.approx((rec_grad.norm() / (gan_grad.norm() + 1e-6)).item(), rel=1e-6)
    assert not weight.requires_grad
    (rec + gan).backward()  # graphs are retained for the real backward pass


def test_adaptive_weight_is_clamped():
    layer, rec, gan = _toy_graph(1)
    assert adaptive_weight(rec, 1e-9 * gan, layer, max_weight=3.0).item() == 3.0
