"""Registers this package's components with rae-framework through the public hook."""

from rae_framework import hookimpl

ENCODERS = {
    "dinov2": ("rae_encoders.dinov2:Dinov2Encoder", "Dinov2Config", "DINOv2 (+registers) ViT, transformers"),
    "siglip2": ("rae_encoders.siglip2:Siglip2Encoder", "Siglip2Config", "SigLIP2 vision tower, transformers"),
    "mae": ("rae_encoders.mae:MAEEncoder", "MAEConfig", "MAE ViT encoder (masking off), transformers"),
    "timm": ("rae_encoders.timm_adapter:TimmEncoder", "TimmEncoderConfig", "any timm ViT by model name"),
    "open_clip": ("rae_encoders.open_clip_adapter:OpenClipEncoder", "OpenClipEncoderConfig",
                  "the image tower of an open_clip model by name"),
}


@hookimpl
def rae_register_components(registrar):
    """The frozen representation encoders."""
    for name, (factory, config, summary) in ENCODERS.items():
        registrar.add("encoder", name, factory=factory, config=f"rae_encoders.configs:{config}", summary=summary)
