"""The plugin module named by the entry point: registers the encoder and ships its presets."""

from pathlib import Path

from rae_framework import hookimpl


@hookimpl
def rae_register_components(registrar):
    """Register encoder 'patch-mean' by lazy references (nothing is imported now)."""
    registrar.add("encoder", "patch-mean", factory="rae_patch_mean.encoder:PatchMeanEncoder",
                  config="rae_patch_mean.configs:PatchMeanConfig",
                  summary="Frozen patch projection + parameter-free LayerNorm (template plugin)")


@hookimpl
def rae_preset_paths():
    """This package's presets file."""
    return [str(Path(__file__).with_name("presets.yaml"))]
