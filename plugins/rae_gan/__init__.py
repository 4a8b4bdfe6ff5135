"""First-party rae-framework plugin: stage-1 adversarial and perceptual training.

* ``discriminator/dino`` (:mod:`rae_gan.dino_discriminator`): the paper's projected DINO discriminator.
* ``perceptual/lpips`` (:mod:`rae_gan.lpips_loss`): LPIPS through the ``lpips`` package (VGG16).
* ``augmentation/diffaug`` (:mod:`rae_gan.diffaug`): DiffAugment, seeded by a ``torch.Generator``.
* ``gan_loss/hinge`` (the reference's pair) and ``gan_loss/vanilla`` (:mod:`rae_gan.losses`).

The decoder-training stage builds these by name through the run's session; it never imports this package.
"""
