"""Registers this package's components with rae-framework through the public hook."""

from rae_framework import hookimpl


@hookimpl
def rae_register_components(registrar):
    """The ViT pixel decoder."""
    registrar.add("decoder", "vit", factory="rae_decoders.vit:ViTDecoder",
                  config="rae_decoders.configs:ViTDecoderConfig",
                  summary="MAE-style ViT decoder: tokens -> pixels (the paper's stage-1 decoder)")
