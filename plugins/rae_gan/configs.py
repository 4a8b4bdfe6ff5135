"""Torch-free configurations of the stage-1 adversarial and perceptual components.

Defaults follow the reference implementation (bytetriper/RAE stage-1 recipe, whose discriminator follows
StyleGAN-T's projected DINO discriminator): DINO ViT-S/8 features from blocks 2, 5, 8, 11 plus the last
block, heads of spectral-norm 1-D convolutions with local batch norm (kernel 9); DiffAugment with
probability 1 and no cut-out. The loss weights and schedule are the decoder-training stage's settings.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from rae_framework.config import ComponentConfig


class DinoDiscriminatorConfig(ComponentConfig):
    """The projected DINO discriminator: frozen timm ViT features -> trainable spectral-norm conv heads."""

    timm_model: str = Field("vit_small_patch8_224.dino", description="timm model name of the frozen backbone "
                                                                     "(reference: DINO ViT-S/8).")
    pretrained: bool = Field(True, description="Load the backbone's pretrained weights (from `weights` or the "
                                               "Hugging Face cache); false = random backbone, for tests only.")
    weights: str | None = Field(None, description="Local backbone weights: a .safetensors file, or the original "
                                                  "DINO .pth (dino_deitsmall8_pretrain.pth); None = HF cache.")
    input_size: int = Field(224, ge=8, description="Images are resized (bilinear) to this side before the "
                                                   "backbone, as in the reference.")
    key_depths: tuple[int, ...] = Field((2, 5, 8, 11), description="Backbone blocks (0-based) whose tokens feed "
                                                                   "a head; the last block always feeds one more.")
    kernel_size: int = Field(9, ge=1, description="Kernel of the residual conv in each head (reference ks=9).")
    norm_type: Literal["bn", "gn"] = Field("bn", description="Head normalisation: local batch norm or GroupNorm(32).")
    spectral_norm: bool = Field(True, description="Spectral normalisation on the head convolutions.")
    norm_eps: float = Field(1e-6, gt=0, description="eps of the head norms (the backbone keeps timm's 1e-6, as the "
                                                           "reference).")
    embed_dim: int | None = Field(None, ge=8, description="Backbone width override (random or local-file backbones).")
    depth: int | None = Field(None, ge=1, description="Backbone depth override (random or local-file backbones).")
    num_heads: int | None = Field(None, ge=1, description="Backbone attention heads override (random or "
                                                          "local-file backbones).")
    patch_size: int | None = Field(None, ge=1, description="Backbone patch size override (random or local-file "
                                                           "backbones).")

    @model_validator(mode="after")
    def _overrides_need_random_backbone(self) -> DinoDiscriminatorConfig:
        overrides = [self.embed_dim, self.depth, self.num_heads, self.patch_size]
        if self.pretrained and self.weights is None and any(value is not None for value in overrides):
            raise ValueError("embed_dim/depth/num_heads/patch_size overrides do not fit the hub weights: set "
                             "pretrained: false or a local `weights` file")
        return self


DIFFAUG_POLICY_PATTERN = r"^(|(color|translation|cutout)(,(color|translation|cutout))*)$"
"""A DiffAugment policy: comma-separated operations ('' = none), applied in the reference's order."""


class DiffAugmentConfig(ComponentConfig):
    """Differentiable augmentation (Zhao et al. 2020) applied to real and fake images alike."""

    policy: str = Field("color,translation,cutout", pattern=DIFFAUG_POLICY_PATTERN,
                        description="Comma-separated operations; applied in the reference's order "
                                    "(translation, colour, cut-out) whatever their order here.")
    prob: float = Field(1.0, ge=0, le=1, description="Probability that a batch is augmented at all.")
    translation_ratio: float = Field(0.125, ge=0, le=1, description="Max shift as a fraction of the image side.")
    cutout_ratio: float = Field(0.5, ge=0, le=1, description="Side of the cut-out square as a fraction of the "
                                                             "image side.")


class LPIPSConfig(ComponentConfig):
    """LPIPS perceptual distance (the `lpips` package), frozen."""

    net: Literal["vgg", "alex", "squeeze"] = Field("vgg", description="Backbone (reference: VGG16).")
    pretrained_backbone: bool = Field(True, description="Use the ImageNet backbone from the torch hub cache; "
                                                        "false = random backbone (pnet_rand), for tests only.")
    linear_calibration: bool = Field(True, description="Use LPIPS' learned linear heads (shipped with lpips).")


class GANLossConfig(ComponentConfig):
    """An adversarial loss pair has no parameters: its weight and schedule are the decoder stage's settings."""
