"""Registers this package's components with rae-framework through the public hook."""

from rae_framework import hookimpl


@hookimpl
def rae_register_components(registrar):
    """The DINO discriminator, LPIPS, DiffAugment and the adversarial losses."""
    registrar.add("discriminator", "dino", factory="rae_gan.dino_discriminator:DinoDiscriminator",
                  config="rae_gan.configs:DinoDiscriminatorConfig",
                  summary="Projected discriminator on frozen DINO ViT-S/8 features (paper appendix)")
    registrar.add("perceptual", "lpips", factory="rae_gan.lpips_loss:LPIPS", config="rae_gan.configs:LPIPSConfig",
                  summary="LPIPS perceptual distance (lpips package; VGG16 as in the reference)")
    registrar.add("augmentation", "diffaug", factory="rae_gan.diffaug:DiffAugment",
                  config="rae_gan.configs:DiffAugmentConfig",
                  summary="DiffAugment (colour, translation, cut-out) on the discriminator's inputs")
    registrar.add("gan_loss", "hinge", factory="rae_gan.losses:HingeLoss", config="rae_gan.configs:GANLossConfig",
                  summary="hinge discriminator loss, -mean(D(fake)) generator loss (the reference's pair)")
    registrar.add("gan_loss", "vanilla", factory="rae_gan.losses:VanillaLoss",
                  config="rae_gan.configs:GANLossConfig",
                  summary="logistic discriminator loss, non-saturating generator loss")
