"""Registers the stage-2 denoisers with rae-framework through the public hook."""

from rae_framework import hookimpl


@hookimpl
def rae_register_components(registrar):
    """LightningDiT and DiT-DH (configs are torch-free; classes load lazily)."""
    registrar.add("denoiser", "lightning-dit", factory="rae_denoisers.lightning_dit:LightningDiT",
                  config="rae_denoisers.configs:LightningDiTConfig",
                  summary="LightningDiT: DiT with SwiGLU, RMSNorm, 2-D RoPE and Gaussian-Fourier time embedding")
    registrar.add("denoiser", "dit-dh", factory="rae_denoisers.dit_dh:DiTDH",
                  config="rae_denoisers.configs:DiTDHConfig",
                  summary="DiT^DH: DiT body + shallow wide DDT head with per-token adaLN (RAE paper)")
