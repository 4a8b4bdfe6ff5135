"""Torch-free configuration of the decoders (imported by ``rae list`` / ``validate`` without torch)."""

from __future__ import annotations

from pydantic import Field

from rae_framework.config import ComponentConfig


class ViTDecoderConfig(ComponentConfig):
    """The MAE-style ViT pixel decoder of the paper (the reference's ``GeneralDecoder``).

    ``token_dim`` and ``num_patches`` describe the encoder side; an assembly fills them from the encoder
    when they are absent (``DERIVED_FIELDS`` in :mod:`rae_framework.latent_fields`).
    """

    token_dim: int | None = Field(None, gt=0, description="Width C of the input tokens (the encoder's token "
                                                          "dim); None = filled from the encoder by the assembly.")
    num_patches: int | None = Field(None, gt=0, description="Token count N the decoder is built for (a square); "
                                                            "other counts are bilinearly resized to this grid. "
                                                            "None = the encoder's token count.")
    hidden_size: int = Field(1152, gt=0, description="Decoder width D.")
    num_layers: int = Field(28, gt=0, description="Number of transformer blocks.")
    num_heads: int = Field(16, gt=0, description="Attention heads (hidden_size must be divisible by it).")
    intermediate_size: int = Field(4096, gt=0, description="Hidden width of each block's GELU MLP.")
    patch_size: int = Field(16, gt=0, description="Output pixels per token side.")
    out_channels: int = Field(3, gt=0, description="Output image channels.")
    layer_norm_eps: float = Field(1e-12, gt=0.0, description="LayerNorm epsilon (the reference uses 1e-12).")
    qkv_bias: bool = Field(True, description="Bias on the query/key/value projections.")

    @property
    def grid_size(self) -> int | None:
        """Tokens per side of the decoder's grid (None until num_patches is known)."""
        return None if self.num_patches is None else round(self.num_patches ** 0.5)

    @property
    def image_size(self) -> int | None:
        """Side of the decoded image: patch_size * grid_size."""
        return None if self.grid_size is None else self.patch_size * self.grid_size
