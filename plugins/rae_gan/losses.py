"""Stage-1 adversarial losses (kind ``gan_loss``): a discriminator loss and the matching generator loss.

* ``hinge`` (the reference's pair, src/train_stage1.py:L80-95 with configs/stage1/training/DINOv2-B_decXL.yaml:
  L67-68 ``disc_loss: hinge``, ``gen_loss: vanilla``): discriminator
  ``0.5 * (mean(relu(1 - D(real))) + mean(relu(1 + D(fake))))`` (src/disc/gan_loss.py:L7), generator
  ``-mean(D(fake))`` (what the reference calls ``vanilla_g_loss``, src/disc/gan_loss.py:L23).
* ``vanilla`` (logistic / non-saturating): discriminator ``0.5 * (mean(softplus(-D(real))) +
  mean(softplus(D(fake))))``, generator ``mean(softplus(-D(fake)))``.

The adaptive weight and the schedule of the GAN term belong to the decoder-training stage.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rae_framework.interfaces import AdversarialLoss
from rae_gan.configs import GANLossConfig


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge discriminator loss (scalar)."""
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def vanilla_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Logistic discriminator loss (scalar)."""
    return 0.5 * (F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean())


def non_saturating_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss ``-log sigmoid(D(fake))`` (scalar)."""
    return F.softplus(-fake_logits).mean()


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge generator loss ``-D(fake)`` (scalar)."""
    return -fake_logits.mean()


class HingeLoss(AdversarialLoss):
    """``hinge``: hinge discriminator loss, ``-mean(D(fake))`` generator loss (the reference's pair)."""

    Config = GANLossConfig

    def discriminator_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """Hinge loss on real and (detached) fake logits."""
        return hinge_d_loss(real_logits.float(), fake_logits.float())

    def generator_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        """``-mean(D(fake))``."""
        return hinge_g_loss(fake_logits.float())


class VanillaLoss(AdversarialLoss):
    """``vanilla``: logistic discriminator loss, non-saturating generator loss."""

    Config = GANLossConfig

    def discriminator_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """Logistic loss on real and (detached) fake logits."""
        return vanilla_d_loss(real_logits.float(), fake_logits.float())

    def generator_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        """``mean(softplus(-D(fake)))``."""
        return non_saturating_g_loss(fake_logits.float())
