"""A torch-free fake plugin for the core tests: Configs with the assembly contract, trivial components."""

from __future__ import annotations

from pydantic import Field

from rae_framework import ComponentConfig, hookimpl


class FakeEncoderConfig(ComponentConfig):
    """Encoder whose latent shape is (width, input_size // patch_size, ...)."""

    width: int = Field(8, gt=0, description="Token channels.")
    input_size: int = Field(16, gt=0, description="Input side.")
    patch_size: int = Field(4, gt=0, description="Patch side.")

    @property
    def token_dim(self) -> int:
        """Token channels."""
        return self.width

    @property
    def grid_size(self) -> int:
        """Tokens per side."""
        return self.input_size // self.patch_size


class FakeDecoderConfig(ComponentConfig):
    """Decoder with a derived token_dim."""

    token_dim: int | None = Field(None, description="Input token channels (derived).")
    hidden_size: int = Field(16, gt=0, description="Width.")


class FakeDenoiserConfig(ComponentConfig):
    """Denoiser with derived in_channels/input_size."""

    in_channels: int = Field(..., gt=0, description="Latent channels (derived).")
    input_size: int = Field(..., gt=0, description="Latent side (derived).")
    num_classes: int = Field(10, gt=0, description="Classes.")
    hidden_size: int = Field(32, gt=0, description="Width.")


class FakeScheduleConfig(ComponentConfig):
    """Schedule with a derived latent shape."""

    latent_shape: tuple[int, int, int] | None = Field(None, description="(C, h, w), derived.")
    shift_base: int = Field(4096, gt=0, description="Shift base.")


class FakeSamplerConfig(ComponentConfig):
    """Sampler."""

    num_steps: int = Field(10, gt=0, description="Steps.")


class FakeComponent:
    """Stores its config; stands in for any component."""

    def __init__(self, config: ComponentConfig) -> None:
        self.config = config


FAKES = {"encoder": "FakeEncoderConfig", "decoder": "FakeDecoderConfig", "denoiser": "FakeDenoiserConfig",
         "schedule": "FakeScheduleConfig", "sampler": "FakeSamplerConfig", "metric": "FakeSamplerConfig"}


class FakePlugin:
    """Registers one fake component per kind, named ``fake-<kind>``, and the given preset files."""

    def __init__(self, preset_paths: list[str] = ()) -> None:
        self.paths = list(preset_paths)

    @hookimpl
    def rae_preset_paths(self):
        """The preset files given to the constructor."""
        return self.paths

    @hookimpl
    def rae_register_components(self, registrar):
        """Register the fakes."""
        for kind, config in FAKES.items():
            registrar.add(kind, f"fake-{kind}", factory="core_fakes:FakeComponent", config=f"core_fakes:{config}",
                          summary=f"fake {kind}")


def _stages_plugin():
    import rae_stages.plugin

    return ("stages", rae_stages.plugin)


STAGES_PLUGIN = _stages_plugin()  # the first-party stages, which fake-only sessions need to run or validate stages
