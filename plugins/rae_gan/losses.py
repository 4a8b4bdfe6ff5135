"""Stage-1 adversarial losses and the adaptive GAN weight (reference formulas, taming-transformers style).

* hinge discriminator: ``0.5 * (mean(relu(1 - D(real))) + mean(relu(1 + D(fake))))``
* vanilla discriminator: ``0.5 * (mean(softplus(-D(real))) + mean(softplus(D(fake))))``
* vanilla (non-saturating) generator: ``mean(softplus(-D(fake)))``; hinge generator: ``-mean(D(fake))``
* adaptive weight: ``clamp(|grad_W L_rec| / (|grad_W L_gan| + 1e-6), 0, max).detach()``, ``W`` the
  decoder's last layer and ``L_rec = L1 + perceptual_weight * LPIPS``; the decoder's loss is
  ``L_rec + disc_weight * adaptive_weight * L_gan``.

The reference's step: the decoder step runs the discriminator in eval mode on the augmented reconstruction;
then the discriminator step (train mode) sees a fresh no-grad reconstruction, clamped and quantised to
8 bits (:func:`quantize_fake`), and the real batch, each augmented on its own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rae_gan.configs import GANLossConfig

ADAPTIVE_WEIGHT_EPS = 1e-6


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge discriminator loss (scalar)."""
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def vanilla_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Logistic discriminator loss (scalar)."""
    return 0.5 * (F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean())


def vanilla_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss ``-log sigmoid(D(fake))`` (scalar)."""
    return F.softplus(-fake_logits).mean()


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge generator loss ``-D(fake)`` (scalar)."""
    return -fake_logits.mean()


def quantize_fake(images: torch.Tensor) -> torch.Tensor:
    """Reconstructions as the discriminator step sees them: clamped to [0, 1] and rounded to 8-bit levels."""
    return torch.round(images.clamp(0.0, 1.0) * 255.0) / 255.0


DISC_LOSSES = {"hinge": hinge_d_loss, "vanilla": vanilla_d_loss}
GEN_LOSSES = {"hinge": hinge_g_loss, "vanilla": vanilla_g_loss}


def adaptive_weight(rec_loss: torch.Tensor, gan_loss: torch.Tensor, last_layer: torch.Tensor,
                    max_weight: float = 1e4) -> torch.Tensor:
    """``|grad L_rec| / (|grad L_gan| + 1e-6)`` at ``last_layer``, clamped to ``[0, max_weight]``, detached.

    Both losses must still hold their graphs; they are kept (``retain_graph``) for the real backward.
    """
    rec_grad, = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)
    gan_grad, = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)
    weight = rec_grad.norm() / (gan_grad.norm() + ADAPTIVE_WEIGHT_EPS)
    return weight.clamp(0.0, max_weight).detach()


class GANLoss:
    """The stage-1 objective's adversarial side, configured by :class:`GANLossConfig`.

    The engine calls :meth:`discriminator_loss` on (augmented) real/fake logits for the discriminator step,
    and :meth:`generator_term` for the decoder step; the schedule methods take the current epoch.
    """

    Config = GANLossConfig

    def __init__(self, config: GANLossConfig) -> None:
        self.config = config
        self._disc_loss = DISC_LOSSES[config.disc_loss]
        self._gen_loss = GEN_LOSSES[config.gen_loss]

    def discriminator_active(self, epoch: int) -> bool:
        """Whether the discriminator is updated in ``epoch`` (never when ``disc_weight`` is 0)."""
        return self.config.disc_weight > 0 and epoch >= self.config.disc_start_epoch

    def gan_active(self, epoch: int) -> bool:
        """Whether the GAN term enters the decoder loss in ``epoch`` (never when ``disc_weight`` is 0)."""
        return self.config.disc_weight > 0 and epoch >= self.config.gan_start_epoch

    def perceptual_weight(self, epoch: int) -> float:
        """LPIPS weight in ``epoch`` (0 before ``perceptual_start_epoch``)."""
        return self.config.perceptual_weight if epoch >= self.config.perceptual_start_epoch else 0.0

    def discriminator_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """Discriminator loss; ``fake_logits`` must come from detached reconstructions."""
        return self._disc_loss(real_logits.float(), fake_logits.float())

    def generator_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        """Unweighted generator loss on the discriminator's logits for reconstructions."""
        return self._gen_loss(fake_logits.float())

    def generator_term(self, rec_loss: torch.Tensor, fake_logits: torch.Tensor,
                       last_layer: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(disc_weight * w * L_gan, w)``, ``w`` the adaptive weight (1 when disabled).

        ``rec_loss`` is the whole reconstruction loss (L1 + weighted LPIPS), as in the reference.
        """
        gan_loss = self.generator_loss(fake_logits)
        if self.config.adaptive_weight:
            weight = adaptive_weight(rec_loss, gan_loss, last_layer, self.config.max_adaptive_weight)
        else:
            weight = torch.ones((), device=gan_loss.device)
        return self.config.disc_weight * weight * gan_loss, weight
