"""The plugin module named by the entry point: one registration line for the stage, and its presets."""

from pathlib import Path

from rae_framework import hookimpl


@hookimpl
def rae_register_components(registrar):
    """Register stage 'latent_probe' by lazy references (nothing is imported now)."""
    registrar.add("stage", "latent_probe", factory="rae_latent_probe.probe:LatentProbe",
                  config="rae_latent_probe.probe:LatentProbeConfig", summary="linear probe of the latents")


@hookimpl
def rae_preset_paths():
    """This package's presets file (a '-tiny' preset feeds the contract tests)."""
    return [str(Path(__file__).with_name("presets.yaml"))]
