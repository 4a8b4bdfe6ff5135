"""Torch-free Config of the encoder (rae-framework lists and validates it without importing torch)."""

from pydantic import Field

from rae_framework.config import ComponentConfig


class PatchMeanConfig(ComponentConfig):
    """Patchify, project with a fixed random matrix, LayerNorm without affine."""

    input_size: int = Field(32, gt=0, description="Side of the square input image.")
    patch_size: int = Field(4, gt=0, description="Patch side; input_size must be a multiple of it.")
    token_dim: int = Field(64, gt=0, description="Channels C of the output tokens.")
    seed: int = Field(0, description="Seed of the fixed random projection.")

    @property
    def grid_size(self) -> int:
        """Tokens per side at input_size (the assembly derives the latent shape from it)."""
        return self.input_size // self.patch_size
