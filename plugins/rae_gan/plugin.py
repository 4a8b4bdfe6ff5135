"""Registers this package's components with rae-framework through the public hook."""

from rae_framework import hookimpl


@hookimpl
def rae_register_components(registrar):
    """The DINO discriminator (kind ``discriminator``) and LPIPS (kind ``perceptual``)."""
    registrar.add("discriminator", "dino", factory="rae_gan.dino_discriminator:DinoDiscriminator",
                  config="rae_gan.configs:DinoDiscriminatorConfig",
                  summary="Projected discriminator on frozen DINO ViT-S/8 features (paper appendix)")
    registrar.add("perceptual", "lpips", factory="rae_gan.lpips_loss:LPIPS", config="rae_gan.configs:LPIPSConfig",
                  summary="LPIPS perceptual distance (lpips package; VGG16 as in the reference)")
