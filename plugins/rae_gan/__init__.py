"""First-party rae-framework plugin: stage-1 adversarial and perceptual training.

* ``discriminator/dino`` (:mod:`rae_gan.dino_discriminator`): the paper's projected DINO discriminator.
* ``perceptual/lpips`` (:mod:`rae_gan.lpips_loss`): LPIPS through the ``lpips`` package (VGG16).
* :mod:`rae_gan.diffaug`: DiffAugment, seeded by a ``torch.Generator``.
* :mod:`rae_gan.losses`: hinge/vanilla losses, the adaptive GAN weight and :class:`~rae_gan.losses.GANLoss`
  with the reference's defaults (:class:`~rae_gan.configs.GANLossConfig`).
"""
