"""The plugin module named by the entry point: one registration line for the stage, and its presets."""

from pathlib import Path

from rae_framework import hookimpl


@hookimpl
def rae_register_components(registrar):
    """Register stages 'latent_probe' and 'encoder_distill' by lazy references (nothing is imported now)."""
    registrar.add("stage", "latent_probe", factory="rae_latent_probe.probe:LatentProbe",
                  config="rae_latent_probe.probe:LatentProbeConfig", summary="linear probe of the latents")
    registrar.add("stage", "encoder_distill", factory="rae_latent_probe.distill:EncoderDistill",
                  config="rae_latent_probe.distill:DistillConfig", summary="distil the encoder into a small CNN")


@hookimpl
def rae_preset_paths():
    """This package's presets file (a '-tiny' preset feeds the contract tests)."""
    return [str(Path(__file__).with_name("presets.yaml"))]
